// Control-plane flow with the real centrifuge-js SDK through the public edge: connect with a
// token signed by the project's secret, receive an API publication, then change the namespace
// through the REST API (enable history) and use history on the SAME connection.
// Env: ROTOR_BASE (control plane URL), ROTOR_SLUG, ROTOR_PROJECT, ROTOR_TOKEN (management
// token), ROTOR_API_KEY, ROTOR_TOKEN_SECRET. Prints one JSON object of observations.
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import jwt from 'jsonwebtoken';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`missing ${k}`); return v; };
const base = env('ROTOR_BASE');
const slug = env('ROTOR_SLUG');
const project = env('ROTOR_PROJECT');
const mgmt = env('ROTOR_TOKEN');
const apiKey = env('ROTOR_API_KEY');
const secret = env('ROTOR_TOKEN_SECRET');

const deadline = setTimeout(() => { console.error('scenario timed out'); process.exit(2); }, 20000);
const once = (emitter, event) => new Promise((resolve) => emitter.once(event, resolve));

async function rest(method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${mgmt}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

async function publish(data) {
  const r = await fetch(`${base}/t/${slug}/api/publish`, {
    method: 'POST', headers: { 'X-API-Key': apiKey }, body: JSON.stringify({ channel: 'chat:room', data }),
  });
  return r.json();
}

const out = { connecting: 0 };
const token = jwt.sign({ sub: 'user-1' }, secret, { expiresIn: 300 });
const client = new Centrifuge(base.replace('http://', 'ws://') + `/t/${slug}/connection/websocket`, { websocket: WebSocket, token });
client.on('connecting', () => { out.connecting += 1; });
const connected = once(client, 'connected');
client.connect();
out.client = (await connected).client;

const sub = client.newSubscription('chat:room');
const subscribed = once(sub, 'subscribed');
sub.subscribe();
out.first_subscribe = { recoverable: (await subscribed).recoverable };

let next = once(sub, 'publication');
out.api_publish = (await publish({ n: 1 })).result;
const p1 = await next;
out.first_publication = { data: p1.data, offset: p1.offset ?? 0 };

try { await sub.history({ limit: 10 }); out.history_before = 'ok'; } catch (e) { out.history_before = e.code; }

const put = await rest('PUT', `/v1/projects/${project}/namespaces/chat`, {
  allow_subscribe_for_client: true, allow_history_for_subscriber: true, history_size: 10, history_ttl: '300s',
});
out.namespace_update = put.status;
for (;;) {
  const p = (await rest('GET', `/v1/projects/${project}`)).body;
  if (p.applied_version === p.config_version) break;
  await new Promise((r) => setTimeout(r, 5));
}
next = once(sub, 'publication');
const second = (await publish({ n: 2 })).result;
out.second_publish = { offset: second.offset, has_epoch: typeof second.epoch === 'string' };
const p2 = await next;
out.second_publication = { data: p2.data, offset: p2.offset };
const h = await sub.history({ limit: 10 });
out.history_after = h.publications.map((p) => ({ data: p.data, offset: p.offset }));
out.client_after = client.state === 'connected' ? out.client : null;
out.connecting_total = out.connecting;

client.disconnect();
clearTimeout(deadline);
console.log(JSON.stringify(out));
process.exit(0);
