// The shop pages' tables, forms, notifications, languages and themes in
// headless Chromium against a real `sluice` node: sort headers that sort by
// the column's own value, a pause that queues and counts what arrives, the
// order form's messages per field, the notifier's notifications listed,
// French labels and Intl formats behind a remembered switch, a remembered
// dark theme with readable charts, and `/api/cluster` without Raft on a
// single node.
//
// One node and one browser for the file. Screenshots of every page in the
// dark theme and in French go to $SLUICE_SCREENSHOT_DIR (scripts/screenshots.sh
// renews docs/screenshots) or a directory under the system's temporary
// directory, never into the repo.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedNodeAndBrowser, openLivePage, paidOrder as paidOrderOf, waitUntil, sleep } from './harness.mjs';

const SCREENSHOTS = process.env.SLUICE_SCREENSHOT_DIR || join(tmpdir(), 'sluice-shop-pages-screenshots');
const PAGES = ['dashboard', 'orders', 'payments', 'deliveries', 'notifications', 'cluster'];

const shared = sharedNodeAndBrowser({ before, after });
let node;
before(() => { node = shared.node; mkdirSync(SCREENSHOTS, { recursive: true }); });

/** A page opened at `hash`, with `settings` (language, theme) saved first. */
const open = (hash, settings) => openLivePage(shared.chrome, node, hash, settings);

async function order(customer, price, currency = 'EUR', quantity = 1) {
  return (await node.api('POST', '/api/orders', { customer, currency, items: [{ sku: 'sku-1', quantity, price }] })).order_id;
}

const paidOrder = (customer, price, currency) => paidOrderOf(node, customer, price, currency);

const rowKeys = (page, table) => page.locator(`#${table}-table tbody tr[data-key]`).evaluateAll((trs) => trs.map((tr) => tr.dataset.key));

test('the Orders table sorts by the column clicked and a paused table queues and counts new rows', async () => {
  const ids = {
    b: await order('sort-b@example.com', 30),
    c: await order('sort-c@example.com', 10, 'EUR', 3),
    a: await order('sort-a@example.com', 20),
  };
  const p = await open('#/orders');
  try {
    const page = p.page;
    await page.fill('#orders-search', 'sort-');
    await waitUntil(async () => (await rowKeys(page, 'orders')).length === 3, 10000, 'the three orders');
    // Newest created first by default: a, c, b.
    assert.deepEqual(await rowKeys(page, 'orders'), [ids.a, ids.c, ids.b]);
    assert.equal(await page.getAttribute('#orders-table th[data-sort="created"]', 'aria-sort'), 'descending');

    // Total (30 x 1, 10 x 3 = 30, 20): ascending, then descending.
    await page.click('#orders-table th[data-sort="total"] button');
    assert.equal(await page.getAttribute('#orders-table th[data-sort="total"]', 'aria-sort'), 'ascending');
    assert.equal(await page.getAttribute('#orders-table th[data-sort="created"]', 'aria-sort'), null);
    const totals = async () => (await page.locator('#orders-table tbody tr[data-key] td:nth-child(4)').allInnerTexts()).map((s) => Number(s.replace(/[^\d.]/g, '')));
    assert.deepEqual(await totals(), [20, 30, 30]);
    await page.click('#orders-table th[data-sort="total"] button');
    assert.deepEqual(await totals(), [30, 30, 20]);
    // Customer: alphabetical.
    await page.click('#orders-table th[data-sort="customer"] button');
    assert.deepEqual(await rowKeys(page, 'orders'), [ids.a, ids.b, ids.c]);
    // Items (quantities 1, 3, 1): c last ascending.
    await page.click('#orders-table th[data-sort="items"] button');
    assert.equal((await rowKeys(page, 'orders'))[2], ids.c);
    await page.click('#orders-table th[data-sort="customer"] button');

    // Paused: a new order is queued and counted, the rows stay as they are.
    await page.click('#orders-pause');
    const frozen = await rowKeys(page, 'orders');
    const late = await order('sort-0@example.com', 5);
    await waitUntil(async () => /\(1 new\)/.test(await page.innerText('#orders-pause')), 10000, 'the pause button to count the new order');
    assert.deepEqual(await rowKeys(page, 'orders'), frozen);
    // Resumed: the queued order is shown where the sort puts it (first by customer).
    await page.click('#orders-pause');
    await waitUntil(async () => (await rowKeys(page, 'orders'))[0] === late, 5000, 'the queued order in its place');
    assert.deepEqual(await rowKeys(page, 'orders'), [late, ids.a, ids.b, ids.c]);
    assert.match(await page.innerText('#orders-pause'), /Pause/);
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('the order and payment forms say what is wrong with each field', async () => {
  const p = await open('#/orders');
  try {
    const page = p.page;
    await page.fill('#order-customer', 'forms@example.com');
    const row = page.locator('#order-items .item-row').first();
    await row.locator('[name=quantity]').fill('0');
    await row.locator('[name=price]').fill('1.999');
    await page.click('#order-submit');
    const feedback = async (name) => (await row.locator(`[name=${name}] + .invalid-feedback`).innerText()).trim();
    await waitUntil(async () => (await feedback('price')) !== '', 5000, 'the price message');
    assert.equal(await feedback('price'), 'At most two decimals.');
    assert.equal(await feedback('quantity'), 'A whole number, 1 or more.');
    await row.locator('[name=price]').fill('abc');
    await page.click('#order-submit');
    assert.match(await feedback('price'), /A price of 0 or more/);
    await row.locator('[name=quantity]').fill('2');
    await row.locator('[name=price]').fill('4.5');
    await page.click('#order-submit');
    const link = page.locator('[data-created-order]');
    await link.waitFor({ timeout: 10000 });
    const id = await link.getAttribute('data-created-order');

    // A payment of another amount: the message names the amount due (9.00).
    await page.goto(`${node.base}/#/payments`);
    // The amount first: choosing a known order fills an empty amount with what is due.
    await page.fill('#payment-amount', '3');
    await page.fill('#payment-order', id);
    await page.click('#payment-submit');
    const err = page.locator('#payment-form [data-form-error]:not([hidden])');
    await err.waitFor({ timeout: 10000 });
    assert.equal((await err.innerText()).trim(), 'The amount must be exactly what is due: €9.00.');
    assert.deepEqual(p.problems.filter((x) => !/422/.test(x)), [], 'only the expected 422');
  } finally {
    await p.context.close();
  }
});

test('the notifications page lists what the notifier wrote, each once, and new ones live', async () => {
  const refunded = await paidOrder('notify@example.com', 12);
  await node.api('POST', `/api/orders/${refunded}/refund`, {});
  const failed = await order('notify-fail@example.com', 8);
  await node.api('POST', '/api/payments', { order_id: failed, amount: 8, method: 'paypal', status: 'failed' });
  const listed = await waitUntil(async () => {
    const r = await node.api('GET', '/api/notifications');
    const mine = r.notifications.filter((n) => n.order_id === refunded || n.order_id === failed);
    return mine.length === 2 ? r : null;
  }, 15000, 'two notifications from the API');
  assert.equal(listed.total, listed.notifications.length);
  assert.ok(listed.notifications.every((n) => n.notification_id && n.kind && n.severity && n.message));

  const p = await open('#/notifications');
  try {
    const page = p.page;
    const row = (id) => page.locator(`#notifications-table tbody tr:has(a[href="#/orders/${id}"])`);
    await row(refunded).waitFor({ timeout: 10000 });
    await row(failed).waitFor({ timeout: 10000 });
    assert.equal(await row(refunded).count(), 1);
    assert.equal(await row(refunded).locator('[data-kind]').getAttribute('data-kind'), 'payment_refunded');
    assert.equal(await row(failed).locator('[data-severity]').getAttribute('data-severity'), 'warning');
    // Live: a delivered parcel while the page is open.
    const delivered = await paidOrder('notify-live@example.com', 3);
    for (const status of ['scheduled', 'shipped', 'in_transit', 'out_for_delivery', 'delivered']) {
      await node.api('POST', '/api/deliveries', { order_id: delivered, status, carrier: 'DHL' });
    }
    await row(delivered).waitFor({ timeout: 15000 });
    assert.equal(await row(delivered).locator('[data-kind]').getAttribute('data-kind'), 'delivered');
    // The severity filter.
    await page.selectOption('#notifications-severity', 'warning');
    await waitUntil(async () => (await row(delivered).count()) === 0 && (await row(failed).count()) === 1, 10000, 'only warnings');
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('French: the navbar switch is remembered and labels, numbers, dates and currencies are French', async () => {
  const id = await paidOrder('francais@example.com', 1234.5);
  const p = await open('#/dashboard');
  try {
    const page = p.page;
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    await p.settled();
    await Promise.all([page.waitForNavigation(), page.selectOption('#lang-switch', 'fr')]);
    await page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 15000 });
    assert.equal(await page.getAttribute('html', 'lang'), 'fr');
    assert.equal(await page.inputValue('#lang-switch'), 'fr');
    const nav = await page.locator('#nav .nav-link').allInnerTexts();
    assert.deepEqual(nav.slice(0, 6), ['Tableau de bord', 'Commandes', 'Paiements', 'Livraisons', 'Notifications', 'Cluster']);
    assert.equal((await page.innerText('#page-dashboard .stat-label >> nth=1')).trim().toLowerCase(), 'chiffre d’affaires');
    assert.equal(await page.innerText('#ws-state'), 'connecté');
    // The revenue card in fr-FR's format (a narrow no-break space between
    // thousands, a decimal comma, a no-break space before €).
    const euros = (await node.api('GET', '/api/stats')).revenue.EUR;
    const expected = new Intl.NumberFormat('fr-FR', { style: 'currency', currency: 'EUR' }).format(euros);
    assert.match(expected, /^\d{1,3}(\u202f\d{3})*,\d{2}\u00a0€$/);
    const revenue = page.locator('#stat-revenue [data-currency="EUR"]');
    await waitUntil(async () => (await revenue.innerText()).trim() === expected, 10000, `${expected} on the revenue card`);

    // Remembered: another page of the same browser profile opens in French.
    const second = await p.context.newPage();
    await second.goto(`${node.base}/#/orders/${id}`);
    await second.waitForSelector('#order-detail:not([hidden]) #detail-refund', { timeout: 10000 });
    assert.equal(await second.getAttribute('html', 'lang'), 'fr');
    assert.match(await second.innerText('#detail-refund'), /^Rembourser 1[\u202f\u00a0 ]234,50[\u00a0 ]€$/);
    assert.match(await second.innerText('#orders-table thead'), /Commande\s+Client\s+Articles\s+Total\s+Statut/);
    assert.match(await second.innerText(`#orders-table tbody tr[data-key="${id}"]`), /payée/);
    assert.equal(await second.innerText('#orders-pause'), 'Suspendre le direct');
    assert.equal(await second.title(), 'Sluice · Commandes');
    // A date in the French order (day/month/year) on the notifications page.
    await node.api('POST', `/api/orders/${id}/refund`, {});
    await second.goto(`${node.base}/#/notifications`);
    const cell = second.locator(`#notifications-table tbody tr:has(a[href="#/orders/${id}"]) td >> nth=0`);
    await cell.waitFor({ timeout: 15000 });
    const d = new Date();
    const dd = String(d.getDate()).padStart(2, '0'); const mm = String(d.getMonth() + 1).padStart(2, '0');
    assert.match(await cell.innerText(), new RegExp(`^${dd}/${mm}/${d.getFullYear()} \\d{2}:\\d{2}:\\d{2}$`));
    assert.match(await second.innerText(`#notifications-table tbody tr:has(a[href="#/orders/${id}"])`), /paiement remboursé/);
    // The payment form's message, in French, for a French decimal comma.
    await second.goto(`${node.base}/#/payments`);
    await second.fill('#payment-amount', '10,005');
    await second.fill('#payment-order', id);
    await second.click('#payment-submit');
    assert.equal((await second.innerText('#payment-amount-feedback')).trim(), 'Deux décimales au plus : 10,005 en a 3.');
    // Every visible label of the page is in French: none of the English ones.
    for (const page2 of ['orders', 'payments', 'deliveries', 'notifications', 'cluster', 'dashboard']) {
      await second.goto(`${node.base}/#/${page2}`);
      await second.waitForSelector(`#page-${page2}:not([hidden])`);
      await sleep(300);
      const text = await second.innerText('body');
      for (const english of ['Orders', 'Payments', 'Deliveries', 'Pause live updates', 'All statuses', 'Customer', 'Created', 'Amount', 'Carrier', 'Revenue', 'Live events', 'Consumer groups', 'Raft role', 'No orders yet', 'Severity']) {
        assert.ok(!new RegExp(`\\b${english}\\b`).test(text), `"${english}" on the French ${page2} page`);
      }
    }
    await second.close();
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('the dark theme is remembered and the charts are drawn in its colours', async () => {
  const p = await open('#/dashboard');
  try {
    const page = p.page;
    const theme = () => page.getAttribute('html', 'data-bs-theme');
    assert.equal(await theme(), 'light');
    const luminance = () => page.evaluate(() => {
      const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number);
      return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    });
    assert.ok(await luminance() > 0.8, 'a light page');
    await page.click('#theme-switch');
    assert.equal(await theme(), 'dark');
    assert.ok(await luminance() < 0.2, 'a dark page');
    await p.settled();
    await page.reload();
    await page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 15000 });
    assert.equal(await theme(), 'dark', 'remembered');
    assert.equal(await page.getAttribute('#theme-switch', 'aria-pressed'), 'true');
    // The charts' text is light on the dark page.
    // The luminance (0 black, 1 white) of the timeline chart's axis text.
    const chartText = () => page.evaluate(() => {
      const el = document.createElement('div');
      el.style.color = window.Chart.getChart('chart-timeline').scales.x.options.ticks.color;
      document.body.appendChild(el);
      const [r, g, b] = getComputedStyle(el).color.match(/\d+/g).map(Number);
      el.remove();
      return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    });
    await waitUntil(() => page.evaluate(() => !!window.Chart?.getChart('chart-timeline')), 10000, 'the timeline chart');
    assert.ok(await chartText() > 0.5, 'chart text light on a dark page');
    // Back to light: the charts follow without a reload.
    await page.click('#theme-switch');
    assert.ok(await chartText() < 0.5, 'chart text dark on a light page');
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('/api/cluster of a single node says Raft is not running', async () => {
  const c = await node.api('GET', '/api/cluster');
  assert.equal(c.mode, 'single-node');
  assert.equal(c.raft_running, false);
  assert.equal(c.brokers[0].raft_role, null);
  assert.equal(c.brokers[0].raft_term, null);
});

test('screenshots of every shop page in the dark theme and in French', async () => {
  await node.api('POST', '/api/simulator', { enabled: true, rate_per_sec: 8 });
  try {
    const id = await paidOrder('screenshot@example.com', 42.5);
    const variants = process.env.SLUICE_SCREENSHOT_DIR
      ? [['dark', { theme: 'dark' }], ['fr', { lang: 'fr' }], ['fr-dark', { lang: 'fr', theme: 'dark' }]]
      : [['dark', { theme: 'dark' }], ['fr', { lang: 'fr' }]];
    for (const [suffix, settings] of variants) {
      const p = await open('#/dashboard', settings);
      try {
        await sleep(2000);
        for (const name of PAGES) {
          const detail = name === 'orders' ? `/${id}` : '';
          await p.page.goto(`${node.base}/#/${name}${detail}`);
          await p.page.waitForSelector(`#page-${name}:not([hidden])`);
          await sleep(name === 'cluster' ? 2500 : 1200);
          await p.page.screenshot({ path: join(SCREENSHOTS, `${name}-${suffix}.png`) });
          if (!process.env.SLUICE_SCREENSHOT_DIR) break; // the test run shoots one page of each
        }
        assert.deepEqual(p.problems, []);
      } finally {
        await p.context.close();
      }
    }
  } finally {
    await node.api('POST', '/api/simulator', { enabled: false, rate_per_sec: 1 }).catch(() => {});
  }
});
