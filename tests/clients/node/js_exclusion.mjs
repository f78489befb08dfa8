// centrifuge-js and publisher exclusion (`exclude_publisher`, the server API's `exclude`), with
// the publisher reconnecting while its publications are in flight.
//
// Two publishers share one channel with three observers: `pat` connects with a token carrying a
// `session_tag` claim, `sam` with a token without one (its session is then the token's digest,
// the same on every reconnect because the SDK reuses the token). Each round, for each
// publisher at once: the server disconnects the publisher with a reconnect code, the publisher
// publishes from the client, the backend publishes on its behalf with `exclude.session_tag`,
// and an observer's message is published for everyone. The publisher reconnects and recovers.
//
// Expected: no publisher ever receives its own publications (client's or backend's, live or
// recovered), every publisher receives every other message exactly once, and every observer
// receives every publication exactly once — zero duplicates, zero losses. (Arrival order is
// not checked: centrifuge-js 5.7 can emit the publications of two WebSocket messages read in
// one go interleaved — its `_dataReceived` chains the second message's dispatch on the first's
// start, not its end — whatever the server sends.)
//
// Needs the config of tests/src/interop.rs (namespace `room`).
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import { createHash } from 'node:crypto';

import { api, connect, dec, finish, newClient, newSubscription, run, subscribe, token, enc } from './common.mjs';

const CHANNEL = 'room:js';
const ROUNDS = 6;

/** The session tag Rotor derives from a token without a `session_tag` claim. */
function digestTag(tok) {
  return `t:${createHash('sha256').update(tok).digest('hex').slice(0, 32)}`;
}

async function apiPublish(data, exclude) {
  const body = { channel: CHANNEL, data };
  if (exclude) {
    body.exclude = exclude;
  }
  const reply = await api('publish', body);
  if (!reply.result) {
    throw new Error(`publish ${JSON.stringify(data)}: ${JSON.stringify(reply)}`);
  }
  return reply.result.offset;
}

/** Publications of CHANNEL seen by `log`, as {from, n, offset}. */
function seen(log) {
  return log
    .since(0, (e) => e.ev === 'pub' && e.channel === CHANNEL)
    .map((e) => ({ from: e.data.from, n: e.data.n, offset: e.offset }));
}

run(async () => {
  const out = {};
  const patToken = token({ sub: 'pat', session_tag: 'pat-tab-1' });
  const samToken = token({ sub: 'sam' });
  const publishers = [
    { user: 'pat', tag: 'pat-tab-1', ...newClient('pat', { token: patToken }) },
    { user: 'sam', tag: digestTag(samToken), ...newClient('sam', { token: samToken }) },
  ];
  const observers = ['olga', 'omar', 'otto'].map((u) => ({ user: u, ...newClient(u, { token: token({ sub: u }) }) }));
  for (const p of [...publishers, ...observers]) {
    await connect(p.client, p.log);
    p.sub = newSubscription(p.client, p.log, CHANNEL);
    await subscribe(p.sub, p.log);
  }

  // Every publication the server accepted: [from, n] → offset. A client publish the SDK saw
  // fail (its connection closed under the call) may or may not have been accepted.
  const accepted = new Map();
  const maybe = new Set();
  const note = (from, n, offset) => accepted.set(`${from}/${n}`, offset);
  const recoveries = [];
  for (let round = 1; round <= ROUNDS; round++) {
    await Promise.all(
      publishers.map(async (p) => {
        const from = p.log.mark();
        // The disconnect and the publications race: some publications reach the publisher's
        // old connection, some land while it is away and come back in recovery.
        const kicked = api('disconnect', { user: p.user, disconnect: { code: 3400, reason: 'kicked' } });
        const own = p.sub.publish(enc({ from: p.user, n: round })).then(
          () => true,
          () => false,
        );
        const backend = apiPublish({ from: `${p.user}-backend`, n: round }, { session_tag: p.tag });
        const other = apiPublish({ from: `for-${p.user}`, n: round });
        await kicked;
        note(`${p.user}-backend`, round, await backend);
        note(`for-${p.user}`, round, await other);
        if (await own) {
          note(p.user, round, null);
        } else {
          maybe.add(`${p.user}/${round}`);
        }
        const back = await p.log.wait(
          `${p.user} resubscribed in round ${round}`,
          (e) => e.ev === 'subscribed' && e.channel === CHANNEL,
          from,
        );
        recoveries.push({ wasRecovering: back.wasRecovering, recovered: back.recovered });
      }),
    );
  }
  // A last message for everyone: once each client has it, it has everything before it.
  const lastOffset = await apiPublish({ from: 'last', n: 0 });
  note('last', 0, lastOffset);
  for (const c of [...publishers, ...observers]) {
    await c.log.wait(`${c.user} got the last message`, (e) => e.ev === 'pub' && e.data.from === 'last');
  }

  const expected = (k) => accepted.has(k) || maybe.has(k);
  out.accepted_own_publishes = [...accepted.keys()].filter((k) => k.startsWith('pat/') || k.startsWith('sam/')).length;
  out.recoveries = {
    count: recoveries.length,
    all_recovering: recoveries.every((r) => r.wasRecovering),
    all_recovered: recoveries.every((r) => r.recovered),
  };
  out.observers = observers.map((o) => {
    const got = seen(o.log);
    const keys = got.map((g) => `${g.from}/${g.n}`);
    return {
      user: o.user,
      duplicates: keys.length - new Set(keys).size,
      missing: [...accepted.keys()].filter((k) => !keys.includes(k)),
      unexpected: keys.filter((k) => !expected(k)),
      resubscribed: o.log.since(0, (e) => e.ev === 'subscribing').length > 1,
    };
  });
  out.publishers = publishers.map((p) => {
    const got = seen(p.log);
    const keys = got.map((g) => `${g.from}/${g.n}`);
    const mine = (k) => k.startsWith(`${p.user}/`) || k.startsWith(`${p.user}-backend/`);
    return {
      user: p.user,
      own_received: keys.filter(mine),
      duplicates: keys.length - new Set(keys).size,
      missing_others: [...accepted.keys()].filter((k) => !mine(k) && !keys.includes(k)),
      trace: p.log.items.map((e) => e.ev === 'pub' ? `${e.offset}` : `${e.ev}${e.ev === 'subscribed' ? `@${e.offset}` : ''}`).join(' '),
      offsets: Object.fromEntries(accepted),
    };
  });
  out.decoded = dec(enc({ ok: 1 })).ok;
  finish(out, [...publishers, ...observers].map((c) => c.client));
});
