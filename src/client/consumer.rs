//! Reading partitions: a [`PartitionFetcher`] that is *assigned* partitions
//! (no consumer group here), starts each at the earliest, latest or a given
//! offset, and fetches them with one Fetch request per leader per round.
//! Record batches are decoded with kafka-protocol's `RecordBatchDecoder`;
//! control batches (transaction markers) are skipped, and records before the
//! requested offset (a batch may start earlier) are dropped. Also the
//! ListOffsets helper ([`Client::list_offsets`]).
//!
//! The fetcher owns fetch positions only; committing them is a consumer
//! group's job, not this module's. Must never: join a group or commit
//! offsets, or import the producer or the group member.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use uuid::Uuid;

use super::cluster::Client;
use super::error::{is_stale_metadata_error, ClientError};

/// Offset of the magic byte in a record batch.
const MAGIC_OFFSET: usize = 16;
/// Offset of the attributes in a v2 record batch.
const ATTRIBUTES_OFFSET: usize = 21;
/// Offset of the last offset delta in a v2 record batch.
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
/// Size of a v2 record batch header.
const BATCH_HEADER_BYTES: usize = 61;
/// Base offset and batch length: what precedes the length-counted part.
const LOG_OVERHEAD: usize = 12;
/// Control batch attribute bit (transaction markers).
const CONTROL_FLAG: i16 = 0x20;

/// Where a partition starts being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The log start offset.
    Earliest,
    /// The log end offset: only records produced from now on.
    Latest,
    /// This exact offset.
    At(i64),
}

impl StartOffset {
    /// The ListOffsets timestamp that asks for this position, if it needs one.
    fn list_offsets_timestamp(self) -> Option<i64> {
        match self {
            StartOffset::Earliest => Some(-2),
            StartOffset::Latest => Some(-1),
            StartOffset::At(_) => None,
        }
    }
}

/// How the fetcher asks for data.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// How long the broker may hold a Fetch waiting for `min_bytes`.
    pub max_wait: Duration,
    /// Bytes the broker should gather before answering early.
    pub min_bytes: i32,
    /// Cap of one Fetch response.
    pub max_bytes: i32,
    /// Cap of one partition in a Fetch response (grown automatically when a
    /// single batch is larger).
    pub partition_max_bytes: i32,
    /// 0 = read uncommitted, 1 = read committed.
    pub isolation_level: i8,
    /// Where to restart a partition whose position is out of range.
    pub offset_reset: StartOffset,
    /// Pause after a round where every broker failed.
    pub retry_backoff: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            isolation_level: 0,
            offset_reset: StartOffset::Earliest,
            retry_backoff: Duration::from_millis(100),
        }
    }
}

/// The records one Fetch returned for one partition.
#[derive(Debug, Clone)]
pub struct FetchedBatch {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// Records in offset order, control records excluded.
    pub records: Vec<Record>,
    /// The partition's high watermark at fetch time.
    pub high_watermark: i64,
    /// Size of the raw record batches received, in bytes.
    pub wire_bytes: usize,
}

/// One assigned partition and where reading continues.
#[derive(Debug, Clone)]
struct Assignment {
    topic: Arc<str>,
    partition: i32,
    /// The next offset to fetch.
    position: i64,
    /// This partition's current cap, doubled when one batch does not fit.
    partition_max_bytes: i32,
}

/// Fetches assigned partitions from their leaders.
#[derive(Debug)]
pub struct PartitionFetcher {
    client: Client,
    config: ConsumerConfig,
    assignments: Vec<Assignment>,
}

impl PartitionFetcher {
    /// A fetcher with nothing assigned.
    pub fn new(client: Client, config: ConsumerConfig) -> Self {
        Self {
            client,
            config,
            assignments: Vec::new(),
        }
    }

    /// Read `partitions` of `topic` starting at `start`.
    pub async fn assign(
        &mut self,
        topic: &str,
        partitions: &[i32],
        start: StartOffset,
    ) -> Result<(), ClientError> {
        let positions: Vec<(i32, i64)> = match start {
            StartOffset::At(offset) => partitions.iter().map(|&p| (p, offset)).collect(),
            other => {
                let timestamp = other.list_offsets_timestamp().unwrap_or(-2);
                self.client
                    .list_offsets(topic, partitions, timestamp)
                    .await?
            }
        };
        let topic: Arc<str> = Arc::from(topic);
        for (partition, position) in positions {
            self.assignments
                .retain(|a| !(*a.topic == *topic && a.partition == partition));
            self.assignments.push(Assignment {
                topic: Arc::clone(&topic),
                partition,
                position,
                partition_max_bytes: self.config.partition_max_bytes,
            });
        }
        Ok(())
    }

    /// Read every partition of `topic` starting at `start`.
    pub async fn assign_topic(
        &mut self,
        topic: &str,
        start: StartOffset,
    ) -> Result<(), ClientError> {
        let info = self.client.topic(topic).await?;
        let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        self.assign(topic, &partitions, start).await
    }

    /// The next offset that will be fetched for a partition.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.assignments
            .iter()
            .find(|a| &*a.topic == topic && a.partition == partition)
            .map(|a| a.position)
    }

    /// Continue reading a partition at `offset`.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(a) = self
            .assignments
            .iter_mut()
            .find(|a| &*a.topic == topic && a.partition == partition)
        {
            a.position = offset;
        }
    }

    /// One fetch round: a Fetch to every leader of an assigned partition, in
    /// parallel. Returns what arrived (possibly nothing, after `max_wait`).
    /// Retriable trouble (moved leaders, lost connections) is handled here by
    /// refreshing metadata; only other errors are returned.
    pub async fn poll(&mut self) -> Result<Vec<FetchedBatch>, ClientError> {
        if self.assignments.is_empty() {
            // Nothing to fetch: wait as a fetch would, so that a caller
            // polling in a loop never spins.
            tokio::time::sleep(self.config.retry_backoff).await;
            return Ok(Vec::new());
        }
        let mut by_leader: HashMap<i32, Vec<usize>> = HashMap::new();
        let mut stale: Vec<Arc<str>> = Vec::new();
        for (i, a) in self.assignments.iter().enumerate() {
            match self
                .client
                .cached_topic(&a.topic)
                .and_then(|t| t.leader(a.partition))
            {
                Some(leader) => by_leader.entry(leader).or_default().push(i),
                None => push_unique(&mut stale, &a.topic),
            }
        }
        let rounds = by_leader.into_iter().map(|(leader, indexes)| {
            let (request, missing_topic_id) = self.build_request(&indexes);
            let client = self.client.clone();
            async move {
                let outcome = async {
                    let conn = client.broker(leader).await?;
                    // Fetch v13+ names topics by id only.
                    let cap = if missing_topic_id { 12 } else { i16::MAX };
                    let version = conn.version_for_capped::<FetchRequest>(cap)?;
                    conn.request_with_version(&request, version).await
                }
                .await;
                (indexes, outcome)
            }
        });
        let results = futures::future::join_all(rounds).await;

        let mut fetched = Vec::new();
        let mut failures = 0;
        let rounds_count = results.len();
        for (indexes, outcome) in results {
            match outcome {
                Ok(response) => {
                    self.absorb(&indexes, response, &mut fetched, &mut stale)
                        .await?
                }
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "fetch failed; will refresh metadata and retry");
                    failures += 1;
                    for &i in &indexes {
                        push_unique(&mut stale, &self.assignments[i].topic);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !stale.is_empty() {
            let names: Vec<&str> = stale.iter().map(|t| &**t).collect();
            if let Err(e) = self.client.refresh_metadata(&names).await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
        }
        if fetched.is_empty()
            && (failures == rounds_count || rounds_count == 0)
            && !self.assignments.is_empty()
        {
            tokio::time::sleep(self.config.retry_backoff).await;
        }
        Ok(fetched)
    }

    /// The Fetch for the assignments at `indexes`, and whether a topic id is
    /// missing (then versions naming topics by id are out of reach).
    fn build_request(&self, indexes: &[usize]) -> (FetchRequest, bool) {
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut missing_topic_id = false;
        for &i in indexes {
            let a = &self.assignments[i];
            let partition = FetchPartition::default()
                .with_partition(a.partition)
                .with_fetch_offset(a.position)
                .with_partition_max_bytes(a.partition_max_bytes)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1);
            match topics.iter_mut().find(|t| t.topic.0.as_str() == &*a.topic) {
                Some(t) => t.partitions.push(partition),
                None => {
                    let topic_id = self
                        .client
                        .cached_topic(&a.topic)
                        .map_or(Uuid::nil(), |t| t.topic_id);
                    missing_topic_id |= topic_id.is_nil();
                    topics.push(
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(a.topic.to_string())))
                            .with_topic_id(topic_id)
                            .with_partitions(vec![partition]),
                    );
                }
            }
        }
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(i32::try_from(self.config.max_wait.as_millis()).unwrap_or(i32::MAX))
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.max_bytes)
            .with_isolation_level(self.config.isolation_level)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        (request, missing_topic_id)
    }

    /// Apply one Fetch response to the assignments at `indexes`.
    async fn absorb(
        &mut self,
        indexes: &[usize],
        response: FetchResponse,
        fetched: &mut Vec<FetchedBatch>,
        stale: &mut Vec<Arc<str>>,
    ) -> Result<(), ClientError> {
        if let Some(error) = ResponseError::try_from_code(response.error_code) {
            let error = ClientError::broker(ApiKey::Fetch, error, None);
            if error.is_retriable() {
                return Ok(());
            }
            return Err(error);
        }
        let mut resets: Vec<usize> = Vec::new();
        for topic_response in response.responses {
            for partition_data in topic_response.partitions {
                let Some(&i) = indexes.iter().find(|&&i| {
                    let a = &self.assignments[i];
                    a.partition == partition_data.partition_index
                        && (topic_response.topic.0.as_str() == &*a.topic
                            || (!topic_response.topic_id.is_nil()
                                && self
                                    .client
                                    .cached_topic(&a.topic)
                                    .is_some_and(|t| t.topic_id == topic_response.topic_id)))
                }) else {
                    continue;
                };
                let assignment = &mut self.assignments[i];
                match ResponseError::try_from_code(partition_data.error_code) {
                    None => {}
                    Some(ResponseError::OffsetOutOfRange) => {
                        resets.push(i);
                        continue;
                    }
                    Some(error) if is_stale_metadata_error(error) || error.is_retriable() => {
                        push_unique(stale, &assignment.topic);
                        continue;
                    }
                    Some(error) => {
                        return Err(ClientError::partition(
                            ApiKey::Fetch,
                            error,
                            &assignment.topic,
                            assignment.partition,
                            None,
                        ))
                    }
                }
                let raw = partition_data.records.unwrap_or_default();
                let wire_bytes = raw.len();
                let decoded =
                    decode_record_batches(raw, assignment.position).map_err(|reason| {
                        ClientError::Codec {
                            action: "decode",
                            api: ApiKey::Fetch,
                            version: -1,
                            reason: format!(
                                "{}-{} at offset {}: {reason}",
                                assignment.topic, assignment.partition, assignment.position
                            ),
                        }
                    })?;
                match decoded.next_offset {
                    Some(next) => {
                        assignment.position = assignment.position.max(next);
                        assignment.partition_max_bytes = self.config.partition_max_bytes;
                    }
                    None if wire_bytes > 0 => {
                        // Only part of one batch fit: ask for more next time.
                        assignment.partition_max_bytes =
                            assignment.partition_max_bytes.saturating_mul(2);
                    }
                    None => {}
                }
                if !decoded.records.is_empty() {
                    fetched.push(FetchedBatch {
                        topic: Arc::clone(&assignment.topic),
                        partition: assignment.partition,
                        records: decoded.records,
                        high_watermark: partition_data.high_watermark,
                        wire_bytes,
                    });
                }
            }
        }
        for i in resets {
            let (topic, partition) = (
                Arc::clone(&self.assignments[i].topic),
                self.assignments[i].partition,
            );
            let timestamp = self.config.offset_reset.list_offsets_timestamp();
            let position = match (self.config.offset_reset, timestamp) {
                (StartOffset::At(offset), _) => offset,
                (_, Some(ts)) => self
                    .client
                    .list_offsets(&topic, &[partition], ts)
                    .await?
                    .first()
                    .map_or(0, |&(_, offset)| offset),
                (_, None) => 0,
            };
            tracing::debug!(%topic, partition, position, "fetch position out of range; reset");
            self.assignments[i].position = position;
        }
        Ok(())
    }
}

fn push_unique(list: &mut Vec<Arc<str>>, topic: &Arc<str>) {
    if !list.iter().any(|t| **t == **topic) {
        list.push(Arc::clone(topic));
    }
}

/// Records decoded from one partition's `records` bytes.
#[derive(Debug, Default)]
pub(crate) struct DecodedRecords {
    /// Data records at or after the requested offset.
    pub records: Vec<Record>,
    /// The offset after the last complete batch, if there was one.
    pub next_offset: Option<i64>,
}

/// Split `raw` into record batches and decode each complete one. A trailing
/// partial batch (the broker cut the response at a byte limit) is ignored.
pub(crate) fn decode_record_batches(
    mut raw: Bytes,
    fetch_offset: i64,
) -> Result<DecodedRecords, String> {
    let mut out = DecodedRecords::default();
    while raw.len() >= LOG_OVERHEAD {
        let base_offset = i64::from_be_bytes(be_array(&raw[0..8]));
        let length = i32::from_be_bytes(be_array(&raw[8..12]));
        let length =
            usize::try_from(length).map_err(|_| format!("negative batch length {length}"))?;
        let total = LOG_OVERHEAD + length;
        if raw.len() < total {
            break;
        }
        let mut batch = raw.split_to(total);
        if batch.len() < BATCH_HEADER_BYTES {
            return Err(format!(
                "record batch of {} bytes is shorter than its header",
                batch.len()
            ));
        }
        let magic = batch[MAGIC_OFFSET];
        if magic != 2 {
            return Err(format!(
                "message format v{magic} is not supported (only v2 record batches)"
            ));
        }
        let attributes =
            i16::from_be_bytes(be_array(&batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]));
        let last_offset_delta = i32::from_be_bytes(be_array(
            &batch[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4],
        ));
        out.next_offset = Some(base_offset + i64::from(last_offset_delta) + 1);
        if attributes & CONTROL_FLAG != 0
            || base_offset + i64::from(last_offset_delta) < fetch_offset
        {
            continue;
        }
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
        if out.records.is_empty() {
            out.records = set.records;
            out.records.retain(|r| r.offset >= fetch_offset);
        } else {
            out.records
                .extend(set.records.into_iter().filter(|r| r.offset >= fetch_offset));
        }
    }
    Ok(out)
}

/// Copy a slice of known length into an array (the callers index exact ranges).
fn be_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

impl Client {
    /// ListOffsets: the offset of each of `partitions` of `topic` at
    /// `timestamp` (-2 = earliest, -1 = latest, else the first offset whose
    /// timestamp is at or after it). Each partition is asked of its leader.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        self.list_offsets_isolated(topic, partitions, timestamp, 0)
            .await
    }

    /// [`Client::list_offsets`] with an isolation level: with 1
    /// (read_committed), latest (-1) is the last stable offset, not the high
    /// watermark.
    pub async fn list_offsets_isolated(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
        isolation_level: i8,
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        let mut attempt = 0;
        loop {
            match self
                .list_offsets_once(topic, partitions, timestamp, isolation_level)
                .await
            {
                Err(e) if e.is_retriable() && attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "ListOffsets failed; refreshing metadata");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    let _ = self.refresh_metadata(&[topic]).await;
                }
                other => return other,
            }
        }
    }

    async fn list_offsets_once(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
        isolation_level: i8,
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        let info = self.topic(topic).await?;
        let mut by_leader: HashMap<i32, Vec<i32>> = HashMap::new();
        for &p in partitions {
            let leader = info.leader(p).ok_or_else(|| {
                ClientError::partition(
                    ApiKey::ListOffsets,
                    ResponseError::LeaderNotAvailable,
                    topic,
                    p,
                    None,
                )
            })?;
            by_leader.entry(leader).or_default().push(p);
        }
        let mut offsets = Vec::with_capacity(partitions.len());
        for (leader, parts) in by_leader {
            let conn = self.broker(leader).await?;
            let request = ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_isolation_level(isolation_level)
                .with_timeout_ms(30_000)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            let response = conn.request(&request).await?;
            for t in response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
            {
                for p in &t.partitions {
                    if let Some(error) = ResponseError::try_from_code(p.error_code) {
                        return Err(ClientError::partition(
                            ApiKey::ListOffsets,
                            error,
                            topic,
                            p.partition_index,
                            None,
                        ));
                    }
                    offsets.push((p.partition_index, p.offset));
                }
            }
        }
        offsets.sort_unstable();
        if offsets.len() != partitions.len() {
            return Err(ClientError::Metadata(format!(
                "ListOffsets answered {} of {} partitions of {topic}",
                offsets.len(),
                partitions.len()
            )));
        }
        Ok(offsets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(base: i64, count: i64) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i,
                sequence: -1 + i as i32,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(format!("value-{}", base + i))),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[tokio::test]
    async fn polling_a_fetcher_with_nothing_assigned_waits_instead_of_spinning() {
        // No broker is contacted: nothing is assigned.
        let client = Client::offline(crate::client::ClientConfig::new("127.0.0.1:9"));
        let config = ConsumerConfig::default();
        let pause = config.retry_backoff;
        let mut fetcher = PartitionFetcher::new(client, config);
        let started = std::time::Instant::now();
        for _ in 0..3 {
            assert!(fetcher.poll().await.unwrap().is_empty());
        }
        assert!(started.elapsed() >= pause * 3, "{:?}", started.elapsed());
    }

    #[test]
    fn decodes_consecutive_batches_and_skips_records_before_fetch_offset() {
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&batch(10, 5));
        raw.extend_from_slice(&batch(15, 5));
        let decoded = decode_record_batches(raw.freeze(), 12).unwrap();
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (12..20).collect::<Vec<_>>());
        assert_eq!(decoded.next_offset, Some(20));
        assert_eq!(decoded.records[0].value.as_deref(), Some(&b"value-12"[..]));
    }

    #[test]
    fn trailing_partial_batch_is_left_for_the_next_fetch() {
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&batch(0, 3));
        let second = batch(3, 3);
        raw.extend_from_slice(&second[..second.len() - 7]);
        let decoded = decode_record_batches(raw.freeze(), 0).unwrap();
        assert_eq!(decoded.records.len(), 3);
        assert_eq!(decoded.next_offset, Some(3));

        let only_partial = second.slice(..20);
        let decoded = decode_record_batches(only_partial, 3).unwrap();
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, None);
    }

    #[test]
    fn corrupt_batch_is_an_error_not_a_panic() {
        let mut raw = BytesMut::from(&batch(0, 3)[..]);
        let last = raw.len() - 1;
        raw[last] ^= 0xff; // breaks the CRC
        assert!(decode_record_batches(raw.freeze(), 0).is_err());
        let negative = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode_record_batches(negative, 0).is_err());
        let short = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        assert!(decode_record_batches(short, 0).is_err());
    }
}
