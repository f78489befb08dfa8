// centrifuge-js JSON and Protobuf clients on one channel: each publication reaches both in the
// right encoding (JSON values for the JSON client, the payload bytes unchanged for the Protobuf
// one), an API payload with newlines stays one JSON frame, history agrees, and `send` — which
// Centrifugo OSS has no handler for — closes the connection with 3508.
//
// Needs the same config as js_core.mjs (see tests/src/interop.rs).
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import {
  API_KEY,
  API_URL,
  connect,
  enc,
  finish,
  newClient,
  newSubscription,
  num,
  run,
  subscribe,
  token,
} from './common.mjs';

const CHANNEL = 'chat:mixed';

// Raw body: `data` is pretty-printed JSON with newlines, and a `\n` escape inside a string.
const API_BODY = `{"channel":"${CHANNEL}","data":{\n  "from": "api",\n  "nl": "a\\nb"\n}}`;
const API_DATA_TEXT = '{\n  "from": "api",\n  "nl": "a\\nb"\n}';

function text(raw) {
  return new TextDecoder().decode(new Uint8Array(raw));
}

run(async () => {
  const out = {};
  const J = newClient('json-client', { token: token({ sub: 'jay' }) }, 'json');
  const P = newClient('protobuf-client', { token: token({ sub: 'pat' }) }, 'protobuf');
  await connect(J.client, J.log);
  await connect(P.client, P.log);
  const subJ = newSubscription(J.client, J.log, CHANNEL);
  const subP = newSubscription(P.client, P.log, CHANNEL);
  await subscribe(subJ, J.log);
  await subscribe(subP, P.log);

  await subJ.publish(enc({ from: 'json', s: 'é\u2028' }, 'json'));
  await subP.publish(new TextEncoder().encode('{"from":"pb","x":[1,2]}'));
  const res = await fetch(`${API_URL}/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY },
    body: API_BODY,
    signal: AbortSignal.timeout(5000),
  });
  out.api_status = res.status;
  const apiReply = JSON.parse(await res.text());
  out.api_offset = apiReply.result ? apiReply.result.offset : apiReply;

  const isPub = (e) => e.ev === 'pub';
  out.json_client = (await J.log.waitCount('publications', isPub, 3)).map((e) => ({
    data: e.data,
    offset: e.offset,
    user: e.info ? e.info.user : null,
  }));
  out.protobuf_client = (await P.log.waitCount('publications', isPub, 3)).map((e) => ({
    text: text(e.raw),
    offset: e.offset,
    user: e.info ? e.info.user : null,
  }));
  out.api_bytes_unchanged_for_protobuf = out.protobuf_client[2].text === API_DATA_TEXT;

  const hJ = await subJ.history({ limit: -1 });
  out.json_history = hJ.publications.map((p) => p.data);
  const hP = await subP.history({ limit: -1 });
  out.protobuf_history = hP.publications.map((p) => [new TextDecoder().decode(p.data), num(p.offset)]);

  // `send` has no handler in Centrifugo OSS: 3508, terminal.
  J.client.send({ hello: 1 }).catch(() => null);
  const closed = await J.log.wait('disconnect after send', (e) => e.ev === 'disconnected');
  out.send = { code: closed.code, reason: closed.reason, state: J.client.state };
  out.protobuf_client_state = P.client.state;

  finish(out, [J.client, P.client]);
});
