// centrifuge-js and personal channels (`client.subscribe_to_user_personal_channel`): a
// connection of user alice starts subscribed server-side to `personal:#alice` (the SDK reports
// it as a server-side subscription) and receives what the backend publishes there; with
// `single_connection`, alice's second connection closes her first with 3504 (connection
// limit), a terminal code, and the new one gets the next publication.
//
// Needs the base config of tests/src/interop.rs plus namespace `personal` (presence,
// history, forced recovery) and personal channels with a single connection (see
// tests/tests/interop_js.rs).
//
// Prints one JSON object; see tests/tests/interop_js.rs for the exact expectations.

import { api, connect, finish, newClient, run, token } from './common.mjs';

const CHANNEL = 'personal:#alice';

/** Publishes `data` into alice's personal channel through the server API; the reply's result. */
async function publish(data) {
  const reply = await api('publish', { channel: CHANNEL, data });
  if (!reply.result) {
    throw new Error(`publish into ${CHANNEL}: ${JSON.stringify(reply)}`);
  }
  return reply.result;
}

/** The next publication of the personal channel in `log` after `from`. */
async function nextPub(log, from) {
  const ev = await log.wait(
    `a publication in ${CHANNEL}`,
    (e) => e.ev === 'server_pub' && e.channel === CHANNEL,
    from,
  );
  return { data: ev.data, offset: ev.offset };
}

run(async () => {
  const out = {};
  const first = newClient('alice-1', { token: token({ sub: 'alice' }) });
  const start = first.log.mark();
  await connect(first.client, first.log);
  const sub = await first.log.wait(
    `server-side subscription to ${CHANNEL}`,
    (e) => e.ev === 'server_subscribed' && e.channel === CHANNEL,
    start,
  );
  out.subscribed = {
    channel: sub.channel,
    recoverable: sub.recoverable,
    positioned: sub.positioned,
    epoch_nonempty: typeof sub.epoch === 'string' && sub.epoch.length > 0,
  };

  let mark = first.log.mark();
  out.publish = await publish({ text: 'just for you' });
  out.first_pub = await nextPub(first.log, mark);

  // A second connection of alice replaces the first.
  const second = newClient('alice-2', { token: token({ sub: 'alice' }) });
  mark = first.log.mark();
  await connect(second.client, second.log);
  const gone = await first.log.wait('alice-1 disconnected', (e) => e.ev === 'disconnected', mark);
  out.first_disconnected = { code: gone.code, reason: gone.reason };

  mark = second.log.mark();
  await publish({ text: 'to the new connection' });
  out.second_pub = await nextPub(second.log, mark);
  out.first_pubs_total = first.log.since(0, (e) => e.ev === 'server_pub').length;

  finish(out, [first.client, second.client]);
});
