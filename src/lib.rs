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
//! Modules are private to the crate unless the binary (`cli`, `alloc`), the
//! benches and tests (`client`, `log`, `storage`, `kafka::SUPPORTED_APIS`) or
//! a module not yet made private (`app`, `demo`) need them. `fuzzing` holds
//! the fuzz targets' entry points (fuzz/, tests/fuzz_corpus.rs).

pub mod alloc;
pub mod app;
pub(crate) mod bench;
pub(crate) mod broker;
pub mod cli;
pub mod client;
pub(crate) mod cluster;
pub(crate) mod cluster_cli;
pub(crate) mod config;
pub(crate) mod config_file;
pub mod demo;
pub mod fuzzing;
pub(crate) mod group;
pub(crate) mod groups_cli;
pub mod kafka;
pub(crate) mod limits;
pub mod log;
pub(crate) mod metrics;
pub(crate) mod node;
pub(crate) mod partition;
pub(crate) mod readiness;
pub(crate) mod replication;
pub(crate) mod security;
pub mod storage;
pub(crate) mod tls;
pub(crate) mod tokens_cli;
pub(crate) mod txn;
pub(crate) mod users_cli;
pub(crate) mod watchdog;
pub(crate) mod web;
