// The shop pages' money and live behaviour in headless Chromium against a
// real `sluice` node: revenue per currency on the cards and the chart, one
// feed line per event and Events/s counting events, the payment form's
// message for a third decimal and for an amount that is not the one due, the
// refund from the order page, the single-node Cluster page without Raft, and
// the Orders table sorted by creation under live traffic with a pause.
//
// One node and one browser for the file; the tests run in order (the last
// one runs the simulator). Screenshots go to $SLUICE_SCREENSHOT_DIR or a
// directory under the system's temporary directory, never into the repo.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedNodeAndBrowser, openLivePage, paidOrder as paidOrderOf, waitUntil } from './harness.mjs';

const SCREENSHOTS = process.env.SLUICE_SCREENSHOT_DIR || join(tmpdir(), 'sluice-shop-screenshots');

const shared = sharedNodeAndBrowser({ before, after });
let node;
before(() => { node = shared.node; mkdirSync(SCREENSHOTS, { recursive: true }); });

const open = (hash) => openLivePage(shared.chrome, node, hash);

/** An order of `price` in `currency`, paid exactly (through the API). */
const paidOrder = (price, currency) => paidOrderOf(node, `money-${currency}@example.com`, price, currency);

const shortId = (id) => (id.length > 10 ? id.slice(0, 8) : id);

test('the revenue card and the chart show each currency on its own, never a sum', async () => {
  await paidOrder(10, 'EUR');
  await paidOrder(20, 'USD');
  const p = await open('#/dashboard');
  try {
    const page = p.page;
    const stats = await node.api('GET', '/api/stats');
    const formatted = await page.evaluate((rev) => Object.fromEntries(Object.entries(rev).map(([c, v]) => [c, new Intl.NumberFormat(window.sluiceI18n.locale, { style: 'currency', currency: c }).format(v)])), stats.revenue);
    assert.deepEqual(Object.keys(formatted).sort(), ['EUR', 'USD']);
    for (const [currency, text] of Object.entries(formatted)) {
      await waitUntil(async () => (await page.locator(`#stat-revenue [data-currency="${currency}"]`).count()) === 1
        && (await page.innerText(`#stat-revenue [data-currency="${currency}"]`)).trim() === text, 10000, `the ${currency} revenue ${text} on the card`);
    }
    const labels = await waitUntil(async () => {
      const l = await page.evaluate(() => window.Chart?.getChart('chart-timeline')?.data.datasets.map((d) => d.label));
      return l && l.includes('Revenue EUR') && l.includes('Revenue USD') ? l : null;
    }, 10000, 'one revenue series per currency');
    assert.ok(!labels.includes('Revenue'), `no series of all currencies added: ${labels}`);
    await page.locator('#page-dashboard .card').first().screenshot({ path: join(SCREENSHOTS, 'revenue-cards.png') });
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('a delivery step is one feed line and Events/s counts events, not messages', async () => {
  const p = await open('#/dashboard');
  try {
    const page = p.page;
    const shopEventsBefore = await page.evaluate(() => window.sluiceDashboard.perf.shopEvents);
    // Five events: the order, its payment, three delivery steps (none of them notified).
    const id = await paidOrder(7.5, 'EUR');
    for (const status of ['scheduled', 'shipped', 'in_transit']) {
      await node.api('POST', '/api/deliveries', { order_id: id, status, carrier: 'DHL', location: `hub-${status}` });
    }
    const lines = () => page.locator(`#feed li[data-kind]:has-text("${shortId(id)}")`);
    await page.locator(`#feed li[data-kind]:has-text("${shortId(id)}"):has-text("in transit")`).first().waitFor({ timeout: 10000 });
    await waitUntil(async () => (await page.evaluate(() => window.sluiceDashboard.perf.shopEvents)) - shopEventsBefore >= 5, 5000, 'five events counted');
    const texts = await lines().allInnerTexts();
    assert.equal(texts.length, 5, `one feed line per event:\n${texts.join('\n')}`);
    assert.equal(texts.filter((t) => /shipped/.test(t)).length, 1, 'the shipped step once');
    assert.equal((await page.evaluate(() => window.sluiceDashboard.perf.shopEvents)) - shopEventsBefore, 5);
    // The card: 5 events in its 5-second window = 1.0 per second.
    await waitUntil(async () => (await page.innerText('#stat-eps')).trim() === '1.0', 3000, 'Events/s to show 1.0 (5 events in 5 s)');
    await page.locator('#page-dashboard').screenshot({ path: join(SCREENSHOTS, 'dashboard-feed.png') });
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('the payment form says what is wrong with the amount', async () => {
  const { order_id: id } = await node.api('POST', '/api/orders', { customer: 'form@example.com', currency: 'EUR', items: [{ sku: 'ten', quantity: 1, price: 10 }] });
  const p = await open('#/payments');
  try {
    const page = p.page;
    // The amount first: choosing a known order fills an empty amount with what is due.
    await page.fill('#payment-amount', '10.005');
    await page.fill('#payment-order', id);
    await page.click('#payment-submit');
    const feedback = page.locator('#payment-amount ~ .invalid-feedback').first();
    await feedback.waitFor({ state: 'visible', timeout: 5000 });
    assert.match(await feedback.innerText(), /two decimals/i);
    assert.doesNotMatch(await feedback.innerText(), /non-negative/);
    await page.screenshot({ path: join(SCREENSHOTS, 'payment-form-decimals.png') });

    // An amount that is not the one due: the server's answer names it.
    await page.fill('#payment-amount', '3');
    await page.click('#payment-submit');
    const err = page.locator('#payment-form [data-form-error]:not([hidden])');
    await err.waitFor({ timeout: 10000 });
    assert.match(await err.innerText(), /exactly what is due: €10\.00/);
    assert.equal((await node.api('GET', `/api/orders/${id}`)).status, 'created');
    await page.screenshot({ path: join(SCREENSHOTS, 'payment-form-mismatch.png') });
    assert.deepEqual(p.problems.filter((x) => !/422/.test(x)), [], 'only the expected 422');
  } finally {
    await p.context.close();
  }
});

test('the order page refunds what was paid', async () => {
  const id = await paidOrder(12.34, 'GBP');
  const p = await open(`#/orders/${id}`);
  try {
    const page = p.page;
    const button = page.locator('#detail-refund');
    await button.waitFor({ timeout: 10000 });
    assert.match(await button.innerText(), /12\.34/);
    await button.click();
    await waitUntil(async () => /Confirm/.test(await button.innerText()), 5000, 'the confirmation');
    await page.screenshot({ path: join(SCREENSHOTS, 'order-refund-confirm.png') });
    await button.click();
    const order = await waitUntil(async () => { const o = await node.api('GET', `/api/orders/${id}`); return o.status === 'refunded' ? o : null; }, 10000, 'the order refunded');
    const refund = order.payments.find((x) => x.status === 'refunded');
    assert.equal(refund.amount, 12.34);
    assert.equal(refund.currency, 'GBP');
    await page.locator('#order-detail .badge:has-text("refunded")').first().waitFor({ timeout: 10000 });
    assert.equal(await page.locator('#detail-refund').count(), 0, 'no second refund offered');
    await page.screenshot({ path: join(SCREENSHOTS, 'order-refunded.png') });
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('the single-node Cluster page says Raft is not running', async () => {
  const p = await open('#/cluster');
  try {
    const page = p.page;
    const row = page.locator('#brokers-table tbody tr[data-broker="1"]');
    await row.waitFor({ timeout: 10000 });
    const text = await row.innerText();
    assert.match(text, /not running/i);
    assert.doesNotMatch(text, /leader/);
    await page.screenshot({ path: join(SCREENSHOTS, 'cluster-single-node.png') });
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('the Orders table stays sorted by creation under live traffic and pauses', async () => {
  // More orders than a page (50), so that older orders off the page change too.
  await node.api('POST', '/api/simulator', { enabled: true, rate_per_sec: 400 });
  await waitUntil(async () => (await node.api('GET', '/api/stats')).orders.total >= 120, 30000, '120 orders');
  await node.api('POST', '/api/simulator', { enabled: true, rate_per_sec: 10 });
  const p = await open('#/orders');
  try {
    const page = p.page;
    const created = new Map();
    const createdOf = async (ids) => {
      if (ids.some((id) => !created.has(id))) {
        const list = await node.api('GET', '/api/orders?limit=500');
        for (const o of list.orders) created.set(o.order_id, o.created_at);
      }
      return ids.map((id) => created.get(id));
    };
    const rowIds = () => page.locator('#orders-table tbody tr[data-key]').evaluateAll((trs) => trs.map((tr) => tr.dataset.key));
    await waitUntil(async () => (await rowIds()).length === 50, 10000, 'a full page of orders');
    // For a few seconds of traffic (about 10 events/s), every look at the
    // table finds it newest-created first.
    const until = Date.now() + 4000;
    let looks = 0;
    await waitUntil(async () => {
      const ids = await rowIds();
      const times = await createdOf(ids);
      for (let i = 1; i < times.length; i++) {
        assert.ok(times[i - 1] >= times[i], `row ${i} (${ids[i]}, created ${times[i]}) is above row ${i - 1}'s creation ${times[i - 1]}`);
      }
      looks++;
      return Date.now() >= until;
    }, 10000, 'a few seconds of live traffic', 200);
    assert.ok(looks >= 5, `looked ${looks} times`);

    // Paused: the rows stay as they are while orders keep coming.
    await page.click('#orders-pause');
    const frozen = await rowIds();
    const total = (await node.api('GET', '/api/stats')).orders.total;
    await waitUntil(async () => (await node.api('GET', '/api/stats')).orders.total >= total + 3, 15000, 'three more orders');
    await waitUntil(async () => /\(\d+ new\)/.test(await page.innerText('#orders-pause')), 5000, 'the pause button to count new orders');
    assert.deepEqual(await rowIds(), frozen, 'a paused table does not change');
    await page.screenshot({ path: join(SCREENSHOTS, 'orders-paused.png') });
    // Resumed: the newest orders are there again.
    await page.click('#orders-pause');
    await waitUntil(async () => !frozen.includes((await rowIds())[0]), 10000, 'newer orders on top after resuming');
    assert.match(await page.innerText('#orders-pause'), /Pause/);
    assert.deepEqual(p.problems, []);
  } finally {
    await node.api('POST', '/api/simulator', { enabled: false, rate_per_sec: 1 }).catch(() => {});
    await p.context.close();
  }
});
