//! The command side of the shop: create an order, cancel it, record a
//! payment, refund what was paid, or record a delivery step. Each command is checked against the read
//! model (`domain::validation`), turned into an event and produced with
//! acks=all; the answer says where the event went.
//!
//! Consistency of commands: commands on one order are serialised by a
//! per-order lock, and each first waits until the projector has applied every
//! event this node produced for that order's partitions (read-your-writes),
//! so the state it is validated against includes the previous command.
//! Commands for one order sent concurrently to *different* nodes of a
//! cluster are not serialised; the model stays deterministic regardless.
//!
//! Must never: write to the read model (only the projector does), or import
//! the workers or HTTP.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::domain::error::ApiError;
use super::domain::events::{
    DeliveryData, Event, EventBody, OrderCancelled, OrderCreated, PaymentData, PaymentStatus,
    DELIVERIES_TOPIC, ORDERS_TOPIC, PAYMENTS_TOPIC,
};
use super::domain::order::OrderRecord;
use super::domain::validation::{self, NewDelivery, NewOrder, NewPayment};
use super::kafka::KafkaLink;
use super::read_model::ReadModel;
use crate::client::partitioner::{murmur2, partition_for_key};

/// Number of per-order command locks (orders hash onto them).
const ORDER_LOCKS: usize = 256;
/// How long a command waits for the projector to catch up with this node's
/// previous writes before answering 503.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a payment's answer waits for the processor's outcome before it
/// says `pending`.
const PAYMENT_OUTCOME_WAIT: Duration = Duration::from_secs(5);

/// What a command answers with (202 Accepted).
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub(crate) event: Event,
    pub(crate) topic: &'static str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// For a payment request: the processor's decision (status, reason),
    /// once the read model holds it.
    pub(crate) outcome: Option<(PaymentStatus, Option<String>)>,
}

/// The command side: what every command needs, and nothing else.
pub(crate) struct Commands {
    /// Where events are produced.
    link: Arc<KafkaLink>,
    /// What commands are checked against, and the offsets they wait for.
    read_model: Arc<ReadModel>,
    /// Per-order command locks.
    order_locks: Vec<tokio::sync::Mutex<()>>,
}

fn short_id(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..16])
}

impl Commands {
    /// Commands producing through `link`, checked against `read_model`.
    pub(crate) fn new(link: Arc<KafkaLink>, read_model: Arc<ReadModel>) -> Self {
        Commands {
            link,
            read_model,
            order_locks: (0..ORDER_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    fn ready(&self) -> Result<&crate::client::Producer, ApiError> {
        self.link
            .producer()
            .ok_or_else(|| ApiError::unavailable("the shop is still connecting to Kafka"))
    }

    fn order_lock(&self, order_id: &str) -> &tokio::sync::Mutex<()> {
        let i = murmur2(order_id.as_bytes()) as u32 as usize;
        &self.order_locks[i % ORDER_LOCKS]
    }

    /// Produce `event` with acks=all and say where it went.
    async fn produce(&self, event: Event) -> Result<Accepted, ApiError> {
        let producer = self.ready()?;
        let topic = event.body.topic();
        let key = Bytes::from(event.order_id.clone().into_bytes());
        let value = Bytes::from(event.to_bytes());
        let written = async { producer.send(topic, Some(key), Some(value)).await?.await }
            .await
            .map_err(|e| ApiError::unavailable(format!("the log did not accept the event: {e}")))?;
        self.read_model
            .progress
            .note_produced(topic, written.partition, written.offset);
        crate::metrics::global().shop_event(event.body.type_name());
        Ok(Accepted {
            event,
            topic,
            partition: written.partition,
            offset: written.offset,
            outcome: None,
        })
    }

    /// Wait until the model holds every event this node produced for `order_id`.
    async fn wait_for_own_writes(&self, order_id: &str) -> Result<(), ApiError> {
        let Some(client) = self.link.client() else {
            return Ok(());
        };
        let partitions: Vec<(&str, i32)> = [ORDERS_TOPIC, PAYMENTS_TOPIC, DELIVERIES_TOPIC]
            .into_iter()
            .filter_map(|t| {
                let count = client.cached_topic(t)?.partition_count();
                (count > 0).then(|| (t, partition_for_key(order_id.as_bytes(), count)))
            })
            .collect();
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_TIMEOUT;
        if self
            .read_model
            .progress
            .wait_for_produced(&partitions, deadline)
            .await
        {
            Ok(())
        } else {
            Err(ApiError::unavailable(
                "the read model is behind the log; try again",
            ))
        }
    }

    /// Run a command on an existing order: lock it, wait for this node's
    /// earlier writes to be applied, check, then produce.
    async fn on_order(
        &self,
        order_id: &str,
        decide: impl FnOnce(&OrderRecord) -> Result<EventBody, ApiError>,
    ) -> Result<Accepted, ApiError> {
        self.on_order_then(order_id, decide, std::future::ready)
            .await
    }

    /// Like [`on_order`](Self::on_order), then `after` the produce, still
    /// under the order's lock.
    async fn on_order_then<F: std::future::Future<Output = Accepted>>(
        &self,
        order_id: &str,
        decide: impl FnOnce(&OrderRecord) -> Result<EventBody, ApiError>,
        after: impl FnOnce(Accepted) -> F,
    ) -> Result<Accepted, ApiError> {
        self.ready()?;
        let _serialised = self.order_lock(order_id).lock().await;
        self.wait_for_own_writes(order_id).await?;
        let order = self
            .read_model
            .current()
            .order(order_id)
            .await?
            .filter(|o| o.created.is_some())
            .ok_or_else(|| ApiError::order_not_found(order_id))?;
        let body = decide(&order)?;
        let accepted = self.produce(Event::new(order_id, body)).await?;
        Ok(after(accepted).await)
    }

    /// `OrderCreated` for a validated order.
    pub(crate) async fn create_order(&self, order: NewOrder) -> Result<Accepted, ApiError> {
        let order_id = short_id("ord");
        self.produce(Event::new(
            order_id,
            EventBody::OrderCreated(OrderCreated {
                customer: order.customer,
                items: order.items,
                currency: order.currency,
                total_cents: order.total_cents,
            }),
        ))
        .await
    }

    /// `OrderCancelled`, if the order is not paid yet.
    pub(crate) async fn cancel_order(
        &self,
        order_id: &str,
        reason: Option<String>,
    ) -> Result<Accepted, ApiError> {
        self.on_order(order_id, |order| {
            validation::check_cancel(order)?;
            Ok(EventBody::OrderCancelled(OrderCancelled { reason }))
        })
        .await
    }

    /// A payment, if the order's state allows it. A charge (`authorized`)
    /// becomes a `PaymentRequested` for the payment processor, which writes
    /// the outcome exactly once (`workers::payment_processor`); the answer
    /// waits a little for that outcome and says `pending` if it is not in
    /// the read model yet. A failed attempt or a refund is recorded directly.
    pub(crate) async fn add_payment(&self, payment: NewPayment) -> Result<Accepted, ApiError> {
        let order_id = payment.order_id.clone();
        let status = payment.status;
        let accepted = self
            .on_order_then(
                &order_id,
                |order| {
                    validation::check_payment(order, payment.status, payment.amount_cents)?;
                    let currency = order
                        .created
                        .as_ref()
                        .map(|c| c.currency.clone())
                        .unwrap_or_default();
                    let data = PaymentData {
                        payment_id: short_id("pay"),
                        amount_cents: payment.amount_cents,
                        currency,
                        method: payment.method,
                        reason: payment.reason,
                    };
                    Ok(match status {
                        PaymentStatus::Authorized => EventBody::PaymentRequested(data),
                        other => EventBody::from_payment(other, data),
                    })
                },
                |accepted| self.await_payment_outcome(accepted),
            )
            .await?;
        Ok(accepted)
    }

    /// For a `PaymentRequested`: wait (holding the order's lock, so a retry
    /// is validated against the outcome) until the read model holds the
    /// outcome of the payment, or [`PAYMENT_OUTCOME_WAIT`] passed. The
    /// model is read again each time it moves (the projector applied a
    /// batch, or on a shared model another node did), not on a timer.
    async fn await_payment_outcome(&self, mut accepted: Accepted) -> Accepted {
        let EventBody::PaymentRequested(request) = &accepted.event.body else {
            return accepted;
        };
        let deadline = tokio::time::Instant::now() + PAYMENT_OUTCOME_WAIT;
        loop {
            let moved = self.read_model.progress.next_move();
            let entry = self
                .read_model
                .current()
                .order(&accepted.event.order_id)
                .await
                .ok()
                .flatten()
                .and_then(|o| {
                    o.payments
                        .into_iter()
                        .find(|p| p.payment_id == request.payment_id)
                });
            if let Some(entry) = entry {
                accepted.outcome = Some((entry.status, entry.reason));
                return accepted;
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return accepted;
            }
        }
    }

    /// `PaymentRefunded` of everything paid, back to the method it was paid
    /// with, if the order may be refunded.
    pub(crate) async fn refund_order(
        &self,
        order_id: &str,
        reason: Option<String>,
    ) -> Result<Accepted, ApiError> {
        self.on_order(order_id, |order| {
            let paid = order.authorized_cents();
            validation::check_payment(order, PaymentStatus::Refunded, paid)?;
            let created = order.created.as_ref();
            Ok(EventBody::PaymentRefunded(PaymentData {
                payment_id: short_id("pay"),
                amount_cents: paid,
                currency: created.map(|c| c.currency.clone()).unwrap_or_default(),
                method: order.paid_method().unwrap_or_default().to_owned(),
                reason,
            }))
        })
        .await
    }

    /// A `Delivery*` step, if the delivery may move there.
    pub(crate) async fn add_delivery(&self, delivery: NewDelivery) -> Result<Accepted, ApiError> {
        let order_id = delivery.order_id.clone();
        self.on_order(&order_id, |order| {
            validation::check_delivery(order, delivery.status)?;
            Ok(EventBody::from_delivery(
                delivery.status,
                DeliveryData {
                    carrier: delivery
                        .carrier
                        .or_else(|| order.carrier().map(str::to_owned)),
                    location: delivery.location,
                },
            ))
        })
        .await
    }
}
