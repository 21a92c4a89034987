//! The status of an order as the shop reports it, *derived* from what
//! happened to the order (see `order`), never stored as an input.
//!
//! Owns the list of order statuses and their names in JSON and query strings.
//! Must never: import anything above the domain (read model, HTTP, workers),
//! or know about Kafka or sled.

use serde::{Deserialize, Serialize};

use super::events::DeliveryStatus;

/// The status of an order, derived from everything that happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    PaymentFailed,
    Paid,
    Cancelled,
    Refunded,
    Scheduled,
    Shipped,
    InTransit,
    OutForDelivery,
    Delivered,
    DeliveryFailed,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 11] = [
        Self::Created,
        Self::PaymentFailed,
        Self::Paid,
        Self::Cancelled,
        Self::Refunded,
        Self::Scheduled,
        Self::Shipped,
        Self::InTransit,
        Self::OutForDelivery,
        Self::Delivered,
        Self::DeliveryFailed,
    ];

    /// The name used in JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::PaymentFailed => "payment_failed",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
            Self::Scheduled => "scheduled",
            Self::Shipped => "shipped",
            Self::InTransit => "in_transit",
            Self::OutForDelivery => "out_for_delivery",
            Self::Delivered => "delivered",
            Self::DeliveryFailed => "delivery_failed",
        }
    }

    /// Parse a query-string name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    pub(crate) fn from_delivery(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Scheduled => Self::Scheduled,
            DeliveryStatus::Shipped => Self::Shipped,
            DeliveryStatus::InTransit => Self::InTransit,
            DeliveryStatus::OutForDelivery => Self::OutForDelivery,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Failed => Self::DeliveryFailed,
        }
    }
}
