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

/// A node on a fresh data dir, a client of it, and `topic` with
/// `partitions` partitions. Keep the first two for as long as the node runs.
async fn node_with_topic(topic: &str, partitions: i32) -> (tempfile::TempDir, NodeGuard, Client) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let (node, addr) = start_node(data_dir.path());
    let client = Client::connect(ClientConfig::new(&addr))
        .await
        .expect("connect");
    client
        .ensure_topic(topic, partitions, -1)
        .await
        .expect("create topic");
    (data_dir, node, client)
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

    let (_data_dir, _node, client) = node_with_topic(TOPIC, 1).await;

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

/// The transactional id's producer id, epoch and state, as DescribeTransactions
/// tells them (a single node coordinates every id).
async fn described_transaction(client: &Client, id: &str) -> (i64, i16, String) {
    use kafka_protocol::messages::{DescribeTransactionsRequest, TransactionalId};
    use kafka_protocol::protocol::StrBytes;
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_owned()))]);
    let conn = client.any_broker().await.expect("a broker");
    let response = conn.request(&request).await.expect("DescribeTransactions");
    let state = &response.transaction_states[0];
    assert_eq!(state.error_code, 0, "DescribeTransactions of {id}");
    (
        state.producer_id.0,
        state.producer_epoch,
        state.transaction_state.to_string(),
    )
}

/// One transactional record batch of `producer` (id, epoch) at sequence 0.
fn transactional_batch(producer: (i64, i16), value: &str) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: producer.0,
        producer_epoch: producer.1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from(value.to_owned())),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode a batch");
    buf.freeze()
}

/// KIP-890 part 2: the node finalizes `transaction.version` 2, so the
/// client's transactional producer sends no AddPartitionsToTxn, its
/// partitions join through Produce v12, and each EndTxn v5 bumps its epoch.
/// A batch of an ended transaction's epoch can then never open a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transaction_bumps_the_epoch_and_fences_the_last_ones_stragglers() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
    use kafka_protocol::protocol::StrBytes;
    const TOPIC: &str = "client-txn-epochs";
    const TXN_ID: &str = "epoch-per-transaction";

    let (_data_dir, _node, client) = node_with_topic(TOPIC, 2).await;
    let conn = client.any_broker().await.expect("a broker");
    assert_eq!(conn.finalized_feature("transaction.version"), Some(2));

    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: -1,
            transactional_id: Some(TXN_ID.to_owned()),
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("transactional producer");
    let (first_id, first_epoch, state) = described_transaction(&client, TXN_ID).await;
    assert_eq!(state, "Empty");

    // Commit, abort, commit: ten records to each partition every time.
    let outcomes = [true, false, true];
    for (n, commit) in outcomes.iter().enumerate() {
        producer.begin_transaction().expect("begin");
        let mut deliveries = Vec::new();
        for i in 0..20 {
            let key = Bytes::from(format!("key-{i}"));
            let value = Bytes::from(format!("txn-{n}-{i}"));
            deliveries.push(
                producer
                    .send_to_partition(
                        TOPIC,
                        Some(i % 2),
                        Some(key),
                        Some(value),
                        Default::default(),
                    )
                    .await
                    .expect("send"),
            );
        }
        for d in deliveries {
            d.await.expect("written");
        }
        if *commit {
            producer.commit_transaction().await.expect("commit");
        } else {
            producer.abort_transaction().await.expect("abort");
        }
        let (id, epoch, state) = described_transaction(&client, TXN_ID).await;
        assert_eq!(id, first_id);
        assert_eq!(
            epoch,
            first_epoch + n as i16 + 1,
            "transaction {n} ended with the epoch bumped"
        );
        let expected = if *commit {
            "CompleteCommit"
        } else {
            "CompleteAbort"
        };
        assert_eq!(state, expected);
    }

    // A straggler of the first transaction (its epoch, Produce v12: "add
    // my partition") is refused, and opens nothing.
    let zombie = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(TXN_ID))))
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(transactional_batch(
                    (first_id, first_epoch),
                    "straggler",
                )))])]);
    let leader = client.topic(TOPIC).await.expect("topic").partitions[0].leader_id;
    let conn = client.broker(leader).await.expect("leader");
    let response = conn
        .request_with_version(&zombie, 12)
        .await
        .expect("Produce v12");
    let code = response.responses[0].partition_responses[0].error_code;
    assert!(
        [47, 90].contains(&code),
        "a batch of an ended epoch gets INVALID_PRODUCER_EPOCH or PRODUCER_FENCED, not {code}"
    );
    let (_, epoch, state) = described_transaction(&client, TXN_ID).await;
    assert_eq!((epoch, state.as_str()), (first_epoch + 3, "CompleteCommit"));
    producer.close().await;

    // read_committed sees the two committed transactions, nothing else.
    let mut fetcher = PartitionFetcher::new(
        client.clone(),
        ConsumerConfig {
            isolation_level: 1,
            ..ConsumerConfig::default()
        },
    );
    fetcher
        .assign_topic(TOPIC, StartOffset::Earliest)
        .await
        .expect("assign");
    let ends = client
        .list_offsets(TOPIC, &[0, 1], -1)
        .await
        .expect("list offsets");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut values = Vec::new();
    while ends
        .iter()
        .any(|(p, end)| fetcher.position(TOPIC, *p).unwrap_or(0) < *end)
    {
        assert!(Instant::now() < deadline, "read {values:?} in 30 s");
        for batch in fetcher.poll().await.expect("poll") {
            for record in batch.records {
                values.push(String::from_utf8(record.value.expect("value").to_vec()).unwrap());
            }
        }
    }
    values.sort();
    let mut expected: Vec<String> = [0, 2]
        .iter()
        .flat_map(|n| (0..20).map(move |i| format!("txn-{n}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(values, expected);
}
