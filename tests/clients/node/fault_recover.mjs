// Several centrifuge-js clients follow one channel through a fault (a killed tenant process, a
// Redis restart) and report exactly what each one saw, for tests/tests/faults.rs.
//
// Publications carry {n} (a number, counted by the test) or {done: true} (the last one). Each
// client records every publication's n and offset, which subscription (1 = the first
// `subscribed`) it arrived in, and whether it arrived as part of a
// subscribe reply's recovered publications (centrifuge-js handles those synchronously right
// after emitting `subscribed`; the offsets the reply carried are read off the wire, since a
// live publication in the same WebSocket message is handled in the same tick). Subscription and connection events are printed as JSON lines as
// they happen ({"c": client, "ev": …}); `{"ev":"ready"}` once every client is subscribed; and,
// once every client has seen `done`, one line {"summary": [per client {pubs, events}]}, then
// the script exits 0.
//
// Env: ROTOR_WS_URL, ROTOR_TOKEN_SECRET, FAULT_CHANNEL, FAULT_CLIENTS (default 3),
// FAULT_MIN_RECONNECT_MS / FAULT_MAX_RECONNECT_MS (default 50 / 500), FAULT_TIMEOUT_MS (default
// 50000: then it prints what it has on stderr and exits 1).
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import jwt from 'jsonwebtoken';

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) {
      process.stderr.write(`environment variable ${name} is not set\n`);
      process.exit(2);
    }
    return fallback;
  }
  return v;
};

const WS_URL = env('ROTOR_WS_URL');
const SECRET = env('ROTOR_TOKEN_SECRET');
const CHANNEL = env('FAULT_CHANNEL');
const CLIENTS = Number(env('FAULT_CLIENTS', '3'));
const MIN_RECONNECT = Number(env('FAULT_MIN_RECONNECT_MS', '50'));
const MAX_RECONNECT = Number(env('FAULT_MAX_RECONNECT_MS', '500'));
const TIMEOUT_MS = Number(env('FAULT_TIMEOUT_MS', '50000'));

const line = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const offsetOf = (v) => (v && typeof v.toNumber === 'function' ? v.toNumber() : v ?? null);

// A `ws` WebSocket that, before centrifuge-js sees a message, notes the highest offset among the
// publications of any subscribe reply in it (into `s.lastRecovered`). Listeners run in the
// order they were added, and this one is added before centrifuge-js sets `onmessage`.
function watchedWebSocket(s) {
  return class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        for (const text of String(event.data).split('\n')) {
          if (text.trim() === '') {
            continue;
          }
          const reply = JSON.parse(text);
          const pubs = reply.subscribe && reply.subscribe.publications;
          if (Array.isArray(pubs) && pubs.length > 0) {
            s.lastRecovered = Math.max(...pubs.map((p) => p.offset ?? 0));
          }
        }
      });
    }
  };
}

const state = [];
let readyPrinted = false;

function checkReady() {
  if (!readyPrinted && state.every((s) => s.events.some((e) => e.ev === 'subscribed'))) {
    readyPrinted = true;
    line({ ev: 'ready' });
  }
}

function checkDone() {
  if (state.every((s) => s.done)) {
    clearTimeout(deadline);
    for (const s of state) {
      s.client.disconnect();
    }
    const summary = state.map((s) => ({ pubs: s.pubs, events: s.events }));
    process.stdout.write(JSON.stringify({ summary }) + '\n', () => process.exit(0));
  }
}

for (let c = 0; c < CLIENTS; c++) {
  const token = jwt.sign({ sub: `follower-${c}` }, SECRET, { expiresIn: 600 });
  const s = { pubs: [], events: [], done: false, lastRecovered: null, recoveredUpTo: null, generation: 0 };
  const client = new Centrifuge(WS_URL, {
    websocket: watchedWebSocket(s),
    token,
    minReconnectDelay: MIN_RECONNECT,
    maxReconnectDelay: MAX_RECONNECT,
    timeout: 5000,
  });
  s.client = client;
  state.push(s);
  const record = (ev) => {
    s.events.push(ev);
    line({ c, ...ev });
  };
  client.on('connecting', (ctx) => record({ ev: 'connecting', code: ctx.code }));
  client.on('connected', () => record({ ev: 'connected' }));
  client.on('disconnected', (ctx) => record({ ev: 'disconnected', code: ctx.code }));
  const sub = client.newSubscription(CHANNEL);
  sub.on('subscribing', (ctx) => record({ ev: 'subscribing', code: ctx.code }));
  sub.on('subscribed', (ctx) => {
    s.generation += 1;
    record({
      ev: 'subscribed',
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      hasRecoveredPublications: ctx.hasRecoveredPublications,
      offset: ctx.streamPosition ? offsetOf(ctx.streamPosition.offset) : null,
      epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
    });
    // Recovered publications follow synchronously. A live publication the server wrote into
    // the same WebSocket message as the reply is handled in the same tick, so what counts as
    // recovered is bounded by the last offset the reply itself carried (seen on the wire).
    s.recoveredUpTo = ctx.hasRecoveredPublications ? s.lastRecovered : null;
    s.lastRecovered = null;
    queueMicrotask(() => {
      s.recoveredUpTo = null;
    });
    checkReady();
  });
  sub.on('unsubscribed', (ctx) => record({ ev: 'unsubscribed', code: ctx.code }));
  sub.on('error', (ctx) =>
    record({ ev: 'sub_error', code: ctx.error ? ctx.error.code : null }),
  );
  sub.on('publication', (ctx) => {
    if (ctx.data && ctx.data.done) {
      s.done = true;
      checkDone();
      return;
    }
    const offset = offsetOf(ctx.offset);
    s.pubs.push({
      n: ctx.data ? ctx.data.n : null,
      offset,
      rec: s.recoveredUpTo !== null && offset !== null && offset <= s.recoveredUpTo,
      // A publication that arrives while the subscription is (re)subscribing belongs to the
      // subscription being established: centrifuge-js can emit it before that `subscribed`.
      generation: sub.state === 'subscribing' ? s.generation + 1 : s.generation,
    });
  });
  sub.subscribe();
  client.connect();
}

const deadline = setTimeout(() => {
  process.stderr.write(
    `fault_recover: not every client saw the done publication within ${TIMEOUT_MS} ms: ` +
      JSON.stringify(state.map((s) => ({ done: s.done, pubs: s.pubs.length, events: s.events }))) +
      '\n',
  );
  process.exit(1);
}, TIMEOUT_MS);
