// Start and stop a real `sluice` process and a headless Debian Chromium for
// the dashboard tests. Everything listens on 127.0.0.1; every process is
// ended by its PID, also when a test fails or the runner exits early.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
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

  async start(timeoutMs = 30000) {
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
    const timer = sleep(timeoutMs).then(() => 'timeout');
    const first = await Promise.race([found, exited.then(() => 'exited'), timer]);
    if (first !== true) {
      this.kill();
      throw new Error(`sluice did not log its listening line (${first})\n${this.tail()}`);
    }
    this.base = `http://${this.http}`;
    await waitUntil(async () => (await fetch(`${this.base}/readyz`)).status === 200, timeoutMs, '/readyz');
    return this;
  }

  tail(n = 40) { return this.lines.slice(-n).join('\n'); }

  /** SIGTERM, wait up to `timeoutMs`, then SIGKILL. Removes the data dir. */
  async stop(timeoutMs = 20000) {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      try { process.kill(this.proc.pid, 'SIGTERM'); } catch { /* gone */ }
      const done = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
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
 * URL it requests, at 1280x800.
 */
export async function openPage(browser, base) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  const requests = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('request', (r) => requests.push(r.url()));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  return { page, context, problems, requests, base };
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
