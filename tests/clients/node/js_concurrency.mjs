// centrifuge-js against a server with `client.concurrency`: two RPCs of one client run side by
// side. The backend (tests/tests/interop_js.rs) holds `slow` until `fast` has reached it and
// answers `fast` at once, so `slow` succeeds only when both are in flight together. Over
// WebSocket by default; with ROTOR_TRANSPORT (http_stream | sse) over that bidirectional
// emulation transport, whose commands arrive by POST /emulation.
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import { Centrifuge } from 'centrifuge';
import { EventSource } from 'eventsource';

import { WS_URL, connect, dec, enc, finish, newClient, run, token } from './common.mjs';

const transport = process.env.ROTOR_TRANSPORT;

/** A connected client of user `ann`, over WebSocket or the emulation transport asked for. */
async function connected() {
  const credentials = { token: token({ sub: 'ann' }) };
  if (!transport) {
    const c = newClient('concurrent', credentials);
    await connect(c.client, c.log);
    return c.client;
  }
  const base = WS_URL.replace(/^ws/, 'http').replace(/\/connection\/websocket$/, '');
  const client = new Centrifuge([{ transport, endpoint: `${base}/connection/${transport}` }], {
    ...credentials,
    emulationEndpoint: `${base}/emulation`,
    eventsource: EventSource,
  });
  const ready = new Promise((resolve) => client.once('connected', resolve));
  client.connect();
  await ready;
  return client;
}

run(async () => {
  const client = await connected();
  const call = async (method) => {
    const r = await client.rpc(method, enc({ method }));
    return dec(r.data);
  };
  const [slow, fast] = await Promise.all([call('slow'), call('fast')]);
  finish({ slow, fast }, [client]);
});
