//! Fetch behaviour a consumer depends on: long polls woken by an append (not
//! by the timeout), the first batch returned whole even when larger than the
//! limits, OFFSET_OUT_OF_RANGE, and batches larger than one storage chunk
//! coming back byte for byte; topics named by id (v13+, UNKNOWN_TOPIC_ID
//! for an id the node does not know), and a follower behind the leader's
//! high watermark answered without waiting (v18).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use sluice::{encode_plain, PlainRecord};

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(wire: &mut common::Wire, name: &str, partitions: i32) {
    let mut ct = create_topics_request::CreatableTopic::default();
    ct.name = topic_name(name);
    ct.num_partitions = partitions;
    ct.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![ct];
    let resp: CreateTopicsResponse = wire.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0);
}

fn batch(values: &[Vec<u8>]) -> Bytes {
    let records: Vec<PlainRecord> = values
        .iter()
        .map(|v| PlainRecord {
            key: None,
            value: Some(Bytes::from(v.clone())),
            timestamp: 1_700_000_000_000,
        })
        .collect();
    encode_plain(&records, Compression::None)
        .expect("encode")
        .freeze()
}

fn produce(wire: &mut common::Wire, topic: &str, partition: i32, records: Bytes) -> i64 {
    let mut p = produce_request::PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = produce_request::TopicProduceData::default();
    t.name = topic_name(topic);
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5000;
    req.topic_data = vec![t];
    let resp: ProduceResponse = wire.call(ApiKey::Produce, 9, &req);
    let part = &resp.responses[0].partition_responses[0];
    assert_eq!(part.error_code, 0);
    part.base_offset
}

fn fetch(
    wire: &mut common::Wire,
    topic: &str,
    partitions: &[(i32, i64, i32)],
    max_wait_ms: i32,
    max_bytes: i32,
) -> FetchResponse {
    let mut t = fetch_request::FetchTopic::default();
    t.topic = topic_name(topic);
    t.partitions = partitions
        .iter()
        .map(|(partition, offset, max)| {
            let mut p = fetch_request::FetchPartition::default();
            p.partition = *partition;
            p.fetch_offset = *offset;
            p.partition_max_bytes = *max;
            p
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    req.max_bytes = max_bytes;
    req.session_epoch = -1;
    req.topics = vec![t];
    wire.call(ApiKey::Fetch, 12, &req)
}

fn values_of(records: &Bytes) -> Vec<Vec<u8>> {
    let mut buf = records.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decode")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| r.value.map(|v| v.to_vec()).unwrap_or_default())
        .collect()
}

#[test]
fn long_poll_is_woken_by_an_append_before_its_timeout() {
    let node = common::Node::start(&[]);
    let mut setup = common::Wire::connect(&node);
    create_topic(&mut setup, "long-poll", 1);
    let addr_node = &node;
    let waiting = std::thread::scope(|scope| {
        let waiter = scope.spawn(move || {
            let mut wire = common::Wire::connect(addr_node);
            let started = Instant::now();
            let resp = fetch(&mut wire, "long-poll", &[(0, 0, 1 << 20)], 30_000, 1 << 20);
            (started.elapsed(), resp)
        });
        // Give the fetch time to be parked, then append.
        std::thread::sleep(Duration::from_millis(300));
        produce(&mut setup, "long-poll", 0, batch(&[b"wake up".to_vec()]));
        waiter.join().expect("waiter")
    });
    let (elapsed, resp) = waiting;
    let part = &resp.responses[0].partitions[0];
    assert_eq!(part.error_code, 0);
    assert_eq!(
        values_of(part.records.as_ref().expect("records")),
        vec![b"wake up".to_vec()]
    );
    // Woken by the append, far from the 30 s timeout.
    assert!(
        elapsed < Duration::from_secs(20),
        "fetch waited {elapsed:?}"
    );
}

#[test]
fn empty_long_poll_answers_after_max_wait_with_no_records() {
    let node = common::Node::start(&[]);
    let mut wire = common::Wire::connect(&node);
    create_topic(&mut wire, "idle", 1);
    let started = Instant::now();
    let resp = fetch(&mut wire, "idle", &[(0, 0, 1 << 20)], 200, 1 << 20);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let part = &resp.responses[0].partitions[0];
    assert_eq!(part.error_code, 0);
    assert!(part.records.as_ref().map(|r| r.is_empty()).unwrap_or(true));
}

#[test]
fn first_batch_larger_than_the_limits_is_returned_whole_and_intact() {
    let node = common::Node::start(&[]);
    let mut wire = common::Wire::connect(&node);
    create_topic(&mut wire, "big", 2);
    // About 60 KiB in one batch: several storage chunks.
    let values: Vec<Vec<u8>> = (0..60u8).map(|i| vec![i; 1000]).collect();
    let big = batch(&values);
    assert!(big.len() > 3 * sluice::CHUNK_BYTES);
    produce(&mut wire, "big", 0, big.clone());
    produce(&mut wire, "big", 0, batch(&[b"second".to_vec()]));
    produce(&mut wire, "big", 1, batch(&[b"other partition".to_vec()]));

    let resp = fetch(&mut wire, "big", &[(0, 0, 100), (1, 0, 100)], 0, 100);
    let p0 = &resp.responses[0].partitions[0];
    let records = p0.records.as_ref().expect("records");
    // Exactly the first batch: whole, byte for byte from the magic byte on
    // (the broker sets the base offset and the partition leader epoch).
    assert_eq!(records.len(), big.len());
    assert!(
        records[16..] == big[16..],
        "stored batch differs from the produced one"
    );
    assert_eq!(values_of(records), values);
    // The response is full: the second partition gets nothing this time.
    let p1 = &resp.responses[0].partitions[1];
    assert!(p1.records.as_ref().map(|r| r.is_empty()).unwrap_or(true));

    // With room for everything, both batches of partition 0 come back in order.
    let resp = fetch(&mut wire, "big", &[(0, 0, 1 << 20)], 0, 1 << 20);
    let all = values_of(
        resp.responses[0].partitions[0]
            .records
            .as_ref()
            .expect("records"),
    );
    assert_eq!(all.len(), 61);
    assert_eq!(all[60], b"second".to_vec());
}

#[test]
fn fetch_past_the_end_is_offset_out_of_range() {
    let node = common::Node::start(&[]);
    let mut wire = common::Wire::connect(&node);
    create_topic(&mut wire, "range", 1);
    produce(&mut wire, "range", 0, batch(&[b"only".to_vec()]));
    let resp = fetch(&mut wire, "range", &[(0, 5, 1 << 20)], 0, 1 << 20);
    let part = &resp.responses[0].partitions[0];
    assert_eq!(part.error_code, 1);
    assert_eq!(part.high_watermark, 1);
}

/// The id of `topic`, from Metadata.
fn topic_id(wire: &mut common::Wire, topic: &str) -> uuid::Uuid {
    let mut t = metadata_request::MetadataRequestTopic::default();
    t.name = Some(topic_name(topic));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![t]);
    let resp: MetadataResponse = wire.call(ApiKey::Metadata, 12, &req);
    assert_eq!(resp.topics[0].error_code, 0);
    resp.topics[0].topic_id
}

/// A Fetch v13+ that names its topics by id, each with its partitions
/// (partition, fetch offset).
fn fetch_by_id(
    wire: &mut common::Wire,
    version: i16,
    topics: &[(uuid::Uuid, &[(i32, i64)])],
) -> FetchResponse {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 0;
    req.min_bytes = 1;
    req.max_bytes = 1 << 20;
    req.session_epoch = -1;
    req.topics = topics
        .iter()
        .map(|(id, partitions)| {
            let mut t = fetch_request::FetchTopic::default();
            t.topic_id = *id;
            t.partitions = partitions
                .iter()
                .map(|(partition, offset)| {
                    let mut p = fetch_request::FetchPartition::default();
                    p.partition = *partition;
                    p.fetch_offset = *offset;
                    p.partition_max_bytes = 1 << 20;
                    p
                })
                .collect();
            t
        })
        .collect();
    wire.call(ApiKey::Fetch, version, &req)
}

/// A node with one topic of `partitions`, and a connection to it.
fn node_with_topic(topic: &str, partitions: i32) -> (common::Node, common::Wire) {
    let node = common::Node::start(&[]);
    let mut wire = common::Wire::connect(&node);
    create_topic(&mut wire, topic, partitions);
    (node, wire)
}

#[test]
fn fetch_by_topic_id_answers_by_id_and_an_unknown_id_is_unknown_topic_id() {
    let (_node, mut wire) = node_with_topic("by-id", 2);
    produce(
        &mut wire,
        "by-id",
        1,
        batch(&[b"one".to_vec(), b"two".to_vec()]),
    );
    let id = topic_id(&mut wire, "by-id");
    assert!(!id.is_nil());
    let stranger = uuid::Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0001);
    for version in 13..=18 {
        let resp = fetch_by_id(
            &mut wire,
            version,
            &[(id, &[(1, 0), (7, 0)]), (stranger, &[(0, 0)])],
        );
        assert_eq!(resp.error_code, 0, "v{version}");
        let known = resp
            .responses
            .iter()
            .find(|t| t.topic_id == id)
            .expect("the topic, by its id");
        assert_eq!(known.partitions[0].error_code, 0, "v{version}");
        assert_eq!(
            values_of(known.partitions[0].records.as_ref().expect("records")),
            vec![b"one".to_vec(), b"two".to_vec()],
            "v{version}"
        );
        assert_eq!(known.partitions[0].high_watermark, 2);
        // A partition the topic does not have.
        assert_eq!(known.partitions[1].error_code, 3, "v{version}");
        let unknown = resp
            .responses
            .iter()
            .find(|t| t.topic_id == stranger)
            .expect("the unknown id, answered");
        assert_eq!(
            unknown.partitions[0].error_code, 100,
            "UNKNOWN_TOPIC_ID v{version}"
        );
    }
}

#[test]
fn follower_behind_the_high_watermark_is_answered_at_once_from_v18() {
    let (_node, mut wire) = node_with_topic("hw-behind", 1);
    produce(&mut wire, "hw-behind", 0, batch(&[b"a".to_vec()]));
    let id = topic_id(&mut wire, "hw-behind");
    // A follower (replica id 2, v15+: in replica_state) at the log end, so
    // there is nothing to read: it waits for data, unless (v18) the high
    // watermark it reports is behind the leader's.
    let follower_fetch = |wire: &mut common::Wire, known_high_watermark: i64| {
        let mut p = fetch_request::FetchPartition::default();
        p.partition = 0;
        p.fetch_offset = 1;
        p.partition_max_bytes = 1 << 20;
        p.high_watermark = known_high_watermark;
        let mut t = fetch_request::FetchTopic::default();
        t.topic_id = id;
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.replica_state.replica_id = BrokerId(2);
        req.max_wait_ms = 2_000;
        req.min_bytes = 1;
        req.max_bytes = 1 << 20;
        req.session_epoch = -1;
        req.topics = vec![t];
        let started = Instant::now();
        let resp: FetchResponse = wire.call(ApiKey::Fetch, 18, &req);
        (started.elapsed(), resp)
    };
    let (behind, resp) = follower_fetch(&mut wire, 0);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
    assert!(behind < Duration::from_millis(1_500), "waited {behind:?}");
    let (level, resp) = follower_fetch(&mut wire, 1);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    assert!(
        level >= Duration::from_millis(1_900),
        "answered after {level:?}"
    );
}
