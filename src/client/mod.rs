//! A small asynchronous Kafka client that speaks the wire protocol, so that
//! everything built on it (the shop, `sluice bench`) runs against Sluice and
//! against any other Kafka-compatible cluster alike.
//!
//! Layers, bottom up:
//! - `connection`: one TCP connection, framing, correlation ids, pipelining,
//!   version negotiation, the poisoned state.
//! - [`Client`] (`cluster`) and `metadata`: bootstrap, one connection per
//!   broker, the topic -> partition -> leader map, topic creation.
//! - `producer`: per-partition batching, partitioning, acks, retries,
//!   idempotence. `consumer`: a partition fetcher and ListOffsets.
//!   `group`: a consumer-group member (classic protocol) over the fetcher.
//!   `share`: a share group member (KIP-932): records acquired and
//!   acknowledged one by one.
//!
//! This module must never reach into the broker's internals: it only sees
//! bytes on a socket. Message bodies are kafka-protocol's types; record
//! batches are built and read with its `RecordBatchEncoder`/`Decoder`.

//!
//! This file only declares the modules and re-exports what the rest of the
//! crate and the integration tests use; the modules are private otherwise.

mod admin;
mod cluster;
pub(crate) mod connection;
mod consumer;
mod error;
mod group;
mod metadata;
pub mod partitioner;
mod producer;
mod share;

pub use admin::{ConfigChange, GroupDescription, TopicDescription};
pub use cluster::{Client, ClientConfig};
pub use connection::{BrokerConnection, ConnectionConfig};
pub use consumer::{ConsumerConfig, FetchedBatch, PartitionFetcher, StartOffset};
pub use error::ClientError;
pub use group::{decode_assignment_by_topic, GroupConfig, GroupConsumer, GroupEvent};
pub use producer::{Delivery, Producer, ProducerConfig, RecordMetadata};
pub use share::{Acknowledge, ShareConsumer};
