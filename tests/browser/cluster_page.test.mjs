// The Cluster page of a three-node cluster in headless Chromium: opened on
// each node, it lists every consumer group of the cluster (not only those
// the node coordinates), with each group's coordinator and lag, the three
// brokers alive, one controller, and a Raft role and term per broker.
//
// Three `sluice serve` nodes (loopback, ephemeral Kafka and HTTP ports, a
// shared cluster secret) and one browser for the file. The groups get their
// committed offsets from the console API (`reset-offsets`), so the test needs
// no Kafka client. The screenshot goes to $SLUICE_SCREENSHOT_DIR or a
// directory under the system's temporary directory, never into the repo.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceCluster, launchChromium, openPage, waitUntil } from './harness.mjs';

const SCREENSHOTS = process.env.SLUICE_SCREENSHOT_DIR || join(tmpdir(), 'sluice-cluster-screenshots');
const TOPIC = `cluster-page-${Date.now().toString(36)}`;
const RECORDS = 10;
const COMMITTED = 4;
const GROUPS_WANTED = 4;
// Groups tried at most to find coordinators on every node.
const GROUPS_TRIED = 12;

const cluster = new SluiceCluster({ size: 3 });
let chrome;

before(async () => {
  await cluster.start();
  chrome = await launchChromium();
  mkdirSync(SCREENSHOTS, { recursive: true });
});

after(async () => {
  try { await chrome?.close(); } finally { await cluster.stop(); }
});

/** This node's entry in its own `/api/cluster`, once Raft runs and all brokers are registered. */
async function raftRunning(node) {
  const view = await node.api('GET', '/api/cluster');
  const me = (view.brokers || []).find((b) => b.this_node);
  return view.raft_running === true && view.brokers.length === 3 && view.brokers.every((b) => b.alive)
    && me && ['leader', 'follower'].includes(me.raft_role) && me.raft_term >= 1 ? view : null;
}

/** Group id -> the broker id of its coordinator. */
const coordinatorOf = new Map();

test('three nodes run Raft and groups get offsets coordinated by several nodes', async () => {
  for (const [i, node] of cluster.nodes.entries()) {
    await waitUntil(() => raftRunning(node), 60000, `node ${i + 1}: Raft running with 3 live brokers`, 250);
  }
  const node = cluster.nodes[0];
  await node.api('POST', '/api/admin/topics', { name: TOPIC, partitions: 1, replication_factor: 3 });
  for (let i = 0; i < RECORDS; i += 1) {
    await node.api('POST', `/api/admin/topics/${TOPIC}/records`, { key: `k${i}`, value: { n: i }, partition: 0 });
  }
  await waitUntil(async () => (await node.api('GET', `/api/admin/topics/${TOPIC}`)).partition_details?.[0]?.high_watermark === RECORDS,
    20000, `the high watermark of ${TOPIC} at ${RECORDS}`);
  // Groups until there are enough and every node coordinates one (the three
  // partitions of __consumer_offsets are led by different nodes as the
  // controller spreads them), or GROUPS_TRIED were made.
  for (let i = 0; i < GROUPS_TRIED; i += 1) {
    const group = `${TOPIC}-g${i}`;
    const reset = await node.api('POST', `/api/admin/groups/${group}/reset-offsets`, { topic: TOPIC, to: 'offset', offset: COMMITTED });
    assert.deepEqual(reset.partitions.map((p) => [p.partition, p.offset]), [[0, COMMITTED]]);
    const described = await node.api('GET', `/api/admin/groups/${group}`);
    assert.ok(Number.isInteger(described.coordinator), `a coordinator for ${group}: ${JSON.stringify(described)}`);
    coordinatorOf.set(group, described.coordinator);
    if (coordinatorOf.size >= GROUPS_WANTED && new Set(coordinatorOf.values()).size === 3) break;
  }
  const coordinators = new Set(coordinatorOf.values());
  console.log(`groups and their coordinators: ${JSON.stringify(Object.fromEntries(coordinatorOf))}`);
  assert.ok(coordinatorOf.size >= GROUPS_WANTED);
  // Each node then has at least one group it does not coordinate to list.
  assert.ok(coordinators.size >= 2, `the groups all landed on one coordinator: ${[...coordinators]}`);
});

/** The groups table's rows: group, coordinator and the text of each cell. */
const groupRows = (page) => page.$$eval('#groups-table tbody tr[data-group]', (trs) => trs.map((tr) => ({
  group: tr.dataset.group,
  coordinator: tr.dataset.coordinator,
  cells: [...tr.querySelectorAll('td')].map((td) => td.innerText.trim()),
})));

/** The brokers table's rows: id, Raft role attribute and the text of each cell. */
const brokerRows = (page) => page.$$eval('#brokers-table tbody tr[data-broker]', (trs) => trs.map((tr) => ({
  id: tr.dataset.broker,
  raft: tr.querySelector('td[data-raft]')?.dataset.raft,
  cells: [...tr.querySelectorAll('td')].map((td) => td.innerText.trim()),
})));

for (const index of [0, 1, 2]) {
  test(`the Cluster page of node ${index + 1} lists every group of the cluster, the three brokers and their Raft roles`, async () => {
    assert.ok(coordinatorOf.size >= GROUPS_WANTED, 'the groups were made by the first test');
    const node = cluster.nodes[index];
    const p = await openPage(chrome.browser, node.base);
    try {
      const page = p.page;
      await page.goto(`${node.base}/#/cluster`);
      await page.waitForSelector('#page-cluster:not([hidden])');
      const expected = [...coordinatorOf.keys()].sort();
      // Every group listed with its coordinator and lag (once this node's
      // replica of the topic has the records: the page refreshes every 2 s).
      const rows = await waitUntil(async () => {
        const r = await groupRows(page);
        const mine = r.filter((row) => coordinatorOf.has(row.group));
        return expected.every((g) => mine.some((row) => row.group === g && row.cells[5] === String(RECORDS - COMMITTED))) ? mine : null;
      }, 30000, `node ${index + 1}'s Cluster page listing the ${expected.length} groups ${expected.join(', ')} with their lag`, 250)
        .catch(async (e) => { throw new Error(`${e.message}\nlisted: ${JSON.stringify(await groupRows(page))}`); });
      assert.deepEqual(rows.map((r) => r.group).sort(), expected, 'each group once');
      for (const row of rows) {
        const [group, state, coordinator, members, lag, totalLag] = row.cells;
        assert.equal(group, row.group);
        assert.equal(state, 'Empty', `${row.group}: no member`);
        assert.equal(coordinator, String(coordinatorOf.get(row.group)), `${row.group}'s coordinator`);
        assert.equal(row.coordinator, String(coordinatorOf.get(row.group)));
        assert.equal(members, '0');
        assert.equal(lag, `${TOPIC}-0: ${RECORDS - COMMITTED}`, `${row.group}'s lag per partition`);
        assert.equal(totalLag, String(RECORDS - COMMITTED));
      }
      const others = rows.filter((r) => r.coordinator !== String(index + 1)).map((r) => r.group);
      assert.ok(others.length >= 1, `node ${index + 1} lists groups coordinated by other nodes`);

      const brokers = await waitUntil(async () => {
        const b = await brokerRows(page);
        return b.length === 3 ? b : null;
      }, 10000, 'three brokers on the page');
      assert.deepEqual(brokers.map((b) => b.id).sort(), ['1', '2', '3']);
      for (const b of brokers) {
        const [id, kafka, , alive, , role, term] = b.cells;
        assert.match(id, new RegExp(`^${b.id}\\b`));
        assert.match(kafka, /^127\.0\.0\.1:\d+$/);
        assert.equal(alive, 'alive', `broker ${b.id} alive`);
        assert.ok(['leader', 'follower'].includes(b.raft), `broker ${b.id}'s Raft role: ${b.raft}`);
        assert.equal(role, b.raft);
        assert.ok(Number(term) >= 1, `broker ${b.id}'s Raft term: ${term}`);
      }
      assert.equal(brokers.filter((b) => b.raft === 'leader').length, 1, 'one Raft leader');
      assert.equal(brokers.filter((b) => b.cells[4] === 'yes').length, 1, 'one controller');
      assert.match(brokers.find((b) => b.id === String(index + 1)).cells[0], /this node/, 'the node asked is marked');
      assert.equal(await page.locator('#brokers-table [data-raft="off"]').count(), 0, 'no "Raft not running" cell');

      if (index === 0) await page.screenshot({ path: join(SCREENSHOTS, 'cluster-three-nodes.png'), fullPage: true });
      assert.deepEqual(p.problems, []);
    } finally {
      await p.context.close();
    }
  });
}
