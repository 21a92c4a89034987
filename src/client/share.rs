//! A share group member (KIP-932): ShareGroupHeartbeat to the group's
//! coordinator, ShareFetch to each assigned partition's leader over a share
//! session per leader, and acknowledgements (accept, release, reject) sent
//! with the next fetch, or with ShareAcknowledge when it closes.
//!
//! Every record it returns is acquired by this member until the broker's
//! acquisition lock expires; what is not acknowledged by then goes to
//! another member. Offsets of an acquired range that hold no record
//! (transaction markers) are acknowledged as gaps at once.
//!
//! Must never: keep a record it did not acquire (a fetched batch may hold
//! records before or after the acquired ranges).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, ShareAcknowledgeRequest, ShareFetchRequest, ShareGroupHeartbeatRequest,
    TopicName,
};
use kafka_protocol::records::Record;
use tokio::time::Instant;
use uuid::Uuid;

use super::connection::BrokerConnection;
use super::consumer::decode_committed_batches;
use super::group::{find_group_coordinator, str_bytes};
use super::{Client, ClientError};

/// How a record is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledge {
    /// Processed.
    Accept,
    /// Never to be delivered again. (RELEASE, to deliver a record again,
    /// is served by the broker; the shop's dispatcher has no use for it.)
    Reject,
}

impl Acknowledge {
    fn wire(self) -> i8 {
        match self {
            Acknowledge::Accept => 1,
            Acknowledge::Reject => 3,
        }
    }
}

/// Acknowledgements not sent yet, by (topic id, partition): (first offset,
/// last offset, wire type).
type PendingAcks = BTreeMap<(Uuid, i32), Vec<(i64, i64, i8)>>;

/// The gap acknowledgement type: an offset without a record.
const GAP: i8 = 0;

/// One record acquired by this member.
#[derive(Debug, Clone)]
pub struct SharedRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    /// How many times the broker delivered it (1 the first time).
    pub delivery_count: i16,
    pub record: Record,
}

/// A share session with one leader.
#[derive(Debug, Default)]
struct ShareSession {
    /// The epoch of the next request (0 opens the session).
    epoch: i32,
    partitions: BTreeSet<(Uuid, i32)>,
}

/// A member of one share group.
#[derive(Debug)]
pub struct ShareConsumer {
    client: Client,
    group_id: String,
    /// Generated here, as KIP-932 clients do.
    member_id: String,
    /// 0 until the coordinator answers a join.
    member_epoch: i32,
    topics: Vec<String>,
    coordinator: Option<Arc<BrokerConnection>>,
    next_heartbeat: Instant,
    heartbeat_interval: Duration,
    /// The assigned partitions with their topic's name.
    assignment: BTreeMap<(Uuid, i32), Arc<str>>,
    /// By leader id.
    sessions: HashMap<i32, ShareSession>,
    /// Acknowledgements not sent yet: (first, last, type) per partition.
    acks: PendingAcks,
    /// How long a fetch waits for records.
    max_wait: Duration,
}

impl ShareConsumer {
    /// A member of `group_id` for `topics` (joins at the first poll).
    pub fn new(client: Client, group_id: &str, topics: &[&str], max_wait: Duration) -> Self {
        ShareConsumer {
            client,
            group_id: group_id.to_owned(),
            member_id: Uuid::new_v4().simple().to_string(),
            member_epoch: 0,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            coordinator: None,
            next_heartbeat: Instant::now(),
            heartbeat_interval: Duration::from_secs(5),
            assignment: BTreeMap::new(),
            sessions: HashMap::new(),
            acks: BTreeMap::new(),
            max_wait,
        }
    }

    /// Acknowledge one record returned by [`poll`](Self::poll); sent with
    /// the next poll or at close.
    pub fn acknowledge(&mut self, record: &SharedRecord, how: Acknowledge) {
        let Some((&key, _)) = self
            .assignment
            .iter()
            .find(|((_, p), t)| *p == record.partition && **t == record.topic)
        else {
            return;
        };
        push_ack(&mut self.acks, key, record.record.offset, how.wire());
    }

    async fn heartbeat(&mut self, leaving: bool) -> Result<(), ClientError> {
        let coordinator = match self.coordinator.clone().filter(|c| !c.is_poisoned()) {
            Some(c) => c,
            None => {
                let c = find_group_coordinator(&self.client, &self.group_id).await?;
                self.coordinator = Some(Arc::clone(&c));
                c
            }
        };
        let request = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group_id)))
            .with_member_id(str_bytes(&self.member_id))
            .with_member_epoch(if leaving { -1 } else { self.member_epoch })
            .with_subscribed_topic_names((self.member_epoch == 0 && !leaving).then(|| {
                self.topics
                    .iter()
                    .map(|t| TopicName(str_bytes(t)))
                    .collect()
            }));
        let response = coordinator.request(&request).await?;
        if let Some(error) = ResponseError::try_from_code(response.error_code) {
            if matches!(
                error,
                ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable
            ) {
                self.coordinator = None;
            }
            if matches!(
                error,
                ResponseError::UnknownMemberId | ResponseError::FencedMemberEpoch
            ) {
                self.member_epoch = 0;
            }
            return Err(ClientError::broker(
                ApiKey::ShareGroupHeartbeat,
                error,
                None,
            ));
        }
        if leaving {
            return Ok(());
        }
        self.member_epoch = response.member_epoch;
        self.heartbeat_interval =
            Duration::from_millis(response.heartbeat_interval_ms.max(100) as u64);
        self.next_heartbeat = Instant::now() + self.heartbeat_interval;
        if let Some(assignment) = response.assignment {
            let mut names = HashMap::new();
            for topic in &self.topics {
                let info = self.client.topic(topic).await?;
                names.insert(info.topic_id, Arc::<str>::from(topic.as_str()));
            }
            self.assignment = assignment
                .topic_partitions
                .iter()
                .filter_map(|tp| names.get(&tp.topic_id).map(|n| (tp, n)))
                .flat_map(|(tp, name)| {
                    tp.partitions
                        .iter()
                        .map(move |p| ((tp.topic_id, *p), Arc::clone(name)))
                })
                .collect();
        }
        Ok(())
    }

    /// The leader of each assigned partition.
    async fn leaders(&self) -> Result<BTreeMap<i32, Vec<(Uuid, i32)>>, ClientError> {
        let mut out: BTreeMap<i32, Vec<(Uuid, i32)>> = BTreeMap::new();
        for (&(id, partition), topic) in &self.assignment {
            let info = self.client.topic(topic).await?;
            if let Some(p) = info.partitions.iter().find(|p| p.partition == partition) {
                out.entry(p.leader_id).or_default().push((id, partition));
            }
        }
        Ok(out)
    }

    /// Heartbeat when due, send the pending acknowledgements and fetch
    /// records from every assigned partition's leader.
    pub async fn poll(&mut self) -> Result<Vec<SharedRecord>, ClientError> {
        if self.member_epoch == 0 || Instant::now() >= self.next_heartbeat {
            self.heartbeat(false).await?;
        }
        if self.assignment.is_empty() {
            tokio::time::sleep(self.max_wait).await;
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (leader, partitions) in self.leaders().await? {
            out.extend(self.fetch_from(leader, &partitions).await?);
        }
        Ok(out)
    }

    async fn fetch_from(
        &mut self,
        leader: i32,
        partitions: &[(Uuid, i32)],
    ) -> Result<Vec<SharedRecord>, ClientError> {
        let conn = self.client.broker(leader).await?;
        let session = self.sessions.entry(leader).or_default();
        let wanted: BTreeSet<(Uuid, i32)> = partitions.iter().copied().collect();
        let mut named: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
        for &(id, p) in &wanted {
            let acks = self.acks.remove(&(id, p)).unwrap_or_default();
            if session.partitions.contains(&(id, p)) && acks.is_empty() {
                continue;
            }
            named.entry(id).or_default().push(
                FetchPartition::default()
                    .with_partition_index(p)
                    .with_acknowledgement_batches(
                        acks.into_iter()
                            .map(|(first, last, t)| {
                                AcknowledgementBatch::default()
                                    .with_first_offset(first)
                                    .with_last_offset(last)
                                    .with_acknowledge_types(vec![t])
                            })
                            .collect(),
                    ),
            );
        }
        let mut forgotten: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        for &(id, p) in session.partitions.difference(&wanted) {
            forgotten.entry(id).or_default().push(p);
        }
        let request = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(str_bytes(&self.group_id))))
            .with_member_id(Some(str_bytes(&self.member_id)))
            .with_share_session_epoch(session.epoch)
            .with_max_wait_ms(self.max_wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(4 * 1024 * 1024)
            .with_max_records(500)
            .with_batch_size(500)
            .with_topics(
                named
                    .into_iter()
                    .map(|(id, ps)| FetchTopic::default().with_topic_id(id).with_partitions(ps))
                    .collect(),
            )
            .with_forgotten_topics_data(
                forgotten
                    .into_iter()
                    .map(|(id, ps)| {
                        ForgottenTopic::default()
                            .with_topic_id(id)
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let response = conn.request(&request).await?;
        if let Some(error) = ResponseError::try_from_code(response.error_code) {
            // The session is gone (or never was): open a new one next time.
            *session = ShareSession::default();
            if error == ResponseError::UnknownMemberId {
                self.member_epoch = 0;
            }
            return Err(ClientError::broker(ApiKey::ShareFetch, error, None));
        }
        session.epoch = session.epoch.checked_add(1).unwrap_or(1);
        session.partitions = wanted;
        let mut out = Vec::new();
        for topic in response.responses {
            for p in topic.partitions {
                let key = (topic.topic_id, p.partition_index);
                let Some(name) = self.assignment.get(&key).cloned() else {
                    continue;
                };
                let Some(raw) = p.records else { continue };
                let decoded =
                    decode_committed_batches(raw, 0, &[]).map_err(|reason| ClientError::Codec {
                        action: "decode",
                        api: ApiKey::ShareFetch,
                        version: -1,
                        reason: format!("{name}-{}: {reason}", p.partition_index),
                    })?;
                let by_offset: BTreeMap<i64, Record> =
                    decoded.records.into_iter().map(|r| (r.offset, r)).collect();
                for range in &p.acquired_records {
                    for offset in range.first_offset..=range.last_offset {
                        match by_offset.get(&offset) {
                            Some(record) => out.push(SharedRecord {
                                topic: Arc::clone(&name),
                                partition: p.partition_index,
                                delivery_count: range.delivery_count,
                                record: record.clone(),
                            }),
                            None => push_ack(&mut self.acks, key, offset, GAP),
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Send the pending acknowledgements, close the share sessions (what
    /// this member still holds goes to the others) and leave the group.
    pub async fn close(mut self) {
        let leaders: Vec<i32> = self.sessions.keys().copied().collect();
        for leader in leaders {
            let Ok(conn) = self.client.broker(leader).await else {
                continue;
            };
            let Some(session) = self.sessions.get(&leader).filter(|s| s.epoch > 0) else {
                continue;
            };
            let mut topics: BTreeMap<Uuid, Vec<AcknowledgePartition>> = BTreeMap::new();
            for &(id, p) in &session.partitions {
                let acks = self.acks.remove(&(id, p)).unwrap_or_default();
                topics.entry(id).or_default().push(
                    AcknowledgePartition::default()
                        .with_partition_index(p)
                        .with_acknowledgement_batches(
                            acks.into_iter()
                                .map(|(first, last, t)| {
                                    AckBatch::default()
                                        .with_first_offset(first)
                                        .with_last_offset(last)
                                        .with_acknowledge_types(vec![t])
                                })
                                .collect(),
                        ),
                );
            }
            let request = ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(str_bytes(&self.group_id))))
                .with_member_id(Some(str_bytes(&self.member_id)))
                .with_share_session_epoch(-1)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(id, ps)| {
                            AcknowledgeTopic::default()
                                .with_topic_id(id)
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            if let Err(e) = conn.request(&request).await {
                tracing::debug!(error = %e, "closing a share session failed");
            }
        }
        if self.member_epoch > 0 {
            if let Err(e) = self.heartbeat(true).await {
                tracing::debug!(error = %e, "leaving the share group failed");
            }
        }
    }
}

/// Queue one offset's acknowledgement, merged with the last range when it
/// follows it with the same type.
fn push_ack(acks: &mut PendingAcks, key: (Uuid, i32), offset: i64, t: i8) {
    let ranges = acks.entry(key).or_default();
    match ranges.last_mut() {
        Some(last) if last.1 + 1 == offset && last.2 == t => last.1 = offset,
        _ => ranges.push((offset, offset, t)),
    }
}
