//! A follower's fetcher: one task per leader broker, fetching every local
//! partition that broker leads with Kafka Fetch requests (`replica_id` set)
//! over one connection, appending what comes back as it is.
//!
//! Before the first fetch of a partition in a new leader epoch, the
//! follower truncates its log to where it agrees with the leader
//! (OffsetForLeaderEpoch, repeated while the leader answers for an older
//! epoch than asked), so logs never diverge.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::{PartitionKey, ReplicaManager};
use crate::client::connection::{BrokerConnection, ConnectionConfig};
use crate::log::PartitionLog;

/// The error code of a successful partition in the leader's responses (the
/// fetcher is a Kafka client of the leader and reads its wire codes).
const NONE: i16 = 0;

/// Most bytes of one follower fetch response.
const FETCH_MAX_BYTES: i32 = 32 * 1024 * 1024;
/// Back-off after a failed connection or request, doubled up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a fetcher should fetch, set by the replica manager.
#[derive(Default)]
struct Target {
    /// The leader's Kafka address.
    addr: Arc<str>,
    /// Partitions to fetch, with the leader epoch they are followed in.
    /// Shared so that each fetch round takes it without copying.
    partitions: Arc<BTreeMap<PartitionKey, i32>>,
}

/// The replica manager's handle on a running fetcher.
pub(super) struct FetcherHandle {
    target: Arc<Mutex<Target>>,
    changed: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FetcherHandle {
    pub(super) fn spawn(
        manager: Arc<ReplicaManager>,
        leader: i32,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let target = Arc::new(Mutex::new(Target::default()));
        let changed = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let fetcher = Fetcher {
            manager,
            leader,
            target: Arc::clone(&target),
            changed: Arc::clone(&changed),
            stop: stop_rx,
            shutdown,
            truncated: BTreeMap::new(),
        };
        FetcherHandle {
            target,
            changed,
            stop,
            task: tokio::spawn(fetcher.run()),
        }
    }

    pub(super) fn set_target(&self, addr: String, partitions: BTreeMap<PartitionKey, i32>) {
        {
            let mut t = self.target.lock().unwrap_or_else(|p| p.into_inner());
            if *t.addr == *addr && *t.partitions == partitions {
                return;
            }
            t.addr = addr.into();
            t.partitions = Arc::new(partitions);
        }
        self.changed.notify_one();
    }

    pub(super) fn stop(&self) {
        self.stop.send_replace(true);
    }

    pub(super) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

struct Fetcher {
    manager: Arc<ReplicaManager>,
    leader: i32,
    target: Arc<Mutex<Target>>,
    changed: Arc<Notify>,
    stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    /// Partitions whose log agrees with the leader's, by the epoch checked.
    truncated: BTreeMap<PartitionKey, i32>,
}

impl Fetcher {
    fn stopping(&self) -> bool {
        *self.stop.borrow() || *self.shutdown.borrow()
    }

    async fn run(mut self) {
        let mut connection: Option<(Arc<str>, BrokerConnection)> = None;
        let mut backoff = BACKOFF_MIN;
        let config = ConnectionConfig {
            client_id: format!("sluice-replica-{}", self.manager.node_id()),
            request_timeout: self.manager.settings.fetch_max_wait + Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            ..ConnectionConfig::default()
        };
        while !self.stopping() {
            let (addr, partitions) = {
                let t = self.target.lock().unwrap_or_else(|p| p.into_inner());
                (Arc::clone(&t.addr), Arc::clone(&t.partitions))
            };
            self.truncated
                .retain(|k, e| partitions.get(k).is_some_and(|want| want == e));
            if partitions.is_empty() || addr.is_empty() {
                self.wait(Duration::from_secs(1)).await;
                continue;
            }
            if connection
                .as_ref()
                .is_none_or(|(a, c)| **a != *addr || c.is_poisoned())
            {
                connection = match BrokerConnection::connect(&addr, &config).await {
                    Ok(c) => Some((Arc::clone(&addr), c)),
                    Err(e) => {
                        tracing::debug!(leader = self.leader, error = %e, "cannot reach the leader");
                        self.wait(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                };
            }
            let Some((_, conn)) = connection.as_ref() else {
                continue;
            };
            let result = match self.truncate_pending(conn, &partitions).await {
                Ok(()) => self.fetch(conn, &partitions).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(progress) => {
                    backoff = BACKOFF_MIN;
                    if !progress {
                        // Every partition answered with an error (leadership
                        // is moving): give the image a moment.
                        self.wait(Duration::from_millis(100)).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(leader = self.leader, error = %e, "replica fetch failed");
                    connection = None;
                    self.wait(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Sleep until `d` passes, the target changes, or we stop.
    async fn wait(&mut self, d: Duration) {
        let mut stop = self.stop.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.changed.notified() => {}
            _ = stop.wait_for(|s| *s) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    }

    fn log(&self, key: &PartitionKey) -> Option<Arc<PartitionLog>> {
        self.manager.log(&key.0, key.1)
    }

    /// Truncate every partition not yet checked in its epoch to where it
    /// agrees with the leader.
    async fn truncate_pending(
        &mut self,
        conn: &BrokerConnection,
        partitions: &BTreeMap<PartitionKey, i32>,
    ) -> Result<(), crate::client::ClientError> {
        let pending: Vec<(PartitionKey, i32)> = partitions
            .iter()
            .filter(|(k, _)| !self.truncated.contains_key(*k))
            .map(|(k, e)| (k.clone(), *e))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        let mut asked: BTreeMap<PartitionKey, i32> = BTreeMap::new();
        for (key, epoch) in &pending {
            let Some(log) = self.log(key) else { continue };
            let latest = log.latest_epoch();
            asked.insert(key.clone(), latest);
            let mut p = OffsetForLeaderPartition::default();
            p.partition = key.1;
            p.current_leader_epoch = *epoch;
            p.leader_epoch = latest;
            by_topic.entry(key.0.clone()).or_default().push(p);
        }
        let mut req = OffsetForLeaderEpochRequest::default();
        req.replica_id = BrokerId(self.manager.node_id());
        req.topics = by_topic
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = OffsetForLeaderTopic::default();
                t.topic = TopicName(StrBytes::from_string(name));
                t.partitions = partitions;
                t
            })
            .collect();
        let resp = conn.request(&req).await?;
        for t in resp.topics {
            for p in t.partitions {
                let key = (t.topic.0.to_string(), p.partition);
                let (Some(log), Some(asked_epoch), Some(epoch)) =
                    (self.log(&key), asked.get(&key), partitions.get(&key))
                else {
                    continue;
                };
                if p.error_code != NONE {
                    tracing::debug!(topic = %key.0, partition = key.1, error = p.error_code, "leader cannot say where our logs agree yet");
                    continue;
                }
                let agreed = if p.leader_epoch < 0 || p.end_offset < 0 {
                    // The leader knows no epoch this old: keep what is committed.
                    log.high_watermark()
                } else {
                    let (_, ours) = log.end_offset_for_epoch(p.leader_epoch);
                    if ours < 0 {
                        p.end_offset
                    } else {
                        p.end_offset.min(ours)
                    }
                };
                let end = log.log_end_offset();
                if agreed < end {
                    if let Err(e) = log.truncate_to(agreed) {
                        tracing::error!(topic = %key.0, partition = key.1, error = %e, "truncation failed");
                        continue;
                    }
                }
                // An answer for an older epoch than asked may leave an
                // older divergence: ask again with the epoch we now end in.
                // Unless nothing of ours lies past the agreed offset: then an
                // epoch we led without writing (its cache entry starts at
                // our log end) would have us ask for it forever.
                if p.leader_epoch == *asked_epoch || p.leader_epoch < 0 || agreed >= end {
                    self.truncated.insert(key, *epoch);
                }
            }
        }
        Ok(())
    }

    /// One fetch round over the partitions already truncated. Returns
    /// whether any partition made progress or answered without error.
    async fn fetch(
        &mut self,
        conn: &BrokerConnection,
        partitions: &BTreeMap<PartitionKey, i32>,
    ) -> Result<bool, crate::client::ClientError> {
        let settings = &self.manager.settings;
        let mut by_topic: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        for (key, epoch) in partitions {
            if self.truncated.get(key) != Some(epoch) {
                continue;
            }
            let Some(log) = self.log(key) else { continue };
            let mut p = FetchPartition::default();
            p.partition = key.1;
            p.current_leader_epoch = *epoch;
            p.fetch_offset = log.log_end_offset();
            p.log_start_offset = log.log_start_offset();
            p.partition_max_bytes = settings.fetch_partition_max_bytes;
            p.last_fetched_epoch = -1;
            by_topic.entry(key.0.clone()).or_default().push(p);
        }
        if by_topic.is_empty() {
            return Ok(false);
        }
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(self.manager.node_id());
        req.max_wait_ms = settings.fetch_max_wait.as_millis() as i32;
        req.min_bytes = 1;
        req.max_bytes = FETCH_MAX_BYTES;
        req.session_id = 0;
        req.session_epoch = -1;
        req.topics = by_topic
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = FetchTopic::default();
                t.topic = TopicName(StrBytes::from_string(name));
                t.partitions = partitions;
                t
            })
            .collect();
        let version = conn.version_for_capped::<FetchRequest>(12)?;
        let resp = conn.request_with_version(&req, version).await?;
        if resp.error_code != NONE {
            return Ok(false);
        }
        let mut progress = false;
        for t in resp.responses {
            for p in t.partitions {
                let key = (t.topic.0.to_string(), p.partition_index);
                let Some(log) = self.log(&key) else { continue };
                match ResponseError::try_from_code(p.error_code) {
                    None => {
                        progress = true;
                        if let Some(records) = p.records.filter(|r| !r.is_empty()) {
                            if let Err(e) = log.append_replicated(records) {
                                tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot append replicated batches");
                                self.truncated.remove(&key);
                                continue;
                            }
                        }
                        log.set_high_watermark(p.high_watermark.min(log.log_end_offset()));
                        if p.log_start_offset > log.log_start_offset() {
                            let _ = log.delete_records_before(
                                p.log_start_offset.min(log.high_watermark()),
                            );
                        }
                    }
                    Some(ResponseError::OffsetOutOfRange)
                        if p.log_start_offset > log.log_end_offset() =>
                    {
                        // The leader no longer holds what we need next.
                        if let Err(e) = log.reset_to(p.log_start_offset) {
                            tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot reset the log");
                        }
                    }
                    Some(ResponseError::OffsetOutOfRange) => {
                        // Our log is not where the leader's is: check again.
                        self.truncated.remove(&key);
                    }
                    Some(other) => {
                        tracing::debug!(topic = %key.0, partition = key.1, error = other.code(), "leader refused a replica fetch");
                    }
                }
            }
        }
        Ok(progress)
    }
}
