// A reconnect storm of real centrifuge-js clients, for the webhook test in
// tests/tests/interop_webhooks.rs.
//
// STORM_CLIENTS clients (users u0…), each subscribed to one of STORM_CHANNELS channels
// (room0…), a "leaver" alone in room-leaver and a "sentinel" alone in room-sentinel. Then, at
// once: the server API disconnects every u* user with a reconnecting code (one `batch`), and
// the leaver disconnects for good. Once every storm client is connected and subscribed again,
// the sentinel unsubscribes: its removal is held the same grace as anything the storm caused
// and later, so on the receiver it comes after all of that (and before anything this script's
// exit causes). Prints the timings and counts.
//
// Extra environment: STORM_CLIENTS (default 1000), STORM_CHANNELS (default 50).

import { API_KEY, API_URL, WAIT_MS, fail, finish, newClient, nowSeconds, run, token } from './common.mjs';

const CLIENTS = Number(process.env.STORM_CLIENTS || 1000);
const CHANNELS = Number(process.env.STORM_CHANNELS || 50);
/** How long the whole storm may take to reconnect. */
const RECONNECT_MS = 15000;

/** Resolves when `count()` reaches `target` (checked on every event), or fails after `ms`. */
function until(what, count, target, ms) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      if (count() >= target) {
        resolve(Date.now() - started);
      } else if (Date.now() - started > ms) {
        reject(new Error(`timed out after ${ms} ms waiting for ${what}: ${count()} of ${target}`));
      } else {
        setImmediate(check);
      }
    };
    check();
  });
}

async function api(method, params) {
  const res = await fetch(`${API_URL}/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify(params),
  });
  const body = await res.json();
  if (!res.ok || body.error) {
    fail(`${method}: ${res.status} ${JSON.stringify(body)}`);
  }
  return body;
}

/** A client of `user` subscribed to `channel`, counting its (re)subscriptions. */
function member(user, channel, counts) {
  const { client } = newClient(user, {
    token: token({ sub: user, exp: nowSeconds() + 600 }),
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
  });
  const sub = client.newSubscription(channel);
  sub.on('subscribed', () => {
    counts.subscribed += 1;
  });
  client.on('disconnected', () => {
    counts.disconnected += 1;
  });
  client.on('connecting', (ctx) => {
    if (ctx.code === 3100) {
      counts.dropped += 1;
    }
  });
  sub.subscribe();
  client.connect();
  return { client, sub };
}

run(async () => {
  const storm = { subscribed: 0, disconnected: 0, dropped: 0 };
  const others = { subscribed: 0, disconnected: 0, dropped: 0 };
  const members = [];
  for (let i = 0; i < CLIENTS; i++) {
    members.push(member(`u${i}`, `room${i % CHANNELS}`, storm));
  }
  const leaver = member('leaver', 'room-leaver', others);
  const sentinel = member('sentinel', 'room-sentinel', others);
  const connect_ms = await until('every client subscribed', () => storm.subscribed, CLIENTS, 20000);
  await until('leaver and sentinel subscribed', () => others.subscribed, 2, WAIT_MS);

  // The storm: every u* dropped with a code that makes the SDK reconnect; the leaver leaves.
  const commands = [];
  for (let i = 0; i < CLIENTS; i++) {
    commands.push({ disconnect: { user: `u${i}`, disconnect: { code: 3100, reason: 'storm' } } });
  }
  const started = Date.now();
  const reply = await api('batch', { commands, parallel: true });
  leaver.client.disconnect();
  const failed = reply.replies.filter((r) => r.error).length;
  await until('every storm client dropped', () => storm.dropped, CLIENTS, RECONNECT_MS);
  await until('every storm client subscribed again', () => storm.subscribed, 2 * CLIENTS, RECONNECT_MS);
  const reconnect_ms = Date.now() - started;
  sentinel.sub.unsubscribe();
  // A command answered on the same connection after the unsubscribe: the server has run the
  // unsubscribe (and held its removal) before this reply, so everything the clients' exit
  // causes is held after it. (No presence in that channel: the answer is an error.)
  await sentinel.client.presenceStats('room-sentinel').catch(() => null);

  finish(
    {
      clients: CLIENTS,
      connect_ms,
      reconnect_ms,
      dropped: storm.dropped,
      resubscribed: storm.subscribed - CLIENTS,
      batch_errors: failed,
    },
    [...members.map((m) => m.client), leaver.client, sentinel.client],
  );
});
