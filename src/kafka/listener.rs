//! The node's Kafka listeners, as Kafka names them: `--listeners
//! NAME://HOST:PORT,...` with a security protocol each (PLAINTEXT, SSL,
//! SASL_PLAINTEXT, SASL_SSL, or a custom name mapped by
//! `--listener-security-protocol-map`), `--advertised-listeners` in the same
//! form, and `--kafka-addr` as the shorthand for one PLAINTEXT listener.
//! Binding resolves port 0; a listener advertises its bound port unless told
//! otherwise.
//!
//! Must never: serve a request (the server does). Locks: none.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::NodeConfig;

/// How a listener protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether connections are wrapped in TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// Why the listeners could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("{0}")]
    Config(String),
    #[error("cannot bind Kafka listener {name} on {addr}: {source}")]
    Bind {
        name: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("listener {name}: {source}")]
    Tls {
        name: String,
        source: crate::tls::TlsError,
    },
}

/// One `NAME://HOST:PORT` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// Parse `NAME://HOST:PORT,...` (an IPv6 host in brackets; an empty host
/// means every interface, as in Kafka).
pub fn parse_endpoints(text: &str) -> Result<Vec<Endpoint>, String> {
    let mut out: Vec<Endpoint> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, addr) = item
            .split_once("://")
            .ok_or_else(|| format!("`{item}` is not NAME://HOST:PORT"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("`{item}` has no port"))?;
        let port = port
            .parse()
            .map_err(|_| format!("`{item}`: `{port}` is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() {
            return Err(format!("`{item}` names no listener"));
        }
        if out.iter().any(|e| e.name == name) {
            return Err(format!("listener {name} is given twice"));
        }
        out.push(Endpoint {
            name: name.to_string(),
            host: host.to_string(),
            port,
        });
    }
    Ok(out)
}

/// One bound listener as its connections see it.
pub struct Listener {
    /// Its name (`PLAINTEXT`, `SASL_SSL`, or a custom one).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// The address it is bound to.
    pub bound: SocketAddr,
    /// What Metadata gives clients that connected here.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Set on SSL and SASL_SSL listeners.
    pub tls: Option<TlsAcceptor>,
    /// Whether a verified client certificate names the principal (SSL
    /// listeners with --tls-client-ca).
    pub principal_from_certificate: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("bound", &self.bound)
            .field("advertised_host", &self.advertised_host)
            .field("advertised_port", &self.advertised_port)
            .finish_non_exhaustive()
    }
}

/// The security protocol of each listener name (custom names from the map).
fn protocol_of(name: &str, map: &[(String, SecurityProtocol)]) -> Option<SecurityProtocol> {
    map.iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| *p)
        .or_else(|| SecurityProtocol::parse(name))
}

fn parse_protocol_map(text: Option<&str>) -> Result<Vec<(String, SecurityProtocol)>, String> {
    let mut map = Vec::new();
    for item in text
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (name, proto) = item
            .split_once(':')
            .ok_or_else(|| format!("`{item}` is not NAME:PROTOCOL"))?;
        let proto = SecurityProtocol::parse(proto)
            .ok_or_else(|| format!("`{item}`: unknown security protocol {proto}"))?;
        map.push((name.to_string(), proto));
    }
    Ok(map)
}

/// Bind every configured listener, the inter-broker one (the first) first.
pub async fn bind_all(
    config: &NodeConfig,
) -> Result<Vec<(TcpListener, Arc<Listener>)>, ListenerError> {
    let endpoints = match &config.listeners {
        Some(text) => parse_endpoints(text).map_err(ListenerError::Config)?,
        None => vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: config.kafka_addr.ip().to_string(),
            port: config.kafka_addr.port(),
        }],
    };
    if endpoints.is_empty() {
        return Err(ListenerError::Config(
            "--listeners names no listener".into(),
        ));
    }
    let advertised = match &config.advertised_listeners {
        Some(text) => parse_endpoints(text).map_err(ListenerError::Config)?,
        None => Vec::new(),
    };
    let map = parse_protocol_map(config.listener_security_protocol_map.as_deref())
        .map_err(ListenerError::Config)?;
    // Follower fetchers and the node's own shop connect to the first
    // listener without TLS or SASL.
    let first_protocol = protocol_of(&endpoints[0].name, &map);
    let needs_plaintext = config.peers.is_some() || (config.shop && config.bootstrap.is_none());
    if needs_plaintext && first_protocol != Some(SecurityProtocol::Plaintext) {
        return Err(ListenerError::Config(format!(
            "the first listener ({}) is the inter-broker one (follower fetchers, the shop) and \
             must be PLAINTEXT: put a PLAINTEXT listener on a loopback or private address first",
            endpoints[0].name
        )));
    }
    let mut bound = Vec::with_capacity(endpoints.len());
    for (i, endpoint) in endpoints.iter().enumerate() {
        let name = endpoint.name.clone();
        let protocol = protocol_of(&name, &map).ok_or_else(|| {
            ListenerError::Config(format!(
                "listener {name} has no security protocol (name it in --listener-security-protocol-map)"
            ))
        })?;
        let tls = if protocol.tls() {
            let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
                return Err(ListenerError::Config(format!(
                    "listener {name} ({}) needs --tls-cert and --tls-key",
                    protocol.name()
                )));
            };
            // Client certificates are asked for on SSL listeners only; a
            // SASL_SSL client authenticates with SASL.
            let client_ca = match protocol {
                SecurityProtocol::Ssl => config.tls_client_ca.as_deref(),
                _ => None,
            };
            Some(
                crate::tls::kafka_acceptor(cert, key, client_ca).map_err(|source| {
                    ListenerError::Tls {
                        name: name.clone(),
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        let host = if endpoint.host.is_empty() {
            "0.0.0.0"
        } else {
            endpoint.host.as_str()
        };
        let listener = TcpListener::bind((host, endpoint.port))
            .await
            .map_err(|source| ListenerError::Bind {
                name: name.clone(),
                addr: format!("{host}:{}", endpoint.port),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ListenerError::Bind {
                name: name.clone(),
                addr: format!("{host}:{}", endpoint.port),
                source,
            })?;
        let (advertised_host, advertised_port) = match advertised.iter().find(|a| a.name == name) {
            Some(a) if a.port == 0 => (a.host.clone(), addr.port() as i32),
            Some(a) => (a.host.clone(), a.port as i32),
            None => match (&config.advertised_kafka_addr, i) {
                // --advertised-kafka-addr is the first listener's.
                (Some(a), 0) => split_host_port(a).ok_or_else(|| {
                    ListenerError::Config(format!("bad --advertised-kafka-addr {a}"))
                })?,
                _ => (addr.ip().to_string(), addr.port() as i32),
            },
        };
        bound.push((
            listener,
            Arc::new(Listener {
                principal_from_certificate: protocol == SecurityProtocol::Ssl
                    && config.tls_client_ca.is_some(),
                name,
                protocol,
                bound: addr,
                advertised_host,
                advertised_port,
                tls,
            }),
        ));
    }
    Ok(bound)
}

/// `host:port` (an IPv6 host in brackets) as host and port.
fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()? as i32;
    Some((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_as_kafka_writes_them() {
        let e = parse_endpoints("PLAINTEXT://127.0.0.1:9092, SASL_SSL://0.0.0.0:9093,X://[::1]:0")
            .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].name, "SASL_SSL");
        assert_eq!(e[1].port, 9093);
        assert_eq!(e[2].host, "::1");
        assert!(parse_endpoints("PLAINTEXT://h").is_err());
        assert!(parse_endpoints("127.0.0.1:9092").is_err());
        assert!(parse_endpoints("A://h:1,A://h:2").is_err());
        let map = parse_protocol_map(Some("CLIENT:SASL_SSL,INTERNAL:PLAINTEXT")).unwrap();
        assert_eq!(protocol_of("CLIENT", &map), Some(SecurityProtocol::SaslSsl));
        assert_eq!(protocol_of("SSL", &map), Some(SecurityProtocol::Ssl));
        assert_eq!(protocol_of("OTHER", &map), None);
        assert!(parse_protocol_map(Some("A:NOPE")).is_err());
    }
}
