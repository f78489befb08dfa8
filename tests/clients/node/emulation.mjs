// centrifuge-js over a bidirectional emulation transport (no WebSocket): `http_stream` or `sse`
// (EventSource from the `eventsource` package, as browsers have built in). Connect, subscribe,
// publish from the client, receive it, presence stats — every command after connect goes through
// /emulation. Env: ROTOR_BASE (http://host:port), ROTOR_TOKEN_SECRET, ROTOR_TRANSPORT
// (http_stream | sse). Prints one JSON object.
import { Centrifuge } from 'centrifuge';
import { EventSource } from 'eventsource';
import jwt from 'jsonwebtoken';

const base = process.env.ROTOR_BASE;
const transport = process.env.ROTOR_TRANSPORT || 'http_stream';
const deadline = setTimeout(() => { console.error('scenario timed out'); process.exit(2); }, 15000);
const once = (emitter, event) => new Promise((resolve) => emitter.once(event, resolve));
const token = jwt.sign({ sub: 'emu' }, process.env.ROTOR_TOKEN_SECRET, { expiresIn: 300 });
const client = new Centrifuge([{ transport, endpoint: `${base}/connection/${transport}` }], {
  token, emulationEndpoint: `${base}/emulation`, eventsource: EventSource,
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
