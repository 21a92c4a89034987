//! The broker's state: its topics and their partition logs, topic configs,
//! producer-id allocation and retention. The partition layer and the Kafka
//! handlers call into this.
//!
//! Must never: know the wire format, or import a layer above it
//! (`replication`, `partition`, `group`, `kafka`): a cluster node's topics
//! are kept in step with the image by `replication`, which calls down here.
//!
//! Locks: `topics` before a topic's `partitions` or `configs`; none is held
//! across I/O other than opening a new topic's logs.

pub mod configs;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use uuid::Uuid;

use crate::config::NodeConfig;
use crate::log::PartitionLog;
use crate::security::{Security, SecurityChange, SecurityRejection, SecurityState};
use crate::storage::{self, Storage, StorageError};
use configs::TopicConfigs;

/// Why a topic operation failed; each maps to a Kafka error code.
/// Why a security change (credentials, ACLs, quotas) was not made.
#[derive(Debug, thiserror::Error)]
#[allow(dead_code)] // used by the SASL, ACL and quota handlers (next)
pub enum SecurityError {
    /// The change does not fit the state (nothing changed).
    #[error("{0}")]
    Rejected(#[from] SecurityRejection),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The controller could not commit it (or this node is stopping).
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0} already exists")]
    AlreadyExists(String),
    #[error("unknown topic {0}")]
    Unknown(String),
    #[error("invalid topic name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("replication factor {0} is invalid with {1} available broker(s)")]
    InvalidReplicationFactor(i16, usize),
    #[error("the controller is not reachable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// What is persisted of a topic.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TopicRecord {
    id: Uuid,
    partitions: i32,
    configs: TopicConfigs,
    #[serde(default)]
    from_image: bool,
}

/// A topic and its partition logs.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// Internal topics (`__consumer_offsets`) are hidden from Metadata unless asked for.
    pub internal: bool,
    /// Created because the cluster's metadata image has it (not by this
    /// node on its own): only such topics are removed when the image drops
    /// them, so a data dir of a single node never loses its topics by
    /// joining a cluster.
    pub from_image: bool,
    configs: RwLock<TopicConfigs>,
    partitions: RwLock<Vec<Arc<PartitionLog>>>,
}

impl Topic {
    /// What Produce needs of the configs (max.message.bytes, whether
    /// LogAppendTime), read without copying the overrides.
    pub fn produce_settings(&self) -> (usize, bool) {
        let c = self.configs.read().unwrap_or_else(|p| p.into_inner());
        (c.max_message_bytes(), c.log_append_time())
    }

    /// `min.insync.replicas`, read without copying the overrides.
    pub fn min_insync_replicas(&self) -> usize {
        self.configs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .min_insync_replicas()
    }

    /// Replace the configs and hand the logs their roll and flush policy.
    fn set_configs(&self, new: TopicConfigs) {
        let policy = new.log_policy();
        *self.configs.write().unwrap_or_else(|p| p.into_inner()) = new;
        for log in self.partitions() {
            log.set_policy(policy);
        }
    }

    /// Hand every log the topic's roll and flush policy.
    fn apply_log_policy(&self) {
        let policy = self
            .configs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .log_policy();
        for log in self.partitions() {
            log.set_policy(policy);
        }
    }

    pub fn configs(&self) -> TopicConfigs {
        self.configs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn partition(&self, index: i32) -> Option<Arc<PartitionLog>> {
        let parts = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        usize::try_from(index)
            .ok()
            .and_then(|i| parts.get(i).cloned())
    }
    pub fn partition_count(&self) -> i32 {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as i32
    }
    fn tree_id(&self) -> String {
        self.id.simple().to_string()
    }
}

/// Most partitions one topic may have. Each partition is two sled trees
/// opened at once, so a CreateTopics or CreatePartitions asking for millions
/// would tie up the node; requests beyond this get INVALID_PARTITIONS.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Check every override's name and value.
pub fn validate_configs(overrides: &BTreeMap<String, String>) -> Result<(), TopicError> {
    for (k, v) in overrides {
        configs::validate(k, v).map_err(TopicError::InvalidConfig)?;
    }
    Ok(())
}

/// Kafka's rule for topic names.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let bad = |why| Err(TopicError::InvalidName(name.to_string(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// One broker's data and metadata.
pub struct Broker {
    pub config: NodeConfig,
    pub storage: Storage,
    pub cluster_id: String,
    /// Host and port given to clients; set once the listener is bound.
    advertised: OnceLock<(String, i32)>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Credentials, ACLs and quotas (stored here; replaced from the image
    /// in a cluster).
    pub security: Arc<Security>,
}

impl Broker {
    /// Open the broker's storage and load its topics.
    pub fn open(config: NodeConfig) -> Result<Self, TopicError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            TopicError::Storage(StorageError::Corrupt {
                tree: config.data_dir.display().to_string(),
                what: format!("cannot create data dir: {e}"),
            })
        })?;
        let storage = Storage::open_with(
            &config.data_dir,
            &storage::StorageOptions {
                flush_interval_ms: config.flush_interval_ms,
                cache_capacity_bytes: config.cache_capacity_mb * 1024 * 1024,
                log_store: config.log_store,
                log_open_files: config.log_open_files,
                disk_reserve_bytes: config.disk_reserve_mb * 1024 * 1024,
            },
        )?;
        let cluster_id =
            storage.cluster_id_or_init(|| Uuid::new_v4().simple().to_string()[..22].to_string())?;
        let mut topics = BTreeMap::new();
        for (name, v) in storage.topic_records()? {
            let record: TopicRecord =
                serde_json::from_slice(&v).map_err(|e| StorageError::Corrupt {
                    tree: storage::TOPICS_TREE.into(),
                    what: format!("topic {name}: {e}"),
                })?;
            let tree_id = record.id.simple().to_string();
            let logs = (0..record.partitions)
                .map(|p| PartitionLog::open(&storage, &name, &tree_id, p).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            let topic = Arc::new(Topic {
                internal: name.starts_with("__"),
                name: name.clone(),
                id: record.id,
                from_image: record.from_image,
                configs: RwLock::new(record.configs),
                partitions: RwLock::new(logs),
            });
            topic.apply_log_policy();
            topics.insert(name, topic);
        }
        let security = load_security(&storage)?;
        if config.peers.is_none() {
            // A single node's state already holds its offline changes.
            storage.put_pending_security_record(None)?;
        }
        Ok(Broker {
            config,
            storage,
            cluster_id,
            advertised: OnceLock::new(),
            topics: RwLock::new(topics),
            security: Arc::new(Security::new(security)),
        })
    }

    /// Apply a security change on this node and store the result (a single
    /// node; a cluster node's changes go through the controller).
    #[allow(dead_code)] // used by the SASL, ACL and quota handlers (next)
    pub fn apply_security(&self, change: &SecurityChange) -> Result<u64, SecurityError> {
        let state = self.security.apply(change)?;
        self.store_security(&state)?;
        Ok(state.version)
    }

    /// Take the security state of the metadata image (a cluster node) and
    /// store it when it changed.
    pub fn replace_security(&self, state: &SecurityState) -> Result<(), SecurityError> {
        if self.security.replace(state) {
            self.store_security(state)?;
        }
        Ok(())
    }

    fn store_security(&self, state: &SecurityState) -> Result<(), SecurityError> {
        store_security(&self.storage, state)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Make the local topic `name` match the image: created with the
    /// image's id and partition count (recreated if the id differs), grown
    /// when partitions were added, configs replaced.
    pub fn sync_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topic(name) {
            if !topic.from_image {
                // A topic this node created before it joined the cluster.
                return Err(TopicError::AlreadyExists(name.to_string()));
            }
            if topic.id != id {
                self.delete_topic(name)?;
            } else {
                if topic.partition_count() < partitions {
                    self.create_partitions(name, partitions, false)?;
                }
                if &topic.configs().overrides != overrides {
                    let new = TopicConfigs {
                        overrides: overrides.clone(),
                    };
                    self.persist(&topic, topic.partition_count(), &new)?;
                    topic.set_configs(new);
                }
                return Ok(topic);
            }
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        self.insert_topic(&mut topics, name, id, partitions, overrides.clone(), true)
    }

    /// Record the address clients should use (called once the listener is bound).
    pub fn set_advertised(&self, host: String, port: i32) {
        let _ = self.advertised.set((host, port));
    }

    /// The advertised host and port.
    pub fn advertised(&self) -> (String, i32) {
        self.advertised.get().cloned().unwrap_or_else(|| {
            (
                self.config.kafka_addr.ip().to_string(),
                self.config.kafka_addr.port() as i32,
            )
        })
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The topic with id `id` (a scan of the topics under the read lock).
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Check a new topic's name and partition count (-1: the default);
    /// returns the partition count to create.
    pub fn validate_new_topic(&self, name: &str, partitions: i32) -> Result<i32, TopicError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions <= 0 || partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::InvalidPartitions(format!(
                "{partitions} partitions; it must be between 1 and {MAX_PARTITIONS_PER_TOPIC}"
            )));
        }
        Ok(partitions)
    }

    /// Create a topic. `partitions`/`replication_factor` of -1 take the defaults.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let partitions = self.validate_new_topic(name, partitions)?;
        if replication_factor != -1 && replication_factor != 1 {
            return Err(TopicError::InvalidReplicationFactor(replication_factor, 1));
        }
        validate_configs(&overrides)?;
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_string(),
                id: Uuid::new_v4(),
                internal: name.starts_with("__"),
                from_image: false,
                configs: RwLock::new(TopicConfigs { overrides }),
                partitions: RwLock::new(Vec::new()),
            }));
        }
        self.insert_topic(
            &mut topics,
            name,
            Uuid::new_v4(),
            partitions,
            overrides,
            false,
        )
    }

    /// Open the logs of a new topic, persist it and add it to `topics`.
    fn insert_topic(
        &self,
        topics: &mut BTreeMap<String, Arc<Topic>>,
        name: &str,
        id: Uuid,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        from_image: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let configs = TopicConfigs { overrides };
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            internal: name.starts_with("__"),
            from_image,
            configs: RwLock::new(configs.clone()),
            partitions: RwLock::new(Vec::new()),
        });
        let tree_id = topic.tree_id();
        let logs = (0..partitions)
            .map(|p| PartitionLog::open(&self.storage, name, &tree_id, p).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        *topic.partitions.write().unwrap_or_else(|p| p.into_inner()) = logs;
        topic.apply_log_policy();
        self.persist(&topic, partitions, &configs)?;
        topics.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "topic created");
        Ok(topic)
    }

    fn persist(
        &self,
        topic: &Topic,
        partitions: i32,
        configs: &TopicConfigs,
    ) -> Result<(), TopicError> {
        let record = TopicRecord {
            id: topic.id,
            partitions,
            configs: configs.clone(),
            from_image: topic.from_image,
        };
        let bytes =
            serde_json::to_vec(&record).map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
        self.storage.put_topic_record(&topic.name, bytes)?;
        // A topic's records are durable as soon as they are written; its
        // definition must be too, or a crash would orphan them.
        self.storage.flush_sync()?;
        Ok(())
    }

    /// Delete a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        let topic = {
            let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
            topics
                .remove(name)
                .ok_or_else(|| TopicError::Unknown(name.to_string()))?
        };
        self.storage.remove_topic_record(name)?;
        let tree_id = topic.tree_id();
        for log in topic.partitions() {
            log.destroy(&tree_id)?;
        }
        tracing::info!(topic = name, "topic deleted");
        Ok(topic.id)
    }

    /// Grow a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let mut parts = topic.partitions.write().unwrap_or_else(|p| p.into_inner());
        let current = parts.len() as i32;
        if count <= current || count > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger, \
                 and at most {MAX_PARTITIONS_PER_TOPIC}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let tree_id = topic.tree_id();
        for p in current..count {
            parts.push(Arc::new(PartitionLog::open(
                &self.storage,
                name,
                &tree_id,
                p,
            )?));
        }
        drop(parts);
        topic.apply_log_policy();
        self.persist(&topic, count, &topic.configs())?;
        Ok(())
    }

    /// Replace a topic's overrides (validated first).
    pub fn set_topic_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        for (k, v) in &overrides {
            configs::validate(k, v).map_err(TopicError::InvalidConfig)?;
        }
        if validate_only {
            return Ok(());
        }
        let new = TopicConfigs { overrides };
        self.persist(&topic, topic.partition_count(), &new)?;
        topic.set_configs(new);
        Ok(())
    }

    /// Allocate a new producer id (durable and unique across restarts; in a
    /// cluster also across nodes: the low 10 bits are the node id).
    pub fn allocate_producer_id(&self) -> Result<i64, StorageError> {
        // sled ids start at 0; Kafka producer ids are non-negative.
        let local = self.storage.generate_id()? as i64 + 1000;
        if self.config.peers.is_some() {
            Ok((local << 10) | i64::from(self.node_id() & 0x3ff))
        } else {
            Ok(local)
        }
    }

    /// fsync the logs whose appends waited longer than their `flush.ms` or
    /// the node's `--flush-interval-ms`. Returns how many were flushed.
    pub fn flush_due_logs(&self) -> usize {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut flushed = 0;
        for topic in self.topics() {
            for log in topic.partitions() {
                match log.flush_if_due(now) {
                    Ok(true) => flushed += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(topic = %topic.name, partition = log.partition, error = %e, "fsync failed")
                    }
                }
            }
        }
        flushed
    }

    /// fsync every log (at shutdown).
    pub fn flush_all_logs(&self) -> Result<(), StorageError> {
        for topic in self.topics() {
            for log in topic.partitions() {
                log.flush_now()?;
            }
        }
        Ok(())
    }

    /// Apply each topic's cleanup policy to each of its partitions:
    /// retention (`delete`) and compaction (`compact`). Returns how many
    /// segments were removed or rewritten.
    pub fn apply_retention(&self) -> usize {
        let mut changed = 0;
        for topic in self.topics() {
            let c = topic.configs();
            let policy = c.get("cleanup.policy").unwrap_or("delete").to_string();
            // The group coordinator keeps __consumer_offsets small itself.
            let compact = policy.contains("compact") && !topic.internal;
            let delete = policy.contains("delete") || !policy.contains("compact");
            for log in topic.partitions() {
                if delete {
                    match log.apply_retention(c.retention_ms(), c.retention_bytes()) {
                        Ok(n) => changed += n,
                        Err(e) => {
                            tracing::warn!(topic = %topic.name, partition = log.partition, error = %e, "retention failed")
                        }
                    }
                }
                if compact {
                    match log.compact(c.delete_retention_ms()) {
                        Ok(stats) => changed += stats.segments_rewritten,
                        Err(e) => {
                            tracing::warn!(topic = %topic.name, partition = log.partition, error = %e, "compaction failed")
                        }
                    }
                }
            }
        }
        changed
    }
}

/// The security state stored in `storage` (empty when none is).
fn load_security(storage: &Storage) -> Result<SecurityState, StorageError> {
    match storage.security_record()? {
        Some(v) => serde_json::from_slice(&v).map_err(|e| StorageError::Corrupt {
            tree: "security".into(),
            what: format!("security state: {e}"),
        }),
        None => Ok(SecurityState::default()),
    }
}

fn store_security(storage: &Storage, state: &SecurityState) -> Result<(), SecurityError> {
    let bytes = serde_json::to_vec(state).map_err(|e| StorageError::Corrupt {
        tree: "security".into(),
        what: e.to_string(),
    })?;
    Ok(storage.put_security_record(bytes)?)
}

/// Apply `change` (if any) to the security state stored in a stopped node's
/// `storage` and return the result (`sluice users`). The change is also kept
/// as pending: a cluster node, whose state is replaced by the cluster's,
/// proposes it to the controller when it starts (`take_pending_security`).
pub(crate) fn edit_stored_security(
    storage: &Storage,
    change: Option<&SecurityChange>,
) -> Result<SecurityState, SecurityError> {
    let mut state = load_security(storage)?;
    if let Some(change) = change {
        state.apply(change)?;
        store_security(storage, &state)?;
        let mut pending = load_pending(storage)?;
        pending.push(change.clone());
        store_pending(storage, &pending)?;
    }
    Ok(state)
}

fn load_pending(storage: &Storage) -> Result<Vec<SecurityChange>, StorageError> {
    match storage.pending_security_record()? {
        Some(v) => serde_json::from_slice(&v).map_err(|e| StorageError::Corrupt {
            tree: "security".into(),
            what: format!("pending security changes: {e}"),
        }),
        None => Ok(Vec::new()),
    }
}

fn store_pending(storage: &Storage, pending: &[SecurityChange]) -> Result<(), SecurityError> {
    let bytes = serde_json::to_vec(pending).map_err(|e| StorageError::Corrupt {
        tree: "security".into(),
        what: e.to_string(),
    })?;
    Ok(storage.put_pending_security_record(Some(bytes))?)
}

impl Broker {
    /// The security changes made while this cluster node was stopped, in
    /// order, for the node to propose (then `clear_pending_security`).
    pub fn pending_security(&self) -> Result<Vec<SecurityChange>, SecurityError> {
        Ok(load_pending(&self.storage)?)
    }

    /// Forget the pending changes once they are committed.
    pub fn clear_pending_security(&self) -> Result<(), SecurityError> {
        Ok(self.storage.put_pending_security_record(None)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_never_replaces_a_topic_this_node_created_on_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Broker::open(NodeConfig::for_tests(dir.path().to_path_buf())).expect("open");
        let own = broker
            .create_topic("orders", 1, -1, BTreeMap::new(), false)
            .expect("create");
        assert!(!own.from_image);
        let other = Uuid::new_v4();
        assert!(matches!(
            broker.sync_topic("orders", other, 3, &BTreeMap::new()),
            Err(TopicError::AlreadyExists(_))
        ));
        assert_eq!(broker.topic("orders").map(|t| t.id), Some(own.id));
        // A topic of the image is created, grown and recreated as the image says.
        let t = broker
            .sync_topic("payments", other, 1, &BTreeMap::new())
            .expect("sync");
        assert!(t.from_image);
        broker
            .sync_topic("payments", other, 2, &BTreeMap::new())
            .expect("grow");
        assert_eq!(
            broker.topic("payments").map(|t| t.partition_count()),
            Some(2)
        );
        drop((broker, own, t));
        let broker = Broker::open(NodeConfig::for_tests(dir.path().to_path_buf())).expect("reopen");
        assert!(broker.topic("payments").is_some_and(|t| t.from_image));
        assert!(broker.topic("orders").is_some_and(|t| !t.from_image));
    }

    #[test]
    fn absurd_partition_counts_are_refused_before_anything_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Broker::open(NodeConfig::for_tests(dir.path().to_path_buf())).expect("open");
        let too_many = MAX_PARTITIONS_PER_TOPIC + 1;
        assert!(matches!(
            broker.create_topic("huge", too_many, -1, BTreeMap::new(), false),
            Err(TopicError::InvalidPartitions(_))
        ));
        assert!(broker.topic("huge").is_none());
        broker
            .create_topic("small", 1, -1, BTreeMap::new(), false)
            .expect("create");
        assert!(matches!(
            broker.create_partitions("small", too_many, false),
            Err(TopicError::InvalidPartitions(_))
        ));
        assert_eq!(broker.topic("small").map(|t| t.partition_count()), Some(1));
    }
}
