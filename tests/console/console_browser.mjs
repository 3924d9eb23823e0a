// The admin console in a real browser: Debian's chromium, headless, driven by
// playwright-core (pinned in tests/clients/package-lock.json; it never downloads a
// browser). Run by tests/integration/console_test.cpp against the real gateway:
//   TOLLGATE_ADMIN_URL  the admin listener, e.g. http://127.0.0.1:8081
//   TOLLGATE_API_URL    the main listener, e.g. http://127.0.0.1:8080
//   TOLLGATE_ADMIN_TOKEN, TOLLGATE_MODEL, TOLLGATE_KEY (a client key for some traffic), TOLLGATE_SHOTS (screenshot directory),
//   CHROMIUM (the browser, /usr/bin/chromium by default)
// It signs in (a wrong token first), sees the overview, creates a key and uses it on the
// main listener, watches its usage appear, edits its limit and sees it enforced, revokes
// it and sees it refused, reloads the config; the page must make no request to any other
// host, log no console error, and keep the token out of every URL and of localStorage.
// Prints "CONSOLE OK" at the end; any failure exits non-zero with the reason.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const admin = process.env.TOLLGATE_ADMIN_URL;
const apiUrl = process.env.TOLLGATE_API_URL;
const adminToken = process.env.TOLLGATE_ADMIN_TOKEN;
const model = process.env.TOLLGATE_MODEL;
const shots = process.env.TOLLGATE_SHOTS;
const clientKey = process.env.TOLLGATE_KEY;
assert.ok(admin && apiUrl && adminToken && model && shots && clientKey, 'environment incomplete');
fs.mkdirSync(shots, { recursive: true });

const STEP_MS = 15000;
let current = '';
const step = (name) => {
  current = name;
  console.log(`STEP ${name}`);
};

async function chat(key) {
  const r = await fetch(`${apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello from the console test' }] }),
  });
  await r.text();
  return r.status;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-default-apps', '--disable-extensions'],
});
const problems = [];
const requests = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    // Chromium itself logs every refused fetch: the wrong token's 401 is the one we cause.
    if (current === 'a wrong token is refused' && /status of 401/.test(m.text())) return;
    problems.push(`console ${m.type()} during "${current}": ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => requests.push(r.url()));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

  step('some traffic for the overview');
  for (let i = 0; i < 6; i += 1) assert.equal(await chat(clientKey), 200);

  step('security headers');
  const first = await page.goto(`${admin}/ui/`);
  assert.equal(first.status(), 200);
  const csp = first.headers()['content-security-policy'] ?? '';
  assert.match(csp, /default-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(first.headers()['x-content-type-options'], 'nosniff');

  step('a wrong token is refused');
  const tokenBox = page.getByLabel('Admin token');
  await tokenBox.fill('not-the-admin-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'refused this token' }).waitFor();
  await page.screenshot({ path: path.join(shots, 'signin-refused.png') });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  step('sign in (keyboard only)');
  await tokenBox.fill(adminToken);
  await tokenBox.press('Enter');
  await page.locator('[data-page="overview"][data-ready="true"]').waitFor();
  await page.getByRole('navigation', { name: 'Console pages' }).waitFor();
  // Two scrapes give requests per second.
  await page.locator('[data-figure="rps"]').filter({ hasText: /^\d/ }).waitFor();
  assert.match(await page.locator('[data-figure="lat"]').innerText(), /^\d+ ms \/ \d+ ms \/ \d+ ms$/);
  await page.getByText(/\b6 requests since the start/).waitFor();
  await page.getByRole('img', { name: /Tokens per hour/ }).waitFor();
  await page.screenshot({ path: path.join(shots, 'overview.png') });

  step('create a key');
  await page.getByRole('link', { name: 'Keys' }).click();
  await page.locator('[data-page="keys"][data-ready="true"]').waitFor();
  await page.getByRole('button', { name: 'Create key' }).click();
  const create = page.getByRole('dialog', { name: 'Create a key' });
  await create.getByLabel('Key id').fill('console-made');
  await create.getByLabel('Requests per minute').fill('100');
  await create.getByLabel('USD').fill('2');
  await create.getByLabel('Period').selectOption('day');
  await page.screenshot({ path: path.join(shots, 'keys-create.png') });
  await create.getByRole('button', { name: 'Create' }).click();
  const shown = page.getByRole('dialog', { name: 'Key console-made created' });
  const secret = await shown.getByLabel('Secret key').inputValue();
  assert.match(secret, /^tg-[A-Za-z0-9_-]{43}$/);
  await shown.getByRole('button', { name: 'Copy' }).click();
  await shown.getByText(/Copied|Selected/).waitFor();
  await page.screenshot({ path: path.join(shots, 'keys-secret-once.png') });
  await shown.getByRole('button', { name: 'Done' }).click();
  const row = page.getByRole('row').filter({ hasText: 'console-made' });
  await row.waitFor();
  assert.match(await row.innerText(), /100 rpm/);

  step('use the key on the main listener');
  assert.equal(await chat(secret), 200);
  assert.equal(await chat(secret), 200);

  step('its usage appears');
  await page.getByRole('link', { name: 'Usage' }).click();
  const usageRow = page.getByRole('row').filter({ hasText: 'console-made' }).filter({ hasText: model });
  const deadline = Date.now() + 20000;
  for (;;) {
    await page.getByRole('button', { name: 'Show' }).click();
    await page.getByRole('region', { name: /^Usage from/ }).waitFor();
    if (await usageRow.count()) break;
    assert.ok(Date.now() < deadline, 'the key\'s usage never appeared on the usage page');
    // The ledger writes in batches: ask again on its next flush.
    await page.waitForTimeout(250);
  }
  assert.match(await usageRow.innerText(), /\b2\b/); // two requests
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Export CSV' }).click();
  const csv = fs.readFileSync(await (await download).path(), 'utf8');
  assert.match(csv.split('\r\n')[0], /^key,model,day,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd$/);
  assert.ok(csv.includes(`console-made,${model},`), csv);
  await page.screenshot({ path: path.join(shots, 'usage.png') });

  step('edit its limit');
  await page.getByRole('link', { name: 'Keys' }).click();
  await page.locator('[data-page="keys"][data-ready="true"]').waitFor();
  await page.getByRole('button', { name: 'Edit key console-made' }).click();
  const edit = page.getByRole('dialog', { name: 'Edit key console-made' });
  await edit.getByLabel('Requests per minute').fill('2');
  await edit.getByRole('button', { name: 'Save' }).click();
  await edit.waitFor({ state: 'detached' });
  await page.getByRole('row').filter({ hasText: 'console-made' }).filter({ hasText: '2 rpm' }).waitFor();
  // Two requests in this minute already: the third is over the new limit.
  assert.equal(await chat(secret), 429);
  await page.screenshot({ path: path.join(shots, 'keys.png') });

  step('restrict it to an address range');
  await page.getByRole('button', { name: 'Edit key console-made' }).click();
  const edit2 = page.getByRole('dialog', { name: 'Edit key console-made' });
  await edit2.getByLabel('Allowed client addresses').fill('10.0.0.0/8');
  await edit2.getByRole('button', { name: 'Save' }).click();
  await edit2.waitFor({ state: 'detached' });
  await page.getByRole('row').filter({ hasText: 'console-made' }).filter({ hasText: 'from 10.0.0.0/8' }).waitFor();
  assert.equal(await chat(secret), 403); // ip_allow runs before rate_limit

  step('revoke it');
  await page.getByRole('button', { name: 'Revoke key console-made' }).click();
  const confirm = page.getByRole('dialog', { name: 'Revoke key console-made?' });
  await page.screenshot({ path: path.join(shots, 'keys-revoke.png') });
  await confirm.getByRole('button', { name: 'Revoke' }).click();
  await page.getByRole('row').filter({ hasText: 'console-made' }).waitFor({ state: 'detached' });
  assert.equal(await chat(secret), 401);

  step('providers');
  await page.getByRole('link', { name: 'Providers' }).click();
  await page.locator('[data-page="providers"][data-ready="true"]').waitFor();
  await page.getByRole('region', { name: /^Targets of / }).first().waitFor();
  await page.screenshot({ path: path.join(shots, 'providers.png') });

  step('config and reload');
  await page.getByRole('link', { name: 'Config' }).click();
  await page.locator('[data-page="config"][data-ready="true"]').waitFor();
  const configText = await page.getByLabel('Running configuration (JSON)').innerText();
  assert.ok(configText.includes('"token": "***"'), 'the admin token is not shown redacted');
  assert.ok(!configText.includes(adminToken), 'the admin token is on the config page');
  await page.getByRole('button', { name: 'Reload the config file' }).click();
  await page.getByText(/Reloaded at/).waitFor();
  await page.screenshot({ path: path.join(shots, 'config.png') });

  step('keyboard navigation');
  await page.locator('#skip').focus();
  await page.keyboard.press('Tab'); // the first page link
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Overview');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.locator('[data-page="usage"]').waitFor();

  step('every control has an accessible name');
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('input, select, button, a[href]')]
    .filter((el) => !el.closest('[hidden]'))
    .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.textContent.trim()))
    .map((el) => el.outerHTML.slice(0, 80)));
  assert.deepEqual(unnamed, []);

  step('phone width');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('link', { name: 'Overview' }).click();
  await page.locator('[data-page="overview"][data-ready="true"]').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the overview is ${overflow}px wider than a phone screen`);
  await page.screenshot({ path: path.join(shots, 'overview-phone.png'), fullPage: true });
  await page.getByRole('link', { name: 'Keys' }).click();
  await page.locator('[data-page="keys"][data-ready="true"]').waitFor();
  const overflowKeys = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflowKeys <= 0, `the keys page is ${overflowKeys}px wider than a phone screen`);
  await page.screenshot({ path: path.join(shots, 'keys-phone.png') });

  step('sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Admin token').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0);

  step('requests');
  const origin = new URL(admin).origin;
  for (const u of requests) {
    const url = new URL(u);
    if (url.protocol === 'blob:' || url.protocol === 'data:') continue;
    assert.equal(url.origin, origin, `a request left the admin listener: ${u}`);
    assert.ok(!u.includes(adminToken), `the admin token is in a URL: ${u}`);
  }
  assert.deepEqual(problems, []);
  console.log(`CONSOLE OK (${requests.length} requests)`);
} catch (e) {
  console.error(`FAILED: ${e.stack ?? e}`);
  if (problems.length) console.error(`browser problems:\n${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
