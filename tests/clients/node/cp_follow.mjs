// Follows one channel through the public edge and prints every event as a JSON line, so a
// test can kill the tenant process underneath and watch the SDK reconnect and resubscribe.
// Env: ROTOR_WS_URL, ROTOR_TOKEN_SECRET. Runs until killed (at most 60 s).
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import jwt from 'jsonwebtoken';

const token = jwt.sign({ sub: 'follower' }, process.env.ROTOR_TOKEN_SECRET, { expiresIn: 300 });
const client = new Centrifuge(process.env.ROTOR_WS_URL, {
  websocket: WebSocket, token, minReconnectDelay: 100, maxReconnectDelay: 500,
});
const log = (ev, extra = {}) => console.log(JSON.stringify({ ev, ...extra }));
client.on('connected', (ctx) => log('connected', { client: ctx.client }));
client.on('disconnected', (ctx) => log('disconnected', { code: ctx.code }));
client.on('connecting', (ctx) => log('connecting', { code: ctx.code }));
const sub = client.newSubscription('chat:live');
sub.on('subscribed', () => log('subscribed'));
sub.on('publication', (ctx) => log('publication', { data: ctx.data }));
sub.subscribe();
client.connect();
setTimeout(() => process.exit(0), 60000);
