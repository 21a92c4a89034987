//! The query side of the read model: the filters and pages of the listings
//! of orders, payments and deliveries behind `GET /api/...` and the
//! WebSocket snapshot, and what each filter accepts (every store answers
//! the same listings; see `store::ModelStore`).
//!
//! Must never: read or write a store, talk to Kafka, or shape JSON.

use crate::app::domain::events::{DeliveryStatus, PaymentStatus};
use crate::app::domain::order::{OrderRecord, PaymentEntry};
use crate::app::domain::status::OrderStatus;

/// Filters of `GET /api/orders`.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    /// Case-insensitive substring of the customer name.
    pub customer: Option<String>,
}

/// Filters of `GET /api/payments`.
#[derive(Debug, Default, Clone)]
pub struct PaymentFilter {
    pub status: Option<PaymentStatus>,
    pub method: Option<String>,
    pub order_id: Option<String>,
}

/// Filters of `GET /api/deliveries`.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    /// Case-insensitive carrier name.
    pub carrier: Option<String>,
    /// Latest step at or after this time (ms).
    pub from: Option<i64>,
    /// Latest step at or before this time (ms).
    pub to: Option<i64>,
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many match the filter in all.
    pub total: usize,
}

impl OrderFilter {
    /// Whether `order` passes; `needle` is the customer filter in lower case.
    pub(crate) fn matches(&self, order: &OrderRecord, needle: Option<&str>) -> bool {
        self.status.is_none_or(|s| order.status() == s)
            && needle.is_none_or(|n| {
                order
                    .created
                    .as_ref()
                    .is_some_and(|c| c.customer.to_lowercase().contains(n))
            })
    }
}

impl PaymentFilter {
    /// Whether the payment `entry` of `order_id` passes.
    pub(crate) fn matches(&self, order_id: &str, entry: &PaymentEntry) -> bool {
        self.status.is_none_or(|s| entry.status == s)
            && self
                .method
                .as_ref()
                .is_none_or(|m| entry.method.eq_ignore_ascii_case(m))
            && self.order_id.as_ref().is_none_or(|o| o == order_id)
    }
}

impl DeliveryFilter {
    /// Whether `order` passes the status and carrier filters (the time
    /// range is the index's).
    pub(crate) fn matches(&self, order: &OrderRecord) -> bool {
        self.status
            .is_none_or(|s| order.delivery_status() == Some(s))
            && self
                .carrier
                .as_ref()
                .is_none_or(|c| order.carrier().is_some_and(|oc| oc.eq_ignore_ascii_case(c)))
    }
}
