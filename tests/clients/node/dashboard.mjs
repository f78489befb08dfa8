// The dashboard in a real browser (Debian's Chromium via playwright-core): sign up, create a
// project, a key and a namespace, open the console, subscribe, publish with curl and see the
// message arrive, then watch the usage chart count it. Keys show their first characters and
// when they were last used; a publish-only key publishes but cannot read history; names are
// unique; revoking takes a confirmation page. The settings page saves by POST/redirect/GET,
// says what is wrong in words, and its endpoint test refuses this machine; the audit log
// lists every change in words. Also: a form without its CSRF token is refused, another
// account's project (and its audit log) is a 404, pages fit 375 px, logout ends the session.
// Screenshots of every page go to $ROTOR_SCREENSHOTS.
//
// Environment:
//   ROTOR_BASE_URL     http://127.0.0.1:PORT of the control plane
//   ROTOR_SCREENSHOTS  directory for PNG screenshots
//   ROTOR_CHROMIUM     browser binary (default /usr/bin/chromium)
//   ROTOR_TIMEOUT_MS   global deadline (default 110000)
//
// Prints one JSON object of observations; the Rust test (tests/tests/dashboard.rs) asserts on it.

import { execFile } from 'node:child_process';
import { screenshot, startScenario, until } from './browser_scenario.mjs';

const WAIT = 15000;
const { BASE, SHOTS, fail, deadline, browser } = await startScenario('dashboard', {
  shots: '/tmp/rotor-shots',
  timeoutMs: 110000,
});

const obs = {};
const step = async (name, fn) => {
  try {
    return await fn();
  } catch (e) {
    try {
      await screenshot(page, `${SHOTS}/failed-${name}.png`);
    } catch (_) { /* the page may be gone */ }
    fail(`${name}: ${e.message}\nbrowser errors: ${JSON.stringify(consoleErrors)}`);
  }
};

const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(WAIT);
page.on('dialog', (d) => d.accept());
const consoleErrors = [];
// Forms answer invalid input with 422 and the page re-rendered with inline errors; Chromium logs
// each of those as a failed resource load. Everything else is a real script or network error.
const EXPECTED = /^Failed to load resource: the server responded with a status of 422/;
page.on('console', (m) => {
  if (m.type() === 'error' && !EXPECTED.test(m.text())) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
let shot = 0;
const snap = async (name, p = page) => {
  shot += 1;
  await screenshot(p, `${SHOTS}/${String(shot).padStart(2, '0')}-${name}.png`);
};

const email = `owner-${Date.now()}@example.com`;
const password = 'correct horse battery';

// Sign up: a weak password is refused inline and the email typed is kept.
await step('signup', async () => {
  await page.goto(`${BASE}/signup`);
  await snap('signup');
  await page.fill('#email', email);
  await page.fill('#password', 'short');
  await page.click('button[type=submit]');
  obs.weak_password_error = await page.textContent('.alert');
  obs.email_kept = await page.inputValue('#email');
  await snap('signup-weak-password');
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}/projects`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'rotor_session');
  obs.session_cookie = session ? { httpOnly: session.httpOnly, sameSite: session.sameSite } : null;
  await snap('projects-empty');
});

// Create a project.
const project = await step('create project', async () => {
  await page.fill('#project-name', 'Browser Demo');
  await page.click('section[aria-labelledby=new-project] button[type=submit]');
  await page.waitForURL(/\/projects\/prj_[a-z0-9]+/);
  const id = page.url().match(/prj_[a-z0-9]+/)[0];
  const slug = (await page.textContent('.project-head .meta code')).trim();
  obs.websocket_endpoint = (await page.textContent('.endpoints tbody tr:first-child code')).trim();
  await snap('overview');
  return { id, slug };
});
obs.project_slug = project.slug;

// Create an API key: shown once.
const apiKey = await step('create key', async () => {
  await page.click('nav.tabs >> text=Keys');
  await page.fill('#key-name', 'backend');
  await page.click('form[action$="/keys"] button[type=submit]');
  const key = (await page.textContent('#new-api-key')).trim();
  await snap('key-created');
  await page.goto(`${BASE}/projects/${project.id}/keys`);
  obs.key_hidden_after_reload = !(await page.content()).includes(key);
  await page.click('text=Reveal secret');
  obs.secret_revealed = ((await page.textContent('#token-secret-value')) || '').trim().length >= 32;
  await snap('secret-revealed');
  return key;
});
obs.api_key_prefix = apiKey.slice(0, 3);

// Create a namespace, try a bad value (kept inline), then save a good one.
await step('namespace', async () => {
  await page.click('nav.tabs >> text=Namespaces');
  await page.fill('#ns-name', 'chat');
  await page.check('input[name=preset][value=chat]');
  await page.click('section[aria-labelledby=ns-new] button[type=submit]');
  await page.waitForURL(/\/namespaces\/chat/);
  obs.namespace_presence_checked = await page.isChecked('#opt-presence');
  obs.namespace_first_group = (await page.textContent('.option-group legend, .option-group summary')).trim();
  obs.namespace_folded_groups = await page.locator('details.option-group:not([open])').count();
  obs.namespace_regex_visible = await page.isVisible('#opt-channel_regex');
  obs.namespace_history_label = (await page.textContent('label[for=opt-history_size]')).trim();
  obs.namespace_help_has_backticks = (await page.textContent('#help-force_recovery_mode')).includes('`');
  obs.namespace_help_code_spans = await page.locator('#help-force_recovery_mode code').count();
  await snap('namespace-created');
  await page.fill('#opt-history_size', 'lots');
  await page.click('.sticky-actions button');
  obs.namespace_bad_value_error = await page.textContent('.field-error');
  obs.namespace_bad_value_kept = await page.inputValue('#opt-history_size');
  await snap('namespace-invalid');
  await page.fill('#opt-history_size', '50');
  await page.click('.sticky-actions button');
  await page.waitForSelector('.notice:has-text("Saved")');
  obs.namespace_saved_history = await page.inputValue('#opt-history_size');
  await page.goto(`${BASE}/projects/${project.id}/namespaces`);
  await snap('namespaces');
});

// The console: connect, subscribe, publish with curl, see it arrive.
await step('console', async () => {
  await page.goto(`${BASE}/projects/${project.id}/console`);
  await page.waitForSelector('#console[data-state=connected]', { timeout: 20000 });
  await page.fill('#sub-channel', 'chat:lobby');
  await page.click('#subscribe-form button[type=submit]');
  await page.waitForSelector('#subscriptions li');
  await page.waitForSelector('#log li[data-kind=info][data-channel="chat:lobby"]');
  const apiUrl = `${BASE}/t/${project.slug}/api/publish`;
  const curl = await new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', '-X', 'POST', apiUrl,
      '-H', `X-API-Key: ${apiKey}`, '-H', 'Content-Type: application/json',
      '-d', JSON.stringify({ channel: 'chat:lobby', data: { text: 'hello from curl' } })],
    (err, stdout, stderr) => resolve({ err, stdout, stderr }));
  });
  if (curl.err) throw new Error(`curl failed: ${curl.stderr}`);
  obs.curl_reply = JSON.parse(curl.stdout);
  await page.waitForSelector('#log li[data-kind=pub]:has-text("hello from curl")');
  obs.console_received_curl = true;
  // Publish from the console itself, and ask who is here.
  await page.fill('#pub-channel', 'chat:lobby');
  await page.fill('#pub-data', '{"text": "from the console form"}');
  await page.click('#publish-form button[type=submit]');
  await page.waitForSelector('#log li[data-kind=pub]:has-text("from the console form")');
  await page.click('#presence-btn');
  await page.waitForSelector('#presence li');
  obs.presence_text = await page.textContent('#presence p');
  await snap('console');
});

// Usage: the live chart counts the publications within a few collection rounds.
await step('usage', async () => {
  await page.goto(`${BASE}/projects/${project.id}/usage`);
  await page.waitForFunction(() => Number(document.getElementById('usage').dataset.totalPublished || 0) >= 2,
    null, { timeout: 45000 });
  obs.usage_published = Number(await page.getAttribute('#usage', 'data-total-published'));
  obs.usage_stat_text = (await page.textContent('#stat-published')).trim();
  await snap('usage');
});

// curl against the tenant's server API: the parsed reply (or the HTTP status when it is not JSON).
const curlApi = (method, key, body) => new Promise((resolve) => {
  execFile('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', '-X', 'POST',
    `${BASE}/t/${project.slug}/api/${method}`, '-H', `X-API-Key: ${key}`,
    '-H', 'Content-Type: application/json', '-d', JSON.stringify(body)],
  (err, stdout) => {
    const lines = (stdout || '').trim().split('\n');
    const status = Number(lines.pop());
    let reply = null;
    try { reply = JSON.parse(lines.join('\n')); } catch (_) { /* not JSON */ }
    resolve({ status, reply, err: err ? String(err) : null });
  });
});

// Keys, second pass: the first characters of each key and when it was last used (the tenant
// reports it: the curl publish above shows up within a report or two); a publish-only key; a
// duplicate name; revoking through the confirmation page; reloads change nothing.
await step('keys second pass', async () => {
  const keysUrl = `${BASE}/projects/${project.id}/keys`;
  await page.goto(keysUrl);
  obs.key_prefix_shown = (await page.textContent('tr[data-key=backend] .key-prefix')).trim();
  obs.key_prefix_expected = `${apiKey.slice(0, 10)}…`;
  obs.key_page_has_whole_key = (await page.content()).includes(apiKey);
  obs.key_last_used = await until('the key\'s last use', async () => {
    await page.goto(keysUrl);
    const t = (await page.textContent('tr[data-key=backend] .key-last-used')).trim();
    return t !== 'never' ? t : null;
  });
  obs.key_scope_backend = (await page.textContent('tr[data-key=backend] .key-scope')).trim();
  await page.fill('#key-name', 'publisher');
  await page.selectOption('#key-scope', 'publish');
  await page.click('form[action$="/keys"] button[type=submit]');
  const publisher = (await page.textContent('#new-api-key')).trim();
  obs.key_scope_publisher = (await page.textContent('tr[data-key=publisher] .key-scope')).trim();
  await snap('key-publish-only');
  // Once the tenant has the key (its config is pushed within moments), it publishes…
  const published = await until('the publish-only key to work', async () => {
    const r = await curlApi('publish', publisher, { channel: 'chat:lobby', data: { text: 'from the publisher' } });
    return r.status === 200 ? r : null;
  }, 30000);
  obs.publisher_publish_reply = published.reply;
  // …but reads nothing.
  obs.publisher_history_reply = (await curlApi('history', publisher, { channel: 'chat:lobby' })).reply;
  obs.publisher_presence_reply = (await curlApi('presence', publisher, { channel: 'chat:lobby' })).reply;
  // A second key with the same name is refused, in words, keeping what was typed.
  await page.fill('#key-name', 'publisher');
  await page.click('form[action$="/keys"] button[type=submit]');
  obs.duplicate_key_error = (await page.textContent('#keys-error')).trim();
  obs.duplicate_key_kept = await page.inputValue('#key-name');
  obs.keys_after_duplicate = await page.locator('#api-key-table tbody tr').count();
  await snap('key-duplicate-name');
  // Revoke: a confirmation page first; nothing happens until it is confirmed.
  await page.click('a[aria-label="Revoke publisher"]');
  await page.waitForURL(/\/keys\/key_[a-z0-9]+\/revoke$/);
  obs.revoke_confirm_title = (await page.textContent('#revoke-title')).trim();
  obs.keys_before_confirm = await page.evaluate(async (u) => {
    const html = await (await fetch(u)).text();
    return (html.match(/data-key=/g) || []).length;
  }, keysUrl);
  await snap('key-revoke-confirm');
  await page.click('#confirm-revoke');
  await page.waitForURL(keysUrl);
  obs.revoked_notice = (await page.textContent('.notice')).trim();
  obs.keys_after_revoke = await page.locator('#api-key-table tbody tr').count();
  await page.reload();
  obs.keys_after_revoke_reload = await page.locator('#api-key-table tbody tr').count();
  obs.revoked_notice_after_reload = await page.locator('.notice').count();
  // The revoked key is refused by the tenant once its config has moved on.
  obs.revoked_key_status = await until('the revoked key to be refused', async () => {
    const r = await curlApi('publish', publisher, { channel: 'chat:lobby', data: { n: 1 } });
    return r.status === 401 ? r.status : null;
  }, 30000);
});

// Settings: saved by POST/redirect/GET; a mistake is said in words and keeps what was typed;
// "Test this endpoint" on this machine's address is refused and says why.
await step('settings', async () => {
  const settingsUrl = `${BASE}/projects/${project.id}/settings`;
  await page.click('nav.tabs >> text=Settings');
  await page.waitForURL(settingsUrl);
  await page.fill('#f-name', 'Browser Demo EU');
  await page.fill('#f-origins', 'https://shop.example.com');
  await page.check('#f-anonymous');
  await page.check('#f-user_status');
  await page.click('#save-settings');
  await page.waitForURL(settingsUrl);
  obs.settings_notice = (await page.textContent('#settings-notice')).trim();
  obs.settings_title_after_save = (await page.textContent('.project-head h1')).trim();
  await snap('settings-saved');
  await page.reload();
  obs.settings_notice_after_reload = await page.locator('#settings-notice').count();
  obs.settings_anonymous_after_reload = await page.isChecked('#f-anonymous');
  obs.settings_user_status_after_reload = await page.isChecked('#f-user_status');
  await page.fill('#f-origins', 'shop.example.com');
  await page.click('#save-settings');
  await page.waitForSelector('#settings-error');
  obs.settings_error = (await page.textContent('#settings-error')).trim();
  obs.settings_error_kept = await page.inputValue('#f-origins');
  await snap('settings-error');
  await page.goto(settingsUrl);
  obs.settings_origins_after_error = await page.inputValue('#f-origins');
  await page.fill('#f-connect_endpoint', 'http://127.0.0.1:9/connect');
  await page.click('#test-connect');
  await page.waitForSelector('#probe-connect');
  obs.probe_text = (await page.textContent('#probe-connect')).trim();
  obs.probe_url_kept = await page.inputValue('#f-connect_endpoint');
  await snap('settings-probe');
  await page.reload();
  obs.probe_after_reload = await page.locator('#probe-connect').count();
  obs.probe_saved_nothing = (await page.inputValue('#f-connect_endpoint')) === '';
});

// The audit log: every change, newest first, in words.
await step('audit', async () => {
  await page.click('nav.tabs >> text=Audit log');
  await page.waitForSelector('#audit-table');
  obs.audit_rows = await page.$$eval('#audit-table tbody tr', (rows) => rows.map((r) => ({
    who: r.querySelector('.audit-actor').textContent.trim(),
    what: r.querySelector('.audit-what').textContent.trim(),
  })));
  await snap('audit');
  // The account's log has the same entries, with the project they concern.
  await page.goto(`${BASE}/account/audit`);
  obs.account_audit_projects = await page.$$eval('#audit-table tbody tr .audit-project',
    (cells) => [...new Set(cells.map((c) => c.textContent.trim()))]);
  obs.account_audit_rows = await page.locator('#audit-table tbody tr').count();
});

// Management token.
await step('account', async () => {
  await page.goto(`${BASE}/account`);
  await page.fill('#token-name', 'terraform');
  await page.click('form[action="/account/tokens"] button[type=submit]');
  obs.management_token_prefix = ((await page.textContent('#new-token')) || '').trim().slice(0, 4);
  await snap('account');
});

// 375 px wide: no horizontal scrolling on any page.
await step('mobile', async () => {
  const mobile = await browser.newContext({ viewport: { width: 375, height: 800 }, storageState: await context.storageState() });
  const m = await mobile.newPage();
  obs.mobile_overflow = {};
  for (const [name, path] of [
    ['projects', '/projects'],
    ['overview', `/projects/${project.id}`],
    ['keys', `/projects/${project.id}/keys`],
    ['namespace', `/projects/${project.id}/namespaces/chat`],
    ['usage', `/projects/${project.id}/usage`],
    ['console', `/projects/${project.id}/console`],
    ['settings', `/projects/${project.id}/settings`],
    ['audit', `/projects/${project.id}/audit`],
    ['account', '/account'],
    ['account-audit', '/account/audit'],
  ]) {
    await m.goto(`${BASE}${path}`);
    obs.mobile_overflow[name] = await m.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await snap(`mobile-${name}`, m);
  }
  await mobile.close();
});

// Security: a POST without the CSRF token is refused; another account sees a 404.
await step('security', async () => {
  const noCsrf = await page.request.post(`${BASE}/projects`, { form: { name: 'sneaky' }, maxRedirects: 0 });
  obs.csrf_less_post_status = noCsrf.status();
  const other = await browser.newContext();
  const o = await other.newPage();
  await o.goto(`${BASE}/signup`);
  await o.fill('#email', `intruder-${Date.now()}@example.com`);
  await o.fill('#password', 'another long password');
  await o.click('button[type=submit]');
  await o.waitForURL(`${BASE}/projects`);
  const foreign = await o.goto(`${BASE}/projects/${project.id}`);
  obs.foreign_project_status = foreign.status();
  obs.foreign_usage_status = (await o.request.get(`${BASE}/projects/${project.id}/usage/data`)).status();
  obs.foreign_audit_status = (await o.request.get(`${BASE}/projects/${project.id}/audit`)).status();
  obs.foreign_settings_status = (await o.request.get(`${BASE}/projects/${project.id}/settings`)).status();
  obs.foreign_account_audit_mentions_project = (await (await o.request.get(`${BASE}/account/audit`)).text())
    .includes('Browser Demo');
  await snap('foreign-404', o);
  await other.close();
});

// Logout ends the session: the old cookie no longer opens pages.
await step('logout', async () => {
  const before = (await context.cookies()).find((c) => c.name === 'rotor_session').value;
  await page.goto(`${BASE}/projects`);
  await page.click('text=Log out');
  await page.waitForURL(`${BASE}/login`);
  await snap('logged-out');
  const replay = await fetch(`${BASE}/projects`, { headers: { Cookie: `rotor_session=${before}` }, redirect: 'manual' });
  obs.replayed_cookie_status = replay.status;
  obs.replayed_cookie_location = replay.headers.get('location');
});

obs.console_errors = consoleErrors;
await browser.close();
clearTimeout(deadline);
process.stdout.write(JSON.stringify(obs) + '\n', () => process.exit(0));
