//! The payment processor: reads `PaymentRequested` from `payment-requests`
//! (consumer group `shop-payment-processor`) and writes each outcome
//! (`PaymentAuthorized`, or `PaymentFailed` with a reason, same payment id)
//! to `payments`, together with the consumed offsets, in one Kafka
//! transaction per polled batch (consume-transform-produce). So each request
//! gets exactly one committed outcome even when the processor is killed:
//! what it wrote before a crash is aborted, and its offsets go back to what
//! the last committed transaction said.
//!
//! Rules: an order gets at most one `PaymentAuthorized` (a later request is
//! `PaymentFailed` "already paid"); a request whose payment id already has
//! an outcome is skipped. The ledger those rules read is rebuilt from
//! `payments` (read_committed, up to the last stable offset) whenever the
//! processor starts or its partitions change, and is only updated from
//! transactions that committed.
//!
//! The transactional id is stable per processor (`shop-payments-<node id>`),
//! so a restarted processor fences its predecessor and the coordinator
//! aborts what that one left open; it is also the group's static member id,
//! so the restarted member takes its predecessor's partitions at once.
//!
//! Must never: import HTTP or the read model; it is a pure Kafka client.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::app::domain::events::{Event, EventBody, PAYMENTS_TOPIC, PAYMENT_REQUESTS_TOPIC};
use crate::client::{
    Client, ClientConfig, ClientError, ConsumerConfig, GroupConfig, GroupConsumer, GroupEvent,
    PartitionFetcher, Producer, ProducerConfig, StartOffset,
};

/// The processor's consumer group.
pub(crate) const GROUP_ID: &str = "shop-payment-processor";
/// Reason of the `PaymentFailed` answering a second charge of an order.
pub(crate) const ALREADY_PAID: &str = "already paid";
/// Pause after a failed transaction before starting over.
const RESTART_BACKOFF: Duration = Duration::from_millis(200);

/// What the processor's rules read: orders with an authorized payment and
/// payment ids that have an outcome.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ledger {
    paid_orders: HashSet<String>,
    decided: HashSet<String>,
}

impl Ledger {
    /// Take a committed `payments` event into account.
    pub(crate) fn absorb(&mut self, event: &Event) {
        if let Some((status, p)) = event.body.payment() {
            self.decided.insert(p.payment_id.clone());
            if status == crate::app::domain::events::PaymentStatus::Authorized {
                self.paid_orders.insert(event.order_id.clone());
            }
        }
    }

    /// The outcome of a request (None: it already has one), applied to the
    /// ledger as if it committed.
    pub(crate) fn decide(&mut self, request: &Event) -> Option<Event> {
        let EventBody::PaymentRequested(data) = &request.body else {
            return None;
        };
        if self.decided.contains(&data.payment_id) {
            return None;
        }
        let body = if self.paid_orders.contains(&request.order_id) {
            EventBody::PaymentFailed(crate::app::domain::events::PaymentData {
                reason: Some(ALREADY_PAID.to_owned()),
                ..data.clone()
            })
        } else {
            EventBody::PaymentAuthorized(data.clone())
        };
        let outcome = Event::new(request.order_id.clone(), body);
        self.absorb(&outcome);
        Some(outcome)
    }
}

/// Read `payments` with read_committed from the start up to the last stable
/// offset of each partition.
async fn rebuild_ledger(client: &Client) -> Result<Ledger, ClientError> {
    let info = client.topic(PAYMENTS_TOPIC).await?;
    let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    let ends: BTreeMap<i32, i64> = client
        .list_offsets_isolated(PAYMENTS_TOPIC, &partitions, -1, 1)
        .await?
        .into_iter()
        .collect();
    let config = ConsumerConfig {
        isolation_level: 1,
        max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut fetcher = PartitionFetcher::new(client.clone(), config);
    fetcher
        .assign(PAYMENTS_TOPIC, &partitions, StartOffset::Earliest)
        .await?;
    let mut ledger = Ledger::default();
    loop {
        let behind = ends.iter().any(|(&p, &end)| {
            fetcher
                .position(PAYMENTS_TOPIC, p)
                .is_some_and(|pos| pos < end)
        });
        if !behind {
            return Ok(ledger);
        }
        for batch in fetcher.poll().await? {
            let end = ends.get(&batch.partition).copied().unwrap_or(i64::MAX);
            for record in batch.records.iter().filter(|r| r.offset < end) {
                if let Some(Ok(event)) = record.value.as_deref().map(Event::from_bytes) {
                    ledger.absorb(&event);
                }
            }
        }
    }
}

/// Where the processor connects and who it is.
#[derive(Debug, Clone)]
pub(crate) struct ProcessorConfig {
    /// The client configuration (bootstrap servers).
    pub(crate) client: ClientConfig,
    /// Stable transactional id (and static group member id).
    pub(crate) transactional_id: String,
}

/// Run the processor until `shutdown`, starting over (new producer, new
/// member, rebuilt ledger) after any failure.
pub(crate) async fn run(config: ProcessorConfig, mut shutdown: watch::Receiver<bool>) {
    loop {
        let outcome = tokio::select! {
            r = run_once(&config) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, id = %config.transactional_id, "payment processor failed; starting over");
        }
        tokio::select! {
            _ = tokio::time::sleep(RESTART_BACKOFF) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One life of the processor: fence the predecessor, join, process until an error.
async fn run_once(config: &ProcessorConfig) -> Result<(), ClientError> {
    let client = Client::connect(config.client.clone()).await?;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: -1,
            linger: Duration::from_millis(1),
            transactional_id: Some(config.transactional_id.clone()),
            transaction_timeout: Duration::from_secs(30),
            ..ProducerConfig::default()
        },
    )
    .await?;
    tracing::info!(id = %config.transactional_id, "payment processor started");
    let consumer_client = Client::connect(config.client.clone()).await?;
    let mut group = GroupConfig::new(GROUP_ID, &[PAYMENT_REQUESTS_TOPIC]);
    group.group_instance_id = Some(config.transactional_id.clone());
    group.session_timeout = Duration::from_secs(10);
    group.fetch.isolation_level = 1;
    group.fetch.max_wait = Duration::from_millis(100);
    let mut consumer = GroupConsumer::new(consumer_client, group);
    let result = process(&client, &producer, &mut consumer).await;
    if result.is_err() {
        // Best effort: the next instance's InitProducerId aborts it anyway.
        let _ = producer.abort_transaction().await;
    }
    result
}

async fn process(
    client: &Client,
    producer: &Producer,
    consumer: &mut GroupConsumer,
) -> Result<(), ClientError> {
    let mut ledger = rebuild_ledger(client).await?;
    loop {
        let batches = match consumer.poll().await? {
            GroupEvent::Assigned(partitions) => {
                tracing::info!(?partitions, "payment processor assigned");
                ledger = rebuild_ledger(client).await?;
                continue;
            }
            GroupEvent::Records(batches) => batches,
        };
        if batches.iter().all(|b| b.records.is_empty()) {
            continue;
        }
        let mut next = ledger.clone();
        producer.begin_transaction()?;
        let mut deliveries = Vec::new();
        let mut offsets: Vec<(String, i32, i64)> = Vec::new();
        for batch in &batches {
            for record in &batch.records {
                let Some(Ok(request)) = record.value.as_deref().map(Event::from_bytes) else {
                    tracing::warn!(
                        partition = batch.partition,
                        offset = record.offset,
                        "skipping a record that is not an event"
                    );
                    continue;
                };
                let Some(outcome) = next.decide(&request) else {
                    continue;
                };
                let key = Bytes::from(outcome.order_id.clone().into_bytes());
                deliveries.push(
                    producer
                        .send(
                            PAYMENTS_TOPIC,
                            Some(key),
                            Some(Bytes::from(outcome.to_bytes())),
                        )
                        .await?,
                );
            }
            if let Some(last) = batch.records.last() {
                offsets.push((batch.topic.to_string(), batch.partition, last.offset + 1));
            }
        }
        let generation = consumer.generation_id().unwrap_or(-1);
        let member = consumer.member_id().unwrap_or_default().to_owned();
        producer
            .send_offsets_to_transaction(GROUP_ID, &offsets, generation, &member)
            .await?;
        producer.commit_transaction().await?;
        for delivery in deliveries {
            // Already acknowledged (commit flushed); an error would have failed the commit.
            delivery.await?;
        }
        ledger = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::domain::events::{PaymentData, PaymentStatus};

    fn request(order: &str, payment: &str) -> Event {
        Event::new(
            order,
            EventBody::PaymentRequested(PaymentData {
                payment_id: payment.into(),
                amount_cents: 1000,
                currency: "EUR".into(),
                method: "card".into(),
                reason: None,
            }),
        )
    }

    #[test]
    fn an_order_is_authorized_once_and_a_decided_request_is_skipped() {
        let mut ledger = Ledger::default();
        let first = ledger.decide(&request("o1", "p1")).unwrap();
        assert_eq!(first.body.payment().unwrap().0, PaymentStatus::Authorized);
        assert_eq!(first.body.payment().unwrap().1.payment_id, "p1");
        let second = ledger.decide(&request("o1", "p2")).unwrap();
        let (status, data) = second.body.payment().unwrap();
        assert_eq!(status, PaymentStatus::Failed);
        assert_eq!(data.reason.as_deref(), Some(ALREADY_PAID));
        assert!(ledger.decide(&request("o1", "p1")).is_none());
        // A ledger rebuilt from the committed outcomes decides the same.
        let mut rebuilt = Ledger::default();
        rebuilt.absorb(&first);
        rebuilt.absorb(&second);
        assert!(rebuilt.decide(&request("o1", "p2")).is_none());
        let third = rebuilt.decide(&request("o1", "p3")).unwrap();
        assert_eq!(third.body.payment().unwrap().0, PaymentStatus::Failed);
        assert_eq!(
            rebuilt
                .decide(&request("o2", "p4"))
                .unwrap()
                .body
                .payment()
                .unwrap()
                .0,
            PaymentStatus::Authorized
        );
    }
}
