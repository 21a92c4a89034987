//! One TCP connection to one broker: size-prefixed framing, correlation ids,
//! API version negotiation and request pipelining.
//!
//! Many requests may be in flight at once. A writer task owns the write half
//! and sends whole frames taken from a channel, so a caller that gives up
//! (its future is dropped) can never leave half a frame on the wire. A reader
//! task owns the read half and hands every response to the caller waiting on
//! its correlation id. The first framing or I/O error *poisons* the
//! connection: every waiting and every later request fails with that error,
//! and the owner (the [`Client`](super::Client) pool) opens a new connection.
//!
//! This module knows nothing about topics or partitions, and it never
//! hand-writes a message codec: bodies are kafka-protocol's message types.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::error::ClientError;

/// Frames queued for the writer task before callers wait for room.
const OUTBOUND_QUEUE: usize = 256;
/// Read buffer size; large enough that small responses cost one syscall.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Write buffer size; pipelined small requests are coalesced into one write.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// How a connection behaves; shared by every connection of a client.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent in every request header so that broker logs can name this client.
    pub client_id: String,
    /// How long to wait for a response before the connection is declared dead.
    pub request_timeout: Duration,
    /// How long to wait for the TCP handshake.
    pub connect_timeout: Duration,
    /// The largest response frame accepted; anything bigger is a framing error
    /// (protects against a hostile or confused peer making us allocate).
    pub max_frame_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "sluice".to_owned(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_frame_bytes: 256 * 1024 * 1024,
        }
    }
}

type ResponseSender = oneshot::Sender<Result<Bytes, ClientError>>;

/// State shared between callers and the reader task, under one lock so that
/// "register a waiter" and "poison and fail all waiters" cannot interleave.
#[derive(Default)]
struct Waiters {
    /// Callers waiting for a response, by correlation id.
    pending: HashMap<i32, ResponseSender>,
    /// Set once, by the first fatal error; later requests fail fast with it.
    poisoned: Option<ClientError>,
}

struct Shared {
    /// `host:port` of the broker, for error messages.
    addr: String,
    waiters: Mutex<Waiters>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every critical section is a single insert/remove/drain).
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark the connection dead and fail everyone waiting on it.
    fn poison(&self, error: ClientError) {
        let waiting: Vec<ResponseSender> = {
            let mut w = self.lock();
            if w.poisoned.is_none() {
                tracing::debug!(broker = %self.addr, %error, "connection poisoned");
                w.poisoned = Some(error.clone());
            }
            w.pending.drain().map(|(_, tx)| tx).collect()
        };
        let reason = match &error {
            ClientError::Poisoned { .. } => error,
            other => ClientError::Poisoned {
                broker: self.addr.clone(),
                reason: other.to_string(),
            },
        };
        for tx in waiting {
            let _ = tx.send(Err(reason.clone()));
        }
    }

    /// The error for a request on a connection that is (or became) unusable.
    fn closed_error(&self) -> ClientError {
        self.poisoned_error()
            .unwrap_or_else(|| ClientError::Poisoned {
                broker: self.addr.clone(),
                reason: "connection closed".to_owned(),
            })
    }

    fn poisoned_error(&self) -> Option<ClientError> {
        self.lock()
            .poisoned
            .as_ref()
            .map(|e| ClientError::Poisoned {
                broker: self.addr.clone(),
                reason: e.to_string(),
            })
    }
}

/// A request written (or queued for writing) whose response has not been
/// read yet. Obtained from [`BrokerConnection::send`]; dropping it forgets
/// the request (its response is then discarded when it arrives).
pub struct PendingResponse<R: Request> {
    /// Where the waiter is registered, to unregister on drop.
    shared: Arc<Shared>,
    correlation_id: i32,
    /// The negotiated version the response is decoded at.
    version: i16,
    /// How long to wait before declaring the connection dead.
    timeout: Duration,
    /// Resolved by the reader task.
    rx: Option<oneshot::Receiver<Result<Bytes, ClientError>>>,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> PendingResponse<R> {
    /// Wait for the response and decode it.
    pub async fn wait(mut self) -> Result<R::Response, ClientError> {
        let frame = self.wait_frame().await?;
        decode_response::<R>(frame, self.version)
    }

    /// Wait for the raw response frame (header included).
    async fn wait_frame(&mut self) -> Result<Bytes, ClientError> {
        let api = api_key::<R>()?;
        let Some(rx) = self.rx.take() else {
            return Err(self.shared.closed_error());
        };
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.shared.closed_error()),
            Err(_) => {
                let error = ClientError::Timeout {
                    api,
                    broker: self.shared.addr.clone(),
                    timeout_ms: self.timeout.as_millis() as u64,
                };
                // A late response would arrive for nobody; the stream state is
                // unknown, so the connection is dropped as Kafka's clients do.
                self.shared.poison(error.clone());
                Err(error)
            }
        }
    }
}

impl<R: Request> Drop for PendingResponse<R> {
    fn drop(&mut self) {
        if self.rx.is_some() {
            self.shared.lock().pending.remove(&self.correlation_id);
        }
    }
}

/// One connection to one broker. Cheap to share behind an `Arc`; every method
/// takes `&self` and may be called from many tasks at once.
pub struct BrokerConnection {
    /// The broker's `host:port`, for errors and logs.
    addr: String,
    /// Sent in request headers.
    client_id: StrBytes,
    /// How long to wait for a response.
    request_timeout: Duration,
    /// Whole frames for the writer task, in wire order.
    outbound: mpsc::Sender<Bytes>,
    /// Waiters and the poisoned flag, shared with the reader task.
    shared: Arc<Shared>,
    /// Correlation ids; they only need to be unique among in-flight requests.
    next_correlation_id: AtomicI32,
    /// Version ranges the broker advertised, by API key; set once by the
    /// ApiVersions handshake.
    broker_versions: OnceLock<HashMap<i16, VersionRange>>,
    /// The features the broker finalized (name -> level), from the same
    /// handshake (ApiVersions v3+).
    finalized_features: OnceLock<HashMap<String, i16>>,
    /// The reader and writer tasks, stopped when the connection is dropped.
    tasks: [AbortHandle; 2],
}

impl std::fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("addr", &self.addr)
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

impl Drop for BrokerConnection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl BrokerConnection {
    /// Open a TCP connection to `addr` and negotiate API versions.
    pub async fn connect(addr: &str, config: &ConnectionConfig) -> Result<Self, ClientError> {
        let io_error = |e: std::io::Error| ClientError::Io {
            broker: addr.to_owned(),
            source: Arc::new(e),
        };
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                io_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })?
            .map_err(io_error)?;
        stream.set_nodelay(true).map_err(io_error)?;
        let conn = Self::start(stream, addr, config);
        conn.negotiate_versions().await?;
        Ok(conn)
    }

    /// Wrap an already open byte stream and start the reader and writer tasks,
    /// without the ApiVersions handshake (tests use this with in-memory pipes).
    pub fn start<S>(stream: S, addr: &str, config: &ConnectionConfig) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            waiters: Mutex::new(Waiters::default()),
        });
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let reader = tokio::spawn(read_loop(
            BufReader::with_capacity(READ_BUFFER_BYTES, read_half),
            Arc::clone(&shared),
            config.max_frame_bytes,
        ));
        let writer = tokio::spawn(write_loop(
            BufWriter::with_capacity(WRITE_BUFFER_BYTES, write_half),
            outbound_rx,
            Arc::clone(&shared),
        ));
        Self {
            addr: addr.to_owned(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            outbound,
            shared,
            next_correlation_id: AtomicI32::new(0),
            broker_versions: OnceLock::new(),
            finalized_features: OnceLock::new(),
            tasks: [reader.abort_handle(), writer.abort_handle()],
        }
    }

    /// The broker's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// True once a fatal error happened; such a connection must be replaced.
    pub fn is_poisoned(&self) -> bool {
        self.shared.lock().poisoned.is_some()
    }

    /// The version range the broker advertised for `api`, if any.
    pub fn broker_versions(&self, api: ApiKey) -> Option<VersionRange> {
        self.broker_versions
            .get()
            .and_then(|v| v.get(&(api as i16)).copied())
    }

    /// The level at which the broker finalized feature `name` (such as
    /// `transaction.version`), if it did.
    pub fn finalized_feature(&self, name: &str) -> Option<i16> {
        self.finalized_features
            .get()
            .and_then(|f| f.get(name).copied())
    }

    /// The highest version of `R` that both this client and the broker speak.
    pub fn version_for<R: Request>(&self) -> Result<i16, ClientError> {
        self.version_for_capped::<R>(R::VERSIONS.max)
    }

    /// Like [`version_for`](Self::version_for), but never above `cap` (used to
    /// stay below versions that need data we do not have, such as topic ids).
    pub fn version_for_capped<R: Request>(&self, cap: i16) -> Result<i16, ClientError> {
        let api = api_key::<R>()?;
        let ours = VersionRange {
            min: R::VERSIONS.min,
            max: R::VERSIONS.max.min(cap),
        };
        let theirs = self
            .broker_versions(api)
            .unwrap_or(VersionRange { min: 0, max: -1 });
        let common = ours.intersect(&theirs);
        if common.is_empty() {
            return Err(ClientError::UnsupportedVersion {
                broker: self.addr.clone(),
                api,
                broker_versions: theirs,
                client_versions: ours,
            });
        }
        Ok(common.max)
    }

    /// Send `body` at the negotiated version and wait for its response.
    pub async fn request<R: Request>(&self, body: &R) -> Result<R::Response, ClientError> {
        let version = self.version_for::<R>()?;
        self.request_with_version(body, version).await
    }

    /// Send `body` at `version` and wait for its response.
    pub async fn request_with_version<R: Request>(
        &self,
        body: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.send(body, version).await?.wait().await
    }

    /// Queue `body` at `version` for writing and return without waiting for
    /// the response. Requests queued one after the other from one task reach
    /// the broker in that order, which is what keeps a partition's batches in
    /// sequence while several are in flight.
    pub async fn send<R: Request>(
        &self,
        body: &R,
        version: i16,
    ) -> Result<PendingResponse<R>, ClientError> {
        let correlation_id = self.next_correlation_id();
        let frame = encode_request_frame(body, version, correlation_id, &self.client_id)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.shared.lock();
            if w.poisoned.is_some() {
                drop(w);
                return Err(self.shared.closed_error());
            }
            w.pending.insert(correlation_id, tx);
        }
        let pending = PendingResponse {
            shared: Arc::clone(&self.shared),
            correlation_id,
            version,
            timeout: self.request_timeout,
            rx: Some(rx),
            _request: std::marker::PhantomData,
        };
        // `Sender::send` is cancellation safe: the frame is queued whole or
        // not at all (and `pending` unregisters itself if we are cancelled).
        self.outbound
            .send(frame)
            .await
            .map_err(|_| self.shared.closed_error())?;
        Ok(pending)
    }

    /// Send `body` at `version` for which the broker sends no response
    /// (Produce with acks=0). Returns once the frame is queued for writing.
    pub async fn send_without_response<R: Request>(
        &self,
        body: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        if let Some(e) = self.shared.poisoned_error() {
            return Err(e);
        }
        let correlation_id = self.next_correlation_id();
        let frame = encode_request_frame(body, version, correlation_id, &self.client_id)?;
        self.outbound
            .send(frame)
            .await
            .map_err(|_| self.shared.closed_error())
    }

    /// Send a request and return the raw response frame (header included).
    async fn round_trip<R: Request>(&self, body: &R, version: i16) -> Result<Bytes, ClientError> {
        self.send(body, version).await?.wait_frame().await
    }

    fn next_correlation_id(&self) -> i32 {
        // Wraps at i32::MAX; ids only need to be unique among in-flight requests.
        self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    /// ApiVersions handshake. We ask at our highest version; a broker that does
    /// not know it answers UNSUPPORTED_VERSION with a version-0 body listing
    /// what it supports, and we ask again at the best common version.
    async fn negotiate_versions(&self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = ApiVersionsRequest::VERSIONS.max;
        for _attempt in 0..2 {
            let frame = self.round_trip(&request, version).await?;
            let response = match decode_response::<ApiVersionsRequest>(frame.clone(), version) {
                Ok(r) if r.error_code == 0 => r,
                first => {
                    // Fall back to the version-0 layout Kafka uses for this error.
                    let v0 = decode_response::<ApiVersionsRequest>(frame, 0);
                    let advertised = v0
                        .as_ref()
                        .ok()
                        .and_then(|r| {
                            r.api_keys
                                .iter()
                                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                        })
                        .map(|k| k.max_version);
                    match advertised {
                        Some(max) if max < version && max >= ApiVersionsRequest::VERSIONS.min => {
                            version = max;
                            continue;
                        }
                        _ => {
                            return Err(match first {
                                Ok(r) => ClientError::broker(
                                    ApiKey::ApiVersions,
                                    ResponseError::try_from_code(r.error_code)
                                        .unwrap_or(ResponseError::UnknownServerError),
                                    None,
                                ),
                                Err(e) => e,
                            })
                        }
                    }
                }
            };
            let table = response
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect();
            let _ = self.broker_versions.set(table);
            let features = response
                .finalized_features
                .iter()
                .map(|f| (f.name.to_string(), f.max_version_level))
                .collect();
            let _ = self.finalized_features.set(features);
            return Ok(());
        }
        Err(ClientError::UnsupportedVersion {
            broker: self.addr.clone(),
            api: ApiKey::ApiVersions,
            broker_versions: VersionRange {
                min: 0,
                max: version,
            },
            client_versions: ApiVersionsRequest::VERSIONS,
        })
    }
}

/// The [`ApiKey`] of a request type.
pub(crate) fn api_key<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY)
        .map_err(|()| ClientError::Config(format!("unknown api key {}", R::KEY)))
}

/// Encode one request as a wire frame: 4-byte big-endian size, header, body.
pub(crate) fn encode_request_frame<R: Request>(
    body: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes, ClientError> {
    let api = api_key::<R>()?;
    let codec_error = |e: anyhow::Error| ClientError::Codec {
        action: "encode",
        api,
        version,
        reason: e.to_string(),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let header_version = R::header_version(version);
    let size_hint = header.compute_size(header_version).map_err(codec_error)?
        + body.compute_size(version).map_err(codec_error)?;
    let mut buf = BytesMut::with_capacity(4 + size_hint);
    buf.put_i32(0); // patched below
    header
        .encode(&mut buf, header_version)
        .map_err(codec_error)?;
    body.encode(&mut buf, version).map_err(codec_error)?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| ClientError::Codec {
        action: "encode",
        api,
        version,
        reason: format!("request of {} bytes is too large", buf.len()),
    })?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Decode a response frame (without its size prefix) as `R::Response`.
pub(crate) fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
) -> Result<R::Response, ClientError> {
    let api = api_key::<R>()?;
    let codec_error = |e: anyhow::Error| ClientError::Codec {
        action: "decode",
        api,
        version,
        reason: e.to_string(),
    };
    ResponseHeader::decode(
        &mut frame,
        <R::Response as HeaderVersion>::header_version(version),
    )
    .map_err(codec_error)?;
    R::Response::decode(&mut frame, version).map_err(codec_error)
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The socket failed.
    Io(std::io::Error),
    /// The size prefix is negative or above the limit.
    BadSize { size: i32, max: usize },
    /// The peer closed the stream in the middle of a frame.
    Truncated { expected: usize },
}

/// Read one size-prefixed frame. `Ok(None)` is a clean end of stream between
/// frames; an end of stream inside a frame is an error.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut size_buf = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match reader.read(&mut size_buf[filled..]).await {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated { expected: 4 }),
            Ok(n) => filled += n,
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let size = i32::from_be_bytes(size_buf);
    let len = usize::try_from(size).map_err(|_| FrameError::BadSize {
        size,
        max: max_frame_bytes,
    })?;
    if len > max_frame_bytes {
        return Err(FrameError::BadSize {
            size,
            max: max_frame_bytes,
        });
    }
    let mut body = BytesMut::zeroed(len);
    match reader.read_exact(&mut body).await {
        Ok(_) => Ok(Some(body.freeze())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(FrameError::Truncated { expected: len })
        }
        Err(e) => Err(FrameError::Io(e)),
    }
}

impl FrameError {
    fn into_client_error(self, broker: &str) -> ClientError {
        match self {
            FrameError::Io(e) => ClientError::Io {
                broker: broker.to_owned(),
                source: Arc::new(e),
            },
            FrameError::BadSize { size, max } => ClientError::Framing {
                broker: broker.to_owned(),
                reason: format!("frame size {size} outside 0..={max}"),
            },
            FrameError::Truncated { expected } => ClientError::Framing {
                broker: broker.to_owned(),
                reason: format!("stream ended inside a frame of {expected} bytes"),
            },
        }
    }
}

/// The reader task: route every response to its waiter until the stream ends
/// or breaks, then poison the connection.
async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    shared: Arc<Shared>,
    max_frame_bytes: usize,
) {
    loop {
        let frame = match read_frame(&mut reader, max_frame_bytes).await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                shared.poison(ClientError::Poisoned {
                    broker: shared.addr.clone(),
                    reason: "connection closed by the broker".to_owned(),
                });
                return;
            }
            Err(e) => {
                shared.poison(e.into_client_error(&shared.addr));
                return;
            }
        };
        let Some(id_bytes) = frame.get(..4) else {
            shared.poison(ClientError::Framing {
                broker: shared.addr.clone(),
                reason: format!("response of {} bytes has no correlation id", frame.len()),
            });
            return;
        };
        let correlation_id =
            i32::from_be_bytes([id_bytes[0], id_bytes[1], id_bytes[2], id_bytes[3]]);
        let waiter = shared.lock().pending.remove(&correlation_id);
        match waiter {
            Some(tx) => {
                let _ = tx.send(Ok(frame));
            }
            None => {
                // The caller gave up (timeout or cancellation) before the answer came.
                tracing::debug!(broker = %shared.addr, correlation_id, "response nobody waits for");
            }
        }
    }
}

/// The writer task: write frames in order, coalescing whatever is queued into
/// one flush.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
) {
    while let Some(frame) = frames.recv().await {
        let mut result = writer.write_all(&frame).await;
        while result.is_ok() {
            match frames.try_recv() {
                Ok(next) => result = writer.write_all(&next).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        if let Err(e) = result {
            shared.poison(ClientError::Io {
                broker: shared.addr.clone(),
                source: Arc::new(e),
            });
            return;
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};
    use tokio::io::DuplexStream;

    fn config() -> ConnectionConfig {
        ConnectionConfig {
            request_timeout: Duration::from_secs(5),
            ..ConnectionConfig::default()
        }
    }

    /// Write a response frame for `correlation_id` carrying `body`.
    async fn write_response<B: Encodable + HeaderVersion>(
        server: &mut DuplexStream,
        correlation_id: i32,
        body: &B,
        version: i16,
    ) {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, B::header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        server.write_all(&buf).await.unwrap();
    }

    /// Read one request frame and return (api key, version, correlation id).
    async fn read_request(server: &mut DuplexStream) -> (i16, i16, i32) {
        let mut frame = read_frame(server, 1 << 20).await.unwrap().unwrap();
        let header =
            kafka_protocol::protocol::decode_request_header_from_buffer(&mut frame).unwrap();
        (
            header.request_api_key,
            header.request_api_version,
            header.correlation_id,
        )
    }

    #[tokio::test]
    async fn request_frame_has_size_prefix_and_header() {
        let frame = encode_request_frame(
            &MetadataRequest::default(),
            12,
            42,
            &StrBytes::from_static_str("client"),
        )
        .unwrap();
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(size, frame.len() - 4);
        let mut body = frame.slice(4..);
        let header =
            kafka_protocol::protocol::decode_request_header_from_buffer(&mut body).unwrap();
        assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
        assert_eq!(header.request_api_version, 12);
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.client_id.as_deref(), Some("client"));
        MetadataRequest::decode(&mut body, 12).unwrap();
    }

    #[tokio::test]
    async fn read_frame_rejects_negative_and_oversized_sizes() {
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            read_frame(&mut negative, 100).await,
            Err(FrameError::BadSize { size: -2, .. })
        ));
        let mut big: &[u8] = &[0, 0, 1, 0];
        assert!(matches!(
            read_frame(&mut big, 100).await,
            Err(FrameError::BadSize { size: 256, .. })
        ));
    }

    #[tokio::test]
    async fn read_frame_distinguishes_clean_end_from_truncation() {
        let mut empty: &[u8] = &[];
        assert!(matches!(read_frame(&mut empty, 100).await, Ok(None)));
        let mut half_size: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut half_size, 100).await,
            Err(FrameError::Truncated { .. })
        ));
        let mut short_body: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut short_body, 100).await,
            Err(FrameError::Truncated { expected: 5 })
        ));
        let mut whole: &[u8] = &[0, 0, 0, 2, 7, 8, 0, 0, 0, 0];
        assert_eq!(
            read_frame(&mut whole, 100).await.unwrap().unwrap().as_ref(),
            &[7, 8]
        );
        assert_eq!(read_frame(&mut whole, 100).await.unwrap().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn pipelined_responses_are_matched_by_correlation_id() {
        let (client_side, mut server) = tokio::io::duplex(1 << 16);
        let conn = Arc::new(BrokerConnection::start(client_side, "test:1", &config()));
        let version = 12;
        let mut calls = Vec::new();
        for i in 0..3 {
            let conn = Arc::clone(&conn);
            calls.push(tokio::spawn(async move {
                let request = MetadataRequest::default().with_topics(Some(vec![]));
                let _ = i;
                conn.request_with_version(&request, version).await
            }));
        }
        let mut ids = Vec::new();
        for _ in 0..3 {
            let (api, v, id) = read_request(&mut server).await;
            assert_eq!((api, v), (ApiKey::Metadata as i16, version));
            ids.push(id);
        }
        // Answer in reverse order; each caller must get the answer to its own request.
        for &id in ids.iter().rev() {
            let response = MetadataResponse::default().with_controller_id(id.into());
            write_response(&mut server, id, &response, version).await;
        }
        let mut answered: Vec<i32> = Vec::new();
        for call in calls {
            answered.push(call.await.unwrap().unwrap().controller_id.0);
        }
        answered.sort_unstable();
        ids.sort_unstable();
        assert_eq!(answered, ids);
    }

    #[tokio::test]
    async fn bad_frame_poisons_connection_and_fails_waiters() {
        let (client_side, mut server) = tokio::io::duplex(1 << 16);
        let conn = Arc::new(BrokerConnection::start(client_side, "test:1", &config()));
        let waiter = {
            let conn = Arc::clone(&conn);
            tokio::spawn(async move {
                conn.request_with_version(&MetadataRequest::default(), 12)
                    .await
            })
        };
        read_request(&mut server).await;
        server.write_all(&[0x80, 0, 0, 0]).await.unwrap(); // negative size
        let err = waiter.await.unwrap().unwrap_err();
        assert!(matches!(err, ClientError::Poisoned { .. }), "{err}");
        assert!(conn.is_poisoned());
        let later = conn
            .request_with_version(&MetadataRequest::default(), 12)
            .await
            .unwrap_err();
        assert!(later.to_string().contains("frame size"), "{later}");
    }

    #[tokio::test]
    async fn negotiation_falls_back_when_broker_rejects_our_version() {
        let (client_side, mut server) = tokio::io::duplex(1 << 16);
        let conn = Arc::new(BrokerConnection::start(client_side, "test:1", &config()));
        let negotiation = {
            let conn = Arc::clone(&conn);
            tokio::spawn(async move { conn.negotiate_versions().await.map(|()| conn) })
        };
        let (api, version, id) = read_request(&mut server).await;
        assert_eq!(api, ApiKey::ApiVersions as i16);
        assert_eq!(version, ApiVersionsRequest::VERSIONS.max);
        let keys = vec![
            kafka_protocol::messages::api_versions_response::ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(0)
                .with_max_version(2),
            kafka_protocol::messages::api_versions_response::ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_min_version(0)
                .with_max_version(9),
        ];
        let rejected = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(keys.clone());
        write_response(&mut server, id, &rejected, 0).await;
        let (_, version, id) = read_request(&mut server).await;
        assert_eq!(version, 2);
        write_response(
            &mut server,
            id,
            &ApiVersionsResponse::default().with_api_keys(keys),
            2,
        )
        .await;
        let conn = negotiation.await.unwrap().unwrap();
        assert_eq!(conn.version_for::<MetadataRequest>().unwrap(), 9);
        assert!(matches!(
            conn.version_for::<kafka_protocol::messages::ProduceRequest>(),
            Err(ClientError::UnsupportedVersion { .. })
        ));
    }
}
