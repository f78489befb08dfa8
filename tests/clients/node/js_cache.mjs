// centrifuge-js and cache recovery mode (`force_recovery_mode: "cache"`): a subscriber gets the
// channel's latest publication as its initial state, then live publications as usual.
// * `state:*` recovers automatically (`auto_cache_recover`): a plain subscribe gets the latest;
// * `latest:*` recovers when the client asks: `recoverable` with an empty `since` position;
//   without it a subscriber gets only what is published afterwards.
//
// Needs the config of tests/src/interop.rs (namespaces `state` and `latest`).
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import { api, connect, finish, newClient, newSubscription, run, subscribe, token } from './common.mjs';

/** What a `subscribed` event says about recovery. */
function recovery(ev) {
  return {
    wasRecovering: ev.wasRecovering,
    recovered: ev.recovered,
    hasRecoveredPublications: ev.hasRecoveredPublications,
    epoch_nonempty: typeof ev.epoch === 'string' && ev.epoch.length > 0,
  };
}

/** Publishes {n} for each n into `channel` through the server API. */
async function publish(channel, values) {
  for (const n of values) {
    const reply = await api('publish', { channel, data: { n } });
    if (!reply.result) {
      throw new Error(`publish into ${channel}: ${JSON.stringify(reply)}`);
    }
  }
}

/** The first `count` publications of `channel` in `log`, as {n, offset}. */
async function pubs(log, channel, count) {
  const got = await log.waitCount(`${count} publications of ${channel}`, (e) => e.ev === 'pub' && e.channel === channel, count);
  return got.map((e) => ({ n: e.data.n, offset: e.offset }));
}

run(async () => {
  const out = {};
  await publish('state:js', [1, 2, 3]);
  await publish('latest:js', [1, 2]);

  const A = newClient('alice', { token: token({ sub: 'alice' }) });
  await connect(A.client, A.log);
  const state = newSubscription(A.client, A.log, 'state:js');
  out.auto = recovery(await subscribe(state, A.log));
  await publish('state:js', [4]);
  out.auto_pubs = await pubs(A.log, 'state:js', 2);

  const asked = newSubscription(A.client, A.log, 'latest:js', { recoverable: true, since: {} });
  out.asked = recovery(await subscribe(asked, A.log));
  await publish('latest:js', [3]);
  out.asked_pubs = await pubs(A.log, 'latest:js', 2);

  const B = newClient('bob', { token: token({ sub: 'bob' }) });
  await connect(B.client, B.log);
  const plain = newSubscription(B.client, B.log, 'latest:js');
  out.plain = recovery(await subscribe(plain, B.log));
  await publish('latest:js', [4]);
  out.plain_pubs = await pubs(B.log, 'latest:js', 1);
  out.plain_all_pubs = B.log.since(0, (e) => e.ev === 'pub').length;

  finish(out, [A.client, B.client]);
});
