// The console pages in headless Chromium against a real `sluice` node:
// create a topic, produce a record with headers from the UI and find it with
// a header filter and with a JSON-path filter, tail the topic live while a
// Kafka client produces, reset a group's offsets to a timestamp (a librdkafka
// consumer then starts there), delete the topic; the Brokers page and the
// API reference page; the pages in French (labels, numbers, dates) and in
// the dark theme.
//
// One node and one browser for the file; the tests run in order. The Kafka
// clients are Python's confluent-kafka ($SLUICE_PYTHON). Screenshots go to
// $SLUICE_SCREENSHOT_DIR or a directory under the system's temporary
// directory, never into the repo.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sluice, launchChromium, openPage, waitUntil, sleep } from './harness.mjs';

const SCREENSHOTS = process.env.SLUICE_SCREENSHOT_DIR || join(tmpdir(), 'sluice-console-screenshots');
const PYTHON = process.env.SLUICE_PYTHON || 'python3';
const TOPIC = `console-${Date.now().toString(36)}`;
const GROUP = `${TOPIC}-group`;

let node;
let chrome;
let p;

before(async () => {
  node = new Sluice();
  await node.start();
  chrome = await launchChromium();
  mkdirSync(SCREENSHOTS, { recursive: true });
  p = await openPage(chrome.browser, node.base);
  p.page.on('dialog', (d) => d.accept());
});

after(async () => {
  try { await chrome?.close(); } finally { await node?.stop(); }
});

/** Run a Python snippet with confluent-kafka; resolves to its stdout. */
function python(code, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const proc = spawn(PYTHON, ['-c', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (c) => { out += c; });
    proc.stderr.on('data', (c) => { err += c; });
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`python timed out\n${err}`)); }, timeoutMs);
    proc.on('exit', (code) => { clearTimeout(timer); if (code === 0) resolve(out); else reject(new Error(`python exited ${code}\n${err}`)); });
  });
}

async function go(hash) {
  await p.page.goto(`${node.base}/${hash}`);
  await p.page.waitForSelector(`#page-${hash.split('/')[1]}:not([hidden])`);
}

const rows = (sel) => p.page.$$eval(`${sel} tbody tr`, (trs) => trs.map((tr) => tr.innerText));

test('a topic is created from the Topics page', async () => {
  await go('#/topics');
  await p.page.fill('#topic-name', TOPIC);
  await p.page.fill('#topic-partitions', '2');
  await p.page.fill('#topic-configs', 'retention.ms=86400000');
  await p.page.click('#topic-create-submit');
  await p.page.waitForSelector(`#console-topics tr[data-topic="${TOPIC}"]`, { timeout: 15000 });
  const t = await node.api('GET', `/api/admin/topics/${TOPIC}`);
  assert.equal(t.partitions, 2);
  await p.page.screenshot({ path: join(SCREENSHOTS, 'console-topics.png'), fullPage: true });
  await go(`#/topics/${TOPIC}`);
  await p.page.waitForSelector('#topic-partitions-table tbody tr');
  assert.equal((await rows('#topic-partitions-table')).length, 2);
  await p.page.screenshot({ path: join(SCREENSHOTS, 'console-topic-detail.png'), fullPage: true });
});

test('a record produced with headers from the UI is found by a header filter and a JSON-path filter', async () => {
  for (let i = 0; i < 30; i++) {
    await node.api('POST', `/api/admin/topics/${TOPIC}/records`, { key: `other-${i}`, value: { customer: i % 2 ? 'Bob' : 'Eve', n: i }, headers: { trace: `t-${i}` } });
  }
  await go(`#/messages/${TOPIC}`);
  await p.page.fill('#produce-key', 'ada-key');
  await p.page.fill('#produce-value', '{"customer": "Ada", "items": [{"sku": "a-1", "qty": 2}]}');
  await p.page.click('#produce-add-header');
  await p.page.fill('#produce-headers .header-row:last-child [name=hkey]', 'trace');
  await p.page.fill('#produce-headers .header-row:last-child [name=hvalue]', 'from-ui-42');
  await p.page.click('#produce-submit');
  await waitUntil(async () => (await p.page.$$('#toasts .text-bg-success')).length > 0, 10000, 'the produce toast');

  await p.page.fill('#msg-header', 'trace=from-ui-42');
  await p.page.click('#msg-search');
  await waitUntil(async () => { const r = await rows('#msg-table'); return r.length === 1 && r[0].includes('ada-key'); }, 10000, 'one record by header');

  await p.page.fill('#msg-header', '');
  await p.page.fill('#msg-jsonpath', '$.customer == "Ada"');
  await p.page.click('#msg-search');
  await waitUntil(async () => { const r = await rows('#msg-table'); return r.length === 1 && r[0].includes('ada-key'); }, 10000, 'one record by JSON path');
  await p.page.click('#msg-table tbody tr');
  await p.page.waitForSelector('#msg-detail [data-header="trace"]');
  assert.match(await p.page.innerText('#msg-detail'), /from-ui-42/);
  await p.page.screenshot({ path: join(SCREENSHOTS, 'console-messages.png'), fullPage: true });

  await p.page.fill('#msg-jsonpath', '$.customer == "Bob"');
  await p.page.click('#msg-search');
  await waitUntil(async () => (await rows('#msg-table')).length === 15, 10000, '15 records of Bob');
  assert.ok(p.problems.every((x) => !x.startsWith('pageerror')), p.problems.join('\n'));
});

test('the live tail shows records a Kafka client produces while it runs', async () => {
  await p.page.fill('#msg-jsonpath', '');
  await p.page.click('#msg-search');
  await p.page.check('#msg-tail');
  await sleep(300);
  await python(`
import json, time
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": "${node.kafka}"})
for i in range(5):
    p.produce("${TOPIC}", key=b"tail-%d" % i, value=json.dumps({"tail": i}).encode())
    p.flush(10)
    time.sleep(0.2)
`);
  await waitUntil(async () => { const r = await rows('#msg-table'); return r.slice(0, 5).every((x) => /tail-\d/.test(x)) && r[0].includes('tail-4'); }, 15000, 'the tailed records on top');
  await p.page.uncheck('#msg-tail');
});

test("a group's offsets are reset to a timestamp and a librdkafka consumer starts there", async () => {
  const early = await node.api('GET', `/api/admin/topics/${TOPIC}`);
  await node.api('POST', `/api/admin/groups/${GROUP}/reset-offsets`, { topic: TOPIC, to: 'earliest' });
  // A whole second later (the form's time has second precision).
  const mark = Math.ceil((Date.now() + 1000) / 1000) * 1000;
  await waitUntil(async () => Date.now() > mark + 10, 5000, 'the clock to pass the mark');
  await node.api('POST', `/api/admin/topics/${TOPIC}/records`, { key: 'after-mark', value: { after: true }, partition: 0 });
  await go(`#/groups/${GROUP}`);
  await p.page.waitForSelector('#group-reset');
  await p.page.selectOption('#reset-topic', TOPIC);
  await p.page.selectOption('#reset-to', 'timestamp');
  const local = await p.page.evaluate((ms) => { const d = new Date(ms); const z = (n) => String(n).padStart(2, '0'); return `${d.getFullYear()}-${z(d.getMonth() + 1)}-${z(d.getDate())}T${z(d.getHours())}:${z(d.getMinutes())}:${z(d.getSeconds())}`; }, mark);
  await p.page.fill('#reset-time', local);
  await p.page.click('#reset-preview');
  await p.page.waitForSelector('#reset-table tbody tr');
  const hw0 = early.partition_details.find((x) => x.partition === 0).high_watermark;
  const preview = await rows('#reset-table');
  assert.ok(preview[0].replace(/\s/g, '').endsWith(String(hw0)), `partition 0 moves to ${hw0}: ${preview}`);
  // A dry run changes nothing.
  const before = await node.api('GET', `/api/admin/groups/${GROUP}`);
  assert.deepEqual(before.offsets.map((o) => o.committed), [0, 0]);
  await p.page.click('#reset-apply');
  await waitUntil(async () => (await node.api('GET', `/api/admin/groups/${GROUP}`)).offsets.find((o) => o.partition === 0).committed === hw0, 10000, 'the committed offset');
  await p.page.screenshot({ path: join(SCREENSHOTS, 'console-groups.png'), fullPage: true });
  const first = await python(`
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": "${node.kafka}", "group.id": "${GROUP}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.assign([__import__("confluent_kafka").TopicPartition("${TOPIC}", 0)])
import time
deadline = time.time() + 20
while time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and m.error() is None:
        print(m.key().decode(), m.offset())
        break
c.close()
`);
  assert.equal(first.trim(), `after-mark ${hw0}`);
  await go('#/groups');
  await p.page.waitForSelector(`#console-groups tr[data-group="${GROUP}"]`);
});

test('the Brokers page and the API reference render', async () => {
  await go('#/brokers');
  await p.page.waitForSelector('#console-brokers tbody tr');
  const [row] = await rows('#console-brokers');
  assert.match(row, /no Raft/);
  assert.match(row, /\bthis node\b/);
  await p.page.screenshot({ path: join(SCREENSHOTS, 'console-brokers.png'), fullPage: true });
  const docs = await openPage(chrome.browser, node.base);
  await docs.page.goto(`${node.base}/api/docs`);
  await docs.page.waitForSelector('[data-path="/api/admin/topics"]', { timeout: 15000 });
  await docs.page.screenshot({ path: join(SCREENSHOTS, 'api-docs.png') });
  assert.ok(docs.requests.every((u) => u.startsWith(node.base)), 'no request leaves the node');
  await docs.context.close();
});

test('French: the navbar switch shows the console pages with French labels, numbers and dates, and back to English', async () => {
  // A topic of 1,200 records and a group at offset 0 on it: counts with a
  // thousands separator on the Topics, topic and Groups pages.
  const topic = `${TOPIC}-fr`;
  const group = `${topic}-group`;
  const count = 1200;
  await node.api('POST', '/api/admin/topics', { name: topic, partitions: 1, replication_factor: -1, configs: {} });
  await python(`
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": "${node.kafka}", "linger.ms": 20})
for i in range(${count}):
    p.produce("${topic}", key=b"fr-%d" % i, value=b'{"n": %d}' % i)
assert p.flush(20) == 0
`);
  await waitUntil(async () => (await node.api('GET', `/api/admin/topics/${topic}`)).partition_details[0].high_watermark === count, 10000, `${count} records`);
  await node.api('POST', `/api/admin/groups/${group}/reset-offsets`, { topic, to: 'earliest' });
  const fr = new Intl.NumberFormat('fr-FR').format(count);
  assert.equal(fr, '1\u202f200', 'fr-FR groups thousands with a narrow no-break space');
  const en = new Intl.NumberFormat('en-GB').format(count);

  const f = await openPage(chrome.browser, node.base);
  try {
    const page = f.page;
    const goFr = async (hash) => {
      await page.goto(`${node.base}/${hash}`);
      await page.waitForSelector(`#page-${hash.split('/')[1]}:not([hidden])`);
    };
    const visible = (sel) => page.innerText(sel);
    const noEnglish = async (where, words) => {
      const text = await visible('body');
      for (const w of words) assert.ok(!text.includes(w), `"${w}" on the French ${where} page`);
    };
    const shots = process.env.SLUICE_SCREENSHOT_DIR ? ['topics', 'messages', 'groups', 'brokers'] : ['topics'];
    const shoot = async (name) => { if (shots.includes(name)) { await sleep(500); await page.screenshot({ path: join(SCREENSHOTS, `console-${name}-fr.png`), fullPage: true }); } };

    // The switch in the navbar: the page is drawn again in French.
    await goFr('#/topics');
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    await f.settled();
    await Promise.all([page.waitForNavigation(), page.selectOption('#lang-switch', 'fr')]);
    await page.waitForSelector('#page-topics:not([hidden])');
    assert.equal(await page.getAttribute('html', 'lang'), 'fr');
    const nav = await page.locator('#nav [data-nav="topics"], #nav [data-nav="messages"], #nav [data-nav="groups"], #nav [data-nav="brokers"]').allInnerTexts();
    assert.deepEqual(nav, ['Topics', 'Messages', 'Groupes', 'Brokers']);

    // Topics: French headers, the form, and 1 200 records in the row.
    const row = page.locator(`#console-topics tr[data-topic="${topic}"]`);
    await row.waitFor({ timeout: 15000 });
    assert.equal(await page.title(), 'Sluice · Topics');
    assert.match(await visible('#console-topics thead'), /Nom\s+Partitions\s+Facteur de réplication\s+Taille\s+Messages\s+Enregistrements\/s\s+Actions/);
    assert.match(await visible('#topic-create'), /Configurations, une clé=valeur par ligne/);
    assert.equal(await visible('#topic-create-submit'), 'Créer');
    assert.equal((await row.locator('td').nth(4).innerText()).trim(), fr);
    assert.match(await row.locator('td').nth(3).innerText(), /^\d+,\d[\u00a0 ]Kio$/, 'a size in Kio with a decimal comma');
    assert.equal(await row.locator('[data-delete-topic]').innerText(), 'Supprimer');
    await noEnglish('Topics', ['Create topic', 'Replication factor', 'internal topics', 'Delete', 'API reference']);
    await shoot('topics');

    // A topic's partitions: log end and high watermark in French.
    await goFr(`#/topics/${topic}`);
    await page.waitForSelector('#topic-partitions-table tbody tr');
    assert.match(await visible('#topic-partitions-table thead'), /Partition\s+Leader\s+Répliques\s+ISR\s+Début du journal\s+Fin du journal\s+High watermark\s+Taille/);
    assert.match(await visible('#topic-partitions-table tbody tr'), new RegExp(`\\b0\\s+${fr}\\s+${fr}\\b`));
    await noEnglish('topic', ['Add partitions', 'Log end', 'Save changes', 'Replicas']);

    // Messages: the filter form and the table in French, dates day/month/year.
    await goFr(`#/messages/${topic}`);
    await waitUntil(async () => (await page.$$('#msg-table tbody tr[data-record]')).length === 50, 10000, 'a page of records');
    assert.equal(await page.title(), 'Sluice · Messages');
    assert.match(await visible('#msg-table thead'), /Partition\s+Offset\s+Horodatage\s+Clé\s+Valeur\s+En-têtes/);
    for (const [id, label] of [['msg-search', 'Rechercher'], ['msg-next', 'Page suivante'], ['produce-submit', 'Envoyer'], ['msg-download', 'Télécharger en JSON Lines']]) {
      assert.equal((await visible(`#${id}`)).trim(), label);
    }
    assert.equal(await page.getAttribute('#produce-partition', 'placeholder'), 'auto');
    assert.match(await visible('#msg-info'), /^\d[\d\u202f]* enregistrements parcourus en \d[\d\u202f]* ms$/);
    const d = new Date();
    const day = `${String(d.getDate()).padStart(2, '0')}/${String(d.getMonth() + 1).padStart(2, '0')}/${d.getFullYear()}`;
    assert.match(await visible('#msg-table tbody tr[data-record] td >> nth=2'), new RegExp(`^${day} \\d{2}:\\d{2}:\\d{2}$`));
    await page.click('#msg-table tbody tr[data-record]');
    await page.waitForSelector('#msg-detail:not([hidden]) #msg-copy');
    assert.match(await visible('#msg-detail'), /Copier/);
    await noEnglish('Messages', ['Newest first', 'All partitions', 'Live tail', 'Produce a record', 'Add header', 'records scanned', 'Headers']);
    await shoot('messages');

    // Groups: the list with a lag of 1 200, the group's page in French.
    await goFr('#/groups');
    const grow = page.locator(`#console-groups tr[data-group="${group}"]`);
    await grow.waitFor({ timeout: 10000 });
    assert.equal(await page.title(), 'Sluice · Groupes de consommateurs');
    assert.match(await visible('#console-groups thead'), /Groupe\s+État\s+Type\s+Membres\s+Coordinateur\s+Retard total/);
    assert.equal((await grow.locator('td').nth(5).innerText()).trim(), fr);
    await shoot('groups');
    await goFr(`#/groups/${group}`);
    await page.waitForSelector('#group-reset');
    assert.match(await visible('#group-offsets'), new RegExp(`Validé[\\s\\S]*\\b0\\s+${fr}\\s+${fr}\\b`));
    assert.deepEqual(await page.locator('#reset-to option').allInnerTexts(), ['le plus ancien', 'le plus récent', 'un offset', 'un horodatage', 'décaler de N']);
    assert.equal(await visible('#reset-preview'), 'Essai à blanc');
    await noEnglish('group', ['Reset offsets', 'Dry run', 'Delete group', 'No active members', 'Committed']);

    // Brokers: French columns, no Raft on a single node, this node's badge.
    await goFr('#/brokers');
    await page.waitForSelector('#console-brokers tbody tr');
    assert.match(await visible('#console-brokers thead'), /Broker\s+Adresse\s+En vie\s+Contrôleur\s+Rôle Raft\s+Mandat\s+Leaders\s+Répliques\s+Disque utilisé\s+Version\s+En service depuis/);
    const brow = await visible('#console-brokers tbody tr');
    assert.match(brow, /ce nœud/);
    assert.match(brow, /Raft inactif \(nœud unique\)/);
    assert.match(brow, /\boui\b/);
    assert.match(brow, /\d(,\d)?[\u00a0 ](o|Kio|Mio|Gio)\b/);
    assert.match(await visible('#console-brokers-mode'), /nœud unique$/);
    await noEnglish('Brokers', ['Alive', 'Raft role', 'Disk used', 'Uptime', 'no Raft', 'this node']);
    await shoot('brokers');

    // Back to English with the same switch.
    await f.settled();
    await Promise.all([page.waitForNavigation(), page.selectOption('#lang-switch', 'en')]);
    await goFr('#/topics');
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    await row.waitFor({ timeout: 15000 });
    assert.match(await visible('#console-topics thead'), /Name\s+Partitions\s+Replication factor/);
    assert.equal((await row.locator('td').nth(4).innerText()).trim(), en);
    assert.deepEqual(f.problems, []);
  } finally {
    await f.context.close();
  }
  await node.api('DELETE', `/api/admin/groups/${group}`);
  await node.api('DELETE', `/api/admin/topics/${topic}`);
});

test('the console pages follow the dark theme', async () => {
  // scripts/screenshots.sh shoots every console page, also in French; a test run one.
  const shooting = !!process.env.SLUICE_SCREENSHOT_DIR;
  const pages = shooting ? ['topics', 'messages', 'groups', 'brokers'] : ['topics'];
  for (const [suffix, lang] of shooting ? [['dark', 'en'], ['fr-dark', 'fr']] : [['dark', 'en']]) {
    const dark = await openPage(chrome.browser, node.base);
    try {
      await dark.context.addInitScript((l) => { localStorage.setItem('sluice.theme', 'dark'); localStorage.setItem('sluice.locale', l); }, lang);
      for (const name of pages) {
        await dark.page.goto(`${node.base}/#/${name}`);
        await dark.page.waitForSelector(`#page-${name}:not([hidden])`);
        assert.equal(await dark.page.getAttribute('html', 'data-bs-theme'), 'dark');
        await sleep(1000);
        await dark.page.screenshot({ path: join(SCREENSHOTS, `console-${name}-${suffix}.png`), fullPage: true });
      }
    } finally {
      await dark.context.close();
    }
  }
});

test('a topic is deleted from the Topics page after a confirmation', async () => {
  await go('#/topics');
  await p.page.waitForSelector(`#console-topics tr[data-topic="${TOPIC}"]`);
  await p.page.click(`[data-delete-topic="${TOPIC}"]`);
  await waitUntil(async () => !(await p.page.$(`#console-topics tr[data-topic="${TOPIC}"]`)), 15000, 'the row to go');
  const listed = await node.api('GET', '/api/admin/topics');
  assert.ok(!listed.topics.some((t) => t.name === TOPIC));
});

test('a node without the shop (--shop false) opens on the console and never asks for the shop', async () => {
  const bare = new Sluice({ args: ['--shop', 'false'] });
  await bare.start();
  const b = await openPage(chrome.browser, bare.base);
  try {
    await b.page.goto(`${bare.base}/`);
    await b.page.waitForSelector('#page-topics:not([hidden])', { timeout: 15000 });
    assert.equal(await b.page.evaluate(() => window.sluiceDashboard.page), 'topics');
    for (const shopPage of ['dashboard', 'orders', 'payments', 'deliveries', 'notifications']) {
      assert.equal(await b.page.isVisible(`[data-nav="${shopPage}"]`), false, `${shopPage} in the navbar`);
    }
    assert.equal(await b.page.isVisible('[data-nav="cluster"]'), true);
    assert.equal(await b.page.isVisible('#ws-state'), false);
    // A shop page asked by its address shows the console's first page instead.
    await b.page.goto(`${bare.base}/#/orders`);
    await waitUntil(async () => (await b.page.evaluate(() => window.sluiceDashboard.page)) === 'topics', 10000, 'the Topics page');
    await b.page.goto(`${bare.base}/#/groups`);
    await b.page.waitForSelector('#page-groups:not([hidden])', { timeout: 15000 });
    await b.page.goto(`${bare.base}/#/cluster`);
    await b.page.waitForSelector('#page-cluster:not([hidden])', { timeout: 15000 });
    await waitUntil(() => b.requests.some((u) => u.includes('/api/cluster')), 10000, 'the Cluster page asking /api/cluster');
    const shopCalls = b.requests.filter((u) => /\/api\/(stats|orders|payments|deliveries|notifications|simulator)\b|\/ws$/.test(new URL(u).pathname));
    assert.deepEqual(shopCalls, [], 'requests for the shop');
    assert.deepEqual(b.problems, []);
  } finally {
    await b.context.close();
    await bare.stop();
  }
});
