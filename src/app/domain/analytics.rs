//! Analytics: the aggregates behind `GET /api/stats` and the dashboard's
//! charts: orders by status, revenue, per-minute order count and revenue,
//! payment success rate and the delivery status mix.
//!
//! The aggregates are kept by the projector in the same sled transaction as
//! the orders they summarise, so they are exactly as durable as the read model
//! (a crash can neither lose nor double-count an event) and a replay rebuilds
//! them. Every figure depends only on *which* events were applied, never on
//! the order topics were interleaved or on the wall clock of the consumer:
//! histograms are adjusted by the change of one order's derived status, and
//! per-minute buckets use the events' own timestamps.
//!
//! Owns the aggregates' arithmetic. Must never: import anything above the
//! domain, store anything (the read model does), or shape JSON (the HTTP
//! views do).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::events::{DeliveryStatus, PaymentStatus};
use super::status::OrderStatus;

/// Everything `/api/stats` reports except the per-minute series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    /// Orders created (one per distinct `OrderCreated`).
    pub orders_total: u64,
    /// Created orders by their current status.
    pub orders_by_status: BTreeMap<String, u64>,
    /// Authorized minus refunded amounts, in minor units, by currency
    /// (amounts of different currencies are never added together).
    pub revenue_by_currency: BTreeMap<String, i64>,
    /// Payment records by status.
    pub payments_by_status: BTreeMap<String, u64>,
    /// Payment records by method, then status (the dashboard's bar chart).
    #[serde(default)]
    pub payments_by_method_status: BTreeMap<String, BTreeMap<String, u64>>,
    /// Orders that have a delivery, by the status of its latest step.
    pub deliveries_by_status: BTreeMap<String, u64>,
    /// Delivery steps applied.
    pub delivery_events: u64,
    /// Events applied to the model, by topic.
    pub events_by_topic: BTreeMap<String, u64>,
    /// Events seen twice (same event id) and applied once.
    pub duplicate_events: u64,
    /// Records that were not shop events, or not valid on their topic.
    pub invalid_events: u64,
}

/// What one order adds to the histograms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contribution {
    /// Its status, once it has been created.
    pub order_status: Option<OrderStatus>,
    /// The status of its latest delivery step, if any.
    pub delivery_status: Option<DeliveryStatus>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, delta: i64) {
    let entry = map.entry(key.to_owned()).or_insert(0);
    *entry = entry.saturating_add_signed(delta);
    if *entry == 0 {
        map.remove(key);
    }
}

impl Aggregates {
    /// Move one order's contribution from `before` to `after`.
    pub fn replace(&mut self, before: Contribution, after: Contribution) {
        if before == after {
            return;
        }
        if let Some(s) = before.order_status {
            bump(&mut self.orders_by_status, s.as_str(), -1);
        }
        if let Some(s) = after.order_status {
            bump(&mut self.orders_by_status, s.as_str(), 1);
        }
        if before.order_status.is_none() && after.order_status.is_some() {
            self.orders_total += 1;
        }
        if let Some(s) = before.delivery_status {
            bump(&mut self.deliveries_by_status, s.as_str(), -1);
        }
        if let Some(s) = after.delivery_status {
            bump(&mut self.deliveries_by_status, s.as_str(), 1);
        }
    }

    /// Count a payment record; returns its effect on revenue, in minor units.
    pub fn record_payment(
        &mut self,
        status: PaymentStatus,
        amount_cents: i64,
        currency: &str,
        method: &str,
    ) -> i64 {
        bump(&mut self.payments_by_status, status.as_str(), 1);
        bump(
            self.payments_by_method_status
                .entry(method.to_owned())
                .or_default(),
            status.as_str(),
            1,
        );
        let delta = match status {
            PaymentStatus::Authorized => amount_cents,
            PaymentStatus::Refunded => -amount_cents,
            PaymentStatus::Failed => 0,
        };
        let by_currency = self
            .revenue_by_currency
            .entry(currency.to_owned())
            .or_insert(0);
        *by_currency = by_currency.saturating_add(delta);
        delta
    }

    /// Count an applied event of `topic`.
    pub fn record_event(&mut self, topic: &str) {
        *self.events_by_topic.entry(topic.to_owned()).or_insert(0) += 1;
    }

    /// Authorized / (authorized + failed), or None before any attempt.
    pub fn payment_success_rate(&self) -> Option<f64> {
        let ok = self
            .payments_by_status
            .get("authorized")
            .copied()
            .unwrap_or(0);
        let failed = self.payments_by_status.get("failed").copied().unwrap_or(0);
        (ok + failed > 0).then(|| ok as f64 / (ok + failed) as f64)
    }
}

/// One minute of the per-minute series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteBucket {
    /// Orders created in this minute.
    pub orders: u64,
    /// Revenue booked in this minute (authorized minus refunded), minor
    /// units, by currency.
    #[serde(default)]
    pub revenue_by_currency: BTreeMap<String, i64>,
}

impl MinuteBucket {
    /// Book `delta` minor units of `currency` in this minute.
    pub fn add_revenue(&mut self, currency: &str, delta: i64) {
        let entry = self
            .revenue_by_currency
            .entry(currency.to_owned())
            .or_insert(0);
        *entry = entry.saturating_add(delta);
    }

    /// Add another bucket of the same minute to this one.
    pub fn merge(&mut self, other: &MinuteBucket) {
        self.orders += other.orders;
        for (currency, delta) in &other.revenue_by_currency {
            self.add_revenue(currency, *delta);
        }
    }
}

/// The minute (ms since the epoch, floored) that contains `timestamp_ms`.
pub fn minute_of(timestamp_ms: i64) -> i64 {
    timestamp_ms.max(0) / 60_000 * 60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_contributions_keeps_histograms_exact() {
        let mut a = Aggregates::default();
        let created = Contribution {
            order_status: Some(OrderStatus::Created),
            delivery_status: None,
        };
        a.replace(Contribution::default(), created);
        let paid = Contribution {
            order_status: Some(OrderStatus::Paid),
            delivery_status: None,
        };
        a.replace(created, paid);
        let shipped = Contribution {
            order_status: Some(OrderStatus::Shipped),
            delivery_status: Some(DeliveryStatus::Shipped),
        };
        a.replace(paid, shipped);
        assert_eq!(a.orders_total, 1);
        assert_eq!(a.orders_by_status.len(), 1);
        assert_eq!(a.orders_by_status["shipped"], 1);
        assert_eq!(a.deliveries_by_status["shipped"], 1);
    }

    #[test]
    fn revenue_and_success_rate() {
        let mut a = Aggregates::default();
        assert_eq!(a.payment_success_rate(), None);
        a.record_payment(PaymentStatus::Authorized, 1000, "EUR", "card");
        a.record_payment(PaymentStatus::Failed, 500, "EUR", "card");
        a.record_payment(PaymentStatus::Authorized, 300, "USD", "paypal");
        a.record_payment(PaymentStatus::Refunded, 300, "USD", "paypal");
        assert_eq!(a.revenue_by_currency["EUR"], 1000);
        assert_eq!(a.revenue_by_currency["USD"], 0);
        assert_eq!(
            a.revenue_by_currency.len(),
            2,
            "never one sum of all currencies"
        );
        assert_eq!(a.payment_success_rate(), Some(2.0 / 3.0));
        assert_eq!(a.payments_by_method_status["card"]["failed"], 1);
        assert_eq!(a.payments_by_method_status["paypal"]["refunded"], 1);
    }

    #[test]
    fn minute_buckets_keep_currencies_apart() {
        let mut a = MinuteBucket::default();
        a.add_revenue("EUR", 1000);
        let mut b = MinuteBucket {
            orders: 2,
            ..MinuteBucket::default()
        };
        b.add_revenue("USD", 300);
        b.add_revenue("EUR", -200);
        a.merge(&b);
        assert_eq!(a.orders, 2);
        assert_eq!(a.revenue_by_currency["EUR"], 800);
        assert_eq!(a.revenue_by_currency["USD"], 300);
    }

    #[test]
    fn minutes_floor() {
        assert_eq!(minute_of(125_000), 120_000);
        assert_eq!(minute_of(-5), 0);
    }
}
