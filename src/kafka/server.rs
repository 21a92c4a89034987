//! The Kafka listener: accepts connections, reads size-prefixed frames, decodes
//! request headers, dispatches to the handlers and writes responses in request
//! order. Hostile input gets an error response or a closed connection, never a
//! panic, and never an allocation larger than `max_frame_bytes`.
//!
//! Requests on one connection are handled one at a time, as Kafka does, so
//! pipelined produce requests are appended in the order they were sent;
//! writing a response overlaps with handling the next request.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::{admin, api_versions, code, fetch, metadata, offsets, produce, supported_range};
use crate::broker::Broker;
use crate::group::api::{self as group_api, ClientInfo};
use crate::group::GroupCoordinator;

/// What the request handlers serve from: the broker's topics and logs, and
/// the group coordinator.
pub struct Services {
    pub broker: Arc<Broker>,
    pub groups: Arc<GroupCoordinator>,
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
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Accept connections until `shutdown` turns true. Each connection gets a task;
/// the semaphore bounds how many run at once.
pub async fn serve(
    listener: TcpListener,
    services: Arc<Services>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(services.broker.config.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let services = services.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    if let Err(e) = connection(stream, services, shutdown).await {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                    drop(permit);
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

async fn connection(
    stream: TcpStream,
    services: Arc<Services>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    // Kafka shows a group member's host as "/ip".
    let client_host = stream
        .peer_addr()
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default();
    let (mut reader, mut writer) = stream.into_split();
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
    let max = services.broker.config.max_frame_bytes;
    let result = async {
        loop {
            let mut len_buf = [0u8; 4];
            tokio::select! {
                r = reader.read_exact(&mut len_buf) => match r {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                },
                _ = shutdown.changed() => return Ok(()),
            }
            let size = i32::from_be_bytes(len_buf) as i64;
            if size < 8 || size as u64 > max as u64 {
                return Err(ConnectionError::FrameSize { size, max });
            }
            let mut frame = BytesMut::zeroed(size as usize);
            reader.read_exact(&mut frame).await?;
            if let Some(response) = dispatch(&services, &client_host, frame.freeze()).await? {
                if tx.send(response).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    .await;
    drop(tx);
    let _ = write_task.await;
    result
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

/// Decode one request frame, run its handler, and encode the response
/// (`None` for produce with acks=0).
pub async fn dispatch(
    services: &Services,
    client_host: &str,
    mut frame: Bytes,
) -> Result<Option<Frame>, ConnectionError> {
    let broker = &services.broker;
    let groups = &services.groups;
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
    let header_version = api.request_header_version(version);
    let header: RequestHeader = decode(&mut frame, api, header_version)?;
    let response_header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    macro_rules! respond {
        ($body:expr) => {
            encode_response(
                api,
                version,
                response_header_version,
                correlation_id,
                &$body,
            )
            .map(Some)
        };
    }
    let result = match api {
        ApiKey::ApiVersions => {
            let _req: ApiVersionsRequest = decode(&mut frame, api, version)?;
            respond!(api_versions::handle())
        }
        ApiKey::Metadata => {
            respond!(metadata::handle(broker, decode(&mut frame, api, version)?, version).await)
        }
        ApiKey::Produce => {
            let req: ProduceRequest = decode(&mut frame, api, version)?;
            match produce::handle(broker, req).await {
                Some(resp) => respond!(resp),
                None => Ok(None),
            }
        }
        ApiKey::Fetch => {
            let (resp, arena) = fetch::handle(broker, decode(&mut frame, api, version)?).await;
            encode_fetch_response(
                version,
                response_header_version,
                correlation_id,
                &resp,
                arena,
            )
            .map(Some)
        }
        ApiKey::ListOffsets => respond!(offsets::list_offsets(
            broker,
            decode(&mut frame, api, version)?,
            version
        )),
        ApiKey::OffsetForLeaderEpoch => {
            respond!(offsets::offset_for_leader_epoch(
                broker,
                decode(&mut frame, api, version)?
            ))
        }
        ApiKey::DeleteRecords => respond!(offsets::delete_records(
            broker,
            decode(&mut frame, api, version)?
        )),
        ApiKey::CreateTopics => {
            respond!(admin::create_topics(broker, decode(&mut frame, api, version)?, version).await)
        }
        ApiKey::DeleteTopics => {
            let resp = admin::delete_topics(broker, decode(&mut frame, api, version)?).await;
            // Committed offsets of deleted topics go with them.
            for deleted in resp.responses.iter().filter(|t| t.error_code == code::NONE) {
                if let Some(name) = &deleted.name {
                    groups.on_topic_deleted(name);
                }
            }
            respond!(resp)
        }
        ApiKey::CreatePartitions => {
            respond!(admin::create_partitions(broker, decode(&mut frame, api, version)?).await)
        }
        ApiKey::DescribeConfigs => {
            respond!(admin::describe_configs(
                broker,
                decode(&mut frame, api, version)?
            ))
        }
        ApiKey::AlterConfigs => {
            respond!(admin::alter_configs(broker, decode(&mut frame, api, version)?).await)
        }
        ApiKey::IncrementalAlterConfigs => {
            respond!(
                admin::incremental_alter_configs(broker, decode(&mut frame, api, version)?).await
            )
        }
        ApiKey::DescribeCluster => respond!(admin::describe_cluster(
            broker,
            decode(&mut frame, api, version)?
        )),
        ApiKey::InitProducerId => respond!(produce::init_producer_id(
            broker,
            decode(&mut frame, api, version)?
        )),
        ApiKey::FindCoordinator => {
            if let Some(rm) = broker.replicas() {
                rm.ensure_offsets_topic().await;
            }
            respond!(group_api::find_coordinator(
                groups,
                broker,
                decode(&mut frame, api, version)?,
                version
            ))
        }
        ApiKey::JoinGroup => {
            let client = ClientInfo {
                client_id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                client_host: client_host.to_owned(),
            };
            let req = decode(&mut frame, api, version)?;
            respond!(group_api::join_group(groups, req, version, &client).await)
        }
        ApiKey::SyncGroup => {
            let req = decode(&mut frame, api, version)?;
            respond!(group_api::sync_group(groups, req, version).await)
        }
        ApiKey::Heartbeat => respond!(group_api::heartbeat(
            groups,
            decode(&mut frame, api, version)?,
            version
        )),
        ApiKey::LeaveGroup => respond!(group_api::leave_group(
            groups,
            decode(&mut frame, api, version)?,
            version
        )),
        ApiKey::DescribeGroups => respond!(group_api::describe_groups(
            groups,
            decode(&mut frame, api, version)?,
            version
        )),
        ApiKey::ListGroups => respond!(group_api::list_groups(
            groups,
            decode(&mut frame, api, version)?,
            version
        )),
        ApiKey::DeleteGroups => respond!(group_api::delete_groups(
            groups,
            decode(&mut frame, api, version)?
        )),
        ApiKey::OffsetCommit => {
            let req = decode(&mut frame, api, version)?;
            respond!(group_api::offset_commit(groups, req, version).await)
        }
        ApiKey::OffsetFetch => respond!(group_api::offset_fetch(
            groups,
            decode(&mut frame, api, version)?,
            version
        )),
        ApiKey::OffsetDelete => respond!(group_api::offset_delete(
            groups,
            decode(&mut frame, api, version)?
        )),
        other => Err(ConnectionError::UnsupportedVersion {
            api: other,
            version,
        }),
    };
    if frame.has_remaining() {
        tracing::trace!(
            ?api,
            version,
            left = frame.remaining(),
            "request had trailing bytes"
        );
    }
    result
}
