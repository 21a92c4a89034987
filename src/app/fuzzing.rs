//! The shop's fuzz entry point (`crate::fuzzing::shop_commands` calls it):
//! request bodies of the commands, read as `http::api`'s `JsonBody` reads
//! them, validated as the handlers do (`domain::validation`,
//! `workers::simulator::parse_settings`), checked against one order as the
//! command side does, and, when accepted, applied to that order the way the
//! projector applies their events.
//!
//! Must never: be called by the shop; touch Kafka or the read model.
//! Locks: none.

use serde_json::Value;

use super::domain::error::ApiError;
use super::domain::events::{
    DeliveryData, Event, EventBody, OrderCancelled, OrderCreated, PaymentData,
};
use super::domain::order::{CancelInfo, CreatedInfo, DeliveryStep, OrderRecord, PaymentEntry};
use super::domain::status::OrderStatus;
use super::domain::validation::{self, CURRENCIES, MAX_ITEMS, MAX_QUANTITY, MAX_TEXT};
use super::workers::simulator::{self, Settings};

/// The order every command of one input is about.
const ORDER_ID: &str = "ord-fuzz";

/// Commands separated by 0xFF, each an endpoint byte and a body; see
/// `crate::fuzzing::shop_commands` for what is asserted.
pub(crate) fn shop_commands(data: &[u8]) {
    let mut order = OrderRecord::new(ORDER_ID);
    for command in data.split(|b| *b == 0xFF) {
        let Some((&endpoint, body)) = command.split_first() else {
            continue;
        };
        let body = match json_body(body) {
            Ok(body) => body,
            Err(e) => {
                assert_eq!(e.status.as_u16(), 400, "{e:?}");
                continue;
            }
        };
        let outcome = match endpoint % 5 {
            0 => create_order(&mut order, body.as_ref()),
            1 => add_payment(&mut order, body.as_ref()),
            2 => add_delivery(&mut order, body.as_ref()),
            3 => cancel(&mut order, body.as_ref()),
            _ => set_simulator(body.as_ref()),
        };
        if let Err(e) = outcome {
            assert!(
                matches!(e.status.as_u16(), 400 | 404 | 409 | 422),
                "a command answered {}: {e:?}",
                e.status
            );
        }
        check_order(&order);
    }
}

/// A body as `JsonBody` reads one: blank is no body, else JSON or 400.
fn json_body(bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| ApiError::invalid_json(format!("the body is not valid JSON: {e}")))
}

fn required(body: Option<&Value>) -> Result<&Value, ApiError> {
    body.ok_or_else(|| ApiError::invalid_json("a JSON body is required"))
}

/// The event reads back as it was written (as the projector reads it).
fn stored(event: Event) -> Event {
    let read = Event::from_bytes(&event.to_bytes())
        .unwrap_or_else(|e| panic!("an event does not read back: {e}: {event:?}"));
    assert_eq!(read, event, "an event reads back differently");
    read
}

fn text_ok(s: &str) -> bool {
    !s.is_empty()
        && s == s.trim()
        && s.chars().count() <= MAX_TEXT
        && !s.chars().any(char::is_control)
}

fn create_order(order: &mut OrderRecord, body: Option<&Value>) -> Result<(), ApiError> {
    let new = validation::parse_new_order(required(body)?)?;
    assert!(text_ok(&new.customer), "customer {:?}", new.customer);
    assert!(CURRENCIES.contains(&new.currency.as_str()));
    assert!((1..=MAX_ITEMS).contains(&new.items.len()));
    for item in &new.items {
        assert!(text_ok(&item.sku), "sku {:?}", item.sku);
        assert!((1..=MAX_QUANTITY).contains(&u64::from(item.quantity)));
        assert!((0..=100_000_000).contains(&item.price_cents));
    }
    let sum: i64 = new
        .items
        .iter()
        .map(|i| i64::from(i.quantity) * i.price_cents)
        .sum();
    assert_eq!(new.total_cents, sum);
    if order.created.is_some() {
        // A new order gets a fresh id: this one stays as it is.
        return Ok(());
    }
    let event = stored(Event::new(
        ORDER_ID,
        EventBody::OrderCreated(OrderCreated {
            customer: new.customer,
            items: new.items,
            currency: new.currency,
            total_cents: new.total_cents,
        }),
    ));
    if let EventBody::OrderCreated(c) = event.body {
        order.created = Some(CreatedInfo {
            event_id: event.event_id,
            at: event.timestamp,
            customer: c.customer,
            items: c.items,
            currency: c.currency,
            total_cents: c.total_cents,
        });
    }
    Ok(())
}

/// The order a command names, as the command side finds it (404 otherwise).
fn existing<'a>(order: &'a mut OrderRecord, id: &str) -> Result<&'a mut OrderRecord, ApiError> {
    assert!(validation::valid_order_id(id), "order id {id:?}");
    if id == order.order_id && order.created.is_some() {
        Ok(order)
    } else {
        Err(ApiError::order_not_found(id))
    }
}

fn add_payment(order: &mut OrderRecord, body: Option<&Value>) -> Result<(), ApiError> {
    let new = validation::parse_new_payment(required(body)?)?;
    assert!((0..=100_000_000).contains(&new.amount_cents));
    assert!(validation::PAYMENT_METHODS.contains(&new.method.as_str()));
    if let Some(reason) = &new.reason {
        assert!(text_ok(reason), "reason {reason:?}");
    }
    let order = existing(order, &new.order_id)?;
    let before = order.status();
    validation::check_payment(order, new.status, new.amount_cents)?;
    assert_ne!(
        before,
        OrderStatus::Cancelled,
        "a cancelled order took a payment"
    );
    let currency = order
        .created
        .as_ref()
        .map(|c| c.currency.clone())
        .unwrap_or_default();
    let event = stored(Event::new(
        ORDER_ID,
        EventBody::from_payment(
            new.status,
            PaymentData {
                payment_id: "pay-fuzz".to_owned(),
                amount_cents: new.amount_cents,
                currency,
                method: new.method,
                reason: new.reason,
            },
        ),
    ));
    if let Some((status, p)) = event.body.payment() {
        order.payments.push(PaymentEntry {
            event_id: event.event_id,
            payment_id: p.payment_id.clone(),
            status,
            amount_cents: p.amount_cents,
            currency: p.currency.clone(),
            method: p.method.clone(),
            reason: p.reason.clone(),
            at: event.timestamp,
        });
    }
    Ok(())
}

fn add_delivery(order: &mut OrderRecord, body: Option<&Value>) -> Result<(), ApiError> {
    let new = validation::parse_new_delivery(required(body)?)?;
    for text in [&new.carrier, &new.location].into_iter().flatten() {
        assert!(text_ok(text), "{text:?}");
    }
    let order = existing(order, &new.order_id)?;
    validation::check_delivery(order, new.status)?;
    assert!(
        order.has_authorized_payment(),
        "a delivery step for an order that was never paid"
    );
    let carrier = new.carrier.or_else(|| order.carrier().map(str::to_owned));
    let event = stored(Event::new(
        ORDER_ID,
        EventBody::from_delivery(
            new.status,
            DeliveryData {
                carrier,
                location: new.location,
            },
        ),
    ));
    if let Some((status, d)) = event.body.delivery() {
        order.timeline.push(DeliveryStep {
            event_id: event.event_id,
            status,
            carrier: d.carrier.clone(),
            location: d.location.clone(),
            at: event.timestamp,
        });
    }
    Ok(())
}

fn cancel(order: &mut OrderRecord, body: Option<&Value>) -> Result<(), ApiError> {
    let reason = validation::parse_cancel(body)?;
    if let Some(reason) = &reason {
        assert!(text_ok(reason), "reason {reason:?}");
    }
    let order = existing(order, ORDER_ID)?;
    validation::check_cancel(order)?;
    assert!(
        !order.has_authorized_payment(),
        "a paid order was cancelled"
    );
    let event = stored(Event::new(
        ORDER_ID,
        EventBody::OrderCancelled(OrderCancelled { reason }),
    ));
    if let EventBody::OrderCancelled(c) = event.body {
        order.cancelled = Some(CancelInfo {
            event_id: event.event_id,
            at: event.timestamp,
            reason: c.reason,
        });
    }
    Ok(())
}

fn set_simulator(body: Option<&Value>) -> Result<(), ApiError> {
    let current = Settings {
        enabled: false,
        rate_per_sec: 10.0,
    };
    let settings = simulator::parse_settings(required(body)?, current)?;
    assert!(
        settings.rate_per_sec > 0.0 && settings.rate_per_sec <= simulator::MAX_RATE,
        "{settings:?}"
    );
    Ok(())
}

/// What the rules promise of any order built from accepted commands.
fn check_order(order: &OrderRecord) {
    assert!(
        order.authorized_cents() >= 0,
        "refunds exceed what was paid: {order:?}"
    );
}
