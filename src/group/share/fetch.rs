//! ShareFetch and ShareAcknowledge (KIP-932) on the coordinator's side:
//! share sessions (epoch 0 opens one, each request carries the next epoch,
//! -1 closes it and releases what the member holds), acknowledgements
//! applied to share-partitions, and records acquired for a member with an
//! acquisition lock, read through the partition layer.
//!
//! A fetch returns the stored batches that hold the acquired records; the
//! client keeps only the acquired offsets of them (as Kafka's do).
//!
//! Must never: await while holding the share state's lock (the log is read
//! between two takes of it; acquisition checks again under the lock).
//! Locks: `ShareGroups::state` only.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::select_all;
use tokio::time::Instant;
use uuid::Uuid;

use super::partition::{AckType, Acquired, SharePartition};
use super::{PartitionKey, ShareSession};
use crate::group::{CoordinatorError as E, GroupCoordinator};
use crate::log::batch::{iter_batches, parse_header};
use crate::partition::{
    FetchPartition, FetchRequest, FetchTopic, PartitionError, HIGH_WATERMARK_UNSUPPORTED,
};

/// The most one pass reads of one partition (at least its first batch).
const READ_CAP: usize = 1 << 20;

/// The session epoch that opens a share session, and the one that closes it.
const OPEN_EPOCH: i32 = 0;
const CLOSE_EPOCH: i32 = -1;

/// One acknowledgement batch of a request.
#[derive(Debug, Clone)]
pub struct AckBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    /// One type for the range, or one per offset (wire values).
    pub types: Vec<i8>,
}

/// A partition named by a request, with its acknowledgements.
#[derive(Debug, Clone)]
pub struct RequestPartition {
    pub topic_id: Uuid,
    pub partition: i32,
    pub acks: Vec<AckBatch>,
}

/// A ShareFetch (or, with `fetch` false, a ShareAcknowledge).
#[derive(Debug, Clone)]
pub struct ShareFetchRequest {
    /// The connection it came on (a session opened on it closes with it).
    pub connection: u64,
    pub group_id: String,
    pub member_id: String,
    pub session_epoch: i32,
    /// ShareFetch: read records; ShareAcknowledge: only acknowledge.
    pub fetch: bool,
    pub max_wait: Duration,
    pub max_bytes: usize,
    pub max_records: usize,
    pub partitions: Vec<RequestPartition>,
    pub forgotten: Vec<(Uuid, i32)>,
}

/// One partition of the answer.
#[derive(Debug)]
pub struct PartitionAnswer {
    pub topic_id: Uuid,
    pub partition: i32,
    /// Why nothing could be read (UNKNOWN_TOPIC_ID as `E::UnknownTopicId`).
    pub error: Option<ShareReadError>,
    /// Whether the request acknowledged records of it (the answer then
    /// names it, with `ack_error` if they were refused).
    pub acknowledged: bool,
    pub ack_error: Option<E>,
    pub acquired: Vec<Acquired>,
    /// The batches that hold the acquired records.
    pub records: Option<Bytes>,
}

/// Why a share-partition could not be read.
#[derive(Debug)]
pub enum ShareReadError {
    Coordinator(E),
    Partition(PartitionError),
}

/// The answer to a ShareFetch or ShareAcknowledge.
#[derive(Debug, Default)]
pub struct ShareFetchAnswer {
    pub acquisition_lock_timeout_ms: i32,
    pub partitions: Vec<PartitionAnswer>,
}

/// The topics of this node by id: (name, partition count).
type TopicsById = BTreeMap<Uuid, (String, i32)>;

impl GroupCoordinator {
    fn topics_by_id(&self) -> TopicsById {
        self.topic_catalog()
            .into_iter()
            .map(|(name, (id, n))| (id, (name, n)))
            .collect()
    }

    /// The session checks and changes of a request; returns the partitions
    /// of the member's session after it.
    fn share_session(&self, req: &ShareFetchRequest) -> Result<Vec<(Uuid, i32)>, E> {
        // Only the group's coordinator knows its members; a partition leader
        // elsewhere in a cluster opens the session of any member id (Kafka's
        // share-partition leaders do the same).
        let coordinated_here = self.coordinator_error(&req.group_id).is_ok();
        let mut state = self.share.lock();
        let member_known = !coordinated_here
            || state
                .groups
                .get(&req.group_id)
                .is_some_and(|g| g.members.contains_key(&req.member_id));
        let key = (req.group_id.clone(), req.member_id.clone());
        match req.session_epoch {
            OPEN_EPOCH => {
                if !member_known {
                    return Err(E::UnknownMemberId);
                }
                if state.sessions.contains_key(&key) {
                    // A new session replaces the member's old one.
                    self.share
                        .release_member(&mut state, &req.group_id, &req.member_id);
                }
                state.sessions.insert(
                    key.clone(),
                    ShareSession {
                        next_epoch: 1,
                        partitions: Default::default(),
                        connection: req.connection,
                    },
                );
            }
            CLOSE_EPOCH => {
                if !state.sessions.contains_key(&key) {
                    return Err(E::ShareSessionNotFound);
                }
            }
            epoch => {
                let session = state
                    .sessions
                    .get_mut(&key)
                    .ok_or(E::ShareSessionNotFound)?;
                if session.next_epoch != epoch {
                    return Err(E::InvalidShareSessionEpoch);
                }
                session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
            }
        }
        let Some(session) = state.sessions.get_mut(&key) else {
            return Ok(Vec::new());
        };
        if req.fetch {
            for p in &req.partitions {
                session.partitions.insert((p.topic_id, p.partition));
            }
            for f in &req.forgotten {
                session.partitions.remove(f);
            }
        }
        Ok(session.partitions.iter().copied().collect())
    }

    /// Apply the acknowledgements of one partition.
    fn share_acknowledge_partition(
        &self,
        req: &ShareFetchRequest,
        p: &RequestPartition,
        topics: &TopicsById,
    ) -> Result<(), E> {
        let Some((name, _)) = topics
            .get(&p.topic_id)
            .filter(|(_, n)| (0..*n).contains(&p.partition))
        else {
            return Err(E::UnknownTopicOrPartition);
        };
        let key = PartitionKey {
            group_id: req.group_id.clone(),
            topic_id: p.topic_id,
            partition: p.partition,
        };
        let limits = self.share.settings.limits;
        let mut state = self.share.lock();
        self.share_refresh(&mut state, &key, name)?;
        let sp = state
            .partitions
            .get_mut(&key)
            .ok_or(E::InvalidRecordState)?;
        let mut result = Ok(());
        let mut released = false;
        for batch in &p.acks {
            let types: Option<Vec<AckType>> =
                batch.types.iter().map(|t| AckType::from_wire(*t)).collect();
            let Some(types) = types else {
                result = Err(E::InvalidRequest);
                continue;
            };
            released |= types.contains(&AckType::Release);
            if sp
                .acknowledge(
                    &req.member_id,
                    batch.first_offset,
                    batch.last_offset,
                    &types,
                    limits,
                )
                .is_err()
            {
                result = Err(E::InvalidRecordState);
            }
        }
        self.share.store(&key, sp);
        drop(state);
        if released {
            self.share.available.notify_waiters();
        }
        result
    }

    /// ShareFetch and ShareAcknowledge: session, acknowledgements, then (for
    /// a fetch) records acquired for the member, waiting up to `max_wait`
    /// for some. A top-level error refuses the whole request.
    pub async fn share_fetch(&self, req: ShareFetchRequest) -> Result<ShareFetchAnswer, E> {
        self.share_check(&req.group_id)?;
        let lock = self.share_lock_duration(&req.group_id);
        let session_partitions = self.share_session(&req)?;
        let topics = self.topics_by_id();
        let mut answer = ShareFetchAnswer {
            acquisition_lock_timeout_ms: i32::try_from(lock.as_millis()).unwrap_or(i32::MAX),
            partitions: Vec::new(),
        };
        let mut answers: BTreeMap<(Uuid, i32), PartitionAnswer> = BTreeMap::new();
        for p in req.partitions.iter().filter(|p| !p.acks.is_empty()) {
            let ack_error = self.share_acknowledge_partition(&req, p, &topics).err();
            answers.insert(
                (p.topic_id, p.partition),
                PartitionAnswer {
                    topic_id: p.topic_id,
                    partition: p.partition,
                    error: None,
                    acknowledged: true,
                    ack_error,
                    acquired: Vec::new(),
                    records: None,
                },
            );
        }
        if req.session_epoch == CLOSE_EPOCH {
            let mut state = self.share.lock();
            self.share
                .release_member(&mut state, &req.group_id, &req.member_id);
        } else if req.fetch && req.max_records > 0 {
            let deadline = Instant::now() + req.max_wait;
            // Subscribed before the first look, so that an append in between
            // still wakes the fetch; a release or an expired lock wakes it
            // through `available`.
            let mut appends: Vec<_> = session_partitions
                .iter()
                .filter_map(|(topic_id, partition)| {
                    let (name, _) = topics.get(topic_id)?;
                    let log = self.broker.topic(name)?.partition(*partition)?;
                    Some(log.subscribe())
                })
                .collect();
            loop {
                let notified = self.share.available.notified();
                let got = self
                    .share_acquire(&req, &session_partitions, &topics, lock, &mut answers)
                    .await;
                if got > 0 || Instant::now() >= deadline || self.is_shutting_down() {
                    break;
                }
                let appended = async {
                    if appends.is_empty() {
                        return std::future::pending().await;
                    }
                    let (changed, i, _) =
                        select_all(appends.iter_mut().map(|w| Box::pin(w.changed()))).await;
                    // A deleted log's watch ends: stop watching it.
                    if changed.is_err() {
                        appends.swap_remove(i);
                    }
                };
                tokio::select! {
                    _ = notified => {}
                    _ = appended => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        answer.partitions = answers
            .into_values()
            .filter(|a| !a.acquired.is_empty() || a.error.is_some() || a.acknowledged)
            .collect();
        Ok(answer)
    }

    /// A client connection closed: the share sessions opened on it close
    /// too, and what their members hold on this node is released (as
    /// Kafka's share-partition leaders do), instead of waiting for the
    /// acquisition locks to expire.
    pub fn share_connection_closed(&self, connection: u64) {
        let mut state = self.share.lock();
        let closed: Vec<(String, String)> = state
            .sessions
            .iter()
            .filter(|(_, s)| s.connection == connection)
            .map(|(key, _)| key.clone())
            .collect();
        for (group_id, member_id) in closed {
            tracing::debug!(
                group = group_id.as_str(),
                member = member_id.as_str(),
                "share session closed with its connection"
            );
            self.share.release_member(&mut state, &group_id, &member_id);
        }
    }

    /// One pass over the session's partitions: read each from its first
    /// record to deliver and acquire what was read. Returns the records
    /// acquired.
    async fn share_acquire(
        &self,
        req: &ShareFetchRequest,
        session_partitions: &[(Uuid, i32)],
        topics: &TopicsById,
        lock: Duration,
        answers: &mut BTreeMap<(Uuid, i32), PartitionAnswer>,
    ) -> usize {
        let limits = self.share.settings.limits;
        let mut acquired_total = 0usize;
        let mut bytes_left = req.max_bytes.max(1);
        for &(topic_id, partition) in session_partitions {
            if acquired_total >= req.max_records || bytes_left == 0 {
                break;
            }
            let entry = answers
                .entry((topic_id, partition))
                .or_insert_with(|| PartitionAnswer {
                    topic_id,
                    partition,
                    error: None,
                    acknowledged: false,
                    ack_error: None,
                    acquired: Vec::new(),
                    records: None,
                });
            if !entry.acquired.is_empty() {
                continue;
            }
            let Some((name, count)) = topics.get(&topic_id) else {
                entry.error = Some(ShareReadError::Coordinator(E::UnknownTopicId));
                continue;
            };
            if !(0..*count).contains(&partition) {
                entry.error = Some(ShareReadError::Coordinator(E::UnknownTopicOrPartition));
                continue;
            }
            let key = PartitionKey {
                group_id: req.group_id.clone(),
                topic_id,
                partition,
            };
            // Where to read from (a new share-partition starts at the log's
            // end, or its start with share.auto.offset.reset=earliest).
            let from = {
                let initial = self
                    .broker
                    .topic(name)
                    .and_then(|t| t.partition(partition))
                    .map(|log| {
                        if self.share_starts_earliest(&req.group_id) {
                            log.log_start_offset()
                        } else {
                            log.high_watermark()
                        }
                    });
                let mut state = self.share.lock();
                if let Err(e) = self.share_refresh(&mut state, &key, name) {
                    entry.error = Some(ShareReadError::Coordinator(e));
                    continue;
                }
                let sp = match state.partitions.get_mut(&key) {
                    Some(sp) => sp,
                    None => {
                        let Some(start) = initial else {
                            entry.error =
                                Some(ShareReadError::Coordinator(E::UnknownTopicOrPartition));
                            continue;
                        };
                        let sp = SharePartition::new(start);
                        self.share.store(&key, &sp);
                        state.partitions.entry(key.clone()).or_insert(sp)
                    }
                };
                sp.expire_locks(Instant::now(), limits);
                sp.next_fetch_offset(limits)
            };
            let Some(from) = from else {
                continue;
            };
            // At most `READ_CAP` per partition and pass (a first batch larger
            // than that is still read whole), not the whole request's bytes:
            // a fetch acquires at most `max_records`.
            let read_cap = bytes_left.min(READ_CAP);
            let fetch = FetchRequest {
                replica_id: -1,
                max_wait: Duration::ZERO,
                min_bytes: 0,
                max_bytes: read_cap,
                read_committed: false,
                topics: vec![FetchTopic {
                    name,
                    topic_id: Uuid::nil(),
                    partitions: vec![FetchPartition {
                        index: partition,
                        fetch_offset: from,
                        current_leader_epoch: -1,
                        max_bytes: i32::try_from(read_cap).unwrap_or(i32::MAX),
                        replica_high_watermark: HIGH_WATERMARK_UNSUPPORTED,
                    }],
                }],
            };
            let read = self
                .partition_layer
                .fetch_messages(&fetch)
                .await
                .into_iter()
                .flatten()
                .next();
            let read = match read {
                Some(Ok(read)) => read,
                Some(Err(PartitionError::OffsetOutOfRange {
                    log_start_offset, ..
                })) => {
                    let mut state = self.share.lock();
                    if let Some(sp) = state.partitions.get_mut(&key) {
                        sp.skip_to(log_start_offset);
                        self.share.store(&key, sp);
                    }
                    continue;
                }
                Some(Err(e)) => {
                    entry.error = Some(ShareReadError::Partition(e));
                    continue;
                }
                None => continue,
            };
            // The batches read, with their offsets (slices of what was read).
            let batches: Vec<(i64, i64, Bytes)> = read
                .batches
                .iter()
                .flat_map(|chunk| iter_batches(chunk.clone()))
                .filter_map(|batch| {
                    let h = parse_header(&batch).ok()?;
                    Some((h.base_offset, h.last_offset(), batch))
                })
                .collect();
            // The last offset they hold (up to the high watermark).
            let Some(last) = batches
                .last()
                .map(|(_, l, _)| (*l).min(read.high_watermark - 1))
            else {
                continue;
            };
            let acquired = {
                let mut state = self.share.lock();
                let Some(sp) = state.partitions.get_mut(&key) else {
                    continue;
                };
                let got = sp.acquire(
                    &req.member_id,
                    from,
                    last,
                    req.max_records - acquired_total,
                    Instant::now() + lock,
                    limits,
                );
                if !got.is_empty() {
                    self.share.store(&key, sp);
                }
                got
            };
            if acquired.is_empty() {
                continue;
            }
            acquired_total += acquired
                .iter()
                .map(|a| (a.last_offset - a.first_offset + 1) as usize)
                .sum::<usize>();
            // Only the batches that hold acquired records are answered: the
            // rest of what was read is left for the next fetch.
            let first = acquired
                .iter()
                .map(|a| a.first_offset)
                .min()
                .unwrap_or(from);
            let upto = acquired.iter().map(|a| a.last_offset).max().unwrap_or(last);
            let holding: Vec<&Bytes> = batches
                .iter()
                .filter(|(base, end, _)| *base <= upto && *end >= first)
                .map(|(_, _, b)| b)
                .collect();
            let size: usize = holding.iter().map(|b| b.len()).sum();
            bytes_left = bytes_left.saturating_sub(size);
            let mut records = BytesMut::with_capacity(size);
            for batch in holding {
                records.extend_from_slice(batch);
            }
            entry.acquired = acquired;
            entry.records = Some(records.freeze());
        }
        acquired_total
    }
}
