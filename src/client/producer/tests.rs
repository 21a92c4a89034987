//! The producer's batches, deliveries and partitioning, offline and against
//! a scripted broker on 127.0.0.1. Must never: reach a real cluster.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ProduceResponse, TopicName};
use kafka_protocol::records::{Compression, Record};
use tokio::time::Instant;

use super::accumulator::ProducerBatch;
use super::delivery::{BatchAck, BatchCompletion};
use super::encoding::ProducerIdentity;
use super::*;

fn record(i: i64) -> Record {
    let key = Bytes::from(format!("k{i}"));
    let value = Bytes::from(format!("v{i}"));
    let mut record = new_record(Some(key), Some(value), IndexMap::new());
    record.offset = i;
    record.timestamp = 1_700_000_000_000 + i;
    record
}

#[test]
fn batch_encodes_as_one_record_batch_with_sequences() {
    let mut batch = ProducerBatch::new(Arc::from("t"), 0, 0);
    batch.records = (0..5).map(record).collect();
    batch.base_sequence = Some(7);
    let identity = ProducerIdentity {
        producer_id: 42,
        producer_epoch: 3,
        transactional: true,
    };
    let mut encoded = batch.encode(identity, Compression::None).unwrap();
    let infos =
        kafka_protocol::records::RecordBatchDecoder::decode_batch_info(&mut encoded.clone())
            .unwrap();
    assert_eq!(infos.len(), 1, "one batch, not one per record");
    assert_eq!(infos[0].record_count, 5);
    assert_eq!(infos[0].base_sequence, 7);
    assert_eq!(infos[0].producer_id, 42);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut encoded).unwrap();
    assert!(set.records.iter().all(|r| r.transactional && !r.control));
    assert_eq!(set.records[4].value.as_deref(), Some(&b"v4"[..]));
    assert_eq!(set.records[4].offset, 4);
}

#[test]
fn batch_without_idempotence_has_no_sequence() {
    let mut batch = ProducerBatch::new(Arc::from("t"), 0, 0);
    batch.records = (0..3).map(record).collect();
    let identity = ProducerIdentity {
        producer_id: -1,
        producer_epoch: -1,
        transactional: false,
    };
    let mut encoded = batch.encode(identity, Compression::None).unwrap();
    let infos =
        kafka_protocol::records::RecordBatchDecoder::decode_batch_info(&mut encoded).unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].base_sequence, -1);
    assert_eq!(infos[0].producer_id, -1);
}

#[tokio::test]
async fn delivery_resolves_with_base_offset_plus_index() {
    let completion = Arc::new(BatchCompletion::default());
    let delivery = Delivery::new(Arc::clone(&completion), 2, 3);
    assert!(delivery.try_result().is_none());
    let waiter = tokio::spawn(delivery);
    tokio::task::yield_now().await;
    let now = Instant::now();
    completion.complete(Ok(BatchAck {
        base_offset: 100,
        log_append_time_ms: -1,
        acknowledged_at: now,
    }));
    let md = waiter.await.unwrap().unwrap();
    assert_eq!((md.partition, md.offset), (2, 103));
}

/// A client whose metadata says topic `t` has `partitions` partitions led
/// by a broker nobody listens on (nothing is ever delivered).
fn offline_client(partitions: i32) -> Client {
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::MetadataResponse;
    let client = Client::offline(crate::client::cluster::ClientConfig::new("127.0.0.1:1"));
    let response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(1.into())
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(1)])
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(1.into())
                    })
                    .collect::<Vec<MetadataResponsePartition>>(),
            )]);
    client.metadata_cache().apply(&response);
    client
}

#[tokio::test]
async fn keyless_records_stick_to_a_partition_until_its_batch_is_full() {
    let config = ProducerConfig {
        batch_size: 1000,
        linger: Duration::from_secs(60),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(offline_client(3), config).await.unwrap();
    let value = Bytes::from(vec![b'x'; 100]);
    // 61 + 7 * (21 + 100) = 908 bytes: seven records fill a 1000-byte batch.
    let mut partitions = Vec::new();
    for _ in 0..21 {
        let delivery = producer.send("t", None, Some(value.clone())).await.unwrap();
        partitions.push(delivery.partition());
    }
    let first = partitions[0];
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(
            *p,
            (first + (i / 7) as i32) % 3,
            "record {i} in {partitions:?}"
        );
    }
}

#[tokio::test]
async fn keyed_records_follow_murmur2_and_report_their_batch_index() {
    let config = ProducerConfig {
        linger: Duration::from_secs(60),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(offline_client(5), config).await.unwrap();
    let mut per_partition = [0u32; 5];
    for i in 0..50 {
        let key = Bytes::from(format!("user-{i}"));
        let delivery = producer
            .send("t", Some(key.clone()), Some(key.clone()))
            .await
            .unwrap();
        let p = partition_for_key(&key, 5);
        assert_eq!(delivery.partition(), p);
        assert_eq!(
            delivery.index, per_partition[p as usize],
            "offset within the batch"
        );
        per_partition[p as usize] += 1;
    }
}

#[tokio::test]
async fn dropping_the_producer_fails_unsent_records() {
    let config = ProducerConfig {
        linger: Duration::from_secs(60),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(offline_client(1), config).await.unwrap();
    let delivery = producer
        .send("t", None, Some(Bytes::from_static(b"v")))
        .await
        .unwrap();
    drop(producer);
    assert!(matches!(delivery.await, Err(ClientError::Closed)));
}

/// A one-partition broker that answers the first Produce with
/// NOT_LEADER_OR_FOLLOWER and later ones with base offset 42. Returns
/// its address and counters of (Metadata, Produce) requests.
async fn flaky_broker() -> (String, Arc<[AtomicUsize; 2]>) {
    use crate::client::connection::read_frame;
    use bytes::BufMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataResponse, ResponseHeader};
    use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
    use tokio::io::AsyncWriteExt;

    fn frame<B: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &B) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, api.response_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        buf.to_vec()
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counters: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let seen = Arc::clone(&counters);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                while let Ok(Some(mut request)) = read_frame(&mut socket, 1 << 20).await {
                    let header = decode_request_header_from_buffer(&mut request).unwrap();
                    let (id, version) = (header.correlation_id, header.request_api_version);
                    let out = match ApiKey::try_from(header.request_api_key).unwrap() {
                        ApiKey::ApiVersions => {
                            let keys = [
                                (ApiKey::ApiVersions, 0, 3),
                                (ApiKey::Metadata, 1, 12),
                                (ApiKey::Produce, 3, 9),
                            ]
                            .iter()
                            .map(|&(k, min, max)| {
                                ApiVersion::default()
                                    .with_api_key(k as i16)
                                    .with_min_version(min)
                                    .with_max_version(max)
                            })
                            .collect();
                            frame(
                                ApiKey::ApiVersions,
                                version,
                                id,
                                &ApiVersionsResponse::default().with_api_keys(keys),
                            )
                        }
                        ApiKey::Metadata => {
                            seen[0].fetch_add(1, Ordering::SeqCst);
                            let response = MetadataResponse::default()
                                .with_brokers(vec![MetadataResponseBroker::default()
                                    .with_node_id(1.into())
                                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                                    .with_port(i32::from(port))])
                                .with_topics(vec![MetadataResponseTopic::default()
                                    .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                                    .with_partitions(vec![MetadataResponsePartition::default()
                                        .with_partition_index(0)
                                        .with_leader_id(1.into())])]);
                            frame(ApiKey::Metadata, version, id, &response)
                        }
                        ApiKey::Produce => {
                            let attempt = seen[1].fetch_add(1, Ordering::SeqCst);
                            let partition = if attempt == 0 {
                                PartitionProduceResponse::default()
                                    .with_error_code(ResponseError::NotLeaderOrFollower.code())
                                    .with_base_offset(-1)
                            } else {
                                PartitionProduceResponse::default().with_base_offset(42)
                            };
                            let response = ProduceResponse::default().with_responses(vec![
                                TopicProduceResponse::default()
                                    .with_name(TopicName(StrBytes::from_static_str("t")))
                                    .with_partition_responses(vec![partition.with_index(0)]),
                            ]);
                            frame(ApiKey::Produce, version, id, &response)
                        }
                        _ => return,
                    };
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("127.0.0.1:{port}"), counters)
}

#[tokio::test]
async fn not_leader_error_refreshes_metadata_and_retries_the_batch() {
    let (addr, counters) = flaky_broker().await;
    let client = Client::connect(crate::client::cluster::ClientConfig::new(&addr))
        .await
        .unwrap();
    let config = ProducerConfig {
        linger: Duration::from_millis(1),
        retry_backoff: Duration::from_millis(10),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config).await.unwrap();
    let md = producer
        .send_and_wait(
            "t",
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"v")),
        )
        .await
        .unwrap();
    assert_eq!((md.partition, md.offset), (0, 42));
    assert_eq!(
        counters[1].load(Ordering::SeqCst),
        2,
        "one failed attempt, one retry"
    );
    // The bootstrap (which already lists `t`), then the refresh after
    // NOT_LEADER_OR_FOLLOWER.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters[0].load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        counters[0].load(Ordering::SeqCst),
        2,
        "metadata was refreshed"
    );
}
