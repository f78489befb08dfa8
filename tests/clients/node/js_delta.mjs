// centrifuge-js and Fossil delta compression (`allowed_delta_types: ["fossil"]`, the SDK's
// `delta: 'fossil'`): a delta subscriber and a plain one on the same channel both see every
// document whole and in order, the SDK reports one full payload and then deltas, and a raw
// WebSocket client (JSON protocol) rebuilds the same documents with an independent Fossil
// decoder (npm `fossil-delta`, which checks each delta's checksum).
//
// Needs the config of tests/src/interop.rs (namespace `delta`).
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import WebSocket from 'ws';
import { applyDelta } from 'fossil-delta';
import { api, connect, finish, newClient, newSubscription, run, subscribe, token, WAIT_MS, WS_URL } from './common.mjs';

const CHANNEL = 'delta:js';
const COUNT = 4;

/** A ~1 KB JSON document that changes by a few fields with `n`. */
function doc(n) {
  const items = [];
  for (let i = 0; i < 12; i++) {
    items.push({ id: i, name: `item ${i}`, qty: i === n % 12 ? n : i });
  }
  return {
    version: n,
    status: n % 2 === 0 ? 'open' : 'closed',
    items,
    note: 'the rest of the document stays the same from one publication to the next',
  };
}

/** The first `count` publications of CHANNEL in `log`, decoded. */
async function pubs(log, count) {
  const got = await log.waitCount(`${count} publications`, (e) => e.ev === 'pub' && e.channel === CHANNEL, count);
  return got.map((e) => e.data);
}

/**
 * A raw JSON-protocol WebSocket client subscribed to CHANNEL with delta; resolves with the first
 * `count` publications as the server sent them (`data` a string, `delta` flag).
 */
async function rawSubscriber(count, subscribed) {
  const ws = new WebSocket(WS_URL);
  const received = [];
  let done;
  const all = new Promise((resolve, reject) => {
    done = resolve;
    setTimeout(() => reject(new Error(`raw client: ${received.length} of ${count} publications`)), WAIT_MS * 2);
  });
  ws.on('message', (raw) => {
    for (const line of raw.toString().split('\n')) {
      if (!line.trim()) continue;
      const msg = JSON.parse(line);
      if (msg.id === 2) subscribed(msg);
      if (msg.push && msg.push.pub && msg.push.channel === CHANNEL) {
        received.push(msg.push.pub);
        if (received.length === count) done(received);
      }
    }
  });
  await new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  });
  ws.send(
    JSON.stringify({ id: 1, connect: { token: token({ sub: 'raw' }) } }) +
      '\n' +
      JSON.stringify({ id: 2, subscribe: { channel: CHANNEL, delta: 'fossil' } }),
  );
  return { ws, all };
}

run(async () => {
  const out = {};
  const A = newClient('alice', { token: token({ sub: 'alice' }) });
  await connect(A.client, A.log);
  const withDelta = newSubscription(A.client, A.log, CHANNEL, { delta: 'fossil' });
  await subscribe(withDelta, A.log);

  const B = newClient('bob', { token: token({ sub: 'bob' }) });
  await connect(B.client, B.log);
  await subscribe(newSubscription(B.client, B.log, CHANNEL), B.log);

  let rawReply;
  const rawReady = new Promise((resolve) => {
    rawReply = resolve;
  });
  const raw = await rawSubscriber(COUNT, rawReply);
  const reply = await rawReady;
  out.raw_subscribe = { delta: reply.subscribe ? reply.subscribe.delta === true : false };

  for (let n = 1; n <= COUNT; n++) {
    const r = await api('publish', { channel: CHANNEL, data: doc(n), delta: true });
    if (!r.result) throw new Error(`publish ${n}: ${JSON.stringify(r)}`);
  }
  const expected = [];
  for (let n = 1; n <= COUNT; n++) expected.push(doc(n));
  const same = (got) => JSON.stringify(got) === JSON.stringify(expected);

  const deltaDocs = await pubs(A.log, COUNT);
  const plainDocs = await pubs(B.log, COUNT);
  out.delta_subscriber = { versions: deltaDocs.map((d) => d.version), same: same(deltaDocs) };
  out.plain_subscriber = { versions: plainDocs.map((d) => d.version), same: same(plainDocs) };
  const stats = withDelta.deltaStats();
  out.sdk_stats = { full: stats.numFullPayloads, delta: stats.numDeltaPayloads };

  // The independent decoder: the raw client's own base, delta by delta.
  const rawPubs = await raw.all;
  raw.ws.close();
  const encoder = new TextEncoder();
  let base = null;
  const rawDocs = [];
  for (const p of rawPubs) {
    if (typeof p.data !== 'string') throw new Error(`data is not a JSON string: ${JSON.stringify(p)}`);
    const bytes = encoder.encode(p.data);
    base = p.delta ? applyDelta(base, bytes) : bytes;
    rawDocs.push(JSON.parse(new TextDecoder().decode(base)));
  }
  out.raw = {
    delta_flags: rawPubs.map((p) => p.delta === true),
    same: same(rawDocs),
    // The last delta against the whole document it stands for.
    last_sizes: { wire: rawPubs[COUNT - 1].data.length, whole: JSON.stringify(doc(COUNT)).length },
  };
  finish(out, [A.client, B.client]);
});
