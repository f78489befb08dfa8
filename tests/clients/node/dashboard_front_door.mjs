// The front door in a real browser (Debian's Chromium via playwright-core), for issue #21 item 8:
//
// 1. `/` is a product page (what Rotor is, the two-minute quick start, sign up) that fits
//    1280 and 390 px; its footer's "REST API" opens the rendered API reference, which lists
//    what /v1/openapi.json lists and keeps a link to it.
// 2. A new customer signs up from it; at 390 px every project tab, when current, is inside
//    the viewport (the tab bar scrolls sideways and brings the current one into view).
// 3. A namespace is deleted and a management token revoked through their confirmation pages
//    (no JavaScript dialog); reloading the page each lands on changes nothing.
// 4. "Forgot password?" through the test mailbox: the mail's link sets a new password, the
//    old session on another device is logged out, the link works once, and the customer logs
//    in with the new password. Reloading the pages after each step changes nothing.
// 5. On every page visited, each aria-labelledby names an element of that page.
//
// Environment:
//   ROTOR_BASE_URL     http://127.0.0.1:PORT of the control plane
//   ROTOR_SCREENSHOTS  directory for PNG screenshots (at 1280 and 390 px)
//   ROTOR_MAILBOX      directory where the test mailbox writes each message as NNN.eml
//   ROTOR_CHROMIUM     browser binary (default /usr/bin/chromium)
//   ROTOR_TIMEOUT_MS   global deadline (default 110000)
//
// Prints one JSON object of observations; tests/tests/dashboard_front_door.rs asserts on it.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { screenshot, startScenario, until } from './browser_scenario.mjs';

const WAIT = 15000;
const MAILBOX = process.env.ROTOR_MAILBOX;
const { BASE, SHOTS, fail, deadline, browser } = await startScenario('front door', {
  shots: '/tmp/rotor-shots-front-door',
  timeoutMs: 110000,
});
if (!MAILBOX) fail('ROTOR_MAILBOX is not set');

const obs = { dialogs: [], dangling_labels: {}, pages_checked: 0 };
const consoleErrors = [];
// A used reset link (410) and a deleted namespace's confirmation page (404) are opened on
// purpose; Chromium logs each as a failed load.
const EXPECTED = /^Failed to load resource: the server responded with a status of (404|410)/;
const watch = (p) => {
  p.setDefaultTimeout(WAIT);
  p.on('dialog', (d) => { obs.dialogs.push(d.message()); d.dismiss(); });
  p.on('console', (m) => {
    if (m.type() === 'error' && !EXPECTED.test(m.text())) consoleErrors.push(m.text());
  });
  p.on('pageerror', (e) => consoleErrors.push(String(e)));
  return p;
};

const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = watch(await desktop.newPage());
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
const count = (selector, p = page) => p.locator(selector).count();
const overflow = (p = page) => p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
// Records the aria-labelledby ids of the current page that name no element of it.
const checkLabels = async (p = page) => {
  const missing = await p.evaluate(() => [...document.querySelectorAll('[aria-labelledby]')]
    .flatMap((el) => el.getAttribute('aria-labelledby').split(/\s+/))
    .filter((id) => id && !document.getElementById(id)));
  obs.pages_checked += 1;
  if (missing.length) obs.dangling_labels[new URL(p.url()).pathname] = missing;
};
// The reset link in the newest mail to `to` in the mailbox, and how many mails `to` got.
const mailsTo = (to) => readdirSync(MAILBOX).filter((f) => f.endsWith('.eml')).sort()
  .map((f) => readFileSync(join(MAILBOX, f), 'utf8'))
  .filter((m) => m.split('\r\n', 1)[0] === `X-Envelope-To: ${to}`);
// The body as a mail client shows it (quoted-printable decoded: long lines arrive folded).
const bodyOf = (mail) => {
  const [head, ...rest] = mail.split('\r\n\r\n');
  const body = rest.join('\r\n\r\n');
  if (!/^Content-Transfer-Encoding: quoted-printable$/im.test(head)) return body;
  return Buffer.from(body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
};
const linkIn = (mail) => (bodyOf(mail).match(/https?:\/\/\S+\/password\/reset\/\S+/) || [])[0];

const email = `newcomer-${Date.now()}@example.com`;
const password = 'correct horse battery';
const newPassword = 'a fresh staple battery';

await step('front page at 1280 px', async () => {
  const resp = await page.goto(`${BASE}/`);
  obs.front_status = resp.status();
  obs.front_url = page.url();
  obs.front_title = await text('h1');
  obs.front_signup_href = await page.getAttribute('#hero-signup', 'href');
  obs.front_snippets = await page.locator('.snippet pre code').evaluateAll((els) => els.map((e) => e.id));
  obs.front_js_snippet = await text('#snippet-js');
  obs.front_curl_snippet = await text('#snippet-curl');
  obs.front_overflow_1280 = await overflow();
  await checkLabels();
  await snap('front-1280');
});

await step('front page at 390 px', async () => {
  const narrow = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const m = watch(await narrow.newPage());
  await m.goto(`${BASE}/`);
  obs.front_overflow_390 = await overflow(m);
  obs.front_signup_visible_390 = await m.isVisible('#hero-signup');
  await snap('front-390', m);
  await m.goto(`${BASE}/docs/api`);
  obs.api_overflow_390 = await overflow(m);
  await snap('api-reference-390', m);
  await narrow.close();
});

await step('the API reference', async () => {
  await page.click('#footer-api');
  await page.waitForURL(`${BASE}/docs/api`);
  obs.api_title = await text('h1');
  obs.api_operations = await count('.api-op');
  obs.api_groups = await page.locator('.api-group > h2').allTextContents();
  obs.api_json_href = await page.getAttribute('#openapi-json', 'href');
  const doc = await (await page.request.get(`${BASE}${obs.api_json_href}`)).json();
  obs.api_json_operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);
  obs.api_overflow_1280 = await overflow();
  await checkLabels();
  await snap('api-reference-1280');
});

const project = await step('sign up from the front page and create a project', async () => {
  await page.goto(`${BASE}/`);
  await page.click('#hero-signup');
  await page.waitForURL(`${BASE}/signup`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}/projects`);
  await page.fill('#project-name', 'Front Door');
  await page.click('section[aria-labelledby=new-project] button[type=submit]');
  await page.waitForURL(/\/projects\/prj_[a-z0-9]+$/);
  await checkLabels();
  return { id: page.url().match(/prj_[a-z0-9]+/)[0] };
});

await step('the current tab at 390 px', async () => {
  const narrow = await browser.newContext({ viewport: { width: 390, height: 844 }, storageState: await desktop.storageState() });
  const m = watch(await narrow.newPage());
  obs.tab_inside_390 = {};
  obs.tab_bar_scrolls_390 = false;
  for (const [tab, path] of [
    ['overview', ''], ['keys', '/keys'], ['namespaces', '/namespaces'], ['usage', '/usage'],
    ['console', '/console'], ['settings', '/settings'], ['audit', '/audit'],
  ]) {
    await m.goto(`${BASE}/projects/${project.id}${path}`);
    const box = await m.evaluate(() => {
      const bar = document.querySelector('.tabs');
      const r = bar.querySelector('[aria-current=page]').getBoundingClientRect();
      return { left: r.left, right: r.right, width: window.innerWidth, scrolls: bar.scrollWidth > bar.clientWidth };
    });
    obs.tab_inside_390[tab] = box.left >= 0 && box.right <= box.width;
    obs.tab_bar_scrolls_390 ||= box.scrolls;
    obs.page_overflow_390 = Math.max(obs.page_overflow_390 || 0, await overflow(m));
    await checkLabels(m);
    if (tab === 'audit' || tab === 'settings') await snap(`tab-${tab}-390`, m);
  }
  await narrow.close();
});

await step('delete a namespace through its confirmation page, then reload', async () => {
  await page.goto(`${BASE}/projects/${project.id}/namespaces`);
  await page.fill('#ns-name', 'chat');
  await page.click('section[aria-labelledby=ns-new] button[type=submit]');
  await page.waitForURL(/\/namespaces\/chat$/);
  await page.goto(`${BASE}/projects/${project.id}/namespaces`);
  obs.ns_rows_before_delete = await count('table tbody tr');
  await page.goto(`${BASE}/projects/${project.id}/namespaces/updates`);
  await checkLabels();
  await page.click('#ns-delete-link');
  await page.waitForURL(/\/namespaces\/updates\/delete$/);
  obs.ns_confirm_url = page.url();
  obs.ns_confirm_title = await text('#delete-title');
  await checkLabels();
  await snap('namespace-delete-confirm');
  await page.click('#confirm-delete');
  await page.waitForURL(`${BASE}/projects/${project.id}/namespaces`);
  obs.ns_deleted_notice = await text('.notice');
  obs.ns_rows_after_delete = await page.locator('table tbody tr td:first-child').allTextContents();
  await page.reload();
  obs.ns_rows_after_reload = await page.locator('table tbody tr td:first-child').allTextContents();
  obs.ns_notice_after_reload = await count('.notice');
  obs.ns_confirm_after_delete = (await page.goto(obs.ns_confirm_url)).status();
});

await step('revoke a management token through its confirmation page, then reload', async () => {
  await page.goto(`${BASE}/account`);
  await page.fill('#token-name', 'ci');
  await page.click('form[action="/account/tokens"] button[type=submit]');
  await page.waitForSelector('#new-token');
  await page.reload();
  await checkLabels();
  await page.click('a[aria-label="Revoke ci"]');
  await page.waitForURL(/\/account\/tokens\/tok_[a-z0-9]+\/revoke$/);
  obs.token_confirm_title = await text('#revoke-title');
  await checkLabels();
  await snap('token-revoke-confirm');
  await page.click('#confirm-revoke');
  await page.waitForSelector('#account-notice');
  obs.token_revoked_notice = await text('#account-notice');
  obs.tokens_after_revoke = await count('#tokens table tbody tr');
  await page.reload();
  obs.tokens_after_reload = await count('#tokens table tbody tr');
  obs.token_notice_after_reload = await count('#account-notice');
});

// Another device stays signed in until the password is reset.
const other = await browser.newContext({ viewport: { width: 1280, height: 900 }, storageState: await desktop.storageState() });
const otherPage = watch(await other.newPage());

await step('forgot password, through the mailbox', async () => {
  await page.goto(`${BASE}/projects`);
  await page.click('text=Log out');
  await page.waitForURL(`${BASE}/login`);
  await page.click('#forgot-link');
  await page.waitForURL(`${BASE}/password/forgot`);
  await checkLabels();
  await snap('forgot-password');
  await page.fill('#email', email);
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}/password/forgot/sent`);
  obs.reset_sent_text = await text('#reset-sent');
  await checkLabels();
  await snap('reset-link-sent');
  const mail = await until('the reset mail', () => mailsTo(email)[0], 20000);
  obs.reset_mail_subject = (mail.match(/^Subject: (.*)$/m) || [])[1];
  const link = linkIn(mail);
  obs.reset_link_base = link.split('/password/reset/')[0];
  // Reloading the page the request landed on asks for nothing more.
  await page.reload();
  await new Promise((r) => setTimeout(r, 1000));
  obs.reset_mails_after_reload = mailsTo(email).length;

  await page.goto(link);
  obs.reset_form_email = await text('#reset-email');
  await checkLabels();
  await snap('choose-new-password');
  await page.fill('#new-password', newPassword);
  await page.fill('#confirm-password', newPassword);
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}/login?reset=done`);
  obs.reset_done_notice = await text('.notice');
  await snap('reset-done');
  await page.reload();
  obs.reset_done_url_after_reload = page.url();

  const again = await page.goto(link);
  obs.used_link_status = again.status();
  obs.used_link_title = await text('h1');

  const elsewhere = await otherPage.goto(`${BASE}/projects`);
  obs.other_device_url = otherPage.url();
  obs.other_device_status = elsewhere.status();

  await page.goto(`${BASE}/login`);
  await page.fill('#email', email);
  await page.fill('#password', newPassword);
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}/projects`);
  obs.signed_in_with_new_password = (await text('header .who')) === email;
  await page.goto(`${BASE}/account/audit`);
  obs.account_audit_mentions_reset = (await page.content()).includes('Reset the password with a link sent by email');
  await checkLabels();
});

await other.close();
obs.console_errors = consoleErrors;
obs.screenshots = shot;
await browser.close();
clearTimeout(deadline);
process.stdout.write(JSON.stringify(obs) + '\n', () => process.exit(0));
