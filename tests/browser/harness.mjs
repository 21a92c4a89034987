// Start and stop a real `sluice` process and a headless Debian Chromium for
// the dashboard tests. Everything listens on 127.0.0.1; every process is
// ended by its PID, also when a test fails or the runner exits early.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const live = new Set();
function killAll() {
  for (const pid of live) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  live.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killAll(); process.exit(130); });

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A deadline raced against an event: it does not keep the process alive once
// everything else is done (a plain timer of a start's 30 s would).
const deadline = (ms) => new Promise((r) => setTimeout(r, ms).unref());

/** Poll `predicate` until it returns a truthy value or `timeoutMs` passes. */
export async function waitUntil(predicate, timeoutMs, what = 'condition', intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v;
    } catch (e) { lastError = e; }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError.message})` : ''}`);
    await sleep(intervalMs);
  }
}

export function sluiceBinary() {
  const bin = process.env.SLUICE_BIN || join(REPO_ROOT, 'target', 'release', 'sluice');
  if (!existsSync(bin)) throw new Error(`sluice binary not found at ${bin}; run cargo build --release or set SLUICE_BIN`);
  return bin;
}

const LISTENING = /listening\b.*?kafka_addr=(127\.0\.0\.1:\d+).*?http_addr=(127\.0\.0\.1:\d+)/;

/** One `sluice` process on ephemeral loopback ports with its own data dir. */
export class Sluice {
  constructor({ command = 'serve', args = [] } = {}) {
    this.command = command;
    this.args = args;
    this.dataDir = mkdtempSync(join(tmpdir(), 'sluice-browser-'));
    this.lines = [];
    this.proc = null;
  }

  /** Start and wait for the listening line, then (unless `waitReady` is
   * false: a cluster member is ready only once a quorum runs) for /readyz. */
  async start(timeoutMs = 30000, { waitReady = true } = {}) {
    const args = [this.command, '--data-dir', this.dataDir, '--kafka-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', ...this.args];
    this.proc = spawn(sluiceBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    live.add(this.proc.pid);
    const exited = new Promise((r) => this.proc.once('exit', (code, signal) => { live.delete(this.proc.pid); r({ code, signal }); }));
    this.exited = exited;
    const found = new Promise((resolveFound) => {
      const onData = (chunk) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line) continue;
          this.lines.push(line);
          if (this.lines.length > 2000) this.lines.shift();
          const m = LISTENING.exec(line);
          if (m && !this.http) { this.kafka = m[1]; this.http = m[2]; resolveFound(true); }
        }
      };
      this.proc.stdout.on('data', onData);
      this.proc.stderr.on('data', onData);
    });
    const timer = deadline(timeoutMs).then(() => 'timeout');
    const first = await Promise.race([found, exited.then(() => 'exited'), timer]);
    if (first !== true) {
      this.kill();
      throw new Error(`sluice did not log its listening line (${first})\n${this.tail()}`);
    }
    this.base = `http://${this.http}`;
    if (waitReady) await this.waitReady(timeoutMs);
    return this;
  }

  async waitReady(timeoutMs = 30000) {
    await waitUntil(async () => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`sluice exited\n${this.tail()}`);
      return (await fetch(`${this.base}/readyz`)).status === 200;
    }, timeoutMs, `/readyz of ${this.base}`);
  }

  tail(n = 40) { return this.lines.slice(-n).join('\n'); }

  /** SIGTERM, wait up to `timeoutMs`, then SIGKILL. Removes the data dir. */
  async stop(timeoutMs = 20000) {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      try { process.kill(this.proc.pid, 'SIGTERM'); } catch { /* gone */ }
      const done = await Promise.race([this.exited, deadline(timeoutMs).then(() => null)]);
      if (!done) this.kill();
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  kill() {
    if (!this.proc) return;
    try { process.kill(this.proc.pid, 'SIGKILL'); } catch { /* gone */ }
    live.delete(this.proc.pid);
  }

  async api(method, path, body) {
    const resp = await fetch(`${this.base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = { raw: text }; }
    if (!resp.ok) throw new Error(`${method} ${path}: HTTP ${resp.status} ${text.slice(0, 300)}`);
    return json;
  }
}

/** Whether `port` can be bound on 127.0.0.1 now. */
function portFree(port) {
  return new Promise((resolveFree) => {
    const server = createServer();
    server.once('error', () => resolveFree(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolveFree(true)));
  });
}

/**
 * `count` distinct loopback ports free now, chosen below the kernel's
 * ephemeral range, so that no listener on port 0 or outgoing connection takes
 * one between this check and a node binding it (the cluster listeners' ports
 * must be known before the nodes start: each is in every node's --peers).
 */
export async function freePorts(count) {
  let high = 32768;
  try { high = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || high; } catch { /* default */ }
  const low = Math.max(1024, high - 12000);
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const ports = new Set();
    while (ports.size < count) ports.add(low + Math.floor(Math.random() * (high - low)));
    const free = await Promise.all([...ports].map(portFree));
    if (free.every(Boolean)) return [...ports];
  }
  throw new Error(`no ${count} free ports in ${low}..${high}`);
}

/**
 * `size` nodes started as one cluster: `--node-id` 1..size, a cluster
 * listener each on a loopback port chosen up front (`--cluster-addr`, and
 * all of them in `--peers`), a shared random secret
 * (`--cluster-secret-file`), 3 partitions of `__consumer_offsets`; Kafka and
 * HTTP on ephemeral ports. Resolves once every node answers /readyz (which
 * needs a Raft quorum). `stop()` ends them all, also after a failed start.
 */
export class SluiceCluster {
  constructor({ size = 3, args = [] } = {}) {
    this.size = size;
    this.args = args;
    this.secretDir = mkdtempSync(join(tmpdir(), 'sluice-browser-secret-'));
    this.nodes = [];
  }

  async start(timeoutMs = 60000) {
    const secretFile = join(this.secretDir, 'cluster.secret');
    writeFileSync(secretFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const ports = await freePorts(this.size);
    const peers = ports.map((port, i) => `${i + 1}=127.0.0.1:${port}`).join(',');
    this.nodes = ports.map((port, i) => new Sluice({
      args: ['--node-id', String(i + 1), '--cluster-addr', `127.0.0.1:${port}`, '--peers', peers,
        '--cluster-secret-file', secretFile, '--offsets-topic-partitions', '3', ...this.args],
    }));
    await Promise.all(this.nodes.map((n) => n.start(timeoutMs, { waitReady: false })));
    await Promise.all(this.nodes.map((n) => n.waitReady(timeoutMs)));
    return this;
  }

  async stop() {
    try { await Promise.all(this.nodes.map((n) => n.stop())); } finally { rmSync(this.secretDir, { recursive: true, force: true }); }
  }
}

/** Headless Debian Chromium with a fresh profile, no background traffic. */
export async function launchChromium() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium chromium-driver`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--disable-quic', '--disable-dev-shm-usage'],
  });
  const pid = browser.process?.()?.pid;
  if (pid) live.add(pid);
  return {
    browser,
    async close() {
      try { await browser.close(); } finally { if (pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* closed */ } live.delete(pid); } }
    },
  };
}

/**
 * A page that records console errors, page errors, failed requests and every
 * URL it requests, at 1280x800. `settled()` waits until none of its requests
 * is in flight: a test calls it before it reloads the page itself (the
 * language switch, `page.reload()`), since the browser aborts what the old
 * document still awaits (net::ERR_ABORTED), which would count as a problem
 * when the machine is slow enough for the page's first reads to be pending.
 */
export async function openPage(browser, base) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  const requests = [];
  const inflight = new Set();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('request', (r) => { requests.push(r.url()); inflight.add(r); });
  page.on('requestfinished', (r) => inflight.delete(r));
  page.on('requestfailed', (r) => {
    inflight.delete(r);
    problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  // No request in flight at two polls in a row (one answer may start the next read).
  const settled = async (timeoutMs = 15000) => {
    let quiet = 0;
    await waitUntil(() => (quiet = inflight.size === 0 ? quiet + 1 : 0) >= 2, timeoutMs,
      `the page's requests to finish (${[...inflight].map((r) => r.url()).join(', ')})`);
  };
  return { page, context, problems, requests, base, settled };
}

/**
 * One `sluice` node and one headless Chromium shared by a test file's tests:
 * registers node:test's `before` and `after` (the simulator is switched off
 * and the node stopped even when a test failed). The returned object gets
 * `node` and `chrome` once `before` ran.
 */
export function sharedNodeAndBrowser({ before, after }) {
  const shared = {};
  before(async () => {
    shared.node = new Sluice();
    await shared.node.start();
    shared.chrome = await launchChromium();
  });
  after(async () => {
    try { await shared.chrome?.close(); } finally {
      if (shared.node) {
        try { await shared.node.api('POST', '/api/simulator', { enabled: false, rate_per_sec: 1 }); } catch { /* node may be gone */ }
        await shared.node.stop();
      }
    }
  });
  return shared;
}

/**
 * A page of `node` opened at `hash` once its WebSocket is connected, with the
 * dashboard's settings (`lang`, `theme`) saved in its storage first.
 */
export async function openLivePage(chrome, node, hash, settings = {}) {
  const p = await openPage(chrome.browser, node.base);
  await p.context.addInitScript((s) => {
    if (s.lang) localStorage.setItem('sluice.locale', s.lang);
    if (s.theme) localStorage.setItem('sluice.theme', s.theme);
  }, settings);
  await p.page.goto(`${node.base}/${hash}`);
  await p.page.waitForSelector('#ws-state[data-state="connected"]', { timeout: 15000 });
  return p;
}

/** An order of one item at `price` in `currency`, paid exactly through the API; its id. */
export async function paidOrder(node, customer, price, currency = 'EUR') {
  const { order_id: id } = await node.api('POST', '/api/orders', { customer, currency, items: [{ sku: 'sku-1', quantity: 1, price }] });
  await node.api('POST', '/api/payments', { order_id: id, amount: price, method: 'card' });
  await waitUntil(async () => (await node.api('GET', `/api/orders/${id}`)).status === 'paid', 10000, `order ${id} paid`);
  return id;
}
