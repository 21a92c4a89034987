// Sluice console: the Topics, Messages, Groups and Brokers pages over the
// REST API under /api/admin. It builds its own page sections, and app.js's
// router shows them (window.sluiceConsole.pages / show). Every visible
// string is in TEXTS below, one object per language; the language is
// i18n.js's (the navbar switch, remembered; a switch reloads the page), and
// numbers, dates and sizes are formatted for its locale.
'use strict';
(() => {
  const I18N = window.sluiceI18n;
  const TEXTS = {
    en: {
      topics: 'Topics', messages: 'Messages', groups: 'Consumer groups', brokers: 'Brokers',
      name: 'Name', partitions: 'Partitions', replicationFactor: 'Replication factor', size: 'Size',
      messagesCount: 'Messages', rate: 'Records/s', actions: 'Actions', internal: 'internal topics',
      createTopic: 'Create topic', create: 'Create', configsHelp: 'Configs, one key=value a line',
      view: 'View', del: 'Delete', confirmDeleteTopic: (t) => `Delete topic "${t}" and all its records? This cannot be undone.`,
      confirmDeleteGroup: (g) => `Delete group "${g}"?`, confirmDeleteOffsets: (g, t) => `Delete the offsets of group "${g}" for topic "${t}"?`,
      noTopics: 'No topics.', deleted: (t) => `Deleted ${t}.`, created: (t) => `Created ${t}.`,
      partition: 'Partition', leader: 'Leader', replicas: 'Replicas', isr: 'ISR', logStart: 'Log start',
      logEnd: 'Log end', hw: 'High watermark', lso: 'stable', configs: 'Configs', save: 'Save changes', saved: 'Saved.',
      resetDefault: 'default', addPartitions: 'Add partitions', newTotal: 'New total', grown: (n) => `Now ${n} partitions.`,
      back: '← Topics', topic: 'Topic', allPartitions: 'All partitions', newestFirst: 'Newest first', oldestFirst: 'Oldest first',
      offset: 'Offset', from: 'From', to: 'To', key: 'Key', header: 'Header (name or name=value)', jsonPath: 'JSON path, e.g. $.customer == "Ada"',
      limit: 'Per page', search: 'Search', nextPage: 'Next page', tail: 'Live tail', download: 'Download JSON lines',
      time: 'Time', value: 'Value', headers: 'Headers', copy: 'Copy', copied: 'Copied.', noRecords: 'No records match.',
      scanned: (n, ms) => `${n} records scanned in ${ms} ms`, json: 'JSON', text: 'Text', hex: 'Hex',
      produce: 'Produce a record', valueJson: 'Value (JSON, or any text)', addHeader: 'Add header', send: 'Send',
      sent: (p, o) => `Written to partition ${p} at offset ${o}.`, any: 'any', invalidJson: 'The value is not valid JSON; it will be sent as text.',
      group: 'Group', state: 'State', type: 'Type', members: 'Members', lag: 'Lag', totalLag: 'Total lag', coordinator: 'Coordinator',
      noGroups: 'No consumer groups.', member: 'Member', client: 'Client', host: 'Host', assignment: 'Assignment', committed: 'Committed',
      resetOffsets: 'Reset offsets', resetTo: 'To', earliest: 'earliest', latest: 'latest', toOffset: 'offset', toTimestamp: 'timestamp',
      shift: 'shift by N', preview: 'Dry run', apply: 'Reset', previous: 'Previous', newOffset: 'New offset', applied: 'Offsets reset.',
      deleteOffsets: 'Delete offsets of a topic', deleteGroup: 'Delete group', backGroups: '← Groups', noMembers: 'No active members.',
      broker: 'Broker', address: 'Address', alive: 'Alive', controller: 'Controller', raftRole: 'Raft role', term: 'Term',
      leaders: 'Leaders', disk: 'Disk used', version: 'Version', uptime: 'Uptime', yes: 'yes', no: 'no', noRaft: 'no Raft (single node)',
      apiDocs: 'API reference', loading: 'Loading…', error: 'Error', thisNode: 'this node',
      // Sizes in binary units; the brokers' mode as /api/admin/brokers names it.
      units: ['B', 'KiB', 'MiB', 'GiB', 'TiB'], modes: { 'single-node': 'single node', cluster: 'cluster', external: 'external cluster' },
    },
    fr: {
      topics: 'Topics', messages: 'Messages', groups: 'Groupes de consommateurs', brokers: 'Brokers',
      name: 'Nom', partitions: 'Partitions', replicationFactor: 'Facteur de réplication', size: 'Taille',
      messagesCount: 'Messages', rate: 'Enregistrements/s', actions: 'Actions', internal: 'topics internes',
      createTopic: 'Créer un topic', create: 'Créer', configsHelp: 'Configurations, une clé=valeur par ligne',
      view: 'Voir', del: 'Supprimer', confirmDeleteTopic: (t) => `Supprimer le topic « ${t} » et tous ses enregistrements ? Cette action est irréversible.`,
      confirmDeleteGroup: (g) => `Supprimer le groupe « ${g} » ?`, confirmDeleteOffsets: (g, t) => `Supprimer les offsets du groupe « ${g} » pour le topic « ${t} » ?`,
      noTopics: 'Aucun topic.', deleted: (t) => `Supprimé : ${t}.`, created: (t) => `Topic ${t} créé.`,
      partition: 'Partition', leader: 'Leader', replicas: 'Répliques', isr: 'ISR', logStart: 'Début du journal',
      logEnd: 'Fin du journal', hw: 'High watermark', lso: 'stable', configs: 'Configurations', save: 'Enregistrer les modifications', saved: 'Enregistré.',
      resetDefault: 'par défaut', addPartitions: 'Ajouter des partitions', newTotal: 'Nouveau total', grown: (n) => `Désormais ${n} partitions.`,
      back: '← Topics', topic: 'Topic', allPartitions: 'Toutes les partitions', newestFirst: 'Plus récents d’abord', oldestFirst: 'Plus anciens d’abord',
      offset: 'Offset', from: 'Depuis', to: 'Jusqu’à', key: 'Clé', header: 'En-tête (nom ou nom=valeur)', jsonPath: 'Chemin JSON, p. ex. $.customer == "Ada"',
      limit: 'Par page', search: 'Rechercher', nextPage: 'Page suivante', tail: 'Suivi en direct', download: 'Télécharger en JSON Lines',
      time: 'Horodatage', value: 'Valeur', headers: 'En-têtes', copy: 'Copier', copied: 'Copié.', noRecords: 'Aucun enregistrement ne correspond.',
      scanned: (n, ms) => `${n} enregistrements parcourus en ${ms} ms`, json: 'JSON', text: 'Texte', hex: 'Hexa',
      produce: 'Produire un enregistrement', valueJson: 'Valeur (JSON, ou tout texte)', addHeader: 'Ajouter un en-tête', send: 'Envoyer',
      sent: (p, o) => `Écrit dans la partition ${p} à l’offset ${o}.`, any: 'auto', invalidJson: 'La valeur n’est pas du JSON valide ; elle sera envoyée comme texte.',
      group: 'Groupe', state: 'État', type: 'Type', members: 'Membres', lag: 'Retard', totalLag: 'Retard total', coordinator: 'Coordinateur',
      noGroups: 'Aucun groupe de consommateurs.', member: 'Membre', client: 'Client', host: 'Hôte', assignment: 'Affectation', committed: 'Validé',
      resetOffsets: 'Réinitialiser les offsets', resetTo: 'Vers', earliest: 'le plus ancien', latest: 'le plus récent', toOffset: 'un offset', toTimestamp: 'un horodatage',
      shift: 'décaler de N', preview: 'Essai à blanc', apply: 'Réinitialiser', previous: 'Précédent', newOffset: 'Nouvel offset', applied: 'Offsets réinitialisés.',
      deleteOffsets: 'Supprimer les offsets d’un topic', deleteGroup: 'Supprimer le groupe', backGroups: '← Groupes', noMembers: 'Aucun membre actif.',
      broker: 'Broker', address: 'Adresse', alive: 'En vie', controller: 'Contrôleur', raftRole: 'Rôle Raft', term: 'Mandat',
      leaders: 'Leaders', disk: 'Disque utilisé', version: 'Version', uptime: 'En service depuis', yes: 'oui', no: 'non', noRaft: 'Raft inactif (nœud unique)',
      apiDocs: 'Référence de l’API', loading: 'Chargement…', error: 'Erreur', thisNode: 'ce nœud',
      units: ['o', 'Kio', 'Mio', 'Gio', 'Tio'], modes: { 'single-node': 'nœud unique', cluster: 'cluster', external: 'cluster externe' },
    },
  };
  // The current language's words; a word it lacks is the English one.
  const TEXT = { ...TEXTS.en, ...TEXTS[I18N.lang] };
  // The console pages' titles (app.js's router sets `Sluice · {page}`).
  I18N.add({
    en: { 'page.topics': 'Topics', 'page.messages': 'Messages', 'page.groups': 'Consumer groups', 'page.brokers': 'Brokers' },
    fr: { 'page.topics': 'Topics', 'page.messages': 'Messages', 'page.groups': 'Groupes de consommateurs', 'page.brokers': 'Brokers' },
  });
  const $ = (sel, root = document) => root.querySelector(sel);
  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
  // Numbers, dates and sizes in the locale of the language (i18n.js's formatters):
  // 1,234,567 in English, 1 234 567 (narrow no-break spaces) in French.
  const { fmt } = I18N;
  const fmtInt = (v) => (v == null ? '–' : fmt.int(v));
  const fmtDate = (ms) => (ms == null ? '–' : fmt.dateTime(ms));
  const fmtBytes = (v) => {
    if (v == null) return '–';
    let n = v; let i = 0;
    while (n >= 1024 && i < TEXT.units.length - 1) { n /= 1024; i++; }
    return `${fmt.decimal(n, i ? 1 : 0)}\u00a0${TEXT.units[i]}`;
  };
  const fmtUptime = (s) => (s == null ? '–' : s < 120 ? `${fmt.int(s)}\u00a0s` : s < 7200 ? `${fmt.int(Math.round(s / 60))}\u00a0min` : `${fmt.decimal(s / 3600, 1)}\u00a0h`);
  const enc = encodeURIComponent;
  let api = null; // app.js's API helper (auth, CSRF), set in show()

  function toast(message, kind = 'success') {
    const box = $('#toasts');
    if (!box) return;
    const el = document.createElement('div');
    el.className = `toast align-items-center text-bg-${kind} border-0 show`;
    el.setAttribute('role', kind === 'danger' ? 'alert' : 'status');
    el.innerHTML = `<div class="d-flex"><div class="toast-body">${esc(message)}</div></div>`;
    box.appendChild(el);
    setTimeout(() => el.remove(), 4000);
  }
  const fail = (e) => toast(`${TEXT.error}: ${e.message}`, 'danger');

  // ------------------------------------------------------------ sections
  const SECTIONS = {
    topics: `
<div class="d-flex justify-content-between align-items-center mb-2"><h2 class="h5 m-0">${TEXT.topics}</h2>
  <a class="small" href="/api/docs" target="_blank" rel="noopener">${TEXT.apiDocs}</a></div>
<div id="console-topic-list">
<div class="row g-3">
  <div class="col-xl-8"><div class="card"><div class="card-header d-flex justify-content-between align-items-center">${TEXT.topics}
    <div class="form-check form-switch m-0 small"><input class="form-check-input" type="checkbox" id="topics-internal"><label class="form-check-label" for="topics-internal">${TEXT.internal}</label></div></div>
    <div class="table-responsive"><table class="table table-sm table-hover align-middle mb-0" id="console-topics">
      <thead><tr><th>${TEXT.name}</th><th class="text-end">${TEXT.partitions}</th><th class="text-end">${TEXT.replicationFactor}</th><th class="text-end">${TEXT.size}</th><th class="text-end">${TEXT.messagesCount}</th><th class="text-end">${TEXT.rate}</th><th class="text-end">${TEXT.actions}</th></tr></thead>
      <tbody></tbody></table></div></div></div>
  <div class="col-xl-4"><div class="card"><div class="card-header">${TEXT.createTopic}</div><div class="card-body">
    <form id="topic-create" novalidate>
      <div class="mb-2"><label class="form-label" for="topic-name">${TEXT.name}</label><input class="form-control" id="topic-name" required maxlength="249" autocomplete="off"></div>
      <div class="row g-2 mb-2"><div class="col"><label class="form-label" for="topic-partitions">${TEXT.partitions}</label><input class="form-control" id="topic-partitions" type="number" min="1" value="3"></div>
        <div class="col"><label class="form-label" for="topic-rf">${TEXT.replicationFactor}</label><input class="form-control" id="topic-rf" type="number" min="-1" value="-1"></div></div>
      <div class="mb-2"><label class="form-label" for="topic-configs">${TEXT.configsHelp}</label><textarea class="form-control mono" id="topic-configs" rows="3" placeholder="retention.ms=86400000"></textarea></div>
      <button class="btn btn-primary" type="submit" id="topic-create-submit">${TEXT.create}</button>
    </form></div></div></div>
</div></div>
<div id="console-topic-detail" hidden></div>`,
    messages: `
<div class="card mb-3"><div class="card-body">
  <form class="row g-2 align-items-end" id="msg-form">
    <div class="col-6 col-md-3 col-xl-2"><label class="form-label small" for="msg-topic">${TEXT.topic}</label><select class="form-select form-select-sm" id="msg-topic"></select></div>
    <div class="col-6 col-md-3 col-xl-1"><label class="form-label small" for="msg-partition">${TEXT.partition}</label><select class="form-select form-select-sm" id="msg-partition"><option value="">${TEXT.allPartitions}</option></select></div>
    <div class="col-6 col-md-3 col-xl-1"><label class="form-label small" for="msg-order">&nbsp;</label><select class="form-select form-select-sm" id="msg-order"><option value="newest">${TEXT.newestFirst}</option><option value="oldest">${TEXT.oldestFirst}</option></select></div>
    <div class="col-6 col-md-3 col-xl-1"><label class="form-label small" for="msg-offset">${TEXT.offset}</label><input class="form-control form-control-sm" id="msg-offset" type="number" min="0"></div>
    <div class="col-6 col-md-3 col-xl-2"><label class="form-label small" for="msg-from">${TEXT.from}</label><input class="form-control form-control-sm" id="msg-from" type="datetime-local" step="1"></div>
    <div class="col-6 col-md-3 col-xl-2"><label class="form-label small" for="msg-to">${TEXT.to}</label><input class="form-control form-control-sm" id="msg-to" type="datetime-local" step="1"></div>
    <div class="col-6 col-md-3 col-xl-1"><label class="form-label small" for="msg-limit">${TEXT.limit}</label><select class="form-select form-select-sm" id="msg-limit"><option>20</option><option selected>50</option><option>100</option><option>500</option></select></div>
    <div class="col-6 col-md-4 col-xl-2"><label class="form-label small" for="msg-key">${TEXT.key}</label><input class="form-control form-control-sm" id="msg-key" autocomplete="off"></div>
    <div class="col-6 col-md-4 col-xl-3"><label class="form-label small" for="msg-header">${TEXT.header}</label><input class="form-control form-control-sm" id="msg-header" autocomplete="off"></div>
    <div class="col-12 col-md-4 col-xl-4"><label class="form-label small" for="msg-jsonpath">${TEXT.jsonPath}</label><input class="form-control form-control-sm mono" id="msg-jsonpath" autocomplete="off"></div>
    <div class="col-auto"><button class="btn btn-sm btn-primary" type="submit" id="msg-search">${TEXT.search}</button></div>
    <div class="col-auto"><div class="form-check form-switch m-0"><input class="form-check-input" type="checkbox" role="switch" id="msg-tail"><label class="form-check-label" for="msg-tail">${TEXT.tail}</label></div></div>
    <div class="col-auto ms-auto"><button class="btn btn-sm btn-outline-secondary" type="button" id="msg-download">${TEXT.download}</button></div>
  </form>
</div></div>
<div class="row g-3">
  <div class="col-xl-8"><div class="card">
    <div class="table-responsive"><table class="table table-sm table-hover align-middle mb-0" id="msg-table">
      <thead><tr><th class="text-end">${TEXT.partition}</th><th class="text-end">${TEXT.offset}</th><th>${TEXT.time}</th><th>${TEXT.key}</th><th>${TEXT.value}</th><th class="text-end">${TEXT.headers}</th></tr></thead>
      <tbody></tbody></table></div>
    <div class="card-footer d-flex justify-content-between align-items-center small"><span class="text-body-secondary" id="msg-info"></span>
      <button class="btn btn-sm btn-outline-secondary" id="msg-next" disabled>${TEXT.nextPage}</button></div>
  </div>
  <div class="card mt-3" id="msg-detail" hidden></div></div>
  <div class="col-xl-4"><div class="card" data-need="admin"><div class="card-header">${TEXT.produce}</div><div class="card-body">
    <form id="produce-form" novalidate>
      <div class="row g-2 mb-2"><div class="col-8"><label class="form-label" for="produce-key">${TEXT.key}</label><input class="form-control" id="produce-key" autocomplete="off"></div>
        <div class="col-4"><label class="form-label" for="produce-partition">${TEXT.partition}</label><input class="form-control" id="produce-partition" type="number" min="0" placeholder="${TEXT.any}"></div></div>
      <div class="mb-2"><label class="form-label" for="produce-value">${TEXT.valueJson}</label><textarea class="form-control mono" id="produce-value" rows="7" spellcheck="false">{\n  "customer": "Ada"\n}</textarea>
        <div class="form-text text-warning" id="produce-json-note" hidden>${TEXT.invalidJson}</div></div>
      <div class="d-flex justify-content-between align-items-end mb-1"><span class="form-label m-0">${TEXT.headers}</span><button type="button" class="btn btn-sm btn-outline-secondary" id="produce-add-header">${TEXT.addHeader}</button></div>
      <div id="produce-headers"></div>
      <button class="btn btn-primary mt-2" type="submit" id="produce-submit">${TEXT.send}</button>
    </form></div></div></div>
</div>`,
    groups: `
<div id="console-group-list"><div class="card"><div class="card-header">${TEXT.groups}</div>
  <div class="table-responsive"><table class="table table-sm table-hover align-middle mb-0" id="console-groups">
    <thead><tr><th>${TEXT.group}</th><th>${TEXT.state}</th><th>${TEXT.type}</th><th class="text-end">${TEXT.members}</th><th class="text-end">${TEXT.coordinator}</th><th class="text-end">${TEXT.totalLag}</th></tr></thead>
    <tbody></tbody></table></div></div></div>
<div id="console-group-detail" hidden></div>`,
    brokers: `
<div class="card"><div class="card-header d-flex justify-content-between"><span>${TEXT.brokers}</span><span class="small text-body-secondary" id="console-brokers-mode"></span></div>
  <div class="table-responsive"><table class="table table-sm align-middle mb-0" id="console-brokers">
    <thead><tr><th>${TEXT.broker}</th><th>${TEXT.address}</th><th>${TEXT.alive}</th><th>${TEXT.controller}</th><th>${TEXT.raftRole}</th><th class="text-end">${TEXT.term}</th><th class="text-end">${TEXT.leaders}</th><th class="text-end">${TEXT.replicas}</th><th class="text-end">${TEXT.disk}</th><th>${TEXT.version}</th><th class="text-end">${TEXT.uptime}</th></tr></thead>
    <tbody></tbody></table></div></div>`,
  };
  const PAGES = Object.keys(SECTIONS);

  function build() {
    const main = $('main');
    for (const page of PAGES) {
      const s = document.createElement('section');
      s.id = `page-${page}`;
      s.className = 'page';
      s.hidden = true;
      s.innerHTML = SECTIONS[page];
      main.appendChild(s);
    }
    bindTopics(); bindMessages(); bindProduce();
  }

  // ------------------------------------------------------------ topics
  async function loadTopics() {
    const internal = $('#topics-internal').checked;
    const r = await api('GET', `/api/admin/topics${internal ? '?internal=true' : ''}`);
    $('#console-topics tbody').innerHTML = r.topics.map((t) => `<tr data-topic="${esc(t.name)}">
      <td><a href="#/topics/${enc(t.name)}" class="fw-semibold">${esc(t.name)}</a></td><td class="text-end">${t.partitions}</td><td class="text-end">${t.replication_factor}</td>
      <td class="text-end">${fmtBytes(t.size_bytes)}</td><td class="text-end">${fmtInt(t.messages)}</td><td class="text-end">${t.records_per_second == null ? '–' : fmt.decimal(t.records_per_second, 1)}</td>
      <td class="text-end text-nowrap"><a class="btn btn-sm btn-outline-secondary" href="#/messages/${enc(t.name)}">${TEXT.messages}</a>
      <button class="btn btn-sm btn-outline-danger" data-delete-topic="${esc(t.name)}">${TEXT.del}</button></td></tr>`).join('')
      || `<tr><td colspan="7" class="text-body-secondary">${TEXT.noTopics}</td></tr>`;
  }
  async function deleteTopic(name) {
    if (!window.confirm(TEXT.confirmDeleteTopic(name))) return;
    try { await api('DELETE', `/api/admin/topics/${enc(name)}`); toast(TEXT.deleted(name)); location.hash = '#/topics'; loadTopics().catch(fail); } catch (e) { fail(e); }
  }
  function bindTopics() {
    $('#topics-internal').addEventListener('change', () => loadTopics().catch(fail));
    $('#page-topics').addEventListener('click', (e) => {
      const b = e.target.closest('[data-delete-topic]');
      if (b) deleteTopic(b.dataset.deleteTopic);
    });
    $('#topic-create').addEventListener('submit', async (e) => {
      e.preventDefault();
      const configs = {};
      for (const line of $('#topic-configs').value.split('\n')) {
        const i = line.indexOf('=');
        if (i > 0) configs[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
      const name = $('#topic-name').value.trim();
      try {
        await api('POST', '/api/admin/topics', { name, partitions: +$('#topic-partitions').value || 1, replication_factor: +$('#topic-rf').value || -1, configs });
        toast(TEXT.created(name));
        $('#topic-name').value = '';
        await loadTopics();
      } catch (ex) { fail(ex); }
    });
  }
  async function showTopic(name) {
    const box = $('#console-topic-detail');
    box.innerHTML = `<p class="text-body-secondary">${TEXT.loading}</p>`;
    const [t, c] = await Promise.all([api('GET', `/api/admin/topics/${enc(name)}`), api('GET', `/api/admin/topics/${enc(name)}/configs`)]);
    box.innerHTML = `<div class="d-flex gap-2 align-items-center mb-2"><a href="#/topics">${TEXT.back}</a><h2 class="h5 m-0 me-auto">${esc(t.name)}</h2>
      <a class="btn btn-sm btn-outline-secondary" href="#/messages/${enc(t.name)}">${TEXT.messages}</a>
      <button class="btn btn-sm btn-outline-danger" data-delete-topic="${esc(t.name)}">${TEXT.del}</button></div>
      <div class="row g-3"><div class="col-xl-7"><div class="card mb-3"><div class="card-header">${TEXT.partitions}</div><div class="table-responsive"><table class="table table-sm mb-0" id="topic-partitions-table">
      <thead><tr><th class="text-end">${TEXT.partition}</th><th class="text-end">${TEXT.leader}</th><th>${TEXT.replicas}</th><th>${TEXT.isr}</th><th class="text-end">${TEXT.logStart}</th><th class="text-end">${TEXT.logEnd}</th><th class="text-end">${TEXT.hw}</th><th class="text-end">${TEXT.size}</th></tr></thead><tbody>
      ${t.partition_details.map((p) => `<tr><td class="text-end">${p.partition}</td><td class="text-end">${p.leader}</td><td>${p.replicas.join(', ')}</td><td class="${p.isr.length < p.replicas.length ? 'text-danger' : ''}">${p.isr.join(', ')}</td><td class="text-end">${fmtInt(p.log_start_offset)}</td><td class="text-end">${fmtInt(p.log_end_offset)}</td><td class="text-end">${fmtInt(p.high_watermark)}</td><td class="text-end">${fmtBytes(p.size_bytes)}</td></tr>`).join('')}
      </tbody></table></div></div>
      <div class="card" data-need="admin"><div class="card-header">${TEXT.addPartitions}</div><div class="card-body"><form class="d-flex gap-2 align-items-end" id="topic-grow">
      <div><label class="form-label" for="topic-grow-count">${TEXT.newTotal}</label><input class="form-control" id="topic-grow-count" type="number" min="${t.partitions + 1}" value="${t.partitions + 1}"></div>
      <button class="btn btn-outline-primary" type="submit">${TEXT.addPartitions}</button></form></div></div></div>
      <div class="col-xl-5"><div class="card"><div class="card-header">${TEXT.configs}</div><form id="topic-configs-form"><div class="table-responsive configs-box"><table class="table table-sm align-middle mb-0"><tbody>
      ${c.configs.map((e) => `<tr><td class="mono small">${esc(e.name)}</td><td><input class="form-control form-control-sm mono" data-config="${esc(e.name)}" data-initial="${esc(e.value ?? '')}" value="${esc(e.value ?? '')}" ${e.read_only ? 'disabled' : ''}></td>
        <td class="small text-body-secondary">${e.default ? TEXT.resetDefault : `<button type="button" class="btn btn-sm btn-link p-0" data-config-reset="${esc(e.name)}">${TEXT.resetDefault}</button>`}</td></tr>`).join('')}
      </tbody></table></div><div class="card-footer"><button class="btn btn-sm btn-primary" type="submit">${TEXT.save}</button></div></form></div></div></div>`;
    $('#topic-grow').addEventListener('submit', async (e) => {
      e.preventDefault();
      const count = +$('#topic-grow-count').value;
      try { await api('POST', `/api/admin/topics/${enc(name)}/partitions`, { count }); toast(TEXT.grown(count)); showTopic(name).catch(fail); } catch (ex) { fail(ex); }
    });
    const form = $('#topic-configs-form');
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const set = {};
      for (const input of form.querySelectorAll('[data-config]')) if (!input.disabled && input.value !== input.dataset.initial) set[input.dataset.config] = input.value;
      try { await api('PATCH', `/api/admin/topics/${enc(name)}/configs`, { set }); toast(TEXT.saved); showTopic(name).catch(fail); } catch (ex) { fail(ex); }
    });
    form.addEventListener('click', async (e) => {
      const b = e.target.closest('[data-config-reset]');
      if (!b) return;
      try { await api('PATCH', `/api/admin/topics/${enc(name)}/configs`, { delete: [b.dataset.configReset] }); toast(TEXT.saved); showTopic(name).catch(fail); } catch (ex) { fail(ex); }
    });
  }

  // ------------------------------------------------------------ messages
  const msg = { records: [], cursor: null, next: null, tailTimer: null, topic: null, view: 'json', selected: null };
  const localMs = (v) => (v ? new Date(v).getTime() : null);
  function msgParams() {
    const from = localMs($('#msg-from').value);
    const to = localMs($('#msg-to').value);
    return {
      partition: $('#msg-partition').value, order: $('#msg-order').value, offset: $('#msg-offset').value,
      from_ts: from, to_ts: to, key: $('#msg-key').value, header: $('#msg-header').value.trim(),
      jsonpath: $('#msg-jsonpath').value.trim(), limit: $('#msg-limit').value,
    };
  }
  const qs = (o) => { const q = new URLSearchParams(); for (const [k, v] of Object.entries(o)) if (v != null && v !== '') q.set(k, v); return q.toString(); };
  const textOf = (b) => (b == null ? '' : b.text != null ? b.text : atob(b.base64));
  const bytesOf = (b) => (b == null ? new Uint8Array() : b.text != null ? new TextEncoder().encode(b.text) : Uint8Array.from(atob(b.base64), (c) => c.charCodeAt(0)));
  const preview = (b) => { const s = textOf(b); return s.length > 120 ? `${s.slice(0, 120)}…` : s; };
  function recordRow(r, i) {
    return `<tr data-record="${i}" class="${msg.selected === i ? 'table-active' : ''}"><td class="text-end">${r.partition}</td><td class="text-end">${r.offset}</td><td class="text-nowrap small">${esc(fmtDate(r.timestamp))}</td>
      <td class="mono small">${esc(preview(r.key))}</td><td class="mono small text-truncate value-cell">${esc(preview(r.value))}</td><td class="text-end">${r.headers.length}</td></tr>`;
  }
  function drawRecords() {
    $('#msg-table tbody').innerHTML = msg.records.map(recordRow).join('') || `<tr><td colspan="6" class="text-body-secondary">${TEXT.noRecords}</td></tr>`;
    $('#msg-next').disabled = !msg.next;
  }
  async function searchRecords(append) {
    const topic = $('#msg-topic').value;
    if (!topic) return;
    const p = msgParams();
    if (append) { p.cursor = msg.next; delete p.offset; }
    const r = await api('GET', `/api/admin/topics/${enc(topic)}/records?${qs(p)}`);
    msg.records = append ? msg.records.concat(r.records) : r.records;
    if (!append) { msg.selected = null; $('#msg-detail').hidden = true; }
    msg.next = r.next_cursor;
    // A live tail reads from each partition's high watermark onwards.
    msg.cursor = r.partitions.map((b) => `${b.partition}:${b.high_watermark}`).join(',');
    $('#msg-info').textContent = TEXT.scanned(fmtInt(r.scanned), fmtInt(r.elapsed_ms));
    drawRecords();
  }
  async function tailOnce() {
    const topic = $('#msg-topic').value;
    const p = msgParams();
    const r = await api('GET', `/api/admin/topics/${enc(topic)}/records?${qs({ ...p, order: 'oldest', offset: '', from_ts: p.from_ts, cursor: msg.cursor })}`);
    msg.cursor = r.cursor;
    if (r.records.length) {
      msg.records = r.records.slice().reverse().concat(msg.records).slice(0, 1000);
      if (msg.selected != null) msg.selected += r.records.length;
      drawRecords();
    }
  }
  function setTail(on) {
    clearTimeout(msg.tailTimer);
    msg.tailTimer = null;
    if (!on) return;
    const loop = async () => {
      if (!$('#msg-tail').checked || !isShown('messages')) return;
      try { await tailOnce(); } catch (e) { fail(e); }
      msg.tailTimer = setTimeout(loop, 1000);
    };
    (msg.cursor ? Promise.resolve() : searchRecords(false)).then(loop).catch(fail);
  }
  function jsonTree(v, depth = 0) {
    if (v === null || typeof v !== 'object') return `<span class="json-${v === null ? 'null' : typeof v}">${esc(JSON.stringify(v))}</span>`;
    const entries = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
    const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
    if (!entries.length) return `${open}${close}`;
    const items = entries.map(([k, x]) => `<div class="json-item">${Array.isArray(v) ? '' : `<span class="json-key">${esc(JSON.stringify(k))}</span>: `}${jsonTree(x, depth + 1)}</div>`).join('');
    return `<details class="json-node" ${depth < 3 ? 'open' : ''}><summary>${open}<span class="json-count">${entries.length}</span></summary>${items}${close}</details>`;
  }
  const hexDump = (bytes) => {
    const lines = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const row = Array.from(bytes.slice(i, i + 16));
      lines.push(`${i.toString(16).padStart(8, '0')}  ${row.map((b) => b.toString(16).padStart(2, '0')).join(' ').padEnd(48)}  ${row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('')}`);
    }
    return lines.join('\n');
  };
  function drawDetail() {
    const r = msg.records[msg.selected];
    const box = $('#msg-detail');
    if (!r) { box.hidden = true; return; }
    box.hidden = false;
    const text = textOf(r.value);
    let body;
    if (msg.view === 'json') {
      try { body = `<div class="json-tree mono small">${jsonTree(JSON.parse(text))}</div>`; } catch { body = `<pre class="mono small mb-0">${esc(text)}</pre>`; }
    } else if (msg.view === 'hex') body = `<pre class="mono small mb-0">${esc(hexDump(bytesOf(r.value)))}</pre>`;
    else body = `<pre class="mono small mb-0 text-wrap">${esc(text)}</pre>`;
    box.innerHTML = `<div class="card-header d-flex flex-wrap gap-2 align-items-center"><span class="me-auto">${TEXT.partition} ${r.partition} · ${TEXT.offset} ${r.offset} · ${esc(fmtDate(r.timestamp))}</span>
      <div class="btn-group btn-group-sm" role="group">${['json', 'text', 'hex'].map((v) => `<button type="button" class="btn btn-outline-secondary ${msg.view === v ? 'active' : ''}" data-view="${v}">${TEXT[v]}</button>`).join('')}</div>
      <button type="button" class="btn btn-sm btn-outline-secondary" id="msg-copy">${TEXT.copy}</button></div>
      <div class="card-body"><div class="mb-2"><strong>${TEXT.key}</strong> <span class="mono">${esc(textOf(r.key))}</span></div>
      <div class="mb-2"><strong>${TEXT.headers}</strong> ${r.headers.map((h) => `<span class="badge text-bg-light border mono" data-header="${esc(h.key)}">${esc(h.key)}=${esc(textOf(h.value))}</span>`).join(' ') || '–'}</div>${body}</div>`;
  }
  function bindMessages() {
    $('#msg-form').addEventListener('submit', (e) => { e.preventDefault(); msg.cursor = null; searchRecords(false).catch(fail); });
    $('#msg-next').addEventListener('click', () => searchRecords(true).catch(fail));
    $('#msg-tail').addEventListener('change', (e) => setTail(e.target.checked));
    $('#msg-topic').addEventListener('change', () => { location.hash = `#/messages/${enc($('#msg-topic').value)}`; });
    $('#msg-table').addEventListener('click', (e) => {
      const tr = e.target.closest('[data-record]');
      if (!tr) return;
      msg.selected = +tr.dataset.record;
      drawRecords(); drawDetail();
    });
    $('#msg-detail').addEventListener('click', async (e) => {
      const v = e.target.closest('[data-view]');
      if (v) { msg.view = v.dataset.view; drawDetail(); return; }
      if (e.target.id === 'msg-copy') {
        const r = msg.records[msg.selected];
        try { await navigator.clipboard.writeText(textOf(r.value)); toast(TEXT.copied); } catch (ex) { fail(ex); }
      }
    });
    $('#msg-download').addEventListener('click', () => {
      const lines = msg.records.map((r) => JSON.stringify({ partition: r.partition, offset: r.offset, timestamp: r.timestamp, key: textOf(r.key), value: textOf(r.value), headers: Object.fromEntries(r.headers.map((h) => [h.key, textOf(h.value)])) }));
      const url = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], { type: 'application/x-ndjson' }));
      const a = document.createElement('a');
      a.href = url; a.download = `${$('#msg-topic').value}.jsonl`;
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    });
  }
  async function showMessages(topic) {
    const r = await api('GET', '/api/admin/topics?internal=true');
    const sel = $('#msg-topic');
    const chosen = topic || msg.topic || (r.topics.find((t) => !t.internal) || {}).name || '';
    sel.innerHTML = r.topics.map((t) => `<option ${t.name === chosen ? 'selected' : ''}>${esc(t.name)}</option>`).join('');
    const t = r.topics.find((x) => x.name === chosen);
    if (chosen !== msg.topic) {
      msg.topic = chosen; msg.cursor = null; msg.records = []; msg.selected = null;
      $('#msg-partition').innerHTML = `<option value="">${TEXT.allPartitions}</option>` + Array.from({ length: t ? t.partitions : 0 }, (_, i) => `<option>${i}</option>`).join('');
      await searchRecords(false);
    }
    if ($('#msg-tail').checked && !msg.tailTimer) setTail(true);
  }

  // ------------------------------------------------------------ produce
  function addHeaderRow(k = '', v = '') {
    const row = document.createElement('div');
    row.className = 'row g-1 mb-1 header-row';
    row.innerHTML = `<div class="col-5"><input class="form-control form-control-sm" name="hkey" placeholder="${TEXT.name}" value="${esc(k)}" aria-label="${TEXT.name}"></div>
      <div class="col-5"><input class="form-control form-control-sm" name="hvalue" placeholder="${TEXT.value}" value="${esc(v)}" aria-label="${TEXT.value}"></div>
      <div class="col-2 d-grid"><button type="button" class="btn btn-sm btn-outline-danger" data-remove aria-label="${TEXT.del}">&times;</button></div>`;
    $('#produce-headers').appendChild(row);
  }
  function bindProduce() {
    $('#produce-add-header').addEventListener('click', () => addHeaderRow());
    $('#produce-headers').addEventListener('click', (e) => { if (e.target.closest('[data-remove]')) e.target.closest('.header-row').remove(); });
    $('#produce-value').addEventListener('input', () => {
      let ok = true;
      try { JSON.parse($('#produce-value').value); } catch { ok = false; }
      $('#produce-json-note').hidden = ok || !$('#produce-value').value.trim();
    });
    $('#produce-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const headers = Array.from(document.querySelectorAll('#produce-headers .header-row'))
        .map((row) => ({ key: row.querySelector('[name=hkey]').value.trim(), value: row.querySelector('[name=hvalue]').value }))
        .filter((h) => h.key);
      const part = $('#produce-partition').value;
      const key = $('#produce-key').value;
      try {
        const r = await api('POST', `/api/admin/topics/${enc($('#msg-topic').value)}/records`, {
          key: key === '' ? null : key, value: $('#produce-value').value, headers, partition: part === '' ? null : +part,
        });
        toast(TEXT.sent(r.partition, r.offset));
        if (!$('#msg-tail').checked) searchRecords(false).catch(fail);
      } catch (ex) { fail(ex); }
    });
  }

  // ------------------------------------------------------------ groups
  async function loadGroups() {
    const r = await api('GET', '/api/admin/groups');
    $('#console-groups tbody').innerHTML = r.groups.map((g) => `<tr data-group="${esc(g.group_id)}"><td><a class="fw-semibold" href="#/groups/${enc(g.group_id)}">${esc(g.group_id)}</a></td>
      <td>${esc(g.state)}</td><td>${esc(g.type)}</td><td class="text-end">${fmtInt(g.members)}</td><td class="text-end">${g.coordinator}</td><td class="text-end">${fmtInt(g.total_lag)}</td></tr>`).join('')
      || `<tr><td colspan="6" class="text-body-secondary">${TEXT.noGroups}</td></tr>`;
  }
  async function showGroup(id) {
    const box = $('#console-group-detail');
    box.innerHTML = `<p class="text-body-secondary">${TEXT.loading}</p>`;
    const [g, topics] = await Promise.all([api('GET', `/api/admin/groups/${enc(id)}`), api('GET', '/api/admin/topics')]);
    const groupTopics = [...new Set(g.offsets.map((o) => o.topic))];
    const topicOptions = (list) => list.map((t) => `<option>${esc(t)}</option>`).join('');
    box.innerHTML = `<div class="d-flex gap-2 align-items-center mb-2"><a href="#/groups">${TEXT.backGroups}</a><h2 class="h5 m-0 me-auto">${esc(g.group_id)} <span class="badge text-bg-secondary">${esc(g.state)}</span> <span class="badge text-bg-light border">${esc(g.type)}</span></h2>
      <button class="btn btn-sm btn-outline-danger" id="group-delete">${TEXT.deleteGroup}</button></div>
      <div class="row g-3"><div class="col-xl-7">
      <div class="card mb-3"><div class="card-header">${TEXT.members}</div><div class="table-responsive"><table class="table table-sm mb-0"><thead><tr><th>${TEXT.member}</th><th>${TEXT.client}</th><th>${TEXT.host}</th><th>${TEXT.assignment}</th></tr></thead><tbody>
      ${g.members.map((m) => `<tr><td class="mono small">${esc(m.member_id)}</td><td>${esc(m.client_id)}</td><td>${esc(m.client_host)}</td><td>${m.assignment.map((a) => `${esc(a.topic)}: ${a.partitions.join(',')}`).join('; ')}</td></tr>`).join('') || `<tr><td colspan="4" class="text-body-secondary">${TEXT.noMembers}</td></tr>`}
      </tbody></table></div></div>
      <div class="card"><div class="card-header">${TEXT.lag}</div><div class="table-responsive"><table class="table table-sm mb-0" id="group-offsets"><thead><tr><th>${TEXT.topic}</th><th class="text-end">${TEXT.partition}</th><th class="text-end">${TEXT.committed}</th><th class="text-end">${TEXT.hw}</th><th class="text-end">${TEXT.lag}</th><th>${TEXT.member}</th></tr></thead><tbody>
      ${g.offsets.map((o) => `<tr><td>${esc(o.topic)}</td><td class="text-end">${o.partition}</td><td class="text-end">${fmtInt(o.committed)}</td><td class="text-end">${fmtInt(o.high_watermark)}${o.last_stable_offset != null && o.last_stable_offset !== o.high_watermark ? ` <span class="small text-body-secondary" title="${TEXT.lso}">(${TEXT.lso} ${fmtInt(o.last_stable_offset)})</span>` : ''}</td><td class="text-end ${o.lag > 0 ? 'text-warning-emphasis fw-semibold' : ''}">${fmtInt(o.lag)}</td><td class="mono small">${esc(o.member_id || '')}</td></tr>`).join('')}
      </tbody></table></div></div></div>
      <div class="col-xl-5"><div class="card mb-3"><div class="card-header">${TEXT.resetOffsets}</div><div class="card-body"><form id="group-reset" novalidate>
        <div class="mb-2"><label class="form-label" for="reset-topic">${TEXT.topic}</label><select class="form-select" id="reset-topic">${topicOptions([...new Set([...groupTopics, ...topics.topics.map((t) => t.name)])])}</select></div>
        <div class="row g-2 mb-2"><div class="col-6"><label class="form-label" for="reset-to">${TEXT.resetTo}</label><select class="form-select" id="reset-to">
          <option value="earliest">${TEXT.earliest}</option><option value="latest">${TEXT.latest}</option><option value="offset">${TEXT.toOffset}</option><option value="timestamp">${TEXT.toTimestamp}</option><option value="shift">${TEXT.shift}</option></select></div>
          <div class="col-6" id="reset-value-box" hidden><label class="form-label" for="reset-value">&nbsp;</label><input class="form-control" id="reset-value" type="number"></div>
          <div class="col-6" id="reset-time-box" hidden><label class="form-label" for="reset-time">&nbsp;</label><input class="form-control" id="reset-time" type="datetime-local" step="1"></div></div>
        <div class="d-flex gap-2"><button class="btn btn-outline-primary" type="button" id="reset-preview">${TEXT.preview}</button><button class="btn btn-primary" type="submit" id="reset-apply">${TEXT.apply}</button></div>
        <div id="reset-result" class="mt-2"></div></form></div></div>
      <div class="card"><div class="card-header">${TEXT.deleteOffsets}</div><div class="card-body"><form class="d-flex gap-2" id="group-delete-offsets">
        <select class="form-select" id="delete-offsets-topic" aria-label="${TEXT.topic}">${topicOptions(groupTopics)}</select><button class="btn btn-outline-danger" type="submit">${TEXT.del}</button></form></div></div></div></div>`;
    const to = $('#reset-to');
    const sync = () => { $('#reset-value-box').hidden = !['offset', 'shift'].includes(to.value); $('#reset-time-box').hidden = to.value !== 'timestamp'; };
    to.addEventListener('change', sync); sync();
    const reset = async (dryRun) => {
      const body = { topic: $('#reset-topic').value, to: to.value, dry_run: dryRun };
      if (to.value === 'offset') body.offset = +$('#reset-value').value;
      if (to.value === 'shift') body.shift = +$('#reset-value').value;
      if (to.value === 'timestamp') body.timestamp = localMs($('#reset-time').value);
      const r = await api('POST', `/api/admin/groups/${enc(id)}/reset-offsets`, body);
      $('#reset-result').innerHTML = `<table class="table table-sm mb-0" id="reset-table"><thead><tr><th class="text-end">${TEXT.partition}</th><th class="text-end">${TEXT.previous}</th><th class="text-end">${TEXT.newOffset}</th></tr></thead><tbody>
        ${r.partitions.map((p) => `<tr><td class="text-end">${p.partition}</td><td class="text-end">${fmtInt(p.previous)}</td><td class="text-end fw-semibold">${fmtInt(p.offset)}</td></tr>`).join('')}</tbody></table>`;
      if (!dryRun) { toast(TEXT.applied); }
    };
    $('#reset-preview').addEventListener('click', () => reset(true).catch(fail));
    $('#group-reset').addEventListener('submit', (e) => { e.preventDefault(); reset(false).catch(fail); });
    $('#group-delete-offsets').addEventListener('submit', async (e) => {
      e.preventDefault();
      const t = $('#delete-offsets-topic').value;
      if (!t || !window.confirm(TEXT.confirmDeleteOffsets(id, t))) return;
      try { await api('DELETE', `/api/admin/groups/${enc(id)}/offsets/${enc(t)}`); toast(TEXT.deleted(t)); showGroup(id).catch(fail); } catch (ex) { fail(ex); }
    });
    $('#group-delete').addEventListener('click', async () => {
      if (!window.confirm(TEXT.confirmDeleteGroup(id))) return;
      try { await api('DELETE', `/api/admin/groups/${enc(id)}`); toast(TEXT.deleted(id)); location.hash = '#/groups'; } catch (ex) { fail(ex); }
    });
  }

  // ------------------------------------------------------------ brokers
  async function loadBrokers() {
    const r = await api('GET', '/api/admin/brokers');
    $('#console-brokers-mode').textContent = `${r.cluster_id || ''} · ${TEXT.modes[r.mode] ?? r.mode}`;
    $('#console-brokers tbody').innerHTML = r.brokers.map((b) => `<tr data-broker="${b.id}"><td>${b.id}${b.this_node ? ` <span class="badge text-bg-light border">${TEXT.thisNode}</span>` : ''}</td><td class="mono small">${esc(b.host)}:${b.port}</td>
      <td><span class="badge text-bg-${b.alive ? 'success' : 'danger'}">${b.alive ? TEXT.yes : TEXT.no}</span></td><td>${b.controller ? TEXT.yes : ''}</td>
      <td>${b.raft_role == null ? `<span class="text-body-secondary">${r.mode === 'single-node' ? TEXT.noRaft : '–'}</span>` : esc(b.raft_role)}</td><td class="text-end">${b.raft_term ?? '–'}</td>
      <td class="text-end">${fmtInt(b.leaders)}</td><td class="text-end">${fmtInt(b.replicas)}</td><td class="text-end">${fmtBytes(b.disk_used_bytes)}</td><td>${esc(b.version ?? '–')}</td><td class="text-end">${fmtUptime(b.uptime_s)}</td></tr>`).join('');
  }

  // ------------------------------------------------------------ routing
  const isShown = (page) => { const s = $(`#page-${page}`); return s && !s.hidden; };
  let timer = null;
  function show(page, parts, apiFn) {
    api = apiFn;
    clearInterval(timer);
    if (page !== 'messages') setTail(false);
    if (page === 'topics') {
      const name = parts[1];
      $('#console-topic-list').hidden = !!name;
      $('#console-topic-detail').hidden = !name;
      if (name) showTopic(name).catch(fail);
      else { loadTopics().catch(fail); timer = setInterval(() => loadTopics().catch(() => {}), 5000); }
    } else if (page === 'messages') {
      showMessages(parts[1]).catch(fail);
    } else if (page === 'groups') {
      const id = parts[1];
      $('#console-group-list').hidden = !!id;
      $('#console-group-detail').hidden = !id;
      if (id) showGroup(id).catch(fail); else loadGroups().catch(fail);
    } else if (page === 'brokers') {
      loadBrokers().catch(fail);
      timer = setInterval(() => loadBrokers().catch(() => {}), 5000);
    }
  }
  window.sluiceConsole = { pages: PAGES, show, text: TEXT };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', build); else build();
})();
