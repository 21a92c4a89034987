//! The transactional side of a producer (Kafka's `TransactionManager`): the
//! transaction coordinator of the `transactional.id` (FindCoordinator key
//! type 1), InitProducerId with the id, AddPartitionsToTxn for each partition
//! before its first batch of a transaction, AddOffsetsToTxn plus
//! TxnOffsetCommit to the group coordinator, and EndTxn. Coordinator moves,
//! loading coordinators and CONCURRENT_TRANSACTIONS (markers of the previous
//! transaction still being written) are retried until a deadline.
//!
//! KIP-890 part 2: when the coordinator's broker finalizes the
//! `transaction.version` feature at level 2 (and speaks EndTxn v5, Produce
//! v12, TxnOffsetCommit v5), the producer sends neither AddPartitionsToTxn
//! nor AddOffsetsToTxn (the partition's leader and the group coordinator add
//! them), and each EndTxn answers with a bumped epoch the next transaction
//! uses, its sequence numbers from 0.
//!
//! State: whether a transaction is open, the partitions and offsets it holds,
//! the first failed batch (the transaction can then only abort) and a fatal
//! fencing error (the producer is done).
//!
//! Must never: touch the accumulator or encode batches; the sender calls
//! [`Transactions::add_partitions`] before it ships a batch.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest,
    FindCoordinatorRequest, GroupId, InitProducerIdRequest, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::time::Instant;

use super::encoding::ProducerIdentity;
use crate::client::cluster::Client;
use crate::client::connection::BrokerConnection;
use crate::client::error::ClientError;

/// How long a coordinator request is retried (moves, loading, concurrent
/// transactions) before the error is returned.
const COORDINATOR_PATIENCE: Duration = Duration::from_secs(30);
/// Pause before retrying after CONCURRENT_TRANSACTIONS (short: the previous
/// transaction's markers are usually written within milliseconds).
const CONCURRENT_BACKOFF: Duration = Duration::from_millis(20);
/// Pause before retrying after a coordinator moved or was unreachable.
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(100);
/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// What the current transaction holds.
#[derive(Debug, Default)]
struct TxnState {
    open: bool,
    partitions: HashSet<(Arc<str>, i32)>,
    offsets_added: bool,
    /// A batch of this transaction failed: it can only abort.
    abortable: Option<ClientError>,
    /// The producer was fenced: nothing works any more.
    fatal: Option<ClientError>,
}

/// The transaction manager of one transactional producer.
#[derive(Debug)]
pub(super) struct Transactions {
    pub(super) id: String,
    timeout: Duration,
    state: Mutex<TxnState>,
    /// The coordinator's node id, once found.
    coordinator: Mutex<Option<i32>>,
    /// KIP-890 part 2 is on: decided by the coordinator that answered
    /// InitProducerId.
    epoch_per_transaction: AtomicBool,
}

/// Whether `conn`'s broker runs KIP-890 part 2: the feature at level 2 and
/// the request versions that carry it.
fn speaks_epoch_per_transaction(conn: &BrokerConnection) -> bool {
    let at_least =
        |api: ApiKey, version: i16| conn.broker_versions(api).is_some_and(|v| v.max >= version);
    conn.finalized_feature("transaction.version")
        .is_some_and(|level| level >= 2)
        && at_least(ApiKey::EndTxn, 5)
        && at_least(ApiKey::Produce, 12)
        && at_least(ApiKey::TxnOffsetCommit, 5)
}

/// True for errors after which a coordinator request is worth repeating,
/// possibly after looking the coordinator up again.
fn coordinator_retriable(error: &ClientError) -> bool {
    match error {
        ClientError::Broker { error, .. } => matches!(
            error,
            ResponseError::CoordinatorLoadInProgress
                | ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::ConcurrentTransactions
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::RequestTimedOut
        ),
        other => other.is_retriable(),
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// The error for a Kafka code of `api`, if the code is one.
fn code_error(api: ApiKey, code: i16) -> Result<(), ClientError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(ClientError::broker(api, error, None)),
    }
}

/// The node coordinating `key` (a group or a transactional id).
async fn find_coordinator(client: &Client, key: &str, key_type: i8) -> Result<i32, ClientError> {
    let conn = client.any_broker().await?;
    let version = conn.version_for::<FindCoordinatorRequest>()?;
    let request = if version >= 4 {
        FindCoordinatorRequest::default()
            .with_key_type(key_type)
            .with_coordinator_keys(vec![str_bytes(key)])
    } else {
        FindCoordinatorRequest::default()
            .with_key(str_bytes(key))
            .with_key_type(key_type)
    };
    let response = conn.request_with_version(&request, version).await?;
    let (code, node) = if version >= 4 {
        let c = response.coordinators.first().ok_or_else(|| {
            ClientError::Metadata("FindCoordinator answered no coordinator".to_owned())
        })?;
        (c.error_code, c.node_id.0)
    } else {
        (response.error_code, response.node_id.0)
    };
    code_error(ApiKey::FindCoordinator, code)?;
    if client.metadata_cache().broker(node).is_none() {
        client.refresh_metadata(&[]).await?;
    }
    Ok(node)
}

/// Run `op` on the coordinator of `key`, finding it first (or again after it
/// moved) and retrying retriable errors until [`COORDINATOR_PATIENCE`].
async fn on_coordinator<T, F, Fut>(
    client: &Client,
    key: &str,
    key_type: i8,
    cache: &Mutex<Option<i32>>,
    mut op: F,
) -> Result<T, ClientError>
where
    F: FnMut(Arc<BrokerConnection>) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + COORDINATOR_PATIENCE;
    loop {
        let cached = *cache.lock().unwrap_or_else(|p| p.into_inner());
        let result = async {
            let node = match cached {
                Some(node) => node,
                None => {
                    let node = find_coordinator(client, key, key_type).await?;
                    *cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(node);
                    node
                }
            };
            op(client.broker(node).await?).await
        }
        .await;
        match result {
            Err(e) if coordinator_retriable(&e) && Instant::now() < deadline => {
                let concurrent = matches!(
                    e,
                    ClientError::Broker {
                        error: ResponseError::ConcurrentTransactions,
                        ..
                    }
                );
                if !concurrent {
                    *cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                tracing::debug!(%key, error = %e, "coordinator request failed; retrying");
                tokio::time::sleep(if concurrent {
                    CONCURRENT_BACKOFF
                } else {
                    COORDINATOR_BACKOFF
                })
                .await;
            }
            other => return other,
        }
    }
}

impl Transactions {
    /// A manager for `id`, with no transaction open.
    pub(super) fn new(id: String, timeout: Duration) -> Self {
        Self {
            id,
            timeout,
            state: Mutex::new(TxnState::default()),
            coordinator: Mutex::new(None),
            epoch_per_transaction: AtomicBool::new(false),
        }
    }

    /// KIP-890 part 2 is on for this producer.
    fn epoch_per_transaction(&self) -> bool {
        self.epoch_per_transaction.load(Ordering::Acquire)
    }

    /// The highest Produce version this producer may send: v12 and later
    /// ask the leader to add the partition to the transaction.
    pub(super) fn produce_version_cap(&self) -> i16 {
        if self.epoch_per_transaction() {
            i16::MAX
        } else {
            11
        }
    }

    /// The highest version of a transaction API before KIP-890 part 2 (EndTxn
    /// v5 bumps the epoch, TxnOffsetCommit v5 adds the offsets partition).
    fn version_cap(&self) -> i16 {
        if self.epoch_per_transaction() {
            i16::MAX
        } else {
            4
        }
    }

    fn lock(&self) -> MutexGuard<'_, TxnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The typed fatal error for a fencing broker error.
    fn fenced(&self, error: &ClientError) -> ClientError {
        ClientError::Fenced {
            transactional_id: self.id.clone(),
            reason: error.to_string(),
        }
    }

    /// Map fencing errors to [`ClientError::Fenced`] and remember them.
    fn check(&self, result: Result<(), ClientError>) -> Result<(), ClientError> {
        result.map_err(|e| self.checked(e))
    }

    /// A fencing error as [`ClientError::Fenced`], remembered; others as they are.
    fn checked(&self, error: ClientError) -> ClientError {
        if !error.is_fenced() {
            return error;
        }
        let fenced = self.fenced(&error);
        self.lock().fatal = Some(fenced.clone());
        fenced
    }

    /// Send `request` to the transaction coordinator (found and retried as
    /// `on_coordinator` does) at the best version up to `cap`; its top-level
    /// error code, read by `code`, becomes the result, through `check` (a
    /// fatal error sticks). Returns the response and its version.
    async fn ask_coordinator<R>(
        &self,
        client: &Client,
        api: ApiKey,
        request: R,
        cap: i16,
        code: fn(&R::Response) -> i16,
    ) -> Result<(R::Response, i16), ClientError>
    where
        R: Request + Clone,
    {
        let result = on_coordinator(
            client,
            &self.id,
            KEY_TYPE_TRANSACTION,
            &self.coordinator,
            |conn| {
                let request = request.clone();
                async move {
                    let version = conn.version_for_capped::<R>(cap)?;
                    let response = conn.request_with_version(&request, version).await?;
                    code_error(api, code(&response))?;
                    Ok((response, version))
                }
            },
        )
        .await;
        result.map_err(|e| self.checked(e))
    }

    fn transactional_id(&self) -> TransactionalId {
        TransactionalId(str_bytes(&self.id))
    }

    /// InitProducerId with the transactional id: bumps the epoch, fences
    /// older producers of the id and ends what they left open.
    pub(super) async fn init_producer_id(
        &self,
        client: &Client,
    ) -> Result<ProducerIdentity, ClientError> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(self.transactional_id()))
            .with_transaction_timeout_ms(i32::try_from(self.timeout.as_millis()).unwrap_or(60_000))
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        on_coordinator(
            client,
            &self.id,
            KEY_TYPE_TRANSACTION,
            &self.coordinator,
            |conn| {
                let request = request.clone();
                let speaks = speaks_epoch_per_transaction(&conn);
                async move {
                    let response = conn.request(&request).await?;
                    code_error(ApiKey::InitProducerId, response.error_code)?;
                    self.epoch_per_transaction.store(speaks, Ordering::Release);
                    Ok(ProducerIdentity {
                        producer_id: response.producer_id.0,
                        producer_epoch: response.producer_epoch,
                        transactional: true,
                    })
                }
            },
        )
        .await
    }

    /// Start a transaction.
    pub(super) fn begin(&self) -> Result<(), ClientError> {
        let mut state = self.lock();
        if let Some(fatal) = &state.fatal {
            return Err(fatal.clone());
        }
        if state.open {
            return Err(ClientError::Config(
                "a transaction is already open".to_owned(),
            ));
        }
        *state = TxnState {
            open: true,
            ..TxnState::default()
        };
        Ok(())
    }

    /// Refuse records outside a transaction or after the producer was fenced.
    pub(super) fn check_sendable(&self) -> Result<(), ClientError> {
        let state = self.lock();
        if let Some(fatal) = &state.fatal {
            return Err(fatal.clone());
        }
        if !state.open {
            return Err(ClientError::Config(
                "a transactional producer sends only inside a transaction".to_owned(),
            ));
        }
        Ok(())
    }

    /// A batch of the transaction failed: remember it (commit will refuse).
    pub(super) fn note_failure(&self, error: &ClientError) {
        let mut state = self.lock();
        if error.is_fenced() && state.fatal.is_none() {
            state.fatal = Some(self.fenced(error));
        }
        if state.open && state.abortable.is_none() {
            state.abortable = Some(error.clone());
        }
    }

    /// AddPartitionsToTxn for those of `partitions` the transaction does not
    /// hold yet (before their first batch is sent).
    pub(super) async fn add_partitions(
        &self,
        client: &Client,
        identity: ProducerIdentity,
        partitions: &[(Arc<str>, i32)],
    ) -> Result<(), ClientError> {
        let new: Vec<(Arc<str>, i32)> = {
            let state = self.lock();
            if let Some(fatal) = &state.fatal {
                return Err(fatal.clone());
            }
            let mut new: Vec<(Arc<str>, i32)> = Vec::new();
            for p in partitions {
                if !state.partitions.contains(p) && !new.contains(p) {
                    new.push(p.clone());
                }
            }
            new
        };
        if new.is_empty() {
            return Ok(());
        }
        if self.epoch_per_transaction() {
            // KIP-890 part 2: the partition's leader adds it (Produce v12).
            self.lock().partitions.extend(new);
            return Ok(());
        }
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for (topic, partition) in &new {
            match topics.iter_mut().find(|t| t.name.0.as_str() == &**topic) {
                Some(t) => t.partitions.push(*partition),
                None => topics.push(
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.transactional_id())
            .with_v3_and_below_producer_id(identity.producer_id.into())
            .with_v3_and_below_producer_epoch(identity.producer_epoch)
            .with_v3_and_below_topics(topics);
        let result = on_coordinator(
            client,
            &self.id,
            KEY_TYPE_TRANSACTION,
            &self.coordinator,
            |conn| {
                let request = request.clone();
                async move {
                    // Versions 4+ are the brokers' batched form.
                    let version = conn.version_for_capped::<AddPartitionsToTxnRequest>(3)?;
                    let response = conn.request_with_version(&request, version).await?;
                    code_error(ApiKey::AddPartitionsToTxn, response.error_code)?;
                    let mut first: Option<ClientError> = None;
                    for t in &response.results_by_topic_v3_and_below {
                        for p in &t.results_by_partition {
                            let Some(error) = ResponseError::try_from_code(p.partition_error_code)
                            else {
                                continue;
                            };
                            // OPERATION_NOT_ATTEMPTED only echoes another partition's error.
                            if error == ResponseError::OperationNotAttempted && first.is_some() {
                                continue;
                            }
                            if first.is_none() || error != ResponseError::OperationNotAttempted {
                                first = Some(ClientError::partition(
                                    ApiKey::AddPartitionsToTxn,
                                    error,
                                    t.name.0.as_str(),
                                    p.partition_index,
                                    None,
                                ));
                            }
                        }
                    }
                    first.map_or(Ok(()), Err)
                }
            },
        )
        .await;
        self.check(result)?;
        let mut state = self.lock();
        state.partitions.extend(new);
        Ok(())
    }

    /// AddOffsetsToTxn, then TxnOffsetCommit of `offsets` (topic, partition,
    /// next offset to read) for `group_id` at its group coordinator.
    pub(super) async fn send_offsets(
        &self,
        client: &Client,
        identity: ProducerIdentity,
        group_id: &str,
        offsets: &[(String, i32, i64)],
        generation_id: i32,
        member_id: &str,
    ) -> Result<(), ClientError> {
        self.check_sendable()?;
        if !self.epoch_per_transaction() {
            // KIP-890 part 2: TxnOffsetCommit v5 adds the offsets partition.
            let add = AddOffsetsToTxnRequest::default()
                .with_transactional_id(self.transactional_id())
                .with_producer_id(identity.producer_id.into())
                .with_producer_epoch(identity.producer_epoch)
                .with_group_id(GroupId(str_bytes(group_id)));
            self.ask_coordinator(client, ApiKey::AddOffsetsToTxn, add, i16::MAX, |r| {
                r.error_code
            })
            .await?;
        }
        self.lock().offsets_added = true;

        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let p = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1);
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let commit = TxnOffsetCommitRequest::default()
            .with_transactional_id(self.transactional_id())
            .with_group_id(GroupId(str_bytes(group_id)))
            .with_producer_id(identity.producer_id.into())
            .with_producer_epoch(identity.producer_epoch)
            .with_generation_id(generation_id)
            .with_member_id(str_bytes(member_id))
            .with_topics(topics);
        let group_coordinator = Mutex::new(None);
        let cap = self.version_cap();
        let result = on_coordinator(
            client,
            group_id,
            KEY_TYPE_GROUP,
            &group_coordinator,
            |conn| {
                let commit = commit.clone();
                async move {
                    let version = conn.version_for_capped::<TxnOffsetCommitRequest>(cap)?;
                    let response = conn.request_with_version(&commit, version).await?;
                    for t in &response.topics {
                        for p in &t.partitions {
                            if let Some(error) = ResponseError::try_from_code(p.error_code) {
                                return Err(ClientError::partition(
                                    ApiKey::TxnOffsetCommit,
                                    error,
                                    t.name.0.as_str(),
                                    p.partition_index,
                                    None,
                                ));
                            }
                        }
                    }
                    Ok(())
                }
            },
        )
        .await;
        self.check(result)
    }

    /// Why the open transaction cannot commit, if it cannot.
    pub(super) fn commit_blocker(&self) -> Result<(), ClientError> {
        let state = self.lock();
        if let Some(fatal) = &state.fatal {
            return Err(fatal.clone());
        }
        if !state.open {
            return Err(ClientError::Config("no transaction is open".to_owned()));
        }
        match &state.abortable {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// EndTxn (commit or abort) if the transaction holds anything, then close
    /// it. Returns the producer id and epoch to go on with (new ones under
    /// KIP-890 part 2).
    pub(super) async fn end(
        &self,
        client: &Client,
        identity: ProducerIdentity,
        commit: bool,
    ) -> Result<(i64, i16), ClientError> {
        let touched = {
            let state = self.lock();
            if let Some(fatal) = &state.fatal {
                return Err(fatal.clone());
            }
            if !state.open {
                return Err(ClientError::Config("no transaction is open".to_owned()));
            }
            !state.partitions.is_empty() || state.offsets_added
        };
        let mut next = (identity.producer_id, identity.producer_epoch);
        if touched {
            let request = EndTxnRequest::default()
                .with_transactional_id(self.transactional_id())
                .with_producer_id(identity.producer_id.into())
                .with_producer_epoch(identity.producer_epoch)
                .with_committed(commit);
            let (response, version) = self
                .ask_coordinator(client, ApiKey::EndTxn, request, self.version_cap(), |r| {
                    r.error_code
                })
                .await?;
            if version >= 5 && response.producer_id.0 >= 0 {
                next = (response.producer_id.0, response.producer_epoch);
            }
        }
        *self.lock() = TxnState::default();
        Ok(next)
    }
}
