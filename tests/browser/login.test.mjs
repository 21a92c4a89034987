// The dashboard of a node started with --http-auth, in headless Chromium:
// the login form appears when the API answers 401, a wrong token is told so,
// a right one shows the dashboard's data and live updates, the controls follow
// the role (an operator sees the order form, not the simulator), a write from
// the form carries the session's CSRF token, and logging out returns to the
// form. The page loads without a Content-Security-Policy violation.
// Screenshots go to tests/.work/screenshots/ (or $SLUICE_SCREENSHOT_DIR).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Sluice, launchChromium, openPage, sluiceBinary, REPO_ROOT } from './harness.mjs';

const SCREENSHOTS = process.env.SLUICE_SCREENSHOT_DIR || join(REPO_ROOT, 'tests', '.work', 'screenshots');

let node;
let chrome;
const tokens = {};

/** `sluice tokens add NAME --role ROLE` on the (not yet started) node's data dir. */
function addToken(dataDir, name, role) {
  const done = spawnSync(sluiceBinary(), ['tokens', 'add', name, '--role', role, '--data-dir', dataDir], { encoding: 'utf8', timeout: 60000 });
  assert.equal(done.status, 0, done.stderr);
  return done.stdout.trim();
}

before(async () => {
  node = new Sluice({ args: ['--http-auth'] });
  tokens.operator = addToken(node.dataDir, 'ops', 'operator');
  tokens.admin = addToken(node.dataDir, 'root', 'admin');
  await node.start();
  chrome = await launchChromium();
  // Data for the dashboard to show, made with a bearer token.
  const resp = await fetch(`${node.base}/api/orders`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${tokens.admin}` },
    body: JSON.stringify({ customer: 'before-login@example.com', currency: 'EUR', items: [{ sku: 'tea', quantity: 3, price: 4 }] }),
  });
  assert.equal(resp.status, 202);
});

after(async () => {
  try { await chrome?.close(); } finally { await node?.stop(); }
});

test('the login form gates the dashboard, and an operator session works through it', async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const p = await openPage(chrome.browser, node.base);
  const { page } = p;
  try {
    await page.goto(`${node.base}/#/dashboard`);
    await page.waitForSelector('#login:not([hidden])', { timeout: 10000 });
    assert.equal(await page.locator('#page-dashboard').isVisible(), false, 'no data before login');
    await page.screenshot({ path: join(SCREENSHOTS, 'login-form.png') });

    await page.fill('#login-token', 'sluice_wrong');
    await page.click('#login-submit');
    await page.waitForSelector('#login-error:not([hidden])', { timeout: 5000 });
    assert.match(await page.locator('#login-error').innerText(), /not valid/);

    await page.fill('#login-token', tokens.operator);
    await page.click('#login-submit');
    await page.waitForSelector('#login', { state: 'hidden', timeout: 10000 });
    await page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 15000 });
    await page.waitForFunction(() => document.querySelector('#stat-orders').textContent.trim() === '1', null, { timeout: 10000 });
    assert.match(await page.locator('#auth-user').innerText(), /ops · operator/);
    assert.equal(await page.locator('#sim-card').isVisible(), false, 'an operator has no simulator switch');

    // A write through the form (cookie + CSRF header) reaches the table.
    await page.goto(`${node.base}/#/orders`);
    await page.waitForSelector('#order-form-card', { state: 'visible' });
    await page.fill('#order-customer', 'through-the-form@example.com');
    const row = page.locator('#order-items .item-row').nth(0);
    await row.locator('[name=sku]').fill('cup');
    await row.locator('[name=quantity]').fill('1');
    await row.locator('[name=price]').fill('2');
    await page.click('#order-submit');
    const created = page.locator('[data-created-order]');
    await created.waitFor({ timeout: 10000 });
    const orderId = await created.getAttribute('data-created-order');
    await page.locator(`#orders-table tbody tr[data-key="${orderId}"]`).waitFor({ timeout: 10000 });
    await page.goto(`${node.base}/#/dashboard`);
    await page.waitForFunction(() => document.querySelector('#stat-orders').textContent.trim() === '2', null, { timeout: 10000 });
    await page.screenshot({ path: join(SCREENSHOTS, 'logged-in-operator.png') });

    const cookies = await p.context.cookies();
    const session = cookies.find((c) => c.name === 'sluice_session');
    assert.ok(session, 'a session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(session.path, '/');
    assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session cookie');

    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])', { timeout: 5000 });
    const status = await page.evaluate(async () => (await fetch('/api/orders')).status);
    assert.equal(status, 401, 'the session ended');

    // The only failed requests are the expected 401s (before login, the wrong
    // token, after logout); nothing else, and no CSP violation.
    const unexpected = p.problems.filter((x) => !/^HTTP 401: .*\/api\/(session|login|orders)$/.test(x) && !/status of 401/.test(x));
    assert.deepEqual(unexpected, [], `problems:\n${p.problems.join('\n')}`);
  } finally {
    await p.context.close();
  }
});

test('an admin sees the simulator switch', async () => {
  const p = await openPage(chrome.browser, node.base);
  try {
    await p.page.goto(`${node.base}/#/dashboard`);
    await p.page.waitForSelector('#login:not([hidden])', { timeout: 10000 });
    await p.page.fill('#login-token', tokens.admin);
    await p.page.click('#login-submit');
    await p.page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 15000 });
    await p.page.waitForSelector('#sim-card', { state: 'visible', timeout: 5000 });
    await p.page.screenshot({ path: join(SCREENSHOTS, 'logged-in-admin.png') });
  } finally {
    await p.context.close();
  }
});
