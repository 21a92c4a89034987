//! Sluice: a Kafka-compatible, partitioned log stored in sled, in one binary.
//!
//! Data flows downward: `node` wires `web` and `kafka` over `broker`, which owns
//! the partition logs (`log`) stored in `storage`. `client` speaks the wire
//! protocol from the outside and never reaches into the broker's internals.

pub mod alloc;
pub mod app;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod group;
pub mod groups_cli;
pub mod kafka;
pub mod log;
pub mod node;
pub mod partition;
pub mod replication;
pub mod storage;
pub mod web;
