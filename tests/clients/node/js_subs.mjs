// centrifuge-js subscription flavours, over JSON or Protobuf (ROTOR_FORMAT): subscription tokens
// (getToken, expired → 109 → fresh token, wrong secret → 103, wrong channel → close 3500),
// server-side subscriptions from the connection token's `channels` claim (publications and
// recovery through the connect command), server-side subscribe/unsubscribe through the API,
// client unsubscribe (leave, presence), history with a stale epoch (112), recovery after a gap
// that history no longer covers (recovered: false), idempotent API publishes, an API refresh
// expiring a connection (3005), and — JSON only — a binary publication reaching a JSON
// connection (close 3506).
//
// Needs the same config as js_core.mjs (see tests/src/interop.rs).
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import {
  FORMAT,
  api,
  callError,
  connect,
  finish,
  newClient,
  newSubscription,
  nowSeconds,
  run,
  subscribe,
  token,
} from './common.mjs';

function pubView(e) {
  return { channel: e.channel, data: e.data, offset: e.offset, info: e.info ? e.info.user : null };
}

run(async () => {
  const out = { format: FORMAT };
  const clients = [];

  // --- Subscription tokens -------------------------------------------------------------------
  const A = newClient('alice', { token: token({ sub: 'alice' }) });
  clients.push(A.client);
  await connect(A.client, A.log);

  // getToken supplies the token of a `$` channel.
  const asked = [];
  const priv = newSubscription(A.client, A.log, '$room', {
    getToken: async (ctx) => {
      asked.push(ctx.channel);
      return token({ sub: 'alice', channel: '$room' });
    },
  });
  await subscribe(priv, A.log);
  out.sub_token = { asked };

  // An expired subscription token: 109, then getToken.
  const refreshed = [];
  const expiring = newSubscription(A.client, A.log, '$expiring', {
    token: token({ sub: 'alice', channel: '$expiring', exp: nowSeconds() - 60 }),
    getToken: async (ctx) => {
      refreshed.push(ctx.channel);
      return token({ sub: 'alice', channel: '$expiring', exp: nowSeconds() + 3600 });
    },
  });
  const expMark = A.log.mark();
  await subscribe(expiring, A.log);
  out.sub_token_expired = {
    asked: refreshed,
    errors: A.log
      .since(expMark, (e) => e.ev === 'sub_error' && e.channel === '$expiring')
      .map((e) => ({ type: e.type, code: e.code })),
  };

  // A subscription token signed with another secret: 103, the subscription ends.
  const forged = newSubscription(A.client, A.log, '$forged', {
    token: token({ sub: 'alice', channel: '$forged' }, 'not-the-server-secret-0123456789'),
  });
  const forgedMark = A.log.mark();
  forged.subscribe();
  const forgedEnd = await A.log.wait(
    'end of the forged subscription',
    (e) => e.channel === '$forged' && (e.ev === 'unsubscribed' || e.ev === 'subscribed'),
    forgedMark,
  );
  out.sub_token_forged = { ev: forgedEnd.ev, code: forgedEnd.code, state: A.client.state };

  // History with a stale epoch: 112.
  await subscribe(newSubscription(A.client, A.log, 'chat:epochs'), A.log);
  await api('publish', { channel: 'chat:epochs', data: { n: 1 } });
  out.history_stale_epoch = await callError(
    'history since a stale epoch',
    A.client.history('chat:epochs', { limit: 10, since: { offset: 0, epoch: 'stale-epoch' } }),
  );

  // --- Server-side subscriptions from the connection token ------------------------------------
  // Alice watches the channel to see Sam's join and leave.
  await subscribe(newSubscription(A.client, A.log, 'chat:server'), A.log);
  const S = newClient('sam', { token: token({ sub: 'sam', channels: ['chat:server'] }) });
  clients.push(S.client);
  const samClient = await connect(S.client, S.log);
  const serverSub = await S.log.wait(
    'server-side subscription',
    (e) => e.ev === 'server_subscribed' && e.channel === 'chat:server',
  );
  out.server_side = {
    recoverable: serverSub.recoverable,
    positioned: serverSub.positioned,
    wasRecovering: serverSub.wasRecovering,
    offset: serverSub.offset,
  };
  let sMark = S.log.mark();
  await api('publish', { channel: 'chat:server', data: { n: 1 } });
  out.server_side_pubs = [
    pubView(await S.log.wait('server-side publication', (e) => e.ev === 'server_pub', sMark)),
  ];

  // Offline gap on a server-side subscription: recovered through the connect command. Alice
  // seeing Sam's leave shows the server has dropped his connection before the publications.
  const samLeaveMark = A.log.mark();
  S.client.disconnect();
  await A.log.wait(
    "sam's leave",
    (e) => e.ev === 'leave' && e.channel === 'chat:server' && e.info.client === samClient,
    samLeaveMark,
  );
  for (const n of [2, 3]) {
    await api('publish', { channel: 'chat:server', data: { n } });
  }
  sMark = S.log.mark();
  S.client.connect();
  const reSub = await S.log.wait(
    'server-side resubscription',
    (e) => e.ev === 'server_subscribed' && e.channel === 'chat:server',
    sMark,
  );
  out.server_side_recovery = {
    wasRecovering: reSub.wasRecovering,
    recovered: reSub.recovered,
    pubs: (await S.log.waitCount('recovered publications', (e) => e.ev === 'server_pub', 2, sMark)).map(
      pubView,
    ),
  };

  // Server API subscribe / unsubscribe of a connected user.
  sMark = S.log.mark();
  out.api_subscribe = await api('subscribe', { user: 'sam', channel: 'chat:pushed' });
  const pushed = await S.log.wait(
    'API subscribe',
    (e) => e.ev === 'server_subscribed' && e.channel === 'chat:pushed',
    sMark,
  );
  out.api_subscribed = { recoverable: pushed.recoverable, positioned: pushed.positioned };
  await api('publish', { channel: 'chat:pushed', data: { n: 1 } });
  out.api_subscribed_pub = pubView(
    await S.log.wait(
      'publication on the API subscription',
      (e) => e.ev === 'server_pub' && e.channel === 'chat:pushed',
      sMark,
    ),
  );
  sMark = S.log.mark();
  out.api_unsubscribe = await api('unsubscribe', { user: 'sam', channel: 'chat:pushed' });
  await S.log.wait(
    'API unsubscribe',
    (e) => e.ev === 'server_unsubscribed' && e.channel === 'chat:pushed',
    sMark,
  );
  // (Sam's own disconnect() above is code 0.)
  out.server_side_unexpected = S.log.items
    .filter((e) => e.ev === 'error' || (e.ev === 'disconnected' && e.code !== 0))
    .map((e) => ({ ev: e.ev, code: e.code }));

  // --- Client unsubscribe: leave and presence --------------------------------------------------
  const B = newClient('bob', { token: token({ sub: 'bob' }) });
  clients.push(B.client);
  await connect(B.client, B.log);
  const subB = newSubscription(B.client, B.log, 'chat:leave');
  const subA = newSubscription(A.client, A.log, 'chat:leave');
  await subscribe(subA, A.log);
  await subscribe(subB, B.log);
  const before = await subA.presenceStats();
  const leaveMark = A.log.mark();
  subB.unsubscribe();
  const leave = await A.log.wait(
    "bob's leave",
    (e) => e.ev === 'leave' && e.channel === 'chat:leave',
    leaveMark,
  );
  const after = await subA.presenceStats();
  out.client_unsubscribe = {
    leave_user: leave.info.user,
    before,
    after,
    bob_sub_state: subB.state,
    bob_unsubscribed: B.log.since(0, (e) => e.ev === 'unsubscribed').map((e) => e.code),
  };

  // --- A gap recovery cannot fill (history removed meanwhile), idempotent API publishes, and an
  // API refresh that expires the connection ---------------------------------------------------
  const GONE = 'chat:gone';
  await subscribe(newSubscription(A.client, A.log, GONE), A.log);
  const R = newClient('rita', { token: token({ sub: 'rita' }) });
  clients.push(R.client);
  const ritaClient = await connect(R.client, R.log);
  await subscribe(newSubscription(R.client, R.log, GONE), R.log);
  const isGonePub = (e) => e.ev === 'pub' && e.channel === GONE;
  await api('publish', { channel: GONE, data: { n: 1 } });
  await R.log.wait('first publication', isGonePub);
  const ritaLeaveMark = A.log.mark();
  R.client.disconnect();
  await A.log.wait(
    "rita's leave",
    (e) => e.ev === 'leave' && e.channel === GONE && e.info.client === ritaClient,
    ritaLeaveMark,
  );
  await api('publish', { channel: GONE, data: { n: 2 } });
  out.history_remove = await api('history_remove', { channel: GONE });
  const rMark = R.log.mark();
  R.client.connect();
  const unrecovered = await R.log.wait(
    'resubscribe after the gap',
    (e) => e.ev === 'subscribed' && e.channel === GONE,
    rMark,
  );
  out.unrecovered = {
    wasRecovering: unrecovered.wasRecovering,
    recovered: unrecovered.recovered,
    hasRecoveredPublications: unrecovered.hasRecoveredPublications,
    offset: unrecovered.offset,
  };
  out.idempotent_publishes = [];
  for (const n of [3, 3]) {
    const r = await api('publish', { channel: GONE, data: { n }, idempotency_key: 'once' });
    out.idempotent_publishes.push(r.result ? r.result.offset : r);
  }
  await api('publish', { channel: GONE, data: { n: 4 } });
  await R.log.wait('last publication', (e) => isGonePub(e) && e.data.n === 4, rMark);
  out.after_gap = R.log.since(rMark, isGonePub).map((e) => [e.data.n, e.offset]);
  const expireMark = R.log.mark();
  out.api_refresh = await api('refresh', { user: 'rita', expired: true });
  const expired = await R.log.wait(
    'close of the expired connection',
    (e) => (e.ev === 'connecting' && e.code !== 0) || e.ev === 'disconnected',
    expireMark,
  );
  out.api_refresh_close = { ev: expired.ev, code: expired.code, reason: expired.reason };

  // --- A wrong-channel subscription token closes the connection (3500) ------------------------
  const W = newClient('walt', { token: token({ sub: 'walt' }) });
  clients.push(W.client);
  await connect(W.client, W.log);
  newSubscription(W.client, W.log, '$mine', {
    token: token({ sub: 'walt', channel: '$other' }),
  }).subscribe();
  const wrong = await W.log.wait('disconnect', (e) => e.ev === 'disconnected');
  out.sub_token_wrong_channel = { code: wrong.code, reason: wrong.reason, state: W.client.state };

  // --- JSON only: a binary publication a JSON connection cannot carry is left out for it ------
  // (Centrifugo would close the connection with 3506; Rotor never ends a connection because of
  // someone else's payload), and the next publication arrives as usual.
  if (FORMAT === 'json') {
    const J = newClient('judy', { token: token({ sub: 'judy' }) });
    clients.push(J.client);
    await connect(J.client, J.log);
    await subscribe(newSubscription(J.client, J.log, 'bytes'), J.log);
    await api('publish', { channel: 'bytes', b64data: Buffer.from([0xff, 0x00]).toString('base64') });
    await api('publish', { channel: 'bytes', data: { after: 'binary' } });
    const next = await J.log.wait('publication', (e) => e.ev === 'pub' && e.channel === 'bytes');
    out.binary_to_json = {
      first_delivered: next.data,
      disconnects: J.log.items.filter((e) => e.ev === 'disconnected').length,
      state: J.client.state,
    };
  }

  out.alice_unexpected = A.log.items
    .filter(
      (e) =>
        e.ev === 'error' ||
        e.ev === 'disconnected' ||
        (e.ev === 'sub_error' && e.channel !== '$expiring') ||
        (e.ev === 'unsubscribed' && e.channel !== '$forged'),
    )
    .map((e) => ({ ev: e.ev, channel: e.channel, code: e.code }));

  finish(out, clients);
});
