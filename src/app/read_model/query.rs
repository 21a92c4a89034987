//! The query side of the read model: the filtered, paginated listings of
//! orders, payments and deliveries behind `GET /api/...` and the WebSocket
//! snapshot, read from the indexes that `store` keeps.
//!
//! Must never: write to the tree, talk to Kafka, or shape JSON.

use crate::app::domain::events::{DeliveryStatus, PaymentStatus};
use crate::app::domain::order::{OrderRecord, PaymentEntry};
use crate::app::domain::status::OrderStatus;

use super::store::{
    decode, Model, ModelError, NotificationRow, PaymentRow, DELIVERY_BY_TIME, NOTIFICATION,
    ORDER_BY_TIME, PAYMENT,
};

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

impl Model {
    /// Created orders, newest first.
    pub fn orders(
        &self,
        filter: &OrderFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError> {
        let needle = filter.customer.as_ref().map(|c| c.to_lowercase());
        let unfiltered = filter.status.is_none() && needle.is_none();
        let mut items = Vec::new();
        let mut total = 0;
        for item in self.tree.scan_prefix([ORDER_BY_TIME]).rev() {
            let (key, _) = item?;
            if unfiltered && (total < offset || items.len() >= limit) {
                total += 1;
                continue;
            }
            let Some(order) = self.order(&String::from_utf8_lossy(&key[9..]))? else {
                continue;
            };
            let keep = filter.status.is_none_or(|s| order.status() == s)
                && needle.as_ref().is_none_or(|n| {
                    order
                        .created
                        .as_ref()
                        .is_some_and(|c| c.customer.to_lowercase().contains(n.as_str()))
                });
            if keep {
                if total >= offset && items.len() < limit {
                    items.push(order);
                }
                total += 1;
            }
        }
        Ok(Page { items, total })
    }

    /// Notifications, newest first, optionally of one severity.
    pub fn notifications(
        &self,
        severity: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<NotificationRow>, ModelError> {
        let mut items = Vec::new();
        let mut total = 0;
        for item in self.tree.scan_prefix([NOTIFICATION]).rev() {
            let (key, value) = item?;
            if severity.is_none() && (total < offset || items.len() >= limit) {
                total += 1;
                continue;
            }
            let row: NotificationRow = decode(&key, &value)?;
            if severity.is_none_or(|s| row.severity == s) {
                if total >= offset && items.len() < limit {
                    items.push(row);
                }
                total += 1;
            }
        }
        Ok(Page { items, total })
    }

    /// Payment records, newest first, as `(order id, entry)`.
    pub fn payments(
        &self,
        filter: &PaymentFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<(String, PaymentEntry)>, ModelError> {
        let unfiltered =
            filter.status.is_none() && filter.method.is_none() && filter.order_id.is_none();
        let mut items = Vec::new();
        let mut total = 0;
        for item in self.tree.scan_prefix([PAYMENT]).rev() {
            let (key, value) = item?;
            if unfiltered && (total < offset || items.len() >= limit) {
                total += 1;
                continue;
            }
            let row: PaymentRow = decode(&key, &value)?;
            let keep = filter.status.is_none_or(|s| row.entry.status == s)
                && filter
                    .method
                    .as_ref()
                    .is_none_or(|m| row.entry.method.eq_ignore_ascii_case(m))
                && filter.order_id.as_ref().is_none_or(|o| &row.order_id == o);
            if keep {
                if total >= offset && items.len() < limit {
                    items.push((row.order_id, row.entry));
                }
                total += 1;
            }
        }
        Ok(Page { items, total })
    }

    /// Orders that have a delivery, by latest step time, newest first.
    pub fn deliveries(
        &self,
        filter: &DeliveryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError> {
        let unfiltered = filter.status.is_none() && filter.carrier.is_none();
        let mut items = Vec::new();
        let mut total = 0;
        for item in self.tree.scan_prefix([DELIVERY_BY_TIME]).rev() {
            let (key, _) = item?;
            let at = <[u8; 8]>::try_from(&key[1..9]).map_or(0, u64::from_be_bytes) as i64;
            if filter.to.is_some_and(|to| at > to) {
                continue;
            }
            if filter.from.is_some_and(|from| at < from) {
                break;
            }
            if unfiltered && (total < offset || items.len() >= limit) {
                total += 1;
                continue;
            }
            let Some(order) = self.order(&String::from_utf8_lossy(&key[9..]))? else {
                continue;
            };
            let keep = filter
                .status
                .is_none_or(|s| order.delivery_status() == Some(s))
                && filter
                    .carrier
                    .as_ref()
                    .is_none_or(|c| order.carrier().is_some_and(|oc| oc.eq_ignore_ascii_case(c)));
            if keep {
                if total >= offset && items.len() < limit {
                    items.push(order);
                }
                total += 1;
            }
        }
        Ok(Page { items, total })
    }
}
