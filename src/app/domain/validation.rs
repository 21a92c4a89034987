//! Checking what clients send before anything is written: the shape and
//! ranges of request bodies, and whether a change is possible in the order's
//! current state (as the read model knows it). Nothing invalid reaches the log.
//!
//! Bodies are parsed from `serde_json::Value` by hand, rather than by serde
//! derive, so that every problem is reported at once, per field, with its
//! JSON path (`items[2].price`).
//!
//! Must never: import anything above the domain; the order it checks against
//! is handed in by the caller (the command side reads it from the read model).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::ApiError;
use super::events::{DeliveryStatus, LineItem, PaymentStatus};
use super::order::OrderRecord;
use super::status::OrderStatus;

/// Currencies the shop accepts (ISO 4217).
pub const CURRENCIES: [&str; 10] = [
    "EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CAD", "AUD",
];
/// Payment methods the shop accepts.
pub const PAYMENT_METHODS: [&str; 6] = [
    "card",
    "paypal",
    "bank_transfer",
    "apple_pay",
    "google_pay",
    "gift_card",
];
/// Most lines of one order.
pub const MAX_ITEMS: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: u64 = 10_000;
/// Largest amount or unit price, in major units.
pub const MAX_AMOUNT: f64 = 1_000_000.0;
/// Longest free-text field (customer, sku, carrier, location, reason).
pub const MAX_TEXT: usize = 200;

/// A validated `POST /api/orders` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub customer: String,
    pub items: Vec<LineItem>,
    pub currency: String,
    pub total_cents: i64,
}

/// A validated `POST /api/payments` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    pub order_id: String,
    pub amount_cents: i64,
    pub method: String,
    pub status: PaymentStatus,
    pub reason: Option<String>,
}

/// A validated `POST /api/deliveries` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub order_id: String,
    pub status: DeliveryStatus,
    pub carrier: Option<String>,
    pub location: Option<String>,
}

/// Collects per-field problems.
#[derive(Default)]
struct Problems(BTreeMap<String, String>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.entry(path.into()).or_insert_with(|| message.into());
    }

    fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::invalid_json("the body must be a JSON object"))
}

/// A text field: trimmed, 1..=`MAX_TEXT` characters.
fn text(
    obj: &Map<String, Value>,
    name: &str,
    required: bool,
    problems: &mut Problems,
) -> Option<String> {
    match obj.get(name) {
        None | Some(Value::Null) => {
            if required {
                problems.add(name, "is required");
            }
            None
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                problems.add(name, "must not be empty");
                None
            } else if s.chars().count() > MAX_TEXT {
                problems.add(name, format!("must be at most {MAX_TEXT} characters"));
                None
            } else if s.chars().any(char::is_control) {
                problems.add(name, "must not contain control characters");
                None
            } else {
                Some(s.to_owned())
            }
        }
        Some(_) => {
            problems.add(name, "must be a string");
            None
        }
    }
}

/// An amount in major units with at most two decimals, as minor units.
fn amount_cents(value: &Value) -> Result<i64, String> {
    let Some(number) = value.as_f64().filter(|_| value.is_number()) else {
        return Err("must be a number".to_owned());
    };
    if !number.is_finite() || number < 0.0 {
        return Err("must be a number >= 0".to_owned());
    }
    if number > MAX_AMOUNT {
        return Err(format!("must be at most {MAX_AMOUNT}"));
    }
    let cents = (number * 100.0).round();
    if (number * 100.0 - cents).abs() > 1e-6 {
        return Err("must have at most two decimal places".to_owned());
    }
    Ok(cents as i64)
}

/// An order id from a body or a path: 1..=64 of `[A-Za-z0-9_-]`.
pub fn valid_order_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn order_id(obj: &Map<String, Value>, problems: &mut Problems) -> Option<String> {
    match obj.get("order_id") {
        None | Some(Value::Null) => {
            problems.add("order_id", "is required");
            None
        }
        Some(Value::String(s)) if valid_order_id(s) => Some(s.clone()),
        Some(Value::String(_)) => {
            problems.add("order_id", "must be 1-64 letters, digits, '-' or '_'");
            None
        }
        Some(_) => {
            problems.add("order_id", "must be a string");
            None
        }
    }
}

/// Validate a `POST /api/orders` body.
pub fn parse_new_order(body: &Value) -> Result<NewOrder, ApiError> {
    let obj = object(body)?;
    let mut problems = Problems::default();
    let customer = text(obj, "customer", true, &mut problems);
    let currency = match obj.get("currency") {
        None | Some(Value::Null) => Some("EUR".to_owned()),
        Some(Value::String(c)) if CURRENCIES.contains(&c.as_str()) => Some(c.clone()),
        Some(Value::String(_)) => {
            problems.add(
                "currency",
                format!("must be one of {}", CURRENCIES.join(", ")),
            );
            None
        }
        Some(_) => {
            problems.add("currency", "must be a string");
            None
        }
    };
    let mut items = Vec::new();
    match obj.get("items") {
        None | Some(Value::Null) => problems.add("items", "is required"),
        Some(Value::Array(list)) if list.is_empty() => {
            problems.add("items", "must hold at least one item")
        }
        Some(Value::Array(list)) if list.len() > MAX_ITEMS => {
            problems.add("items", format!("must hold at most {MAX_ITEMS} items"))
        }
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let path = |f: &str| format!("items[{i}].{f}");
                let Some(item) = item.as_object() else {
                    problems.add(format!("items[{i}]"), "must be an object");
                    continue;
                };
                let mut item_problems = Problems::default();
                let sku = text(item, "sku", true, &mut item_problems);
                for (field, message) in item_problems.0 {
                    problems.add(path(&field), message);
                }
                let quantity = match item.get("quantity") {
                    None | Some(Value::Null) => {
                        problems.add(path("quantity"), "is required");
                        None
                    }
                    Some(q) => match q.as_u64() {
                        Some(q) if (1..=MAX_QUANTITY).contains(&q) => Some(q as u32),
                        _ => {
                            problems.add(
                                path("quantity"),
                                format!("must be an integer from 1 to {MAX_QUANTITY}"),
                            );
                            None
                        }
                    },
                };
                let price = match item.get("price") {
                    None | Some(Value::Null) => {
                        problems.add(path("price"), "is required");
                        None
                    }
                    Some(p) => match amount_cents(p) {
                        Ok(c) => Some(c),
                        Err(m) => {
                            problems.add(path("price"), m);
                            None
                        }
                    },
                };
                if let (Some(sku), Some(quantity), Some(price_cents)) = (sku, quantity, price) {
                    items.push(LineItem {
                        sku,
                        quantity,
                        price_cents,
                    });
                }
            }
        }
        Some(_) => problems.add("items", "must be an array"),
    }
    problems.finish(|| {
        let total_cents = items
            .iter()
            .map(|i| i64::from(i.quantity) * i.price_cents)
            .sum();
        NewOrder {
            customer: customer.unwrap_or_default(),
            items,
            currency: currency.unwrap_or_default(),
            total_cents,
        }
    })
}

/// Validate a `POST /api/payments` body.
pub fn parse_new_payment(body: &Value) -> Result<NewPayment, ApiError> {
    let obj = object(body)?;
    let mut problems = Problems::default();
    let order_id = order_id(obj, &mut problems);
    let amount = match obj.get("amount") {
        None | Some(Value::Null) => {
            problems.add("amount", "is required");
            None
        }
        Some(a) => match amount_cents(a) {
            Ok(c) => Some(c),
            Err(m) => {
                problems.add("amount", m);
                None
            }
        },
    };
    let method = match obj.get("method") {
        None | Some(Value::Null) => {
            problems.add("method", "is required");
            None
        }
        Some(Value::String(m)) if PAYMENT_METHODS.contains(&m.as_str()) => Some(m.clone()),
        Some(Value::String(_)) => {
            problems.add(
                "method",
                format!("must be one of {}", PAYMENT_METHODS.join(", ")),
            );
            None
        }
        Some(_) => {
            problems.add("method", "must be a string");
            None
        }
    };
    let status = match obj.get("status") {
        None | Some(Value::Null) => Some(PaymentStatus::Authorized),
        Some(Value::String(s)) => PaymentStatus::parse(s).or_else(|| {
            problems.add("status", "must be one of authorized, failed, refunded");
            None
        }),
        Some(_) => {
            problems.add("status", "must be a string");
            None
        }
    };
    let reason = text(obj, "reason", false, &mut problems);
    problems.finish(|| NewPayment {
        order_id: order_id.unwrap_or_default(),
        amount_cents: amount.unwrap_or_default(),
        method: method.unwrap_or_default(),
        status: status.unwrap_or(PaymentStatus::Authorized),
        reason,
    })
}

/// Validate a `POST /api/deliveries` body.
pub fn parse_new_delivery(body: &Value) -> Result<NewDelivery, ApiError> {
    let obj = object(body)?;
    let mut problems = Problems::default();
    let order_id = order_id(obj, &mut problems);
    let status = match obj.get("status") {
        None | Some(Value::Null) => {
            problems.add("status", "is required");
            None
        }
        Some(Value::String(s)) => DeliveryStatus::parse(s).or_else(|| {
            problems.add(
                "status",
                "must be one of scheduled, shipped, in_transit, out_for_delivery, delivered, failed",
            );
            None
        }),
        Some(_) => {
            problems.add("status", "must be a string");
            None
        }
    };
    let carrier = text(obj, "carrier", false, &mut problems);
    let location = text(obj, "location", false, &mut problems);
    problems.finish(|| NewDelivery {
        order_id: order_id.unwrap_or_default(),
        status: status.unwrap_or(DeliveryStatus::Scheduled),
        carrier,
        location,
    })
}

/// Validate an optional `POST /api/orders/{id}/cancel` or `.../refund`
/// body: `{"reason"?}`.
pub fn parse_cancel(body: Option<&Value>) -> Result<Option<String>, ApiError> {
    let Some(body) = body else {
        return Ok(None);
    };
    let obj = object(body)?;
    let mut problems = Problems::default();
    let reason = text(obj, "reason", false, &mut problems);
    problems.finish(|| reason)
}

fn describe(order: &OrderRecord) -> String {
    format!("order {} is {}", order.order_id, order.status().as_str())
}

/// May `order` be cancelled? Only before it is paid.
pub fn check_cancel(order: &OrderRecord) -> Result<(), ApiError> {
    match order.status() {
        OrderStatus::Created | OrderStatus::PaymentFailed => Ok(()),
        _ => Err(ApiError::conflict(format!(
            "{}; only unpaid orders can be cancelled",
            describe(order)
        ))),
    }
}

/// May a payment record of `status` and `amount_cents` be added to `order`?
///
/// A payment (authorized or failed attempt) must be for exactly what is
/// still due on the order, and a refund must return exactly what was paid:
/// anything else is refused with `amount_mismatch`, which names the amount
/// expected. The order's state is checked first (a paid order answers
/// "already paid" whatever the amount).
pub fn check_payment(
    order: &OrderRecord,
    status: PaymentStatus,
    amount_cents: i64,
) -> Result<(), ApiError> {
    let current = order.status();
    let currency = order.created.as_ref().map_or("", |c| c.currency.as_str());
    match status {
        PaymentStatus::Authorized | PaymentStatus::Failed => match current {
            OrderStatus::Created | OrderStatus::PaymentFailed => {
                let due = order.due_cents();
                exactly(
                    amount_cents,
                    due,
                    "amount_due",
                    || {
                        format!(
                        "order {} has {} {currency} due; a payment of {} {currency} does not match it",
                        order.order_id,
                        decimal(due),
                        decimal(amount_cents),
                    )
                    },
                    currency,
                )
            }
            OrderStatus::Cancelled | OrderStatus::Refunded => Err(ApiError::conflict(format!(
                "{}; it cannot be paid",
                describe(order)
            ))),
            _ => Err(ApiError::conflict(format!(
                "{}; it is already paid",
                describe(order)
            ))),
        },
        PaymentStatus::Refunded => match current {
            OrderStatus::Paid
            | OrderStatus::Scheduled
            | OrderStatus::Delivered
            | OrderStatus::DeliveryFailed => {
                let paid = order.authorized_cents();
                exactly(
                    amount_cents,
                    paid,
                    "amount_refundable",
                    || {
                        format!(
                        "order {} was paid {} {currency}; a refund returns exactly that, not {} {currency}",
                        order.order_id,
                        decimal(paid),
                        decimal(amount_cents),
                    )
                    },
                    currency,
                )
            }
            _ => Err(ApiError::conflict(format!(
                "{}; only paid orders that are not on their way can be refunded",
                describe(order)
            ))),
        },
    }
}

/// `amount_cents` must be `expected_cents`; otherwise `amount_mismatch`
/// naming the expected amount as `what`.
fn exactly(
    amount_cents: i64,
    expected_cents: i64,
    what: &str,
    message: impl FnOnce() -> String,
    currency: &str,
) -> Result<(), ApiError> {
    if amount_cents == expected_cents {
        Ok(())
    } else {
        Err(ApiError::amount_mismatch(
            message(),
            what,
            expected_cents,
            currency,
        ))
    }
}

/// Minor units as a decimal with two places, for messages.
fn decimal(cents: i64) -> String {
    format!("{:.2}", cents as f64 / 100.0)
}

/// May the delivery of `order` move to `next`?
///
/// A delivery starts `scheduled` (once the order is paid), then only moves
/// forward (`shipped`, `in_transit`, repeated `in_transit` updates,
/// `out_for_delivery`, `delivered`); `failed` may happen at any step before
/// `delivered`, after which it may be `scheduled` again. Cancelled or refunded
/// orders are not delivered.
pub fn check_delivery(order: &OrderRecord, next: DeliveryStatus) -> Result<(), ApiError> {
    let current = order.status();
    if matches!(current, OrderStatus::Cancelled | OrderStatus::Refunded) {
        return Err(ApiError::conflict(format!(
            "{}; it cannot be delivered",
            describe(order)
        )));
    }
    if !order.has_authorized_payment() {
        return Err(ApiError::conflict(format!(
            "{}; it must be paid before it is delivered",
            describe(order)
        )));
    }
    use DeliveryStatus as D;
    let allowed = match order.delivery_status() {
        None | Some(D::Failed) => next == D::Scheduled,
        Some(D::Delivered) => false,
        Some(cur) => {
            next == D::Failed
                || (next != D::Scheduled
                    && (next > cur || next == D::InTransit && cur == D::InTransit))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::conflict(format!(
            "order {}: a delivery cannot go from {} to {}",
            order.order_id,
            order.delivery_status().map_or("none", D::as_str),
            next.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::domain::order::{CreatedInfo, DeliveryStep, PaymentEntry};
    use serde_json::json;
    use uuid::Uuid;

    fn fields(e: ApiError) -> Vec<String> {
        assert_eq!(e.status.as_u16(), 422, "{e:?}");
        e.fields.unwrap().into_keys().collect()
    }

    #[test]
    fn a_good_order_is_accepted_with_exact_totals() {
        let order = parse_new_order(&json!({
            "customer": " Ada ",
            "items": [{"sku": "A", "quantity": 3, "price": 19.99}, {"sku": "B", "quantity": 1, "price": 0}],
            "currency": "USD"
        }))
        .unwrap();
        assert_eq!(order.customer, "Ada");
        assert_eq!(order.total_cents, 5997);
        assert_eq!(order.items[0].price_cents, 1999);
        let default_currency = parse_new_order(
            &json!({"customer": "x", "items": [{"sku": "A", "quantity": 1, "price": 1}]}),
        )
        .unwrap();
        assert_eq!(default_currency.currency, "EUR");
    }

    #[test]
    fn every_bad_order_field_is_reported() {
        let e = parse_new_order(&json!({
            "customer": 5,
            "items": [{"sku": "", "quantity": 0, "price": -1}, "x", {"quantity": 1.5, "price": 1.001}],
            "currency": "XXX"
        }))
        .unwrap_err();
        let f = fields(e);
        for expected in [
            "customer",
            "currency",
            "items[0].sku",
            "items[0].quantity",
            "items[0].price",
            "items[1]",
            "items[2].sku",
            "items[2].quantity",
            "items[2].price",
        ] {
            assert!(
                f.contains(&expected.to_owned()),
                "{expected} missing from {f:?}"
            );
        }
        assert_eq!(
            fields(parse_new_order(&json!({})).unwrap_err()),
            ["customer", "items"]
        );
        assert_eq!(
            parse_new_order(&json!([1])).unwrap_err().status.as_u16(),
            400
        );
        assert_eq!(
            fields(parse_new_order(&json!({"customer": "a", "items": []})).unwrap_err()),
            ["items"]
        );
    }

    #[test]
    fn bad_payments_and_deliveries_are_reported() {
        let f = fields(
            parse_new_payment(
                &json!({"order_id": "a b", "amount": -5, "method": "gold", "status": "maybe"}),
            )
            .unwrap_err(),
        );
        assert_eq!(f, ["amount", "method", "order_id", "status"]);
        let f = fields(parse_new_payment(&json!({"amount": "5"})).unwrap_err());
        assert_eq!(f, ["amount", "method", "order_id"]);
        let p = parse_new_payment(&json!({"order_id": "o-1", "amount": 10.5, "method": "card"}))
            .unwrap();
        assert_eq!(p.status, PaymentStatus::Authorized);
        assert_eq!(p.amount_cents, 1050);
        let f = fields(
            parse_new_delivery(&json!({"order_id": "o", "status": "lost", "carrier": 1}))
                .unwrap_err(),
        );
        assert_eq!(f, ["carrier", "status"]);
    }

    fn order() -> OrderRecord {
        OrderRecord {
            order_id: "o".into(),
            created: Some(CreatedInfo {
                event_id: Uuid::new_v4(),
                at: 1,
                customer: "c".into(),
                items: vec![],
                currency: "EUR".into(),
                total_cents: 1000,
            }),
            cancelled: None,
            payments: vec![],
            timeline: vec![],
            updated_at: 1,
        }
    }

    fn pay(o: &mut OrderRecord, status: PaymentStatus) {
        o.payments.push(PaymentEntry {
            event_id: Uuid::new_v4(),
            payment_id: "p".into(),
            status,
            amount_cents: 1000,
            currency: "EUR".into(),
            method: "card".into(),
            reason: None,
            at: 2,
        });
    }

    fn step(o: &mut OrderRecord, status: DeliveryStatus) {
        o.timeline.push(DeliveryStep {
            event_id: Uuid::new_v4(),
            status,
            carrier: None,
            location: None,
            at: 3,
        });
    }

    #[test]
    fn unpaid_orders_can_be_cancelled_but_not_delivered() {
        let mut o = order();
        assert!(check_delivery(&o, DeliveryStatus::Scheduled).is_err());
        assert!(check_cancel(&o).is_ok());
        pay(&mut o, PaymentStatus::Failed);
        assert!(check_cancel(&o).is_ok());
        assert!(check_payment(&o, PaymentStatus::Authorized, 1000).is_ok());
        for wrong in [0, 300, 999, 1001] {
            let e = check_payment(&o, PaymentStatus::Authorized, wrong).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (422, "amount_mismatch"));
            let body = e.body();
            assert_eq!(body["error"]["amount_due"], 10.0);
            assert_eq!(body["error"]["amount_due_cents"], 1000);
            assert_eq!(body["error"]["currency"], "EUR");
        }
        o.cancelled = Some(crate::app::domain::order::CancelInfo {
            event_id: Uuid::new_v4(),
            at: 4,
            reason: None,
        });
        let e = check_delivery(&o, DeliveryStatus::Scheduled).unwrap_err();
        assert_eq!(e.status.as_u16(), 409);
        assert!(check_payment(&o, PaymentStatus::Authorized, 1000).is_err());
        assert!(check_cancel(&o).is_err());
    }

    #[test]
    fn deliveries_only_move_forward() {
        use DeliveryStatus as D;
        let mut o = order();
        pay(&mut o, PaymentStatus::Authorized);
        assert!(
            check_cancel(&o).is_err(),
            "paid orders are refunded, not cancelled"
        );
        assert!(check_payment(&o, PaymentStatus::Authorized, 1).is_err());
        assert!(
            check_delivery(&o, D::Shipped).is_err(),
            "must be scheduled first"
        );
        assert!(check_delivery(&o, D::Scheduled).is_ok());
        step(&mut o, D::Scheduled);
        assert!(check_delivery(&o, D::Scheduled).is_err());
        assert!(check_delivery(&o, D::Shipped).is_ok());
        step(&mut o, D::Shipped);
        step(&mut o, D::InTransit);
        assert!(check_delivery(&o, D::InTransit).is_ok(), "location updates");
        assert!(check_delivery(&o, D::Shipped).is_err(), "no going back");
        assert!(
            check_payment(&o, PaymentStatus::Refunded, 1000).is_err(),
            "on its way"
        );
        assert!(check_delivery(&o, D::Failed).is_ok());
        step(&mut o, D::Failed);
        assert!(
            check_delivery(&o, D::Scheduled).is_ok(),
            "retry after failure"
        );
        assert!(check_delivery(&o, D::Delivered).is_err());
        step(&mut o, D::Scheduled);
        step(&mut o, D::Delivered);
        for next in D::ALL {
            assert!(check_delivery(&o, next).is_err(), "delivered is final");
        }
        for wrong in [2000, 999, 1] {
            let e = check_payment(&o, PaymentStatus::Refunded, wrong).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (422, "amount_mismatch"));
            assert_eq!(e.body()["error"]["amount_refundable_cents"], 1000);
        }
        assert!(check_payment(&o, PaymentStatus::Refunded, 1000).is_ok());
        pay(&mut o, PaymentStatus::Refunded);
        assert_eq!(o.status(), OrderStatus::Refunded);
        assert!(check_payment(&o, PaymentStatus::Refunded, 1).is_err());
    }

    #[test]
    fn order_ids_are_restricted() {
        assert!(valid_order_id("ord-0123abcd_X"));
        assert!(!valid_order_id(""));
        assert!(!valid_order_id("a/b"));
        assert!(!valid_order_id(&"x".repeat(65)));
    }
}
