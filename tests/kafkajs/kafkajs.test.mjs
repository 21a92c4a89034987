// kafkajs against a running Sluice node (SLUICE_BOOTSTRAP=host:port):
// admin create/list topics, keyed produce and consume back, and a consumer
// group of two members that rebalances when the second one joins.
// Started by tests/test_kafkajs.py, which owns the node.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Kafka, logLevel } = require("kafkajs");

const bootstrap = process.env.SLUICE_BOOTSTRAP;
assert.ok(bootstrap, "SLUICE_BOOTSTRAP must name the node (host:port)");

const kafka = new Kafka({
  clientId: "sluice-kafkajs-test",
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
  retry: { retries: 8 },
});

// Every client a test opens, disconnected at the end even when it fails.
const open = [];
function track(client) {
  open.push(client);
  return client;
}
after(async () => {
  await Promise.allSettled(open.map((c) => c.disconnect()));
});

const unique = (prefix) => `${prefix}-${randomUUID().slice(0, 12)}`;

// Poll `check` until it returns a truthy value or `ms` pass.
async function waitFor(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function createTopic(topic, numPartitions) {
  const admin = track(kafka.admin());
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  await admin.disconnect();
  return created;
}

test("admin creates, lists and describes topics", async () => {
  const topic = unique("kjs-admin");
  assert.equal(await createTopic(topic, 3), true);
  const admin = track(kafka.admin());
  await admin.connect();
  // A second create of the same name is not an error for kafkajs: it answers false.
  assert.equal(
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] }),
    false,
  );
  assert.ok((await admin.listTopics()).includes(topic));
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
  assert.equal(topics[0].partitions.length, 3);
  const offsets = await admin.fetchTopicOffsets(topic);
  assert.deepEqual(
    offsets.map((o) => [o.partition, o.high]).sort(),
    [[0, "0"], [1, "0"], [2, "0"]],
  );
  await admin.deleteTopics({ topics: [topic] });
  await waitFor(async () => !(await admin.listTopics()).includes(topic), 10_000, "deletion");
});

test("produce keyed records with headers and consume them back in order", async () => {
  const topic = unique("kjs-rw");
  await createTopic(topic, 2);
  const producer = track(kafka.producer({ idempotent: true, maxInFlightRequests: 1 }));
  await producer.connect();
  const sent = [];
  for (let batch = 0; batch < 10; batch++) {
    const messages = [];
    for (let i = 0; i < 100; i++) {
      const n = batch * 100 + i;
      messages.push({ key: `k${n % 7}`, value: `v${n}`, headers: { n: String(n) } });
    }
    const acks = await producer.send({ topic, messages });
    assert.ok(acks.every((a) => a.errorCode === 0));
    sent.push(...messages);
  }
  await producer.disconnect();

  const consumer = track(kafka.consumer({ groupId: unique("kjs-rw-group") }));
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const received = [];
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      received.push({
        partition,
        key: message.key.toString(),
        value: message.value.toString(),
        n: Number(message.headers.n.toString()),
      });
    },
  });
  await waitFor(() => received.length >= sent.length, 30_000, "all records");
  await consumer.disconnect();
  assert.equal(received.length, sent.length, "each record exactly once");
  // Per key, the order of production.
  const byKey = new Map();
  for (const r of received) {
    assert.equal(r.value, `v${r.n}`);
    const seen = byKey.get(r.key) ?? [];
    seen.push(r.n);
    byKey.set(r.key, seen);
  }
  assert.equal(byKey.size, 7);
  for (const ns of byKey.values()) {
    assert.deepEqual(ns, [...ns].sort((a, b) => a - b));
  }
});

test("a group of two members rebalances and shares the partitions", async () => {
  const topic = unique("kjs-group");
  const groupId = unique("kjs-group");
  const partitions = 4;
  await createTopic(topic, partitions);

  // Which partitions each member holds, from its GROUP_JOIN events.
  const assigned = [[], []];
  const consumed = [[], []];
  const members = [0, 1].map((i) => {
    const consumer = track(
      // Short fetch waits, so an idle member heartbeats (and sees a
      // rebalance) within a second.
      kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 500 }),
    );
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      assigned[i] = payload.memberAssignment[topic] ?? [];
    });
    return consumer;
  });
  const start = async (i) => {
    await members[i].connect();
    await members[i].subscribe({ topic, fromBeginning: true });
    await members[i].run({
      eachMessage: async ({ message }) => {
        consumed[i].push(message.value.toString());
      },
    });
  };

  await start(0);
  await waitFor(() => assigned[0].length === partitions, 30_000, "the first member's assignment");

  const producer = track(kafka.producer());
  await producer.connect();
  const send = async (from, to) => {
    const messages = [];
    for (let n = from; n < to; n++) messages.push({ key: `k${n}`, value: `m${n}` });
    await producer.send({ topic, messages });
  };
  await send(0, 200);
  await waitFor(() => consumed[0].length >= 200, 30_000, "the first member's records");

  // The second member joins: the group rebalances to two members that
  // share the partitions without overlap.
  await start(1);
  await waitFor(
    () => assigned[1].length > 0 && assigned[0].length + assigned[1].length === partitions,
    45_000,
    "the rebalance to two members",
  );
  assert.deepEqual(
    [...assigned[0], ...assigned[1]].sort(),
    [...Array(partitions).keys()],
    `the two members hold every partition once: ${JSON.stringify(assigned)}`,
  );

  await send(200, 600);
  await waitFor(
    () => new Set([...consumed[0], ...consumed[1]]).size >= 600,
    30_000,
    "every record by one of the members",
  );
  assert.ok(consumed[1].length > 0, "the second member consumed its share");

  const admin = track(kafka.admin());
  await admin.connect();
  const { groups } = await admin.describeGroups([groupId]);
  assert.equal(groups[0].state, "Stable");
  assert.equal(groups[0].members.length, 2);
  assert.ok((await admin.listGroups()).groups.some((g) => g.groupId === groupId));

  // One member leaves: the other takes every partition back.
  await members[1].disconnect();
  await waitFor(() => assigned[0].length === partitions, 30_000, "the rebalance back to one");
  await members[0].disconnect();
  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
  const committed = offsets[0].partitions.reduce((sum, p) => sum + Number(p.offset), 0);
  assert.equal(committed, 600, "the group committed every record");
});
