// What every dashboard browser scenario starts with: its environment (ROTOR_BASE_URL,
// ROTOR_SCREENSHOTS, ROTOR_TIMEOUT_MS, ROTOR_CHROMIUM), a `fail` that ends the process with a
// message, a global deadline, Debian's Chromium launched through playwright-core, and `until`
// for bounded polling.

import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

// Reads the environment and launches the browser; `name` prefixes failure messages.
export async function startScenario(name, { shots, timeoutMs }) {
  const BASE = process.env.ROTOR_BASE_URL;
  const SHOTS = process.env.ROTOR_SCREENSHOTS || shots;
  const TIMEOUT_MS = Number(process.env.ROTOR_TIMEOUT_MS || timeoutMs);
  mkdirSync(SHOTS, { recursive: true });
  const fail = (message) => {
    process.stderr.write(`${name} scenario failed: ${message}\n`);
    process.exit(1);
  };
  if (!BASE) fail('ROTOR_BASE_URL is not set');
  const deadline = setTimeout(() => fail(`scenario did not finish within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  const browser = await chromium.launch({
    executablePath: process.env.ROTOR_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  return { BASE, SHOTS, fail, deadline, browser };
}

// Polls `fn` until it returns a truthy value (bounded).
export async function until(what, fn, ms = 45000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

// Writes a full-page PNG of `page` to `path`. Chromium sometimes refuses a capture
// ("Unable to capture screenshot") while a loaded box is still compositing a frame; the capture
// is tried again after the next animation frame, up to three times, before the error stands.
export async function screenshot(page, path) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await page.screenshot({ path, fullPage: true });
    } catch (e) {
      if (attempt >= 3 || !/Unable to capture screenshot/.test(String(e && e.message))) throw e;
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r()))).catch(() => {});
      await new Promise((r) => setTimeout(r, 250 * attempt));
    }
  }
}
