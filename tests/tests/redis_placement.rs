//! Redis-engine projects on the operator's Redis deployments, end to end (#23 item 6), over
//! real processes: a control plane, its tenants and two private `redis-server`s besides the
//! shared one. A placed project's tenant publishes into its deployment under its own prefix
//! (nothing on the installation's Redis); `move-project --history drain` copies its keys to the
//! other deployment, the tenant restarts there and a client recovers the history it missed
//! from the new deployment; `--history drop` empties the old prefix; the audit says how many
//! keys moved. Drains onto a three-primary Redis Cluster (and back off it, once the tenant's
//! sharded control subscription is gone) and onto a Sentinel-named primary keep the history the
//! same way. Moves under publishing and failed or interrupted moves: `redis_moves.rs`.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rotor_e2e::placement::*;
use serde_json::json;

#[tokio::test]
async fn a_placed_project_publishes_into_its_deployment_and_moves_with_its_history() -> Result<()> {
    let started = Instant::now();
    let (one, two) = (PrivateRedis::start().await?, PrivateRedis::start().await?);
    let cp = control_plane(EAGER, &[("one", &one), ("two", &two)]).await?;
    // New projects go to `one` while `two` is closed.
    operator(&cp, &["close-redis-deployment", "two"], "").await?;
    let (mgmt, project) =
        chat_project(&cp, "placed@example.com", None, "placed", (20, "300s")).await?;
    let prefix = format!("rotor:{}:", project.id);
    let list = operator(&cp, &["list-redis-deployments"], "").await?;
    assert!(
        list.contains("one\tstandalone") && list.contains("closed\tprojects=0"),
        "{list}"
    );

    // The tenant publishes into `one`, under its own prefix, and nowhere else.
    for i in 1..=3 {
        let r = publish(&cp, &project, "chat:x", i).await?;
        assert_eq!(r["offset"], json!(i), "{r}");
    }
    let epoch = epoch(&cp, &project, "chat:x").await?;
    let on_one = one.keys(&prefix).await?;
    assert!(
        on_one.contains(&format!("{prefix}{{chat:x}}:s")),
        "{on_one:?}"
    );
    assert!(two.keys(&prefix).await?.is_empty());
    let shared = redis::Client::open(rotor_e2e::paths::redis_url())?;
    let mut shared = shared.get_multiplexed_async_connection().await?;
    assert!(
        keys_on(&mut shared, &prefix).await?.is_empty(),
        "nothing on the installation's Redis"
    );

    // Drain to `two` (closed to new projects, open to a move): the keys go over, the old
    // prefix is emptied, the tenant restarts there.
    let moved_at = Instant::now();
    let out = operator(
        &cp,
        &["move-project", &project.id, "two", "--history", "drain"],
        "",
    )
    .await?;
    assert!(
        out.contains("\"keys_moved\":") && out.contains("\"history\":\"drain\""),
        "{out}"
    );
    assert_eq!(two.keys(&prefix).await?, on_one);
    assert!(one.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    let restart = moved_at.elapsed();
    // A client that saw offset 1 recovers 2 and 3 from `two`, in the same epoch.
    let sub = recover(&cp, &project, &epoch, 1).await?;
    let offsets: Vec<u64> = sub["publications"]
        .as_array()
        .with_context(|| format!("publications: {sub}"))?
        .iter()
        .map(|p| p["offset"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        (offsets, sub["recovered"].clone()),
        (vec![2, 3], json!(true)),
        "{sub}"
    );
    assert_eq!(sub["epoch"], json!(epoch));
    let r = publish(&cp, &project, "chat:x", 4).await?;
    assert_eq!(r["offset"], json!(4), "the stream goes on on `two`: {r}");
    let audit = audit_after(&cp, "operator.move_project").await?;
    assert_eq!(audit[0]["keys_moved"], json!(on_one.len()), "{audit:?}");
    assert_eq!(audit[0]["redis_deployment"], json!("two"));

    // Drop back to `one`: `two`'s prefix is emptied and the history is gone.
    let out = operator(
        &cp,
        &["move-project", &project.id, "one", "--history", "drop"],
        "",
    )
    .await?;
    assert!(out.contains("\"keys_moved\":0"), "{out}");
    assert!(two.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    let history = history(&cp, &project, "chat:x", -1).await?;
    assert!(
        history["publications"].as_array().is_none_or(Vec::is_empty),
        "{history}"
    );
    let r = publish(&cp, &project, "chat:x", 5).await?;
    assert_eq!(r["offset"], json!(1), "a new stream on `one`: {r}");
    assert!(!one.keys(&prefix).await?.is_empty());
    let audit = audit_after(&cp, "operator.move_project").await?;
    assert_eq!(audit[1]["history"], json!("drop"), "{audit:?}");
    // The control plane never logged a deployment's password.
    let log = cp.process.as_ref().map(|p| p.output()).unwrap_or_default();
    assert!(!log.contains(PASSWORD), "the control plane logged a secret");
    eprintln!(
        "placement e2e: drain move → tenant restarted on the new deployment in {restart:?}; {} keys moved; whole test {:?}",
        on_one.len(),
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_drain_move_onto_a_redis_cluster_keeps_the_history() -> Result<()> {
    let (one, cluster) = (PrivateRedis::start().await?, PrivateCluster::start().await?);
    let cp = control_plane(EAGER, &[("one", &one)]).await?;
    let (mgmt, project) = chat_project(
        &cp,
        "to-cluster@example.com",
        None,
        "clustered",
        (50, "300s"),
    )
    .await?;
    let prefix = format!("rotor:{}:", project.id);
    // Channels spread over the cluster's slots.
    let channels: Vec<String> = (0..8).map(|i| format!("chat:room{i}")).collect();
    for channel in &channels {
        for n in 1..=2 {
            publish(&cp, &project, channel, n).await?;
        }
    }
    let epoch = epoch(&cp, &project, "chat:room3").await?;
    let on_one = one.keys(&prefix).await?;
    ensure!(on_one.len() >= channels.len(), "{on_one:?}");

    let seeds: Vec<String> = cluster
        .ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    operator(
        &cp,
        &["add-redis-deployment", "cluster"],
        &json!({"cluster_address": seeds}).to_string(),
    )
    .await?;
    let out = operator(
        &cp,
        &["move-project", &project.id, "cluster", "--history", "drain"],
        "",
    )
    .await?;
    assert!(
        out.contains(&format!("\"keys_moved\":{}", on_one.len())),
        "{out}"
    );
    assert_eq!(cluster.keys(&prefix).await?, on_one);
    assert!(one.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    // Every channel's history is served from the cluster, and a client recovers from it.
    for channel in &channels {
        let h = history(&cp, &project, channel, -1).await?;
        assert_eq!(
            h["publications"].as_array().map(Vec::len),
            Some(2),
            "{channel}: {h}"
        );
    }
    let sub = recover_on(&cp, &project, "chat:room3", &epoch, 1).await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(sub["publications"][0]["offset"], json!(2), "{sub}");
    let r = publish(&cp, &project, "chat:room3", 3).await?;
    assert_eq!(r["offset"], json!(3), "{r}");

    // The tenant listens on the cluster now (its control topic, sharded, in its own slot), and
    // a move off the cluster waits until it no longer does, then drains back to `one`.
    let control = format!("{prefix}{{control}}");
    let mut listening = 0;
    for port in &cluster.ports {
        let mut conn = connect_within(&format!("redis://127.0.0.1:{port}")).await?;
        listening += subscribers(&mut conn, &control, true).await?;
    }
    assert_eq!(listening, 1, "one tenant process on the cluster");
    operator(
        &cp,
        &["move-project", &project.id, "one", "--history", "drain"],
        "",
    )
    .await?;
    assert!(cluster.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    let h = history(&cp, &project, "chat:room3", -1).await?;
    assert_eq!(h["publications"].as_array().map(Vec::len), Some(3), "{h}");
    assert_eq!(h["epoch"], json!(epoch), "{h}");
    Ok(())
}

#[tokio::test]
async fn a_drain_move_onto_a_sentinel_group_keeps_the_history() -> Result<()> {
    let (one, primary) = (PrivateRedis::start().await?, PrivateRedis::start().await?);
    let sentinel = PrivateSentinel::start(&primary).await?;
    let cp = control_plane(EAGER, &[("one", &one)]).await?;
    let (mgmt, project) = chat_project(
        &cp,
        "to-sentinel@example.com",
        None,
        "watched",
        (20, "300s"),
    )
    .await?;
    let prefix = format!("rotor:{}:", project.id);
    for n in 1..=3 {
        publish(&cp, &project, "chat:x", n).await?;
    }
    let epoch = epoch(&cp, &project, "chat:x").await?;
    let on_one = one.keys(&prefix).await?;

    // The Sentinel form with the primary's password in a redis+sentinel:// address.
    let address = format!(
        "redis+sentinel://:{PASSWORD}@127.0.0.1:{}/main",
        sentinel.port
    );
    operator(
        &cp,
        &["add-redis-deployment", "watched"],
        &json!({"address": address}).to_string(),
    )
    .await?;
    let list = operator(&cp, &["list-redis-deployments"], "").await?;
    assert!(
        list.contains(&format!(
            "watched\tsentinel\tredis+sentinel://127.0.0.1:{}/main",
            sentinel.port
        )),
        "{list}"
    );
    operator(
        &cp,
        &["move-project", &project.id, "watched", "--history", "drain"],
        "",
    )
    .await?;
    assert_eq!(primary.keys(&prefix).await?, on_one);
    assert!(one.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    let sub = recover(&cp, &project, &epoch, 1).await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(
        sub["publications"].as_array().map(Vec::len),
        Some(2),
        "{sub}"
    );
    let r = publish(&cp, &project, "chat:x", 4).await?;
    assert_eq!(r["offset"], json!(4), "{r}");
    Ok(())
}
