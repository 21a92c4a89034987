// Sluice dashboard: a single page (hash routing) over the shop's REST API and
// its WebSocket. No framework, no build step; Bootstrap and Chart.js come
// embedded in the binary. Everything the server sends goes through `norm`,
// the one place that knows its JSON field names. Words, number and date
// formats and the theme come from i18n.js (`t`, `word`, `fmt`).
'use strict';
(() => {
  // ---------------------------------------------------------------- helpers
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
  const num = (v, d = 0) => (typeof v === 'number' && isFinite(v) ? v : (v != null && v !== '' && isFinite(+v) ? +v : d));
  const pick = (o, ...keys) => { for (const k of keys) { if (o && o[k] != null) return o[k]; } return undefined; };
  const toMs = (v) => {
    if (v == null || v === '') return null;
    if (typeof v === 'number') return v < 1e11 ? v * 1000 : v;
    const t = Date.parse(v);
    return isNaN(t) ? null : t;
  };
  const I18N = window.sluiceI18n;
  const { t, word, fmt } = I18N;
  I18N.apply();
  const fmtTime = fmt.time;
  const fmtDateTime = fmt.dateTime;
  const money = (v, cur = 'EUR') => fmt.money(num(v), cur);
  const intFmt = { format: fmt.int };
  // A status, method or other value shown to people, in the page's language.
  const label = (s) => word('status', s);
  const methodLabel = (m) => word('method', m);
  const snake = (s) => String(s ?? '').replace(/([a-z])([A-Z])/g, '$1_$2').replace(/[\s-]+/g, '_').toLowerCase();
  const shortId = (id) => { const s = String(id ?? ''); return s.length > 10 ? s.slice(0, 8) + '…' : s; };
  const STATUS_COLORS = {
    created: 'secondary', pending: 'secondary', placed: 'secondary', new: 'secondary',
    paid: 'primary', authorized: 'success', payment_authorized: 'success',
    failed: 'danger', payment_failed: 'danger', cancelled: 'dark', canceled: 'dark', refunded: 'warning',
    scheduled: 'info', shipped: 'info', in_transit: 'primary', out_for_delivery: 'warning',
    delivered: 'success', delivery_failed: 'danger',
  };
  const badge = (status) => `<span class="badge text-bg-${STATUS_COLORS[status] || 'secondary'}" data-status="${esc(status)}">${esc(label(status))}</span>`;

  // The delivery steps in order; `failed` may follow any step before delivered.
  const DELIVERY_STEPS = ['scheduled', 'shipped', 'in_transit', 'out_for_delivery', 'delivered'];
  const nextDeliveryStatus = (status) => {
    if (status == null || status === '') return 'scheduled';
    const i = DELIVERY_STEPS.indexOf(status);
    return i >= 0 && i < DELIVERY_STEPS.length - 1 ? DELIVERY_STEPS[i + 1] : null;
  };

  // ---------------------------------------------------------------- REST API
  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(typeof err === 'string' ? err : (err.message || `HTTP ${status}`));
      this.status = status;
      this.code = err.code;
      this.fields = err.fields || null;
      this.body = typeof err === 'object' ? err : {};
    }
    // What to tell a person: the server's reason in the page's language
    // (`amount_mismatch` names the amount expected), else its message.
    get text() {
      const b = this.body;
      if (this.code === 'amount_mismatch' && b.amount_due != null) return t('error.amount_due', { amount: money(b.amount_due, b.currency) });
      if (this.code === 'amount_mismatch' && b.amount_refundable != null) return t('error.amount_refundable', { amount: money(b.amount_refundable, b.currency) });
      if (this.code === 'validation_failed') return t('error.validation_failed');
      if (this.status === 0) return t('error.unreachable');
      return this.message;
    }
  }
  // Who is logged in (from /api/session): the role decides which controls
  // show; writes made with the session cookie carry its CSRF token.
  const auth = { enabled: false, role: null, name: null, csrf: null, started: false };
  async function api(method, path, body) {
    const init = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (method !== 'GET' && auth.csrf) init.headers['X-CSRF-Token'] = auth.csrf;
    let resp;
    try { resp = await fetch(path, init); } catch (e) { throw new ApiError(0, { error: { message: t('error.unreachable') } }); }
    const text = await resp.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch { data = { error: { message: text.slice(0, 200) } }; } }
    if (resp.status === 401 && path !== '/api/login') showLogin();
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }
  const query = (params) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, v);
    const s = q.toString();
    return s ? `?${s}` : '';
  };
  // A list response may be a bare array or an object holding one.
  const listOf = (resp, ...keys) => {
    if (Array.isArray(resp)) return resp;
    for (const k of [...keys, 'items', 'data', 'results']) if (resp && Array.isArray(resp[k])) return resp[k];
    return [];
  };
  const totalOf = (resp) => num(pick(resp, 'total', 'total_count', 'count'), null);

  // ---------------------------------------------------------------- normalisation
  const norm = {
    order(o) {
      const items = (o.items || []).map((it) => ({ sku: it.sku ?? it.name ?? '', quantity: num(it.quantity, 1), price: num(it.price ?? it.unit_price) }));
      const total = num(pick(o, 'total', 'total_amount', 'amount'), items.reduce((s, it) => s + it.quantity * it.price, 0));
      return {
        id: String(pick(o, 'id', 'order_id') ?? ''),
        customer: pick(o, 'customer', 'customer_id', 'customer_name') ?? '',
        items, total,
        currency: o.currency || 'EUR',
        paid: num(o.paid),
        status: snake(o.status || 'created'),
        created: toMs(pick(o, 'created_at', 'timestamp', 'created')),
        updated: toMs(pick(o, 'updated_at', 'created_at', 'timestamp')),
      };
    },
    payment(p) {
      return {
        id: String(pick(p, 'id', 'payment_id', 'event_id') ?? ''),
        order_id: String(p.order_id ?? ''),
        amount: num(p.amount),
        currency: p.currency || 'EUR',
        method: p.method || '',
        status: snake(p.status || ''),
        at: toMs(pick(p, 'updated_at', 'created_at', 'timestamp')),
      };
    },
    step(s) {
      return { status: snake(s.status || s.type || ''), at: toMs(pick(s, 'at', 'timestamp', 'time', 'created_at')), location: s.location || '', carrier: s.carrier || '' };
    },
    delivery(d) {
      const timeline = Array.isArray(d.timeline) ? d.timeline.map(norm.step) : [];
      return {
        order_id: String(d.order_id ?? d.id ?? ''),
        status: snake(d.status || (timeline.length ? timeline[timeline.length - 1].status : '')),
        carrier: d.carrier || '',
        location: d.location || (timeline.length ? timeline[timeline.length - 1].location : ''),
        at: toMs(pick(d, 'updated_at', 'timestamp', 'created_at')) || (timeline.length ? timeline[timeline.length - 1].at : null),
        created: toMs(pick(d, 'created_at', 'scheduled_at')) || (timeline.length ? timeline[0].at : null),
        timeline,
      };
    },
    notification(n) {
      return {
        id: String(pick(n, 'notification_id', 'id') ?? ''),
        kind: n.kind || '', severity: n.severity || 'info', message: n.message || '',
        order_id: String(n.order_id ?? ''),
        at: toMs(pick(n, 'timestamp', 'created_at')),
      };
    },
    // Stats: totals, per-minute series and the status mixes the charts show.
    stats(s) {
      s = s || {};
      const orders = s.orders || {};
      const payments = s.payments || {};
      const deliveries = s.deliveries || {};
      const countsOf = (v) => {
        if (!v) return {};
        if (Array.isArray(v)) { const o = {}; for (const e of v) o[snake(e.status ?? e.name)] = num(e.count); return o; }
        const o = {}; for (const [k, c] of Object.entries(v)) o[snake(k)] = num(c); return o;
      };
      const orderCounts = countsOf(pick(orders, 'by_status') ?? s.orders_by_status ?? s.order_status_counts);
      const deliveryCounts = countsOf(pick(deliveries, 'by_status') ?? s.deliveries_by_status ?? s.delivery_status_counts);
      let byMethod = pick(payments, 'by_method_status', 'by_method') ?? s.payments_by_method_status ?? s.payments_by_method ?? {};
      if (Array.isArray(byMethod)) {
        const o = {};
        for (const e of byMethod) { const m = e.method; o[m] = o[m] || {}; o[m][snake(e.status)] = num(e.count); }
        byMethod = o;
      }
      const methodStatus = {};
      for (const [m, v] of Object.entries(byMethod)) methodStatus[m] = typeof v === 'number' ? { all: v } : countsOf(v);
      const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
      // Revenue is per currency ({"EUR": 12.5}); amounts of different
      // currencies are never added together.
      const byCurrency = (v) => {
        const o = {};
        if (v && typeof v === 'object') for (const [c, a] of Object.entries(v)) o[c] = num(a);
        return o;
      };
      const perMinute = (s.per_minute || []).map((m) => ({
        t: toMs(pick(m, 'minute', 'ts', 'time', 'start')),
        orders: num(pick(m, 'orders', 'count', 'order_count')),
        revenue: byCurrency(m.revenue),
      })).filter((m) => m.t != null).sort((a, b) => a.t - b.t);
      const payCounts = countsOf(pick(payments, 'by_status') ?? s.payments_by_status);
      const authorized = num(pick(payments, 'authorized') ?? payCounts.authorized);
      const failed = num(pick(payments, 'failed') ?? payCounts.failed);
      let rate = pick(payments, 'success_rate') ?? s.payment_success_rate;
      if (rate == null && authorized + failed > 0) rate = authorized / (authorized + failed);
      const DONE = new Set(['delivered', 'failed', 'delivery_failed', 'cancelled']);
      let inFlight = pick(deliveries, 'in_flight') ?? s.deliveries_in_flight;
      if (inFlight == null) inFlight = Object.entries(deliveryCounts).filter(([k]) => !DONE.has(k)).reduce((a, [, c]) => a + c, 0);
      return {
        orders: num(pick(orders, 'total', 'count') ?? s.orders_total ?? s.total_orders ?? (typeof s.orders === 'number' ? s.orders : sum(orderCounts))),
        revenue: byCurrency(s.revenue),
        successRate: rate == null ? null : num(rate),
        payAuthorized: authorized, payFailed: failed,
        inFlight: num(inFlight),
        deliveredCount: num(deliveryCounts.delivered),
        orderCounts, deliveryCounts, methodStatus, perMinute,
        eventsPerSec: pick(s, 'events_per_sec', 'events_per_second'),
      };
    },
  };

  // ---------------------------------------------------------------- client-side store
  // Bounded: the newest entries only, so hours of simulated traffic never grow the page.
  const KEEP = 500;
  const store = {
    orders: new Map(), payments: new Map(), deliveries: new Map(), notifications: new Map(),
    // Payments by method and status counted from what this page received, for
    // servers whose stats carry no per-method breakdown.
    payCounts: {},
    stats: norm.stats({}),
    statuses: { orders: new Set(['created', 'payment_failed', 'paid', 'cancelled', 'refunded', 'scheduled', 'shipped', 'in_transit', 'out_for_delivery', 'delivered', 'delivery_failed']), deliveries: new Set(DELIVERY_STEPS.concat(['failed'])), carriers: new Set() },
    put(map, key, value) {
      const had = map.has(key);
      if (had) map.delete(key); // re-insert: iteration order is "most recently changed last"
      map.set(key, value);
      if (map.size > KEEP) map.delete(map.keys().next().value);
      return !had;
    },
    order(o) { this.statuses.orders.add(o.status); return this.put(this.orders, o.id, o); },
    // True the first time a notification is seen (the notifier may repeat one).
    notification(n) { return !this.notifications.has(n.id) && this.put(this.notifications, n.id, n); },
    payment(p) {
      const isNew = this.put(this.payments, p.id, p);
      if (isNew && p.method) {
        const m = (this.payCounts[p.method] = this.payCounts[p.method] || {});
        m[p.status] = (m[p.status] || 0) + 1;
      }
      return isNew;
    },
    // `step`: the step a live update adds (the list and snapshot carry none).
    delivery(d, step) {
      if (d.status) this.statuses.deliveries.add(d.status);
      if (d.carrier) this.statuses.carriers.add(d.carrier);
      const prev = this.deliveries.get(d.order_id);
      if (!d.timeline.length) d.timeline = (prev ? prev.timeline : []).concat(step ? [step] : []);
      if (prev && !d.carrier) d.carrier = prev.carrier;
      if (prev && !d.created) d.created = prev.created;
      return this.put(this.deliveries, d.order_id, d);
    },
  };

  // ---------------------------------------------------------------- render scheduling
  // Events can arrive hundreds per second; the DOM and the charts are touched
  // at most every FLUSH_MS, the charts at most every CHART_MS.
  const FLUSH_MS = 250;
  const CHART_MS = 500;
  const dirty = new Set();
  let lastChartDraw = 0;
  const perf = { events: 0, shopEvents: 0, flushes: 0, chartDraws: 0, chartDrawsByName: {} };
  const markDirty = (...parts) => { for (const p of parts) dirty.add(p); };
  const renderers = {};
  // Parts drawn only while their page is shown (they stay dirty until then).
  const PAGE_OF = { orders: 'orders', payments: 'payments', unpaid: 'payments', deliveries: 'deliveries', notifications: 'notifications', feed: 'dashboard', stats: 'dashboard', eps: 'dashboard', charts: 'dashboard' };
  function flush() {
    if (document.hidden || dirty.size === 0) return;
    perf.flushes++;
    const now = performance.now();
    for (const part of Array.from(dirty)) {
      if (PAGE_OF[part] && PAGE_OF[part] !== route.page) continue;
      if (part === 'charts') {
        if (now - lastChartDraw < CHART_MS) continue;
        lastChartDraw = now;
      }
      dirty.delete(part);
      const fn = renderers[part];
      if (fn) { try { fn(); } catch (e) { console.warn('render', part, e); } }
    }
  }
  setInterval(flush, FLUSH_MS);

  // ---------------------------------------------------------------- toasts
  function toast(text, kind = 'secondary') {
    const box = $('#toasts');
    const el = document.createElement('div');
    el.className = `toast align-items-center text-bg-${kind} border-0 show`;
    el.setAttribute('role', 'status');
    el.innerHTML = `<div class="d-flex"><div class="toast-body">${esc(text)}</div><button type="button" class="btn-close btn-close-white me-2 m-auto" aria-label="Close"></button></div>`;
    el.querySelector('button').onclick = () => el.remove();
    box.appendChild(el);
    while (box.children.length > 4) box.firstElementChild.remove();
    setTimeout(() => el.remove(), 5000);
  }

  // Orders created, paid or moved from this page (their notifications pop up).
  const mine = new Set();

  // ---------------------------------------------------------------- WebSocket
  const live = { socket: null, attempt: 0, timer: null, state: '' };
  function setLiveState(state) {
    live.state = state;
    const el = $('#ws-state');
    const kinds = { connected: 'success', reconnecting: 'warning', connecting: 'secondary' };
    el.className = el.className.replace(/text-bg-\w+/, `text-bg-${kinds[state] || 'secondary'}`);
    el.textContent = t(`ws.${state}`);
    el.dataset.state = state;
  }
  function connect() {
    clearTimeout(live.timer);
    setLiveState(live.attempt ? 'reconnecting' : 'connecting');
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    let socket;
    try { socket = new WebSocket(url); } catch { scheduleReconnect(); return; }
    live.socket = socket;
    socket.onopen = () => { live.attempt = 0; setLiveState('connected'); };
    socket.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg && msg.event) onEvent(msg.event, msg.data || {}, msg.event_id);
    };
    socket.onclose = () => { if (live.socket === socket) scheduleReconnect(); };
  }
  function scheduleReconnect() {
    live.socket = null;
    if (document.body.classList.contains('logged-out')) return;
    setLiveState('reconnecting');
    // Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... capped at 10 s.
    const delay = Math.min(10000, 500 * 2 ** live.attempt) * (0.75 + Math.random() * 0.5);
    live.attempt = Math.min(live.attempt + 1, 10);
    live.timer = setTimeout(connect, delay);
  }

  // Shop events seen by this page: one event may arrive as several messages
  // (a delivery step is a `delivery_update` and an `order_updated`), all
  // carrying its `event_id`; the first message of an event counts it and
  // writes its feed line.
  const SEEN_MAX = 4096;
  // A notification in the page's language: the server's English sentence
  // (with its amounts and carriers), or the language's own sentence.
  const notificationText = (n) => (I18N.lang !== 'en' && I18N.has(`notify.${n.kind}`)
    ? t(`notify.${n.kind}`, { id: n.order_id })
    : n.message || word('kind', n.kind));
  // A sentence of the dictionary whose parameters are already HTML.
  const sentence = (key, params) => esc(t(key)).replace(/\{(\w+)\}/g, (m, k) => (params[k] != null ? params[k] : m));
  const idHtml = (id) => `<span class="mono">${esc(shortId(id))}</span>`;
  const seen = new Set();
  const firstSight = (eventId) => {
    if (!eventId) return true;
    if (seen.has(eventId)) return false;
    seen.add(eventId);
    if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
    return true;
  };

  // Events per second seen by this page: one counter per second, last 5 s.
  const epsWindow = [0, 0, 0, 0, 0];
  let epsSlot = 0;
  setInterval(() => {
    epsSlot = (epsSlot + 1) % epsWindow.length;
    epsWindow[epsSlot] = 0;
    markDirty('eps');
  }, 1000);
  const eventsPerSec = () => epsWindow.reduce((a, b) => a + b, 0) / epsWindow.length;

  function onEvent(name, data, eventId) {
    perf.events++;
    const first = name !== 'stats' && name !== 'snapshot' && firstSight(eventId);
    if (first) { epsWindow[epsSlot]++; perf.shopEvents++; }
    // One feed line per event: only the first message of an event writes one.
    const feed = first ? feedLine : () => {};
    switch (name) {
      case 'snapshot': return applySnapshot(data);
      case 'new_order':
      case 'order_updated': {
        const o = norm.order(data);
        store.order(o);
        views.orders.live(o, name === 'new_order');
        views.payments.refreshUnpaid();
        feed(name, () => (name === 'new_order'
          ? sentence('feed.new_order', { id: idHtml(o.id), customer: esc(o.customer), total: esc(money(o.total, o.currency)) })
          : sentence('feed.order_updated', { id: idHtml(o.id), status: badge(o.status) })));
        if (detail.id === o.id) detail.reload();
        return;
      }
      case 'new_payment': {
        const p = norm.payment(data);
        store.payment(p);
        views.payments.live(p, true);
        markDirty('charts');
        feed(name, () => sentence('feed.payment', { status: badge(p.status), amount: esc(money(p.amount, p.currency)), method: esc(methodLabel(p.method)), id: idHtml(p.order_id) }));
        if (detail.id === p.order_id) detail.reload();
        return;
      }
      case 'delivery_update': {
        const d = norm.delivery(data);
        const isNew = store.delivery(d, data.step ? norm.step(data.step) : null);
        views.deliveries.live(store.deliveries.get(d.order_id), isNew);
        feed(name, () => sentence(d.location ? 'feed.delivery.in' : 'feed.delivery', { id: idHtml(d.order_id), status: badge(d.status), location: esc(d.location) }));
        if (detail.id === d.order_id) detail.reload();
        if (timelineView.orderId === d.order_id) timelineView.show(d.order_id);
        return;
      }
      case 'stats':
        store.stats = norm.stats(data.stats || data);
        markDirty('stats', 'charts');
        return;
      case 'notification': {
        const n = norm.notification(data);
        if (store.notification(n)) views.notifications.live(n, true);
        const text = notificationText(n);
        feed(name, () => `<strong>${esc(text)}</strong>`);
        // Only what concerns orders this page acted on pops up; the rest is in the feed.
        if (mine.has(String(data.order_id))) {
          const level = snake(data.severity || data.level || '');
          toast(text, { warning: 'warning', success: 'success', error: 'danger' }[level] || 'dark');
        }
        return;
      }
      default:
        return;
    }
  }

  function applySnapshot(data) {
    store.orders.clear(); store.payments.clear(); store.deliveries.clear(); store.payCounts = {};
    const asc = (arr, key) => arr.slice().sort((a, b) => (a[key] || 0) - (b[key] || 0));
    for (const o of asc((data.orders || []).map(norm.order), 'updated')) store.order(o);
    for (const p of asc((data.payments || []).map(norm.payment), 'at')) store.payment(p);
    for (const d of asc((data.deliveries || []).map(norm.delivery), 'at')) store.delivery(d);
    if (data.stats) store.stats = norm.stats(data.stats);
    markDirty('stats', 'charts', 'filters');
    // The lists re-read the server with their filters: the snapshot is the truth now.
    views.orders.reload(); views.payments.reload(); views.deliveries.reload();
    views.payments.refreshUnpaid();
    if (detail.id) detail.reload();
  }

  // ---------------------------------------------------------------- live feed
  const FEED_MAX = 60;
  // Entries added per redraw: at hundreds of events per second the feed shows
  // the newest few of each batch (the counter still counts all).
  const FEED_PER_FLUSH = 12;
  const feedQueue = [];
  // `html`: a function, called only for the entries that reach the screen.
  function feedLine(kind, html) {
    feedQueue.push({ kind, html, at: Date.now() });
    if (feedQueue.length > FEED_PER_FLUSH) feedQueue.shift();
    markDirty('feed');
  }
  renderers.feed = () => {
    const ul = $('#feed');
    if (!feedQueue.length) return;
    ul.querySelector('.feed-empty')?.remove();
    const frag = document.createDocumentFragment();
    for (let i = feedQueue.length - 1; i >= 0; i--) {
      const e = feedQueue[i];
      const li = document.createElement('li');
      li.className = 'list-group-item';
      li.dataset.kind = e.kind;
      li.innerHTML = `<time>${fmtTime(e.at)}</time><span class="ev-text">${e.html()}</span>`;
      frag.appendChild(li);
    }
    feedQueue.length = 0;
    ul.insertBefore(frag, ul.firstChild);
    while (ul.children.length > FEED_MAX) ul.lastElementChild.remove();
    $('#feed-count').textContent = t('feed.count', { n: intFmt.format(perf.shopEvents) });
  };

  // ---------------------------------------------------------------- stat cards and charts
  const setText = (id, text) => {
    const el = document.getElementById(id);
    if (el.textContent !== text) {
      el.textContent = text;
      // Two classes with the same animation: switching restarts it without forcing a layout.
      if (el.classList.contains('stat-value')) el.dataset.bump = el.dataset.bump === 'a' ? 'b' : 'a';
    }
  };
  renderers.stats = () => {
    const s = store.stats;
    setText('stat-orders', intFmt.format(s.orders));
    const open = Object.entries(s.orderCounts).filter(([, c]) => c > 0).slice(0, 3).map(([k, c]) => `${intFmt.format(c)} ${label(k)}`).join(' · ');
    setText('stat-orders-sub', open || '\u00a0');
    // One line per currency, largest first: never one sum of all currencies.
    const revenue = Object.entries(s.revenue).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const revenueHtml = revenue.length
      ? revenue.map(([c, v], i) => `<div class="${i ? 'stat-more' : ''}" data-currency="${esc(c)}">${esc(money(v, c))}</div>`).join('')
      : esc(money(0, 'EUR'));
    const rev = $('#stat-revenue');
    if (rev.innerHTML !== revenueHtml) { rev.innerHTML = revenueHtml; rev.dataset.bump = rev.dataset.bump === 'a' ? 'b' : 'a'; }
    setText('stat-revenue-sub', t(revenue.length > 1 ? 'stat.revenue.sub.many' : 'stat.revenue.sub'));
    setText('stat-success', s.successRate == null ? '–' : fmt.percent(s.successRate));
    setText('stat-success-sub', t('stat.success.sub', { ok: intFmt.format(s.payAuthorized), failed: intFmt.format(s.payFailed) }));
    setText('stat-inflight', intFmt.format(s.inFlight));
    setText('stat-inflight-sub', t('stat.inflight.sub', { n: intFmt.format(s.deliveredCount) }));
  };
  renderers.eps = () => {
    const eps = eventsPerSec();
    setText('stat-eps', fmt.decimal(eps, eps >= 10 ? 0 : 1));
  };

  const PALETTE = ['#0d6efd', '#198754', '#dc3545', '#ffc107', '#6f42c1', '#20c997', '#fd7e14', '#6c757d', '#0dcaf0', '#d63384'];
  const STATUS_PALETTE = { authorized: '#198754', failed: '#dc3545', refunded: '#ffc107', scheduled: '#0dcaf0', shipped: '#6f42c1', in_transit: '#0d6efd', out_for_delivery: '#fd7e14', delivered: '#198754', delivery_failed: '#dc3545' };
  const REVENUE_COLORS = ['#198754', '#6f42c1', '#fd7e14', '#d63384', '#20c997', '#0dcaf0'];
  const colorFor = (key, i) => STATUS_PALETTE[key] || PALETTE[i % PALETTE.length];
  const charts = {};
  // Text, grid and slice borders in the theme's colours, so both themes read
  // well: the defaults for charts made later, each chart's own options for
  // those already drawn (Chart.js resolves its defaults once).
  function chartTheme() {
    if (!window.Chart) return;
    const css = getComputedStyle(document.documentElement);
    const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const text = v('--bs-secondary-color', '#6c757d');
    const grid = v('--bs-border-color-translucent', 'rgba(0,0,0,.1)');
    const background = v('--bs-body-bg', '#fff');
    Chart.defaults.color = text;
    Chart.defaults.borderColor = grid;
    Chart.defaults.elements.arc.borderColor = background;
    for (const chart of Object.values(charts)) {
      const o = chart.options;
      o.color = text;
      o.borderColor = grid;
      for (const scale of Object.values(o.scales || {})) {
        scale.ticks.color = text;
        scale.grid.color = grid;
        scale.title.color = text;
      }
      o.plugins.legend.labels.color = text;
      if (chart.config.type === 'doughnut') for (const ds of chart.data.datasets) ds.borderColor = background;
      chart.update('none');
    }
  }
  document.addEventListener('sluice:theme', chartTheme);
  function makeCharts() {
    if (!window.Chart || charts.timeline) return;
    Chart.defaults.animation = false; // live data: redraw without tweening
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.size = 11;
    Chart.defaults.locale = I18N.locale;
    chartTheme();
    charts.timeline = new Chart($('#chart-timeline'), {
      type: 'line',
      data: { labels: [], datasets: [
        { type: 'bar', label: t('chart.orders'), data: [], backgroundColor: 'rgba(13,110,253,.55)', borderRadius: 3, yAxisID: 'y', order: 2 },

      ] },
      options: {
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkipPadding: 8 } },
          y: { beginAtZero: true, title: { display: true, text: t('chart.orders.axis') }, ticks: { precision: 0 } },
          y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false }, title: { display: true, text: t('chart.revenue.axis') } },
        },
      },
    });
    charts.payments = new Chart($('#chart-payments'), {
      type: 'bar',
      data: { labels: [], datasets: [] },
      options: { plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } }, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
    });
    charts.deliveries = new Chart($('#chart-deliveries'), {
      type: 'doughnut',
      data: { labels: [], datasets: [{ data: [], backgroundColor: [] }] },
      options: { plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } }, cutout: '55%' },
    });
  }
  // Redraw a chart only when what it shows changed.
  const drawn = new Map();
  const update = (chart, name) => {
    const key = JSON.stringify([chart.data.labels, chart.data.datasets.map((d) => d.data)]);
    if (drawn.get(name) === key) return;
    drawn.set(name, key);
    perf.chartDraws++;
    perf.chartDrawsByName[name] = (perf.chartDrawsByName[name] || 0) + 1;
    chart.update('none');
  };
  renderers.charts = () => {
    makeCharts();
    if (!charts.timeline) return;
    const s = store.stats;
    // The last MINUTES minutes up to now, empty minutes included, so the axis is time.
    const MINUTES = 15;
    const byMinute = new Map(s.perMinute.map((m) => [Math.floor(m.t / 60000), m]));
    const nowMin = Math.floor(Date.now() / 60000);
    const lastMin = Math.max(nowMin, ...byMinute.keys());
    const minutes = [];
    for (let k = lastMin - MINUTES + 1; k <= lastMin; k++) minutes.push(byMinute.get(k) || { t: k * 60000, orders: 0, revenue: {} });
    const tl = charts.timeline;
    tl.data.labels = minutes.map((m) => fmt.minute(m.t));
    tl.data.datasets[0].data = minutes.map((m) => m.orders);
    // One revenue line per currency (all the currencies the totals know).
    const currencies = Array.from(new Set([...Object.keys(s.revenue), ...minutes.flatMap((m) => Object.keys(m.revenue))])).sort();
    tl.data.datasets = [tl.data.datasets[0]].concat(currencies.map((c, i) => {
      const old = tl.data.datasets.find((d) => d.currency === c);
      const color = REVENUE_COLORS[i % REVENUE_COLORS.length];
      const ds = old || { type: 'line', currency: c, label: t('chart.revenue', { currency: c }), data: [], borderColor: color, backgroundColor: color, cubicInterpolationMode: 'monotone', yAxisID: 'y1', pointRadius: 3, order: 1 };
      ds.data = minutes.map((m) => Math.round((m.revenue[c] || 0) * 100) / 100);
      return ds;
    }));
    update(tl, 'timeline');

    const serverSide = Object.keys(s.methodStatus).length > 0;
    const byMethod = serverSide ? s.methodStatus : store.payCounts;
    $('#payments-chart-note').textContent = serverSide ? '' : t('chart.payments.note');
    const methods = Object.keys(byMethod).sort();
    const statuses = Array.from(new Set(methods.flatMap((m) => Object.keys(byMethod[m])))).sort();
    const pc = charts.payments;
    pc.data.labels = methods.map(methodLabel);
    pc.data.datasets = statuses.map((st, i) => {
      const old = pc.data.datasets.find((d) => d.key === st);
      const ds = old || { key: st, label: label(st), backgroundColor: colorFor(st, i) };
      ds.data = methods.map((m) => byMethod[m][st] || 0);
      return ds;
    });
    update(pc, 'payments');

    const dstat = Object.keys(s.deliveryCounts).sort((a, b) => {
      const ia = DELIVERY_STEPS.indexOf(a); const ib = DELIVERY_STEPS.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
    const dc = charts.deliveries;
    dc.data.labels = dstat.map(label);
    dc.data.datasets[0].data = dstat.map((k) => s.deliveryCounts[k]);
    dc.data.datasets[0].backgroundColor = dstat.map(colorFor);
    update(dc, 'deliveries');
  };

  // ---------------------------------------------------------------- simulator
  const sim = { enabled: false, rate: 5 };
  function showSim() {
    $('#sim-enabled').checked = sim.enabled;
    $('#sim-rate').value = String(Math.round(sim.rate));
    $('#sim-rate-value').textContent = t('sim.rate.value', { n: intFmt.format(Math.round(sim.rate)) });
  }
  async function loadSim() {
    try {
      const s = await api('GET', '/api/simulator');
      sim.enabled = !!s.enabled;
      sim.rate = num(pick(s, 'rate_per_sec', 'rate'), sim.rate);
      showSim();
    } catch { /* an older server without GET: the controls keep their defaults */ }
  }
  async function sendSim() {
    const body = { enabled: sim.enabled, rate_per_sec: sim.rate };
    try {
      const s = await api('POST', '/api/simulator', body);
      if (s && typeof s === 'object' && 'enabled' in s) { sim.enabled = !!s.enabled; sim.rate = num(pick(s, 'rate_per_sec', 'rate'), sim.rate); }
      $('#sim-note').textContent = sim.enabled ? t('sim.note', { n: intFmt.format(Math.round(sim.rate)) }) : '';
    } catch (e) {
      toast(t('sim.error', { message: e.text }), 'danger');
      await loadSim();
    }
    showSim();
  }
  function bindSim() {
    $('#sim-enabled').addEventListener('change', (e) => { sim.enabled = e.target.checked; sendSim(); });
    const rate = $('#sim-rate');
    rate.addEventListener('input', () => { sim.rate = +rate.value; $('#sim-rate-value').textContent = t('sim.rate.value', { n: intFmt.format(+rate.value) }); });
    rate.addEventListener('change', () => { sim.rate = +rate.value; sendSim(); });
  }

  // ---------------------------------------------------------------- keyed tables
  // Rows are kept per key and only inserted, updated or removed, so a row
  // already on screen is never re-created (its highlight keeps running).
  class KeyedTable {
    constructor(tbody, rowHtml, onClick) {
      this.tbody = tbody; this.rowHtml = rowHtml; this.rows = new Map();
      if (onClick) tbody.addEventListener('click', (e) => {
        if (e.target.closest('button, a, input, select')) return;
        const tr = e.target.closest('tr[data-key]');
        if (tr) onClick(tr.dataset.key);
      });
    }
    // Highlights are capped per render: under heavy traffic most rows change
    // every time, and animating them all costs style work on every frame.
    render(items, keyOf, highlight) {
      const want = new Set();
      let budget = KeyedTable.HIGHLIGHTS;
      let cursor = this.tbody.firstElementChild;
      for (const item of items) {
        const key = keyOf(item);
        want.add(key);
        const html = this.rowHtml(item);
        let tr = this.rows.get(key);
        if (!tr) {
          tr = document.createElement('tr');
          tr.dataset.key = key;
          tr.innerHTML = html;
          tr._html = html;
          if (highlight.has(key) && budget-- > 0) tr.className = 'row-new';
          this.rows.set(key, tr);
        } else if (tr._html !== html) {
          tr.innerHTML = html;
          tr._html = html;
          if (highlight.has(key) && budget-- > 0) tr.className = tr.className === 'row-changed' ? 'row-changed-again' : 'row-changed';
        }
        if (tr === cursor) cursor = cursor.nextElementSibling;
        else this.tbody.insertBefore(tr, cursor);
      }
      for (const [key, tr] of this.rows) if (!want.has(key)) { tr.remove(); this.rows.delete(key); }
      highlight.clear();
    }
    static HIGHLIGHTS = 8;
    empty(text, cols) {
      for (const tr of this.rows.values()) tr.remove();
      this.rows.clear();
      this.tbody.innerHTML = `<tr class="empty"><td colspan="${cols}" class="text-center text-body-secondary py-3">${esc(text)}</td></tr>`;
    }
    clearEmpty() { this.tbody.querySelector('tr.empty')?.remove(); }
  }

  // A list page: server-side filters and pages (newest first), live rows
  // merged into page 1, shown sorted by the column the person chose (the
  // value that column shows; the time column, newest first, by default).
  const compare = (a, b) => {
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    return String(a ?? '').localeCompare(String(b ?? ''), I18N.locale, { numeric: true, sensitivity: 'base' });
  };
  class ListView {
    constructor(opts) {
      Object.assign(this, opts);
      this.items = []; this.highlight = new Set(); this.page = 1; this.total = null; this.loading = 0;
      // Paused: live updates are queued and the new rows counted, not shown, until resumed.
      this.paused = false; this.missed = 0; this.queued = new Map();
      this.sortKey = this.defaultSort; this.sortDir = 'desc';
      this.table = new KeyedTable($(`#${this.name}-table tbody`), this.rowHtml, this.onRowClick);
      const pause = $(`#${this.name}-pause`);
      if (pause) pause.addEventListener('click', () => this.setPaused(!this.paused));
      this.bindSortHeaders();
    }
    // Each `th[data-sort]` becomes a button; a click sorts by that column,
    // a second click reverses the order.
    bindSortHeaders() {
      for (const th of $$(`#${this.name}-table thead th[data-sort]`)) {
        const key = th.dataset.sort;
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'sort-btn';
        button.innerHTML = `<span data-i18n="${esc(th.dataset.i18n || '')}">${esc(th.textContent)}</span><span class="sort-mark" aria-hidden="true"></span>`;
        delete th.dataset.i18n;
        th.textContent = '';
        th.appendChild(button);
        button.addEventListener('click', () => {
          if (this.sortKey === key) this.sortDir = this.sortDir === 'asc' ? 'desc' : 'asc';
          else { this.sortKey = key; this.sortDir = key === this.defaultSort ? 'desc' : 'asc'; }
          this.sort();
          this.showSort();
          this.draw();
        });
      }
      this.showSort();
    }
    // The headers say which column sorts and which way (only on a change of either).
    showSort() {
      for (const th of $$(`#${this.name}-table thead th[data-sort]`)) {
        const on = th.dataset.sort === this.sortKey;
        if (on) th.setAttribute('aria-sort', this.sortDir === 'asc' ? 'ascending' : 'descending'); else th.removeAttribute('aria-sort');
        const mark = th.querySelector('.sort-mark');
        if (mark) mark.textContent = on ? (this.sortDir === 'asc' ? ' ↑' : ' ↓') : '';
        const button = th.querySelector('.sort-btn');
        if (button) button.title = t('sort.by', { column: button.firstElementChild.textContent });
      }
    }
    setPaused(paused) {
      this.paused = paused;
      const btn = $(`#${this.name}-pause`);
      if (btn) {
        btn.setAttribute('aria-pressed', String(paused));
        btn.classList.toggle('active', paused);
      }
      this.missed = 0;
      this.showPause();
      if (!paused) {
        // What arrived while paused, in the order it arrived.
        const queued = Array.from(this.queued.values());
        this.queued.clear();
        for (const { item, isNew } of queued) this.live(item, isNew);
        return;
      }
      // What is on screen now is what stays: drop a reload in flight and
      // draw the changes received so far.
      this.loading++;
      dirty.delete(this.name);
      this.draw();
    }
    showPause() {
      const btn = $(`#${this.name}-pause`);
      if (btn) btn.textContent = this.paused ? (this.missed ? t('pause.resume.new', { n: intFmt.format(this.missed) }) : t('pause.resume')) : t('pause.pause');
    }
    filters() { return {}; }
    async reload() {
      const seq = ++this.loading;
      try {
        const single = this.lookup?.();
        const resp = single ? await single : await api('GET', `${this.path}${query({ ...this.filters(), offset: (this.page - 1) * this.perPage, limit: this.perPage })}`);
        if (seq !== this.loading) return;
        this.items = listOf(resp, this.name).map(this.norm);
        this.total = totalOf(resp);
        for (const it of this.items) this.remember(it);
      } catch (e) {
        if (seq !== this.loading) return;
        // Fall back to what the live stream told us.
        this.items = this.fromStore().filter((it) => this.matches(it));
        this.total = null;
        if (e.status !== 0) console.warn(`${this.path}: ${e.message}`);
      }
      this.sort();
      markDirty(this.name);
    }
    // By the chosen column's own value; ties newest first.
    sort() {
      const value = this.columns[this.sortKey];
      const dir = this.sortDir === 'asc' ? 1 : -1;
      const newest = (a, b) => (this.timeOf(b) || 0) - (this.timeOf(a) || 0);
      this.items.sort((a, b) => dir * compare(value(a), value(b)) || newest(a, b));
    }
    // A live change: a row on screen is updated in place and the rows stay
    // sorted; an item not on screen joins page 1 only if it is among the
    // newest by `timeOf` (a change to an older order never puts it on the page).
    live(item, isNew) {
      const key = this.keyOf(item);
      if (this.paused) {
        const before = this.queued.get(key);
        this.queued.delete(key);
        this.queued.set(key, { item, isNew: isNew || !!before?.isNew });
        if (isNew && this.matches(item)) { this.missed++; this.showPause(); }
        return;
      }
      const i = this.items.findIndex((it) => this.keyOf(it) === key);
      if (i >= 0) {
        if (!this.matches(item)) this.items.splice(i, 1); else this.items[i] = item;
        this.highlight.add(key);
        this.sort();
      } else if (this.matches(item)) {
        if (isNew && this.total != null) this.total++;
        const time = (it) => this.timeOf(it) || 0;
        const oldest = this.items.reduce((o, it) => (o == null || time(it) < time(o) ? it : o), null);
        if (this.page === 1 && (this.items.length < this.perPage || time(item) >= time(oldest))) {
          this.items.push(item);
          if (this.items.length > this.perPage) this.items.splice(this.items.indexOf(oldest), 1);
          this.highlight.add(key);
          this.sort();
        }
      }
      markDirty(this.name);
    }
    draw() {
      if (!this.items.length) { this.table.empty(t(this.emptyText), this.cols); }
      else { this.table.clearEmpty(); this.table.render(this.items, this.keyOf, this.highlight); }
      this.info?.();
    }
    // `{shown} shown of {total}` under the table.
    showInfo() {
      const el = $(`#${this.name}-info`);
      el.textContent = this.total != null
        ? t('list.info.total', { shown: intFmt.format(this.items.length), total: intFmt.format(this.total) })
        : t('list.info', { shown: intFmt.format(this.items.length) });
    }
    remember() {}
  }

  const views = {};
  const DELIVERY_ORDER = (s) => { const i = DELIVERY_STEPS.indexOf(s); return i < 0 ? DELIVERY_STEPS.length : i; };

  // -- Orders
  views.orders = new ListView({
    name: 'orders', path: '/api/orders', perPage: 50, cols: 6, emptyText: 'orders.empty',
    norm: norm.order, keyOf: (o) => o.id, timeOf: (o) => o.created, defaultSort: 'created',
    columns: {
      id: (o) => o.id, customer: (o) => o.customer, items: (o) => o.items.reduce((s, it) => s + it.quantity, 0),
      total: (o) => o.total, status: (o) => label(o.status), created: (o) => o.created || 0,
    },
    fromStore: () => Array.from(store.orders.values()).reverse(),
    filters() { return { status: $('#orders-status').value, customer: this.search }; },
    search: '',
    // An order id typed into the search box finds that order.
    lookup() {
      if (!/^ord-[0-9a-f]+$/i.test(this.search)) return null;
      return api('GET', `/api/orders/${encodeURIComponent(this.search)}`).then((o) => ({ orders: [o], total: 1 }), (e) => {
        if (e.status === 404) return { orders: [], total: 0 };
        throw e;
      });
    },
    matches(o) {
      const st = $('#orders-status').value;
      if (st && o.status !== st) return false;
      const q = this.search.toLowerCase();
      return !q || o.id.toLowerCase().includes(q) || String(o.customer).toLowerCase().includes(q);
    },
    remember(o) { store.statuses.orders.add(o.status); },
    rowHtml: (o) => `<td class="mono" title="${esc(o.id)}">${esc(shortId(o.id))}</td><td>${esc(o.customer)}</td><td class="text-end">${intFmt.format(o.items.reduce((s, it) => s + it.quantity, 0))}</td><td class="text-end">${esc(money(o.total, o.currency))}</td><td>${badge(o.status)}</td><td class="d-none d-md-table-cell" data-created="${esc(o.created ?? '')}">${esc(fmtTime(o.created))}</td>`,
    onRowClick: (id) => { location.hash = `#/orders/${encodeURIComponent(id)}`; },
    info() {
      const shown = this.items.length;
      const params = { page: intFmt.format(this.page), shown: intFmt.format(shown), total: intFmt.format(this.total ?? 0) };
      $('#orders-info').textContent = t(this.total != null ? 'orders.info.total' : 'orders.info', params);
      $('#orders-prev').disabled = this.page <= 1;
      $('#orders-next').disabled = this.total != null ? this.page * this.perPage >= this.total : shown < this.perPage;
    },
  });
  renderers.orders = () => views.orders.draw();

  // -- Payments
  views.payments = new ListView({
    name: 'payments', path: '/api/payments', perPage: 50, cols: 6, emptyText: 'payments.empty',
    norm: norm.payment, keyOf: (p) => p.id, timeOf: (p) => p.at, defaultSort: 'time',
    columns: {
      id: (p) => p.id, order: (p) => p.order_id, amount: (p) => p.amount, method: (p) => methodLabel(p.method),
      status: (p) => label(p.status), time: (p) => p.at || 0,
    },
    fromStore: () => Array.from(store.payments.values()).reverse(),
    filters() { return { method: $('#payments-method').value, status: $('#payments-status').value }; },
    matches(p) {
      const m = $('#payments-method').value; const st = $('#payments-status').value;
      return (!m || p.method === m) && (!st || p.status === st);
    },
    rowHtml: (p) => `<td class="mono" title="${esc(p.id)}">${esc(shortId(p.id))}</td><td class="mono" title="${esc(p.order_id)}"><a href="#/orders/${encodeURIComponent(p.order_id)}">${esc(shortId(p.order_id))}</a></td><td class="text-end">${esc(money(p.amount, p.currency))}</td><td>${esc(methodLabel(p.method))}</td><td>${badge(p.status)}</td><td class="d-none d-md-table-cell">${esc(fmtTime(p.at))}</td>`,
    info() { this.showInfo(); },
    // Orders that can still be paid, for the form's suggestions.
    refreshUnpaid() { markDirty('unpaid'); },
  });
  renderers.payments = () => views.payments.draw();
  renderers.unpaid = () => {
    const list = $('#unpaid-orders');
    const open = Array.from(store.orders.values()).filter((o) => ['created', 'pending', 'placed', 'new', 'payment_failed'].includes(o.status)).slice(-20).reverse();
    list.innerHTML = open.map((o) => `<option value="${esc(o.id)}">${esc(o.customer)} · ${esc(money(o.total, o.currency))}</option>`).join('');
  };

  // -- Deliveries
  const dayStart = (v) => (v ? new Date(`${v}T00:00:00`).getTime() : null);
  views.deliveries = new ListView({
    name: 'deliveries', path: '/api/deliveries', perPage: 100, cols: 6, emptyText: 'deliveries.empty',
    norm: norm.delivery, keyOf: (d) => d.order_id, timeOf: (d) => d.at, defaultSort: 'updated',
    columns: {
      order: (d) => d.order_id, status: (d) => DELIVERY_ORDER(d.status), carrier: (d) => d.carrier,
      location: (d) => d.location, updated: (d) => d.at || 0,
    },
    fromStore: () => Array.from(store.deliveries.values()).reverse(),
    filters() {
      const from = $('#deliveries-from').value; const to = $('#deliveries-to').value;
      // Local days, sent as milliseconds since the epoch (inclusive bounds).
      return {
        status: $('#deliveries-status').value, carrier: $('#deliveries-carrier').value,
        from: from ? dayStart(from) : '',
        to: to ? dayStart(to) + 86400000 - 1 : '',
      };
    },
    matches(d) {
      const st = $('#deliveries-status').value; const c = $('#deliveries-carrier').value;
      const from = dayStart($('#deliveries-from').value); const to = dayStart($('#deliveries-to').value);
      if (st && d.status !== st) return false;
      if (c && d.carrier !== c) return false;
      if (from && (d.at || 0) < from) return false;
      if (to && (d.at || 0) >= to + 86400000) return false;
      return true;
    },
    remember(d) { if (d.status) store.statuses.deliveries.add(d.status); if (d.carrier) store.statuses.carriers.add(d.carrier); },
    rowHtml: (d) => {
      const next = nextDeliveryStatus(d.status);
      const buttons = [];
      if (next) buttons.push(`<button class="btn btn-sm btn-outline-primary" data-advance="${esc(d.order_id)}" data-next="${esc(next)}">${esc(label(next))} →</button>`);
      if (next && d.status) buttons.push(`<button class="btn btn-sm btn-outline-danger" data-advance="${esc(d.order_id)}" data-next="failed" title="${esc(t('deliveries.markFailed'))}">✕</button>`);
      return `<td class="mono" title="${esc(d.order_id)}">${esc(shortId(d.order_id))}</td><td>${badge(d.status)}</td><td>${esc(d.carrier)}</td><td class="d-none d-md-table-cell">${esc(d.location)}</td><td class="d-none d-md-table-cell">${esc(fmtTime(d.at))}</td><td class="text-end"><div class="btn-group">${buttons.join('')}</div></td>`;
    },
    onRowClick: (id) => { location.hash = `#/deliveries/${encodeURIComponent(id)}`; },
    info() { this.showInfo(); },
  });
  renderers.deliveries = () => views.deliveries.draw();

  // -- Notifications (the notifier's, each once)
  const SEVERITY_COLORS = { info: 'info', success: 'success', warning: 'warning' };
  views.notifications = new ListView({
    name: 'notifications', path: '/api/notifications', perPage: 100, cols: 5, emptyText: 'notifications.empty',
    norm: norm.notification, keyOf: (n) => n.id, timeOf: (n) => n.at, defaultSort: 'time',
    columns: { time: (n) => n.at || 0, severity: (n) => word('severity', n.severity), kind: (n) => word('kind', n.kind), order: (n) => n.order_id },
    fromStore: () => Array.from(store.notifications.values()).reverse(),
    filters() { return { severity: $('#notifications-severity').value }; },
    matches(n) { const sv = $('#notifications-severity').value; return !sv || n.severity === sv; },
    rowHtml: (n) => `<td>${esc(fmtDateTime(n.at))}</td><td><span class="badge text-bg-${SEVERITY_COLORS[n.severity] || 'secondary'}" data-severity="${esc(n.severity)}">${esc(word('severity', n.severity))}</span></td><td data-kind="${esc(n.kind)}">${esc(word('kind', n.kind))}</td><td class="mono" title="${esc(n.order_id)}"><a href="#/orders/${encodeURIComponent(n.order_id)}">${esc(shortId(n.order_id))}</a></td><td class="notification-text" title="${esc(n.message)}">${esc(notificationText(n))}</td>`,
    info() { this.showInfo(); },
  });
  renderers.notifications = () => views.notifications.draw();

  // Advance a delivery one step (or mark it failed); the change comes back over the WebSocket.
  async function advanceDelivery(orderId, status, button) {
    const current = store.deliveries.get(orderId);
    const body = { order_id: orderId, status };
    mine.add(orderId);
    if (current && current.carrier) body.carrier = current.carrier;
    const loc = { scheduled: 'Warehouse', shipped: 'Warehouse', in_transit: 'Hub', out_for_delivery: 'Local depot', delivered: 'Customer', failed: current?.location || 'Hub' };
    body.location = loc[status] || '';
    if (button) button.disabled = true;
    try {
      await api('POST', '/api/deliveries', body);
    } catch (e) {
      toast(t('deliveries.error', { id: shortId(orderId), message: e.text }), 'danger');
    } finally {
      if (button) button.disabled = false;
    }
  }
  document.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-advance]');
    if (b) { e.preventDefault(); advanceDelivery(b.dataset.advance, b.dataset.next, b); }
  });

  const timelineHtml = (d) => {
    if (!d || !d.timeline.length) return `<p class="text-body-secondary mb-0">${esc(t('deliveries.noSteps'))}</p>`;
    return `<ol class="timeline" data-order="${esc(d.order_id)}">${d.timeline.map((s) => `<li class="${s.status === 'delivered' ? 'done' : /fail/.test(s.status) ? 'failed' : ''}" data-status="${esc(s.status)}"><div class="fw-semibold">${esc(label(s.status))}</div><div class="when">${esc(fmtDateTime(s.at))}${s.location ? ' · ' + esc(s.location) : ''}${s.carrier ? ' · ' + esc(s.carrier) : ''}</div></li>`).join('')}</ol>`;
  };
  const timelineView = {
    orderId: null,
    async show(orderId) {
      this.orderId = orderId;
      const box = $('#timeline');
      let d = store.deliveries.get(orderId);
      try {
        const resp = await api('GET', `/api/deliveries/${encodeURIComponent(orderId)}/timeline`);
        const steps = listOf(resp, 'timeline', 'steps').map(norm.step);
        d = { ...(d || norm.delivery({ order_id: orderId })), timeline: steps };
        if (!Array.isArray(resp) && resp) {
          const full = norm.delivery({ ...resp, order_id: orderId, timeline: resp.timeline || resp.steps || steps });
          d = { ...d, ...full, timeline: steps };
        }
      } catch (e) {
        if (!d) { box.innerHTML = `<p class="text-danger mb-0">${esc(e.text)}</p>`; return; }
      }
      if (this.orderId !== orderId) return;
      const next = nextDeliveryStatus(d.status);
      box.innerHTML = `<div class="d-flex justify-content-between align-items-center mb-2"><a class="mono" href="#/orders/${encodeURIComponent(orderId)}">${esc(shortId(orderId))}</a>${d.status ? badge(d.status) : ''}</div>${timelineHtml(d)}${next ? `<button class="btn btn-sm btn-primary mt-2" data-advance="${esc(orderId)}" data-next="${esc(next)}">${esc(t('detail.advance', { status: label(next) }))}</button>` : ''}`;
    },
  };

  // ---------------------------------------------------------------- order detail
  const detail = {
    id: null, timer: null,
    open(id) { this.id = id; this.reload(); },
    close() { this.id = null; $('#order-detail').hidden = true; },
    reload() {
      // Several events for one order arrive together: fetch once.
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.load(), 120);
    },
    async load() {
      const id = this.id;
      if (!id) return;
      const card = $('#order-detail');
      card.hidden = false;
      let o; let payments = []; let delivery = null;
      try {
        const resp = await api('GET', `/api/orders/${encodeURIComponent(id)}`);
        const raw = resp.order || resp;
        o = norm.order(raw);
        payments = (resp.payments || raw.payments || []).map(norm.payment);
        const del = resp.delivery || raw.delivery;
        const tl = resp.timeline || raw.timeline || del?.timeline;
        if (del || tl) delivery = norm.delivery({ order_id: id, ...(del || {}), timeline: tl || [] });
      } catch (e) {
        if (this.id !== id) return;
        card.innerHTML = `<div class="card-header d-flex justify-content-between">${esc(t('order.title'))}<a href="#/orders" class="btn-close" aria-label="${esc(t('order.close'))}"></a></div><div class="card-body"><p class="text-danger mb-0">${esc(e.status === 404 ? t('order.notFound', { id }) : e.text)}</p></div>`;
        return;
      }
      if (this.id !== id) return;
      if (!delivery) delivery = store.deliveries.get(id) || null;
      const paid = payments.some((p) => p.status === 'authorized');
      const refundable = ['paid', 'scheduled', 'delivered', 'delivery_failed'].includes(o.status) && o.paid > 0;
      const next = nextDeliveryStatus(delivery?.status);
      card.innerHTML = `
        <div class="card-header d-flex justify-content-between align-items-center"><span>${esc(t('order.title'))} <span class="mono" data-order-id="${esc(o.id)}">${esc(o.id)}</span></span><a href="#/orders" class="btn-close" aria-label="${esc(t('order.close'))}"></a></div>
        <div class="card-body">
          <div class="d-flex justify-content-between mb-2"><span>${esc(o.customer)}</span>${badge(o.status)}</div>
          <table class="table table-sm mb-2"><thead><tr><th>${esc(t('item.sku'))}</th><th class="text-end">${esc(t('detail.qty'))}</th><th class="text-end">${esc(t('item.price'))}</th></tr></thead><tbody>
            ${o.items.map((it) => `<tr><td>${esc(it.sku)}</td><td class="text-end">${intFmt.format(it.quantity)}</td><td class="text-end">${esc(money(it.price, o.currency))}</td></tr>`).join('')}
            <tr><th colspan="2">${esc(t('orders.total'))}</th><th class="text-end" id="detail-total">${esc(money(o.total, o.currency))}</th></tr></tbody></table>
          <h3 class="h6 mt-3">${esc(t('detail.payments'))}</h3>
          ${payments.length ? `<ul class="list-unstyled small mb-2" id="detail-payments">${payments.map((p) => `<li>${badge(p.status)} ${esc(money(p.amount, p.currency))} · ${esc(methodLabel(p.method))} · ${esc(fmtTime(p.at))}</li>`).join('')}</ul>` : `<p class="small text-body-secondary mb-2" id="detail-payments">${esc(t('detail.none'))}</p>`}
          ${paid || o.status === 'cancelled' ? '' : `<button class="btn btn-sm btn-primary" id="detail-pay">${esc(t('detail.pay', { amount: money(o.total - o.paid, o.currency) }))}</button> <button class="btn btn-sm btn-outline-danger" id="detail-cancel">${esc(t('detail.cancel'))}</button>`}
          ${refundable ? `<button class="btn btn-sm btn-outline-warning" id="detail-refund" data-amount="${esc(o.paid)}">${esc(t('detail.refund', { amount: money(o.paid, o.currency) }))}</button>` : ''}
          <h3 class="h6 mt-3">${esc(t('detail.delivery'))}</h3>
          <div id="detail-timeline">${timelineHtml(delivery)}</div>
          ${paid && next ? `<button class="btn btn-sm btn-outline-primary mt-2" data-advance="${esc(o.id)}" data-next="${esc(next)}">${esc(t('detail.advance', { status: label(next) }))}</button>` : ''}
        </div>`;
      $('#detail-pay', card)?.addEventListener('click', () => {
        location.hash = '#/payments';
        fillPayment(o);
      });
      // Two clicks: the first asks for confirmation on the button itself.
      $('#detail-refund', card)?.addEventListener('click', async (e) => {
        const btn = e.target;
        if (!btn.dataset.confirm) {
          btn.dataset.confirm = '1';
          btn.classList.replace('btn-outline-warning', 'btn-warning');
          btn.textContent = t('detail.refund.confirm', { amount: money(o.paid, o.currency) });
          return;
        }
        btn.disabled = true;
        mine.add(o.id);
        try {
          await api('POST', `/api/orders/${encodeURIComponent(o.id)}/refund`, { reason: t('detail.refund.reason') });
          btn.textContent = t('detail.refund.accepted');
        } catch (err) { toast(err.text, 'danger'); btn.disabled = false; }
      });
      $('#detail-cancel', card)?.addEventListener('click', async (e) => {
        e.target.disabled = true;
        try { await api('POST', `/api/orders/${encodeURIComponent(o.id)}/cancel`, { reason: t('detail.cancel.reason') }); } catch (err) { toast(err.text, 'danger'); e.target.disabled = false; }
      });
    },
  };

  // ---------------------------------------------------------------- forms
  function formFeedback(form, { error = null, ok = null } = {}) {
    const err = form.querySelector('[data-form-error]');
    const good = form.querySelector('[data-form-ok]');
    err.hidden = !error; err.textContent = error || '';
    good.hidden = !ok; good.innerHTML = ok || '';
  }
  function clearServerErrors(form) {
    for (const el of form.querySelectorAll('.is-invalid')) el.classList.remove('is-invalid');
    for (const el of form.querySelectorAll('[data-server-feedback]')) el.remove();
  }
  // Put the server's per-field messages next to the fields they name; the
  // message above the button says what is wrong (`ApiError.text`).
  function showServerError(form, e) {
    clearServerErrors(form);
    let text = e.text;
    const fields = e.fields;
    const entries = Array.isArray(fields) ? fields.map((f) => [f.field || f.name || f.path, f.message || f.error]) : Object.entries(fields || {});
    for (const [field, raw] of entries) {
      const message = word('server', raw);
      const el = fieldElement(form, String(field));
      if (!el) { text += ` (${field}: ${message})`; continue; }
      el.classList.add('is-invalid');
      const fb = document.createElement('div');
      fb.className = 'invalid-feedback d-block';
      fb.dataset.serverFeedback = '';
      fb.textContent = String(message);
      el.insertAdjacentElement('afterend', fb);
    }
    formFeedback(form, { error: text });
  }
  function fieldElement(form, field) {
    const direct = form.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (direct) return direct;
    const m = /^items\[?\.?(\d+)\]?\.(\w+)$/.exec(field);
    if (m) return form.querySelectorAll('.item-row')[+m[1]]?.querySelector(`[name="${m[2]}"]`) || null;
    return null;
  }
  // A decimal typed by a person: `10.5` or `10,5` (French).
  const decimalText = (text) => String(text ?? '').trim().replace(',', '.');
  const EXAMPLE_AMOUNT = () => fmt.decimal(10.5, 2);
  // What is wrong with an amount typed in major units, or '' if nothing
  // (the server's rules: a number, not negative, at most two decimals).
  function amountProblem(text) {
    const v = decimalText(text);
    if (v === '') return t('amount.required');
    if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(v)) return t('amount.notNumber', { example: EXAMPLE_AMOUNT() });
    if (Number(v) < 0) return t('amount.negative');
    const decimals = (v.split('.')[1] || '').length;
    if (decimals > 2) return t('amount.decimals', { value: String(text).trim(), n: decimals });
    return '';
  }
  // Show `problem` (or nothing) under `input`, in its own `.invalid-feedback`.
  function setProblem(input, problem) {
    input.setCustomValidity(problem);
    const fb = input.nextElementSibling;
    if (fb && fb.classList.contains('invalid-feedback')) fb.textContent = problem;
  }

  // -- new order
  const SAMPLE_SKUS = ['book-rust', 'mug-kafka', 'tee-sluice', 'sticker-pack', 'hoodie-log'];
  function addItemRow(values = {}) {
    const row = $('#item-row').content.firstElementChild.cloneNode(true);
    I18N.apply(row);
    const i = $$('#order-items .item-row').length;
    row.querySelector('[name=sku]').value = values.sku ?? SAMPLE_SKUS[i % SAMPLE_SKUS.length];
    row.querySelector('[name=quantity]').value = values.quantity ?? 1;
    row.querySelector('[name=price]').value = values.price ?? (9.5 + i * 5).toFixed(2);
    row.querySelector('[data-remove]').onclick = () => { if ($$('#order-items .item-row').length > 1) { row.remove(); orderTotal(); } };
    $('#order-items').appendChild(row);
    orderTotal();
  }
  function orderItems() {
    return $$('#order-items .item-row').map((r) => ({
      sku: r.querySelector('[name=sku]').value.trim(),
      quantity: Number(r.querySelector('[name=quantity]').value),
      price: Number(decimalText(r.querySelector('[name=price]').value)),
    }));
  }
  function orderTotal() {
    const total = orderItems().reduce((s, it) => s + (isFinite(it.quantity * it.price) ? it.quantity * it.price : 0), 0);
    $('#order-total').textContent = money(total, $('#order-currency').value);
  }
  // Each item's fields checked as the server checks them, with a message each.
  function checkOrderItems() {
    for (const row of $$('#order-items .item-row')) {
      const sku = row.querySelector('[name=sku]');
      setProblem(sku, sku.value.trim() ? '' : t('form.sku.required'));
      const q = row.querySelector('[name=quantity]');
      setProblem(q, Number.isInteger(Number(q.value)) && q.value.trim() !== '' && Number(q.value) >= 1 ? '' : t('form.quantity.invalid'));
      const price = row.querySelector('[name=price]');
      const v = decimalText(price.value);
      let problem = '';
      if (!/^(\d+\.?\d*|\.\d+)$/.test(v)) problem = t('form.price.invalid', { example: EXAMPLE_AMOUNT() });
      else if ((v.split('.')[1] || '').length > 2) problem = t('form.price.decimals');
      setProblem(price, problem);
    }
  }
  function bindOrderForm() {
    const form = $('#order-form');
    addItemRow();
    $('#order-add-item').onclick = () => addItemRow();
    form.addEventListener('input', () => { orderTotal(); if (form.classList.contains('was-validated')) checkOrderItems(); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearServerErrors(form);
      formFeedback(form);
      checkOrderItems();
      if (!form.checkValidity()) { form.classList.add('was-validated'); return; }
      form.classList.remove('was-validated');
      const body = { customer: $('#order-customer').value.trim(), items: orderItems(), currency: $('#order-currency').value };
      const btn = $('#order-submit');
      btn.disabled = true;
      try {
        const r = await api('POST', '/api/orders', body);
        const id = pick(r, 'order_id', 'id') ?? pick(r.order || {}, 'id');
        if (id) mine.add(String(id));
        formFeedback(form, { ok: `${esc(t('order.accepted'))}${id ? ` <a class="mono" href="#/orders/${encodeURIComponent(id)}" data-created-order="${esc(id)}">${esc(shortId(id))}</a>` : ''} · ${esc(r.topic ?? 'orders')}/${esc(r.partition ?? '?')} @ ${esc(r.offset ?? '?')}` });
      } catch (err) {
        showServerError(form, err);
      } finally {
        btn.disabled = false;
      }
    });
  }

  // -- payment
  function fillPayment(o) {
    $('#payment-order').value = o.id;
    $('#payment-amount').value = Math.max(0, o.total - o.paid).toFixed(2);
  }
  function bindPaymentForm() {
    const form = $('#payment-form');
    const amount = $('#payment-amount');
    $('#payment-order').addEventListener('change', (e) => {
      const o = store.orders.get(e.target.value.trim());
      if (o && !amount.value) amount.value = Math.max(0, o.total - o.paid).toFixed(2);
    });
    const checkAmount = () => {
      const problem = amountProblem(amount.value);
      amount.setCustomValidity(problem);
      $('#payment-amount-feedback').textContent = problem;
    };
    amount.addEventListener('input', checkAmount);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearServerErrors(form);
      formFeedback(form);
      checkAmount();
      if (!form.checkValidity()) { form.classList.add('was-validated'); return; }
      form.classList.remove('was-validated');
      const body = { order_id: $('#payment-order').value.trim(), amount: Number(decimalText(amount.value)), method: $('#payment-method').value };
      mine.add(body.order_id);
      const outcome = $('#payment-outcome').value;
      if (outcome) body.status = outcome;
      const btn = $('#payment-submit');
      btn.disabled = true;
      try {
        const r = await api('POST', '/api/payments', body);
        formFeedback(form, { ok: `${esc(t('pay.accepted'))} <a class="mono" href="#/orders/${encodeURIComponent(body.order_id)}">${esc(shortId(body.order_id))}</a> · ${esc(r.topic ?? 'payments')}/${esc(r.partition ?? '?')} @ ${esc(r.offset ?? '?')}` });
        form.reset();
      } catch (err) {
        showServerError(form, err);
      } finally {
        btn.disabled = false;
      }
    });
  }

  // -- filter controls
  renderers.filters = () => {
    const fill = (sel, values, allText, show = label) => {
      const el = $(sel);
      const cur = el.value;
      const want = [''].concat(Array.from(values).filter(Boolean).sort());
      const have = Array.from(el.options).map((o) => o.value);
      if (want.join('|') === have.join('|')) return;
      el.innerHTML = want.map((v) => `<option value="${esc(v)}">${esc(v ? show(v) : allText)}</option>`).join('');
      el.value = want.includes(cur) ? cur : '';
    };
    fill('#orders-status', store.statuses.orders, t('orders.allStatuses'));
    fill('#deliveries-status', store.statuses.deliveries, t('orders.allStatuses'));
    fill('#deliveries-carrier', store.statuses.carriers, t('deliveries.allCarriers'), String);
  };
  setInterval(() => markDirty('filters'), 3000);
  function bindFilters() {
    let searchTimer = null;
    $('#orders-search').addEventListener('input', (e) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => { views.orders.search = e.target.value.trim(); views.orders.page = 1; views.orders.reload(); }, 250);
    });
    $('#orders-status').addEventListener('change', () => { views.orders.page = 1; views.orders.reload(); });
    $('#orders-prev').onclick = () => { if (views.orders.page > 1) { views.orders.page--; views.orders.reload(); } };
    $('#orders-next').onclick = () => { views.orders.page++; views.orders.reload(); };
    for (const id of ['#payments-method', '#payments-status']) $(id).addEventListener('change', () => views.payments.reload());
    for (const id of ['#deliveries-status', '#deliveries-carrier', '#deliveries-from', '#deliveries-to']) $(id).addEventListener('change', () => views.deliveries.reload());
    $('#notifications-severity').addEventListener('change', () => views.notifications.reload());
  }

  // ---------------------------------------------------------------- cluster
  const cluster = { timer: null, last: null, lastAt: 0, rates: new Map() };
  async function loadCluster() {
    let c;
    try { c = await api('GET', '/api/cluster'); } catch (e) {
      $('#cluster-updated').textContent = t('cluster.notUpdated', { message: e.text });
      return;
    }
    const now = Date.now();
    // Records per second per partition from the change in log end offset.
    const prev = cluster.last;
    const dt = (now - cluster.lastAt) / 1000;
    for (const t of c.topics || []) {
      for (const p of t.partitions || []) {
        const key = `${t.name}/${p.partition}`;
        const before = prev && cluster.ends?.get(key);
        if (before != null && dt > 0) cluster.rates.set(key, Math.max(0, (p.log_end_offset - before) / dt));
      }
    }
    cluster.ends = new Map((c.topics || []).flatMap((t) => (t.partitions || []).map((p) => [`${t.name}/${p.partition}`, p.log_end_offset])));
    cluster.last = c; cluster.lastAt = now;
    drawCluster();
  }
  // A single node runs no Raft: say so instead of a role and a term.
  const raftCells = (c, b) => (c.raft_running === false || c.mode === 'single-node' || b.raft_role == null
    ? `<td colspan="2" class="text-body-secondary" data-raft="off">${esc(t('cluster.raftOff'))}</td>`
    : `<td data-raft="${esc(b.raft_role)}">${esc(b.raft_role)}</td><td>${esc(intFmt.format(b.raft_term ?? 0))}</td>`);
  function drawCluster() {
    const c = cluster.last;
    if (!c) return;
    $('#cluster-id').textContent = c.cluster_id ? `· ${c.cluster_id}` : '';
    $('#cluster-updated').textContent = t('cluster.updated', { time: fmtTime(cluster.lastAt) });
    const pale = 'badge bg-body-secondary text-body';
    const yes = (v) => (v ? `<span class="badge text-bg-success">${esc(t('cluster.yes'))}</span>` : `<span class="${pale}">${esc(t('cluster.no'))}</span>`);
    $('#brokers-table tbody').innerHTML = (c.brokers || []).map((b) => `<tr data-broker="${esc(b.id)}"><td>${esc(b.id)}${b.this_node ? ` <span class="${pale}">${esc(t('cluster.thisNode'))}</span>` : ''}</td><td class="mono">${esc(b.kafka_addr)}</td><td class="mono d-none d-md-table-cell">${esc(b.http_addr ?? '')}</td><td>${b.alive ? `<span class="badge text-bg-success">${esc(t('cluster.up'))}</span>` : `<span class="badge text-bg-danger">${esc(t('cluster.down'))}</span>`}</td><td>${yes(b.controller)}</td>${raftCells(c, b)}</tr>`).join('')
      || `<tr><td colspan="7" class="text-body-secondary">${esc(t('cluster.noBrokers'))}</td></tr>`;
    const showInternal = $('#cluster-internal').checked;
    const tr = t;
    const rows = [];
    for (const t of (c.topics || []).filter((t) => showInternal || !t.internal)) {
      const parts = t.partitions || [];
      parts.forEach((p, i) => {
        const rate = cluster.rates.get(`${t.name}/${p.partition}`);
        const isrShort = (p.isr || []).length < (p.replicas || []).length;
        rows.push(`<tr data-topic="${esc(t.name)}">${i === 0 ? `<td rowspan="${parts.length}" class="fw-semibold">${esc(t.name)}${t.internal ? ` <span class="${pale}">${esc(tr('cluster.internalBadge'))}</span>` : ''}</td>` : ''}<td class="text-end">${p.partition}</td><td class="text-end">${esc(p.leader)}</td><td>${esc((p.replicas || []).join(', '))}</td><td class="${isrShort ? 'text-danger' : ''}">${esc((p.isr || []).join(', '))}</td><td class="text-end">${esc(p.leader_epoch)}</td><td class="text-end">${intFmt.format(p.log_start_offset)}</td><td class="text-end">${intFmt.format(p.log_end_offset)}</td><td class="text-end">${intFmt.format(p.high_watermark)}</td><td class="text-end d-none d-md-table-cell">${rate == null ? '' : fmt.decimal(rate, 1)}</td></tr>`);
      });
    }
    $('#topics-table tbody').innerHTML = rows.join('') || `<tr><td colspan="10" class="text-body-secondary">${esc(t('cluster.noTopics'))}</td></tr>`;
    $('#groups-table tbody').innerHTML = (c.groups || []).map((g) => {
      const lag = (g.lag || []).map((l) => `<span class="badge ${l.lag > 0 ? 'text-bg-warning' : 'bg-body-secondary text-body'}" title="${esc(t('cluster.lagTitle', { committed: intFmt.format(l.committed), end: intFmt.format(l.log_end_offset) }))}">${esc(l.topic)}-${esc(l.partition)}: ${intFmt.format(l.lag)}</span>`).join('');
      const members = (g.members || []).map((m) => `${m.client_id || m.member_id}${m.assignment ? ` → ${m.assignment}` : ''}`).join('\n');
      return `<tr data-group="${esc(g.group_id)}" data-coordinator="${esc(g.coordinator ?? '')}"><td class="fw-semibold">${esc(g.group_id)}</td><td>${esc(g.state)}</td><td class="text-end">${esc(g.coordinator ?? '')}</td><td class="text-end" title="${esc(members)}">${(g.members || []).length}</td><td><div class="lag-list">${lag || `<span class="text-body-secondary">${esc(t('cluster.noCommits'))}</span>`}</div></td><td class="text-end">${intFmt.format(g.total_lag ?? (g.lag || []).reduce((s, l) => s + l.lag, 0))}</td></tr>`;
    }).join('') || `<tr><td colspan="6" class="text-body-secondary">${esc(t('cluster.noGroups'))}</td></tr>`;
  }
  function bindCluster() { $('#cluster-internal').addEventListener('change', drawCluster); }

  // ---------------------------------------------------------------- routing
  // The console's pages (console.js) are shown by its own `show`.
  const CONSOLE = window.sluiceConsole || { pages: [], show() {} };
  const PAGES = ['dashboard', 'orders', 'payments', 'deliveries', 'notifications', 'cluster', ...CONSOLE.pages];
  const route = { page: null };
  function onRoute() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    const page = PAGES.includes(parts[0]) ? parts[0] : 'dashboard';
    route.page = page;
    for (const p of PAGES) $(`#page-${p}`).hidden = p !== page;
    for (const a of $$('[data-nav]')) {
      const on = a.dataset.nav === page;
      a.classList.toggle('active', on);
      if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    document.title = t('app.title', { page: t(`page.${page}`) });
    const nav = $('#nav');
    if (nav.classList.contains('show') && window.bootstrap) bootstrap.Collapse.getOrCreateInstance(nav).hide();
    if (page === 'orders' && parts[1]) detail.open(parts[1]); else detail.close();
    if (page === 'deliveries' && parts[1]) timelineView.show(parts[1]);
    clearInterval(cluster.timer);
    if (page === 'cluster') { loadCluster(); cluster.timer = setInterval(loadCluster, 2000); }
    if (page === 'dashboard') { lastChartDraw = 0; markDirty('charts', 'stats', 'feed'); }
    if (CONSOLE.pages.includes(page)) CONSOLE.show(page, parts, api); else CONSOLE.show(null, parts, api);
    markDirty(page);
    flush();
  }

  // ---------------------------------------------------------------- login
  function setAuth(s) {
    auth.enabled = !!s.auth;
    auth.role = s.role || 'viewer';
    auth.name = s.name || null;
    auth.csrf = s.csrf_token || null;
    document.body.dataset.role = auth.role;
    const user = $('#auth-user');
    user.textContent = auth.name ? `${auth.name} · ${auth.role}` : '';
    user.hidden = !auth.enabled;
    $('#logout').hidden = !auth.enabled;
  }
  function showLogin() {
    if (document.body.classList.contains('logged-out')) return;
    document.body.classList.add('logged-out');
    auth.csrf = null;
    clearTimeout(live.timer);
    if (live.socket) { const s = live.socket; live.socket = null; s.close(); }
    $('#login').hidden = false;
    $('#login-token').focus();
  }
  function hideLogin() {
    document.body.classList.remove('logged-out');
    $('#login').hidden = true;
    $('#login-error').hidden = true;
  }
  function bindLogin() {
    $('#login-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const input = $('#login-token');
      const err = $('#login-error');
      err.hidden = true;
      try {
        setAuth(await api('POST', '/api/login', { token: input.value.trim() }));
        input.value = '';
        hideLogin();
        boot();
      } catch (ex) {
        err.textContent = ex.status === 401 ? t('login.invalid') : ex.text;
        err.hidden = false;
      }
    });
    $('#logout').addEventListener('click', async () => {
      try { await api('POST', '/api/logout', {}); } catch { /* the session ends either way */ }
      showLogin();
    });
  }

  // ---------------------------------------------------------------- start
  // Load the data and open the WebSocket, once logged in (or without --http-auth).
  function boot() {
    if (!auth.started) {
      auth.started = true;
      bindSim(); bindOrderForm(); bindPaymentForm(); bindFilters(); bindCluster();
      window.addEventListener('hashchange', onRoute);
    }
    onRoute();
    if (auth.role === 'admin') loadSim();
    api('GET', '/api/stats').then((s) => { store.stats = norm.stats(s); markDirty('stats', 'charts'); }).catch(() => {});
    for (const v of Object.values(views)) v.reload();
    live.attempt = 0;
    connect();
  }
  // The navbar's language and theme switches (both remembered by i18n.js).
  function bindSwitches() {
    const lang = $('#lang-switch');
    lang.value = I18N.lang;
    lang.addEventListener('change', () => I18N.setLanguage(lang.value));
    const themeButton = $('#theme-switch');
    const showTheme = () => {
      const dark = I18N.theme === 'dark';
      themeButton.setAttribute('aria-pressed', String(dark));
      $('#theme-icon').textContent = dark ? '☀' : '☾';
      const text = t(dark ? 'nav.theme.light' : 'nav.theme.dark');
      $('#theme-label').textContent = text;
      themeButton.title = text;
    };
    themeButton.addEventListener('click', () => { I18N.setTheme(I18N.theme === 'dark' ? 'light' : 'dark'); showTheme(); });
    showTheme();
  }
  function start() {
    bindSwitches();
    bindLogin();
    api('GET', '/api/session').then((s) => { setAuth(s); boot(); }).catch(() => { /* showLogin ran on 401 */ });
  }
  // Read-only counters for tests and the curious (render batching at work).
  window.sluiceDashboard = { perf, live, get page() { return route.page; } };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
