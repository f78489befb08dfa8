// centrifuge-js and Centrifugo's client options: with `client.user_id_http_header` a client
// whose WebSocket request carries the header connects without a token as that user, and one
// without it is refused (3501, terminal); `override` in a subscription token and in the
// connection token's `subs` turns on recovery in a namespace that only allows it.
//
// Needs the base config of tests/src/interop.rs plus `client.user_id_http_header:
// X-User-Id` (see tests/tests/interop_js.rs). `tags:*` has history and allows recovery
// without forcing it.
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import WebSocket from 'ws';

import { connect, finish, newClient, newSubscription, run, subscribe, token } from './common.mjs';

/** A WebSocket whose upgrade request carries X-User-Id (what a trusted proxy would add). */
class AsCarol extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { headers: { 'X-User-Id': 'carol' } });
  }
}

/** Who presence says the only subscriber of `channel` is. */
async function presenceUsers(sub) {
  const presence = await sub.presence();
  return Object.values(presence.clients).map((info) => info.user);
}

run(async () => {
  const out = {};

  // The header authenticates.
  const carol = newClient('carol', { websocket: AsCarol });
  await connect(carol.client, carol.log);
  const room = newSubscription(carol.client, carol.log, 'chat:options');
  await subscribe(room, carol.log);
  out.header_user = await presenceUsers(room);

  // Without it there are no credentials.
  const nobody = newClient('nobody');
  let mark = nobody.log.mark();
  nobody.client.connect();
  const gone = await nobody.log.wait('nobody disconnected', (e) => e.ev === 'disconnected', mark);
  out.without_header = { code: gone.code };

  // A subscription token's override.
  const withToken = newSubscription(carol.client, carol.log, 'tags:token', {
    getToken: async () =>
      token({ sub: 'carol', channel: 'tags:token', override: { force_recovery: { value: true } } }),
  });
  const s1 = await subscribe(withToken, carol.log);
  const plain = newSubscription(carol.client, carol.log, 'tags:plain');
  const s2 = await subscribe(plain, carol.log);
  out.sub_token_override = { recoverable: s1.recoverable, positioned: s1.positioned };
  out.no_override = { recoverable: s2.recoverable, positioned: s2.positioned };

  // The connection token's `subs` override.
  const dave = newClient('dave', {
    token: token({ sub: 'dave', subs: { 'tags:server': { override: { force_recovery: { value: true } } } } }),
  });
  mark = dave.log.mark();
  await connect(dave.client, dave.log);
  const server = await dave.log.wait(
    'server-side subscription to tags:server',
    (e) => e.ev === 'server_subscribed' && e.channel === 'tags:server',
    mark,
  );
  out.subs_override = { recoverable: server.recoverable, positioned: server.positioned };

  finish(out, [carol.client, nobody.client, dave.client]);
});
