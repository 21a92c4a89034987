//! The client against a real node: start the built `sluice` binary on
//! ephemeral ports, produce keyed records with `client::Producer`, read them
//! back with `client::PartitionFetcher`, and check every record came back
//! where the producer said it went.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::partition_for_key;
use sluice::{
    Client, ClientConfig, ConsumerConfig, PartitionFetcher, Producer, ProducerConfig, StartOffset,
};

/// Kills the node when the test ends, whether it passed or panicked.
struct NodeGuard {
    child: Child,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `sluice serve` in `data_dir` and return it with its Kafka address,
/// read from the `listening kafka_addr=...` log line.
fn start_node(data_dir: &Path) -> (NodeGuard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sluice binary");
    let stderr = child.stderr.take().expect("stderr is piped");
    let guard = NodeGuard { child };
    let (tx, rx) = mpsc::channel();
    // Keep draining stderr so the node never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("kafka_addr=").nth(1) {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the node logs `listening kafka_addr=...` within 60 s");
    (guard, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_round_trip_through_a_real_node() {
    const TOPIC: &str = "client-roundtrip";
    const PARTITIONS: usize = 3;
    const RECORDS: usize = 1_000;
    const KEYS: usize = 37;

    let data_dir = tempfile::tempdir().expect("temp dir");
    let (_node, addr) = start_node(data_dir.path());

    let client = Client::connect(ClientConfig::new(&addr))
        .await
        .expect("connect");
    let topic = client
        .ensure_topic(TOPIC, PARTITIONS as i32, -1)
        .await
        .expect("create topic");
    assert_eq!(topic.partition_count(), PARTITIONS);

    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: -1,
            linger: Duration::from_millis(2),
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer");
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = Bytes::from(format!("key-{}", i % KEYS));
        let value = Bytes::from(format!("value-{i}"));
        let delivery = producer
            .send(TOPIC, Some(key.clone()), Some(value))
            .await
            .expect("send");
        assert_eq!(
            delivery.partition(),
            partition_for_key(&key, PARTITIONS),
            "murmur2 partitioning"
        );
        deliveries.push(delivery);
    }
    // Where the producer says each record went: (partition, offset) -> i.
    let mut written: HashMap<(i32, i64), usize> = HashMap::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let md = delivery.await.expect("acknowledged");
        assert!(md.offset >= 0, "acks=-1 returns offsets");
        assert!(
            written.insert((md.partition, md.offset), i).is_none(),
            "offsets are unique"
        );
    }
    producer.close().await;

    let mut fetcher = PartitionFetcher::new(client.clone(), ConsumerConfig::default());
    fetcher
        .assign_topic(TOPIC, StartOffset::Earliest)
        .await
        .expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = 0;
    let mut last_index_per_key: HashMap<Bytes, usize> = HashMap::new();
    while read < RECORDS {
        assert!(
            Instant::now() < deadline,
            "read only {read} of {RECORDS} records in 30 s"
        );
        for batch in fetcher.poll().await.expect("poll") {
            for record in batch.records {
                let i = *written
                    .get(&(batch.partition, record.offset))
                    .unwrap_or_else(|| {
                        panic!("unexpected record at {}-{}", batch.partition, record.offset)
                    });
                let key = record.key.expect("keyed");
                assert_eq!(key, Bytes::from(format!("key-{}", i % KEYS)));
                assert_eq!(record.value, Some(Bytes::from(format!("value-{i}"))));
                if let Some(previous) = last_index_per_key.insert(key, i) {
                    assert!(previous < i, "records of one key keep their order");
                }
                read += 1;
            }
        }
    }
    assert_eq!(read, RECORDS);
    for p in 0..PARTITIONS as i32 {
        let expected = written
            .keys()
            .filter(|(partition, _)| *partition == p)
            .count() as i64;
        assert_eq!(
            fetcher.position(TOPIC, p),
            Some(expected),
            "partition {p} read to its end"
        );
    }
    let ends = client
        .list_offsets(TOPIC, &[0, 1, 2], -1)
        .await
        .expect("list offsets");
    assert_eq!(ends.iter().map(|(_, end)| end).sum::<i64>(), RECORDS as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_writes_each_record_once_in_order() {
    const TOPIC: &str = "client-idempotent";
    const RECORDS: i64 = 500;

    let data_dir = tempfile::tempdir().expect("temp dir");
    let (_node, addr) = start_node(data_dir.path());
    let client = Client::connect(ClientConfig::new(&addr))
        .await
        .expect("connect");
    client
        .ensure_topic(TOPIC, 1, -1)
        .await
        .expect("create topic");

    let config = ProducerConfig {
        idempotent: true,
        batch_size: 512, // many small batches, several in flight
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client.clone(), config)
        .await
        .expect("idempotent producer");
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let value = Bytes::from(format!("value-{i}"));
        deliveries.push(producer.send(TOPIC, None, Some(value)).await.expect("send"));
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let md = delivery.await.expect("acknowledged");
        assert_eq!(
            md.offset, i as i64,
            "one partition, sent in order, no duplicates"
        );
    }
    producer.close().await;

    let ends = client
        .list_offsets(TOPIC, &[0], -1)
        .await
        .expect("list offsets");
    assert_eq!(ends, vec![(0, RECORDS)]);
    let mut fetcher = PartitionFetcher::new(client, ConsumerConfig::default());
    fetcher
        .assign(TOPIC, &[0], StartOffset::At(0))
        .await
        .expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = 0;
    while next < RECORDS {
        assert!(
            Instant::now() < deadline,
            "read only {next} of {RECORDS} records in 30 s"
        );
        for batch in fetcher.poll().await.expect("poll") {
            for record in batch.records {
                assert_eq!(record.offset, next);
                assert_eq!(record.value, Some(Bytes::from(format!("value-{next}"))));
                next += 1;
            }
        }
    }
}
