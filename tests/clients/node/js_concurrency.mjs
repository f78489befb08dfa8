// centrifuge-js against a server with `client.concurrency`: two RPCs of one client run side by
// side. The backend (tests/tests/interop_js.rs) holds `slow` until `fast` has reached it and
// answers `fast` at once, so `slow` succeeds only when both are in flight together.
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import { connect, dec, enc, finish, newClient, run, token } from './common.mjs';

run(async () => {
  const c = newClient('concurrent', { token: token({ sub: 'ann' }) });
  await connect(c.client, c.log);
  const call = async (method) => {
    const r = await c.client.rpc(method, enc({ method }));
    return dec(r.data);
  };
  const [slow, fast] = await Promise.all([call('slow'), call('fast')]);
  finish({ slow, fast }, [c.client]);
});
