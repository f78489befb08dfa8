//! Recovery on subscribe (spec §7.2): replaying the stream a client missed, or giving it the
//! channel's latest publication in cache mode. A subscriber with a tags filter gets only the
//! publications that pass it; whether it recovered is still decided on the whole stream, so
//! its position stays consistent with the channel's. Publications that exclude this
//! connection's session (publisher exclusion, [`crate::exclusion`]) are left out the same way.

use super::Session;
use crate::engine::{EngineError, HistoryFilter};
use crate::exclusion::{self, Exclusion};
use crate::filter::TagsFilter;
use crate::protocol::{Publication, StreamPosition, SubscribeRequest};

/// Publications for the subscriber, the stream top, and whether recovery succeeded.
pub(super) type Recovery = (Vec<Publication>, StreamPosition, bool);

impl Session {
    /// Reads what the client missed (spec §7.2), keeping what `filter` lets through.
    pub(super) async fn recover(
        &self,
        channel: &str,
        req: &SubscribeRequest,
        limit: u32,
        meta: std::time::Duration,
        filter: Option<&TagsFilter>,
    ) -> Result<Recovery, EngineError> {
        let since = StreamPosition {
            offset: req.offset,
            epoch: req.epoch.clone(),
        };
        let history = HistoryFilter {
            since: Some(since),
            limit: limit as i32,
            reverse: false,
            meta_ttl: meta,
        };
        match self.node.broker.history(channel, history).await {
            Ok(mut page) => {
                // Continuity is judged on the whole stream: publications the filter drops
                // were not lost.
                let recovered = match (page.publications.first(), page.publications.last()) {
                    (Some(first), Some(last)) => {
                        first.offset == req.offset + 1 && last.offset == page.top.offset
                    }
                    _ => req.offset == page.top.offset,
                };
                if let Some(filter) = filter {
                    page.publications.retain(|p| filter.matches(&p.tags));
                }
                // Nor were the publications this connection's session sent and excluded itself
                // from: a publisher that reconnects does not get its own back.
                exclusion::replay_for(&mut page.publications, &self.handle.id, self.handle.owner());
                Ok((page.publications, page.top, recovered))
            }
            Err(EngineError::UnrecoverablePosition) => {
                let page = self
                    .node
                    .broker
                    .history(
                        channel,
                        HistoryFilter {
                            limit: 0,
                            meta_ttl: meta,
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok((Vec::new(), page.top, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Cache-mode recovery (spec §7.2): the latest publication, if it is the stream's top and
    /// the subscriber does not already hold it. Recovered when the latest publication is the
    /// top, or when the subscriber already holds the top of an empty cache. With a `filter`
    /// (as Centrifugo) the subscriber gets the newest publication that passes it among the last
    /// `limit`, and nothing when none does.
    pub(super) async fn recover_cache(
        &self,
        channel: &str,
        req: &SubscribeRequest,
        meta: std::time::Duration,
        limit: u32,
        filter: Option<&TagsFilter>,
    ) -> Result<Recovery, EngineError> {
        let history = HistoryFilter {
            since: None,
            limit: if filter.is_some() { limit as i32 } else { 1 },
            reverse: true,
            meta_ttl: meta,
        };
        let page = self.node.broker.history(channel, history).await?;
        let top = page.top;
        let holds_top = req.offset > 0 && req.offset == top.offset && req.epoch == top.epoch;
        let latest_offset = page.publications.first().map(|p| p.offset);
        let state = page
            .publications
            .into_iter()
            .find(|p| filter.is_none_or(|f| f.matches(&p.tags)));
        Ok(match latest_offset {
            None => (Vec::new(), top, holds_top),
            Some(latest) if latest != top.offset => (Vec::new(), top, false),
            Some(_) => match state {
                Some(state) => {
                    // The publisher of the state the publication excludes already holds it.
                    let mine = Exclusion::of(&state).is_some_and(|e| self.handle.is_excluded(e));
                    let mut publications = if holds_top || mine {
                        Vec::new()
                    } else {
                        vec![state]
                    };
                    exclusion::strip(&mut publications);
                    (publications, top, true)
                }
                // Nothing passes the filter: recovered only if the client holds the top.
                None => (Vec::new(), top, holds_top),
            },
        })
    }
}
