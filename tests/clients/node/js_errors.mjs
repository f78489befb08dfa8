// centrifuge-js error paths, over JSON or Protobuf (ROTOR_FORMAT): subscribe to an unknown
// namespace (102) and to a forbidden one (103), calls the server refuses (102/103/108), an expired
// connection token refreshed through getToken (109), a token signed with the wrong secret
// (disconnect 3500) and a connection without any token (disconnect 3501).
//
// Needs a `locked` namespace with no permissions, channels without a namespace open to
// subscribe but with neither history nor presence, and no `nope` namespace.
//
// Prints {format, unknown_namespace, permission_denied, …}; see tests/tests/interop_js.rs.

import {
  FORMAT,
  callError,
  connect,
  enc,
  finish,
  newClient,
  newSubscription,
  nowSeconds,
  recordPings,
  run,
  subscribe,
  token,
} from './common.mjs';

/** Subscribes and waits for the subscription to end; returns what the SDK reported. */
async function subscribeRefused(client, log, channel) {
  const sub = newSubscription(client, log, channel);
  const from = log.mark();
  sub.subscribe();
  const ev = await log.wait(
    `unsubscribed from ${channel}`,
    (e) => e.channel === channel && (e.ev === 'unsubscribed' || e.ev === 'subscribed'),
    from,
  );
  return {
    ev: ev.ev,
    code: ev.code,
    reason: ev.reason,
    state: sub.state,
    sub_errors: log.since(from, (e) => e.ev === 'sub_error' && e.channel === channel).length,
  };
}

run(async () => {
  const out = { format: FORMAT };
  const clients = [];

  // A healthy connection for the per-command errors.
  const C = newClient('carol', { token: token({ sub: 'carol' }) });
  clients.push(C.client);
  recordPings(C.client, C.log);
  await connect(C.client, C.log);
  const cMark = C.log.mark();

  out.unknown_namespace = await subscribeRefused(C.client, C.log, 'nope:x');
  out.permission_denied = await subscribeRefused(C.client, C.log, 'locked:x');
  out.private_without_token = await subscribeRefused(C.client, C.log, '$secret');

  // The connection survives refused subscriptions; an allowed one still works.
  await subscribe(newSubscription(C.client, C.log, 'open'), C.log);

  out.publish_unknown_namespace = await callError(
    'publish to nope:x',
    C.client.publish('nope:x', enc({ n: 1 })),
  );
  out.publish_denied = await callError(
    'publish to locked:x',
    C.client.publish('locked:x', enc({ n: 1 })),
  );
  out.history_unavailable = await callError(
    'history of open',
    C.client.history('open', { limit: 1 }),
  );
  out.presence_unavailable = await callError('presence of open', C.client.presence('open'));
  out.rpc_unavailable = await callError('rpc', C.client.rpc('anything', enc({})));
  out.carol_state = C.client.state;

  // Expired token: the server answers 109, the SDK asks getToken for a fresh one and connects.
  let getTokenCalls = 0;
  const E = newClient('erin', {
    token: token({ sub: 'erin', exp: nowSeconds() - 60 }),
    getToken: async () => {
      getTokenCalls += 1;
      return token({ sub: 'erin', exp: nowSeconds() + 3600 });
    },
  });
  clients.push(E.client);
  await connect(E.client, E.log);
  out.expired_token = {
    get_token_calls: getTokenCalls,
    connect_errors: E.log
      .since(0, (e) => e.ev === 'error')
      .map((e) => ({ type: e.type, code: e.code, message: e.message })),
    connecting_codes: E.log.since(0, (e) => e.ev === 'connecting').map((e) => e.code),
    state: E.client.state,
  };

  // Connection refresh. Both tokens expire in 2 s (the server closes expired connections 1 s
  // after expiry). Henry's getToken answers, so the SDK refreshes at `ttl` and stays connected;
  // Ivan's never answers, so the server closes him with 3005. Ivan's close proves the expiry
  // passed, so Henry surviving it proves the refresh was applied.
  const exp = nowSeconds() + 2;
  let henryCalls = 0;
  const H = newClient('henry', {
    token: token({ sub: 'henry', exp }),
    getToken: async () => {
      henryCalls += 1;
      return token({ sub: 'henry', exp: nowSeconds() + 3600 });
    },
  });
  let ivanCalls = 0;
  const I = newClient('ivan', {
    token: token({ sub: 'ivan', exp }),
    getToken: () => {
      ivanCalls += 1;
      return new Promise(() => {});
    },
  });
  clients.push(H.client, I.client);
  await Promise.all([connect(H.client, H.log), connect(I.client, I.log)]);
  const hMark = H.log.mark();
  const expired = await I.log.wait(
    'close of the unrefreshed connection',
    (e) => e.ev === 'connecting' && e.code !== 0,
    0,
    8000,
  );
  // One round trip after Ivan's close: the server has processed Henry's refresh by now.
  await H.client.presenceStats('chat:probe').catch(() => null);
  out.refresh = {
    henry_get_token_calls: henryCalls,
    henry_state: H.client.state,
    henry_events_after_connect: H.log
      .since(hMark)
      .map((e) => ({ ev: e.ev, code: e.code === undefined ? null : e.code })),
    ivan_get_token_calls: ivanCalls,
    ivan_close: { code: expired.code, reason: expired.reason },
  };

  // A token signed with another secret: close 3500, terminal (no reconnect).
  const F = newClient('frank', { token: token({ sub: 'frank' }, 'not-the-server-secret-0123456789') });
  clients.push(F.client);
  F.client.connect();
  const invalid = await F.log.wait('disconnected', (e) => e.ev === 'disconnected');
  out.invalid_token = {
    code: invalid.code,
    reason: invalid.reason,
    state: F.client.state,
    connected_events: F.log.since(0, (e) => e.ev === 'connected').length,
  };

  // No token and no getToken, anonymous connections not allowed: close 3501, terminal.
  const G = newClient('grace');
  clients.push(G.client);
  G.client.connect();
  const anonymous = await G.log.wait('disconnected', (e) => e.ev === 'disconnected');
  out.no_token = { code: anonymous.code, reason: anonymous.reason, state: G.client.state };

  // Pings (every 2 s, pong timeout 1 s) answered by the SDK's pongs keep Carol connected.
  await C.log.waitCount('server pings', (e) => e.ev === 'ping', 2, cMark, 8000);
  out.carol_after_pings = {
    state: C.client.state,
    events: C.log
      .since(cMark, (e) => e.ev === 'connecting' || e.ev === 'disconnected' || e.ev === 'error')
      .map((e) => ({ ev: e.ev, code: e.code })),
  };

  finish(out, clients);
});
