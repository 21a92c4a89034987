//! Node configuration: command-line flags, each also readable from a
//! `SLUICE_<NAME>` environment variable, with the defaults a laptop wants.
//!
//! Everything else reads a `NodeConfig`; nothing here starts work.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where partition logs keep their record batches (`--log-store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogStoreKind {
    /// Append-only segment files per partition (Kafka's layout).
    #[default]
    Segments,
    /// Sled trees per partition (kept for comparison).
    Sled,
}

/// Who decides what a client may do (`--authorizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthorizerKind {
    /// Every client may do everything.
    #[default]
    None,
    /// ACLs decide (Kafka's StandardAuthorizer); no matching ACL means deny.
    Acl,
}

/// `--max-connections-per-ip-overrides`: `host:count` pairs, comma separated
/// (an IPv6 address in brackets: `[::1]:10`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerIpOverrides(pub Vec<(String, usize)>);

impl std::str::FromStr for PerIpOverrides {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (host, count) = item
                .rsplit_once(':')
                .ok_or_else(|| format!("`{item}` is not host:count"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let count = count
                .parse()
                .map_err(|_| format!("`{item}`: `{count}` is not a count"))?;
            if host.is_empty() {
                return Err(format!("`{item}` names no host"));
            }
            pairs.push((host.to_string(), count));
        }
        Ok(PerIpOverrides(pairs))
    }
}

/// How the members of a cluster authenticate each other on the cluster
/// listener (docs/SECURITY.md, "Cluster listener"). With neither the secret
/// nor mutual TLS the listener binds only to loopback addresses.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterAuthFlags {
    /// A file holding the cluster's shared secret (at least 16 bytes, the same
    /// on every node): every request between nodes carries an HMAC-SHA256 of it.
    /// Kafka's nearest: the SASL credentials of the controller listener.
    #[arg(long, env = "SLUICE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// This node's certificate chain (PEM) for mutual TLS on the cluster
    /// listener; it must name the host this node has in --peers.
    /// Kafka: `ssl.keystore.location` of the controller listener.
    #[arg(long, env = "SLUICE_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,

    /// This node's private key (PEM) for --cluster-tls-cert.
    /// Kafka: the key in `ssl.keystore.location`.
    #[arg(long, env = "SLUICE_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,

    /// The cluster's CA (PEM): peers' certificates must be signed by it.
    /// Kafka: `ssl.truststore.location` with `ssl.client.auth=required`.
    #[arg(long, env = "SLUICE_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,
}

/// How one node is configured (`sluice serve --help` lists every flag).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeConfig {
    /// Directory holding this node's sled database and its partition logs (`logs/`).
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,

    /// Address the Kafka protocol listener binds (port 0 picks a free port).
    #[arg(long, env = "SLUICE_KAFKA_ADDR", default_value = "127.0.0.1:9092")]
    pub kafka_addr: SocketAddr,

    /// Address given to clients in Metadata (defaults to the bound Kafka address).
    #[arg(long, env = "SLUICE_ADVERTISED_KAFKA_ADDR")]
    pub advertised_kafka_addr: Option<String>,

    /// Kafka listeners, `NAME://HOST:PORT` comma separated (Kafka's `listeners`),
    /// e.g. `PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093`. The names
    /// PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL are their own security
    /// protocol; other names need --listener-security-protocol-map. Port 0
    /// picks a free port. Replaces --kafka-addr (the shorthand for one
    /// PLAINTEXT listener). The first listener is the inter-broker one.
    #[arg(long, env = "SLUICE_LISTENERS")]
    pub listeners: Option<String>,

    /// Addresses given to clients in Metadata, per listener name, in the
    /// form of --listeners (Kafka's `advertised.listeners`); a listener not
    /// named here advertises its bound address.
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,

    /// Security protocol of custom listener names, `NAME:PROTOCOL` comma
    /// separated (Kafka's `listener.security.protocol.map`).
    #[arg(long, env = "SLUICE_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,

    /// PEM certificate chain of the SSL and SASL_SSL listeners (and of the
    /// HTTP listener with --http-tls) (Kafka's `ssl.keystore.location`).
    #[arg(long, env = "SLUICE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SLUICE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates that sign client certificates: SSL listeners then
    /// require a client certificate, and its subject becomes the principal
    /// (`User:CN=...,O=...`) (Kafka's `ssl.truststore.location` with
    /// `ssl.client.auth=required`).
    #[arg(long, env = "SLUICE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve the HTTP listener over TLS with --tls-cert and --tls-key.
    #[arg(long, env = "SLUICE_HTTP_TLS", default_value_t = false, action = clap::ArgAction::Set)]
    pub http_tls: bool,

    /// A connection must finish its TLS handshake, and on a SASL listener
    /// its SASL authentication, this long after it opened, in ms, or it is
    /// closed (Kafka bounds the SASL exchange by `connections.max.idle.ms`).
    #[arg(
        long,
        env = "SLUICE_AUTHENTICATION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub authentication_timeout_ms: u64,

    /// Most time an authenticated SASL session lasts, in ms (Kafka's
    /// `connections.max.reauth.ms`, KIP-368): clients re-authenticate before
    /// it ends, or the connection is closed at its next request. 0: no limit.
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,

    /// Address of the HTTP listener (health, readiness; port 0 picks a free port).
    #[arg(long, env = "SLUICE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// This node's broker id.
    #[arg(long, env = "SLUICE_NODE_ID", default_value_t = 1)]
    pub node_id: i32,

    /// Where this node's cluster listener (Raft RPCs from peers) binds; only
    /// with --peers, and by default this node's own address in --peers.
    #[arg(long, env = "SLUICE_CLUSTER_ADDR")]
    pub cluster_addr: Option<SocketAddr>,

    /// The voters of the initial cluster, the same on every node:
    /// `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT` (cluster listener addresses).
    /// Without it the node runs alone, without Raft.
    #[arg(long, env = "SLUICE_PEERS")]
    pub peers: Option<String>,

    #[command(flatten)]
    pub cluster_auth: ClusterAuthFlags,

    /// Largest request frame accepted, in bytes; larger ones close the connection.
    #[arg(long, env = "SLUICE_MAX_FRAME_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_frame_bytes: usize,

    /// How often appended records are fsynced (and sled writes its buffers), in
    /// ms; the node default of the topic config `flush.ms`. 0 means every produce
    /// is fsynced before it is acknowledged. A produce is acknowledged once its
    /// bytes are in the kernel either way, so a crash of the process loses nothing.
    #[arg(long, env = "SLUICE_FLUSH_INTERVAL_MS", default_value_t = 500)]
    pub flush_interval_ms: u64,

    /// Where partition logs keep their record batches: `segments` (files per
    /// partition, Kafka's layout) or `sled` (trees in the node's database, for comparison).
    #[arg(long, env = "SLUICE_LOG_STORE", value_enum, default_value_t = LogStoreKind::Segments)]
    pub log_store: LogStoreKind,

    /// Most segment file handles kept open at once (least recently used closed first).
    #[arg(long, env = "SLUICE_LOG_OPEN_FILES", default_value_t = 1024)]
    pub log_open_files: usize,

    /// Produce requests are refused with KAFKA_STORAGE_ERROR while the data dir's
    /// file system has less than this many MiB free (room kept for metadata).
    #[arg(long, env = "SLUICE_DISK_RESERVE_MB", default_value_t = 64)]
    pub disk_reserve_mb: u64,

    /// sled page cache size in MiB (bounds the node's memory use).
    #[arg(long, env = "SLUICE_CACHE_CAPACITY_MB", default_value_t = 64)]
    pub cache_capacity_mb: u64,

    /// Create unknown topics on Metadata and Produce (Kafka's auto.create.topics.enable).
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Most topics one Metadata or Produce request may auto-create; the other
    /// unknown topics it names get UNKNOWN_TOPIC_OR_PARTITION.
    #[arg(
        long,
        env = "SLUICE_AUTO_CREATE_TOPICS_PER_REQUEST",
        default_value_t = 100
    )]
    pub auto_create_topics_per_request: usize,

    /// Topics one client (IP address) may auto-create per second, after its
    /// burst; past it, unknown topics get UNKNOWN_TOPIC_OR_PARTITION. 0: no
    /// per-client limit. (Kafka has no such limit; its controller mutation
    /// quota, KIP-599, is the nearest.)
    #[arg(
        long,
        env = "SLUICE_AUTO_CREATE_TOPICS_PER_SECOND",
        default_value_t = 10
    )]
    pub auto_create_topics_per_second: u32,

    /// Topics one client (IP address) may auto-create at once before
    /// --auto-create-topics-per-second applies (its token bucket's size).
    #[arg(
        long,
        env = "SLUICE_AUTO_CREATE_TOPICS_BURST",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub auto_create_topics_burst: u32,

    /// Partition count of auto-created topics (Kafka's num.partitions).
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: i32,

    /// How often the retention task runs, in ms.
    #[arg(
        long,
        env = "SLUICE_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 30_000
    )]
    pub retention_check_interval_ms: u64,

    /// Maximum number of simultaneous Kafka client connections (Kafka's
    /// `max.connections`); more wait to be accepted.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Kafka connections with no request for this long are closed (Kafka's
    /// `connections.max.idle.ms`), so idle sockets never hold every
    /// connection slot; so are connections that send nothing for this long
    /// in the middle of a request (which holds its share of
    /// --queued-max-request-bytes). 0 keeps them open.
    #[arg(
        long,
        env = "SLUICE_CONNECTIONS_MAX_IDLE_MS",
        default_value_t = 600_000
    )]
    pub connections_max_idle_ms: u64,

    /// Most Kafka connections from one client address (Kafka's
    /// `max.connections.per.ip`); one over it is closed at once. 0 refuses
    /// every address not in the overrides.
    #[arg(
        long,
        env = "SLUICE_MAX_CONNECTIONS_PER_IP",
        default_value_t = 2_147_483_647
    )]
    pub max_connections_per_ip: usize,

    /// Per-address caps that replace `--max-connections-per-ip` and
    /// `--http-max-connections-per-ip`, as `host:count,host:count` (Kafka's
    /// `max.connections.per.ip.overrides`); a host name counts for each of its addresses.
    #[arg(
        long,
        env = "SLUICE_MAX_CONNECTIONS_PER_IP_OVERRIDES",
        default_value = ""
    )]
    pub max_connections_per_ip_overrides: PerIpOverrides,

    /// Most simultaneous HTTP connections (WebSockets included); more wait
    /// to be accepted.
    #[arg(long, env = "SLUICE_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub http_max_connections: usize,

    /// Most HTTP connections from one client address; one over it gets a 503
    /// and is closed at once.
    #[arg(
        long,
        env = "SLUICE_HTTP_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256
    )]
    pub http_max_connections_per_ip: usize,

    /// An HTTP connection that has not sent a request's complete headers this
    /// long after it opened, or after its previous response, is closed
    /// (slowloris); 0 never closes it.
    #[arg(long, env = "SLUICE_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,

    /// An HTTP connection that moves no bytes for this long is closed: at
    /// once between requests, else after the request in progress (and
    /// dropped if it stays silent as long again, e.g. a stalled body); 0 never.
    #[arg(long, env = "SLUICE_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub http_idle_timeout_ms: u64,

    /// Require credentials on the HTTP listener (REST API, WebSocket, admin
    /// routes): bearer tokens from `sluice tokens add`, or a dashboard login.
    /// Static files, /healthz and /readyz stay open.
    #[arg(long, env = "SLUICE_HTTP_AUTH")]
    pub http_auth: bool,

    /// Origins allowed to call the HTTP API from a browser page served
    /// elsewhere (CORS), comma-separated `scheme://host[:port]`; none by default.
    #[arg(long, env = "SLUICE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Most WebSocket clients of the shop at once (`/ws`); another upgrade is
    /// answered 503 until one leaves.
    #[arg(long, env = "SLUICE_MAX_WEBSOCKET_CLIENTS", default_value_t = 256)]
    pub max_websocket_clients: usize,

    /// Most bytes of requests in memory at once, read or decoded but not yet
    /// handled (Kafka's `queued.max.request.bytes`): each request is charged
    /// its frame before it is read, and three times its estimated decoded
    /// size (decoding and handling) before it is decoded, each from a pool of
    /// this size; reads wait while it is spent. A larger request closes the
    /// connection. The default lets two requests at the default
    /// --max-frame-bytes be read at once.
    #[arg(
        long,
        env = "SLUICE_QUEUED_MAX_REQUEST_BYTES",
        default_value_t = 256 * 1024 * 1024
    )]
    pub queued_max_request_bytes: usize,

    /// How often freed heap memory is handed back to the operating system, in
    /// ms (0 = never). sled frees what it evicts from its cache, but the C
    /// allocator keeps it; reading a large log once could otherwise leave the
    /// process holding the whole log's size in memory.
    #[arg(long, env = "SLUICE_MEMORY_TRIM_INTERVAL_MS", default_value_t = 1000)]
    pub memory_trim_interval_ms: u64,

    /// How long the first rebalance of an empty consumer group waits for more
    /// members to join, in ms (Kafka's group.initial.rebalance.delay.ms, 3000
    /// there; small here so a lone consumer starts fast).
    #[arg(
        long,
        env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 100
    )]
    pub group_initial_rebalance_delay_ms: u64,

    /// Shortest session timeout a classic group member may ask for, in ms
    /// (Kafka's group.min.session.timeout.ms); shorter joins get
    /// INVALID_SESSION_TIMEOUT.
    #[arg(
        long,
        env = "SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    pub group_min_session_timeout_ms: i32,

    /// Longest session timeout a classic group member may ask for, in ms
    /// (Kafka's group.max.session.timeout.ms).
    #[arg(
        long,
        env = "SLUICE_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub group_max_session_timeout_ms: i32,

    /// How long a member of a consumer-protocol group (KIP-848) lives
    /// without heartbeats, in ms (Kafka's group.consumer.session.timeout.ms).
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
        default_value_t = 45_000
    )]
    pub group_consumer_session_timeout_ms: u64,

    /// How often members of a consumer-protocol group heartbeat, in ms
    /// (Kafka's group.consumer.heartbeat.interval.ms).
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub group_consumer_heartbeat_interval_ms: u64,

    /// How long a share group's member holds a record it fetched before the
    /// record is delivered to another, in ms (Kafka's
    /// group.share.record.lock.duration.ms; a group's
    /// share.record.lock.duration.ms overrides it).
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_RECORD_LOCK_DURATION_MS",
        default_value_t = 30_000
    )]
    pub group_share_record_lock_duration_ms: u64,

    /// How many times a share group delivers one record before it archives
    /// it (Kafka's group.share.delivery.count.limit).
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_DELIVERY_COUNT_LIMIT",
        default_value_t = 5,
        value_parser = clap::value_parser!(i16).range(2..=10)
    )]
    pub group_share_delivery_count_limit: i16,

    /// The most records in flight (acquired, or waiting behind an
    /// unacknowledged one) per share-partition (Kafka's
    /// group.share.partition.max.record.locks).
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_PARTITION_MAX_RECORD_LOCKS",
        default_value_t = 2_000,
        value_parser = clap::value_parser!(i64).range(100..=10_000)
    )]
    pub group_share_partition_max_record_locks: i64,

    /// Whether classic and consumer-protocol members may share a group
    /// during an upgrade (Kafka's group.consumer.migration.policy):
    /// disabled, upgrade, downgrade or bidirectional.
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_MIGRATION_POLICY",
        default_value = "bidirectional",
        value_parser = ["disabled", "upgrade", "downgrade", "bidirectional"]
    )]
    pub group_consumer_migration_policy: String,

    /// Partition count of the internal __consumer_offsets topic when it is
    /// first created (Kafka's offsets.topic.num.partitions); an existing
    /// topic keeps its count.
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_PARTITIONS", default_value_t = 50)]
    pub offsets_topic_partitions: i32,

    /// Partition count of the internal __transaction_state topic when it is
    /// first created (Kafka's transaction.state.log.num.partitions).
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_STATE_PARTITIONS",
        default_value_t = 50
    )]
    pub transaction_state_partitions: i32,

    /// The largest transaction timeout a transactional producer may ask for
    /// (Kafka's transaction.max.timeout.ms).
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_MAX_TIMEOUT_MS",
        default_value_t = 900_000
    )]
    pub transaction_max_timeout_ms: i32,

    /// How often the transaction coordinator aborts transactions past their
    /// timeout (Kafka's
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms).
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_ABORT_CHECK_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub transaction_abort_check_interval_ms: u64,

    /// How long committed offsets of a group without members are kept, in
    /// minutes (Kafka's offsets.retention.minutes).
    #[arg(
        long,
        env = "SLUICE_OFFSETS_RETENTION_MINUTES",
        default_value_t = 10_080
    )]
    pub offsets_retention_minutes: u64,

    /// Run the shop (REST API under /api, WebSocket /ws, its consumers) on
    /// the HTTP listener: `--shop true|false`.
    #[arg(long, env = "SLUICE_SHOP", default_value_t = true, action = clap::ArgAction::Set)]
    pub shop: bool,

    /// Kafka bootstrap servers the shop produces to and consumes from,
    /// comma separated (default: this node's own Kafka listener). Any
    /// Kafka-compatible cluster works.
    #[arg(long, env = "SLUICE_BOOTSTRAP")]
    pub bootstrap: Option<String>,

    /// Where the shop keeps its CQRS read model: unset, in this node's own
    /// database; `postgres://user@host:port/db`, in a PostgreSQL database
    /// that several shop instances share (their projectors split the
    /// partitions in one consumer group). No Kafka equivalent.
    #[arg(long, env = "SLUICE_READ_MODEL")]
    pub read_model: Option<String>,

    /// Kafka bootstrap servers the console (`/api/admin/...` and its pages)
    /// administers, comma separated (default: this node's own Kafka
    /// listener). Any Kafka-compatible cluster works; what the Kafka protocol
    /// cannot tell (sizes, Raft roles, uptime) is shown only for this node's
    /// own cluster.
    #[arg(long, env = "SLUICE_ADMIN_BOOTSTRAP")]
    pub admin_bootstrap: Option<String>,

    /// Partition count of the shop's topics (orders, payments, deliveries,
    /// notifications) when the shop creates them at start.
    #[arg(long, env = "SLUICE_SHOP_PARTITIONS", default_value_t = 3)]
    pub shop_partitions: i32,

    /// Replication factor of the shop's topics when the shop creates them
    /// (-1: the cluster's default).
    #[arg(
        long,
        env = "SLUICE_SHOP_REPLICATION_FACTOR",
        default_value_t = -1,
        allow_negative_numbers = true
    )]
    pub shop_replication_factor: i16,

    /// Run the shop's payment processor (payment requests -> outcomes in
    /// Kafka transactions, transactional id `shop-payments-<node id>`) in
    /// this node: `--shop-payment-processor true|false`. With false, run it
    /// alone with `sluice shop payment-processor`.
    #[arg(long, env = "SLUICE_SHOP_PAYMENT_PROCESSOR", default_value_t = true, action = clap::ArgAction::Set)]
    pub shop_payment_processor: bool,

    /// In a cluster: how often this broker heartbeats the controller.
    #[arg(
        long,
        env = "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 250
    )]
    pub broker_heartbeat_interval_ms: u64,

    /// In a cluster: a broker whose heartbeats stop for this long is fenced
    /// and its partitions get new leaders from their ISR.
    #[arg(long, env = "SLUICE_BROKER_SESSION_TIMEOUT_MS", default_value_t = 1500)]
    pub broker_session_timeout_ms: u64,

    /// In a cluster: a follower that has not caught up with its leader for
    /// this long leaves the ISR (Kafka's replica.lag.time.max.ms).
    #[arg(long, env = "SLUICE_REPLICA_LAG_TIME_MAX_MS", default_value_t = 10_000)]
    pub replica_lag_time_max_ms: u64,

    /// In a cluster: the replication factor of topics created without one
    /// (capped at the number of live brokers).
    #[arg(long, env = "SLUICE_DEFAULT_REPLICATION_FACTOR", default_value_t = 3)]
    pub default_replication_factor: i16,

    /// In a cluster: how often the controller gives partitions back to
    /// their preferred leader (first replica) when it is live and in sync.
    #[arg(
        long,
        env = "SLUICE_PREFERRED_LEADER_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub preferred_leader_interval_ms: u64,

    /// In a cluster: on SIGTERM the node first fences itself so its
    /// leaderships move to other in-sync replicas while it still answers
    /// (Kafka's controlled.shutdown.enable), waiting at most this long;
    /// 0 stops at once.
    #[arg(
        long,
        env = "SLUICE_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub controlled_shutdown_timeout_ms: u64,

    /// `acl` enforces ACLs on every Kafka API (Kafka's authorizer.class.name
    /// with allow.everyone.if.no.acl.found=false); `none` allows everything.
    #[arg(long, env = "SLUICE_AUTHORIZER", value_enum, default_value_t = AuthorizerKind::None)]
    pub authorizer: AuthorizerKind,

    /// Principals the authorizer always allows, `;`-separated
    /// (`User:admin;User:ops`; Kafka's super.users).
    #[arg(long, env = "SLUICE_SUPER_USERS", value_delimiter = ';')]
    pub super_users: Vec<String>,
}

impl NodeConfig {
    /// A configuration for tests: ephemeral ports on 127.0.0.1 under `data_dir`.
    #[cfg(test)]
    pub fn for_tests(data_dir: PathBuf) -> Self {
        NodeConfig {
            data_dir,
            kafka_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertised_kafka_addr: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            listeners: None,
            advertised_listeners: None,
            listener_security_protocol_map: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            http_tls: false,
            authentication_timeout_ms: 10_000,
            connections_max_reauth_ms: 0,
            node_id: 1,
            cluster_addr: None,
            peers: None,
            cluster_auth: ClusterAuthFlags::default(),
            max_frame_bytes: 100 * 1024 * 1024,
            flush_interval_ms: 500,
            log_store: LogStoreKind::Segments,
            log_open_files: 1024,
            disk_reserve_mb: 0,
            cache_capacity_mb: 64,
            auto_create_topics: true,
            auto_create_topics_per_request: 100,
            auto_create_topics_per_second: 10,
            auto_create_topics_burst: 100,
            num_partitions: 1,
            retention_check_interval_ms: 30_000,
            max_connections: 4096,
            connections_max_idle_ms: 600_000,
            max_connections_per_ip: 2_147_483_647,
            max_connections_per_ip_overrides: PerIpOverrides::default(),
            http_max_connections: 1024,
            http_max_connections_per_ip: 256,
            http_header_timeout_ms: 10_000,
            http_idle_timeout_ms: 60_000,
            http_auth: false,
            cors_origins: Vec::new(),
            max_websocket_clients: 256,
            queued_max_request_bytes: 256 * 1024 * 1024,
            memory_trim_interval_ms: 1000,
            group_initial_rebalance_delay_ms: 0,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_migration_policy: "bidirectional".to_owned(),
            group_share_record_lock_duration_ms: 30_000,
            group_share_delivery_count_limit: 5,
            group_share_partition_max_record_locks: 2_000,
            offsets_topic_partitions: 4,
            transaction_state_partitions: 4,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_check_interval_ms: 200,
            offsets_retention_minutes: 10_080,
            shop: false,
            bootstrap: None,
            read_model: None,
            admin_bootstrap: None,
            shop_partitions: 3,
            shop_replication_factor: -1,
            shop_payment_processor: true,
            broker_heartbeat_interval_ms: 250,
            broker_session_timeout_ms: 1500,
            replica_lag_time_max_ms: 10_000,
            default_replication_factor: 3,
            preferred_leader_interval_ms: 5_000,
            controlled_shutdown_timeout_ms: 10_000,
            authorizer: AuthorizerKind::None,
            super_users: Vec::new(),
        }
    }
}
