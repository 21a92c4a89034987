//! The traffic generator behind `POST /api/simulator` (the dashboard's
//! "auto-generate" switch): realistic orders, then payments and deliveries
//! moving through their states, at `rate_per_sec` events per second.
//!
//! It goes through the same commands as the REST API (validation included),
//! so everything it writes is something a client could have written. It keeps
//! a pool of orders in flight; each tick it either places a new order or
//! moves an idle one on by one step:
//! created -> paid (85%) | payment failed (10%) | cancelled (5%);
//! payment failed -> paid (60%) | cancelled (40%);
//! paid -> scheduled -> shipped -> in transit (1-3 updates) -> out for delivery
//! -> delivered (94%) | failed (6%, then rescheduled); delivered -> refunded (3%).
//!
//! Must never: produce or read anything except through the command side, or
//! import the other workers or HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::app::commands::Commands;
use crate::app::domain::error::ApiError;
use crate::app::domain::events::{DeliveryStatus, LineItem, PaymentStatus};
use crate::app::domain::validation::{NewDelivery, NewOrder, NewPayment, PAYMENT_METHODS};

/// Highest accepted rate, in events per second.
pub(crate) const MAX_RATE: f64 = 5_000.0;
/// Orders kept in flight at once.
const MAX_IN_FLIGHT_ORDERS: usize = 2_000;
/// Commands running at once.
const MAX_CONCURRENT_COMMANDS: usize = 512;
/// Scheduling granularity.
const TICK: Duration = Duration::from_millis(10);

const CUSTOMERS: [&str; 16] = [
    "Ada Lovelace",
    "Alan Turing",
    "Grace Hopper",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Margaret Hamilton",
    "Ken Thompson",
    "Frances Allen",
    "John Backus",
    "Radia Perlman",
    "Leslie Lamport",
    "Katherine Johnson",
    "Niklaus Wirth",
    "Hedy Lamarr",
    "Dennis Ritchie",
];
const CATALOG: [(&str, i64); 12] = [
    ("KB-MECH-01", 8_999),
    ("MOUSE-ERGO", 4_950),
    ("USB-C-HUB", 3_499),
    ("MON-27-4K", 32_900),
    ("HEADSET-BT", 7_990),
    ("CABLE-HDMI", 1_299),
    ("SSD-1TB", 9_490),
    ("WEBCAM-HD", 5_900),
    ("DESK-LAMP", 2_999),
    ("CHAIR-MESH", 24_900),
    ("NOTEBOOK-A5", 650),
    ("MUG-KAFKA", 1_200),
];
const CARRIERS: [&str; 6] = ["DHL", "UPS", "FedEx", "PostNL", "GLS", "DPD"];
const CITIES: [&str; 10] = [
    "Amsterdam",
    "Berlin",
    "Paris",
    "Madrid",
    "Rome",
    "Vienna",
    "Prague",
    "Warsaw",
    "Brussels",
    "Copenhagen",
];
const FAILURES: [&str; 4] = [
    "insufficient funds",
    "card declined",
    "3-D Secure failed",
    "fraud suspected",
];

/// Where an order of the pool stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Created,
    PaymentFailed,
    Paid,
    Delivery(DeliveryStatus),
    /// In transit with this many location updates so far.
    Transit(u8),
}

#[derive(Debug)]
struct SimOrder {
    stage: Stage,
    total_cents: i64,
    carrier: &'static str,
    busy: bool,
}

/// Settings and counters shared with the HTTP handlers.
pub(crate) struct Control {
    settings: watch::Sender<Settings>,
    /// Commands accepted since the start.
    pub sent: AtomicU64,
    /// Commands refused or failed.
    pub errors: AtomicU64,
}

/// What `POST /api/simulator` sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub enabled: bool,
    pub rate_per_sec: f64,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            settings: watch::Sender::new(Settings {
                enabled: false,
                rate_per_sec: 5.0,
            }),
            sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }
}

impl Control {
    /// Change the settings.
    pub fn set(&self, settings: Settings) {
        self.settings.send_replace(settings);
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        *self.settings.borrow()
    }

    /// The `/api/simulator` document.
    pub fn status_json(&self) -> Value {
        let s = self.settings();
        json!({
            "enabled": s.enabled,
            "rate_per_sec": s.rate_per_sec,
            "events_sent": self.sent.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
        })
    }
}

/// Parse a `POST /api/simulator` body.
pub(crate) fn parse_settings(body: &Value, current: Settings) -> Result<Settings, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid_json("the body must be a JSON object"))?;
    let mut problems = std::collections::BTreeMap::new();
    let enabled = match obj.get("enabled") {
        Some(Value::Bool(b)) => *b,
        None => {
            problems.insert("enabled".to_owned(), "is required".to_owned());
            false
        }
        Some(_) => {
            problems.insert("enabled".to_owned(), "must be a boolean".to_owned());
            false
        }
    };
    let rate = match obj.get("rate_per_sec") {
        None | Some(Value::Null) => current.rate_per_sec,
        Some(v) => match v.as_f64() {
            Some(r) if r > 0.0 && r <= MAX_RATE => r,
            _ => {
                problems.insert(
                    "rate_per_sec".to_owned(),
                    format!("must be a number > 0 and <= {MAX_RATE}"),
                );
                0.0
            }
        },
    };
    if problems.is_empty() {
        Ok(Settings {
            enabled,
            rate_per_sec: rate,
        })
    } else {
        Err(ApiError::validation(problems))
    }
}

type Pool = Arc<Mutex<HashMap<String, SimOrder>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run the generator until `shutdown`; idle while disabled.
pub(crate) async fn run(
    commands: Arc<Commands>,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut settings = control.settings.subscribe();
    let pool: Pool = Arc::new(Mutex::new(HashMap::new()));
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_COMMANDS));
    loop {
        if !settings.borrow_and_update().enabled {
            tokio::select! {
                _ = settings.changed() => continue,
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        let mut budget = 0.0_f64;
        let mut last = Instant::now();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
                _ = settings.changed() => {
                    if !settings.borrow_and_update().enabled { break; }
                }
            }
            let now = Instant::now();
            let rate = settings.borrow().rate_per_sec;
            budget = (budget + rate * (now - last).as_secs_f64()).min(rate.max(1.0));
            last = now;
            while budget >= 1.0 {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    break;
                };
                budget -= 1.0;
                let commands = Arc::clone(&commands);
                let control = Arc::clone(&control);
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    step(&commands, &control, &pool).await;
                    drop(permit);
                });
            }
        }
    }
}

/// One event: a new order, or the next step of an idle one.
async fn step(commands: &Commands, control: &Control, pool: &Pool) {
    let pick = {
        let mut rng = rand::thread_rng();
        let mut orders = lock(pool);
        let idle: Vec<&String> = orders
            .iter()
            .filter(|(_, o)| !o.busy)
            .map(|(id, _)| id)
            .collect();
        let create = idle.is_empty() || (orders.len() < MAX_IN_FLIGHT_ORDERS && rng.gen_bool(0.3));
        if create {
            None
        } else {
            let id = (*idle.choose(&mut rng).unwrap_or(&idle[0])).clone();
            if let Some(o) = orders.get_mut(&id) {
                o.busy = true;
            }
            Some(id)
        }
    };
    let result = match pick {
        None => create(commands, pool).await,
        Some(id) => advance(commands, pool, &id).await,
    };
    match result {
        Ok(()) => {
            control.sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            control.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(code = e.code, message = %e.message, "simulated command refused");
        }
    }
}

async fn create(commands: &Commands, pool: &Pool) -> Result<(), ApiError> {
    let order = {
        let mut rng = rand::thread_rng();
        let lines = rng.gen_range(1..=4);
        let mut items: Vec<LineItem> = CATALOG
            .choose_multiple(&mut rng, lines)
            .map(|(sku, price)| LineItem {
                sku: (*sku).to_owned(),
                quantity: rng.gen_range(1..=3),
                price_cents: *price,
            })
            .collect();
        items.sort_by(|a, b| a.sku.cmp(&b.sku));
        let total_cents = items
            .iter()
            .map(|i| i64::from(i.quantity) * i.price_cents)
            .sum();
        NewOrder {
            customer: CUSTOMERS
                .choose(&mut rng)
                .copied()
                .unwrap_or("Ada")
                .to_owned(),
            items,
            currency: "EUR".to_owned(),
            total_cents,
        }
    };
    let total_cents = order.total_cents;
    let accepted = commands.create_order(order).await?;
    let carrier = CARRIERS
        .choose(&mut rand::thread_rng())
        .copied()
        .unwrap_or("DHL");
    lock(pool).insert(
        accepted.event.order_id,
        SimOrder {
            stage: Stage::Created,
            total_cents,
            carrier,
            busy: false,
        },
    );
    Ok(())
}

/// What to do next with an order, and the stage it reaches (None: leaves the pool).
enum Action {
    Pay(PaymentStatus, Option<Stage>),
    Cancel,
    Deliver(DeliveryStatus, Option<Stage>),
}

fn next_action(stage: Stage, rng: &mut impl Rng) -> Action {
    use DeliveryStatus as D;
    let roll: f64 = rng.gen();
    match stage {
        Stage::Created if roll < 0.85 => Action::Pay(PaymentStatus::Authorized, Some(Stage::Paid)),
        Stage::Created if roll < 0.95 => {
            Action::Pay(PaymentStatus::Failed, Some(Stage::PaymentFailed))
        }
        Stage::Created => Action::Cancel,
        Stage::PaymentFailed if roll < 0.6 => {
            Action::Pay(PaymentStatus::Authorized, Some(Stage::Paid))
        }
        Stage::PaymentFailed => Action::Cancel,
        Stage::Paid => Action::Deliver(D::Scheduled, Some(Stage::Delivery(D::Scheduled))),
        Stage::Delivery(D::Scheduled) => {
            Action::Deliver(D::Shipped, Some(Stage::Delivery(D::Shipped)))
        }
        Stage::Delivery(D::Shipped) => Action::Deliver(D::InTransit, Some(Stage::Transit(1))),
        Stage::Transit(n) if n < 3 && roll < 0.4 => {
            Action::Deliver(D::InTransit, Some(Stage::Transit(n + 1)))
        }
        Stage::Transit(_) => {
            Action::Deliver(D::OutForDelivery, Some(Stage::Delivery(D::OutForDelivery)))
        }
        Stage::Delivery(D::OutForDelivery) if roll < 0.94 => {
            Action::Deliver(D::Delivered, Some(Stage::Delivery(D::Delivered)))
        }
        Stage::Delivery(D::OutForDelivery) => {
            Action::Deliver(D::Failed, Some(Stage::Delivery(D::Failed)))
        }
        Stage::Delivery(D::Failed) => {
            Action::Deliver(D::Scheduled, Some(Stage::Delivery(D::Scheduled)))
        }
        // Whether a delivered order is refunded at all is decided by `advance`.
        Stage::Delivery(D::Delivered) => Action::Pay(PaymentStatus::Refunded, None),
        Stage::Delivery(D::InTransit) => Action::Deliver(D::InTransit, Some(Stage::Transit(1))),
    }
}

async fn advance(commands: &Commands, pool: &Pool, order_id: &str) -> Result<(), ApiError> {
    let Some((stage, total_cents, carrier)) = lock(pool)
        .get(order_id)
        .map(|o| (o.stage, o.total_cents, o.carrier))
    else {
        return Ok(());
    };
    if stage == Stage::Delivery(DeliveryStatus::Delivered) {
        // Most delivered orders are finished; a few are refunded.
        let refund = rand::thread_rng().gen_bool(0.03);
        if !refund {
            lock(pool).remove(order_id);
            return create(commands, pool).await;
        }
    }
    let (action, method, city, reason) = {
        let mut rng = rand::thread_rng();
        (
            next_action(stage, &mut rng),
            PAYMENT_METHODS.choose(&mut rng).copied().unwrap_or("card"),
            CITIES.choose(&mut rng).copied().unwrap_or("Amsterdam"),
            FAILURES.choose(&mut rng).copied().unwrap_or("declined"),
        )
    };
    let (result, next) = match action {
        Action::Pay(status, next) => (
            commands
                .add_payment(NewPayment {
                    order_id: order_id.to_owned(),
                    amount_cents: total_cents,
                    method: method.to_owned(),
                    status,
                    reason: (status == PaymentStatus::Failed).then(|| reason.to_owned()),
                })
                .await,
            next,
        ),
        Action::Cancel => (
            commands
                .cancel_order(order_id, Some("customer changed their mind".to_owned()))
                .await,
            None,
        ),
        Action::Deliver(status, next) => (
            commands
                .add_delivery(NewDelivery {
                    order_id: order_id.to_owned(),
                    status,
                    carrier: (status == DeliveryStatus::Scheduled).then(|| carrier.to_owned()),
                    location: Some(city.to_owned()),
                })
                .await,
            next,
        ),
    };
    let mut orders = lock(pool);
    match (&result, next) {
        (Ok(_), Some(stage)) => {
            if let Some(o) = orders.get_mut(order_id) {
                o.stage = stage;
                o.busy = false;
            }
        }
        (Err(e), _) if e.status.is_server_error() => {
            if let Some(o) = orders.get_mut(order_id) {
                o.busy = false;
            }
        }
        _ => {
            orders.remove(order_id);
        }
    }
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_a_next_step() {
        let mut rng = rand::thread_rng();
        let stages = [
            Stage::Created,
            Stage::PaymentFailed,
            Stage::Paid,
            Stage::Transit(1),
            Stage::Transit(3),
        ]
        .into_iter()
        .chain(DeliveryStatus::ALL.into_iter().map(Stage::Delivery));
        for stage in stages {
            for _ in 0..20 {
                let _ = next_action(stage, &mut rng);
            }
        }
    }

    #[test]
    fn settings_are_validated() {
        let current = Settings {
            enabled: false,
            rate_per_sec: 5.0,
        };
        let s = parse_settings(&json!({"enabled": true, "rate_per_sec": 50}), current).unwrap();
        assert_eq!(s.rate_per_sec, 50.0);
        assert!(s.enabled);
        assert_eq!(
            parse_settings(&json!({"enabled": true}), current)
                .unwrap()
                .rate_per_sec,
            5.0
        );
        assert!(parse_settings(&json!({"enabled": "yes"}), current).is_err());
        assert!(parse_settings(&json!({"enabled": true, "rate_per_sec": -1}), current).is_err());
        assert!(parse_settings(&json!({"enabled": true, "rate_per_sec": 1e9}), current).is_err());
    }
}
