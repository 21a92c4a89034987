//! One order as the read model keeps it: its creation, cancellation,
//! payment records and delivery timeline, and the rules that derive its
//! status, paid amount, carrier and location from them.
//!
//! Owns the order's state and the pure derivations over it. Must never:
//! import anything above the domain, touch sled or Kafka, or shape JSON
//! (the HTTP views do that).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::analytics::Contribution;
use super::events::{DeliveryStatus, LineItem, PaymentStatus};
use super::status::OrderStatus;

/// The creation of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedInfo {
    pub event_id: Uuid,
    pub at: i64,
    pub customer: String,
    pub items: Vec<LineItem>,
    pub currency: String,
    pub total_cents: i64,
}

/// The cancellation of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelInfo {
    pub event_id: Uuid,
    pub at: i64,
    pub reason: Option<String>,
}

/// One payment record of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentEntry {
    pub event_id: Uuid,
    pub payment_id: String,
    pub status: PaymentStatus,
    pub amount_cents: i64,
    pub currency: String,
    pub method: String,
    pub reason: Option<String>,
    pub at: i64,
}

/// One step of an order's delivery timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStep {
    pub event_id: Uuid,
    pub status: DeliveryStatus,
    pub carrier: Option<String>,
    pub location: Option<String>,
    pub at: i64,
}

/// Everything known about one order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: String,
    /// None while only events of other topics were seen (possible during a
    /// replay, which may read `payments` ahead of `orders`).
    pub created: Option<CreatedInfo>,
    pub cancelled: Option<CancelInfo>,
    /// In `payments` topic order.
    pub payments: Vec<PaymentEntry>,
    /// In `deliveries` topic order.
    pub timeline: Vec<DeliveryStep>,
    /// Latest event timestamp.
    pub updated_at: i64,
}

impl OrderRecord {
    /// An order id of which nothing is known yet.
    pub(crate) fn new(order_id: &str) -> Self {
        OrderRecord {
            order_id: order_id.to_owned(),
            created: None,
            cancelled: None,
            payments: Vec::new(),
            timeline: Vec::new(),
            updated_at: 0,
        }
    }

    /// The order's status: cancelled, refunded, the latest delivery step,
    /// paid, payment failed or created, in that order of precedence.
    pub fn status(&self) -> OrderStatus {
        if self.cancelled.is_some() {
            return OrderStatus::Cancelled;
        }
        if self
            .payments
            .iter()
            .any(|p| p.status == PaymentStatus::Refunded)
        {
            return OrderStatus::Refunded;
        }
        if let Some(step) = self.timeline.last() {
            return OrderStatus::from_delivery(step.status);
        }
        if self.has_authorized_payment() {
            return OrderStatus::Paid;
        }
        match self.payments.last() {
            Some(p) if p.status == PaymentStatus::Failed => OrderStatus::PaymentFailed,
            _ => OrderStatus::Created,
        }
    }

    /// True once a payment was authorized.
    pub fn has_authorized_payment(&self) -> bool {
        self.payments
            .iter()
            .any(|p| p.status == PaymentStatus::Authorized)
    }

    /// Authorized minus refunded, in minor units.
    pub fn authorized_cents(&self) -> i64 {
        self.payments
            .iter()
            .map(|p| match p.status {
                PaymentStatus::Authorized => p.amount_cents,
                PaymentStatus::Refunded => -p.amount_cents,
                PaymentStatus::Failed => 0,
            })
            .sum()
    }

    /// What is still to be paid: the total less the net amount paid, in
    /// minor units (0 before the order's creation is known).
    pub fn due_cents(&self) -> i64 {
        self.created
            .as_ref()
            .map_or(0, |c| c.total_cents - self.authorized_cents())
    }

    /// The method of the latest authorized payment (a refund goes back there).
    pub fn paid_method(&self) -> Option<&str> {
        self.payments
            .iter()
            .rev()
            .find(|p| p.status == PaymentStatus::Authorized)
            .map(|p| p.method.as_str())
    }

    /// The status of the latest delivery step.
    pub fn delivery_status(&self) -> Option<DeliveryStatus> {
        self.timeline.last().map(|s| s.status)
    }

    /// The latest carrier named by a delivery step.
    pub fn carrier(&self) -> Option<&str> {
        self.timeline
            .iter()
            .rev()
            .find_map(|s| s.carrier.as_deref())
    }

    /// The latest location named by a delivery step.
    pub fn location(&self) -> Option<&str> {
        self.timeline
            .iter()
            .rev()
            .find_map(|s| s.location.as_deref())
    }

    /// True if the event `id` was already applied to this order.
    pub(crate) fn contains_event(&self, id: Uuid) -> bool {
        self.created.as_ref().is_some_and(|c| c.event_id == id)
            || self.cancelled.as_ref().is_some_and(|c| c.event_id == id)
            || self.payments.iter().any(|p| p.event_id == id)
            || self.timeline.iter().any(|s| s.event_id == id)
    }

    /// What this order adds to the aggregates' histograms.
    pub(crate) fn contribution(&self) -> Contribution {
        Contribution {
            order_status: self.created.as_ref().map(|_| self.status()),
            delivery_status: self.delivery_status(),
        }
    }
}
