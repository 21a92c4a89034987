//! The node's Prometheus metrics: the counters that hot paths add to, and
//! the encoding of a scrape in the classic text format (0.0.4) or
//! OpenMetrics, through the `prometheus-client` crate.
//!
//! Two kinds of metric live here. Events (requests, bytes and records per
//! topic, ISR changes, elections, connections, WebSocket drops, shop events,
//! HTTP requests) are counted where they happen into the process-wide
//! `Metrics` (`global()`): plain atomics, found once per request or per
//! topic of a request, never per record. State (offsets, lag, Raft, ISR
//! sizes) is not kept here at all: the `/metrics` route reads it from the
//! node's own structures at scrape time and hands it in as a `Collector`
//! (`web/metrics.rs`), so the hot paths never update a gauge. `process.rs`
//! reads the process' memory, CPU time and descriptors from `/proc/self`.
//!
//! Must never: import another module of this crate (every layer counts into
//! it, so it is a leaf), allocate or lock per record. Locks: each `Table`'s
//! RwLock, held only to find (read) or add (write) one entry, never across
//! a call out.

mod process;
mod table;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use prometheus_client::collector::Collector;
pub use table::Table;

/// The classic Prometheus text format, served unless the scraper asks for
/// OpenMetrics.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// OpenMetrics 1.0.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the request latency buckets: from half a
/// millisecond to a produce's or fetch's longest waits.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Kafka API keys that get their own request counters (every key Kafka
/// defines is below this).
const API_SLOTS: usize = 128;

/// A latency histogram of atomics (no lock per observation).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket of `LATENCY_BUCKETS`, the last one above them all.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// The sum of the observations, in nanoseconds.
    sum_nanos: AtomicU64,
    /// Observations.
    count: AtomicU64,
}

impl Histogram {
    /// Count one duration.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn encode(&self, encoder: &mut MetricEncoder) -> Fmt {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// What one topic moved through this node's Kafka listener.
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Bytes of record batches appended by producers.
    pub bytes_in: AtomicU64,
    /// Records appended by producers.
    pub records_in: AtomicU64,
    /// Bytes of record batches returned to consumers (not to followers).
    pub bytes_out: AtomicU64,
    /// Records in the batches returned to consumers.
    pub records_out: AtomicU64,
}

/// Open connections of one listener, counted while a `Connection` lives.
#[derive(Debug, Clone, Default)]
pub struct ConnectionGauge(Arc<AtomicI64>);

/// One open connection; uncounted when dropped.
#[derive(Debug)]
pub struct Connection(Arc<AtomicI64>);

impl ConnectionGauge {
    /// Count a connection in until the returned guard is dropped.
    pub fn opened(&self) -> Connection {
        self.0.fetch_add(1, Ordering::Relaxed);
        Connection(self.0.clone())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process-wide event counters.
#[derive(Debug)]
pub struct Metrics {
    /// Latency (and so the number) of the requests of each Kafka API, by key.
    requests: Vec<Histogram>,
    /// Error codes answered, by (API key, error code).
    errors: Table<(i16, i16), AtomicU64>,
    /// Bytes and records in and out, by topic.
    topics: Table<String, TopicCounters>,
    /// Open connections, by listener name.
    connections: Table<String, ConnectionGauge>,
    /// ISR shrinks proposed by this node as a partition leader.
    isr_shrinks: AtomicU64,
    /// ISR expansions proposed by this node as a partition leader.
    isr_expands: AtomicU64,
    /// Partition leader elections (leader epoch bumps) this node applied.
    leader_elections: AtomicU64,
    /// WebSocket clients connected right now.
    websocket_clients: AtomicI64,
    /// Messages a slow WebSocket client missed (the broadcast overran it).
    websocket_dropped: AtomicU64,
    /// Shop events this node produced, by event type.
    shop_events: Table<&'static str, AtomicU64>,
    /// HTTP requests answered, by (route, method, status).
    http_requests: Table<(String, String, u16), AtomicU64>,
    /// Bytes charged to the request budget now, by `RequestPool`.
    request_memory: [AtomicI64; 2],
}

/// The two pools of the request budget (`--queued-max-request-bytes`).
#[derive(Debug, Clone, Copy)]
pub enum RequestPool {
    /// Request frames being read or waiting to be handled.
    Frames = 0,
    /// Decoded requests not yet handled (their estimated handling size).
    Decoded = 1,
}

/// The process' metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        requests: (0..API_SLOTS).map(|_| Histogram::default()).collect(),
        errors: Table::default(),
        topics: Table::default(),
        connections: Table::default(),
        isr_shrinks: AtomicU64::new(0),
        isr_expands: AtomicU64::new(0),
        leader_elections: AtomicU64::new(0),
        websocket_clients: AtomicI64::new(0),
        websocket_dropped: AtomicU64::new(0),
        shop_events: Table::default(),
        http_requests: Table::default(),
        request_memory: [AtomicI64::new(0), AtomicI64::new(0)],
    })
}

impl Metrics {
    /// A Kafka request of API `api_key` took `elapsed`.
    pub fn kafka_request(&self, api_key: i16, elapsed: Duration) {
        if let Some(h) = usize::try_from(api_key)
            .ok()
            .and_then(|i| self.requests.get(i))
        {
            h.observe(elapsed);
        }
    }

    /// A Kafka response of API `api_key` carried error `code` (once per
    /// partition or resource that had it).
    pub fn kafka_error(&self, api_key: i16, code: i16) {
        if code != 0 {
            self.errors.with(&(api_key, code), |n| {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
    }

    /// Run `f` on the counters of `topic` (one lookup per topic of a request).
    pub fn topic(&self, topic: &str, f: impl FnOnce(&TopicCounters)) {
        self.topics.with(topic, f)
    }

    /// `bytes` were charged to (positive) or given back to (negative) a
    /// pool of the request budget.
    pub fn request_memory(&self, pool: RequestPool, bytes: i64) {
        self.request_memory[pool as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    /// The gauge of open connections on `listener`.
    pub fn connections(&self, listener: &str) -> ConnectionGauge {
        let mut gauge = ConnectionGauge::default();
        self.connections.with(listener, |g| gauge = g.clone());
        gauge
    }

    /// The leader shrank a partition's ISR.
    pub fn isr_shrink(&self) {
        self.isr_shrinks.fetch_add(1, Ordering::Relaxed);
    }

    /// The leader expanded a partition's ISR.
    pub fn isr_expand(&self) {
        self.isr_expands.fetch_add(1, Ordering::Relaxed);
    }

    /// A partition got a new leader (its leader epoch was bumped).
    pub fn leader_election(&self) {
        self.leader_elections.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket client connected (+1) or left (-1).
    pub fn websocket_clients(&self, delta: i64) {
        self.websocket_clients.fetch_add(delta, Ordering::Relaxed);
    }

    /// A WebSocket client missed `n` messages.
    pub fn websocket_dropped(&self, n: u64) {
        self.websocket_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// This node produced a shop event of type `event_type`.
    pub fn shop_event(&self, event_type: &'static str) {
        self.shop_events.with(&event_type, |n| {
            n.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// The HTTP listener answered `method route` with `status`.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .with(&(route.to_owned(), method.to_owned(), status), |n| {
                n.fetch_add(1, Ordering::Relaxed);
            });
    }
}

/// The result of writing part of a scrape.
pub type Fmt = Result<(), std::fmt::Error>;

/// Labels of one sample: name-value pairs.
pub type Labels = Vec<(&'static str, String)>;

/// Write a family of `kind`: each sample's value by `write`, under its
/// labels (none: the bare name).
fn family<V>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    samples: impl IntoIterator<Item = (Labels, V)>,
    write: impl Fn(&mut MetricEncoder, &V) -> Fmt,
) -> Fmt {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            write(&mut metric, &value)?;
        } else {
            write(&mut metric.encode_family(&labels)?, &value)?;
        }
    }
    Ok(())
}

/// Write a counter family (`name` gets `_total`).
pub fn counters<V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, V)>,
) -> Fmt {
    family(
        encoder,
        (name, help, MetricType::Counter),
        samples,
        |m, v| m.encode_counter::<NoLabelSet, V, f64>(v, None::<&Exemplar<_, _>>),
    )
}

/// Write a gauge family.
pub fn gauges<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, V)>,
) -> Fmt {
    family(encoder, (name, help, MetricType::Gauge), samples, |m, v| {
        m.encode_gauge(v)
    })
}

/// One gauge without labels.
pub fn gauge<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Fmt {
    gauges(encoder, name, help, [(Labels::new(), value)])
}

/// Labels from pairs.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect()
}

/// The counters of `global()` and the process' own figures, as a collector.
#[derive(Debug)]
struct Events(&'static Metrics);

/// A Kafka API's name for labels (`Produce`), from its key.
fn api_name(key: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(key)
        .map(|api| format!("{api:?}"))
        .unwrap_or_else(|_| key.to_string())
}

/// A Kafka error code's name as Kafka spells it (`NOT_LEADER_OR_FOLLOWER`).
fn error_name(code: i16) -> String {
    let error = match kafka_protocol::ResponseError::try_from_code(code) {
        None | Some(kafka_protocol::ResponseError::Unknown(_)) => return code.to_string(),
        Some(error) => error,
    };
    let camel = format!("{error:?}");
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

impl Collector for Events {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        let m = self.0;
        let used: Vec<(i16, &Histogram)> = m
            .requests
            .iter()
            .enumerate()
            .filter(|(_, h)| h.count() > 0)
            .filter_map(|(key, h)| Some((i16::try_from(key).ok()?, h)))
            .collect();
        counters(
            &mut encoder,
            "kafka_network_requests",
            "Kafka requests answered, by API.",
            used.iter()
                .map(|(key, h)| (vec![("request", api_name(*key))], h.count())),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "kafka_network_request_duration_seconds",
                "Time from a Kafka request's decoding to its response (waits for acks and long polls included), by API.",
                None,
                MetricType::Histogram,
            )?;
            for (key, h) in &used {
                let labels = vec![("request", api_name(*key))];
                h.encode(&mut metric.encode_family(&labels)?)?;
            }
        }
        counters(
            &mut encoder,
            "kafka_network_request_errors",
            "Error codes in Kafka responses (one per partition or resource that had it), by API and error.",
            m.errors.snapshot(|(api, code), n| {
                (
                    vec![("request", api_name(*api)), ("error", error_name(*code))],
                    n.load(Ordering::Relaxed),
                )
            }),
        )?;
        let topics = m.topics.snapshot(|topic, c| {
            (
                topic.clone(),
                [
                    c.bytes_in.load(Ordering::Relaxed),
                    c.records_in.load(Ordering::Relaxed),
                    c.bytes_out.load(Ordering::Relaxed),
                    c.records_out.load(Ordering::Relaxed),
                ],
            )
        });
        for (i, (name, help)) in [
            (
                "kafka_server_topic_bytes_in",
                "Bytes of record batches appended by producers, by topic.",
            ),
            (
                "kafka_server_topic_messages_in",
                "Records appended by producers, by topic.",
            ),
            (
                "kafka_server_topic_bytes_out",
                "Bytes of record batches returned to consumers (replication excluded), by topic.",
            ),
            (
                "kafka_server_topic_messages_out",
                "Records in the batches returned to consumers (replication excluded), by topic.",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            counters(
                &mut encoder,
                name,
                help,
                topics
                    .iter()
                    .map(|(topic, values)| (vec![("topic", topic.clone())], values[i])),
            )?;
        }
        gauges(
            &mut encoder,
            "kafka_network_connections",
            "Open connections, by listener (Kafka listeners by name, and http).",
            m.connections.snapshot(|listener, g| {
                (
                    vec![("listener", listener.clone())],
                    g.0.load(Ordering::Relaxed),
                )
            }),
        )?;
        gauges(
            &mut encoder,
            "kafka_network_request_memory_bytes",
            "Bytes of requests charged to the request budget (--queued-max-request-bytes, Kafka's memory pool), by pool: frames read or waiting, and decoded requests not yet handled.",
            [("frames", RequestPool::Frames), ("decoded", RequestPool::Decoded)]
                .into_iter()
                .map(|(name, pool)| {
                    (
                        vec![("pool", name.to_owned())],
                        m.request_memory[pool as usize].load(Ordering::Relaxed),
                    )
                }),
        )?;
        for (name, help, value) in [
            ("kafka_server_replicamanager_isr_shrinks", "ISR shrinks proposed by this node as a partition leader.", &m.isr_shrinks),
            ("kafka_server_replicamanager_isr_expands", "ISR expansions proposed by this node as a partition leader.", &m.isr_expands),
            ("kafka_controller_leader_elections", "Partition leader changes (leader epoch bumps) applied by this node from the metadata log.", &m.leader_elections),
            ("sluice_websocket_dropped_messages", "WebSocket messages that slow clients missed (the broadcast buffer overran them).", &m.websocket_dropped),
        ] {
            counters(&mut encoder, name, help, [(Labels::new(), value.load(Ordering::Relaxed))])?;
        }
        gauge(
            &mut encoder,
            "sluice_websocket_clients",
            "WebSocket clients connected to this node.",
            m.websocket_clients.load(Ordering::Relaxed),
        )?;
        counters(
            &mut encoder,
            "sluice_shop_events",
            "Shop events this node produced, by event type.",
            m.shop_events.snapshot(|event_type, n| {
                (
                    vec![("type", (*event_type).to_owned())],
                    n.load(Ordering::Relaxed),
                )
            }),
        )?;
        counters(
            &mut encoder,
            "sluice_http_requests",
            "HTTP requests answered, by route (the router's pattern), method and status.",
            m.http_requests.snapshot(|(route, method, status), n| {
                (
                    vec![
                        ("route", route.clone()),
                        ("method", method.clone()),
                        ("status", status.to_string()),
                    ],
                    n.load(Ordering::Relaxed),
                )
            }),
        )?;
        process::encode(&mut encoder)
    }
}

/// The format a scraper asked for (its `Accept` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`, the default.
    Text,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when `accept` lists `application/openmetrics-text`, else text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of a scrape in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// A scrape: the global counters, the process, and `state` (the node's
/// gauges, read now), in `format`.
pub fn scrape(format: Format, state: Box<dyn Collector>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Events(global())));
    registry.register_collector(state);
    let mut out = String::with_capacity(64 * 1024);
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;

    impl Collector for Nothing {
        fn encode(&self, _: DescriptorEncoder) -> Fmt {
            Ok(())
        }
    }

    #[test]
    fn a_request_is_counted_in_both_formats() {
        global().kafka_request(0, Duration::from_millis(3));
        global().kafka_error(0, 6);
        let text = scrape(Format::Text, Box::new(Nothing)).unwrap();
        assert!(text.contains("kafka_network_requests_total{request=\"Produce\"}"));
        assert!(text.contains(
            "kafka_network_request_errors_total{request=\"Produce\",error=\"NOT_LEADER_OR_FOLLOWER\"}"
        ));
        assert!(text.contains(
            "kafka_network_request_duration_seconds_bucket{request=\"Produce\",le=\"0.005\"}"
        ));
        assert!(!text.contains("# EOF"));
        let open = scrape(Format::OpenMetrics, Box::new(Nothing)).unwrap();
        assert!(open.ends_with("# EOF\n"));
    }

    #[test]
    fn accept_picks_the_format() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
    }
}
