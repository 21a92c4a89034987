//! The shop's events: what goes into the `orders`, `payments`, `deliveries`
//! and `notifications` topics, as JSON.
//!
//! Every event is one envelope (`schema_version`, `event_id`, `type`,
//! `timestamp`, `order_id`, `data`) keyed by its order id, so all events of one
//! order land on the same partition of each topic and stay in order. Money is
//! carried in integer minor units (`*_cents`) so that sums are exact.
//!
//! This module only describes and (de)serialises events; it never decides
//! whether an event is allowed (that is `validation`) or what it does to the
//! read model (that is `read_model`). Must never: import anything above the
//! domain.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope version written by this code. Readers accept 1..=this.
pub const SCHEMA_VERSION: u32 = 1;

/// Topic of `OrderCreated` and `OrderCancelled`.
pub const ORDERS_TOPIC: &str = "orders";
/// Topic of `PaymentAuthorized`, `PaymentFailed` and `PaymentRefunded`.
pub const PAYMENTS_TOPIC: &str = "payments";
/// Topic of `PaymentRequested`: what the payment processor decides on.
pub const PAYMENT_REQUESTS_TOPIC: &str = "payment-requests";
/// Topic of the `Delivery*` events.
pub const DELIVERIES_TOPIC: &str = "deliveries";
/// Topic of `Notification` events (written by the notifier).
pub const NOTIFICATIONS_TOPIC: &str = "notifications";

/// Every topic the shop writes, in the order they are created.
pub const SHOP_TOPICS: [&str; 4] = [
    ORDERS_TOPIC,
    PAYMENTS_TOPIC,
    DELIVERIES_TOPIC,
    NOTIFICATIONS_TOPIC,
];

/// One event as stored in a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Version of this envelope's layout.
    pub schema_version: u32,
    /// Unique id; consumers use it to recognise a duplicate.
    pub event_id: Uuid,
    /// When the event was accepted, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The order this event belongs to; also the record key.
    pub order_id: String,
    /// `type` and `data`.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The event type (`type`) and its payload (`data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventBody {
    OrderCreated(OrderCreated),
    OrderCancelled(OrderCancelled),
    PaymentAuthorized(PaymentData),
    PaymentFailed(PaymentData),
    PaymentRefunded(PaymentData),
    PaymentRequested(PaymentData),
    DeliveryScheduled(DeliveryData),
    DeliveryShipped(DeliveryData),
    DeliveryInTransit(DeliveryData),
    DeliveryOutForDelivery(DeliveryData),
    DeliveryDelivered(DeliveryData),
    DeliveryFailed(DeliveryData),
    Notification(NotificationData),
}

/// An order was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// Who placed it.
    pub customer: String,
    /// What was ordered.
    pub items: Vec<LineItem>,
    /// ISO 4217 code of every amount of this order.
    pub currency: String,
    /// Sum of quantity x price over the items, in minor units.
    pub total_cents: i64,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    /// Stock keeping unit.
    pub sku: String,
    /// How many, at least 1.
    pub quantity: u32,
    /// Unit price in minor units.
    pub price_cents: i64,
}

/// An order was cancelled before it was paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// Why, if the caller said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A payment attempt, its failure or its refund.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentData {
    /// Unique id of this payment record.
    pub payment_id: String,
    /// Amount in minor units.
    pub amount_cents: i64,
    /// The order's currency (carried so the event stands on its own).
    pub currency: String,
    /// `card`, `paypal`, `bank_transfer`, ...
    pub method: String,
    /// Why it failed, for `PaymentFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A step of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryData {
    /// The carrier, if known at this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// Where the parcel is, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Something a person should know about (written by the notifier).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationData {
    /// Derived from the source event, so a redelivered notification has the
    /// same id and readers can drop the duplicate.
    pub notification_id: String,
    /// `payment_failed`, `payment_refunded`, `delivered`, `delivery_failed`.
    pub kind: String,
    /// `info`, `success` or `warning`.
    pub severity: String,
    /// One human sentence.
    pub message: String,
    /// The event this notification is about.
    pub source_event_id: Uuid,
}

/// The states of a payment record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Authorized,
    Failed,
    Refunded,
}

impl PaymentStatus {
    /// Every status, in documentation order.
    pub const ALL: [PaymentStatus; 3] = [Self::Authorized, Self::Failed, Self::Refunded];

    /// The name used in JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }

    /// Parse a JSON/query name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The states of a delivery, in the order a parcel normally goes through them
/// (`Failed` aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Scheduled,
    Shipped,
    InTransit,
    OutForDelivery,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [DeliveryStatus; 6] = [
        Self::Scheduled,
        Self::Shipped,
        Self::InTransit,
        Self::OutForDelivery,
        Self::Delivered,
        Self::Failed,
    ];

    /// The name used in JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Shipped => "shipped",
            Self::InTransit => "in_transit",
            Self::OutForDelivery => "out_for_delivery",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parse a JSON/query name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl EventBody {
    /// The topic this kind of event belongs to.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::OrderCreated(_) | Self::OrderCancelled(_) => ORDERS_TOPIC,
            Self::PaymentAuthorized(_) | Self::PaymentFailed(_) | Self::PaymentRefunded(_) => {
                PAYMENTS_TOPIC
            }
            Self::Notification(_) => NOTIFICATIONS_TOPIC,
            Self::PaymentRequested(_) => PAYMENT_REQUESTS_TOPIC,
            _ => DELIVERIES_TOPIC,
        }
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::OrderCreated(_) => "OrderCreated",
            Self::OrderCancelled(_) => "OrderCancelled",
            Self::PaymentAuthorized(_) => "PaymentAuthorized",
            Self::PaymentFailed(_) => "PaymentFailed",
            Self::PaymentRefunded(_) => "PaymentRefunded",
            Self::PaymentRequested(_) => "PaymentRequested",
            Self::DeliveryScheduled(_) => "DeliveryScheduled",
            Self::DeliveryShipped(_) => "DeliveryShipped",
            Self::DeliveryInTransit(_) => "DeliveryInTransit",
            Self::DeliveryOutForDelivery(_) => "DeliveryOutForDelivery",
            Self::DeliveryDelivered(_) => "DeliveryDelivered",
            Self::DeliveryFailed(_) => "DeliveryFailed",
            Self::Notification(_) => "Notification",
        }
    }

    /// A payment event's status and data.
    pub fn payment(&self) -> Option<(PaymentStatus, &PaymentData)> {
        match self {
            Self::PaymentAuthorized(p) => Some((PaymentStatus::Authorized, p)),
            Self::PaymentFailed(p) => Some((PaymentStatus::Failed, p)),
            Self::PaymentRefunded(p) => Some((PaymentStatus::Refunded, p)),
            _ => None,
        }
    }

    /// A payment event of `status`.
    pub fn from_payment(status: PaymentStatus, data: PaymentData) -> Self {
        match status {
            PaymentStatus::Authorized => Self::PaymentAuthorized(data),
            PaymentStatus::Failed => Self::PaymentFailed(data),
            PaymentStatus::Refunded => Self::PaymentRefunded(data),
        }
    }

    /// A delivery event's status and data.
    pub fn delivery(&self) -> Option<(DeliveryStatus, &DeliveryData)> {
        match self {
            Self::DeliveryScheduled(d) => Some((DeliveryStatus::Scheduled, d)),
            Self::DeliveryShipped(d) => Some((DeliveryStatus::Shipped, d)),
            Self::DeliveryInTransit(d) => Some((DeliveryStatus::InTransit, d)),
            Self::DeliveryOutForDelivery(d) => Some((DeliveryStatus::OutForDelivery, d)),
            Self::DeliveryDelivered(d) => Some((DeliveryStatus::Delivered, d)),
            Self::DeliveryFailed(d) => Some((DeliveryStatus::Failed, d)),
            _ => None,
        }
    }

    /// A delivery event of `status`.
    pub fn from_delivery(status: DeliveryStatus, data: DeliveryData) -> Self {
        match status {
            DeliveryStatus::Scheduled => Self::DeliveryScheduled(data),
            DeliveryStatus::Shipped => Self::DeliveryShipped(data),
            DeliveryStatus::InTransit => Self::DeliveryInTransit(data),
            DeliveryStatus::OutForDelivery => Self::DeliveryOutForDelivery(data),
            DeliveryStatus::Delivered => Self::DeliveryDelivered(data),
            DeliveryStatus::Failed => Self::DeliveryFailed(data),
        }
    }
}

/// Why a record could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported schema version {0}")]
    SchemaVersion(u32),
    #[error("empty order id")]
    EmptyOrderId,
}

impl Event {
    /// A new event stamped now with a fresh id.
    pub fn new(order_id: impl Into<String>, body: EventBody) -> Self {
        Event {
            schema_version: SCHEMA_VERSION,
            event_id: Uuid::new_v4(),
            timestamp: super::time::now_ms(),
            order_id: order_id.into(),
            body,
        }
    }

    /// The JSON bytes stored as the record value.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse a record value; rejects schema versions this code does not know.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let event: Event = serde_json::from_slice(bytes)?;
        if event.schema_version == 0 || event.schema_version > SCHEMA_VERSION {
            return Err(DecodeError::SchemaVersion(event.schema_version));
        }
        if event.order_id.is_empty() {
            return Err(DecodeError::EmptyOrderId);
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_created() -> Event {
        Event::new(
            "ord-1",
            EventBody::OrderCreated(OrderCreated {
                customer: "Ada".into(),
                items: vec![LineItem {
                    sku: "SKU-1".into(),
                    quantity: 2,
                    price_cents: 1999,
                }],
                currency: "EUR".into(),
                total_cents: 3998,
            }),
        )
    }

    #[test]
    fn envelope_has_documented_fields() {
        let event = order_created();
        let json: serde_json::Value = serde_json::from_slice(&event.to_bytes()).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["type"], "OrderCreated");
        assert_eq!(json["order_id"], "ord-1");
        assert!(json["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        assert_eq!(json["event_id"].as_str().unwrap().len(), 36);
        assert_eq!(json["data"]["total_cents"], 3998);
        assert_eq!(json["data"]["items"][0]["quantity"], 2);
    }

    #[test]
    fn every_event_type_round_trips() {
        let payment = PaymentData {
            payment_id: "pay-1".into(),
            amount_cents: 10,
            currency: "EUR".into(),
            method: "card".into(),
            reason: None,
        };
        let delivery = DeliveryData {
            carrier: Some("DHL".into()),
            location: None,
        };
        let mut bodies = vec![
            order_created().body,
            EventBody::OrderCancelled(OrderCancelled { reason: None }),
            EventBody::Notification(NotificationData {
                notification_id: "ntf-1".into(),
                kind: "delivered".into(),
                severity: "success".into(),
                message: "m".into(),
                source_event_id: Uuid::new_v4(),
            }),
        ];
        for status in PaymentStatus::ALL {
            bodies.push(EventBody::from_payment(status, payment.clone()));
        }
        for status in DeliveryStatus::ALL {
            bodies.push(EventBody::from_delivery(status, delivery.clone()));
        }
        let mut names = std::collections::HashSet::new();
        for body in bodies {
            let event = Event::new("ord-9", body);
            let back = Event::from_bytes(&event.to_bytes()).unwrap();
            assert_eq!(back, event);
            names.insert(event.body.type_name());
        }
        assert_eq!(names.len(), 12, "each type has its own name");
    }

    #[test]
    fn status_helpers_agree_with_constructors() {
        for status in DeliveryStatus::ALL {
            let body = EventBody::from_delivery(status, DeliveryData::default_for_tests());
            assert_eq!(body.delivery().map(|(s, _)| s), Some(status));
            assert_eq!(body.topic(), DELIVERIES_TOPIC);
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn unknown_schema_versions_and_garbage_are_rejected() {
        let mut event = order_created();
        event.schema_version = 99;
        assert!(matches!(
            Event::from_bytes(&event.to_bytes()),
            Err(DecodeError::SchemaVersion(99))
        ));
        assert!(Event::from_bytes(b"not json").is_err());
        assert!(Event::from_bytes(br#"{"schema_version":1}"#).is_err());
    }

    impl DeliveryData {
        fn default_for_tests() -> Self {
            DeliveryData {
                carrier: None,
                location: None,
            }
        }
    }
}
