//! Unit tests of the hub: engine subscriptions shared by a channel's subscribers, channel
//! holds, join/leave counting, delta frames and tags filters in fan-out.

use super::*;
use crate::protocol::{ProtocolKind, Publication};

fn client(id: &str) -> Arc<ClientHandle> {
    Arc::new(ClientHandle::new(
        Arc::from(id),
        ProtocolKind::Json,
        1 << 20,
    ))
}

#[tokio::test]
async fn later_subscribers_wait_for_the_first_ones_engine_subscription() {
    let hub = Hub::new(Arc::new(Metrics::default()), Arc::default());
    let flags = SubFlags::default();
    assert!(matches!(
        hub.add_pending("c", &client("a"), flags, None).unwrap(),
        Joined::First
    ));
    let Joined::Wait(mut b) = hub.add_pending("c", &client("b"), flags, None).unwrap() else {
        panic!("the second subscriber waits while the engine subscribes");
    };
    assert_eq!(*b.borrow(), EngineSubscription::Pending);
    hub.engine_subscribed("c", true);
    let state = *b
        .wait_for(|s| *s != EngineSubscription::Pending)
        .await
        .unwrap();
    assert_eq!(state, EngineSubscription::Active);
    assert!(matches!(
        hub.add_pending("c", &client("c"), flags, None).unwrap(),
        Joined::Active
    ));
}

#[test]
fn a_channel_is_held_from_its_first_subscriber_to_its_last() {
    let budgets = Arc::new(Budgets::default());
    budgets.set_limits(
        &rotor_tenant_config::TenantConfig::from_value(
            serde_json::json!({"rotor": {"max_channels": 1}}),
        )
        .unwrap()
        .config,
    );
    let hub = Hub::new(Arc::new(Metrics::default()), budgets.clone());
    let flags = SubFlags::default();
    hub.add_pending("c", &client("a"), flags, None).unwrap();
    hub.add_pending("c", &client("b"), flags, None).unwrap();
    assert!(matches!(
        hub.add_pending("d", &client("a"), flags, None),
        Err(BudgetError::Channels)
    ));
    assert!(!hub.remove("c", "a"));
    assert_eq!(budgets.channels(), 1);
    assert!(hub.remove("c", "b"));
    assert_eq!(budgets.channels(), 0);
    hub.add_pending("d", &client("a"), flags, None).unwrap();
}

#[tokio::test]
async fn a_failed_engine_subscription_fails_the_waiting_subscribers() {
    let hub = Hub::new(Arc::new(Metrics::default()), Arc::default());
    let flags = SubFlags::default();
    assert!(matches!(
        hub.add_pending("c", &client("a"), flags, None).unwrap(),
        Joined::First
    ));
    let Joined::Wait(mut b) = hub.add_pending("c", &client("b"), flags, None).unwrap() else {
        panic!("waits");
    };
    hub.engine_subscribed("c", false);
    let state = *b
        .wait_for(|s| *s != EngineSubscription::Pending)
        .await
        .unwrap();
    assert_eq!(state, EngineSubscription::Failed);
    // Once every subscriber left, the next one subscribes in the engine again.
    hub.remove("c", "a");
    hub.remove("c", "b");
    assert!(matches!(
        hub.add_pending("c", &client("d"), flags, None).unwrap(),
        Joined::First
    ));
}

#[test]
fn join_and_leave_pushes_count_in_their_namespace_as_in_the_project() {
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(metrics.clone(), Arc::default());
    let flags = SubFlags {
        push_join_leave: true,
        ..Default::default()
    };
    for id in ["a", "b"] {
        let _ = hub.add_pending("chat:r", &client(id), flags, None).unwrap();
        assert!(hub.activate("chat:r", id, None, None));
    }
    let info = ClientInfo {
        user: "u".into(),
        client: "b".into(),
        ..Default::default()
    };
    hub.join("chat:r", info.clone());
    hub.leave("chat:r", info);
    assert_eq!(metrics.messages_delivered.get(), 4);
    assert_eq!(metrics.namespaces.snapshot()["chat"].delivered, 4);
}

fn frames(c: &ClientHandle) -> (Vec<String>, usize) {
    let (items, _) = c.outbox.drain();
    let mut out = Vec::new();
    let mut controls = 0;
    for item in items {
        match item {
            crate::client::OutItem::Frame(f) => out.push(String::from_utf8_lossy(&f).into()),
            crate::client::OutItem::Control(_) => controls += 1,
        }
    }
    (out, controls)
}

#[test]
fn delta_subscribers_get_whole_first_then_deltas_and_share_one_encoding() {
    let hub = Hub::new(Arc::new(Metrics::default()), Arc::default());
    let delta = SubFlags {
        delta: true,
        ..Default::default()
    };
    let (d1, d2, plain) = (client("d1"), client("d2"), client("plain"));
    let pb = Arc::new(ClientHandle::new(
        Arc::from("pb"),
        ProtocolKind::Protobuf,
        1 << 20,
    ));
    for (c, flags) in [
        (&d1, delta),
        (&d2, delta),
        (&plain, SubFlags::default()),
        (&pb, delta),
    ] {
        hub.add_pending("c", c, flags, None).unwrap();
        assert!(hub.activate("c", &c.id, None, None));
    }
    let doc = |n: u32| format!(r#"{{"n":{n},"padding":"{}"}}"#, "x".repeat(200));
    let mut sent = Vec::new();
    let mut prev: Option<Bytes> = None;
    for n in 1..=3u64 {
        let data = Bytes::from(doc(n as u32));
        let publication = Publication {
            data: data.clone(),
            offset: n,
            ..Default::default()
        };
        let msg = PubMsg::with_prev("c", publication, "e".into(), prev.take());
        hub.publication("c", msg.clone());
        sent.push(msg);
        prev = Some(data);
    }
    // One delta encoding per protocol, shared by every delta subscriber.
    let json_patch = sent[1].built_json_patch().unwrap();
    let (d1_frames, _) = frames(&d1);
    let (d2_frames, _) = frames(&d2);
    assert_eq!(d1_frames, d2_frames);
    assert_eq!(d1_frames[1].as_bytes(), &json_patch[..]);
    let pubs: Vec<serde_json::Value> = d1_frames
        .iter()
        .map(|f| serde_json::from_str::<serde_json::Value>(f).unwrap()["push"]["pub"].clone())
        .collect();
    // First whole, as a JSON string; then deltas that rebuild each document.
    assert_eq!(pubs[0]["delta"], serde_json::Value::Null);
    let mut base = pubs[0]["data"].as_str().unwrap().as_bytes().to_vec();
    assert_eq!(base, doc(1).as_bytes());
    for (i, p) in pubs.iter().enumerate().skip(1) {
        assert_eq!(p["delta"], true);
        let patch = p["data"].as_str().unwrap().as_bytes();
        base = crate::fossil::apply(&base, patch).unwrap();
        assert_eq!(base, doc(i as u32 + 1).as_bytes());
    }
    // The plain subscriber gets the usual frames, data as raw JSON.
    let (plain_frames, _) = frames(&plain);
    for (i, f) in plain_frames.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(f).unwrap();
        assert_eq!(v["push"]["pub"]["data"]["n"], i as u64 + 1);
    }
    // Protobuf: whole bytes, then raw delta bytes.
    use prost::Message as _;
    let (items, _) = pb.outbox.drain();
    let pb_pubs: Vec<Publication> = items
        .into_iter()
        .map(|item| match item {
            crate::client::OutItem::Frame(f) => Reply::decode_length_delimited(&f[..])
                .unwrap()
                .push
                .unwrap()
                .r#pub
                .unwrap(),
            crate::client::OutItem::Control(_) => panic!("no control expected"),
        })
        .collect();
    assert!(!pb_pubs[0].delta);
    assert_eq!(pb_pubs[0].data, doc(1).as_bytes());
    let mut base = pb_pubs[0].data.to_vec();
    for (i, p) in pb_pubs.iter().enumerate().skip(1) {
        assert!(p.delta);
        base = crate::fossil::apply(&base, &p.data).unwrap();
        assert_eq!(base, doc(i as u32 + 1).as_bytes());
    }
}

#[test]
fn a_delta_subscriber_that_missed_the_previous_publication_gets_the_next_whole() {
    let hub = Hub::new(Arc::new(Metrics::default()), Arc::default());
    let d = client("d");
    let flags = SubFlags {
        delta: true,
        ..Default::default()
    };
    hub.add_pending("c", &d, flags, None).unwrap();
    assert!(hub.activate("c", &d.id, None, None));
    let publish = |n: u64, prev: &str| {
        let publication = Publication {
            data: Bytes::from(format!(r#"{{"n":{n},"pad":"{}"}}"#, "y".repeat(100))),
            offset: n,
            ..Default::default()
        };
        let prev = Bytes::from(format!(r#"{{"n":{prev},"pad":"{}"}}"#, "y".repeat(100)));
        hub.publication(
            "c",
            PubMsg::with_prev("c", publication, "e".into(), Some(prev)),
        );
    };
    publish(4, "3"); // first after subscribing: whole
    publish(6, "5"); // offset 5 never arrived: whole
    publish(7, "6"); // delta
    let (f, _) = frames(&d);
    let delta: Vec<bool> = f
        .iter()
        .map(|f| {
            serde_json::from_str::<serde_json::Value>(f).unwrap()["push"]["pub"]["delta"] == true
        })
        .collect();
    assert_eq!(delta, [false, false, true]);
}

#[test]
fn each_distinct_filter_is_checked_once_and_positions_advance_past_filtered_publications() {
    use crate::protocol::FilterNode;
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(metrics.clone(), Arc::default());
    let eq = |v: &str| FilterNode {
        key: "t".into(),
        cmp: "eq".into(),
        val: v.into(),
        ..Default::default()
    };
    // Three subscribers share the `t == a` filter (one written as an `or` of itself), one
    // filters `t == b`, one has no filter.
    let or_a = FilterNode {
        op: "or".into(),
        nodes: vec![eq("a"), eq("a")],
        ..Default::default()
    };
    let filters = [Some(eq("a")), Some(eq("a")), Some(eq("b")), None];
    let positioned = SubFlags {
        positioned: true,
        ..Default::default()
    };
    let clients: Vec<_> = ["a1", "a2", "b", "all"]
        .iter()
        .map(|id| client(id))
        .collect();
    for (c, f) in clients.iter().zip(filters) {
        let f = f.map(|f| TagsFilter::compile(&f).unwrap());
        hub.add_pending("c", c, positioned, f).unwrap();
    }
    let or = client("a3");
    let or_filter = TagsFilter::compile(&or_a).unwrap();
    hub.add_pending("c", &or, positioned, Some(or_filter))
        .unwrap();
    let top = StreamPosition {
        offset: 0,
        epoch: "e".into(),
    };
    for c in clients.iter().chain([&or]) {
        assert!(hub.activate("c", &c.id, Some(&top), None));
    }
    for (offset, tag) in [(1, "a"), (2, "b"), (3, "a")] {
        let publication = Publication {
            data: bytes::Bytes::from(format!("{offset}")),
            offset,
            tags: [("t".to_owned(), tag.to_owned())].into(),
            ..Default::default()
        };
        hub.publication("c", PubMsg::new("c", publication, "e".into()));
    }
    // Two distinct filters, three publications.
    assert_eq!(metrics.tags_filter_evaluations.get(), 6);
    let offsets = |c: &ClientHandle| {
        let (frames, controls) = frames(c);
        assert_eq!(controls, 0, "no gap is reported for filtered publications");
        frames
            .iter()
            .map(|f| {
                serde_json::from_str::<serde_json::Value>(f).unwrap()["push"]["pub"]["offset"]
                    .as_u64()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(offsets(&clients[0]), vec![1, 3]);
    assert_eq!(offsets(&clients[1]), vec![1, 3]);
    assert_eq!(offsets(&or), vec![1, 3]);
    assert_eq!(offsets(&clients[2]), vec![2]);
    assert_eq!(offsets(&clients[3]), vec![1, 2, 3]);
    assert_eq!(metrics.tags_filter_dropped.get(), 5);
    // The last user of a filter takes its slot along.
    for id in ["a1", "a2", "a3"] {
        hub.remove("c", id);
    }
    let shard = hub.shard("c").lock();
    assert_eq!(shard["c"].filters.len(), 1);
}
