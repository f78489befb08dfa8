//! A publication on its way to subscribers ([`PubMsg`]), with its push frames encoded on first
//! use and cached: one per protocol for everyone, and for subscribers that negotiated Fossil
//! delta the delta against the stream's previous publication (or the whole publication in
//! their form), so fan-out encodes each at most once whatever the number of subscribers.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::protocol::{encode_reply, ProtocolKind, Publication, Push, Reply};

/// A publication on its way to subscribers, with its encodings cached.
#[derive(Debug)]
pub struct PubMsg {
    pub channel: String,
    pub publication: Publication,
    /// The stream epoch the offset belongs to ("" without history).
    pub epoch: String,
    /// The data of the stream's previous publication (offset - 1), when the publisher asked
    /// for delta and the engine had it.
    prev: Option<Bytes>,
    json: OnceLock<Option<Bytes>>,
    protobuf: OnceLock<Bytes>,
    /// The Fossil delta from `prev` to this data, when it is smaller than the data.
    patch: OnceLock<Option<Bytes>>,
    /// JSON for delta subscribers: the whole publication with `data` as a JSON string.
    json_text: OnceLock<Option<Bytes>>,
    /// JSON for delta subscribers: the delta as a JSON string (`None`: no usable delta).
    json_patch: OnceLock<Option<Bytes>>,
    /// Protobuf for delta subscribers: the delta bytes (`None`: no usable delta).
    protobuf_patch: OnceLock<Option<Bytes>>,
}

impl PubMsg {
    /// Wraps a publication (offset already assigned) for fan-out.
    pub fn new(channel: impl Into<String>, publication: Publication, epoch: String) -> Arc<Self> {
        Self::with_prev(channel, publication, epoch, None)
    }

    /// The same, with the data of the stream's previous publication for delta subscribers
    /// (see [`PubMsg::delta_frame`]).
    pub fn with_prev(
        channel: impl Into<String>,
        publication: Publication,
        epoch: String,
        prev: Option<Bytes>,
    ) -> Arc<Self> {
        Arc::new(Self {
            channel: channel.into(),
            publication,
            epoch,
            prev,
            json: OnceLock::new(),
            protobuf: OnceLock::new(),
            patch: OnceLock::new(),
            json_text: OnceLock::new(),
            json_patch: OnceLock::new(),
            protobuf_patch: OnceLock::new(),
        })
    }

    /// The push frame for a subscriber that negotiated Fossil delta. With `base_ok` (the
    /// subscriber's last publication is this one's predecessor in the stream) it is the delta
    /// when there is one and it is smaller than the data; otherwise the whole publication —
    /// in JSON with `data` as a JSON string (Centrifugo's form for delta subscriptions), in
    /// Protobuf the same frame everyone gets. `None`: the payload cannot go over JSON.
    pub fn delta_frame(&self, kind: ProtocolKind, base_ok: bool) -> Option<Bytes> {
        if base_ok && self.prev.is_some() {
            let frame = match kind {
                ProtocolKind::Json => self.json_patch.get_or_init(|| {
                    let patch = self.patch()?;
                    // Inserted runs may split a UTF-8 character: such a delta cannot be a JSON
                    // string, and the whole publication goes instead.
                    let text = std::str::from_utf8(&patch).ok()?;
                    encode_push_with(kind, self, json_string(text)?, true)
                }),
                ProtocolKind::Protobuf => self
                    .protobuf_patch
                    .get_or_init(|| encode_push_with(kind, self, self.patch()?, true)),
            };
            if let Some(frame) = frame {
                return Some(frame.clone());
            }
        }
        match kind {
            ProtocolKind::Json => self
                .json_text
                .get_or_init(|| {
                    let text = std::str::from_utf8(&self.publication.data).ok()?;
                    encode_push_with(kind, self, json_string(text)?, false)
                })
                .clone(),
            ProtocolKind::Protobuf => self.frame(kind),
        }
    }

    fn patch(&self) -> Option<Bytes> {
        self.patch
            .get_or_init(|| {
                let prev = self.prev.as_ref()?;
                let data = &self.publication.data;
                let patch = crate::fossil::create(prev, data);
                (patch.len() < data.len()).then(|| Bytes::from(patch))
            })
            .clone()
    }

    /// The JSON delta frame if it was built (for tests that check it is built once).
    #[cfg(test)]
    pub(crate) fn built_json_patch(&self) -> Option<Bytes> {
        self.json_patch.get().cloned().flatten()
    }

    /// The stream offset (0 without history).
    pub fn offset(&self) -> u64 {
        self.publication.offset
    }

    /// The push frame for `kind`, encoded on first use. `None`: the payload is binary and
    /// cannot go to a JSON connection.
    pub fn frame(&self, kind: ProtocolKind) -> Option<Bytes> {
        match kind {
            ProtocolKind::Json => self.json.get_or_init(|| encode_push(kind, self)).clone(),
            ProtocolKind::Protobuf => Some(
                self.protobuf
                    .get_or_init(|| encode_push(kind, self).unwrap_or_default())
                    .clone(),
            ),
        }
    }
}

fn encode_push(kind: ProtocolKind, msg: &PubMsg) -> Option<Bytes> {
    encode_push_with(kind, msg, msg.publication.data.clone(), false)
}

/// The push of `msg` with `data` in place of its data and the `delta` flag.
fn encode_push_with(kind: ProtocolKind, msg: &PubMsg, data: Bytes, delta: bool) -> Option<Bytes> {
    let reply = Reply {
        push: Some(Push {
            channel: msg.channel.clone(),
            r#pub: Some(Publication {
                data,
                delta,
                // Who it is not for stays on the server.
                exclude: String::new(),
                ..msg.publication.clone()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    encode_reply(kind, &reply).ok()
}

/// Whether `publication` can be written to a JSON connection (its data and its publisher's
/// info are JSON).
pub fn json_writable(publication: &Publication) -> bool {
    serde_json::to_writer(std::io::sink(), publication).is_ok()
}

/// Leaves out of a reply's history or subscribe result the publications a JSON connection
/// cannot carry; returns how many went.
pub fn retain_json_writable(reply: &mut Reply) -> usize {
    let mut dropped = 0;
    let mut retain = |pubs: &mut Vec<Publication>| {
        let before = pubs.len();
        pubs.retain(json_writable);
        dropped += before - pubs.len();
    };
    if let Some(history) = &mut reply.history {
        retain(&mut history.publications);
    }
    if let Some(subscribe) = &mut reply.subscribe {
        retain(&mut subscribe.publications);
    }
    dropped
}

/// `text` as a JSON string literal: how a JSON connection with delta receives `data`.
pub fn json_string(text: &str) -> Option<Bytes> {
    serde_json::to_vec(text).ok().map(Bytes::from)
}
