// Sluice dashboard: languages, number and date formats, and the colour theme.
// Loaded before the page is drawn (no `defer`), so the saved theme and
// language apply from the first paint.
//
// Adding words: `sluiceI18n.add({ en: { 'topics.title': 'Topics' }, fr: { 'topics.title': 'Sujets' } })`
// from any script loaded after this one; then `t('topics.title')` in code or
// `data-i18n="topics.title"` in HTML (`data-i18n-attr="placeholder:key; aria-label:key"`
// for attributes). A key missing in French falls back to English, then to the key.
'use strict';
(() => {
  const LOCALES = { en: 'en-GB', fr: 'fr-FR' };
  const LOCALE_KEY = 'sluice.locale';
  const THEME_KEY = 'sluice.theme';
  const stored = (key) => { try { return localStorage.getItem(key); } catch { return null; } };
  const save = (key, value) => { try { localStorage.setItem(key, value); } catch { /* private mode: not remembered */ } };

  const dict = { en: {}, fr: {} };
  const add = (entries) => { for (const [lang, words] of Object.entries(entries)) Object.assign(dict[lang] || (dict[lang] = {}), words); };

  let lang = stored(LOCALE_KEY);
  if (!LOCALES[lang]) lang = String(navigator.language || 'en').toLowerCase().startsWith('fr') ? 'fr' : 'en';
  const locale = LOCALES[lang];

  // `t('key', {name: value})`: the word in the current language, `{name}` filled in.
  const t = (key, params) => {
    let s = dict[lang][key] ?? dict.en[key] ?? key;
    if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (params[k] != null ? String(params[k]) : m));
    return s;
  };
  // True if the current language has its own word for `key`.
  const has = (key) => key in dict[lang];
  // A word that may not be in the dictionary: a status or method name.
  const word = (prefix, value) => {
    const key = `${prefix}.${value}`;
    return dict[lang][key] ?? dict.en[key] ?? String(value ?? '').replace(/_/g, ' ');
  };

  // One formatter each, made once (building one per call is slow), for the locale.
  const number = (opts) => new Intl.NumberFormat(locale, opts);
  const date = (opts) => new Intl.DateTimeFormat(locale, opts);
  const intFormat = number({ maximumFractionDigits: 0 });
  const decimals = [0, 1, 2].map((d) => number({ minimumFractionDigits: d, maximumFractionDigits: d }));
  const percentFormat = number({ style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const timeFormat = date({ hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const dateTimeFormat = date({ dateStyle: 'short', timeStyle: 'medium', hour12: false });
  const minuteFormat = date({ hour: '2-digit', minute: '2-digit', hour12: false });
  const moneyFormats = new Map();
  const fmt = {
    money(v, currency = 'EUR') {
      let f = moneyFormats.get(currency);
      if (!f) {
        try { f = number({ style: 'currency', currency }); } catch { f = { format: (x) => `${decimals[2].format(x)} ${currency}` }; }
        moneyFormats.set(currency, f);
      }
      return f.format(v);
    },
    int: (v) => intFormat.format(v),
    decimal: (v, digits) => (decimals[digits] || number({ minimumFractionDigits: digits, maximumFractionDigits: digits })).format(v),
    percent: (ratio) => percentFormat.format(ratio),
    time: (ms) => (ms ? timeFormat.format(ms) : ''),
    dateTime: (ms) => (ms ? dateTimeFormat.format(ms) : ''),
    minute: (ms) => minuteFormat.format(ms),
  };

  // Fill every `data-i18n` and `data-i18n-attr` element under `root`.
  function apply(root = document) {
    for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of root.querySelectorAll('[data-i18n-attr]')) {
      for (const pair of el.dataset.i18nAttr.split(';')) {
        const [attr, key] = pair.split(':').map((x) => x.trim());
        if (attr && key) el.setAttribute(attr, t(key));
      }
    }
  }
  // The page is drawn again in the other language (every label, number and date).
  function setLanguage(next) {
    if (!LOCALES[next] || next === lang) return;
    save(LOCALE_KEY, next);
    location.reload();
  }

  // Theme: `light` or `dark` (Bootstrap's `data-bs-theme`); the system's
  // preference until the switch is used.
  let theme = stored(THEME_KEY);
  if (theme !== 'light' && theme !== 'dark') theme = window.matchMedia?.('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  const html = document.documentElement;
  html.lang = lang;
  html.dataset.bsTheme = theme;
  function setTheme(next) {
    theme = next === 'dark' ? 'dark' : 'light';
    save(THEME_KEY, theme);
    html.dataset.bsTheme = theme;
    document.dispatchEvent(new CustomEvent('sluice:theme', { detail: theme }));
  }

  window.sluiceI18n = {
    add, t, has, word, fmt, apply, setLanguage, setTheme,
    get lang() { return lang; },
    get locale() { return locale; },
    get theme() { return theme; },
    languages: Object.keys(LOCALES),
  };

  add({
    en: {
      'app.title': 'Sluice · {page}',
      'nav.menu': 'Menu', 'nav.dashboard': 'Dashboard', 'nav.orders': 'Orders', 'nav.payments': 'Payments', 'nav.deliveries': 'Deliveries', 'nav.notifications': 'Notifications', 'nav.cluster': 'Cluster',
      'nav.topics': 'Topics', 'nav.messages': 'Messages', 'nav.groups': 'Groups', 'nav.brokers': 'Brokers',
      'nav.language': 'Language', 'nav.theme.dark': 'Dark theme', 'nav.theme.light': 'Light theme', 'nav.logout': 'Log out',
      'ws.title': 'Live updates', 'ws.connecting': 'connecting', 'ws.connected': 'connected', 'ws.reconnecting': 'reconnecting',
      'login.title': 'Log in', 'login.help': 'This node asks for an API token (made with sluice tokens add NAME --role viewer|operator|admin).', 'login.token': 'Token', 'login.submit': 'Log in', 'login.invalid': 'This token is not valid.',
      'stat.orders': 'Orders', 'stat.revenue': 'Revenue', 'stat.revenue.sub': 'authorized payments', 'stat.revenue.sub.many': 'authorized, per currency',
      'stat.success': 'Payment success', 'stat.success.sub': '{ok} ok · {failed} failed', 'stat.inflight': 'Deliveries in flight', 'stat.inflight.sub': '{n} delivered',
      'stat.eps': 'Events / s', 'stat.eps.sub': 'shop events, last 5 s',
      'sim.toggle': 'Auto-generate traffic', 'sim.rate': 'Rate', 'sim.rate.value': '{n} events/s', 'sim.note': 'orders, payments and deliveries at about {n} events/s', 'sim.error': 'Simulator: {message}',
      'chart.timeline': 'Orders and revenue per minute', 'chart.payments': 'Payments by method and status', 'chart.deliveries': 'Deliveries by status',
      'chart.orders': 'Orders', 'chart.orders.axis': 'orders', 'chart.revenue.axis': 'revenue (per currency)', 'chart.revenue': 'Revenue {currency}', 'chart.payments.note': 'recent payments seen by this page',
      'feed.title': 'Live events', 'feed.waiting': 'Waiting for events…', 'feed.count': '{n} events',
      'feed.new_order': 'Order {id} by {customer} · {total}', 'feed.order_updated': 'Order {id} is {status}', 'feed.payment': 'Payment {status} {amount} by {method} for {id}',
      'feed.delivery': 'Delivery {id} {status}', 'feed.delivery.in': 'Delivery {id} {status} in {location}',
      'orders.new': 'New order', 'orders.customer': 'Customer', 'orders.currency': 'Currency', 'orders.items': 'Items', 'orders.addItem': 'Add item', 'orders.total': 'Total', 'orders.create': 'Create order',
      'orders.title': 'Orders', 'orders.search': 'Search customer or id', 'orders.filterStatus': 'Filter by status', 'orders.allStatuses': 'All statuses',
      'col.order': 'Order', 'col.customer': 'Customer', 'col.items': 'Items', 'col.total': 'Total', 'col.status': 'Status', 'col.created': 'Created', 'col.payment': 'Payment', 'col.amount': 'Amount', 'col.method': 'Method', 'col.time': 'Time',
      'col.carrier': 'Carrier', 'col.location': 'Location', 'col.updated': 'Updated', 'col.actions': 'Actions', 'col.severity': 'Severity', 'col.kind': 'Kind', 'col.message': 'Message',
      'sort.by': 'Sort by {column}',
      'orders.newer': 'Newer', 'orders.older': 'Older', 'orders.empty': 'No orders yet.', 'orders.info': 'Page {page} · {shown} shown', 'orders.info.total': 'Page {page} · {shown} shown of {total}',
      'list.info': '{shown} shown', 'list.info.total': '{shown} shown of {total}',
      'pause.pause': 'Pause live updates', 'pause.resume': 'Resume live updates', 'pause.resume.new': 'Resume live updates ({n} new)',
      'item.sku': 'SKU', 'item.quantity': 'Quantity', 'item.price': 'Price', 'item.remove': 'Remove item',
      'order.accepted': 'Order accepted', 'order.notFound': 'Order {id} not found.', 'order.title': 'Order', 'order.close': 'Close', 'detail.qty': 'Qty', 'detail.payments': 'Payments', 'detail.none': 'None yet.', 'detail.pay': 'Pay {amount}', 'detail.cancel': 'Cancel order',
      'detail.refund': 'Refund {amount}', 'detail.refund.confirm': 'Confirm refund of {amount}', 'detail.refund.accepted': 'Refund accepted', 'detail.delivery': 'Delivery', 'detail.advance': 'Advance to {status}',
      'detail.refund.reason': 'refunded from the dashboard', 'detail.cancel.reason': 'cancelled from the dashboard',
      'pay.title': 'Pay an order', 'pay.order': 'Order id', 'pay.order.missing': 'Choose the order to pay.', 'pay.amount': 'Amount', 'pay.amount.help': 'Exactly the amount due on the order.', 'pay.method': 'Method', 'pay.outcome': 'Outcome', 'pay.submit': 'Pay',
      'pay.accepted': 'Payment accepted for', 'payments.title': 'Payments', 'payments.filterMethod': 'Filter by method', 'payments.allMethods': 'All methods', 'payments.empty': 'No payments yet.',
      'amount.required': 'An amount is required.', 'amount.notNumber': 'The amount must be a number, like {example}.', 'amount.negative': 'The amount cannot be negative.', 'amount.decimals': 'At most two decimals: {value} has {n}.',
      'form.customer.required': 'A customer is required.', 'form.sku.required': 'A SKU is required.', 'form.quantity.invalid': 'A whole number, 1 or more.', 'form.price.invalid': 'A price of 0 or more, like {example}.', 'form.price.decimals': 'At most two decimals.',
      'deliveries.title': 'Deliveries', 'deliveries.timeline': 'Timeline', 'deliveries.choose': 'Choose a delivery to see its steps.', 'deliveries.noSteps': 'No delivery steps yet.', 'deliveries.allCarriers': 'All carriers', 'deliveries.filterCarrier': 'Filter by carrier',
      'deliveries.from': 'From date', 'deliveries.to': 'To date', 'deliveries.empty': 'No deliveries match.', 'deliveries.markFailed': 'Mark failed', 'deliveries.error': 'Delivery {id}: {message}',
      'notifications.title': 'Notifications', 'notifications.empty': 'No notifications yet.', 'notifications.filterSeverity': 'Filter by severity', 'notifications.allSeverities': 'All severities',
      'cluster.title': 'Cluster', 'cluster.brokers': 'Brokers', 'cluster.updated': 'updated {time}', 'cluster.notUpdated': 'not updated: {message}', 'cluster.id': 'Id', 'cluster.kafka': 'Kafka address', 'cluster.http': 'HTTP address', 'cluster.alive': 'Alive', 'cluster.controller': 'Controller',
      'cluster.raftRole': 'Raft role', 'cluster.term': 'Term', 'cluster.raftOff': 'not running (single node)', 'cluster.thisNode': 'this node', 'cluster.up': 'alive', 'cluster.down': 'down', 'cluster.yes': 'yes', 'cluster.no': 'no', 'cluster.noBrokers': 'No brokers.',
      'cluster.groups': 'Consumer groups', 'cluster.group': 'Group', 'cluster.state': 'State', 'cluster.coordinator': 'Coordinator', 'cluster.members': 'Members', 'cluster.lag': 'Lag per partition', 'cluster.totalLag': 'Total lag', 'cluster.noCommits': 'no committed offsets', 'cluster.noGroups': 'No consumer groups.',
      'cluster.topics': 'Topics and partitions', 'cluster.internal': 'internal topics', 'cluster.topic': 'Topic', 'cluster.partition': 'Partition', 'cluster.leader': 'Leader', 'cluster.replicas': 'Replicas', 'cluster.isr': 'ISR', 'cluster.epoch': 'Epoch',
      'cluster.logStart': 'Log start', 'cluster.logEnd': 'Log end', 'cluster.hw': 'High watermark', 'cluster.rate': 'Records/s', 'cluster.noTopics': 'No topics.', 'cluster.internalBadge': 'internal', 'cluster.lagTitle': 'committed {committed} / end {end}',
      'error.unreachable': 'The server cannot be reached.', 'error.validation_failed': 'Some fields are not valid.', 'error.not_found': 'Not found.',
      'error.amount_due': 'The amount must be exactly what is due: {amount}.', 'error.amount_refundable': 'A refund must be exactly what was paid: {amount}.',
    },
    fr: {
      'app.title': 'Sluice · {page}',
      'nav.menu': 'Menu', 'nav.dashboard': 'Tableau de bord', 'nav.orders': 'Commandes', 'nav.payments': 'Paiements', 'nav.deliveries': 'Livraisons', 'nav.notifications': 'Notifications', 'nav.cluster': 'Cluster',
      'nav.topics': 'Topics', 'nav.messages': 'Messages', 'nav.groups': 'Groupes', 'nav.brokers': 'Brokers',
      'nav.language': 'Langue', 'nav.theme.dark': 'Thème sombre', 'nav.theme.light': 'Thème clair', 'nav.logout': 'Se déconnecter',
      'ws.title': 'Mises à jour en direct', 'ws.connecting': 'connexion', 'ws.connected': 'connecté', 'ws.reconnecting': 'reconnexion',
      'login.title': 'Connexion', 'login.help': 'Ce nœud demande un jeton d’API (créé avec sluice tokens add NOM --role viewer|operator|admin).', 'login.token': 'Jeton', 'login.submit': 'Se connecter', 'login.invalid': 'Ce jeton n’est pas valide.',
      'stat.orders': 'Commandes', 'stat.revenue': 'Chiffre d’affaires', 'stat.revenue.sub': 'paiements autorisés', 'stat.revenue.sub.many': 'autorisés, par devise',
      'stat.success': 'Paiements réussis', 'stat.success.sub': '{ok} réussis · {failed} échoués', 'stat.inflight': 'Livraisons en cours', 'stat.inflight.sub': '{n} livrées',
      'stat.eps': 'Événements / s', 'stat.eps.sub': 'événements de la boutique, 5 dernières s',
      'sim.toggle': 'Générer du trafic', 'sim.rate': 'Débit', 'sim.rate.value': '{n} événements/s', 'sim.note': 'commandes, paiements et livraisons à environ {n} événements/s', 'sim.error': 'Simulateur : {message}',
      'chart.timeline': 'Commandes et chiffre d’affaires par minute', 'chart.payments': 'Paiements par moyen et statut', 'chart.deliveries': 'Livraisons par statut',
      'chart.orders': 'Commandes', 'chart.orders.axis': 'commandes', 'chart.revenue.axis': 'chiffre d’affaires (par devise)', 'chart.revenue': 'Chiffre d’affaires {currency}', 'chart.payments.note': 'paiements récents vus par cette page',
      'feed.title': 'Événements en direct', 'feed.waiting': 'En attente d’événements…', 'feed.count': '{n} événements',
      'feed.new_order': 'Commande {id} de {customer} · {total}', 'feed.order_updated': 'Commande {id} : {status}', 'feed.payment': 'Paiement {status} {amount} par {method} pour {id}',
      'feed.delivery': 'Livraison {id} {status}', 'feed.delivery.in': 'Livraison {id} {status} à {location}',
      'orders.new': 'Nouvelle commande', 'orders.customer': 'Client', 'orders.currency': 'Devise', 'orders.items': 'Articles', 'orders.addItem': 'Ajouter un article', 'orders.total': 'Total', 'orders.create': 'Créer la commande',
      'orders.title': 'Commandes', 'orders.search': 'Chercher un client ou un id', 'orders.filterStatus': 'Filtrer par statut', 'orders.allStatuses': 'Tous les statuts',
      'col.order': 'Commande', 'col.customer': 'Client', 'col.items': 'Articles', 'col.total': 'Total', 'col.status': 'Statut', 'col.created': 'Créée', 'col.payment': 'Paiement', 'col.amount': 'Montant', 'col.method': 'Moyen', 'col.time': 'Heure',
      'col.carrier': 'Transporteur', 'col.location': 'Lieu', 'col.updated': 'Mise à jour', 'col.actions': 'Actions', 'col.severity': 'Gravité', 'col.kind': 'Type', 'col.message': 'Message',
      'sort.by': 'Trier par {column}',
      'orders.newer': 'Plus récentes', 'orders.older': 'Plus anciennes', 'orders.empty': 'Aucune commande pour l’instant.', 'orders.info': 'Page {page} · {shown} affichées', 'orders.info.total': 'Page {page} · {shown} affichées sur {total}',
      'list.info': '{shown} affichés', 'list.info.total': '{shown} affichés sur {total}',
      'pause.pause': 'Suspendre le direct', 'pause.resume': 'Reprendre le direct', 'pause.resume.new': 'Reprendre le direct ({n} nouveaux)',
      'item.sku': 'Référence', 'item.quantity': 'Quantité', 'item.price': 'Prix', 'item.remove': 'Retirer l’article',
      'order.accepted': 'Commande acceptée', 'order.notFound': 'Commande {id} introuvable.', 'order.title': 'Commande', 'order.close': 'Fermer', 'detail.qty': 'Qté', 'detail.payments': 'Paiements', 'detail.none': 'Aucun pour l’instant.', 'detail.pay': 'Payer {amount}', 'detail.cancel': 'Annuler la commande',
      'detail.refund': 'Rembourser {amount}', 'detail.refund.confirm': 'Confirmer le remboursement de {amount}', 'detail.refund.accepted': 'Remboursement accepté', 'detail.delivery': 'Livraison', 'detail.advance': 'Passer à « {status} »',
      'detail.refund.reason': 'remboursée depuis le tableau de bord', 'detail.cancel.reason': 'annulée depuis le tableau de bord',
      'pay.title': 'Payer une commande', 'pay.order': 'Id de commande', 'pay.order.missing': 'Choisissez la commande à payer.', 'pay.amount': 'Montant', 'pay.amount.help': 'Exactement le montant dû sur la commande.', 'pay.method': 'Moyen', 'pay.outcome': 'Résultat', 'pay.submit': 'Payer',
      'pay.accepted': 'Paiement accepté pour', 'payments.title': 'Paiements', 'payments.filterMethod': 'Filtrer par moyen', 'payments.allMethods': 'Tous les moyens', 'payments.empty': 'Aucun paiement pour l’instant.',
      'amount.required': 'Un montant est requis.', 'amount.notNumber': 'Le montant doit être un nombre, comme {example}.', 'amount.negative': 'Le montant ne peut pas être négatif.', 'amount.decimals': 'Deux décimales au plus : {value} en a {n}.',
      'form.customer.required': 'Un client est requis.', 'form.sku.required': 'Une référence est requise.', 'form.quantity.invalid': 'Un nombre entier, 1 ou plus.', 'form.price.invalid': 'Un prix de 0 ou plus, comme {example}.', 'form.price.decimals': 'Deux décimales au plus.',
      'deliveries.title': 'Livraisons', 'deliveries.timeline': 'Chronologie', 'deliveries.choose': 'Choisissez une livraison pour voir ses étapes.', 'deliveries.noSteps': 'Aucune étape de livraison pour l’instant.', 'deliveries.allCarriers': 'Tous les transporteurs', 'deliveries.filterCarrier': 'Filtrer par transporteur',
      'deliveries.from': 'Date de début', 'deliveries.to': 'Date de fin', 'deliveries.empty': 'Aucune livraison ne correspond.', 'deliveries.markFailed': 'Marquer en échec', 'deliveries.error': 'Livraison {id} : {message}',
      'notifications.title': 'Notifications', 'notifications.empty': 'Aucune notification pour l’instant.', 'notifications.filterSeverity': 'Filtrer par gravité', 'notifications.allSeverities': 'Toutes les gravités',
      'cluster.title': 'Cluster', 'cluster.brokers': 'Brokers', 'cluster.updated': 'mis à jour à {time}', 'cluster.notUpdated': 'pas mis à jour : {message}', 'cluster.id': 'Id', 'cluster.kafka': 'Adresse Kafka', 'cluster.http': 'Adresse HTTP', 'cluster.alive': 'En vie', 'cluster.controller': 'Contrôleur',
      'cluster.raftRole': 'Rôle Raft', 'cluster.term': 'Mandat', 'cluster.raftOff': 'Raft inactif (nœud unique)', 'cluster.thisNode': 'ce nœud', 'cluster.up': 'en vie', 'cluster.down': 'arrêté', 'cluster.yes': 'oui', 'cluster.no': 'non', 'cluster.noBrokers': 'Aucun broker.',
      'cluster.groups': 'Groupes de consommateurs', 'cluster.group': 'Groupe', 'cluster.state': 'État', 'cluster.coordinator': 'Coordinateur', 'cluster.members': 'Membres', 'cluster.lag': 'Retard par partition', 'cluster.totalLag': 'Retard total', 'cluster.noCommits': 'aucun offset validé', 'cluster.noGroups': 'Aucun groupe de consommateurs.',
      'cluster.topics': 'Topics et partitions', 'cluster.internal': 'topics internes', 'cluster.topic': 'Topic', 'cluster.partition': 'Partition', 'cluster.leader': 'Leader', 'cluster.replicas': 'Répliques', 'cluster.isr': 'ISR', 'cluster.epoch': 'Époque',
      'cluster.logStart': 'Début du journal', 'cluster.logEnd': 'Fin du journal', 'cluster.hw': 'High watermark', 'cluster.rate': 'Enregistrements/s', 'cluster.noTopics': 'Aucun topic.', 'cluster.internalBadge': 'interne', 'cluster.lagTitle': 'validé {committed} / fin {end}',
      'error.unreachable': 'Le serveur est injoignable.', 'error.validation_failed': 'Certains champs ne sont pas valides.', 'error.not_found': 'Introuvable.',
      'error.amount_due': 'Le montant doit être exactement celui dû : {amount}.', 'error.amount_refundable': 'Un remboursement doit être exactement le montant payé : {amount}.',
      // The server's per-field messages (`fields` of a 422), by their English text.
      'server.is required': 'est requis', 'server.must not be empty': 'ne doit pas être vide', 'server.must not contain control characters': 'ne doit pas contenir de caractères de contrôle',
      'server.must be a string': 'doit être un texte', 'server.must be a number': 'doit être un nombre', 'server.must be a number >= 0': 'doit être un nombre ≥ 0', 'server.must have at most two decimal places': 'deux décimales au plus',
      'server.must hold at least one item': 'doit contenir au moins un article', 'server.must be an object': 'doit être un objet', 'server.must be an array': 'doit être une liste',
      // Statuses, methods, severities and notification kinds (`word(prefix, value)`).
      'status.created': 'créée', 'status.payment_failed': 'paiement échoué', 'status.paid': 'payée', 'status.cancelled': 'annulée', 'status.refunded': 'remboursée', 'status.scheduled': 'planifiée', 'status.shipped': 'expédiée',
      'status.in_transit': 'en transit', 'status.out_for_delivery': 'en cours de livraison', 'status.delivered': 'livrée', 'status.delivery_failed': 'livraison échouée', 'status.failed': 'échec', 'status.authorized': 'autorisé',
      'method.card': 'carte', 'method.paypal': 'PayPal', 'method.bank_transfer': 'virement', 'method.apple_pay': 'Apple Pay', 'method.google_pay': 'Google Pay', 'method.gift_card': 'carte cadeau',
      'severity.info': 'info', 'severity.success': 'succès', 'severity.warning': 'alerte',
      'kind.payment_failed': 'paiement échoué', 'kind.payment_refunded': 'paiement remboursé', 'kind.delivered': 'livrée', 'kind.delivery_failed': 'livraison échouée',
      // A notification's sentence (the server writes it in English, with these details).
      'notify.payment_failed': 'Le paiement de la commande {id} a échoué', 'notify.payment_refunded': 'Commande {id} remboursée', 'notify.delivered': 'Commande {id} livrée', 'notify.delivery_failed': 'La livraison de la commande {id} a échoué',
      'page.dashboard': 'Tableau de bord', 'page.orders': 'Commandes', 'page.payments': 'Paiements', 'page.deliveries': 'Livraisons', 'page.notifications': 'Notifications', 'page.cluster': 'Cluster',
    },
  });
  add({ en: { 'page.dashboard': 'Dashboard', 'page.orders': 'Orders', 'page.payments': 'Payments', 'page.deliveries': 'Deliveries', 'page.notifications': 'Notifications', 'page.cluster': 'Cluster' } });
})();
