// The embedded dashboard in headless Chromium against a real `sluice` node.
//
// One node and one browser for the whole file; the tests run in order (the
// later ones use the traffic of the earlier ones). Screenshots (1280x800) go to
// tests/.work/screenshots/ (or $SLUICE_SCREENSHOT_DIR: `bash scripts/screenshots.sh`
// renews docs/screenshots/), figures (asset sizes, main-thread busy time) to
// tests/.work/browser-figures.json and to the test output. The tests never
// write a tracked file.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, brotliCompressSync } from 'node:zlib';
import { Sluice, launchChromium, openPage, waitUntil, sleep, REPO_ROOT } from './harness.mjs';

const SCREENSHOTS = process.env.SLUICE_SCREENSHOT_DIR || join(REPO_ROOT, 'tests', '.work', 'screenshots');
const WORK = join(REPO_ROOT, 'tests', '.work');
const PAGES = ['dashboard', 'orders', 'payments', 'deliveries', 'notifications', 'cluster'];
const figures = {};

let node;
let chrome;

before(async () => {
  node = new Sluice(); // assigned first, so `after` cleans up even if start fails
  await node.start();
  chrome = await launchChromium();
});

after(async () => {
  try { await chrome?.close(); } finally {
    if (node) {
      // Stop the simulator first so the node shuts down quickly.
      try { await node.api('POST', '/api/simulator', { enabled: false, rate_per_sec: 1 }); } catch { /* node may be gone */ }
      await node.stop();
    }
    mkdirSync(WORK, { recursive: true });
    writeFileSync(join(WORK, 'browser-figures.json'), JSON.stringify(figures, null, 2));
  }
});

/** Open `hash` in a fresh page and wait until the WebSocket is connected. */
async function open(hash) {
  const p = await openPage(chrome.browser, node.base);
  await p.page.goto(`${node.base}/${hash}`);
  await p.page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 15000 });
  return p;
}

const rowCount = (page, table) => page.locator(`#${table}-table tbody tr[data-key]`).count();

test('every page loads without console errors and only from the binary', async () => {
  const p = await open('#/dashboard');
  try {
    for (const name of PAGES) {
      await p.page.goto(`${node.base}/#/${name}`);
      await p.page.waitForSelector(`#page-${name}:not([hidden])`, { timeout: 5000 });
      await p.page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 15000 });
      await sleep(300);
      assert.equal(await p.page.locator('.nav-link.active').getAttribute('data-nav'), name);
    }
    assert.deepEqual(p.problems, [], `problems:\n${p.problems.join('\n')}`);
    const foreign = p.requests.filter((u) => !u.startsWith(node.base) && !u.startsWith(node.base.replace('http', 'ws')) && !u.startsWith('data:'));
    assert.deepEqual(foreign, [], 'every request goes to the node itself');
  } finally {
    await p.context.close();
  }
});

test('own JS and CSS are small and served compressed and cacheable', async () => {
  const sizes = {};
  for (const name of ['app.js', 'i18n.js', 'app.css', 'index.html']) {
    const url = name === 'index.html' ? `${node.base}/` : `${node.base}/assets/${name}`;
    const raw = Buffer.from(await (await fetch(url, { headers: { 'Accept-Encoding': 'identity' } })).arrayBuffer());
    const br = await fetch(url, { headers: { 'Accept-Encoding': 'br' } });
    assert.equal(br.headers.get('content-encoding'), 'br', `${name} brotli`);
    assert.equal(br.headers.get('cache-control'), 'no-cache');
    assert.ok(br.headers.get('etag'), `${name} has an ETag`);
    const again = await fetch(url, { headers: { 'If-None-Match': br.headers.get('etag') } });
    assert.equal(again.status, 304, `${name} revalidates to 304`);
    sizes[name] = { raw: raw.length, gzip: gzipSync(raw, { level: 9 }).length, brotli: brotliCompressSync(raw).length };
  }
  const html = await (await fetch(`${node.base}/`)).text();
  const vendor = [...html.matchAll(/"(\/assets\/vendor\/[^"]+)"/g)].map((m) => m[1]);
  assert.equal(vendor.length, 3, 'bootstrap css, bootstrap js, chart.js');
  for (const path of vendor) {
    const r = await fetch(`${node.base}${path}`, { headers: { 'Accept-Encoding': 'gzip' } });
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get('content-encoding'), 'gzip', path);
    assert.match(r.headers.get('cache-control'), /immutable/, path);
    const raw = Buffer.from(await (await fetch(`${node.base}${path}`, { headers: { 'Accept-Encoding': 'identity' } })).arrayBuffer());
    sizes[path.split('/').pop()] = { raw: raw.length, gzip_served: Number(r.headers.get('content-length')) };
    await r.arrayBuffer();
  }
  figures.asset_sizes = sizes;
  console.log('asset sizes (bytes):', JSON.stringify(sizes));
  // Budgets: the dashboard's own code stays small next to its libraries.
  // Six pages with sortable, pausable lists and their forms; the words of
  // both languages are in i18n.js.
  assert.ok(sizes['app.js'].gzip < 26000, `app.js gzip ${sizes['app.js'].gzip} B`);
  assert.ok(sizes['i18n.js'].gzip < 10000, `i18n.js gzip ${sizes['i18n.js'].gzip} B`);
  assert.ok(sizes['app.css'].gzip < 4000, `app.css gzip ${sizes['app.css'].gzip} B`);
});

let orderId;
const customer = `browser-${Date.now()}@example.com`;

test('an order created through the form appears in the table through the WebSocket', async () => {
  const p = await open('#/orders');
  try {
    const page = p.page;
    const eventsBefore = await page.evaluate(() => window.sluiceDashboard.perf.events);
    // Browser-side validation: an empty customer is refused without a request.
    await page.fill('#order-customer', '');
    await page.click('#order-submit');
    assert.ok(await page.locator('#order-form.was-validated').count(), 'the form marks invalid fields');
    assert.equal(await page.locator('#order-form [data-form-ok]:not([hidden])').count(), 0);

    await page.fill('#order-customer', customer);
    await page.click('#order-add-item');
    const rows = page.locator('#order-items .item-row');
    assert.equal(await rows.count(), 2);
    await rows.nth(0).locator('[name=sku]').fill('book-rust');
    await rows.nth(0).locator('[name=quantity]').fill('2');
    await rows.nth(0).locator('[name=price]').fill('25.50');
    await rows.nth(1).locator('[name=sku]').fill('mug-kafka');
    await rows.nth(1).locator('[name=quantity]').fill('1');
    await rows.nth(1).locator('[name=price]').fill('9');
    await page.click('#order-submit');
    const link = page.locator('[data-created-order]');
    await link.waitFor({ timeout: 10000 });
    orderId = await link.getAttribute('data-created-order');
    assert.ok(orderId, 'the 202 answer names the order');
    // The table is not re-read after a submit: the row comes from the WebSocket.
    const row = page.locator(`#orders-table tbody tr[data-key="${orderId}"]`);
    await row.waitFor({ timeout: 10000 });
    assert.match(await row.innerText(), new RegExp(customer.replace(/[.@]/g, '\\$&')));
    assert.match(await row.innerText(), /60\.00/);
    assert.ok(await page.evaluate(() => window.sluiceDashboard.perf.events) > eventsBefore);

    // Search (server-side customer filter) and the status filter narrow the table.
    await node.api('POST', '/api/orders', { customer: 'someone-else@example.com', currency: 'EUR', items: [{ sku: 'x', quantity: 1, price: 1 }] });
    await waitUntil(async () => (await rowCount(page, 'orders')) >= 2, 10000, 'a second order');
    await page.fill('#orders-search', customer);
    await waitUntil(async () => (await rowCount(page, 'orders')) === 1 && (await row.count()) === 1, 10000, 'search to leave one row');
    await page.selectOption('#orders-status', 'paid');
    await waitUntil(async () => (await rowCount(page, 'orders')) === 0, 10000, 'no paid order of this customer');
    await page.selectOption('#orders-status', 'created');
    await row.waitFor({ timeout: 10000 });
    await page.fill('#orders-search', orderId);
    await waitUntil(async () => (await rowCount(page, 'orders')) === 1 && (await row.count()) === 1, 10000, 'search by order id');
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('the server\'s validation message is shown next to the form', async () => {
  const p = await open('#/payments');
  try {
    const page = p.page;
    await page.fill('#payment-order', 'no-such-order');
    await page.fill('#payment-amount', '5');
    await page.click('#payment-submit');
    const err = page.locator('#payment-form [data-form-error]:not([hidden])');
    await err.waitFor({ timeout: 10000 });
    assert.ok((await err.innerText()).length > 3, 'an error message is shown');
  } finally {
    await p.context.close();
  }
});

test('paying the order and advancing its delivery to delivered shows the timeline', async () => {
  assert.ok(orderId, 'needs the order of the previous test');
  const p = await open('#/payments');
  try {
    const page = p.page;
    await page.fill('#payment-amount', '60');
    await page.fill('#payment-order', orderId);
    await page.selectOption('#payment-method', 'card');
    await page.selectOption('#payment-outcome', 'authorized');
    await page.click('#payment-submit');
    await waitUntil(async () => {
      const err = page.locator('#payment-form [data-form-error]:not([hidden])');
      if (await err.count()) throw new Error(`payment refused: ${await err.innerText()}`);
      return page.locator('#payment-form [data-form-ok]:not([hidden])').count();
    }, 10000, 'the payment to be accepted');
    await page.locator(`#payments-table tbody tr:has-text("${orderId.slice(0, 8)}")`).first().waitFor({ timeout: 10000 });

    // The order detail offers the first delivery step once the order is paid.
    await page.goto(`${node.base}/#/orders/${orderId}`);
    await page.locator(`#order-detail [data-advance="${orderId}"]`).waitFor({ timeout: 10000 });
    await page.click(`#order-detail [data-advance="${orderId}"]`);

    // Then the Deliveries page advances it step by step.
    await page.goto(`${node.base}/#/deliveries`);
    const row = page.locator(`#deliveries-table tbody tr[data-key="${orderId}"]`);
    await row.waitFor({ timeout: 10000 });
    for (const next of ['shipped', 'in_transit', 'out_for_delivery', 'delivered']) {
      const button = row.locator(`button[data-next="${next}"]`);
      await button.waitFor({ timeout: 10000 });
      await button.click();
      await waitUntil(async () => (await row.locator('.badge').first().innerText()).replace(/ /g, '_') === next, 10000, `delivery ${next}`);
    }
    await row.locator('td').first().click();
    await page.waitForURL(`**/#/deliveries/${orderId}`);
    const steps = page.locator(`#timeline ol.timeline[data-order="${orderId}"] li`);
    await waitUntil(async () => (await steps.count()) === 5, 10000, 'five timeline steps');
    const statuses = await steps.evaluateAll((lis) => lis.map((li) => li.dataset.status));
    assert.deepEqual(statuses, ['scheduled', 'shipped', 'in_transit', 'out_for_delivery', 'delivered']);

    await page.goto(`${node.base}/#/orders/${orderId}`);
    await waitUntil(async () => (await page.locator('#detail-timeline li').count()) === 5, 10000, 'timeline in the order detail');
    assert.match(await page.locator('#order-detail').innerText(), /delivered/);
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('after a lost connection the page reconnects and resyncs from the snapshot', async () => {
  const p = await openPage(chrome.browser, node.base);
  let blocked = false;
  const sockets = [];
  await p.page.routeWebSocket(/\/ws$/, (ws) => {
    if (blocked) { ws.close({ code: 1011, reason: 'test: server away' }); return; }
    ws.connectToServer();
    sockets.push(ws);
  });
  try {
    const page = p.page;
    await page.goto(`${node.base}/#/orders`);
    await page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 15000 });
    blocked = true;
    for (const ws of sockets) await ws.close({ code: 1001, reason: 'test: going away' });
    await page.waitForSelector('#ws-state[data-state="reconnecting"]', { timeout: 10000 });
    // An order created while the page is disconnected...
    const r = await node.api('POST', '/api/orders', { customer: 'while-away@example.com', currency: 'EUR', items: [{ sku: 'away', quantity: 1, price: 1 }] });
    const id = String(r.order_id ?? r.id);
    await sleep(1500);
    assert.equal(await page.locator(`#orders-table tbody tr[data-key="${id}"]`).count(), 0, 'not seen while disconnected');
    blocked = false;
    // ...is on the page once it has reconnected and resynchronised.
    await page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 20000 });
    await page.locator(`#orders-table tbody tr[data-key="${id}"]`).waitFor({ timeout: 10000 });
  } finally {
    await p.context.close();
  }
});

test('switching the simulator on changes the stat cards and the charts', async () => {
  const p = await open('#/dashboard');
  try {
    const page = p.page;
    const chartTotal = () => page.evaluate(() => {
      const sum = (id) => { const c = window.Chart.getChart(id); return c ? c.data.datasets.reduce((s, d) => s + d.data.reduce((a, b) => a + (+b || 0), 0), 0) : 0; };
      return { timeline: sum('chart-timeline'), payments: sum('chart-payments'), deliveries: sum('chart-deliveries') };
    });
    const before = { orders: await page.innerText('#stat-orders'), revenue: await page.innerText('#stat-revenue'), charts: await chartTotal() };
    await page.evaluate(() => { const r = document.querySelector('#sim-rate'); r.value = '20'; r.dispatchEvent(new Event('input')); r.dispatchEvent(new Event('change')); });
    await page.click('#sim-enabled');
    await waitUntil(async () => (await page.innerText('#stat-orders')) !== before.orders, 15000, 'orders card to change');
    await waitUntil(async () => (await page.innerText('#stat-revenue')) !== before.revenue, 15000, 'revenue card to change');
    await waitUntil(async () => {
      const now = await chartTotal();
      return now.timeline > before.charts.timeline && now.payments > before.charts.payments && now.deliveries > before.charts.deliveries;
    }, 20000, 'all three charts to change');
    await waitUntil(async () => parseFloat(await page.innerText('#stat-eps')) > 0, 10000, 'events per second');
    const sim = await node.api('GET', '/api/simulator');
    assert.equal(sim.enabled, true);
    await sleep(1500);
    assert.ok(await page.locator('#feed li[data-kind]').count() > 5, 'the live feed fills');
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('the cluster page lists the broker, the shop topics and the consumer groups', async () => {
  const p = await open('#/cluster');
  try {
    const page = p.page;
    await page.locator('#brokers-table tbody tr[data-broker="1"]').waitFor({ timeout: 10000 });
    assert.match(await page.innerText('#brokers-table tbody'), /alive/);
    for (const topic of ['orders', 'payments', 'deliveries']) {
      await page.locator(`#topics-table tbody tr[data-topic="${topic}"]`).first().waitFor({ timeout: 10000 });
    }
    await waitUntil(async () => (await page.locator('#groups-table tbody tr[data-group]').count()) >= 1, 15000, 'consumer groups');
    // Refreshed live: the end offsets move while the simulator runs.
    const ends = () => page.locator('#topics-table tbody tr[data-topic="orders"] td:nth-last-child(3)').allInnerTexts();
    const first = (await ends()).join();
    await waitUntil(async () => (await ends()).join() !== first, 10000, 'log end offsets to move');
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('screenshots of every page at 1280x800', async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const p = await open('#/dashboard');
  try {
    const page = p.page;
    await sleep(3000); // let the charts and feed show the simulated traffic
    for (const name of PAGES) {
      // The order of the flow test, with its payment and timeline, where a page can show it.
      const suffix = orderId && (name === 'orders' || name === 'deliveries') ? `/${orderId}` : '';
      await page.goto(`${node.base}/#/${name}${suffix}`);
      await page.waitForSelector(`#page-${name}:not([hidden])`);
      await sleep(name === 'cluster' ? 2500 : 1500);
      await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
    }
    assert.deepEqual(p.problems, []);
  } finally {
    await p.context.close();
  }
});

test('at 200 events/s the main thread stays mostly idle and charts redraw a few times a second', async () => {
  // About 200 events/s: measure the ratio of events to orders, then set the rate.
  const p = await open('#/dashboard');
  try {
    const page = p.page;
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    // The simulator's rate is in events (orders, payments, delivery steps) per second.
    const rate = 200;
    await node.api('POST', '/api/simulator', { enabled: true, rate_per_sec: rate });
    await sleep(3000);
    const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    const perf = () => page.evaluate(() => JSON.parse(JSON.stringify(window.sluiceDashboard.perf)));
    const m0 = await metrics(); const p0 = await perf(); const t0 = Date.now();
    await sleep(10000);
    const m1 = await metrics(); const p1 = await perf(); const secs = (Date.now() - t0) / 1000;
    const per = (k) => (m1[k] - m0[k]) / secs;
    const result = {
      simulator_rate_per_sec: rate,
      events_per_sec: (p1.shopEvents - p0.shopEvents) / secs,
      ws_messages_per_sec: (p1.events - p0.events) / secs,
      main_thread_busy_ms_per_sec: per('TaskDuration') * 1000,
      script_ms_per_sec: per('ScriptDuration') * 1000,
      layout_ms_per_sec: per('LayoutDuration') * 1000,
      style_ms_per_sec: per('RecalcStyleDuration') * 1000,
      chart_redraws_per_sec: (p1.chartDraws - p0.chartDraws) / secs,
      // The busiest of the three charts.
      max_redraws_per_chart_per_sec: Math.max(...Object.keys(p1.chartDrawsByName).map((k) => (p1.chartDrawsByName[k] - (p0.chartDrawsByName[k] || 0)) / secs)),
      dom_flushes_per_sec: (p1.flushes - p0.flushes) / secs,
      js_heap_used_mb: m1.JSHeapUsedSize / 1048576,
    };
    // The Orders page under the same traffic (its table gains and changes rows).
    await page.goto(`${node.base}/#/orders`);
    await sleep(2000);
    const o0 = await metrics(); const ot0 = Date.now();
    await sleep(5000);
    const o1 = await metrics();
    result.orders_page_busy_ms_per_sec = ((o1.TaskDuration - o0.TaskDuration) / ((Date.now() - ot0) / 1000)) * 1000;
    figures.busy_at_200_events = result;
    console.log('main thread at ~200 events/s:', JSON.stringify(result));
    assert.ok(result.events_per_sec > 100, `events reached the page: ${result.events_per_sec}/s`);
    assert.ok(result.max_redraws_per_chart_per_sec <= 2.5, `charts batched: ${result.max_redraws_per_chart_per_sec}/s`);
    assert.ok(result.main_thread_busy_ms_per_sec < 500, `main thread busy ${result.main_thread_busy_ms_per_sec} ms/s`);
    assert.ok(result.orders_page_busy_ms_per_sec < 500, `orders page busy ${result.orders_page_busy_ms_per_sec} ms/s`);
    assert.deepEqual(p.problems, []);
  } finally {
    await node.api('POST', '/api/simulator', { enabled: false, rate_per_sec: 1 }).catch(() => {});
    await p.context.close();
  }
});
