//! How the shop is configured (from the node's flags).
//!
//! Must never: import anything of the shop (it is a leaf).

/// How the shop is configured (from the node's flags).
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// Kafka bootstrap servers, comma separated.
    pub bootstrap: String,
    /// Partitions of each shop topic when the shop creates it.
    pub partitions: i32,
    /// Replication factor of each shop topic when the shop creates it (-1: cluster default).
    pub replication_factor: i16,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Capacity of the WebSocket broadcast channel, in messages.
    pub ws_buffer: usize,
    /// Most WebSocket clients at once; another upgrade is answered 503.
    pub max_websocket_clients: usize,
    /// Transactional id of this node's embedded payment processor (None:
    /// the node runs none; `sluice shop payment-processor` runs one alone).
    pub payment_processor_id: Option<String>,
    /// The shared PostgreSQL read model (`postgres://...`); None: the node's own database.
    pub read_model: Option<String>,
}

impl ShopConfig {
    /// Defaults for `bootstrap`.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ShopConfig {
            bootstrap: bootstrap.into(),
            partitions: 3,
            replication_factor: -1,
            max_body_bytes: 64 * 1024,
            ws_buffer: 4096,
            max_websocket_clients: 256,
            payment_processor_id: Some("shop-payments-1".to_owned()),
            read_model: None,
        }
    }
}
