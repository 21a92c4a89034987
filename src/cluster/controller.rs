//! The controller: the Raft leader watches broker liveness. Every broker
//! heartbeats the controller; a broker silent for longer than its session
//! is fenced (the image moves its leaderships within the ISR); a fenced
//! broker that heartbeats again is unfenced. In the background, partitions
//! whose preferred leader (first replica) is live and in sync get it back.
//!
//! Heartbeat times are kept only in the controller's memory: a node that
//! becomes controller gives every broker a full session before fencing it.
//!
//! Controlled shutdown (Kafka's): a node asked to stop fences itself first,
//! so the image moves its leaderships and drops it from every ISR while it
//! still answers; its heartbeats say it is shutting down, so the controller
//! does not unfence it, and leaders do not take it back into an ISR.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::image::{Command, CommandResponse, MetadataImage, Rejection, NO_LEADER};
use super::{ClusterHandle, PROPOSE_TIMEOUT};

/// How long a new controller's reachability probe of a broker may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Path of heartbeats on the cluster listener.
pub const HEARTBEAT_PATH: &str = "/cluster/heartbeat";

/// A broker's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub broker_id: i32,
    /// The broker is in controlled shutdown: keep it fenced.
    #[serde(default)]
    pub shutting_down: bool,
}

/// The controller's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// False when the receiver is not the controller.
    pub accepted: bool,
}

/// Controller timing.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// How often brokers heartbeat.
    pub heartbeat_interval: Duration,
    /// A broker silent this long is fenced.
    pub session_timeout: Duration,
    /// How often preferred leaders are restored.
    pub preferred_leader_interval: Duration,
}

/// Last heartbeat of each broker, as the controller heard it; and this
/// node's own contact with the controller.
pub struct Heartbeats {
    /// Per broker: when it was last heard, and whether it said it is in
    /// controlled shutdown.
    seen: Mutex<HashMap<i32, (Instant, bool)>>,
    /// This node is in controlled shutdown (its heartbeats say so).
    shutting_down: AtomicBool,
    /// What `contact_until` counts from.
    epoch: Instant,
    /// Until when (milliseconds after `epoch`) this node counts itself in
    /// contact with the controller: the last accepted heartbeat (as
    /// controller, quorum acknowledgement) plus two broker sessions; 0
    /// before the first contact. An atomic: the produce path reads it.
    contact_until: AtomicU64,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Heartbeats {
            seen: Mutex::default(),
            shutting_down: AtomicBool::new(false),
            epoch: Instant::now(),
            contact_until: AtomicU64::new(0),
        }
    }
}

impl Heartbeats {
    /// False once this node has gone without the controller for longer
    /// than twice a broker session: the controller fences a broker silent
    /// for one session and moves its leaderships, so this node's image no
    /// longer says who leads (a new controller gives every broker a full
    /// session; the second one covers its election). True before the first
    /// contact: the node leads nothing until it is registered.
    pub fn in_contact(&self) -> bool {
        match self.contact_until.load(Ordering::Acquire) {
            0 => true,
            until => self.millis(Instant::now()) <= until,
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn touch(&self, at: Instant, session: Duration) {
        let was_lost = !self.in_contact();
        let until = self.millis(at + session * 2).max(1);
        self.contact_until.fetch_max(until, Ordering::AcqRel);
        if was_lost && self.in_contact() {
            tracing::info!("in contact with the controller again");
        }
    }

    pub fn record(&self, broker_id: i32, shutting_down: bool) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(broker_id, (Instant::now(), shutting_down));
    }

    /// When broker `broker_id` was last heard, and whether it was shutting down.
    fn last(&self, broker_id: i32) -> Option<(Instant, bool)> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&broker_id)
            .copied()
    }

    /// True once this node has begun its controlled shutdown.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Start this node's heartbeats and its controller duties (active while it
/// is the Raft leader).
pub fn start(handle: ClusterHandle, settings: ControllerSettings, shutdown: watch::Receiver<bool>) {
    tokio::spawn(send_heartbeats(
        handle.clone(),
        settings.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(control(handle, settings, shutdown));
}

async fn send_heartbeats(
    handle: ClusterHandle,
    settings: ControllerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = handle.node_id() as i32;
    let mut tick = tokio::time::interval(settings.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let session = settings.session_timeout;
        let heartbeats = handle.heartbeats();
        let before = heartbeats.in_contact();
        let shutting_down = heartbeats.shutting_down();
        match handle.controller() {
            Some(c) if c == handle.node_id() => {
                heartbeats.record(me, shutting_down);
                // The controller is in contact while a quorum acknowledges it.
                let acked = handle.raft().metrics().borrow().millis_since_quorum_ack;
                if let Some(ms) = acked {
                    let now = Instant::now();
                    let at = now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
                    heartbeats.touch(at, session);
                }
            }
            Some(c) => {
                let sent = Instant::now();
                let answer: Result<HeartbeatAck, _> = handle
                    .call(
                        c,
                        HEARTBEAT_PATH,
                        &Heartbeat {
                            broker_id: me,
                            shutting_down,
                        },
                        settings.heartbeat_interval * 2,
                    )
                    .await;
                match answer {
                    Ok(ack) if ack.accepted => heartbeats.touch(sent, session),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(controller = c, error = %e, "heartbeat not delivered")
                    }
                }
            }
            None => {}
        }
        if before && !heartbeats.in_contact() {
            tracing::warn!(
                "no contact with the controller for two sessions: this node counts itself \
                 fenced and answers NOT_LEADER_OR_FOLLOWER as a leader until it hears from it"
            );
        }
    }
}

/// How long one attempt to commit a controlled shutdown's fencing may take,
/// and how many attempts fail before the node stops without it.
const CONTROLLED_SHUTDOWN_ATTEMPT: Duration = Duration::from_secs(2);
const CONTROLLED_SHUTDOWN_ATTEMPTS: u32 = 2;

/// How a controlled shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlledShutdown {
    /// The image has this broker fenced and leading nothing.
    Done,
    /// The deadline passed first (no quorum, or no other live replica
    /// could take a leadership).
    TimedOut,
    /// Not attempted, or abandoned after failed attempts: this node is out
    /// of contact with the controller (no quorum to commit the fencing).
    NoController,
}

/// Kafka's controlled shutdown: mark this node as shutting down (its
/// heartbeats say so from now on), fence it through the controller so the
/// image moves every leadership it holds to another in-sync replica and
/// drops it from the ISRs, and wait until this node's image shows that, for
/// up to `timeout`. The node keeps serving meanwhile: clients get
/// NOT_LEADER_OR_FOLLOWER and move on to the new leaders before it stops.
pub async fn controlled_shutdown(handle: &ClusterHandle, timeout: Duration) -> ControlledShutdown {
    let me = handle.node_id() as i32;
    if handle.controller().is_none() || !handle.heartbeats().in_contact() {
        tracing::warn!("controlled shutdown skipped: no contact with a controller");
        return ControlledShutdown::NoController;
    }
    handle
        .heartbeats()
        .shutting_down
        .store(true, Ordering::Release);
    let started = Instant::now();
    let deadline = started + timeout;
    let mut failures = 0;
    let moved = |image: &super::image::MetadataImage| {
        image.brokers.get(&me).is_none_or(|b| b.fenced)
            && !image
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .any(|p| p.leader == me)
    };
    loop {
        if handle.read_image(moved) {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown: leaderships moved, this broker is fenced"
            );
            return ControlledShutdown::Done;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(
                "controlled shutdown: leaderships not moved within {} ms; stopping anyway",
                timeout.as_millis()
            );
            return ControlledShutdown::TimedOut;
        }
        let fenced = handle.read_image(|i| i.brokers.get(&me).is_none_or(|b| b.fenced));
        if !fenced {
            // Each attempt is short: the last nodes of a cluster being
            // stopped have no quorum left, and should not wait it out.
            let attempt = left.min(CONTROLLED_SHUTDOWN_ATTEMPT);
            // A Raft leader's own write waits for a quorum with no deadline.
            let proposal = handle.propose(Command::FenceBroker { broker_id: me }, attempt);
            let outcome = match tokio::time::timeout(attempt, proposal).await {
                Ok(result) => result.map(|_| ()).map_err(|e| e.to_string()),
                Err(_) => Err(format!("not committed within {} ms", attempt.as_millis())),
            };
            if let Err(e) = outcome {
                failures += 1;
                tracing::warn!(error = %e, "controlled shutdown: fencing not committed");
                if failures >= CONTROLLED_SHUTDOWN_ATTEMPTS {
                    tracing::warn!("controlled shutdown abandoned: no quorum to commit it");
                    return ControlledShutdown::NoController;
                }
            }
        }
        // The commit reaches this node's image when it applies the entry.
        tokio::time::sleep(Duration::from_millis(20).min(left)).await;
    }
}

async fn control(
    handle: ClusterHandle,
    settings: ControllerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since: Option<Instant> = None;
    let mut last_preferred = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if !handle.is_controller() {
            since = None;
            continue;
        }
        let now = Instant::now();
        let became = match since {
            Some(t) => t,
            None => {
                handle.heartbeats().clear();
                tracing::info!("this node is the controller");
                since = Some(now);
                fence_unreachable(&handle).await;
                now
            }
        };
        // Only the brokers' fencing is needed here, ten times a second.
        let brokers: Vec<(i32, bool)> = handle.read_image(|image| {
            image
                .brokers
                .values()
                .map(|b| (b.broker_id, b.fenced))
                .collect()
        });
        for (broker_id, fenced) in brokers {
            let heard = handle.heartbeats().last(broker_id);
            let last = heard.map_or(became, |(h, _)| h.max(became));
            let silent = now.duration_since(last) > settings.session_timeout;
            let stopping = heard.is_some_and(|(_, stopping)| stopping);
            let command = if !fenced && silent {
                tracing::warn!(broker = broker_id, "broker missed its session; fencing it");
                Command::FenceBroker { broker_id }
            } else if fenced && heard.is_some() && !silent && !stopping {
                tracing::info!(broker = broker_id, "fenced broker is back; unfencing it");
                Command::UnfenceBroker { broker_id }
            } else {
                continue;
            };
            if let Err(e) = handle.propose_local(command).await {
                tracing::warn!(broker = broker_id, error = %e, "liveness change not committed");
            }
        }
        super::decommission::drive(&handle).await;
        if now.duration_since(last_preferred) >= settings.preferred_leader_interval {
            last_preferred = now;
            restore_preferred_leaders(&handle).await;
        }
    }
}

/// A new controller has heard no heartbeats yet. Brokers whose cluster
/// listener refuses connections are down (their process is gone): fence
/// them at once instead of waiting out a whole session for them.
async fn fence_unreachable(handle: &ClusterHandle) {
    let image = handle.image();
    let me = handle.node_id() as i32;
    let probes = image
        .brokers
        .values()
        .filter(|b| b.broker_id != me && !b.fenced)
        .map(|b| async move {
            let probe: Result<super::RaftStatus, _> = handle
                .rpc()
                .get_json(
                    b.broker_id as u64,
                    &b.cluster_addr,
                    super::rpc::STATUS_PATH,
                    PROBE_TIMEOUT,
                )
                .await;
            (b.broker_id, probe)
        });
    for (broker_id, probe) in futures::future::join_all(probes).await {
        if let Err(super::rpc::RpcError::Unreachable { .. }) = probe {
            tracing::warn!(
                broker = broker_id,
                "broker unreachable at controller change; fencing it"
            );
            if let Err(e) = handle
                .propose_local(Command::FenceBroker { broker_id })
                .await
            {
                tracing::warn!(broker = broker_id, error = %e, "fencing not committed");
            }
        }
    }
}

/// Give partitions back to their first replica when it is live and in sync.
async fn restore_preferred_leaders(handle: &ClusterHandle) {
    let image = handle.image();
    for (name, topic) in &image.topics {
        for index in 0..topic.partitions.len() {
            let partition = index as i32;
            let Ok(elected) = election(&image, name, partition, ElectionType::Preferred) else {
                continue;
            };
            let leader = elected.leader;
            let command = elected.command(name, partition);
            match handle.propose(command, PROPOSE_TIMEOUT).await {
                Ok(CommandResponse::Applied) => {
                    tracing::info!(topic = %name, partition, leader, "preferred leader restored")
                }
                other => {
                    tracing::debug!(topic = %name, partition, result = ?other, "preferred leader not restored")
                }
            }
        }
    }
}

/// Kafka's election types (ElectLeaders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// The first replica of the assignment leads again, if it is live and
    /// in sync.
    Preferred,
    /// A partition without a live leader gets one: an in-sync replica if one
    /// is live, else any live replica (which may lose acknowledged records).
    Unclean,
}

/// Why an election was not held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElectionError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// The partition already has the leader the election would choose.
    #[error("the partition already has the leader this election would choose")]
    NotNeeded,
    #[error("preferred leader {0} is not live and in sync")]
    PreferredLeaderNotAvailable(i32),
    #[error("no live replica can lead")]
    EligibleLeadersNotAvailable,
    #[error("the election was not committed: {0}")]
    Unavailable(String),
}

/// What an election decided: the new leader and ISR, as a change of the
/// partition at `partition_epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elected {
    pub leader: i32,
    pub isr: Vec<i32>,
    /// The partition epoch the decision was made on (a later change of the
    /// partition makes the controller refuse it).
    pub partition_epoch: i32,
}

impl Elected {
    /// The controller command that commits the election.
    fn command(self, name: &str, partition: i32) -> Command {
        Command::UpdatePartitionLeadership {
            name: name.to_string(),
            partition,
            leader: self.leader,
            isr: self.isr,
            partition_epoch: self.partition_epoch,
        }
    }
}

/// The leadership change an election asks of the image, or why there is none.
pub fn election(
    image: &MetadataImage,
    name: &str,
    partition: i32,
    kind: ElectionType,
) -> Result<Elected, ElectionError> {
    let p = image
        .topics
        .get(name)
        .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
        .ok_or(ElectionError::UnknownTopicOrPartition)?;
    let change = |leader: i32, isr: Vec<i32>| Elected {
        leader,
        isr,
        partition_epoch: p.partition_epoch,
    };
    match kind {
        ElectionType::Preferred => {
            let preferred = *p
                .replicas
                .first()
                .ok_or(ElectionError::UnknownTopicOrPartition)?;
            if p.leader == preferred {
                return Err(ElectionError::NotNeeded);
            }
            if !image.is_live(preferred) || !p.isr.contains(&preferred) {
                return Err(ElectionError::PreferredLeaderNotAvailable(preferred));
            }
            Ok(change(preferred, p.isr.clone()))
        }
        ElectionType::Unclean => {
            if p.leader != NO_LEADER && image.is_live(p.leader) {
                return Err(ElectionError::NotNeeded);
            }
            if let Some(&in_sync) = p.isr.iter().find(|b| image.is_live(**b)) {
                return Ok(change(in_sync, p.isr.clone()));
            }
            let live = p.replicas.iter().find(|b| image.is_live(**b));
            let &leader = live.ok_or(ElectionError::EligibleLeadersNotAvailable)?;
            Ok(change(leader, vec![leader]))
        }
    }
}

/// How many times an election is decided again after the partition changed
/// under it (its proposal named a stale partition epoch).
const ELECTION_ATTEMPTS: u32 = 5;

/// Hold an election for one partition (ElectLeaders), from any node: decided
/// on this node's image, committed through the controller like its own
/// leadership changes (a change decided on a stale image is refused by its
/// partition epoch and decided again). Returns once this node's image has
/// the new leader.
pub async fn elect_leader(
    handle: &ClusterHandle,
    name: &str,
    partition: i32,
    kind: ElectionType,
) -> Result<(), ElectionError> {
    let mut applied = handle.subscribe();
    for _ in 0..ELECTION_ATTEMPTS {
        let elected = handle.read_image(|image| election(image, name, partition, kind))?;
        let leader = elected.leader;
        match handle
            .propose(elected.command(name, partition), PROPOSE_TIMEOUT)
            .await
        {
            Ok(CommandResponse::Applied) => {
                let led = |image: &MetadataImage| {
                    image
                        .topics
                        .get(name)
                        .and_then(|t| t.partitions.get(partition as usize))
                        .is_some_and(|p| p.leader == leader)
                };
                let wait = async {
                    while !handle.read_image(led) {
                        if applied.changed().await.is_err() {
                            break;
                        }
                    }
                };
                // Committed: this node applies the entry in a moment.
                let _ = tokio::time::timeout(PROPOSE_TIMEOUT, wait).await;
                return Ok(());
            }
            Ok(CommandResponse::Rejected(Rejection::StalePartitionEpoch { .. })) => {
                // This node's image lags the controller's: wait for the next
                // applied entry, then decide again.
                let _ = tokio::time::timeout(Duration::from_secs(1), applied.changed()).await;
            }
            Ok(CommandResponse::Rejected(Rejection::UnknownTopicOrPartition(_))) => {
                return Err(ElectionError::UnknownTopicOrPartition)
            }
            Ok(other) => return Err(ElectionError::Unavailable(format!("{other:?}"))),
            Err(e) => return Err(ElectionError::Unavailable(e.to_string())),
        }
    }
    Err(ElectionError::Unavailable(
        "the partition kept changing during the election".into(),
    ))
}

/// Shared by the listener (which records heartbeats) and the controller loop.
pub type SharedHeartbeats = Arc<Heartbeats>;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::image::tests::register;
    use super::*;

    /// Brokers 1-3 registered, and `orders` with partition 0 on [1, 2, 3].
    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.apply(&register(id));
        }
        image.apply(&Command::CreateTopic {
            name: "orders".into(),
            topic_id: uuid::Uuid::new_v4(),
            configs: BTreeMap::new(),
            assignments: vec![vec![1, 2, 3]],
        });
        image
    }

    fn leader(image: &MetadataImage) -> (i32, Vec<i32>) {
        let p = &image.topics["orders"].partitions[0];
        (p.leader, p.isr.clone())
    }

    #[test]
    fn a_preferred_election_waits_for_the_first_replica_to_be_live_and_in_sync() {
        let mut image = image();
        let preferred = ElectionType::Preferred;
        assert_eq!(
            election(&image, "orders", 0, preferred),
            Err(ElectionError::NotNeeded)
        );
        assert_eq!(
            election(&image, "orders", 1, preferred),
            Err(ElectionError::UnknownTopicOrPartition)
        );
        image.apply(&Command::FenceBroker { broker_id: 1 });
        assert_eq!(leader(&image), (2, vec![2, 3]));
        assert_eq!(
            election(&image, "orders", 0, preferred),
            Err(ElectionError::PreferredLeaderNotAvailable(1))
        );
        image.apply(&Command::UnfenceBroker { broker_id: 1 });
        // Live again but not yet in sync.
        assert_eq!(
            election(&image, "orders", 0, preferred),
            Err(ElectionError::PreferredLeaderNotAvailable(1))
        );
        let epoch = image.topics["orders"].partitions[0].partition_epoch;
        image.apply(&Command::UpdatePartitionLeadership {
            name: "orders".into(),
            partition: 0,
            leader: 2,
            isr: vec![2, 3, 1],
            partition_epoch: epoch,
        });
        let elected = election(&image, "orders", 0, preferred).expect("an election");
        let command = elected.command("orders", 0);
        assert_eq!(image.apply(&command), CommandResponse::Applied);
        assert_eq!(leader(&image), (1, vec![2, 3, 1]));
        // The same decision on the old image is refused: its epoch is stale.
        assert!(matches!(
            image.apply(&command),
            CommandResponse::Rejected(Rejection::StalePartitionEpoch { .. })
        ));
    }

    #[test]
    fn an_unclean_election_takes_a_live_replica_only_without_a_live_leader() {
        let mut image = image();
        let unclean = ElectionType::Unclean;
        assert_eq!(
            election(&image, "orders", 0, unclean),
            Err(ElectionError::NotNeeded)
        );
        // 2 and 3 fall out of sync, then the leader goes: no leader left.
        let epoch = image.topics["orders"].partitions[0].partition_epoch;
        image.apply(&Command::UpdatePartitionLeadership {
            name: "orders".into(),
            partition: 0,
            leader: 1,
            isr: vec![1],
            partition_epoch: epoch,
        });
        image.apply(&Command::FenceBroker { broker_id: 1 });
        assert_eq!(leader(&image), (NO_LEADER, vec![1]));
        let elected = election(&image, "orders", 0, unclean).expect("an election");
        assert_eq!((elected.leader, elected.isr.clone()), (2, vec![2]));
        assert_eq!(
            image.apply(&elected.command("orders", 0)),
            CommandResponse::Applied
        );
        assert_eq!(leader(&image), (2, vec![2]));
        // With every replica down there is no one to elect.
        let mut image = self::image();
        for id in 1..=3 {
            image.apply(&Command::FenceBroker { broker_id: id });
        }
        assert_eq!(
            election(&image, "orders", 0, unclean),
            Err(ElectionError::EligibleLeadersNotAvailable)
        );
    }
}
