// centrifuge-js and publication tags filters (`allow_tags_filter`, the SDK's `tagsFilter`): a
// filtered subscriber receives only the publications whose tags match its filter, live and when
// it recovers, while an unfiltered subscriber of the same channel gets everything; a filter in a
// namespace that does not allow it is refused (the SDK ends the subscription with 107).
//
// Needs the config of tests/src/interop.rs (namespaces `tags` and `chat`).
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import { api, connect, finish, newClient, newSubscription, run, subscribe, token } from './common.mjs';

const CHANNEL = 'tags:js';

/** Publishes {n} with `tags` into CHANNEL through the server API. */
async function publish(n, tags) {
  const reply = await api('publish', { channel: CHANNEL, data: { n }, tags });
  if (!reply.result) {
    throw new Error(`publish ${n}: ${JSON.stringify(reply)}`);
  }
}

/** The first `count` publications of CHANNEL in `log`, as {n, offset}. */
async function pubs(log, count) {
  const got = await log.waitCount(`${count} publications`, (e) => e.ev === 'pub' && e.channel === CHANNEL, count);
  return got.map((e) => ({ n: e.data.n, offset: e.offset }));
}

run(async () => {
  const out = {};
  const A = newClient('alice', { token: token({ sub: 'alice' }) });
  await connect(A.client, A.log);

  // `chat` does not allow tags filters: the subscribe is refused with 107.
  const refused = newSubscription(A.client, A.log, 'chat:tags', {
    tagsFilter: { key: 'ticker', cmp: 'eq', val: 'AAPL' },
  });
  const from = A.log.mark();
  refused.subscribe();
  const ended = await A.log.wait('the refusal', (e) => e.channel === 'chat:tags' && e.ev === 'unsubscribed', from);
  out.refused = { code: ended.code };

  // ticker == AAPL and price >= 100, on a recoverable (so positioned) subscription.
  const filtered = newSubscription(A.client, A.log, CHANNEL, {
    recoverable: true,
    tagsFilter: {
      op: 'and',
      nodes: [
        { key: 'ticker', cmp: 'eq', val: 'AAPL' },
        { key: 'price', cmp: 'gte', val: '100' },
      ],
    },
  });
  const first = await subscribe(filtered, A.log);
  const epoch = first.epoch;

  const B = newClient('bob', { token: token({ sub: 'bob' }) });
  await connect(B.client, B.log);
  await subscribe(newSubscription(B.client, B.log, CHANNEL), B.log);

  await publish(1, { ticker: 'AAPL', price: '150' });
  await publish(2, { ticker: 'MSFT', price: '300' });
  await publish(3, { ticker: 'AAPL', price: '99.5' });
  await publish(4, { ticker: 'AAPL', price: '100.0' });
  out.unfiltered_pubs = await pubs(B.log, 4);
  out.filtered_pubs = await pubs(A.log, 2);
  out.filtered_count = A.log.since(0, (e) => e.ev === 'pub').length;
  out.filtered_still_subscribed = filtered.state;

  // Recovering from offset 1 with `ticker in [MSFT]`: only publication 2, then live ones.
  const C = newClient('carol', { token: token({ sub: 'carol' }) });
  await connect(C.client, C.log);
  const recovering = newSubscription(C.client, C.log, CHANNEL, {
    recoverable: true,
    since: { offset: 1, epoch },
    tagsFilter: { key: 'ticker', cmp: 'in', vals: ['MSFT', 'GOOG'] },
  });
  const ev = await subscribe(recovering, C.log);
  out.recovery = { wasRecovering: ev.wasRecovering, recovered: ev.recovered };
  await publish(5, { ticker: 'GOOG', price: '1' });
  await publish(6, { ticker: 'AAPL', price: '1' });
  await publish(7, { ticker: 'MSFT', price: '1' });
  out.recovered_pubs = await pubs(C.log, 3);
  out.recovered_count = C.log.since(0, (e) => e.ev === 'pub').length;

  finish(out, [A.client, B.client, C.client]);
});
