//! The transaction coordinator: Kafka's `TransactionCoordinator`. It keeps
//! every transactional id's producer id, epoch and current transaction
//! (`state`), stored as records in the internal topic `__transaction_state`
//! (`records`), partitioned by transactional id; this node coordinates the
//! ids of the partitions it leads (on a single node: all), and a new leader
//! reloads them, so the coordinator fails over like the group coordinator.
//!
//! Ending a transaction writes PrepareCommit/PrepareAbort, then a COMMIT or
//! ABORT marker to every partition of the transaction (through the partition
//! layer on this node, through WriteTxnMarkers to the leaders of the others,
//! `peers`), then CompleteCommit/CompleteAbort. It also answers the
//! partition layer's KIP-890 question (`verifier`): is this producer in a
//! transaction that includes this partition?
//!
//! Must never: write to any topic but `__transaction_state` itself (markers
//! go through the partition layer or the partition's leader), or hold its
//! lock across an await.
//!
//! Locks: `txns` (held while a transition is computed and its record
//! appended, the log's locks inside it), then `partitions` (read).

mod peers;
pub(crate) use peers::by_topic;
pub mod records;
pub mod state;
mod verifier;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::{Broker, TopicError};
use crate::cluster::image::{host_port, MetadataImage, NO_LEADER};
use crate::config::NodeConfig;
use crate::log::keyed::{OffsetsLog, StoreError};
use crate::partition::{Partitions, TxnMarker};
use crate::replication::{CommitWait, LeadershipListener, ReplicaError};
use records::{partition_for, TRANSACTION_STATE_TOPIC};
use state::{EndStep, InitStep};
pub use state::{TxnError, TxnMetadata, TxnState};

/// The group coordinator's topic (a transaction's offsets go to the
/// partition of its group there).
const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How long a state record may take to reach the ISR.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Back-off between attempts to write markers.
const MARKER_RETRY_MIN: Duration = Duration::from_millis(50);
const MARKER_RETRY_MAX: Duration = Duration::from_secs(1);

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum TxnStartError {
    #[error("cannot create {TRANSACTION_STATE_TOPIC}: {0}")]
    Topic(#[from] TopicError),
    #[error("cannot load {TRANSACTION_STATE_TOPIC}: {0}")]
    Store(#[from] StoreError),
}

/// How the coordinator behaves (Kafka's `transaction.*` settings).
#[derive(Debug, Clone)]
pub struct TxnSettings {
    /// Partitions of `__transaction_state` when this node creates it
    /// (`transaction.state.log.num.partitions`).
    pub state_topic_partitions: i32,
    /// The largest transaction timeout a producer may ask for
    /// (`transaction.max.timeout.ms`).
    pub max_timeout_ms: i32,
    /// How often transactions past their timeout are looked for
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub abort_check_interval: Duration,
}

impl TxnSettings {
    pub fn from_config(config: &NodeConfig) -> Self {
        TxnSettings {
            state_topic_partitions: config.transaction_state_partitions.max(1),
            max_timeout_ms: config.transaction_max_timeout_ms,
            abort_check_interval: Duration::from_millis(
                config.transaction_abort_check_interval_ms.max(10),
            ),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The coordinator of every transactional id whose `__transaction_state`
/// partition this node leads.
pub struct TransactionCoordinator {
    broker: Arc<Broker>,
    partition_layer: Arc<Partitions>,
    settings: TxnSettings,
    /// Every transactional id this node coordinates.
    txns: Mutex<HashMap<String, TxnMetadata>>,
    /// The writer of each `__transaction_state` partition this node leads.
    partitions: RwLock<Vec<Option<Arc<OffsetsLog>>>>,
    /// Other brokers (markers and verification in a cluster).
    peers: peers::Peers,
    /// Turns true once; the sweeper and marker writers stop.
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for TransactionCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCoordinator")
            .field("transactions", &lock(&self.txns).len())
            .finish()
    }
}

impl TransactionCoordinator {
    /// A single node: create `__transaction_state` if missing, load every
    /// partition of it, finish what was being committed or aborted.
    pub fn start_local(
        partition_layer: Arc<Partitions>,
        settings: TxnSettings,
    ) -> Result<Arc<Self>, TxnStartError> {
        let broker = partition_layer.broker().clone();
        let topic = match broker.topic(TRANSACTION_STATE_TOPIC) {
            Some(t) => t,
            None => match broker.create_topic(
                TRANSACTION_STATE_TOPIC,
                settings.state_topic_partitions,
                -1,
                state_topic_configs(),
                false,
            ) {
                Ok(t) => t,
                Err(TopicError::AlreadyExists(_)) => broker
                    .topic(TRANSACTION_STATE_TOPIC)
                    .ok_or_else(|| TopicError::Unknown(TRANSACTION_STATE_TOPIC.to_owned()))?,
                Err(e) => return Err(e.into()),
            },
        };
        let count = topic.partitions().len();
        let coordinator = Self::new(partition_layer, settings, count);
        for p in 0..count {
            coordinator.load_partition(p as i32)?;
        }
        Ok(coordinator)
    }

    /// A cluster node: coordinates nothing until it leads a partition of
    /// `__transaction_state`; hears leadership through the partition layer.
    pub fn start_unloaded(partition_layer: Arc<Partitions>, settings: TxnSettings) -> Arc<Self> {
        let count = settings.state_topic_partitions.max(1) as usize;
        let coordinator = Self::new(partition_layer, settings, count);
        coordinator
            .partition_layer
            .add_leadership_listener(Arc::new(StateLeadership(Arc::downgrade(&coordinator))));
        coordinator
    }

    fn new(partition_layer: Arc<Partitions>, settings: TxnSettings, count: usize) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        let broker = partition_layer.broker().clone();
        let coordinator = Arc::new(TransactionCoordinator {
            peers: peers::Peers::new(broker.node_id()),
            broker,
            partition_layer,
            settings,
            txns: Mutex::new(HashMap::new()),
            partitions: RwLock::new(vec![None; count]),
            shutdown,
        });
        coordinator
            .partition_layer
            .set_txn_verifier(Arc::new(verifier::Verifier(Arc::downgrade(&coordinator))));
        tokio::spawn(Arc::clone(&coordinator).run_sweeper());
        coordinator
    }

    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn partition_count(&self) -> i32 {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as i32
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.partition_count())
    }

    /// Become the coordinator of the ids in `partition` (this node leads it
    /// now): replay it, then finish the transactions that were being
    /// committed or aborted. Ongoing ones keep their start, so their
    /// timeout still applies.
    pub fn load_partition(self: &Arc<Self>, partition: i32) -> Result<(), TxnStartError> {
        let index = usize::try_from(partition).unwrap_or(usize::MAX);
        if index >= self.partition_count() as usize {
            return Ok(());
        }
        let log = self
            .broker
            .topic(TRANSACTION_STATE_TOPIC)
            .and_then(|t| t.partition(partition))
            .ok_or_else(|| TopicError::Unknown(format!("{TRANSACTION_STATE_TOPIC}-{partition}")))?;
        let (store, replayed) = OffsetsLog::open(log)?;
        let mut loaded: HashMap<String, TxnMetadata> = HashMap::new();
        for (key, value) in replayed {
            let Ok(id) = records::decode_key(&key) else {
                continue;
            };
            match value.map(|v| records::decode_value(&id, &v)) {
                Some(Ok(m)) => {
                    loaded.insert(id, m);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "skipping an unreadable record of {TRANSACTION_STATE_TOPIC}")
                }
                None => {
                    loaded.remove(&id);
                }
            }
        }
        let preparing: Vec<TxnMetadata> = loaded
            .values()
            .filter(|m| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .cloned()
            .collect();
        let count = loaded.len();
        lock(&self.txns).extend(loaded);
        self.partitions.write().unwrap_or_else(|p| p.into_inner())[index] = Some(Arc::new(store));
        tracing::info!(
            partition,
            transactional_ids = count,
            completing = preparing.len(),
            "now coordinating the transactions of {TRANSACTION_STATE_TOPIC}-{partition}"
        );
        for m in preparing {
            tokio::spawn(Arc::clone(self).complete(m));
        }
        Ok(())
    }

    /// Leadership of `partition` moved: forget its transactional ids.
    pub fn unload_partition(&self, partition: i32) {
        let index = usize::try_from(partition).unwrap_or(usize::MAX);
        {
            let mut partitions = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            match partitions.get_mut(index) {
                Some(slot) => *slot = None,
                None => return,
            }
        }
        let count = self.partition_count();
        lock(&self.txns).retain(|id, _| partition_for(id, count) != partition);
        tracing::info!(
            partition,
            "no longer coordinating the transactions of {TRANSACTION_STATE_TOPIC}-{partition}"
        );
    }

    fn store_for(&self, transactional_id: &str) -> Result<Arc<OffsetsLog>, TxnError> {
        if self.is_shutting_down() {
            return Err(TxnError::CoordinatorNotAvailable);
        }
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        usize::try_from(self.partition_for(transactional_id))
            .ok()
            .and_then(|p| partitions.get(p).cloned().flatten())
            .ok_or(TxnError::NotCoordinator)
    }

    /// Ok if this node coordinates `transactional_id` now.
    pub fn coordinator_error(&self, transactional_id: &str) -> Result<(), TxnError> {
        self.store_for(transactional_id).map(|_| ())
    }

    /// Under the `txns` lock: append `next` to the id's partition and make it
    /// current. Returns the log to wait on.
    fn write(
        &self,
        txns: &mut HashMap<String, TxnMetadata>,
        next: TxnMetadata,
    ) -> Result<CommitWait, TxnError> {
        let store = self.store_for(&next.transactional_id)?;
        store.append(&[records::record(&next)]).map_err(|e| {
            tracing::error!(transactional_id = %next.transactional_id, error = %e, "cannot write {TRANSACTION_STATE_TOPIC}");
            TxnError::NotCoordinator
        })?;
        self.partition_layer.appended(store.log());
        let log = self
            .broker
            .topic(TRANSACTION_STATE_TOPIC)
            .and_then(|t| t.partition(store.partition()))
            .ok_or(TxnError::NotCoordinator)?;
        txns.insert(next.transactional_id.clone(), next);
        Ok(CommitWait {
            target: log.log_end_offset(),
            log,
            min_insync: 1,
        })
    }

    /// Wait until a state record is in the ISR of its partition.
    async fn replicated(&self, wait: CommitWait) -> Result<(), TxnError> {
        match self
            .partition_layer
            .wait_committed(&[wait], REPLICATION_TIMEOUT)
            .await[..]
        {
            [Ok(())] => Ok(()),
            [Err(ReplicaError::NotLeaderOrFollower)] => Err(TxnError::NotCoordinator),
            _ => Err(TxnError::RequestTimedOut),
        }
    }

    fn new_producer_id(&self) -> Result<i64, TxnError> {
        self.broker.allocate_producer_id().map_err(|e| {
            tracing::error!(error = %e, "cannot allocate a producer id");
            TxnError::Storage
        })
    }

    /// InitProducerId with a transactional id: the producer id and the new
    /// epoch. `expected`: the id and epoch the producer has (KIP-360).
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.settings.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let now = now_ms();
        let (wait, answer, abort) = {
            let mut txns = lock(&self.txns);
            self.store_for(transactional_id)?;
            let step = match txns.get(transactional_id) {
                None => {
                    if expected.is_some() {
                        // KIP-360: a producer id this coordinator never gave out.
                        return Err(TxnError::InvalidProducerIdMapping);
                    }
                    let id = self.new_producer_id()?;
                    InitStep::Ready(TxnMetadata::new(transactional_id, id, timeout_ms, now))
                }
                Some(m) => m.init(expected, timeout_ms, now, || self.new_producer_id())?,
            };
            match step {
                InitStep::Unchanged => {
                    let m = txns.get(transactional_id).ok_or(TxnError::NotCoordinator)?;
                    return Ok((m.producer_id, m.producer_epoch));
                }
                InitStep::Ready(next) => {
                    let answer = (next.producer_id, next.producer_epoch);
                    (self.write(&mut txns, next)?, Some(answer), None)
                }
                InitStep::AbortFirst(abort) => {
                    (self.write(&mut txns, abort.clone())?, None, Some(abort))
                }
            }
        };
        self.replicated(wait).await?;
        if let Some(abort) = abort {
            // The previous instance is fenced; its transaction is aborted in
            // the background and the client retries meanwhile.
            tokio::spawn(Arc::clone(self).complete(abort));
            return Err(TxnError::ConcurrentTransactions);
        }
        answer.ok_or(TxnError::NotCoordinator)
    }

    /// AddPartitionsToTxn: add partitions to the ongoing transaction.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), TxnError> {
        let wait = {
            let mut txns = lock(&self.txns);
            self.store_for(transactional_id)?;
            let m = txns
                .get(transactional_id)
                .ok_or(TxnError::InvalidProducerIdMapping)?;
            match m.add_partitions(producer_id, producer_epoch, partitions, now_ms())? {
                None => return Ok(()),
                Some(next) => self.write(&mut txns, next)?,
            }
        };
        self.replicated(wait).await
    }

    /// AddOffsetsToTxn: the transaction includes the group's partition of
    /// `__consumer_offsets`.
    pub async fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
    ) -> Result<(), TxnError> {
        let partition = self.offsets_partition(group_id)?;
        self.add_partitions(transactional_id, producer_id, producer_epoch, &[partition])
            .await
    }

    /// The group's partition of `__consumer_offsets`, which a transaction
    /// that commits the group's offsets writes a marker to.
    pub fn offsets_partition(&self, group_id: &str) -> Result<(String, i32), TxnError> {
        let count = self
            .topic_partition_count(OFFSETS_TOPIC)
            .ok_or(TxnError::CoordinatorNotAvailable)?;
        Ok((OFFSETS_TOPIC.to_owned(), partition_for(group_id, count)))
    }

    /// KIP-890: each partition, Ok if the producer's ongoing transaction
    /// includes it.
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), Result<(), TxnError>)> {
        let found = self.store_for(transactional_id).and_then(|_| {
            lock(&self.txns)
                .get(transactional_id)
                .cloned()
                .ok_or(TxnError::InvalidProducerIdMapping)
        });
        partitions
            .iter()
            .map(|p| {
                let outcome = found
                    .as_ref()
                    .map_err(|e| *e)
                    .and_then(|m| m.verify(producer_id, producer_epoch, p));
                (p.clone(), outcome)
            })
            .collect()
    }

    /// EndTxn: commit or abort. Answers once the markers are written and
    /// the transaction is complete, with the producer id and epoch the
    /// producer goes on with: bumped when `bump` (EndTxn v5+, KIP-890 part
    /// 2), else the ones it sent.
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        bump: bool,
    ) -> Result<(i64, i16), TxnError> {
        let (wait, prepared) = {
            let mut txns = lock(&self.txns);
            self.store_for(transactional_id)?;
            let m = txns
                .get(transactional_id)
                .ok_or(TxnError::InvalidProducerIdMapping)?;
            let step = m.end(producer_id, producer_epoch, commit, bump, now_ms(), || {
                self.new_producer_id()
            })?;
            match step {
                EndStep::AlreadyDone if bump => return Ok((m.producer_id, m.producer_epoch)),
                EndStep::AlreadyDone => return Ok((producer_id, producer_epoch)),
                EndStep::Prepare(next) => (self.write(&mut txns, next.clone())?, next),
            }
        };
        self.replicated(wait).await?;
        let answer = (prepared.producer_id, prepared.producer_epoch);
        // A task of its own: a client that goes away does not stop it.
        tokio::spawn(Arc::clone(self).complete(prepared))
            .await
            .map_err(|_| TxnError::CoordinatorNotAvailable)??;
        Ok(answer)
    }

    /// Write the markers of a prepared transaction until every partition has
    /// one, then store it complete. Gives up when this node stops
    /// coordinating the id (the next coordinator completes it on load).
    async fn complete(self: Arc<Self>, prepared: TxnMetadata) -> Result<(), TxnError> {
        let commit = prepared.commits();
        let mut left: Vec<(String, i32)> = prepared.partitions.iter().cloned().collect();
        let mut backoff = MARKER_RETRY_MIN;
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let coordinator_epoch = self.coordinator_epoch(&prepared.transactional_id)?;
            left = self
                .write_markers(&prepared, commit, coordinator_epoch, left)
                .await;
            if left.is_empty() {
                break;
            }
            tracing::debug!(
                transactional_id = %prepared.transactional_id,
                partitions = left.len(),
                "markers not written yet; retrying"
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|s| *s) => return Err(TxnError::CoordinatorNotAvailable),
            }
            backoff = (backoff * 2).min(MARKER_RETRY_MAX);
        }
        let wait = {
            let mut txns = lock(&self.txns);
            let current = txns
                .get(&prepared.transactional_id)
                .ok_or(TxnError::NotCoordinator)?;
            if current.producer_id != prepared.producer_id
                || current.producer_epoch != prepared.producer_epoch
                || current.state != prepared.state
            {
                return Err(TxnError::NotCoordinator);
            }
            let Some(next) = current.complete(now_ms()) else {
                return Ok(());
            };
            self.write(&mut txns, next)?
        };
        self.replicated(wait).await?;
        tracing::debug!(
            transactional_id = %prepared.transactional_id,
            commit,
            "transaction complete"
        );
        Ok(())
    }

    /// The leader epoch of the id's `__transaction_state` partition (sent
    /// with markers), or NotCoordinator when this node no longer leads it.
    fn coordinator_epoch(&self, transactional_id: &str) -> Result<i32, TxnError> {
        let store = self.store_for(transactional_id)?;
        Ok(store.log().leader_epoch())
    }

    /// Write one marker to each partition in `partitions`: the ones this
    /// node leads through the partition layer, the others through their
    /// leaders. Returns the partitions still without one.
    async fn write_markers(
        &self,
        m: &TxnMetadata,
        commit: bool,
        coordinator_epoch: i32,
        partitions: Vec<(String, i32)>,
    ) -> Vec<(String, i32)> {
        let image = self.partition_layer.replica_manager().map(|rm| rm.image());
        let mut local = Vec::new();
        let mut remote: BTreeMap<i32, (String, Vec<(String, i32)>)> = BTreeMap::new();
        let mut left = Vec::new();
        for p in partitions {
            match image.as_ref().map(|image| leader_of(image, &p.0, p.1)) {
                None => local.push(p),
                Some(Leader::Gone) => {
                    // The topic was deleted: there is nothing to mark.
                    tracing::info!(topic = %p.0, partition = p.1, "no marker for a deleted partition");
                }
                Some(Leader::Unknown) => left.push(p),
                Some(Leader::Broker(id, _)) if id == self.broker.node_id() => local.push(p),
                Some(Leader::Broker(id, addr)) => {
                    remote.entry(id).or_insert((addr, Vec::new())).1.push(p)
                }
            }
        }
        if !local.is_empty() {
            let marker = TxnMarker {
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                commit,
                coordinator_epoch,
                partitions: local.clone(),
            };
            let results = self.partition_layer.write_txn_markers(vec![marker]).await;
            for (topic, partition, result) in results.into_iter().flatten() {
                if let Err(e) = result {
                    tracing::debug!(%topic, partition, error = %e, "marker not written");
                    if self.broker.topic(&topic).is_some() || image.is_some() {
                        left.push((topic, partition));
                    }
                }
            }
        }
        for (broker, (addr, partitions)) in remote {
            let answered = self
                .peers
                .write_markers(
                    broker,
                    &addr,
                    m.producer_id,
                    m.producer_epoch,
                    commit,
                    coordinator_epoch,
                    &partitions,
                )
                .await;
            match answered {
                None => left.extend(partitions),
                Some(codes) => left.extend(
                    partitions
                        .into_iter()
                        .filter(|p| !codes.iter().any(|(q, code)| q == p && *code == 0)),
                ),
            }
        }
        left
    }

    /// DescribeTransactions: each id's metadata, or why not.
    pub fn describe(&self, ids: &[String]) -> Vec<Result<TxnMetadata, TxnError>> {
        ids.iter()
            .map(|id| {
                self.store_for(id)?;
                lock(&self.txns)
                    .get(id)
                    .cloned()
                    .ok_or(TxnError::TransactionalIdNotFound)
            })
            .collect()
    }

    /// ListTransactions: the ids this node coordinates, in the given states
    /// and of the given producer ids (empty filters match all), running for
    /// at least `min_duration_ms` (-1: any).
    pub fn list(
        &self,
        states: &[TxnState],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Vec<TxnMetadata> {
        let now = now_ms();
        let mut out: Vec<TxnMetadata> = lock(&self.txns)
            .values()
            .filter(|m| states.is_empty() || states.contains(&m.state))
            .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|m| {
                min_duration_ms < 0 || (m.start_ms >= 0 && now - m.start_ms >= min_duration_ms)
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// Abort every ongoing transaction past its timeout (bumping the epoch,
    /// so its producer is fenced), at every check interval.
    async fn run_sweeper(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.abort_check_interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            for abort in self.abort_expired() {
                tracing::info!(
                    transactional_id = %abort.transactional_id,
                    producer_id = abort.producer_id,
                    "aborting a transaction past its timeout"
                );
                tokio::spawn(Arc::clone(&self).complete(abort));
            }
        }
    }

    fn abort_expired(&self) -> Vec<TxnMetadata> {
        let now = now_ms();
        let mut txns = lock(&self.txns);
        let expired: Vec<TxnMetadata> = txns
            .values()
            .filter_map(|m| m.abort_if_expired(now, || self.new_producer_id()))
            .collect();
        expired
            .into_iter()
            .filter(|abort| self.write(&mut txns, abort.clone()).is_ok())
            .collect()
    }

    /// The partition count of `topic`: the image's in a cluster, this node's
    /// registry on a single node.
    fn topic_partition_count(&self, topic: &str) -> Option<i32> {
        match self.partition_layer.replica_manager() {
            Some(rm) => rm
                .cluster()
                .read_image(|image| image.topics.get(topic).map(|t| t.partitions.len() as i32)),
            None => self
                .broker
                .topic(topic)
                .map(|t| t.partitions().len() as i32),
        }
    }

    /// Where the coordinator of `transactional_id` is, as (broker id, host,
    /// port): this node on a single node, else the leader of the id's
    /// `__transaction_state` partition in the image.
    pub fn coordinator_of(&self, transactional_id: &str) -> Result<(i32, String, i32), TxnError> {
        match self.partition_layer.replica_manager() {
            Some(rm) => rm.cluster().read_image(|image| {
                let topic = image
                    .topics
                    .get(TRANSACTION_STATE_TOPIC)
                    .ok_or(TxnError::CoordinatorNotAvailable)?;
                let index = partition_for(transactional_id, topic.partitions.len() as i32);
                match leader_of(image, TRANSACTION_STATE_TOPIC, index) {
                    Leader::Broker(id, addr) => {
                        let (host, port) = host_port(&addr);
                        Ok((id, host, port))
                    }
                    _ => Err(TxnError::CoordinatorNotAvailable),
                }
            }),
            None => self.coordinator_error(transactional_id).map(|()| {
                let (host, port) = self.broker.advertised();
                (self.broker.node_id(), host, port)
            }),
        }
    }

    /// Create `__transaction_state` through the controller if the cluster
    /// has none yet (the first FindCoordinator for a transactional id does
    /// this, as Kafka does). A single node created it at start.
    pub async fn ensure_state_topic(&self) {
        let Some(rm) = self.partition_layer.replica_manager() else {
            return;
        };
        if rm.has_topic(TRANSACTION_STATE_TOPIC) {
            return;
        }
        match self
            .partition_layer
            .create_topic(
                TRANSACTION_STATE_TOPIC,
                self.settings.state_topic_partitions,
                -1,
                state_topic_configs(),
                false,
            )
            .await
        {
            Ok(()) | Err(TopicError::AlreadyExists(_)) => {}
            Err(e) => tracing::warn!(error = %e, "cannot create {TRANSACTION_STATE_TOPIC} yet"),
        }
    }

    /// The coordinator of a transactional id elsewhere in the cluster, for
    /// the KIP-890 check: (broker id, its Kafka address).
    fn remote_coordinator(&self, transactional_id: &str) -> Option<(i32, String)> {
        let rm = self.partition_layer.replica_manager()?;
        rm.cluster().read_image(|image| {
            let topic = image.topics.get(TRANSACTION_STATE_TOPIC)?;
            let index = partition_for(transactional_id, topic.partitions.len() as i32);
            match leader_of(image, TRANSACTION_STATE_TOPIC, index) {
                Leader::Broker(id, addr) if id != self.broker.node_id() => Some((id, addr)),
                _ => None,
            }
        })
    }
}

/// `__transaction_state` is compacted and kept forever, as Kafka's.
fn state_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        ("retention.ms".to_owned(), "-1".to_owned()),
        ("retention.bytes".to_owned(), "-1".to_owned()),
        ("min.insync.replicas".to_owned(), "1".to_owned()),
    ])
}

/// Who leads a partition, by the image.
enum Leader {
    /// The topic or partition does not exist.
    Gone,
    /// No leader now (an election is under way).
    Unknown,
    /// This broker, at this Kafka address.
    Broker(i32, String),
}

fn leader_of(image: &MetadataImage, topic: &str, partition: i32) -> Leader {
    let Some(p) = image
        .topics
        .get(topic)
        .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
    else {
        return Leader::Gone;
    };
    if p.leader == NO_LEADER {
        return Leader::Unknown;
    }
    match image.brokers.get(&p.leader).filter(|b| !b.fenced) {
        Some(b) => Leader::Broker(p.leader, b.kafka_addr.clone()),
        None => Leader::Unknown,
    }
}

/// Hears leadership changes of `__transaction_state` partitions.
struct StateLeadership(Weak<TransactionCoordinator>);

impl LeadershipListener for StateLeadership {
    fn on_became_leader(&self, topic: &str, partition: i32) {
        if topic != TRANSACTION_STATE_TOPIC {
            return;
        }
        if let Some(coordinator) = self.0.upgrade() {
            if let Err(e) = coordinator.load_partition(partition) {
                tracing::error!(partition, error = %e, "cannot load transactions");
            }
        }
    }

    fn on_leadership_lost(&self, topic: &str, partition: i32) {
        if topic != TRANSACTION_STATE_TOPIC {
            return;
        }
        if let Some(coordinator) = self.0.upgrade() {
            coordinator.unload_partition(partition);
        }
    }
}
