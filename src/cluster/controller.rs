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

use super::image::{Command, CommandResponse};
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
        for (index, p) in topic.partitions.iter().enumerate() {
            let Some(&preferred) = p.replicas.first() else {
                continue;
            };
            if p.leader == preferred || !image.is_live(preferred) || !p.isr.contains(&preferred) {
                continue;
            }
            let command = Command::UpdatePartitionLeadership {
                name: name.clone(),
                partition: index as i32,
                leader: preferred,
                isr: p.isr.clone(),
                partition_epoch: p.partition_epoch,
            };
            match handle.propose(command, PROPOSE_TIMEOUT).await {
                Ok(CommandResponse::Applied) => {
                    tracing::info!(topic = %name, partition = index, leader = preferred, "preferred leader restored")
                }
                other => {
                    tracing::debug!(topic = %name, partition = index, result = ?other, "preferred leader not restored")
                }
            }
        }
    }
}

/// Shared by the listener (which records heartbeats) and the controller loop.
pub type SharedHeartbeats = Arc<Heartbeats>;
