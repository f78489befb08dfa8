// centrifuge-js core flow, over JSON or Protobuf (ROTOR_FORMAT): connect with a token,
// subscribe, publish from the client and from the server API, history, presence, join/leave,
// and recovery of the publications missed while disconnected.
//
// Needs a `chat` namespace with presence, join_leave + force_push_join_leave, history and
// force_recovery, subscribe/publish/history/presence allowed for subscribers, and channels
// without a namespace open to subscribe and publish for subscribers.
//
// Prints {format, a, b, first_subscribe, join, …}; see tests/tests/interop_js.rs for the exact
// expectations.

import {
  FORMAT,
  api,
  num,
  connect,
  enc,
  dec,
  finish,
  newClient,
  newSubscription,
  run,
  subscribe,
  token,
} from './common.mjs';

const CHANNEL = 'chat:interop';

function pubView(e, aClient) {
  return {
    data: e.data,
    offset: e.offset,
    info: e.info ? { user: e.info.user, from_a: e.info.client === aClient } : null,
    tags: e.tags,
  };
}

run(async () => {
  const out = { format: FORMAT };

  // Connect alice (A) with a token.
  const A = newClient('alice', { token: token({ sub: 'alice' }) });
  const aClient = await connect(A.client, A.log);
  const aConnected = A.log.items.find((e) => e.ev === 'connected');
  out.a = { client_id_len: aClient.length, transport: aConnected.transport };

  // Subscribe A to a recoverable channel.
  const subA = newSubscription(A.client, A.log, CHANNEL);
  const first = await subscribe(subA, A.log);
  const epoch = first.epoch;
  out.first_subscribe = {
    recoverable: first.recoverable,
    positioned: first.positioned,
    wasRecovering: first.wasRecovering,
    recovered: first.recovered,
    offset: first.offset,
    epoch_nonempty: typeof epoch === 'string' && epoch.length > 0,
  };

  // Bob (B) connects and subscribes; A sees B's join.
  const B = newClient('bob', { token: token({ sub: 'bob' }) });
  const bClient = await connect(B.client, B.log);
  out.b = { distinct_client_id: bClient !== aClient && bClient.length > 0 };
  const subB = newSubscription(B.client, B.log, CHANNEL);
  await subscribe(subB, B.log);
  const join = await A.log.wait(
    "bob's join",
    (e) => e.ev === 'join' && e.info && e.info.client === bClient,
  );
  out.join = { user: join.info.user, channel: join.channel };

  // Publish from A's subscription, then from the server API; both clients get both, in order.
  const aMark = A.log.mark();
  const bMark = B.log.mark();
  out.client_publish = await subA.publish(enc({ text: 'from client', n: 1 }));
  const apiReply = await api('publish', {
    channel: CHANNEL,
    data: { text: 'from api', n: 2 },
    tags: { source: 'api' },
  });
  out.api_publish = apiReply.result
    ? { offset: apiReply.result.offset, epoch_matches: apiReply.result.epoch === epoch }
    : apiReply;
  const isPub = (e) => e.ev === 'pub' && e.channel === CHANNEL;
  out.a_pubs = (await A.log.waitCount('publications on A', isPub, 2, aMark)).map((e) =>
    pubView(e, aClient),
  );
  out.b_pubs = (await B.log.waitCount('publications on B', isPub, 2, bMark)).map((e) =>
    pubView(e, aClient),
  );

  // History: everything, then only the top.
  const history = await subA.history({ limit: -1 });
  out.history = {
    offset: num(history.offset),
    epoch_matches: history.epoch === epoch,
    publications: history.publications.map((p) => ({
      data: dec(p.data),
      offset: num(p.offset) || null,
      info: p.info ? { user: p.info.user, from_a: p.info.client === aClient } : null,
      tags: p.tags === undefined || Object.keys(p.tags).length === 0 ? null : p.tags,
    })),
  };
  const top = await A.client.history(CHANNEL, { limit: 0 });
  out.history_top = { offset: num(top.offset), count: top.publications.length };
  const since = await subA.history({ limit: 10, since: { offset: 1, epoch } });
  out.history_since_1 = since.publications.map((p) => num(p.offset));
  const reversed = await subA.history({ limit: 1, reverse: true });
  out.history_reverse_1 = reversed.publications.map((p) => num(p.offset));

  // Presence and presence stats with both subscribed.
  const presence = await subA.presence();
  out.presence = Object.entries(presence.clients)
    .map(([key, info]) => ({
      user: info.user,
      key_is_client: key === info.client,
      who: info.client === aClient ? 'a' : info.client === bClient ? 'b' : 'other',
    }))
    .sort((x, y) => x.user.localeCompare(y.user));
  out.presence_stats = await subA.presenceStats();

  // Recovery: A goes offline, two publications happen, A comes back and gets exactly those.
  // Bob seeing Alice's leave shows the server has dropped her connection, so the two
  // publications cannot reach her old socket and must come from recovery.
  const bLeaveMark = B.log.mark();
  A.client.disconnect();
  const aLeave = await B.log.wait(
    "alice's leave",
    (e) => e.ev === 'leave' && e.info && e.info.client === aClient,
    bLeaveMark,
  );
  out.b_saw_a_leave = aLeave.info.user;
  out.offline_publishes = [];
  for (const n of [3, 4]) {
    const r = await api('publish', { channel: CHANNEL, data: { text: 'while offline', n } });
    out.offline_publishes.push(r.result ? r.result.offset : r);
  }
  const reMark = A.log.mark();
  A.client.connect();
  const resub = await A.log.wait(
    'resubscribe after reconnect',
    (e) => e.channel === CHANNEL && (e.ev === 'subscribed' || e.ev === 'unsubscribed'),
    reMark,
  );
  out.resubscribe = {
    ev: resub.ev,
    wasRecovering: resub.wasRecovering,
    recovered: resub.recovered,
    hasRecoveredPublications: resub.hasRecoveredPublications,
    epoch_matches: resub.epoch === epoch,
  };
  // One live publication after the recovered ones proves nothing is duplicated or lost.
  await api('publish', { channel: CHANNEL, data: { text: 'after recovery', n: 5 } });
  out.recovered_pubs = (await A.log.waitCount('recovered + live publications', isPub, 3, reMark)).map(
    (e) => pubView(e, aClient),
  );
  out.reconnect_events = A.log
    .since(reMark, (e) => e.ev === 'connecting' || e.ev === 'error' || e.ev === 'subscribing')
    .map((e) => e.ev);
  // Bob stayed subscribed throughout and saw all five once.
  out.b_offsets = (await B.log.waitCount("bob's publications", isPub, 5)).map((e) => e.offset);
  out.b_offsets_total = B.log.since(0, isPub).length;

  // B disconnects: A sees the leave and presence drops to one.
  const aClientNow = A.log.since(reMark, (e) => e.ev === 'connected')[0].client;
  const leaveMark = A.log.mark();
  B.client.disconnect();
  const leave = await A.log.wait(
    "bob's leave",
    (e) => e.ev === 'leave' && e.info && e.info.client === bClient,
    leaveMark,
  );
  out.leave = { user: leave.info.user, channel: leave.channel };
  out.presence_stats_after_leave = await subA.presenceStats();
  const presenceAfter = await subA.presence();
  out.presence_after_leave = Object.values(presenceAfter.clients).map((info) => ({
    user: info.user,
    current_client: info.client === aClientNow,
  }));

  // Protobuf only: non-JSON binary payloads both ways, byte for byte.
  if (FORMAT === 'protobuf') {
    const BIN = 'binary';
    const subBin = newSubscription(A.client, A.log, BIN);
    await subscribe(subBin, A.log);
    const binMark = A.log.mark();
    const bytes = [0, 1, 2, 127, 128, 200, 254, 255];
    await subBin.publish(new Uint8Array(bytes));
    out.binary_api_publish = await api('publish', {
      channel: BIN,
      b64data: Buffer.from([255, 0, 10, 13, 34]).toString('base64'),
    });
    const binPubs = await A.log.waitCount(
      'binary publications',
      (e) => e.ev === 'pub' && e.channel === BIN,
      2,
      binMark,
    );
    out.binary_pubs = binPubs.map((e) => ({ raw: e.raw, offset: e.offset, from_a: !!e.info }));
  }

  // Nothing unexpected along the way.
  out.a_unexpected = A.log.items
    .filter((e) => e.ev === 'sub_error' || e.ev === 'unsubscribed' || e.ev === 'error')
    .map((e) => ({ ev: e.ev, code: e.code, message: e.message || e.reason }));
  out.b_unexpected = B.log.items
    .filter((e) => e.ev === 'sub_error' || e.ev === 'unsubscribed' || e.ev === 'error')
    .map((e) => ({ ev: e.ev, code: e.code, message: e.message || e.reason }));

  finish(out, [A.client, B.client]);
});
