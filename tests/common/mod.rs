//! Shared by the Rust integration tests: start the built `sluice` binary on
//! ephemeral ports in a temporary directory, and kill it when dropped (even
//! when the test fails).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `sluice serve` child process.
pub struct Node {
    pub child: Child,
    pub kafka_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Start a node with extra flags and wait for its `listening` line.
    pub fn start(extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening kafka_addr=") {
                    let _ = tx.send(line.clone());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                break line;
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("sluice did not start");
            }
        };
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .expect("address in listening line")
        };
        Node {
            kafka_addr: field("kafka_addr="),
            http_addr: field("http_addr="),
            child,
            dir,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw Kafka connection speaking kafka-protocol's message types.
pub struct Wire {
    pub stream: TcpStream,
    pub correlation_id: i32,
}

impl Wire {
    pub fn connect(node: &Node) -> Wire {
        let stream = TcpStream::connect(node.kafka_addr).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        Wire {
            stream,
            correlation_id: 0,
        }
    }

    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("wire-versions"));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api.request_header_version(version))
            .expect("encode header");
        req.encode(&mut body, version)
            .unwrap_or_else(|e| panic!("encode {api:?} v{version}: {e}"));
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).expect("write");
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: no response ({e})"));
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).expect("read body");
        let mut buf = Bytes::from(buf);
        let response_header_version = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        let rh =
            ResponseHeader::decode(&mut buf, response_header_version).expect("response header");
        assert_eq!(rh.correlation_id, self.correlation_id, "{api:?} v{version}");
        let resp = Resp::decode(&mut buf, version)
            .unwrap_or_else(|e| panic!("decode {api:?} v{version} response: {e}"));
        assert_eq!(buf.remaining(), 0, "{api:?} v{version}: trailing bytes");
        resp
    }
}
