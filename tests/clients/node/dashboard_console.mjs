// The console and the usage page in a real browser (Debian's Chromium via playwright-core), for
// issue #21 items 7 and 5:
//
// Console: publication data is pretty-printed; the log filters by channel; when the project
// drops the connection (server API `disconnect` with a reconnecting code) the console logs the
// disconnect and the reconnect and restores its subscriptions (a publication after it arrives);
// the history button shows what a channel keeps, newest first; refusals come with a hint and a
// link: 102 on `nope:x` (no such namespace), 103 when subscribing without a token in a namespace
// that does not allow it, 108 for history in a namespace that keeps none.
//
// Usage: "Connections now" is live and the same on the 1 hour, 24 hours and 30 days ranges; the
// namespaces (with a "(no namespace)" row) add up to "All channels"; with a namespace chosen,
// API calls and errors say "not per namespace"; axes count in whole numbers; hovering a chart
// shows its values; the plan's connection and publication limits are drawn as labelled lines.
//
// Screenshots at 1280 and 390 px wide go to $ROTOR_SCREENSHOTS.
//
// Environment:
//   ROTOR_BASE_URL     http://127.0.0.1:PORT of the control plane
//   ROTOR_SCREENSHOTS  directory for PNG screenshots
//   ROTOR_CHROMIUM     browser binary (default /usr/bin/chromium)
//   ROTOR_TIMEOUT_MS   global deadline (default 140000)
//
// Prints one JSON object of observations; tests/tests/dashboard_console.rs asserts on it.

import { execFile } from 'node:child_process';
import { screenshot, startScenario, until } from './browser_scenario.mjs';

const WAIT = 15000;
const { BASE, SHOTS, fail, deadline, browser } = await startScenario('console', {
  shots: '/tmp/rotor-shots-console',
  timeoutMs: 140000,
});

const obs = {};
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
const page = await context.newPage();
page.setDefaultTimeout(WAIT);
const consoleErrors = [];
const watch = (p) => {
  p.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  p.on('pageerror', (e) => consoleErrors.push(String(e)));
};
watch(page);
let shot = 0;
const snap = async (name, p = page) => {
  shot += 1;
  await screenshot(p, `${SHOTS}/${String(shot).padStart(2, '0')}-${name}.png`);
};
const step = async (name, fn) => {
  try {
    return await fn();
  } catch (e) {
    try { await screenshot(page, `${SHOTS}/failed-${name}.png`); } catch (_) { /* gone */ }
    fail(`${name}: ${e.message}\nbrowser errors: ${JSON.stringify(consoleErrors)}`);
  }
};
const text = async (selector, p = page) => ((await p.textContent(selector)) || '').trim();

let project;
// The tenant's server API through curl, as a customer's backend would call it.
const api = (method, key, body) => new Promise((resolve, reject) => {
  execFile('curl', ['-sS', '--max-time', '10', '-X', 'POST', `${BASE}/t/${project.slug}/api/${method}`,
    '-H', `X-API-Key: ${key}`, '-H', 'Content-Type: application/json', '-d', JSON.stringify(body)],
  (err, stdout, stderr) => {
    if (err) return reject(new Error(`curl ${method}: ${stderr}`));
    try { resolve(JSON.parse(stdout)); } catch (e) { reject(new Error(`curl ${method}: ${stdout}`)); }
  });
});

project = await step('sign up, create a project, a key and namespaces', async () => {
  await page.goto(`${BASE}/signup`);
  await page.fill('#email', `console-${Date.now()}@example.com`);
  await page.fill('#password', 'correct horse battery');
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}/projects`);
  await page.fill('#project-name', 'Console Demo');
  await page.click('section[aria-labelledby=new-project] button[type=submit]');
  await page.waitForURL(/\/projects\/prj_[a-z0-9]+$/);
  const id = page.url().match(/prj_[a-z0-9]+/)[0];
  const slug = await text('.project-head .meta code');
  for (const [name, preset] of [['quiet', 'empty'], ['chat', 'chat']]) {
    await page.goto(`${BASE}/projects/${id}/namespaces`);
    await page.fill('#ns-name', name);
    await page.check(`input[name=preset][value=${preset}]`);
    await page.click('section[aria-labelledby=ns-new] button[type=submit]');
    await page.waitForURL(new RegExp(`/namespaces/${name}$`));
  }
  await page.goto(`${BASE}/projects/${id}/keys`);
  await page.fill('#key-name', 'backend');
  await page.click('form[action$="/keys"] button[type=submit]');
  const key = await text('#new-api-key');
  return { id, slug, key };
});
const consoleUrl = `${BASE}/projects/${project.id}/console`;

// Waits until the tenant runs the namespaces just made (its config is pushed within moments).
await step('the tenant has the namespaces', () => until('the chat namespace on the tenant', async () => {
  const r = await api('publish', project.key, { channel: 'chat:warmup', data: {} });
  return r.result ? r : null;
}, 30000));

const subscribe = async (channel, p = page) => {
  await p.fill('#sub-channel', channel);
  await p.click('#subscribe-form button[type=submit]');
  await p.waitForSelector(`#log li[data-kind=info][data-channel="${channel}"]:has-text("subscribed")`);
};

await step('console: pretty JSON and the channel filter', async () => {
  await page.goto(consoleUrl);
  await page.waitForSelector('#console[data-state=connected]', { timeout: 20000 });
  for (const ch of ['updates:a', 'updates:b', 'chat:room']) await subscribe(ch);
  await api('publish', project.key, { channel: 'updates:a', data: { text: 'to a', nested: { n: 1 } } });
  await api('publish', project.key, { channel: 'updates:b', data: { text: 'to b' } });
  await page.waitForSelector('#log li[data-kind=pub][data-channel="updates:a"]:has-text("to a")');
  await page.waitForSelector('#log li[data-kind=pub][data-channel="updates:b"]:has-text("to b")');
  obs.pretty_json = await page.textContent('#log li[data-kind=pub][data-channel="updates:a"] pre.json');
  await page.fill('#log-filter', 'updates:b');
  obs.filter_visible_channels = await page.$$eval('#log li:not([hidden])',
    (lis) => [...new Set(lis.map((li) => li.dataset.channel || ''))]);
  obs.filter_hidden_pubs = await page.locator('#log li[data-kind=pub][hidden]').count();
  obs.filter_count_text = await text('#log-count');
  await snap('console-filtered');
  await page.fill('#log-filter', '');
  obs.after_clear_hidden = await page.locator('#log li[hidden]').count();
});

await step('console: disconnect, reconnect, subscriptions restored', async () => {
  const user = await page.getAttribute('#console', 'data-user');
  obs.disconnect_reply = await api('disconnect', project.key,
    { user, disconnect: { code: 3011, reason: 'dropped by the test' } });
  await page.waitForSelector('#log li[data-kind=disconnect]');
  obs.disconnect_text = await text('#log li[data-kind=disconnect]');
  await page.waitForSelector('#log li[data-kind=reconnect]', { timeout: 20000 });
  obs.reconnect_text = await text('#log li[data-kind=reconnect]');
  for (const ch of ['updates:a', 'updates:b', 'chat:room']) {
    await page.waitForSelector(`#log li[data-kind=restored][data-channel="${ch}"]`);
  }
  obs.restored = await page.$$eval('#log li[data-kind=restored]', (lis) => lis.map((li) => li.dataset.channel).sort());
  obs.chips_after_reconnect = await page.$$eval('#subscriptions li', (lis) => lis.map((li) => li.firstChild.textContent).sort());
  await api('publish', project.key, { channel: 'updates:a', data: { text: 'after the reconnect' } });
  await page.waitForSelector('#log li[data-kind=pub][data-channel="updates:a"]:has-text("after the reconnect")');
  obs.received_after_reconnect = true;
  obs.state_after_reconnect = await page.getAttribute('#console', 'data-state');
  await snap('console-reconnected');
});

await step('console: history', async () => {
  await page.fill('#pub-channel', 'updates:a');
  await page.click('#history-btn');
  await page.waitForSelector('#history li');
  obs.history_items = await page.$$eval('#history li pre.json', (pres) => pres.map((p) => JSON.parse(p.textContent)));
  obs.history_offsets = await page.$$eval('#history li', (lis) => lis.map((li) => Number(li.dataset.offset)));
  await snap('console-history');
  await page.fill('#pub-channel', 'quiet:x');
  await page.click('#history-btn');
  await page.waitForSelector('#history-hint:not([hidden])');
  obs.history_off_hint = await text('#history-hint');
  obs.history_off_link = await page.getAttribute('#history-hint a', 'href');
});

await step('console: refused channels explained', async () => {
  await page.fill('#sub-channel', 'nope:x');
  await page.click('#subscribe-form button[type=submit]');
  await page.waitForSelector('#sub-hint:not([hidden])');
  obs.unknown_hint = await text('#sub-hint');
  obs.unknown_hint_code = await page.getAttribute('#sub-hint', 'data-code');
  obs.unknown_hint_link = await page.getAttribute('#sub-hint a', 'href');
  await snap('console-unknown-namespace');
  await page.uncheck('#sub-with-token');
  await page.fill('#sub-channel', 'quiet:x');
  await page.click('#subscribe-form button[type=submit]');
  await page.waitForSelector('#sub-hint[data-code="103"]');
  obs.denied_hint = await text('#sub-hint');
  obs.denied_hint_link = await page.getAttribute('#sub-hint a', 'href');
  await snap('console-permission-hint');
  // Without a token, a namespace that allows it lets the console in.
  await page.fill('#sub-channel', 'updates:c');
  await page.click('#subscribe-form button[type=submit]');
  await page.waitForSelector('#log li[data-kind=info][data-channel="updates:c"]:has-text("subscribed")');
  obs.tokenless_subscribed = true;
  await page.check('#sub-with-token');
});

// A second console tab joins chat:room: its join is delivered to the first (join/leave
// deliveries count in the namespace as in the project). A publication to a channel without a
// namespace gives that row something to count.
const second = await step('a second console joins', async () => {
  const p = await context.newPage();
  watch(p);
  await p.goto(consoleUrl);
  await p.waitForSelector('#console[data-state=connected]', { timeout: 20000 });
  await subscribe('chat:room', p);
  await page.waitForSelector('#log li[data-kind=join][data-channel="chat:room"]');
  await api('publish', project.key, { channel: 'lobby', data: { text: 'no namespace' } });
  return p;
});

const usageUrl = (range, ns = '') => `${BASE}/projects/${project.id}/usage?range=${range}&namespace=${encodeURIComponent(ns)}`;
const usage = await context.newPage();
usage.setDefaultTimeout(WAIT);
watch(usage);
const loaded = async (url) => {
  await usage.goto(url);
  await usage.waitForFunction(() => Number(document.getElementById('usage').dataset.updates || 0) >= 1);
};

await step('usage: connections now on every range', async () => {
  // Two consoles are open: the tenant reports two connections within a report cycle.
  await until('two live connections', async () => {
    await loaded(usageUrl('1h'));
    return (await usage.getAttribute('#usage', 'data-total-connections')) === '2';
  });
  obs.connections_by_range = {};
  for (const range of ['1h', '24h', '30d']) {
    await loaded(usageUrl(range));
    obs.connections_by_range[range] = {
      data: await usage.getAttribute('#usage', 'data-total-connections'),
      shown: await text('#stat-connections', usage),
    };
  }
  obs.connections_limit_note = await text('#stat-connections-limit', usage);
});

await step('usage: limits, whole-number axes, hover', async () => {
  await loaded(usageUrl('1h'));
  obs.limit_connections = await usage.getAttribute('#chart-connections', 'data-limit-label');
  obs.limit_messages = await usage.getAttribute('#chart-messages', 'data-limit-label');
  obs.limit_messages_value = await usage.getAttribute('#chart-messages', 'data-limit-value');
  obs.limit_note = await text('#limit-published_per_bucket', usage);
  obs.ticks = {};
  for (const id of ['chart-connections', 'chart-messages', 'chart-api', 'chart-errors']) {
    obs.ticks[id] = (await usage.getAttribute(`#${id}`, 'data-ticks')).split(',').map(Number);
  }
  const box = await usage.locator('#chart-messages').boundingBox();
  await usage.mouse.move(box.x + box.width - 12, box.y + box.height / 2);
  await usage.waitForSelector('#chart-messages ~ .chart-tip:not([hidden])');
  obs.tooltip = await usage.$eval('#chart-messages ~ .chart-tip', (t) => t.innerText);
  await snap('usage-hover', usage);
});

await step('usage: namespaces add up to all channels', async () => {
  // Readings land every few seconds (every 15 s while the tenant's clients are quiet), and a
  // namespace (channels without one included) is listed once it has a reading: reload the
  // list with each look, and compare once every namespace has caught up with the total.
  obs.sums = await until('namespace totals equal to all channels', async () => {
    await loaded(usageUrl('1h'));
    obs.namespace_options = await usage.$$eval('#usage-namespace option', (os) => os.map((o) => ({ value: o.value, label: o.textContent })));
    const values = obs.namespace_options.map((o) => o.value).filter((v) => v !== '');
    const got = await usage.evaluate(async ({ id, values }) => {
      const one = async (ns) => (await (await fetch(`/projects/${id}/usage/data?range=1h&namespace=${encodeURIComponent(ns)}`)).json()).totals;
      const all = await one('');
      const parts = await Promise.all(values.map(one));
      const sum = (k) => parts.reduce((a, t) => a + (t[k] || 0), 0);
      return { all_published: all.published, all_delivered: all.delivered, ns_published: sum('published'), ns_delivered: sum('delivered') };
    }, { id: project.id, values });
    return got.all_published >= 5 && got.all_published === got.ns_published && got.all_delivered === got.ns_delivered ? got : null;
  });
});

await step('usage: a namespace says what it cannot count', async () => {
  await loaded(usageUrl('24h', 'updates'));
  obs.ns_api_calls = await text('#stat-api_calls', usage);
  obs.ns_errors = await text('#stat-errors', usage);
  obs.ns_api_note = await text('#note-api_calls', usage);
  obs.ns_connections = await usage.getAttribute('#usage', 'data-total-connections');
  await snap('usage-namespace', usage);
  await loaded(usageUrl('1h'));
  obs.all_api_calls = await text('#stat-api_calls', usage);
  await snap('usage', usage);
});

await step('390 px wide', async () => {
  const mobile = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'en-US', storageState: await context.storageState() });
  const m = await mobile.newPage();
  watch(m);
  obs.mobile_overflow = {};
  await m.goto(consoleUrl);
  await m.waitForSelector('#console[data-state=connected]', { timeout: 20000 });
  obs.mobile_overflow.console = await m.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await snap('mobile-console', m);
  await m.goto(usageUrl('1h'));
  await m.waitForFunction(() => Number(document.getElementById('usage').dataset.updates || 0) >= 1);
  obs.mobile_overflow.usage = await m.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await snap('mobile-usage', m);
  await mobile.close();
});

await second.close();
obs.console_errors = consoleErrors;
await browser.close();
clearTimeout(deadline);
process.stdout.write(JSON.stringify(obs) + '\n', () => process.exit(0));
