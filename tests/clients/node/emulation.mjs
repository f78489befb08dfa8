// centrifuge-js over the HTTP-streaming emulation transport (no WebSocket): connect, subscribe,
// publish from the client, receive it, presence stats — every later command goes through
// /emulation. Env: ROTOR_BASE (http://host:port), ROTOR_TOKEN_SECRET. Prints one JSON object.
import { Centrifuge } from 'centrifuge';
import jwt from 'jsonwebtoken';

const base = process.env.ROTOR_BASE;
const deadline = setTimeout(() => { console.error('scenario timed out'); process.exit(2); }, 15000);
const once = (emitter, event) => new Promise((resolve) => emitter.once(event, resolve));
const token = jwt.sign({ sub: 'emu' }, process.env.ROTOR_TOKEN_SECRET, { expiresIn: 300 });
const client = new Centrifuge([{ transport: 'http_stream', endpoint: `${base}/connection/http_stream` }], {
  token, emulationEndpoint: `${base}/emulation`,
});
const out = {};
const connected = once(client, 'connected');
client.connect();
const ctx = await connected;
out.transport = ctx.transport;
const sub = client.newSubscription('chat:emu');
const subscribed = once(sub, 'subscribed');
sub.subscribe();
out.recoverable = (await subscribed).recoverable;
const publication = once(sub, 'publication');
await sub.publish({ via: 'emulation' });
const p = await publication;
out.publication = { data: p.data, offset: p.offset };
const stats = await sub.presenceStats();
out.presence = { clients: stats.numClients, users: stats.numUsers };
client.disconnect();
clearTimeout(deadline);
console.log(JSON.stringify(out));
process.exit(0);
