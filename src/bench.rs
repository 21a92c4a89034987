//! `sluice bench`: load generators in the spirit of Kafka's
//! `kafka-producer-perf-test` and `kafka-consumer-perf-test`. They speak the
//! Kafka protocol through [`crate::client`] only, so they measure Sluice and
//! any other Kafka-compatible broker the same way.
//!
//! Both print human-readable progress and a final one-line summary for
//! scripts: `RESULT mode=... records=... records_per_sec=... mb_per_sec=...
//! avg_ms=... p50_ms=... p99_ms=... p999_ms=... max_ms=...`. MB means 2^20
//! bytes, as in Kafka's tools. Produce latency runs from `send` to the
//! acknowledgement; consume latency is the Fetch round trip.
//!
//! Must never: import anything but `crate::client` (no broker internals, no
//! shop), so what it measures is what any Kafka client would see.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;
use tokio::time::Instant;

use crate::client::{
    Client, ClientConfig, ClientError, ConsumerConfig, Delivery, PartitionFetcher, Producer,
    ProducerConfig, RecordMetadata, StartOffset,
};

/// How often to check the oldest outstanding record for completion.
const DRAIN_EVERY: u64 = 64;
/// Bytes in a "MB", as Kafka's perf tools count them.
const MB: f64 = 1024.0 * 1024.0;

/// The load generators.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Produce records as fast as allowed; report throughput and latency.
    Produce(ProduceArgs),
    /// Read records from the earliest offset of every partition; report throughput.
    Consume(ConsumeArgs),
}

/// Record compression for `bench produce`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompressionArg {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl From<CompressionArg> for kafka_protocol::records::Compression {
    fn from(c: CompressionArg) -> Self {
        use kafka_protocol::records::Compression;
        match c {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// `sluice bench produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Bootstrap servers, comma separated.
    #[arg(long, env = "SLUICE_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to produce to (created if missing).
    #[arg(long)]
    pub topic: String,
    /// Number of records to produce.
    #[arg(long)]
    pub num_records: u64,
    /// Value size of each record, in bytes.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Target records per second; -1 for unlimited.
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    pub throughput: f64,
    /// Acknowledgements: -1 (all in-sync replicas), 1 (leader) or 0 (none).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub acks: i16,
    /// Batch size in bytes.
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// How long a non-full batch may wait for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Partitions to create the topic with, if it does not exist.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor to create the topic with; -1 for the broker default.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i16,
    /// Produce requests pipelined per broker connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Record batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Idempotent producer (needs --acks -1).
    #[arg(long)]
    pub idempotent: bool,
    /// Give records keys drawn from this many distinct keys (0: no keys, sticky partitioning).
    #[arg(long, default_value_t = 0)]
    pub keys: u64,
    /// Bytes of records buffered awaiting acknowledgement.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub buffer_memory: usize,
    /// A record not acknowledged this long after it was batched fails (and the run stops).
    #[arg(long, default_value_t = 30_000)]
    pub delivery_timeout_ms: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    pub report_interval_secs: u64,
}

/// `sluice bench consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Bootstrap servers, comma separated.
    #[arg(long, env = "SLUICE_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to read.
    #[arg(long)]
    pub topic: String,
    /// Stop after this many records.
    #[arg(long)]
    pub num_records: u64,
    /// Cap of one Fetch response, in bytes.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub fetch_max_bytes: i32,
    /// Cap of one partition in a Fetch response, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_partition_fetch_bytes: i32,
    /// How long the broker may hold a Fetch for data to arrive.
    #[arg(long, default_value_t = 500)]
    pub fetch_max_wait_ms: u64,
    /// Give up when no record arrives for this long.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Run one load generator.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(args) => produce(args).await,
        BenchCommand::Consume(args) => consume(args).await,
    }
}

/// Latency and volume of a run or of one reporting window.
struct Window {
    started: Instant,
    records: u64,
    bytes: u64,
    latency_sum_us: u64,
    latency_max_us: u64,
}

impl Window {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            records: 0,
            bytes: 0,
            latency_sum_us: 0,
            latency_max_us: 0,
        }
    }

    fn record(&mut self, bytes: u64, latency_us: u64) {
        self.records += 1;
        self.bytes += bytes;
        self.latency_sum_us += latency_us;
        self.latency_max_us = self.latency_max_us.max(latency_us);
    }

    fn print(&self, verb: &str) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        println!(
            "{} records {verb}, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            self.records,
            self.records as f64 / secs,
            self.bytes as f64 / MB / secs,
            self.latency_sum_us as f64 / self.records.max(1) as f64 / 1000.0,
            self.latency_max_us as f64 / 1000.0,
        );
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // Microseconds, from 1 µs to one hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).context("cannot build the latency histogram")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// What `bench produce` has measured so far.
struct ProduceStats {
    /// Send-to-acknowledgement latency, µs.
    histogram: Histogram<u64>,
    /// The whole run.
    total: Window,
    /// The current progress window.
    window: Window,
    /// Value bytes per record.
    record_bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

impl ProduceStats {
    fn settle(&mut self, sent_at: Instant, result: Result<RecordMetadata, ClientError>) {
        match result {
            Ok(md) => {
                let latency_us = md
                    .acknowledged_at
                    .saturating_duration_since(sent_at)
                    .as_micros() as u64;
                self.histogram.saturating_record(latency_us.max(1));
                self.total.record(self.record_bytes, latency_us);
                self.window.record(self.record_bytes, latency_us);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    if args.record_size == 0 {
        bail!("--record-size must be positive");
    }
    let client = Client::connect(ClientConfig::new(&args.bootstrap))
        .await
        .with_context(|| format!("cannot reach {}", args.bootstrap))?;
    let info = client
        .ensure_topic(&args.topic, args.partitions, args.replication_factor)
        .await
        .with_context(|| format!("cannot get topic {}", args.topic))?;
    eprintln!(
        "topic {} has {} partition(s)",
        args.topic,
        info.partition_count()
    );
    let config = ProducerConfig {
        acks: args.acks,
        batch_size: args.batch_size,
        linger: Duration::from_millis(args.linger_ms),
        max_in_flight_per_broker: args.max_in_flight,
        compression: args.compression.into(),
        idempotent: args.idempotent,
        buffer_memory: args.buffer_memory.max(args.batch_size),
        delivery_timeout: Duration::from_millis(args.delivery_timeout_ms),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config)
        .await
        .context("cannot start the producer")?;

    // One random payload shared by every record, as kafka-producer-perf-test does.
    let mut rng = rand::thread_rng();
    let payload: Bytes = (0..args.record_size)
        .map(|_| rng.gen_range(b'A'..=b'Z'))
        .collect::<Vec<u8>>()
        .into();
    let keys: Vec<Bytes> = (0..args.keys)
        .map(|i| Bytes::from(format!("key-{i}")))
        .collect();

    let mut stats = ProduceStats {
        histogram: histogram()?,
        total: Window::new(),
        window: Window::new(),
        record_bytes: args.record_size as u64,
        errors: 0,
        first_error: None,
    };
    let report_every = Duration::from_secs(args.report_interval_secs.max(1));
    // Records sent and not yet settled, oldest first. Each knows when it was
    // acknowledged, so settling them in send order keeps latencies exact.
    let mut outstanding: VecDeque<(Instant, Delivery)> = VecDeque::new();

    let start = Instant::now();
    for i in 0..args.num_records {
        if args.throughput > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / args.throughput);
            if due > Instant::now() + Duration::from_millis(2) {
                tokio::time::sleep_until(due).await;
            }
        }
        let key = if keys.is_empty() {
            None
        } else {
            Some(keys[(i % args.keys) as usize].clone())
        };
        let sent_at = Instant::now();
        let delivery = producer
            .send(&args.topic, key, Some(payload.clone()))
            .await?;
        outstanding.push_back((sent_at, delivery));
        if i % DRAIN_EVERY == 0 {
            while let Some(result) = outstanding.front().and_then(|(_, d)| d.try_result()) {
                if let Some((sent_at, _)) = outstanding.pop_front() {
                    stats.settle(sent_at, result);
                }
            }
            if stats.errors > 0 {
                eprintln!(
                    "stopping at the first failed record: {}",
                    stats.first_error.as_deref().unwrap_or_default()
                );
                break;
            }
            if stats.window.started.elapsed() >= report_every {
                stats.window.print("sent");
                stats.window = Window::new();
            }
        }
    }
    producer.flush().await;
    while let Some((sent_at, delivery)) = outstanding.pop_front() {
        let result = delivery.await;
        stats.settle(sent_at, result);
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    producer.close().await;

    let ProduceStats {
        histogram,
        total,
        errors,
        first_error,
        ..
    } = stats;
    let acked = total.records;
    let records_per_sec = acked as f64 / elapsed;
    let mb_per_sec = total.bytes as f64 / MB / elapsed;
    let avg_ms = ms(total.latency_sum_us) / acked.max(1) as f64;
    println!(
        "{acked} records sent, {records_per_sec:.1} records/sec ({mb_per_sec:.2} MB/sec), {avg_ms:.2} ms avg latency, \
         {:.2} ms max latency, {:.0} ms 50th, {:.0} ms 95th, {:.0} ms 99th, {:.0} ms 99.9th.",
        ms(histogram.max()),
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.95)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.value_at_quantile(0.999)),
    );
    println!(
        "RESULT mode=produce records={acked} errors={errors} records_per_sec={records_per_sec:.1} mb_per_sec={mb_per_sec:.3} \
         avg_ms={avg_ms:.3} p50_ms={:.3} p95_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3}",
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.95)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.value_at_quantile(0.999)),
        ms(histogram.max()),
    );
    if let Some(e) = first_error {
        bail!("{errors} records failed; first error: {e}");
    }
    Ok(())
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = Client::connect(ClientConfig::new(&args.bootstrap))
        .await
        .with_context(|| format!("cannot reach {}", args.bootstrap))?;
    let config = ConsumerConfig {
        max_wait: Duration::from_millis(args.fetch_max_wait_ms),
        max_bytes: args.fetch_max_bytes,
        partition_max_bytes: args.max_partition_fetch_bytes,
        ..ConsumerConfig::default()
    };
    let mut fetcher = PartitionFetcher::new(client, config);
    fetcher
        .assign_topic(&args.topic, StartOffset::Earliest)
        .await
        .with_context(|| format!("cannot assign topic {}", args.topic))?;

    let mut histogram = histogram()?;
    let mut records: u64 = 0;
    let mut bytes: u64 = 0;
    let mut fetches: u64 = 0;
    let timeout = Duration::from_millis(args.timeout_ms);
    let start = Instant::now();
    let mut last_data = start;
    let mut report_at = start + Duration::from_secs(5);
    'fetching: while records < args.num_records {
        let asked = Instant::now();
        let batches = fetcher.poll().await?;
        histogram.saturating_record((asked.elapsed().as_micros() as u64).max(1));
        fetches += 1;
        for batch in &batches {
            last_data = Instant::now();
            for record in &batch.records {
                records += 1;
                bytes += (record.key.as_ref().map_or(0, Bytes::len)
                    + record.value.as_ref().map_or(0, Bytes::len)) as u64;
                if records >= args.num_records {
                    break 'fetching;
                }
            }
        }
        if last_data.elapsed() > timeout {
            eprintln!(
                "no record for {} ms; stopping after {records} records",
                args.timeout_ms
            );
            break;
        }
        if Instant::now() >= report_at {
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{records} records read, {:.1} records/sec ({:.2} MB/sec)",
                records as f64 / secs,
                bytes as f64 / MB / secs
            );
            report_at += Duration::from_secs(5);
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let records_per_sec = records as f64 / elapsed;
    let mb_per_sec = bytes as f64 / MB / elapsed;
    let avg_ms = histogram.mean() / 1000.0;
    println!(
        "{records} records read, {:.2} MB, {records_per_sec:.1} records/sec ({mb_per_sec:.2} MB/sec), {fetches} fetches, \
         {avg_ms:.2} ms avg fetch latency",
        bytes as f64 / MB,
    );
    println!(
        "RESULT mode=consume records={records} fetches={fetches} records_per_sec={records_per_sec:.1} mb_per_sec={mb_per_sec:.3} \
         avg_ms={avg_ms:.3} p50_ms={:.3} p95_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3}",
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.95)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.value_at_quantile(0.999)),
        ms(histogram.max()),
    );
    if records < args.num_records {
        bail!(
            "read {records} of {} records before the timeout",
            args.num_records
        );
    }
    Ok(())
}
