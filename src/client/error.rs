//! The client's one error type. Every variant carries enough context (API,
//! version, broker, Kafka error name) to be read in a log line without the
//! code at hand. Errors are `Clone` because one failed produce request fails
//! every record waiting on it.
//!
//! Must never: import anything of the client (it is a leaf every layer uses).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

/// What went wrong talking to a Kafka-compatible broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be opened, or reading/writing it failed.
    #[error("i/o error talking to {broker}: {source}")]
    Io {
        /// `host:port` of the peer.
        broker: String,
        /// The underlying error, shared because the error is cloned to every waiter.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The byte stream no longer follows the protocol (bad size prefix,
    /// truncated frame); the connection is unusable from now on.
    #[error("framing error from {broker}: {reason}")]
    Framing {
        /// `host:port` of the peer.
        broker: String,
        /// What exactly was wrong with the bytes.
        reason: String,
    },

    /// A request was made on a connection that already failed.
    #[error("connection to {broker} is poisoned: {reason}")]
    Poisoned {
        /// `host:port` of the peer.
        broker: String,
        /// The first error that broke the connection.
        reason: String,
    },

    /// A message could not be encoded or a response could not be decoded.
    #[error("cannot {action} {api:?} v{version}: {reason}")]
    Codec {
        /// `"encode"` or `"decode"`.
        action: &'static str,
        /// The API whose message failed.
        api: ApiKey,
        /// The negotiated version used.
        version: i16,
        /// The codec's explanation.
        reason: String,
    },

    /// Client and broker share no version of an API.
    #[error("broker {broker} supports {api:?} versions {broker_versions}, this client {client_versions}")]
    UnsupportedVersion {
        /// `host:port` of the peer.
        broker: String,
        /// The API in question.
        api: ApiKey,
        /// What the broker advertised in ApiVersions (empty if not at all).
        broker_versions: VersionRange,
        /// What the message types compiled into this client can speak.
        client_versions: VersionRange,
    },

    /// The broker answered with a Kafka error code.
    #[error("{api:?} failed{}: {error}{}", context_suffix(.topic, .partition), message_suffix(.message))]
    Broker {
        /// The API that failed.
        api: ApiKey,
        /// The decoded Kafka error (its name is Kafka's, in CamelCase).
        error: ResponseError,
        /// The topic concerned, if any.
        topic: Option<String>,
        /// The partition concerned, if any.
        partition: Option<i32>,
        /// The broker's free-text error message, if it sent one.
        message: Option<String>,
    },

    /// No answer within the request timeout; the connection is dropped.
    #[error("{api:?} to {broker} timed out after {timeout_ms} ms")]
    Timeout {
        /// The API that timed out.
        api: ApiKey,
        /// `host:port` of the peer.
        broker: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },

    /// A produced record was not acknowledged within the delivery timeout.
    #[error("record for {topic}-{partition} not acknowledged within {timeout_ms} ms")]
    DeliveryTimeout {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The delivery timeout that expired.
        timeout_ms: u64,
    },

    /// The cluster metadata does not (yet) know what is asked for.
    #[error("metadata: {0}")]
    Metadata(String),

    /// No bootstrap server could be reached.
    #[error("no bootstrap server reachable ({tried}): {last_error}")]
    Bootstrap {
        /// The addresses tried, comma separated.
        tried: String,
        /// Why the last one failed.
        last_error: String,
    },

    /// The client was configured in a way that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A newer producer with the same `transactional.id` took over
    /// (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH): this producer can no longer
    /// write or end transactions. Fatal: make a new producer.
    #[error("transactional producer {transactional_id} is fenced: {reason}")]
    Fenced {
        /// The transactional id.
        transactional_id: String,
        /// The broker's error.
        reason: String,
    },

    /// The producer or consumer was closed while the operation was pending.
    #[error("client closed")]
    Closed,
}

fn context_suffix(topic: &Option<String>, partition: &Option<i32>) -> String {
    match (topic, partition) {
        (Some(t), Some(p)) => format!(" for {t}-{p}"),
        (Some(t), None) => format!(" for topic {t}"),
        _ => String::new(),
    }
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(" ({m})"),
        _ => String::new(),
    }
}

impl ClientError {
    /// A broker error for an API, without topic context.
    pub fn broker(api: ApiKey, error: ResponseError, message: Option<String>) -> Self {
        ClientError::Broker {
            api,
            error,
            topic: None,
            partition: None,
            message,
        }
    }

    /// A broker error for one partition.
    pub fn partition(
        api: ApiKey,
        error: ResponseError,
        topic: &str,
        partition: i32,
        message: Option<String>,
    ) -> Self {
        ClientError::Broker {
            api,
            error,
            topic: Some(topic.to_owned()),
            partition: Some(partition),
            message,
        }
    }

    /// True when retrying the same operation later (after a metadata refresh
    /// or a reconnect) can succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io { .. }
            | ClientError::Framing { .. }
            | ClientError::Poisoned { .. }
            | ClientError::Timeout { .. }
            | ClientError::Metadata(_) => true,
            ClientError::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// True when the error is a fencing error of a transactional producer
    /// (the typed [`ClientError::Fenced`] or the broker codes behind it).
    pub fn is_fenced(&self) -> bool {
        match self {
            ClientError::Fenced { .. } => true,
            ClientError::Broker { error, .. } => is_fencing_error(*error),
            _ => false,
        }
    }

    /// True when the error means our view of partition leadership is stale.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            ClientError::Broker { error, .. } => is_stale_metadata_error(*error),
            ClientError::Io { .. }
            | ClientError::Framing { .. }
            | ClientError::Poisoned { .. }
            | ClientError::Timeout { .. }
            | ClientError::Metadata(_) => true,
            _ => false,
        }
    }
}

/// Kafka errors after which the client must refetch metadata before retrying:
/// the partition moved, or it does not exist (yet) where we looked.
pub fn is_stale_metadata_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::LeaderNotAvailable
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::ReplicaNotAvailable
            | ResponseError::BrokerNotAvailable
            | ResponseError::UnknownTopicId
            | ResponseError::InconsistentTopicId
    )
}

/// Kafka errors that mean a newer producer of the same transactional id exists.
pub fn is_fencing_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::ProducerFenced
            | ResponseError::InvalidProducerEpoch
            | ResponseError::TransactionalIdAuthorizationFailed
    )
}
