//! The Kafka listener: accepts connections, reads size-prefixed frames, decodes
//! request headers, dispatches to the handlers and writes responses in request
//! order. Hostile input gets an error response or a closed connection, never a
//! panic, and never an allocation larger than `max_frame_bytes`. Each request
//! is charged to the node's `RequestBudget` before its frame is read and,
//! after the `prescan` has checked its lengths and estimated its decoded
//! size, again before it is decoded.
//!
//! `dispatch` reads the header and looks the API up in `HANDLERS`, a table of
//! small handlers that each decode a request, make one call into the layer
//! below (`partition`, `group`) and encode the result.
//!
//! Requests on one connection are handled one at a time, as Kafka does, so
//! pipelined produce requests are appended in the order they were sent;
//! writing a response overlaps with handling the next request.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use futures::future::BoxFuture;

use super::budget::{self, RequestBudget};
use super::configs;
use super::group::{self, ClientInfo};
use super::listener::Listener;
use super::prescan::{self, PrescanError};
use super::sasl::SaslState;
use super::{
    acls, admin, api_versions, authz, code, config_resources, consumer_group, elections, fetch,
    log_dirs, metadata, offsets, produce, quorum, quotas, reassignments, share_group,
    supported_range, topic_partitions, txn_markers, users,
};
use crate::group::GroupCoordinator;
use crate::limits::ConnectionQuotas;
use crate::partition::Partitions;
use crate::security::acls::AclOperation;
use crate::security::quotas as quota;
use crate::security::Principal;

/// What the request handlers serve from: the partition layer (topics, logs,
/// replication) and the group coordinator.
pub struct Services {
    pub partitions: Arc<Partitions>,
    pub groups: Arc<GroupCoordinator>,
    pub transactions: Arc<crate::txn::TransactionCoordinator>,
}

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("frame of {size} bytes is outside 8..={max}")]
    FrameSize { size: i64, max: usize },
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("request refused: {0}")]
    OverBudget(#[from] budget::TooLarge),
    #[error("request refused before decoding: {0}")]
    Prescan(#[from] PrescanError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{api:?} refused before SASL authentication")]
    Unauthenticated { api: ApiKey },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl ConnectionError {
    /// Whether the request was refused for the memory it would take.
    fn over_budget(&self) -> bool {
        matches!(
            self,
            ConnectionError::OverBudget(_)
                | ConnectionError::Prescan(PrescanError::TooLarge { .. })
        )
    }
}

/// Serve every Kafka listener until `shutdown` turns true; they share the
/// node's request budget.
pub async fn serve_all(
    listeners: Vec<(TcpListener, Arc<Listener>)>,
    services: Arc<Services>,
    shutdown: watch::Receiver<bool>,
) {
    let config = &services.partitions.broker().config;
    let budget = Arc::new(RequestBudget::new(config.queued_max_request_bytes));
    if config.queued_max_request_bytes < config.max_frame_bytes {
        tracing::warn!(
            queued_max_request_bytes = config.queued_max_request_bytes,
            max_frame_bytes = config.max_frame_bytes,
            "request frames larger than the request budget will be refused"
        );
    }
    let mut all = tokio::task::JoinSet::new();
    for (listener, info) in listeners {
        all.spawn(serve(
            listener,
            info,
            services.clone(),
            budget.clone(),
            shutdown.clone(),
        ));
    }
    while all.join_next().await.is_some() {}
}

/// Accept connections of one listener until `shutdown` turns true. Each
/// connection gets a task; the quotas bound how many run at once
/// (`--max-connections`, per listener) and from one address
/// (`--max-connections-per-ip`: one over it is closed at once, as Kafka does).
async fn serve(
    listener: TcpListener,
    info: Arc<Listener>,
    services: Arc<Services>,
    budget: Arc<RequestBudget>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = &services.partitions.broker().config;
    let quotas = ConnectionQuotas::new(
        "kafka",
        config.max_connections,
        config.max_connections_per_ip,
        &config.max_connections_per_ip_overrides,
    );
    let open = crate::metrics::global().connections(&info.name);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            s = quotas.slot() => match s { Some(s) => s, None => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                quotas.set_max_per_ip(configs::max_connections_per_ip(
                    services.partitions.broker(),
                ));
                let Some(permit) = quotas.admit(slot, peer.ip()) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let services = services.clone();
                let budget = budget.clone();
                let shutdown = shutdown.clone();
                let info = info.clone();
                let open = open.opened();
                tasks.spawn(async move {
                    match accept(stream, info, services, budget, shutdown).await {
                        // A client can run into the budget without being hostile.
                        Err(e) if e.over_budget() => {
                            tracing::warn!(%peer, error = %e, "connection closed")
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "connection closed"),
                        Ok(()) => {}
                    }
                    drop((permit, open));
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    // Let in-flight requests finish; connections close between requests.
    while tasks.join_next().await.is_some() {}
}

/// Start a connection: its session, the TLS handshake on SSL and SASL_SSL
/// listeners (bounded by --authentication-timeout-ms, so a client stalling
/// in it is cut off), then the request loop.
async fn accept(
    stream: TcpStream,
    listener: Arc<Listener>,
    services: Arc<Services>,
    budget: Arc<RequestBudget>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let config = &services.partitions.broker().config;
    let timeout = std::time::Duration::from_millis(config.authentication_timeout_ms.max(1));
    let max_session = match config.connections_max_reauth_ms {
        0 => None,
        ms => Some(std::time::Duration::from_millis(ms)),
    };
    let sasl = SaslState::new(listener.protocol.sasl(), timeout, max_session);
    let mut session = Session::new(
        peer.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
        listener.clone(),
        sasl,
    );
    let Some(acceptor) = &listener.tls else {
        let (reader, writer) = stream.into_split();
        return connection(reader, writer, session, services, budget, shutdown).await;
    };
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(ConnectionError::Tls(e.to_string())),
        Err(_) => return Err(ConnectionError::Tls("handshake timed out".into())),
    };
    if listener.principal_from_certificate {
        let subject = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(crate::tls::client_subject);
        if let Some(subject) = subject {
            session.principal = Principal::user(subject);
            tracing::debug!(
                client = %session.client_host,
                listener = %listener.name,
                principal = %session.principal,
                "authenticated by certificate"
            );
        }
    }
    let (reader, writer) = tokio::io::split(tls);
    connection(reader, writer, session, services, budget, shutdown).await
}

async fn connection<R, W>(
    mut reader: R,
    mut writer: W,
    mut session: Session,
    services: Arc<Services>,
    budget: Arc<RequestBudget>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let client_host = session.client_host.clone();
    let (tx, mut rx) = mpsc::channel::<Frame>(32);
    let write_task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            write_frame(&mut writer, first).await?;
            // Drain what is already queued before waiting again.
            while let Ok(more) = rx.try_recv() {
                write_frame(&mut writer, more).await?;
            }
        }
        writer.shutdown().await
    });
    let max = services.partitions.broker().config.max_frame_bytes;
    let max_idle = match services.partitions.broker().config.connections_max_idle_ms {
        0 => None,
        ms => Some(std::time::Duration::from_millis(ms)),
    };
    let result = async {
        loop {
            let (auth_deadline, raw_token) = {
                let sasl = session.sasl();
                (sasl.authentication_deadline(), sasl.expects_raw_token())
            };
            let mut len_buf = [0u8; 4];
            tokio::select! {
                r = reader.read_exact(&mut len_buf) => match r {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                },
                _ = shutdown.changed() => return Ok(()),
                _ = idle_deadline(max_idle) => {
                    tracing::debug!(client = %client_host, idle_ms = ?max_idle, "idle connection closed");
                    return Ok(());
                }
                _ = until(auth_deadline) => {
                    tracing::debug!(client = %client_host, "connection not authenticated in time closed");
                    return Ok(());
                }
            }
            let size = i32::from_be_bytes(len_buf) as i64;
            // Before authentication a frame is at most Kafka's
            // sasl.server.max.receive.size; a bare SASL token may be short.
            let (min, max) = match (auth_deadline, raw_token) {
                (Some(_), true) => (1, max.min(SASL_MAX_RECEIVE_SIZE)),
                (Some(_), false) => (8, max.min(SASL_MAX_RECEIVE_SIZE)),
                _ => (8, max),
            };
            if size < min || size as u64 > max as u64 {
                return Err(ConnectionError::FrameSize { size, max });
            }
            // Reading waits while the budget is spent.
            let mut charge = tokio::select! {
                c = budget.charge_frame(size as usize) => c?,
                _ = shutdown.changed() => return Ok(()),
            };
            let mut frame = BytesMut::zeroed(size as usize);
            if !read_body(&mut reader, &mut frame, max_idle, auth_deadline, &mut shutdown).await? {
                tracing::debug!(client = %client_host, "connection stalled in a request closed");
                return Ok(());
            }
            if raw_token {
                // After a v0 SaslHandshake: a bare token, answered bare.
                let security = services.partitions.broker().security.current();
                let Some(answer) = session.sasl().raw_token(&security, &frame) else {
                    tracing::debug!(client = %client_host, "SASL authentication failed");
                    return Ok(());
                };
                session.take_authentication();
                let mut out = BytesMut::with_capacity(4 + answer.len());
                out.put_i32(answer.len() as i32);
                out.put_slice(&answer);
                if tx.send(vec![out.freeze()]).await.is_err() {
                    return Ok(());
                }
                continue;
            }
            let api = i16::from_be_bytes([frame[0], frame[1]]);
            if let Ok(api) = ApiKey::try_from(api) {
                // Kafka closes the connection of an unauthenticated request
                // on a SASL listener without an answer.
                if !session.sasl().admits(api) {
                    return Err(ConnectionError::Unauthenticated { api });
                }
            }
            let decoded = prescan::decoded_size(&frame, budget.largest_decoded())?;
            tokio::select! {
                c = budget.charge_decoded(&mut charge, decoded) => c?,
                _ = shutdown.changed() => return Ok(()),
            }
            let response = dispatch(&services, &session, frame.freeze()).await?;
            drop(charge);
            let closing = session.take_authentication();
            if let Some(response) = response {
                if tx.send(response).await.is_err() {
                    return Ok(());
                }
            }
            if closing {
                tracing::debug!(client = %client_host, "SASL authentication failed");
                return Ok(());
            }
        }
    }
    .await;
    // What the client's share sessions on this connection hold goes back
    // to the other members at once, not when its locks expire.
    services.groups.share_connection_closed(session.id);
    drop(tx);
    let _ = write_task.await;
    result
}

/// Read the body of a frame whose charge is held. Gives up (false) when the
/// client sends nothing for `max_idle` or the node shuts down: a stalled
/// sender must not hold its share of the request budget for ever.
async fn read_body<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    frame: &mut [u8],
    max_idle: Option<std::time::Duration>,
    auth_deadline: Option<std::time::Instant>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, ConnectionError> {
    let mut filled = 0;
    while filled < frame.len() {
        // `read` is cancel safe: nothing is lost when another branch wins.
        tokio::select! {
            n = reader.read(&mut frame[filled..]) => match n? {
                0 => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
                n => filled += n,
            },
            _ = shutdown.changed() => return Ok(false),
            _ = idle_deadline(max_idle) => return Ok(false),
            _ = until(auth_deadline) => return Ok(false),
        }
    }
    Ok(true)
}

/// Resolves once a connection has waited `max_idle` for its next request
/// (never when there is no limit).
async fn idle_deadline(max_idle: Option<std::time::Duration>) {
    match max_idle {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Largest frame read before a connection of a SASL listener authenticated
/// (Kafka's `sasl.server.max.receive.size`).
const SASL_MAX_RECEIVE_SIZE: usize = 512 * 1024;

/// Resolves at `deadline` (never without one).
async fn until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A response frame as segments: the header and message, with stored record
/// batches passed by reference between them (see `zero_copy`).
pub type Frame = Vec<Bytes>;

/// Write every segment of a frame with vectored writes.
async fn write_frame<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    mut frame: Frame,
) -> std::io::Result<()> {
    let mut first = 0;
    while first < frame.len() {
        let slices: Vec<std::io::IoSlice<'_>> = frame[first..]
            .iter()
            .take(64)
            .map(|b| std::io::IoSlice::new(b))
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while first < frame.len() && written >= frame[first].len() {
            written -= frame[first].len();
            first += 1;
        }
        if written > 0 {
            frame[first].advance(written);
        }
    }
    Ok(())
}

/// Decode a message. The decoder trusts length fields it reads (it may index
/// past the end of the buffer, which panics); the panic is contained here and
/// becomes a decode error, so hostile bytes close the connection quietly.
fn decode<T: Decodable>(buf: &mut Bytes, api: ApiKey, version: i16) -> Result<T, ConnectionError> {
    let decoded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::decode(buf, version)));
    let reason = match decoded {
        Ok(Ok(message)) => return Ok(message),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "malformed message".to_string(),
    };
    Err(ConnectionError::Decode {
        api,
        version,
        reason,
    })
}

/// Encode a response frame: size, header, body.
pub fn encode_response<T: Encodable>(
    api: ApiKey,
    version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Frame, ConnectionError> {
    let fail = |e: anyhow::Error| ConnectionError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let size = header.compute_size(header_version).map_err(fail)?
        + body.compute_size(version).map_err(fail)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(fail)?;
    body.encode(&mut buf, version).map_err(fail)?;
    Ok(vec![buf.freeze()])
}

/// Encode a Fetch response frame, passing its record batches by reference.
fn encode_fetch_response(
    version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &FetchResponse,
    arena: super::zero_copy::RecordsArena,
) -> Result<Frame, ConnectionError> {
    let api = ApiKey::Fetch;
    let fail = |reason: String| ConnectionError::Encode {
        api,
        version,
        reason,
    };
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let size = header
        .compute_size(header_version)
        .map_err(|e| fail(e.to_string()))?
        + body
            .compute_size(version)
            .map_err(|e| fail(e.to_string()))?;
    let mut buf = super::zero_copy::SegmentedBuf::new(arena, 512);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| fail(e.to_string()))?;
    body.encode(&mut buf, version)
        .map_err(|e| fail(e.to_string()))?;
    buf.finish().map_err(|e| fail(e.to_string()))
}

/// What a connection knows of its client: the principal it authenticated
/// as (`User:ANONYMOUS` until it does; on an SSL listener with
/// --tls-client-ca, its certificate's subject), its address, the listener
/// it came through and where its SASL exchange is.
#[derive(Debug, Clone)]
pub struct Session {
    /// This connection's number on the node (share sessions opened on it
    /// are closed with it).
    pub id: u64,
    pub principal: Principal,
    /// Kafka shows a group member's host as "/ip".
    pub client_host: String,
    /// The client's address (limits such as auto-creation are kept per address).
    pub client_ip: std::net::IpAddr,
    /// The listener the client connected to: Metadata answers with its
    /// advertised address.
    pub listener: Arc<Listener>,
    /// The SASL exchange and session (locked only by this connection's task).
    sasl: Arc<std::sync::Mutex<SaslState>>,
}

impl Session {
    fn new(client_ip: std::net::IpAddr, listener: Arc<Listener>, sasl: SaslState) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Session {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            principal: Principal::anonymous(),
            client_host: format!("/{client_ip}"),
            client_ip,
            listener,
            sasl: Arc::new(std::sync::Mutex::new(sasl)),
        }
    }

    fn sasl(&self) -> std::sync::MutexGuard<'_, SaslState> {
        self.sasl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a user that just authenticated as the principal; true when the
    /// connection must close after its reply (a failed exchange).
    fn take_authentication(&mut self) -> bool {
        let (user, closing) = {
            let mut sasl = self.sasl();
            (sasl.take_authenticated(), sasl.closing())
        };
        if let Some(user) = user {
            self.principal = Principal::user(user);
            tracing::debug!(
                client = %self.client_host,
                listener = %self.listener.name,
                principal = %self.principal,
                "authenticated with SASL"
            );
        }
        closing
    }

    /// This node's address as the listener of the connection advertises it.
    fn advertised(&self) -> (String, i32) {
        (
            self.listener.advertised_host.clone(),
            self.listener.advertised_port,
        )
    }
}

/// One decoded request on its way to a handler: the services it may call,
/// who sent it, and its body (the header is already read).
struct Request<'a> {
    services: &'a Services,
    /// Who sent it.
    session: &'a Session,
    client_host: &'a str,
    /// The client's address (limits such as auto-creation are kept per address).
    client_ip: std::net::IpAddr,
    header: RequestHeader,
    api: ApiKey,
    version: i16,
    response_header_version: i16,
    correlation_id: i32,
    body: Bytes,
}

impl Request<'_> {
    /// Decode the body as the request message of this API.
    fn decode<T: Decodable>(&mut self) -> Result<T, ConnectionError> {
        let message = decode(&mut self.body, self.api, self.version)?;
        if self.body.has_remaining() {
            tracing::trace!(
                api = ?self.api,
                version = self.version,
                left = self.body.remaining(),
                "request had trailing bytes"
            );
        }
        Ok(message)
    }

    /// Encode a response frame for this request.
    fn respond<T: Encodable>(&self, body: &T) -> Reply {
        encode_response(
            self.api,
            self.version,
            self.response_header_version,
            self.correlation_id,
            body,
        )
        .map(Some)
    }

    /// Whether a topic exists (in a cluster: in the metadata image).
    fn topic_exists(&self, name: &str) -> bool {
        let p = self.partitions();
        p.replica_manager()
            .map_or_else(|| p.broker().topic(name).is_some(), |rm| rm.has_topic(name))
    }

    /// What the request's principal may do.
    fn access(&self) -> authz::Access<'_> {
        authz::Access::new(
            self.partitions().broker(),
            &self.session.principal,
            self.session.client_ip,
        )
    }

    /// Whether the connection's principal may perform `op` on the cluster
    /// (DescribeUserScramCredentials needs DESCRIBE, AlterUserScramCredentials
    /// ALTER); refusal: CLUSTER_AUTHORIZATION_FAILED.
    fn authorize_cluster(&self, op: AclOperation) -> bool {
        self.access().cluster(op)
    }

    /// The client id of the request header ("" when none).
    fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or_default()
    }

    /// Record this request's bytes against the client's quota on `key`.
    fn throttle(&self, key: &'static str, bytes: usize) -> std::time::Duration {
        quotas::throttle(
            self.partitions(),
            &self.session.principal.name,
            self.client_id(),
            key,
            bytes,
        )
    }

    fn partitions(&self) -> &Arc<Partitions> {
        &self.services.partitions
    }

    fn groups(&self) -> &Arc<GroupCoordinator> {
        &self.services.groups
    }

    fn transactions(&self) -> &Arc<crate::txn::TransactionCoordinator> {
        &self.services.transactions
    }

    /// Where broker `broker_id` is on the listener this client connected
    /// to (Metadata, DescribeCluster and FindCoordinator answer with it):
    /// this node's from the session, another broker's from its registration
    /// in the image; None keeps the address the handler gave (a broker that
    /// registered no listener of that name).
    fn address_on_listener(&self, broker_id: i32) -> Option<(String, i32)> {
        if broker_id == self.partitions().broker().node_id() {
            return Some(self.session.advertised());
        }
        let rm = self.partitions().replica_manager()?;
        let name = &self.session.listener.name;
        rm.cluster().read_image(|image| {
            let addr = image.brokers.get(&broker_id)?.listeners.get(name)?;
            Some(crate::cluster::image::host_port(addr))
        })
    }
}

/// A response frame, none (produce with acks=0), or why the connection closes.
type Reply = Result<Option<Frame>, ConnectionError>;

/// A handler: decode the request, make one call below, encode the answer.
type Handler = for<'a> fn(Request<'a>) -> BoxFuture<'a, Reply>;

/// A table entry: decode the request as `req`, then run `$body` (which
/// makes one call below and encodes the answer with `r.respond`).
macro_rules! handler {
    (|$r:ident, $req:ident| $body:block) => {
        |mut $r: Request<'_>| -> BoxFuture<'_, Reply> {
            Box::pin(async move {
                let $req = $r.decode()?;
                $body
            })
        }
    };
}

/// Which handler serves each API. Adding a Kafka API: a handler file (or
/// function) in `kafka/`, one line here, and its version range in
/// `SUPPORTED_APIS`.
const HANDLERS: &[(ApiKey, Handler)] = &[
    (ApiKey::ApiVersions, |mut r| {
        Box::pin(async move {
            let _req: ApiVersionsRequest = r.decode()?;
            r.respond(&api_versions::handle())
        })
    }),
    (
        ApiKey::Metadata,
        handler!(|r, req| {
            let mut req: MetadataRequest = req;
            consumer_group::name_topics_by_id(r.groups(), &mut req);
            let access = r.access();
            let p = r.partitions();
            let (refused, allowed) =
                authz::metadata_request(&access, &mut req, r.version, |n| r.topic_exists(n));
            let ops = (
                req.include_cluster_authorized_operations,
                req.include_topic_authorized_operations,
            );
            let mut resp = metadata::handle(p, req, r.version, r.client_ip).await;
            authz::metadata_response(&access, allowed, ops, &mut resp, refused);
            for b in resp.brokers.iter_mut() {
                if let Some((host, port)) = r.address_on_listener(b.node_id.0) {
                    b.host = super::str_bytes(host);
                    b.port = port;
                }
            }
            r.respond(&resp)
        }),
    ),
    (ApiKey::Produce, |mut r| {
        Box::pin(async move {
            let bytes = r.body.len();
            let mut req: ProduceRequest = r.decode()?;
            let refused = authz::produce(&r.access(), &mut req, |n| r.topic_exists(n));
            let throttle = r.throttle(quota::PRODUCER_BYTE_RATE, bytes);
            let resp = produce::handle(r.partitions(), req, r.version, r.client_ip).await;
            let throttle_time_ms = throttled(throttle).await;
            match resp {
                Some(mut resp) => {
                    resp.responses.extend(refused);
                    resp.throttle_time_ms = throttle_time_ms;
                    r.respond(&resp)
                }
                None => Ok(None),
            }
        })
    }),
    (
        ApiKey::Fetch,
        handler!(|r, req| {
            let mut req: FetchRequest = req;
            let unknown = fetch::resolve(r.partitions(), &mut req, r.version);
            let refused = authz::fetch(&r.access(), &mut req);
            let consumer = req.replica_id.0 < 0;
            let (mut resp, arena, leaders) = fetch::handle(r.partitions(), req, r.version).await;
            fetch::add_node_endpoints(&mut resp, &leaders, |id| r.address_on_listener(id));
            resp.responses.extend(unknown);
            resp.responses.extend(refused);
            if consumer {
                let bytes = resp
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
                    .sum();
                let throttle = r.throttle(quota::CONSUMER_BYTE_RATE, bytes);
                resp.throttle_time_ms = throttled(throttle).await;
            }
            encode_fetch_response(
                r.version,
                r.response_header_version,
                r.correlation_id,
                &resp,
                arena,
            )
            .map(Some)
        }),
    ),
    (
        ApiKey::ListOffsets,
        handler!(|r, req| {
            let mut req: ListOffsetsRequest = req;
            let refused = authz::list_offsets(&r.access(), &mut req);
            let mut resp = offsets::list_offsets(r.partitions(), req, r.version);
            resp.topics.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::OffsetForLeaderEpoch,
        handler!(|r, req| {
            let mut req: OffsetForLeaderEpochRequest = req;
            let refused = authz::offset_for_leader_epoch(&r.access(), &mut req);
            let mut resp = offsets::offset_for_leader_epoch(r.partitions(), req);
            resp.topics.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DeleteRecords,
        handler!(|r, req| {
            let mut req: DeleteRecordsRequest = req;
            let refused = authz::delete_records(&r.access(), &mut req);
            let mut resp = offsets::delete_records(r.partitions(), req);
            resp.topics.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::CreateTopics,
        handler!(|r, req| {
            let mut req: CreateTopicsRequest = req;
            let refused = authz::create_topics(&r.access(), &mut req);
            let mut resp = admin::create_topics(r.partitions(), req, r.version).await;
            resp.topics.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DeleteTopics,
        handler!(|r, req| {
            let mut req: DeleteTopicsRequest = req;
            let refused = authz::delete_topics(&r.access(), &mut req);
            let mut resp = admin::delete_topics(r.partitions(), req).await;
            // Committed offsets of deleted topics go with them.
            for deleted in resp.responses.iter().filter(|t| t.error_code == code::NONE) {
                if let Some(name) = &deleted.name {
                    r.groups().on_topic_deleted(name);
                }
            }
            resp.responses.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::CreatePartitions,
        handler!(|r, req| {
            let mut req: CreatePartitionsRequest = req;
            let refused = authz::create_partitions(&r.access(), &mut req);
            let mut resp = admin::create_partitions(r.partitions(), req).await;
            resp.results.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DescribeConfigs,
        handler!(|r, req| {
            let mut req: DescribeConfigsRequest = req;
            let refused = authz::describe_configs(&r.access(), &mut req);
            let mut resp = admin::describe_configs(r.partitions(), req);
            resp.results.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::AlterConfigs,
        handler!(|r, req| {
            let mut req: AlterConfigsRequest = req;
            let refused = authz::alter_configs(&r.access(), &mut req);
            let mut resp = admin::alter_configs(r.partitions(), req).await;
            resp.responses.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::IncrementalAlterConfigs,
        handler!(|r, req| {
            let mut req: IncrementalAlterConfigsRequest = req;
            let refused = authz::incremental_alter_configs(&r.access(), &mut req);
            let mut resp = admin::incremental_alter_configs(r.partitions(), req).await;
            resp.responses.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DescribeCluster,
        handler!(|r, req| {
            let req: DescribeClusterRequest = req;
            let access = r.access();
            if let Some(error) = access.cluster_refused(AclOperation::Describe) {
                let mut resp = DescribeClusterResponse::default();
                resp.error_code = error;
                resp.cluster_authorized_operations = i32::MIN;
                return r.respond(&resp);
            }
            let include = req.include_cluster_authorized_operations;
            let mut resp = admin::describe_cluster(r.partitions(), req);
            if include {
                resp.cluster_authorized_operations = access.cluster_operations();
            }
            for b in resp.brokers.iter_mut() {
                if let Some((host, port)) = r.address_on_listener(b.broker_id.0) {
                    b.host = super::str_bytes(host);
                    b.port = port;
                }
            }
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::InitProducerId,
        handler!(|r, req| {
            let req: InitProducerIdRequest = req;
            if let Some(error) = authz::init_producer_id(&r.access(), &req) {
                let mut resp = InitProducerIdResponse::default();
                resp.error_code = error;
                resp.producer_id = ProducerId(-1);
                resp.producer_epoch = -1;
                return r.respond(&resp);
            }
            match req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
                Some(id) => {
                    let id = id.0.to_string();
                    r.respond(&super::txn::init_producer_id(r.transactions(), &req, &id).await)
                }
                None => r.respond(&produce::init_producer_id(r.partitions().broker(), req)),
            }
        }),
    ),
    (
        ApiKey::FindCoordinator,
        handler!(|r, req| {
            let req: FindCoordinatorRequest = req;
            let (key_type, key) = (req.key_type, req.key.to_string());
            match key_type {
                1 => r.transactions().ensure_state_topic().await,
                _ => r.groups().ensure_offsets_topic().await,
            }
            let mut resp = group::find_coordinator(r.groups(), r.transactions(), req, r.version);
            authz::find_coordinator(&r.access(), key_type, &key, &mut resp);
            if let Some((host, port)) = r.address_on_listener(resp.node_id.0) {
                resp.host = super::str_bytes(host);
                resp.port = port;
            }
            for c in resp.coordinators.iter_mut() {
                if let Some((host, port)) = r.address_on_listener(c.node_id.0) {
                    c.host = super::str_bytes(host);
                    c.port = port;
                }
            }
            r.respond(&resp)
        }),
    ),
    (ApiKey::JoinGroup, |mut r| {
        Box::pin(async move {
            let client = ClientInfo {
                client_id: r.client_id().to_owned(),
                client_host: r.client_host.to_owned(),
            };
            let req: JoinGroupRequest = r.decode()?;
            if let Some(error) = authz::group_read(&r.access(), &req.group_id) {
                let mut resp = JoinGroupResponse::default();
                resp.error_code = error;
                resp.generation_id = -1;
                // Not nullable before v7.
                resp.protocol_name = (r.version < 7).then(Default::default);
                return r.respond(&resp);
            }
            r.respond(&group::join_group(r.groups(), req, r.version, &client).await)
        })
    }),
    (
        ApiKey::SyncGroup,
        handler!(|r, req| {
            let req: SyncGroupRequest = req;
            if let Some(error) = authz::group_read(&r.access(), &req.group_id) {
                let mut resp = SyncGroupResponse::default();
                resp.error_code = error;
                return r.respond(&resp);
            }
            r.respond(&group::sync_group(r.groups(), req, r.version).await)
        }),
    ),
    (
        ApiKey::Heartbeat,
        handler!(|r, req| {
            let req: HeartbeatRequest = req;
            if let Some(error) = authz::group_read(&r.access(), &req.group_id) {
                let mut resp = HeartbeatResponse::default();
                resp.error_code = error;
                return r.respond(&resp);
            }
            r.respond(&group::heartbeat(r.groups(), req, r.version))
        }),
    ),
    (
        ApiKey::LeaveGroup,
        handler!(|r, req| {
            let req: LeaveGroupRequest = req;
            if let Some(error) = authz::group_read(&r.access(), &req.group_id) {
                let mut resp = LeaveGroupResponse::default();
                resp.error_code = error;
                return r.respond(&resp);
            }
            r.respond(&group::leave_group(r.groups(), req, r.version))
        }),
    ),
    (
        ApiKey::DescribeGroups,
        handler!(|r, req| {
            let req: DescribeGroupsRequest = req;
            let include = req.include_authorized_operations;
            let mut resp = group::describe_groups(r.groups(), req, r.version);
            authz::describe_groups(&r.access(), include, &mut resp);
            r.respond(&resp)
        }),
    ),
    (ApiKey::ConsumerGroupHeartbeat, |mut r| {
        Box::pin(async move {
            let client = ClientInfo {
                client_id: r.client_id().to_owned(),
                client_host: r.client_host.to_owned(),
            };
            let req: ConsumerGroupHeartbeatRequest = r.decode()?;
            r.respond(&consumer_group::heartbeat(
                r.groups(),
                &r.access(),
                req,
                &client,
            ))
        })
    }),
    (ApiKey::ShareGroupHeartbeat, |mut r| {
        Box::pin(async move {
            let client = ClientInfo {
                client_id: r.client_id().to_owned(),
                client_host: r.client_host.to_owned(),
            };
            let req: ShareGroupHeartbeatRequest = r.decode()?;
            r.respond(&share_group::heartbeat(
                r.groups(),
                &r.access(),
                req,
                &client,
            ))
        })
    }),
    (
        ApiKey::ShareGroupDescribe,
        handler!(|r, req| { r.respond(&share_group::describe(r.groups(), &r.access(), req)) }),
    ),
    (
        ApiKey::ShareFetch,
        handler!(|r, req| {
            let resp = share_group::fetch(r.groups(), &r.access(), req, r.session.id).await;
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DescribeShareGroupOffsets,
        handler!(|r, req| {
            r.respond(&share_group::describe_offsets(r.groups(), &r.access(), req))
        }),
    ),
    (
        ApiKey::AlterShareGroupOffsets,
        handler!(|r, req| {
            let resp = share_group::alter_offsets(r.groups(), &r.access(), req).await;
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DeleteShareGroupOffsets,
        handler!(|r, req| {
            let resp = share_group::delete_offsets(r.groups(), &r.access(), req).await;
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::ShareAcknowledge,
        handler!(|r, req| {
            let resp = share_group::acknowledge(r.groups(), &r.access(), req, r.session.id).await;
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        handler!(|r, req| {
            r.respond(&consumer_group::describe(
                r.groups(),
                &r.access(),
                req,
                r.version,
            ))
        }),
    ),
    (
        ApiKey::ListGroups,
        handler!(|r, req| {
            let mut resp = group::list_groups(r.groups(), req, r.version);
            authz::list_groups(&r.access(), &mut resp);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DeleteGroups,
        handler!(|r, req| {
            let mut req: DeleteGroupsRequest = req;
            let refused = authz::delete_groups(&r.access(), &mut req);
            let mut resp = group::delete_groups(r.groups(), req).await;
            resp.results.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::OffsetCommit,
        handler!(|r, req| {
            let mut req: OffsetCommitRequest = req;
            let refused = authz::offset_commit(&r.access(), &mut req);
            let mut resp = if req.topics.is_empty() && !refused.is_empty() {
                OffsetCommitResponse::default()
            } else {
                group::offset_commit(r.groups(), req, r.version).await
            };
            resp.topics.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::OffsetFetch,
        handler!(|r, req| {
            let req: OffsetFetchRequest = req;
            let group = (r.version < 8).then(|| (req.group_id.to_string(), req.topics.is_some()));
            let named: Vec<String> = (req.groups.iter())
                .filter(|g| g.topics.is_some())
                .map(|g| g.group_id.to_string())
                .collect();
            let mut resp = group::offset_fetch(r.groups(), req, r.version);
            let group = group.as_ref().map(|(g, named)| (g.as_str(), *named));
            authz::offset_fetch(&r.access(), group, &named, &mut resp);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::WriteTxnMarkers,
        handler!(|r, req| {
            let req: WriteTxnMarkersRequest = req;
            if r.access()
                .cluster_refused(AclOperation::ClusterAction)
                .is_some()
            {
                return r.respond(&authz::write_txn_markers_refused(&req));
            }
            r.respond(&txn_markers::write_txn_markers(r.partitions(), req).await)
        }),
    ),
    (
        ApiKey::DescribeProducers,
        handler!(|r, req| {
            let mut req: DescribeProducersRequest = req;
            let refused = authz::describe_producers(&r.access(), &mut req);
            let mut resp = txn_markers::describe_producers(r.partitions(), req);
            resp.topics.extend(refused);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::OffsetDelete,
        handler!(|r, req| {
            let mut req: OffsetDeleteRequest = req;
            let resp = match authz::offset_delete(&r.access(), &mut req) {
                Err(error) => {
                    let mut resp = OffsetDeleteResponse::default();
                    resp.error_code = error;
                    resp
                }
                Ok(refused) => {
                    let mut resp = group::offset_delete(r.groups(), req);
                    resp.topics.extend(refused);
                    resp
                }
            };
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DescribeAcls,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Describe) {
                let mut resp = DescribeAclsResponse::default();
                resp.error_code = error;
                return r.respond(&resp);
            }
            r.respond(&acls::describe(r.partitions(), req))
        }),
    ),
    (
        ApiKey::CreateAcls,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Alter) {
                return r.respond(&acls::create_refused(&req, error));
            }
            r.respond(&acls::create(r.partitions(), req).await)
        }),
    ),
    (
        ApiKey::DeleteAcls,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Alter) {
                return r.respond(&acls::delete_refused(&req, error));
            }
            r.respond(&acls::delete(r.partitions(), req).await)
        }),
    ),
    (
        ApiKey::DescribeClientQuotas,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::DescribeConfigs) {
                let mut resp = DescribeClientQuotasResponse::default();
                resp.error_code = error;
                return r.respond(&resp);
            }
            r.respond(&quotas::describe(r.partitions(), req))
        }),
    ),
    (
        ApiKey::AlterClientQuotas,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::AlterConfigs) {
                return r.respond(&quotas::alter_refused(&req, error));
            }
            r.respond(&quotas::alter(r.partitions(), req).await)
        }),
    ),
    (
        ApiKey::SaslHandshake,
        handler!(|r, req| {
            let resp = r.session.sasl().handshake(req, r.version);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::SaslAuthenticate,
        handler!(|r, req| {
            let security = r.partitions().broker().security.current();
            let resp = r.session.sasl().authenticate(&security, req, r.version);
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DescribeUserScramCredentials,
        handler!(|r, req| {
            if !r.authorize_cluster(AclOperation::Describe) {
                return r.respond(&users::describe_refused());
            }
            r.respond(&users::describe(r.partitions(), req))
        }),
    ),
    (
        ApiKey::AlterPartitionReassignments,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Alter) {
                return r.respond(&reassignments::alter_refused(error));
            }
            r.respond(&reassignments::alter(r.partitions(), req, r.version).await)
        }),
    ),
    (
        ApiKey::ListPartitionReassignments,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Describe) {
                return r.respond(&reassignments::list_refused(error));
            }
            r.respond(&reassignments::list(r.partitions(), req))
        }),
    ),
    (
        ApiKey::UnregisterBroker,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Alter) {
                return r.respond(&reassignments::unregister_refused(error));
            }
            r.respond(&reassignments::unregister(r.partitions(), req).await)
        }),
    ),
    (
        ApiKey::AlterUserScramCredentials,
        handler!(|r, req| {
            if !r.authorize_cluster(AclOperation::Alter) {
                return r.respond(&users::alter_refused(req));
            }
            r.respond(&users::alter(r.partitions(), req).await)
        }),
    ),
    (
        ApiKey::AddPartitionsToTxn,
        handler!(|r, req| {
            let mut req: AddPartitionsToTxnRequest = req;
            let refused = match authz::add_partitions_to_txn(&r.access(), &mut req, r.version) {
                Ok(refused) => refused,
                Err(error) => {
                    let mut resp = AddPartitionsToTxnResponse::default();
                    if r.version >= 4 {
                        resp.error_code = error;
                    } else {
                        let codes: Vec<_> = req
                            .v3_and_below_topics
                            .iter()
                            .flat_map(|t| {
                                t.partitions
                                    .iter()
                                    .map(|p| ((t.name.0.to_string(), *p), error))
                            })
                            .collect();
                        resp.results_by_topic_v3_and_below = super::txn::topic_codes(&codes);
                    }
                    return r.respond(&resp);
                }
            };
            r.respond(
                &super::txn::add_partitions_to_txn(r.transactions(), req, r.version, refused).await,
            )
        }),
    ),
    (
        ApiKey::AddOffsetsToTxn,
        handler!(|r, req| {
            let req: AddOffsetsToTxnRequest = req;
            if let Some(error) =
                authz::txn_offsets(&r.access(), &req.transactional_id.0, &req.group_id.0)
            {
                let mut resp = AddOffsetsToTxnResponse::default();
                resp.error_code = error;
                return r.respond(&resp);
            }
            r.respond(&super::txn::add_offsets_to_txn(r.transactions(), req).await)
        }),
    ),
    (
        ApiKey::EndTxn,
        handler!(|r, req| {
            let req: EndTxnRequest = req;
            if let Some(error) = authz::txn_write(&r.access(), &req.transactional_id.0) {
                let mut resp = EndTxnResponse::default();
                resp.error_code = error;
                resp.producer_id = ProducerId(-1);
                resp.producer_epoch = -1;
                return r.respond(&resp);
            }
            r.respond(&super::txn::end_txn(r.transactions(), req, r.version).await)
        }),
    ),
    (
        ApiKey::TxnOffsetCommit,
        handler!(|r, req| {
            let req: TxnOffsetCommitRequest = req;
            if let Some(error) =
                authz::txn_offsets(&r.access(), &req.transactional_id.0, &req.group_id.0)
            {
                return r.respond(&super::txn::txn_offset_commit_refused(&req, error));
            }
            r.respond(
                &super::txn::txn_offset_commit(r.groups(), r.transactions(), req, r.version).await,
            )
        }),
    ),
    (
        ApiKey::DescribeTransactions,
        handler!(|r, req| {
            let mut req: DescribeTransactionsRequest = req;
            let access = r.access();
            let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.transactional_ids)
                .into_iter()
                .partition(|t| authz::txn_describe(&access, &t.0));
            req.transactional_ids = allowed;
            let mut resp = super::txn::describe_transactions(r.transactions(), req);
            resp.transaction_states
                .extend(super::txn::describe_refused(refused));
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::ListTransactions,
        handler!(|r, req| {
            let req: ListTransactionsRequest = req;
            let access = r.access();
            r.respond(&super::txn::list_transactions(
                r.transactions(),
                req,
                r.version,
                |id| authz::txn_describe(&access, id),
            ))
        }),
    ),
    (
        ApiKey::DescribeTopicPartitions,
        handler!(|r, req| {
            let access = r.access();
            let may_describe = |name: &str| access.topic(AclOperation::Describe, name);
            let operations = |name: &str| access.topic_operations(name);
            let visibility = topic_partitions::Visibility {
                may_describe: &may_describe,
                operations: &operations,
            };
            let resp =
                topic_partitions::describe(r.partitions(), req, visibility, r.client_ip).await;
            r.respond(&resp)
        }),
    ),
    (
        ApiKey::DescribeLogDirs,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Describe) {
                return r.respond(&log_dirs::describe_refused(error));
            }
            r.respond(&log_dirs::describe(r.partitions(), req))
        }),
    ),
    (
        ApiKey::AlterReplicaLogDirs,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Alter) {
                return r.respond(&log_dirs::alter_refused(req, error));
            }
            r.respond(&log_dirs::alter(r.partitions(), req))
        }),
    ),
    (
        ApiKey::ElectLeaders,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Alter) {
                return r.respond(&elections::refused(r.partitions(), &req, error, r.version));
            }
            r.respond(&elections::elect(r.partitions(), req, r.version).await)
        }),
    ),
    (
        ApiKey::DescribeQuorum,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::Describe) {
                return r.respond(&quorum::refused(error));
            }
            r.respond(&quorum::describe(r.partitions(), req).await)
        }),
    ),
    (
        ApiKey::ListConfigResources,
        handler!(|r, req| {
            if let Some(error) = r.access().cluster_refused(AclOperation::DescribeConfigs) {
                return r.respond(&config_resources::refused(error));
            }
            r.respond(&config_resources::list(
                r.partitions(),
                r.groups(),
                req,
                r.version,
            ))
        }),
    ),
];

/// Wait out a quota's throttle time (Kafka mutes the connection; here the
/// response is held back) and return it for `throttle_time_ms`.
async fn throttled(throttle: std::time::Duration) -> i32 {
    if !throttle.is_zero() {
        tokio::time::sleep(throttle).await;
    }
    i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
}

fn handler(api: ApiKey) -> Option<Handler> {
    HANDLERS.iter().find(|(k, _)| *k == api).map(|(_, h)| *h)
}

/// Decode one request frame, run its handler, and encode the response
/// (`None` for produce with acks=0).
pub async fn dispatch(
    services: &Services,
    session: &Session,
    mut frame: Bytes,
) -> Result<Option<Frame>, ConnectionError> {
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(api_key).map_err(|_| ConnectionError::UnknownApiKey(api_key))?;
    let Some((min, max)) = supported_range(api) else {
        return Err(ConnectionError::UnsupportedVersion { api, version });
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            // KIP-511: answer with v0 and the list, so the client can pick.
            let body = api_versions::response(code::UNSUPPORTED_VERSION);
            return encode_response(api, 0, 0, correlation_id, &body).map(Some);
        }
        return Err(ConnectionError::UnsupportedVersion { api, version });
    }
    let Some(handle) = handler(api) else {
        return Err(ConnectionError::UnsupportedVersion { api, version });
    };
    let header_version = api.request_header_version(version);
    let header: RequestHeader = decode(&mut frame, api, header_version)?;
    let response_header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let started = std::time::Instant::now();
    let reply = handle(Request {
        services,
        session,
        client_host: &session.client_host,
        client_ip: session.client_ip,
        header,
        api,
        version,
        response_header_version,
        correlation_id,
        body: frame,
    })
    .await;
    crate::metrics::global().kafka_request(api_key, started.elapsed());
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_api_has_a_handler() {
        for (api, _, _) in super::super::SUPPORTED_APIS {
            assert!(handler(*api).is_some(), "{api:?} has no handler");
        }
        assert_eq!(HANDLERS.len(), super::super::SUPPORTED_APIS.len());
    }
}
