//! Sluice: a Kafka-compatible, partitioned log stored in sled, in one binary.
//!
//! Data flows downward: `node` wires `web` and `kafka`; the wire handlers call
//! the group coordinator (`group`) and the partition layer (`partition`),
//! which replicates (`replication`, with `cluster` for the metadata image)
//! the logs of the broker's topics (`broker`, `log`) stored in `storage`.
//! `client` speaks the wire protocol from the outside and never reaches into
//! the broker's internals. docs/ARCHITECTURE.md has the map; tests/layers.rs
//! keeps it true.
//!
//! Every module is private to the crate except `fuzzing`, the fuzz targets'
//! entry points (fuzz/, tests/fuzz_corpus.rs). The few items that the
//! binary, the benches and the tests use are re-exported here by name: the
//! binary's `main` and `Allocator`; the client the tests drive a node with;
//! the log, its batch encoding and the storage it opens (benches/log.rs,
//! tests); the supported API versions (tests/wire_versions.rs).

mod alloc;
mod app;
mod bench;
mod broker;
mod cli;
mod client;
mod cluster;
mod cluster_cli;
mod config;
mod config_file;
mod demo;
pub mod fuzzing;
mod group;
mod groups_cli;
mod kafka;
mod limits;
mod log;
mod metrics;
mod node;
mod partition;
mod readiness;
mod replication;
mod security;
mod storage;
mod tls;
mod tokens_cli;
mod txn;
mod users_cli;
mod watchdog;
mod web;

/// The binary's allocator (src/main.rs).
pub use alloc::Allocator;
/// The command line (src/main.rs).
pub use cli::main;
/// The client that tests/client_roundtrip.rs drives a node with.
pub use client::partitioner::partition_for_key;
pub use client::{
    Client, ClientConfig, ConsumerConfig, PartitionFetcher, Producer, ProducerConfig, StartOffset,
};
/// The versions of each Kafka API the broker serves (tests/wire_versions.rs).
pub use kafka::SUPPORTED_APIS;
/// Record batches as a producer writes them and as a partition validates
/// them (benches/log.rs, tests).
pub use log::batch::{encode_plain, split_and_validate, PlainRecord};
/// One partition's log and what it is read up to (benches/log.rs), and the
/// size of the chunks a sled-stored batch is split into (tests/fetch_semantics.rs).
pub use log::{PartitionLog, ReadLimit, CHUNK_BYTES};
/// The node's storage, which a `PartitionLog` opens in (benches/log.rs).
pub use storage::Storage;
