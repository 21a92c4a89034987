//! A consumer-group member (Kafka's classic group protocol), so that the
//! shop's consumers show up in Kafka tooling (`kafka-consumer-groups`, kcat,
//! kafka-python's admin client) like any Java consumer would.
//!
//! - FindCoordinator, then a *dedicated* connection to the coordinator: a
//!   JoinGroup may be held by the broker for a whole rebalance, and must not
//!   stall the fetches and produces pipelined on the shared connections.
//! - JoinGroup with protocol type `consumer` and the `range` assignor; the
//!   subscription and assignment bytes are the standard `ConsumerProtocol`
//!   structures (version 0, understood by every client and tool). The leader
//!   computes the assignment, SyncGroup distributes it.
//! - A heartbeat task per generation; REBALANCE_IN_PROGRESS,
//!   ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID (and a lost coordinator) make the
//!   member rejoin on its next [`GroupConsumer::poll`].
//! - OffsetFetch decides where each assigned partition starts; OffsetCommit
//!   is explicit ([`GroupConsumer::commit`]) so the caller commits only what
//!   it has durably processed.
//! - Optional static membership (KIP-345, `group_instance_id`): a restarted
//!   member takes its old place without waiting for the session timeout.
//!
//! Never: commit on its own, or hide a fatal group error (it is returned).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::cluster::Client;
use super::connection::BrokerConnection;
use super::consumer::{ConsumerConfig, FetchedBatch, PartitionFetcher, StartOffset};
use super::error::ClientError;

/// The protocol type of consumers, as opposed to Connect workers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The assignor this member offers (Kafka's `RangeAssignor`).
pub const RANGE_ASSIGNOR: &str = "range";
/// Version of the subscription and assignment structures we write.
const CONSUMER_PROTOCOL_VERSION: i16 = 0;

/// How a member joins its group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group's name.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Static member id (KIP-345); None for a dynamic member.
    pub group_instance_id: Option<String>,
    /// The coordinator evicts a member it has not heard from for this long.
    pub session_timeout: Duration,
    /// How long the coordinator waits for members to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// Pause between heartbeats.
    pub heartbeat_interval: Duration,
    /// Where a partition without a committed offset starts.
    pub start: StartOffset,
    /// How partitions are fetched.
    pub fetch: ConsumerConfig,
    /// Pause after a failed attempt to join.
    pub retry_backoff: Duration,
}

impl GroupConfig {
    /// Defaults for `group_id` consuming `topics`.
    pub fn new(group_id: impl Into<String>, topics: &[&str]) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(1),
            start: StartOffset::Earliest,
            fetch: ConsumerConfig::default(),
            retry_backoff: Duration::from_millis(200),
        }
    }
}

/// What [`GroupConsumer::poll`] returns.
#[derive(Debug)]
pub enum GroupEvent {
    /// The member (re)joined and now owns these partitions, positioned at
    /// their committed offsets (or `start`). Call [`GroupConsumer::seek`]
    /// before the next poll to read from elsewhere.
    Assigned(Vec<(String, i32)>),
    /// Records of the owned partitions (possibly none).
    Records(Vec<FetchedBatch>),
}

/// The membership of the current generation.
struct Membership {
    coordinator: Arc<BrokerConnection>,
    generation_id: i32,
    member_id: String,
    heartbeat: JoinHandle<()>,
}

/// One member of a consumer group.
pub struct GroupConsumer {
    client: Client,
    config: GroupConfig,
    /// Kept across rejoins, as Kafka expects; empty until the coordinator gives one.
    member_id: String,
    membership: Option<Membership>,
    /// Partitions owned in the current generation.
    assignment: Vec<(String, i32)>,
    fetcher: PartitionFetcher,
    /// Set by the heartbeat task (or a failed commit) when the member must rejoin.
    rejoin: Arc<AtomicBool>,
    /// Wakes a poll waiting with nothing assigned.
    rejoin_signal: Arc<Notify>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group_id", &self.config.group_id)
            .field("member_id", &self.member_id)
            .field("assignment", &self.assignment)
            .finish()
    }
}

fn group_error(api: ApiKey, code: i16) -> Option<ClientError> {
    ResponseError::try_from_code(code).map(|e| ClientError::broker(api, e, None))
}

/// FindCoordinator (key type 0) for `group_id`, then a connection of its
/// own to the coordinator.
pub(crate) async fn find_group_coordinator(
    client: &Client,
    group_id: &str,
) -> Result<Arc<BrokerConnection>, ClientError> {
    let conn = client.any_broker().await?;
    let version = conn.version_for::<FindCoordinatorRequest>()?;
    let request = if version >= 4 {
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![str_bytes(group_id)])
    } else {
        FindCoordinatorRequest::default()
            .with_key(str_bytes(group_id))
            .with_key_type(0)
    };
    let response = conn.request_with_version(&request, version).await?;
    let (code, node, host, port) = if version >= 4 {
        let c = response.coordinators.first().ok_or_else(|| {
            ClientError::Metadata("FindCoordinator answered no coordinator".to_owned())
        })?;
        (c.error_code, c.node_id.0, c.host.to_string(), c.port)
    } else {
        (
            response.error_code,
            response.node_id.0,
            response.host.to_string(),
            response.port,
        )
    };
    if let Some(e) = group_error(ApiKey::FindCoordinator, code) {
        return Err(e);
    }
    // A connection of its own, to the address the coordinator was given as.
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    tracing::debug!(group = %group_id, node, %addr, "found the group coordinator");
    Ok(Arc::new(
        BrokerConnection::connect(&addr, &client.config().connection).await?,
    ))
}

/// Errors after which the member must join again.
fn needs_rejoin(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::RebalanceInProgress
            | ResponseError::IllegalGeneration
            | ResponseError::UnknownMemberId
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::FencedInstanceId
    )
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Encode a subscription the way Java's `ConsumerProtocol` does.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| str_bytes(t)).collect())
        .with_user_data(None);
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    // Encoding a well-formed in-memory struct at a supported version cannot fail.
    let _ = subscription.encode(&mut buf, CONSUMER_PROTOCOL_VERSION);
    buf.freeze()
}

/// Decode a member's subscription (any version; newer ones only add fields).
pub fn decode_subscription(mut bytes: Bytes) -> Option<Vec<String>> {
    if bytes.remaining() < 2 {
        return None;
    }
    let version = bytes.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut bytes, version)
        .ok()
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
}

/// Encode an assignment the way Java's `ConsumerProtocol` does.
pub fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            partitions
                .iter()
                .map(|(topic, parts)| {
                    AssignedTopic::default()
                        .with_topic(TopicName(str_bytes(topic)))
                        .with_partitions(parts.clone())
                })
                .collect(),
        )
        .with_user_data(None);
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    let _ = assignment.encode(&mut buf, CONSUMER_PROTOCOL_VERSION);
    buf.freeze()
}

/// Decode an assignment; empty bytes mean nothing assigned.
pub fn decode_assignment(mut bytes: Bytes) -> Result<Vec<(String, i32)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.remaining() < 2 {
        return Err("assignment shorter than its version".to_owned());
    }
    let version = bytes.get_i16().clamp(0, 3);
    let assignment = ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map_err(|e| format!("undecodable assignment: {e}"))?;
    let mut out = Vec::new();
    for topic in assignment.assigned_partitions {
        for p in topic.partitions {
            out.push((topic.topic.0.to_string(), p));
        }
    }
    out.sort();
    Ok(out)
}

/// Decode an assignment as its topics with their partitions, in the order
/// the assignor wrote them (what `sluice groups describe` shows). Empty
/// bytes mean nothing assigned; None if the bytes are not an assignment.
pub fn decode_assignment_by_topic(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let (version, body) = bytes.split_first_chunk::<2>()?;
    let version = i16::from_be_bytes(*version);
    if version < 0 {
        return None;
    }
    let mut body = Bytes::copy_from_slice(body);
    let assignment = ConsumerProtocolAssignment::decode(&mut body, version.min(3)).ok()?;
    Some(
        assignment
            .assigned_partitions
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
    )
}

/// The range assignor: for each topic, its partitions in order are cut into
/// contiguous ranges over the members subscribed to it (sorted by member
/// id), the first `partitions % members` members getting one more.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &HashMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    let mut topics: Vec<&String> = subscriptions.values().flatten().collect();
    topics.sort();
    topics.dedup();
    for topic in topics {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, t)| t.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() || count <= 0 {
            continue;
        }
        let per = count / members.len() as i32;
        let extra = count % members.len() as i32;
        for (i, member) in members.into_iter().enumerate() {
            let i = i as i32;
            let start = i * per + i.min(extra);
            let len = per + i32::from(i < extra);
            if len > 0 {
                out.entry(member.clone())
                    .or_default()
                    .insert(topic.clone(), (start..start + len).collect());
            }
        }
    }
    out
}

impl GroupConsumer {
    /// A member that will join on its first [`poll`](Self::poll).
    pub fn new(client: Client, config: GroupConfig) -> Self {
        GroupConsumer {
            fetcher: PartitionFetcher::new(client.clone(), config.fetch.clone()),
            client,
            config,
            member_id: String::new(),
            membership: None,
            assignment: Vec::new(),
            rejoin: Arc::new(AtomicBool::new(false)),
            rejoin_signal: Arc::new(Notify::new()),
        }
    }

    /// Partitions owned in the current generation.
    pub fn assignment(&self) -> &[(String, i32)] {
        &self.assignment
    }

    /// The current generation, if joined.
    pub fn generation_id(&self) -> Option<i32> {
        self.membership.as_ref().map(|m| m.generation_id)
    }

    /// The member id of the current generation (for TxnOffsetCommit).
    pub fn member_id(&self) -> Option<&str> {
        self.membership.as_ref().map(|m| m.member_id.as_str())
    }

    /// The next offset of every owned partition.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.assignment
            .iter()
            .filter_map(|(t, p)| self.fetcher.position(t, *p).map(|o| (t.clone(), *p, o)))
            .collect()
    }

    /// Continue reading an owned partition at `offset`.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        self.fetcher.seek(topic, partition, offset);
    }

    /// Join if needed, then fetch. A (re)join is reported as
    /// [`GroupEvent::Assigned`] before any record of the new generation.
    pub async fn poll(&mut self) -> Result<GroupEvent, ClientError> {
        if self.membership.is_none() || self.rejoin.load(Ordering::Acquire) {
            let assigned = self.join().await?;
            return Ok(GroupEvent::Assigned(assigned));
        }
        if self.assignment.is_empty() {
            // Nothing to fetch: wait for a rebalance (or just a while).
            let _ = tokio::time::timeout(self.config.fetch.max_wait, self.rejoin_signal.notified())
                .await;
            return Ok(GroupEvent::Records(Vec::new()));
        }
        Ok(GroupEvent::Records(self.fetcher.poll().await?))
    }

    async fn find_coordinator(&self) -> Result<Arc<BrokerConnection>, ClientError> {
        find_group_coordinator(&self.client, &self.config.group_id).await
    }

    /// Leave the current generation's state behind (heartbeats stop).
    fn drop_membership(&mut self) {
        if let Some(m) = self.membership.take() {
            m.heartbeat.abort();
        }
        self.assignment.clear();
    }

    /// Join (or rejoin) the group until a generation is complete.
    async fn join(&mut self) -> Result<Vec<(String, i32)>, ClientError> {
        let coordinator = self.membership.as_ref().map(|m| Arc::clone(&m.coordinator));
        self.drop_membership();
        self.rejoin.store(false, Ordering::Release);
        let mut coordinator = coordinator.filter(|c| !c.is_poisoned());
        let mut attempts: u32 = 0;
        let mut retries: u32 = 0;
        loop {
            let conn = match coordinator.clone() {
                Some(c) => c,
                None => match self.find_coordinator().await {
                    Ok(c) => {
                        coordinator = Some(Arc::clone(&c));
                        c
                    }
                    Err(e) if e.is_retriable() || is_coordinator_error(&e) => {
                        self.backoff(&mut attempts, &e).await?;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            match self.join_once(&conn).await {
                Ok(done) => {
                    self.membership = Some(done);
                    break;
                }
                // MEMBER_ID_REQUIRED and a rebalance under way are answered
                // at once; a coordinator that keeps answering them is not
                // asked again without a pause.
                Err(JoinFailure::Retry) => {
                    retries += 1;
                    if retries > 3 {
                        let e = ClientError::broker(
                            ApiKey::JoinGroup,
                            ResponseError::RebalanceInProgress,
                            None,
                        );
                        self.backoff(&mut attempts, &e).await?;
                    }
                }
                Err(JoinFailure::NewCoordinator(e)) => {
                    coordinator = None;
                    self.backoff(&mut attempts, &e).await?;
                }
                Err(JoinFailure::Fatal(e)) => return Err(e),
            }
        }
        let assigned = self.assignment.clone();
        if let Err(e) = self.position_partitions().await {
            // The member cannot fetch what it was given (no leader for a
            // partition, say): rejoin on the next poll, after a pause, rather
            // than polling an empty fetcher in a loop.
            self.rejoin.store(true, Ordering::Release);
            let mut attempts = 0;
            self.backoff(&mut attempts, &e).await?;
            return Err(e);
        }
        tracing::info!(
            group = %self.config.group_id,
            member = %self.member_id,
            generation = self.generation_id().unwrap_or(-1),
            partitions = assigned.len(),
            "joined consumer group"
        );
        Ok(assigned)
    }

    async fn backoff(&self, attempts: &mut u32, error: &ClientError) -> Result<(), ClientError> {
        *attempts += 1;
        tracing::debug!(group = %self.config.group_id, error = %error, attempt = *attempts, "group join retry");
        let pause = self.config.retry_backoff * (*attempts).min(10);
        tokio::time::sleep(pause).await;
        Ok(())
    }

    async fn join_once(&mut self, conn: &Arc<BrokerConnection>) -> Result<Membership, JoinFailure> {
        let version = conn
            .version_for::<JoinGroupRequest>()
            .map_err(JoinFailure::Fatal)?;
        let instance_id = self
            .config
            .group_instance_id
            .as_deref()
            .filter(|_| version >= 5)
            .map(str_bytes);
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.config.group_id)))
            .with_session_timeout_ms(self.config.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis() as i32)
            .with_member_id(str_bytes(&self.member_id))
            .with_group_instance_id(instance_id.clone())
            .with_protocol_type(str_bytes(CONSUMER_PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(str_bytes(RANGE_ASSIGNOR))
                .with_metadata(encode_subscription(&self.config.topics))]);
        let response = conn
            .request_with_version(&request, version)
            .await
            .map_err(JoinFailure::classify)?;
        match ResponseError::try_from_code(response.error_code) {
            None => {}
            Some(ResponseError::MemberIdRequired) => {
                self.member_id = response.member_id.to_string();
                return Err(JoinFailure::Retry);
            }
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Err(JoinFailure::Retry);
            }
            Some(ResponseError::RebalanceInProgress) => return Err(JoinFailure::Retry),
            Some(e) => {
                return Err(JoinFailure::classify(ClientError::broker(
                    ApiKey::JoinGroup,
                    e,
                    None,
                )))
            }
        }
        self.member_id = response.member_id.to_string();
        let generation_id = response.generation_id;
        let protocol_name = response
            .protocol_name
            .as_ref()
            .map_or_else(|| RANGE_ASSIGNOR.to_owned(), |p| p.to_string());
        let is_leader = response.leader.as_str() == self.member_id;

        let assignments = if is_leader && !response.skip_assignment {
            let mut subscriptions = BTreeMap::new();
            for member in &response.members {
                let topics = decode_subscription(member.metadata.clone()).unwrap_or_default();
                subscriptions.insert(member.member_id.to_string(), topics);
            }
            let mut all_topics: Vec<&str> = subscriptions
                .values()
                .flatten()
                .map(String::as_str)
                .collect();
            all_topics.sort_unstable();
            all_topics.dedup();
            let mut counts = HashMap::new();
            if !all_topics.is_empty() {
                let _ = self.client.refresh_metadata(&all_topics).await;
            }
            for topic in all_topics {
                if let Some(info) = self.client.cached_topic(topic) {
                    counts.insert(topic.to_owned(), info.partition_count() as i32);
                }
            }
            range_assign(&subscriptions, &counts)
                .into_iter()
                .map(|(member, parts)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(str_bytes(&member))
                        .with_assignment(encode_assignment(&parts))
                })
                .collect()
        } else {
            Vec::new()
        };

        let sync_version = conn
            .version_for::<SyncGroupRequest>()
            .map_err(JoinFailure::Fatal)?;
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.config.group_id)))
            .with_generation_id(generation_id)
            .with_member_id(str_bytes(&self.member_id))
            .with_group_instance_id(instance_id.clone().filter(|_| sync_version >= 3))
            .with_protocol_type(Some(str_bytes(CONSUMER_PROTOCOL_TYPE)))
            .with_protocol_name(Some(str_bytes(&protocol_name)))
            .with_assignments(assignments);
        let synced = conn
            .request_with_version(&sync, sync_version)
            .await
            .map_err(JoinFailure::classify)?;
        match ResponseError::try_from_code(synced.error_code) {
            None => {}
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Err(JoinFailure::Retry);
            }
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                return Err(JoinFailure::Retry)
            }
            Some(e) => {
                return Err(JoinFailure::classify(ClientError::broker(
                    ApiKey::SyncGroup,
                    e,
                    None,
                )))
            }
        }
        self.assignment = decode_assignment(synced.assignment).map_err(|reason| {
            JoinFailure::Fatal(ClientError::Codec {
                action: "decode",
                api: ApiKey::SyncGroup,
                version: sync_version,
                reason,
            })
        })?;

        let heartbeat = tokio::spawn(heartbeat_loop(
            Arc::clone(conn),
            HeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes(&self.config.group_id)))
                .with_generation_id(generation_id)
                .with_member_id(str_bytes(&self.member_id))
                .with_group_instance_id(instance_id),
            self.config.heartbeat_interval,
            Arc::clone(&self.rejoin),
            Arc::clone(&self.rejoin_signal),
        ));
        Ok(Membership {
            coordinator: Arc::clone(conn),
            generation_id,
            member_id: self.member_id.clone(),
            heartbeat,
        })
    }

    /// Position every owned partition at its committed offset, or `start`.
    async fn position_partitions(&mut self) -> Result<(), ClientError> {
        self.fetcher = PartitionFetcher::new(self.client.clone(), self.config.fetch.clone());
        if self.assignment.is_empty() {
            return Ok(());
        }
        let committed = self.committed().await.unwrap_or_else(|e| {
            tracing::warn!(group = %self.config.group_id, error = %e, "cannot read committed offsets; using the start position");
            HashMap::new()
        });
        let mut without: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in self.assignment.clone() {
            match committed.get(&(topic.clone(), partition)) {
                Some(&offset) if offset >= 0 => {
                    self.fetcher
                        .assign(&topic, &[partition], StartOffset::At(offset))
                        .await?
                }
                _ => without.entry(topic).or_default().push(partition),
            }
        }
        for (topic, partitions) in without {
            self.fetcher
                .assign(&topic, &partitions, self.config.start)
                .await?;
        }
        Ok(())
    }

    /// The group's committed offsets of the owned partitions.
    pub async fn committed(&self) -> Result<HashMap<(String, i32), i64>, ClientError> {
        let membership = self
            .membership
            .as_ref()
            .ok_or_else(|| ClientError::Config("not a member of the group".to_owned()))?;
        let conn = &membership.coordinator;
        let version = conn.version_for_capped::<OffsetFetchRequest>(7)?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &self.assignment {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(str_bytes(&self.config.group_id)))
            .with_topics(Some(
                by_topic
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partition_indexes(parts)
                    })
                    .collect(),
            ));
        let response = conn.request_with_version(&request, version).await?;
        if let Some(e) = group_error(ApiKey::OffsetFetch, response.error_code) {
            return Err(e);
        }
        let mut out = HashMap::new();
        for topic in response.topics {
            for p in topic.partitions {
                if p.error_code == 0 {
                    out.insert(
                        (topic.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Commit `offsets` (topic, partition, next offset to read) for this
    /// generation. A generation error marks the member for rejoining.
    pub async fn commit(&self, offsets: &[(String, i32, i64)]) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let membership = self
            .membership
            .as_ref()
            .ok_or_else(|| ClientError::Config("not a member of the group".to_owned()))?;
        let conn = &membership.coordinator;
        let version = conn.version_for_capped::<OffsetCommitRequest>(8)?;
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (topic, partition, offset) in offsets {
            by_topic.entry(topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::from_static_str(""))),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(&self.config.group_id)))
            .with_generation_id_or_member_epoch(membership.generation_id)
            .with_member_id(str_bytes(&membership.member_id))
            .with_group_instance_id(
                self.config
                    .group_instance_id
                    .as_deref()
                    .filter(|_| version >= 7)
                    .map(str_bytes),
            )
            .with_retention_time_ms(-1)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        let response = match conn.request_with_version(&request, version).await {
            Ok(r) => r,
            Err(e) => {
                self.mark_rejoin();
                return Err(e);
            }
        };
        for topic in response.topics {
            for p in topic.partitions {
                if let Some(error) = ResponseError::try_from_code(p.error_code) {
                    if needs_rejoin(error) {
                        self.mark_rejoin();
                    }
                    return Err(ClientError::partition(
                        ApiKey::OffsetCommit,
                        error,
                        &topic.name.0,
                        p.partition_index,
                        None,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Commit the current fetch positions.
    pub async fn commit_positions(&self) -> Result<(), ClientError> {
        self.commit(&self.positions()).await
    }

    fn mark_rejoin(&self) {
        self.rejoin.store(true, Ordering::Release);
        self.rejoin_signal.notify_waiters();
    }

    /// Stop heartbeating and leave the group (a dynamic member leaves at
    /// once; a static one keeps its place until the session times out, as
    /// Kafka's static members do).
    pub async fn close(mut self) {
        let Some(membership) = self.membership.take() else {
            return;
        };
        membership.heartbeat.abort();
        if self.config.group_instance_id.is_some() {
            return;
        }
        let conn = membership.coordinator;
        let Ok(version) = conn.version_for::<LeaveGroupRequest>() else {
            return;
        };
        let request = if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(str_bytes(&self.config.group_id)))
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(str_bytes(&membership.member_id))
                    .with_group_instance_id(None)])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(str_bytes(&self.config.group_id)))
                .with_member_id(str_bytes(&membership.member_id))
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            conn.request_with_version(&request, version),
        )
        .await;
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(m) = self.membership.take() {
            m.heartbeat.abort();
        }
    }
}

/// Why one join attempt did not complete.
enum JoinFailure {
    /// Try again right away (new member id, rebalance still going).
    Retry,
    /// The coordinator moved or is unreachable: find it again, after a pause.
    NewCoordinator(ClientError),
    /// Give up and tell the caller.
    Fatal(ClientError),
}

impl JoinFailure {
    fn classify(e: ClientError) -> Self {
        if is_coordinator_error(&e) || e.is_retriable() {
            JoinFailure::NewCoordinator(e)
        } else {
            JoinFailure::Fatal(e)
        }
    }
}

fn is_coordinator_error(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Broker {
            error: ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress,
            ..
        }
    )
}

async fn heartbeat_loop(
    conn: Arc<BrokerConnection>,
    request: HeartbeatRequest,
    interval: Duration,
    rejoin: Arc<AtomicBool>,
    signal: Arc<Notify>,
) {
    let version = match conn.version_for::<HeartbeatRequest>() {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "coordinator does not speak Heartbeat");
            return;
        }
    };
    let request = if version >= 3 {
        request
    } else {
        request.with_group_instance_id(None)
    };
    loop {
        tokio::time::sleep(interval).await;
        let outcome = conn.request_with_version(&request, version).await;
        let error = match outcome {
            Ok(r) => match ResponseError::try_from_code(r.error_code) {
                None => continue,
                Some(e) => {
                    if !needs_rejoin(e) {
                        tracing::warn!(error = ?e, "heartbeat failed");
                        continue;
                    }
                    ClientError::broker(ApiKey::Heartbeat, e, None)
                }
            },
            Err(e) => e,
        };
        tracing::debug!(error = %error, "heartbeat says rejoin");
        rejoin.store(true, Ordering::Release);
        signal.notify_waiters();
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_by_topic_keeps_the_wire_order() {
        let plan = BTreeMap::from([("a".to_owned(), vec![2, 0]), ("b".to_owned(), vec![1])]);
        let bytes = encode_assignment(&plan);
        assert_eq!(
            decode_assignment_by_topic(&bytes),
            Some(vec![
                ("a".to_owned(), vec![2, 0]),
                ("b".to_owned(), vec![1])
            ])
        );
        assert_eq!(decode_assignment_by_topic(&[]), Some(Vec::new()));
        assert_eq!(decode_assignment_by_topic(&[0]), None);
        assert_eq!(decode_assignment_by_topic(&[0xff, 0xff, 0]), None);
    }

    #[test]
    fn range_assignor_matches_kafka() {
        let subs: BTreeMap<String, Vec<String>> = [
            ("m1".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            ("m2".to_owned(), vec!["a".to_owned()]),
        ]
        .into();
        let counts: HashMap<String, i32> = [("a".to_owned(), 5), ("b".to_owned(), 2)].into();
        let out = range_assign(&subs, &counts);
        assert_eq!(out["m1"]["a"], vec![0, 1, 2]);
        assert_eq!(out["m2"]["a"], vec![3, 4]);
        assert_eq!(out["m1"]["b"], vec![0, 1]);
        assert!(!out["m2"].contains_key("b"));
    }

    #[test]
    fn more_members_than_partitions_leaves_some_idle() {
        let subs: BTreeMap<String, Vec<String>> = (0..3)
            .map(|i| (format!("m{i}"), vec!["t".to_owned()]))
            .collect();
        let counts: HashMap<String, i32> = [("t".to_owned(), 2)].into();
        let out = range_assign(&subs, &counts);
        assert_eq!(out["m0"]["t"], vec![0]);
        assert_eq!(out["m1"]["t"], vec![1]);
        assert!(out["m2"].is_empty());
    }

    #[test]
    fn consumer_protocol_bytes_round_trip_and_match_java_layout() {
        let sub = encode_subscription(&["orders".to_owned()]);
        // version 0, one topic "orders", null user data
        assert_eq!(
            &sub[..],
            &[0, 0, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(decode_subscription(sub).unwrap(), vec!["orders".to_owned()]);
        let parts: BTreeMap<String, Vec<i32>> = [("t".to_owned(), vec![0, 2])].into();
        let bytes = encode_assignment(&parts);
        assert_eq!(
            decode_assignment(bytes).unwrap(),
            vec![("t".to_owned(), 0), ("t".to_owned(), 2)]
        );
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
    }
}
