// A fresh project in a real browser (Debian's Chromium via playwright-core), for issue #21:
//
// 1. The quick start works as shown: the four snippets are copied with the page's Copy buttons
//    (read back from the clipboard) and run verbatim — the centrifuge-js snippet under Node
//    (globals a browser page would have: WebSocket, and fetch resolving '/rotor-token' against
//    the page's origin, here a tiny backend answering with the Node token snippet's rotorToken),
//    the curl snippet under sh with ROTOR_API_KEY set, the Python token snippet under the test
//    venv's python — and the curl publication reaches the snippet's subscription.
// 2. No change repeats on reload: after creating a key, revealing and rotating the secret,
//    revoking a key, a refused delete, and creating and revoking (on its confirmation page) a
//    management token, the page is reloaded and nothing more happened (same number of keys and
//    tokens, same secret, one-time values gone).
// 3. Dead ends: a wrong confirmation slug, an unknown address and a wrong method get branded
//    pages that keep the signed-in header and say what to do next; a namespace error is in the
//    form's words.
//
// Environment:
//   ROTOR_BASE_URL     http://127.0.0.1:PORT of the control plane
//   ROTOR_SCREENSHOTS  directory for PNG screenshots
//   ROTOR_CHROMIUM     browser binary (default /usr/bin/chromium)
//   ROTOR_TIMEOUT_MS   global deadline (default 110000)
//
// Prints one JSON object of observations; tests/tests/dashboard.rs asserts on it.

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Centrifuge } from 'centrifuge';
import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';
import { screenshot } from './browser_scenario.mjs';

const BASE = process.env.ROTOR_BASE_URL;
const SHOTS = process.env.ROTOR_SCREENSHOTS || '/tmp/rotor-shots-fresh';
const TIMEOUT_MS = Number(process.env.ROTOR_TIMEOUT_MS || 110000);
const WAIT = 15000;
const HERE = dirname(fileURLToPath(import.meta.url));
mkdirSync(SHOTS, { recursive: true });

function fail(message) {
  process.stderr.write(`fresh-project scenario failed: ${message}\n`);
  process.exit(1);
}
if (!BASE) fail('ROTOR_BASE_URL is not set');
const deadline = setTimeout(() => fail(`scenario did not finish within ${TIMEOUT_MS} ms`), TIMEOUT_MS);

/** Resolves with `promise`, or fails the scenario after `ms` naming what was awaited. */
function within(ms, what, promise) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out awaiting ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

function run(cmd, args, env = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: 15000 },
      (err, stdout, stderr) => resolve({ err, stdout, stderr }));
  });
}

const obs = {};
const browser = await chromium.launch({
  executablePath: process.env.ROTOR_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({
  viewport: { width: 1280, height: 900 },
  permissions: ['clipboard-read', 'clipboard-write'],
});
const page = await context.newPage();
page.setDefaultTimeout(WAIT);
page.on('dialog', (d) => d.accept());
const consoleErrors = [];
// The 404 and 405 pages and a namespace form with a mistake (422) are asked for on purpose;
// Chromium logs each as a failed load.
const EXPECTED = /^Failed to load resource: the server responded with a status of (404|405|422)/;
page.on('console', (m) => {
  if (m.type() === 'error' && !EXPECTED.test(m.text())) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
let shot = 0;
const snap = async (name) => {
  shot += 1;
  await screenshot(page, `${SHOTS}/${String(shot).padStart(2, '0')}-${name}.png`);
};
const step = async (name, fn) => {
  try {
    return await fn();
  } catch (e) {
    try { await screenshot(page, `${SHOTS}/failed-${name}.png`); } catch (_) { /* gone */ }
    fail(`${name}: ${e.message}\nbrowser errors: ${JSON.stringify(consoleErrors)}`);
  }
};
const text = async (selector) => ((await page.textContent(selector)) || '').trim();
const count = (selector) => page.locator(selector).count();

const email = `fresh-${Date.now()}@example.com`;

const project = await step('sign up and create a project', async () => {
  await page.goto(`${BASE}/signup`);
  await page.fill('#email', email);
  await page.fill('#password', 'correct horse battery');
  await page.click('button[type=submit]');
  await page.waitForURL(`${BASE}/projects`);
  obs.starter_hint = await text('#starter-hint');
  await page.fill('#project-name', 'Fresh Start');
  await page.click('section[aria-labelledby=new-project] button[type=submit]');
  await page.waitForURL(/\/projects\/prj_[a-z0-9]+$/);
  const id = page.url().match(/prj_[a-z0-9]+/)[0];
  obs.created_notice = await text('.notice');
  obs.quickstart_channel_text = await text('#quickstart-channel');
  await snap('fresh-overview');
  // Reloading the page the creation landed on creates nothing and no longer says "created".
  await page.reload();
  obs.created_notice_after_reload = await count('.notice');
  return { id, slug: await text('.project-head .meta code') };
});

// Copy each snippet with its button; what lands on the clipboard is what runs.
const snippets = await step('copy the snippets', async () => {
  const out = {};
  for (const id of ['snippet-js', 'snippet-node', 'snippet-python', 'snippet-curl']) {
    const button = page.locator(`button[data-copy-target="${id}"]`);
    await button.click();
    await page.waitForFunction((i) => document.querySelector(`button[data-copy-target="${i}"]`).textContent === 'Copied', id);
    out[id] = await page.evaluate(() => navigator.clipboard.readText());
    if (out[id] !== await page.textContent(`#${id}`)) throw new Error(`the clipboard differs from ${id} as shown`);
  }
  return out;
});
obs.snippet_js = snippets['snippet-js'];
obs.snippet_curl = snippets['snippet-curl'];

const keysUrl = `${BASE}/projects/${project.id}/keys`;
const apiKey = await step('create a key, then reload', async () => {
  await page.goto(keysUrl);
  await page.fill('#key-name', 'backend');
  await page.click('form[action$="/keys"] button[type=submit]');
  await page.waitForSelector('#new-api-key');
  obs.key_create_url = page.url();
  const key = await text('#new-api-key');
  await page.reload();
  obs.keys_after_create_reload = await count('table tbody tr');
  obs.key_shown_after_reload = (await page.content()).includes(key);
  return key;
});

const secret = await step('reveal and rotate the secret, then reload', async () => {
  await page.click('text=Reveal secret');
  const revealed = await text('#token-secret-value');
  obs.reveal_url = page.url();
  await page.reload();
  obs.secret_shown_after_reveal_reload = await count('#token-secret-value');
  await page.click('details.rotate summary');
  await page.check('details.rotate input[name=confirm]');
  await page.click('details.rotate button[type=submit]');
  await page.waitForSelector('#token-secret-value');
  const rotated = await text('#token-secret-value');
  obs.rotated_differs = rotated !== revealed;
  obs.rotate_notice = await text('.notice');
  obs.rotate_url = page.url();
  await page.reload();
  obs.secret_shown_after_rotate_reload = await count('#token-secret-value');
  await page.click('text=Reveal secret');
  obs.secret_same_after_rotate_reload = (await text('#token-secret-value')) === rotated;
  await snap('keys-after-rotation');
  return rotated;
});

await step('revoke a key, then reload', async () => {
  await page.goto(keysUrl);
  await page.fill('#key-name', 'temporary');
  await page.click('form[action$="/keys"] button[type=submit]');
  await page.waitForSelector('#new-api-key');
  await page.click('a[aria-label="Revoke temporary"]');
  await page.waitForURL(/\/revoke$/);
  obs.revoke_confirm_url = page.url();
  await page.click('#confirm-revoke');
  await page.waitForSelector('.notice');
  obs.revoke_notice = await text('.notice');
  obs.revoke_url = page.url();
  obs.keys_after_revoke = await count('table tbody tr');
  await page.reload();
  obs.keys_after_revoke_reload = await count('table tbody tr');
});

// The quick start, verbatim, against the fresh project, once a running tenant has the latest
// configuration (the new key and secret; the overview says so); a tenant not started yet starts
// with it on the snippet's first request.
await step('run the quick start', async () => {
  const until = Date.now() + 20000;
  for (;;) {
    const html = await (await page.request.get(`${BASE}/projects/${project.id}`)).text();
    if (!html.includes('applying the latest configuration')) break;
    if (Date.now() > until) {
      const status = (html.match(/id="project-status">([\s\S]*?)<\/p>/) || [])[1];
      throw new Error(`the project did not apply its latest configuration within 20 s: ${status}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const dir = mkdtempSync(join(tmpdir(), 'rotor-quickstart-'));
  symlinkSync(join(HERE, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'browser.mjs'), snippets['snippet-js']);
  writeFileSync(join(dir, 'token.mjs'), snippets['snippet-node']);
  writeFileSync(join(dir, 'token.py'), snippets['snippet-python']);
  writeFileSync(join(dir, 'publish.sh'), snippets['snippet-curl']);
  try {
    process.env.ROTOR_TOKEN_SECRET = secret;
    const { rotorToken } = await import(pathToFileURL(join(dir, 'token.mjs')).href);
    // The backend the browser snippet's page would come from: GET /rotor-token.
    const backend = createServer((req, res) => {
      if (req.url === '/rotor-token') {
        res.end(rotorToken('quickstart-user'));
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise((r) => backend.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${backend.address().port}`;
    // What a browser page on that origin has and Node 20 lacks.
    globalThis.WebSocket = WebSocket;
    const nodeFetch = globalThis.fetch;
    globalThis.fetch = (url, init) => nodeFetch(new URL(url, origin), init);
    // The snippet's subscription (same module instance: node_modules is a symlink to ours).
    const subscribed = new Promise((resolve, reject) => {
      const make = Centrifuge.prototype.newSubscription;
      Centrifuge.prototype.newSubscription = function (channel, options) {
        const sub = make.call(this, channel, options);
        obs.snippet_subscription_channel = channel;
        sub.on('subscribed', () => resolve(sub));
        sub.on('unsubscribed', (ctx) => reject(new Error(`unsubscribed: ${ctx.code} ${ctx.reason}`)));
        sub.on('error', (ctx) => reject(new Error(`subscription error: ${JSON.stringify(ctx.error)}`)));
        return sub;
      };
    });
    const logged = new Promise((resolve) => {
      const log = console.log;
      console.log = (...args) => (args[0] === 'message' ? resolve(args[1]) : log(...args));
    });
    await import(pathToFileURL(join(dir, 'browser.mjs')).href);
    await within(20000, 'the snippet subscription', subscribed);
    obs.snippet_subscribed = true;
    const curl = await run('sh', [join(dir, 'publish.sh')], { ROTOR_API_KEY: apiKey });
    if (curl.err) throw new Error(`curl snippet failed: ${curl.stderr}`);
    obs.curl_reply = JSON.parse(curl.stdout);
    obs.snippet_received = await within(10000, "the snippet's console.log of the publication", logged);
    const py = join(HERE, '..', 'python', '.venv', 'bin', 'python');
    const minted = await run(py, ['-c', `exec(open(${JSON.stringify(join(dir, 'token.py'))}).read()); print(rotor_token(7))`],
      { ROTOR_TOKEN_SECRET: secret });
    if (minted.err) throw new Error(`python snippet failed: ${minted.stderr}`);
    obs.python_token_sub = jwt.verify(minted.stdout.trim(), secret, { algorithms: ['HS256'] }).sub;
    backend.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await page.goto(`${BASE}/projects/${project.id}/console`);
  obs.console_channel = await page.inputValue('#sub-channel');
});

await step('a wrong confirmation slug', async () => {
  await page.goto(`${BASE}/projects/${project.id}`);
  await page.fill('#confirm-slug', 'not-the-slug');
  await page.click('form[action$="/delete"] button[type=submit]');
  await page.waitForSelector('#delete-error');
  obs.delete_error = await text('#delete-error');
  obs.delete_error_url = page.url();
  obs.delete_error_header = await text('header .who');
  await snap('delete-refused');
  await page.reload();
  obs.delete_error_after_reload = await count('#delete-error');
  obs.project_still_there = (await text('.project-head h1')) === 'Fresh Start';
});

await step('dead ends', async () => {
  const missing = await page.goto(`${BASE}/no/such/page`);
  obs.not_found = {
    status: missing.status(),
    title: await text('h1'),
    header: await text('header .who'),
    next: await page.getAttribute('.error-page a.button', 'href'),
  };
  await snap('not-found');
  const wrong = await page.goto(`${BASE}/projects/${project.id}/secret/rotate`);
  obs.get_on_action = { status: wrong.status(), url: page.url() };
  const put = await page.request.fetch(`${BASE}/projects/${project.id}/keys`, { method: 'PUT', maxRedirects: 0 });
  const body = await put.text();
  obs.wrong_method = {
    status: put.status(),
    branded: body.includes('This address is not a page') && body.includes('class="topbar"'),
    signed_in_header: body.includes(email),
  };
  await page.goto(`${BASE}/projects/${project.id}/namespaces/updates`);
  await page.fill('#opt-history_ttl', '');
  await page.click('.sticky-actions button');
  await page.waitForSelector('#ns-error');
  obs.namespace_error = await text('#ns-error');
  await snap('namespace-error');
});

await step('management tokens, then reload', async () => {
  await page.goto(`${BASE}/account`);
  await page.fill('#token-name', 'terraform');
  await page.click('form[action="/account/tokens"] button[type=submit]');
  await page.waitForSelector('#new-token');
  obs.token_create_url = page.url();
  const token = await text('#new-token');
  await page.reload();
  obs.tokens_after_create_reload = await count('#tokens table tbody tr');
  obs.token_shown_after_reload = (await page.content()).includes(token);
  await page.click('a[aria-label="Revoke terraform"]');
  await page.waitForURL(/\/account\/tokens\/tok_[a-z0-9]+\/revoke$/);
  obs.token_revoke_confirm_url = page.url();
  await page.click('#confirm-revoke');
  await page.waitForSelector('#account-notice');
  obs.token_revoke_notice = await text('#account-notice');
  await page.reload();
  obs.tokens_after_revoke_reload = await count('#tokens table tbody tr');
  obs.token_revoke_notice_after_reload = await count('#account-notice');
});

obs.console_errors = consoleErrors;
await browser.close();
clearTimeout(deadline);
process.stdout.write(JSON.stringify(obs) + '\n', () => process.exit(0));
