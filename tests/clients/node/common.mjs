// Shared helpers for the centrifuge-js interop scenarios (tests/tests/interop_js.rs).
//
// A scenario reads where the server is from the environment, drives real SDK clients, and
// prints ONE JSON object of observations on stdout; the Rust test asserts on it. Every wait is
// bounded: a missed event fails the scenario with a message naming what was awaited, and a global
// deadline kills a scenario that hangs anywhere else. Nothing sleeps to synchronise.
//
// Environment:
//   ROTOR_WS_URL        ws://127.0.0.1:PORT/connection/websocket
//   ROTOR_API_URL       http://127.0.0.1:PORT/api
//   ROTOR_TOKEN_SECRET  client.token.hmac_secret_key of the server's config
//   ROTOR_API_KEY       http_api.key of the server's config
//   ROTOR_FORMAT        json (default) or protobuf
//   ROTOR_TIMEOUT_MS    global deadline (default 15000)

import WebSocket from 'ws';
import jwt from 'jsonwebtoken';

function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    fail(`environment variable ${name} is not set`);
  }
  return value;
}

export const WS_URL = requireEnv('ROTOR_WS_URL');
export const API_URL = process.env.ROTOR_API_URL || '';
export const SECRET = requireEnv('ROTOR_TOKEN_SECRET');
export const API_KEY = process.env.ROTOR_API_KEY || '';
export const FORMAT = process.env.ROTOR_FORMAT || 'json';
if (FORMAT !== 'json' && FORMAT !== 'protobuf') {
  fail(`ROTOR_FORMAT must be json or protobuf, not ${FORMAT}`);
}
const TIMEOUT_MS = Number(process.env.ROTOR_TIMEOUT_MS || 15000);
/** Longest single wait for an event or a reply. */
export const WAIT_MS = 5000;

const SDK = {
  json: (await import('centrifuge')).Centrifuge,
  protobuf: (await import('centrifuge/build/protobuf')).Centrifuge,
};

const deadline = setTimeout(() => fail(`scenario did not finish within ${TIMEOUT_MS} ms`), TIMEOUT_MS);

/** Fails the scenario: message on stderr, exit status 1. */
export function fail(message) {
  process.stderr.write(`interop scenario failed: ${message}\n`);
  process.exit(1);
}

/** Prints the observations and exits 0 once stdout is flushed. */
export function finish(observations, clients = []) {
  for (const c of clients) {
    c.disconnect();
  }
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(observations) + '\n', () => process.exit(0));
}

/** Runs `main`, turning any rejection into a failure with its stack. */
export function run(main) {
  main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
}

/** Signs an HS256 token with `secret` (the server's by default). */
export function token(claims, secret = SECRET) {
  return jwt.sign(claims, secret, { algorithm: 'HS256', noTimestamp: true });
}

export function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

/** Encodes a JSON value as the publication payload of `format` (ROTOR_FORMAT by default). */
export function enc(value, format = FORMAT) {
  const text = JSON.stringify(value);
  return format === 'protobuf' ? new TextEncoder().encode(text) : value;
}

/**
 * Decodes a publication payload back to a JSON value: the Protobuf build hands over bytes (JSON
 * text here), the JSON build the value itself.
 */
export function dec(data) {
  if (data instanceof Uint8Array) {
    return JSON.parse(new TextDecoder().decode(data));
  }
  return data;
}

/**
 * A stream offset as a plain number. The Protobuf build decodes uint64 fields with protobufjs,
 * which yields `Long` objects in Node; the JSON build gives numbers.
 */
export function num(value) {
  if (value === undefined || value === null) {
    return null;
  }
  if (typeof value === 'object' && typeof value.toNumber === 'function') {
    return value.toNumber();
  }
  return value;
}

/** An ordered record of events that can be awaited without racing their emission. */
export class Log {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }

  push(item) {
    this.items.push(item);
    const index = this.items.length - 1;
    this.waiters = this.waiters.filter((w) => {
      if (index >= w.from && w.pred(item)) {
        clearTimeout(w.timer);
        w.resolve(item);
        return false;
      }
      return true;
    });
  }

  /** The number of items so far: a mark to wait for events after it. */
  mark() {
    return this.items.length;
  }

  /** The items at or after `from` matching `pred`. */
  since(from, pred = () => true) {
    return this.items.slice(from).filter(pred);
  }

  /** Waits for the first item at index >= `from` matching `pred`. */
  wait(what, pred, from = 0, timeout = WAIT_MS) {
    const found = this.items.slice(from).find(pred);
    if (found !== undefined) {
      return Promise.resolve(found);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer);
        reject(
          new Error(
            `${this.name}: timed out after ${timeout} ms waiting for ${what}; events so far: ` +
              JSON.stringify(this.items.map(describe)),
          ),
        );
      }, timeout);
      this.waiters.push({ pred, from, resolve, timer });
    });
  }

  /** Waits until `count` items at index >= `from` match `pred`; returns them. */
  async waitCount(what, pred, count, from = 0, timeout = WAIT_MS) {
    let seen = 0;
    await this.wait(`${count} × ${what}`, (item) => pred(item) && ++seen >= count, from, timeout);
    return this.since(from, pred).slice(0, count);
  }
}

function describe(item) {
  const out = { ...item };
  if (out.data instanceof Uint8Array) {
    out.data = `<${out.data.length} bytes>`;
  }
  return out;
}

function infoOf(info) {
  return info ? { user: info.user, client: info.client } : null;
}

/**
 * A centrifuge-js client (the `format` build, ROTOR_FORMAT by default) whose client-level events
 * go to `log` as {ev: connecting|connected|disconnected|error|server_*, …}.
 */
export function newClient(name, options = {}, format = FORMAT) {
  const log = new Log(name);
  const client = new SDK[format](WS_URL, {
    websocket: WebSocket,
    name: 'rotor-interop',
    minReconnectDelay: 50,
    maxReconnectDelay: 500,
    timeout: WAIT_MS,
    ...options,
  });
  client.on('connecting', (ctx) => log.push({ ev: 'connecting', code: ctx.code, reason: ctx.reason }));
  client.on('connected', (ctx) =>
    log.push({ ev: 'connected', client: ctx.client, transport: ctx.transport }),
  );
  client.on('disconnected', (ctx) =>
    log.push({ ev: 'disconnected', code: ctx.code, reason: ctx.reason }),
  );
  client.on('error', (ctx) =>
    log.push({
      ev: 'error',
      type: ctx.type,
      code: ctx.error ? ctx.error.code : null,
      message: ctx.error ? ctx.error.message : null,
    }),
  );
  // Server-side subscriptions (token `channels`, API `subscribe`) report on the client.
  client.on('subscribed', (ctx) =>
    log.push({
      ev: 'server_subscribed',
      channel: ctx.channel,
      recoverable: ctx.recoverable,
      positioned: ctx.positioned,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      offset: ctx.streamPosition ? num(ctx.streamPosition.offset) : null,
      epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
    }),
  );
  client.on('subscribing', (ctx) => log.push({ ev: 'server_subscribing', channel: ctx.channel }));
  client.on('unsubscribed', (ctx) => log.push({ ev: 'server_unsubscribed', channel: ctx.channel }));
  client.on('publication', (ctx) => log.push({ ev: 'server_pub', ...publicationView(ctx) }));
  client.on('join', (ctx) => log.push({ ev: 'server_join', channel: ctx.channel, info: infoOf(ctx.info) }));
  client.on('leave', (ctx) =>
    log.push({ ev: 'server_leave', channel: ctx.channel, info: infoOf(ctx.info) }),
  );
  return { client, log };
}

/** A publication context as {channel, data (decoded), raw, offset, info, tags}. */
function publicationView(ctx) {
  let data;
  try {
    data = dec(ctx.data);
  } catch (e) {
    data = { undecodable: String(e) };
  }
  return {
    channel: ctx.channel,
    data,
    raw: ctx.data instanceof Uint8Array ? Array.from(ctx.data) : null,
    // Absent (JSON) and 0 (Protobuf's default) both mean "no history".
    offset: num(ctx.offset) || null,
    info: infoOf(ctx.info),
    tags: ctx.tags === undefined || Object.keys(ctx.tags).length === 0 ? null : ctx.tags,
  };
}

/**
 * A subscription whose events go to `log` as {ev: sub.<event>, channel, …}; publications as
 * {ev: 'pub', channel, data (decoded), raw, offset, info, tags}.
 */
export function newSubscription(client, log, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  sub.on('subscribing', (ctx) =>
    log.push({ ev: 'subscribing', channel, code: ctx.code, reason: ctx.reason }),
  );
  sub.on('subscribed', (ctx) =>
    log.push({
      ev: 'subscribed',
      channel,
      recoverable: ctx.recoverable,
      positioned: ctx.positioned,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      hasRecoveredPublications: ctx.hasRecoveredPublications,
      offset: ctx.streamPosition ? num(ctx.streamPosition.offset) : null,
      epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
    }),
  );
  sub.on('unsubscribed', (ctx) =>
    log.push({ ev: 'unsubscribed', channel, code: ctx.code, reason: ctx.reason }),
  );
  sub.on('error', (ctx) =>
    log.push({
      ev: 'sub_error',
      channel,
      type: ctx.type,
      code: ctx.error ? ctx.error.code : null,
      message: ctx.error ? ctx.error.message : null,
    }),
  );
  sub.on('publication', (ctx) => log.push({ ev: 'pub', ...publicationView({ ...ctx, channel }) }));
  sub.on('join', (ctx) => log.push({ ev: 'join', channel, info: infoOf(ctx.info) }));
  sub.on('leave', (ctx) => log.push({ ev: 'leave', channel, info: infoOf(ctx.info) }));
  return sub;
}

/**
 * Records each server ping the SDK handles as {ev: 'ping'} (wraps the SDK's private ping handler,
 * which answers with a pong; the SDK version is pinned). Seeing a second ping after a pong
 * timeout shorter than the interval proves the server accepted the first pong.
 */
export function recordPings(client, log) {
  const handle = client._handleServerPing.bind(client);
  client._handleServerPing = (next) => {
    log.push({ ev: 'ping' });
    return handle(next);
  };
}

/** Connects and waits for `connected`; returns the client id. */
export async function connect(client, log) {
  const from = log.mark();
  client.connect();
  const ev = await log.wait('connected', (e) => e.ev === 'connected', from);
  return ev.client;
}

/** Subscribes and waits for `subscribed` (or fails on `unsubscribed`); returns the event. */
export async function subscribe(sub, log) {
  const from = log.mark();
  sub.subscribe();
  const ev = await log.wait(
    `subscribed to ${sub.channel}`,
    (e) => e.channel === sub.channel && (e.ev === 'subscribed' || e.ev === 'unsubscribed'),
    from,
  );
  if (ev.ev !== 'subscribed') {
    throw new Error(`subscribe to ${sub.channel} failed: ${JSON.stringify(ev)}`);
  }
  return ev;
}

/** The SDK's error for a rejected call, as {code, message}; throws if the call succeeded. */
export async function callError(what, promise) {
  try {
    const result = await promise;
    throw new Error(`${what} succeeded but an error was expected: ${JSON.stringify(result)}`);
  } catch (e) {
    if (e && typeof e.code === 'number') {
      return { code: e.code, message: e.message };
    }
    throw e;
  }
}

/**
 * Calls the server HTTP API: POST {API_URL}/{method} with X-API-Key. Returns the parsed reply
 * body ({result} or {error}); throws on a non-200 status.
 */
export async function api(method, body) {
  if (!API_URL) {
    throw new Error('ROTOR_API_URL is not set');
  }
  const res = await fetch(`${API_URL}/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await res.text();
  if (res.status !== 200) {
    throw new Error(`POST /api/${method} ${JSON.stringify(body)}: HTTP ${res.status}: ${text}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`POST /api/${method}: reply is not JSON: ${text}`);
  }
}
