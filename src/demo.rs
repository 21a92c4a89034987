//! `sluice demo`: one node with the shop, its traffic generator switched on
//! at a gentle rate, and the dashboard's address printed. It opens nothing by
//! itself.
//!
//! Without `--data-dir` it runs on a fresh directory under the system temp
//! dir (removed again on a clean exit), so two demos never share data. It
//! drives the node only through its public HTTP API, as a browser would: it
//! waits for `/readyz` (200 once the shop accepts commands), then
//! `POST /api/simulator` until the shop accepts it.
//!
//! Must never: reach into the node's internals (it is a client of the node).
//! It sits above `cluster::launcher`, which it calls; the launcher never
//! calls back into it except through the task handed over in `LaunchOptions`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::NodeConfig;

/// How long the demo waits for the shop to accept the simulator setting.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `sluice demo` flags: every `serve` flag, and the simulator's rate.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub node: NodeConfig,

    /// Events per second (orders, payments, delivery steps) the traffic
    /// generator starts at; 0 leaves it off.
    #[arg(long, env = "SLUICE_DEMO_RATE", default_value_t = 10.0)]
    pub rate: f64,

    /// Nodes: 1 runs one node in this process; 3 (or more) starts a
    /// localhost cluster of child processes (as `sluice cluster`) with the
    /// shop on every node.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub nodes: u32,
}

/// Run the demo until SIGINT/SIGTERM. `data_dir_given`: whether `--data-dir`
/// (or `SLUICE_DATA_DIR`) was set; if not, a fresh temporary one is used.
pub async fn run(args: DemoArgs, data_dir_given: bool) -> anyhow::Result<()> {
    if args.nodes > 1 {
        let cluster = crate::cluster::launcher::ClusterArgs {
            nodes: args.nodes,
            base_dir: data_dir_given.then(|| args.node.data_dir.clone()),
            cluster_secret_file: args.node.cluster_auth.cluster_secret_file.clone(),
        };
        let rate = args.rate;
        let options = crate::cluster::launcher::LaunchOptions {
            shop_on_every_node: true,
            on_first_node: Some(Box::new(move |launched| {
                Box::pin(start_traffic_and_announce(
                    launched.first_http,
                    launched.bootstrap,
                    launched.base_dir,
                    launched.temporary,
                    rate,
                ))
            })),
            remove_temporary_dir: true,
        };
        return crate::cluster::launcher::run_with(cluster, options).await;
    }
    let mut config = args.node;
    let fresh_dir = if data_dir_given {
        None
    } else {
        let dir = std::env::temp_dir().join(format!(
            "sluice-demo-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        config.data_dir = dir.clone();
        Some(dir)
    };
    // The demo prints where to point a browser and a Kafka client, so it needs
    // the real ports: port 0 is resolved here, before the node binds.
    config.http_addr = concrete(config.http_addr).context("no free port for HTTP")?;
    config.kafka_addr = concrete(config.kafka_addr).context("no free port for Kafka")?;

    let announce = tokio::spawn(start_traffic_and_announce(
        config.http_addr,
        config.kafka_addr.to_string(),
        config.data_dir.clone(),
        fresh_dir.is_some(),
        args.rate,
    ));
    let outcome = crate::node::run(config).await;
    announce.abort();
    if let Some(dir) = fresh_dir {
        if outcome.is_ok() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the demo data dir");
            }
        } else {
            eprintln!("demo data left in {} for inspection", dir.display());
        }
    }
    outcome
}

/// `addr` itself, or with port 0 replaced by a port that is free right now.
fn concrete(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::TcpListener::bind(addr)?.local_addr()
}

/// Wait for the node, switch the simulator on, and print the addresses.
async fn start_traffic_and_announce(
    http: SocketAddr,
    kafka: String,
    data_dir: PathBuf,
    temporary: bool,
    rate: f64,
) {
    let host = if http.ip().is_unspecified() {
        format!("127.0.0.1:{}", http.port())
    } else {
        http.to_string()
    };
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut traffic = String::from("off (switch it on in the dashboard)");
    loop {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "the shop did not accept the simulator setting within {START_TIMEOUT:?}"
            );
            break;
        }
        if !matches!(request(&host, "GET", "/readyz", "").await, Ok((200, _))) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if rate <= 0.0 {
            break;
        }
        let body = format!(r#"{{"enabled":true,"rate_per_sec":{rate}}}"#);
        match request(&host, "POST", "/api/simulator", &body).await {
            Ok((200, _)) => {
                traffic = format!("{rate} events/s (the dashboard's switch and slider change it)");
                break;
            }
            // 503 while the shop takes no commands (stopping); anything else will not change.
            Ok((503, _)) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok((status, answer)) => {
                tracing::warn!(status, answer = %answer, "the shop refused the simulator setting");
                break;
            }
        }
    }
    let dir_note = if temporary { " (removed on exit)" } else { "" };
    println!(
        "\nSluice demo is running.\n  Dashboard:  http://{host}/\n  Kafka:      {kafka}  (e.g. kcat -L -b {kafka})\n  Traffic:    {traffic}\n  Data dir:   {}{dir_note}\nPress Ctrl-C to stop.\n",
        data_dir.display()
    );
}

/// A minimal HTTP/1.1 request to this node: the status code and the body.
async fn request(
    host: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(host).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status line"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_becomes_a_concrete_port() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let chosen = concrete(any).expect("a free port");
        assert_ne!(chosen.port(), 0);
        let fixed = SocketAddr::from(([127, 0, 0, 1], 8080));
        assert_eq!(concrete(fixed).expect("unchanged"), fixed);
    }
}
