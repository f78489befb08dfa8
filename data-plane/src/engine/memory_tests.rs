//! Unit tests of the memory engine: streams, their budgets and sweep, and presence.

use super::*;
use bytes::Bytes;

#[derive(Default)]
struct Collect(Mutex<Vec<(String, u64, String)>>);
impl BrokerEvents for Collect {
    fn publication(&self, channel: &str, msg: Arc<PubMsg>) {
        self.0
            .lock()
            .push((channel.to_owned(), msg.offset(), msg.epoch.clone()));
    }
    fn join(&self, _: &str, _: ClientInfo) {}
    fn leave(&self, _: &str, _: ClientInfo) {}
}

fn opts(size: u32, ttl: u64) -> PublishOptions {
    PublishOptions {
        history_size: size,
        history_ttl: Duration::from_secs(ttl),
        history_meta_ttl: Duration::from_secs(3600),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_older_version_is_dropped_until_the_version_epoch_changes() {
    let events = Arc::new(Collect::default());
    let broker = MemoryBroker::new(events.clone(), Arc::default());
    let versioned = |version: u64, epoch: &str| PublishOptions {
        version,
        version_epoch: epoch.into(),
        ..opts(10, 60)
    };
    let publish = |o: PublishOptions| {
        let broker = &broker;
        async move { broker.publish("c", publication(1), &o).await.unwrap() }
    };
    assert_eq!(publish(versioned(5, "a")).await.offset, 1);
    // Same or lower version, same or no epoch: dropped, answered with the top.
    assert_eq!(publish(versioned(5, "a")).await.offset, 1);
    assert_eq!(publish(versioned(4, "")).await.offset, 1);
    assert_eq!(publish(versioned(6, "a")).await.offset, 2);
    // Another epoch counts afresh; unversioned publishes always pass.
    assert_eq!(publish(versioned(1, "b")).await.offset, 3);
    assert_eq!(publish(opts(10, 60)).await.offset, 4);
    assert_eq!(publish(versioned(1, "b")).await.offset, 4);
    let delivered: Vec<u64> = events.0.lock().iter().map(|e| e.1).collect();
    assert_eq!(delivered, vec![1, 2, 3, 4]);
}

/// Every publication `channel` keeps, and its top.
async fn read_all(broker: &MemoryBroker, channel: &str) -> HistoryPage {
    let all = HistoryFilter {
        limit: -1,
        ..Default::default()
    };
    broker.history(channel, all).await.unwrap()
}

fn publication(n: u8) -> Publication {
    Publication {
        data: Bytes::from(format!("{{\"n\":{n}}}")),
        ..Default::default()
    }
}

#[tokio::test]
async fn offsets_are_contiguous_and_history_is_capped_by_size() {
    let events = Arc::new(Collect::default());
    let broker = MemoryBroker::new(events.clone(), Arc::default());
    for n in 1..=5 {
        let pos = broker
            .publish("c", publication(n), &opts(3, 60))
            .await
            .unwrap();
        assert_eq!(pos.offset, n as u64);
    }
    let page = read_all(&broker, "c").await;
    assert_eq!(
        page.publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(page.top.offset, 5);
    assert_eq!(events.0.lock().len(), 5);
}

#[tokio::test]
async fn history_reads_forward_and_reverse_from_a_position() {
    let broker = MemoryBroker::new(Arc::new(Collect::default()), Arc::default());
    let mut epoch = String::new();
    for n in 1..=6 {
        epoch = broker
            .publish("c", publication(n), &opts(10, 60))
            .await
            .unwrap()
            .epoch;
    }
    let since = Some(StreamPosition {
        offset: 2,
        epoch: epoch.clone(),
    });
    let fwd = broker
        .history(
            "c",
            HistoryFilter {
                since: since.clone(),
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        fwd.publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    let rev = broker
        .history(
            "c",
            HistoryFilter {
                since: Some(StreamPosition {
                    offset: 5,
                    epoch: epoch.clone(),
                }),
                limit: -1,
                reverse: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rev.publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
    let wrong = broker
        .history(
            "c",
            HistoryFilter {
                since: Some(StreamPosition {
                    offset: 1,
                    epoch: "other".into(),
                }),
                limit: 1,
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(wrong, Err(EngineError::UnrecoverablePosition)));
}

#[tokio::test(start_paused = true)]
async fn history_expires_after_its_ttl_but_the_position_survives() {
    let broker = MemoryBroker::new(Arc::new(Collect::default()), Arc::default());
    broker
        .publish("c", publication(1), &opts(10, 5))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    let page = read_all(&broker, "c").await;
    assert!(page.publications.is_empty());
    assert_eq!(page.top.offset, 1);
    let pos = broker
        .publish("c", publication(2), &opts(10, 5))
        .await
        .unwrap();
    assert_eq!(pos.offset, 2);
}

#[tokio::test]
async fn idempotent_publishes_are_stored_once() {
    let events = Arc::new(Collect::default());
    let broker = MemoryBroker::new(events.clone(), Arc::default());
    let mut o = opts(10, 60);
    o.idempotency_key = Some("k1".into());
    let a = broker.publish("c", publication(1), &o).await.unwrap();
    let b = broker.publish("c", publication(1), &o).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(events.0.lock().len(), 1);
}

fn budgets(limits: serde_json::Value) -> Arc<Budgets> {
    let b = Arc::new(Budgets::default());
    b.set_limits(
        &rotor_tenant_config::TenantConfig::from_value(limits)
            .unwrap()
            .config,
    );
    b
}

#[tokio::test(start_paused = true)]
async fn history_bytes_follow_trims_expiry_and_removal() {
    let b = budgets(serde_json::json!({}));
    let broker = MemoryBroker::new(Arc::new(Collect::default()), b.clone());
    let one = stored_size(&publication(1));
    for n in 1..=5 {
        broker
            .publish("c", publication(n), &opts(3, 5))
            .await
            .unwrap();
    }
    assert_eq!(b.history_bytes(), 3 * one, "trimmed by count");
    broker
        .publish("d", publication(1), &opts(3, 60))
        .await
        .unwrap();
    assert_eq!(b.channels(), 2);
    broker.remove_history("d").await.unwrap();
    assert_eq!(b.history_bytes(), 3 * one);
    tokio::time::advance(Duration::from_secs(6)).await;
    broker.sweep();
    assert_eq!(b.history_bytes(), 0, "expired data gives its bytes back");
    assert_eq!(b.channels(), 2, "the streams live on for their meta TTL");
    tokio::time::advance(Duration::from_secs(3600)).await;
    broker.sweep();
    assert_eq!(b.channels(), 0, "expired streams give their channels back");
}

#[tokio::test]
async fn the_channel_cap_trims_the_oldest_and_the_tenant_budget_refuses() {
    let one = stored_size(&publication(1));
    let b = budgets(serde_json::json!({"rotor": {
        "max_channel_history_bytes": 2 * one,
        "max_history_bytes": 3 * one,
        "max_channels": 2
    }}));
    let broker = MemoryBroker::new(Arc::new(Collect::default()), b.clone());
    for n in 1..=4 {
        broker
            .publish("a", publication(n), &opts(10, 60))
            .await
            .unwrap();
    }
    let page = read_all(&broker, "a").await;
    let offsets: Vec<u64> = page.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![3, 4]);
    broker
        .publish("b", publication(1), &opts(10, 60))
        .await
        .unwrap();
    let refused = broker.publish("b", publication(2), &opts(10, 60)).await;
    assert!(matches!(
        refused,
        Err(EngineError::Budget(BudgetError::HistoryBytes))
    ));
    // An append that trims as much as it adds still fits the full budget.
    broker
        .publish("a", publication(5), &opts(10, 60))
        .await
        .unwrap();
    assert_eq!(b.history_bytes(), 3 * one);
    let third = broker.publish("c", publication(1), &opts(10, 60)).await;
    assert!(matches!(
        third,
        Err(EngineError::Budget(BudgetError::Channels))
    ));
    // A read needs no channel of the budget.
    let read = broker.history("c", HistoryFilter::default()).await.unwrap();
    assert_eq!(read.top.offset, 0);
    assert_eq!(b.channels(), 2);
    // Without history nothing is stored and no channel is made.
    broker
        .publish("c", publication(1), &opts(0, 0))
        .await
        .unwrap();
    assert_eq!(b.channels(), 2);
}

fn read_top() -> HistoryFilter {
    HistoryFilter {
        limit: 0,
        meta_ttl: Duration::from_secs(3600),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn reads_of_new_channels_hold_no_channel_and_their_streams_are_swept() {
    let b = budgets(serde_json::json!({"rotor": {"max_channels": 3}}));
    let broker = MemoryBroker::new(Arc::new(Collect::default()), b.clone());
    for n in 0..10 {
        let page = broker.history(&format!("r{n}"), read_top()).await.unwrap();
        assert_eq!(page.top.offset, 0);
    }
    assert_eq!(b.channels(), 0, "reads hold no channel");
    assert_eq!(
        broker.empty.load(Ordering::Relaxed),
        3,
        "unwatched empty streams are capped at max_channels"
    );
    for c in ["p1", "p2", "p3"] {
        broker
            .publish(c, publication(1), &opts(10, 60))
            .await
            .unwrap();
    }
    assert_eq!(b.channels(), 3);
    tokio::time::advance(EMPTY_STREAM_TTL + Duration::from_secs(1)).await;
    broker.sweep();
    assert_eq!(broker.empty.load(Ordering::Relaxed), 0);
    let kept: usize = broker.shards.iter().map(|s| s.lock().streams.len()).sum();
    assert_eq!(kept, 3, "only the streams with publications stay");
}

#[tokio::test(start_paused = true)]
async fn the_first_publication_keeps_the_epoch_a_subscriber_read() {
    let b = budgets(serde_json::json!({"rotor": {"max_channels": 3}}));
    let broker = MemoryBroker::new(Arc::new(Collect::default()), b.clone());
    // Straight after the read.
    let read = broker.history("a", read_top()).await.unwrap();
    let pos = broker
        .publish("a", publication(1), &opts(10, 60))
        .await
        .unwrap();
    assert_eq!((pos.offset, &pos.epoch), (1, &read.top.epoch));
    // Long after it, while a local subscriber holds the channel.
    b.hold_channel("s", Holder::Subscribers).unwrap();
    let read = broker.history("s", read_top()).await.unwrap();
    tokio::time::advance(EMPTY_STREAM_TTL * 3).await;
    broker.sweep();
    let pos = broker
        .publish("s", publication(1), &opts(10, 60))
        .await
        .unwrap();
    assert_eq!((pos.offset, &pos.epoch), (1, &read.top.epoch));
    assert_eq!(broker.empty.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn presence_counts_clients_and_distinct_users() {
    let p = MemoryPresence::default();
    for (client, user) in [("a", "u1"), ("b", "u1"), ("c", "u2")] {
        let info = ClientInfo {
            user: user.into(),
            client: client.into(),
            ..Default::default()
        };
        p.add_presence("ch", info).await.unwrap();
    }
    assert_eq!(p.presence_stats("ch").await.unwrap(), (3, 2));
    p.remove_presence("ch", "a", "u1").await.unwrap();
    assert_eq!(p.presence_stats("ch").await.unwrap(), (2, 2));
    assert_eq!(p.presence("ch").await.unwrap().len(), 2);
    // A refresh of an entry counts nothing twice; the last entry of a user removes it.
    let again = ClientInfo {
        user: "u1".into(),
        client: "b".into(),
        ..Default::default()
    };
    p.add_presence("ch", again).await.unwrap();
    assert_eq!(p.presence_stats("ch").await.unwrap(), (2, 2));
    p.remove_presence("ch", "b", "u1").await.unwrap();
    p.remove_presence("ch", "b", "u1").await.unwrap();
    assert_eq!(p.presence_stats("ch").await.unwrap(), (1, 1));
    p.remove_presence("ch", "c", "u2").await.unwrap();
    assert_eq!(p.presence_stats("ch").await.unwrap(), (0, 0));
    assert_eq!(p.channels.lock().len(), 0, "an empty channel is dropped");
}
