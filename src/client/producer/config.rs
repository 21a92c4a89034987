//! How a producer batches, acknowledges and retries (`ProducerConfig`).
//!
//! Must never: import anything of the producer (it is a leaf).

use std::time::Duration;

use kafka_protocol::records::Compression;

/// How the producer batches, acknowledges and retries.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgements required: 0 (none, fire and forget), 1 (leader), -1 (all in-sync replicas).
    pub acks: i16,
    /// A batch is sent once it holds this many bytes.
    pub batch_size: usize,
    /// A non-full batch is sent once it is this old.
    pub linger: Duration,
    /// Produce requests pipelined per broker connection.
    pub max_in_flight_per_broker: usize,
    /// How many times a batch is retried after a retriable error.
    pub retries: u32,
    /// Pause before a retry.
    pub retry_backoff: Duration,
    /// How long the broker may wait for replication (Produce `timeout_ms`).
    pub ack_timeout: Duration,
    /// Soft cap of one Produce request; more batches wait for the next request.
    pub max_request_bytes: usize,
    /// Bytes of records that may wait for an acknowledgement before `send` waits.
    pub buffer_memory: usize,
    /// A record not acknowledged this long after it was batched fails with
    /// [`ClientError::DeliveryTimeout`] (Kafka's `delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Compression codec of the record batches.
    pub compression: Compression,
    /// Use a producer id and sequence numbers so retries cannot duplicate.
    pub idempotent: bool,
    /// Kafka's `transactional.id`: makes the producer transactional (and so
    /// idempotent with acks=-1). A new producer with the same id fences the
    /// older one and ends what it left open.
    pub transactional_id: Option<String>,
    /// Kafka's `transaction.timeout.ms`: the coordinator aborts a transaction
    /// left open this long.
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: -1,
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight_per_broker: 5,
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            ack_timeout: Duration::from_secs(30),
            max_request_bytes: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
            compression: Compression::None,
            idempotent: false,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}
