//! `sluice cluster --nodes N`: the one-command way to try a cluster. Starts
//! N child `sluice serve` processes on 127.0.0.1 with distinct ports and data
//! dirs, prints them, forwards Ctrl-C/SIGTERM to every child and waits.
//!
//! Ports are chosen by binding 127.0.0.1:0 for every listener at once and
//! releasing them just before the children start (another process could
//! take one in between; then that child fails to bind and the launcher stops
//! them all). Node 1 runs the shop and its dashboard; the others do not.
//!
//! The nodes authenticate each other with a shared secret: the file given
//! with `--cluster-secret-file`, else `cluster.secret` in the base dir
//! (created with 32 random bytes, hex, mode 0600, on the first run and kept
//! for restarts).
//!
//! Must never: import the demo or anything of the shop. What `sluice demo
//! --nodes N` does once node 1 is up comes in as a callback
//! ([`LaunchOptions::on_first_node`]), registered by the caller above.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Command;
use tokio::sync::mpsc;

/// `sluice cluster` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Number of nodes, each a child `sluice serve` process.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub nodes: u32,

    /// Parent of the nodes' data dirs (`node-1`, `node-2`, ...); reusing it
    /// restarts the same cluster. Default: a new directory under the temp dir.
    #[arg(long)]
    pub base_dir: Option<PathBuf>,

    /// The cluster's shared secret, passed to every node (see `sluice serve
    /// --help`). Default: `cluster.secret` in the base dir, created if absent.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
}

/// Addresses of one child node.
struct NodePlan {
    data_dir: PathBuf,
    kafka_addr: String,
    http_addr: String,
    cluster_addr: String,
}

/// Where the launched cluster can be reached, as handed to
/// [`LaunchOptions::on_first_node`].
#[derive(Debug, Clone)]
pub struct LaunchedCluster {
    /// Node 1's HTTP address.
    pub first_http: SocketAddr,
    /// The bootstrap servers of every node, comma separated.
    pub bootstrap: String,
    /// The parent of the nodes' data dirs.
    pub base_dir: PathBuf,
    /// True when `base_dir` is removed on a clean exit.
    pub temporary: bool,
}

/// A task the launcher spawns beside the children once they are started.
pub type FirstNodeTask =
    Box<dyn FnOnce(LaunchedCluster) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// How `sluice demo --nodes N` changes the launch.
#[derive(Default)]
pub struct LaunchOptions {
    /// Run the shop on every node (each keeps its own read model), not only node 1.
    pub shop_on_every_node: bool,
    /// Run once the children are started (the demo switches node 1's traffic
    /// generator on and prints the dashboard's address).
    pub on_first_node: Option<FirstNodeTask>,
    /// Remove the data dirs on a clean exit when no `--base-dir` was given
    /// (as a single-node demo removes its temporary dir).
    pub remove_temporary_dir: bool,
}

impl std::fmt::Debug for LaunchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchOptions")
            .field("shop_on_every_node", &self.shop_on_every_node)
            .field("on_first_node", &self.on_first_node.is_some())
            .field("remove_temporary_dir", &self.remove_temporary_dir)
            .finish()
    }
}

/// Run the cluster until Ctrl-C/SIGTERM or until a node exits on its own.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    run_with(args, LaunchOptions::default()).await
}

/// `run`, with the demo's options.
pub async fn run_with(args: ClusterArgs, options: LaunchOptions) -> anyhow::Result<()> {
    let temporary = args.base_dir.is_none();
    let base_dir = match args.base_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("sluice-cluster-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base_dir)
        .with_context(|| format!("cannot create {}", base_dir.display()))?;
    let secret_file = match args.cluster_secret_file {
        Some(file) => file,
        None => ensure_secret_file(&base_dir.join(SECRET_FILE_NAME))?,
    };
    let ports = free_ports(3 * args.nodes as usize)?;
    let plans: BTreeMap<u32, NodePlan> = (1..=args.nodes)
        .map(|id| {
            let at = 3 * (id - 1) as usize;
            let plan = NodePlan {
                data_dir: base_dir.join(format!("node-{id}")),
                kafka_addr: format!("127.0.0.1:{}", ports[at]),
                http_addr: format!("127.0.0.1:{}", ports[at + 1]),
                cluster_addr: format!("127.0.0.1:{}", ports[at + 2]),
            };
            (id, plan)
        })
        .collect();
    let peers = plans
        .iter()
        .map(|(id, p)| format!("{id}={}", p.cluster_addr))
        .collect::<Vec<_>>()
        .join(",");

    let exe = std::env::current_exe().context("cannot find the sluice binary")?;
    println!(
        "sluice cluster: {} nodes under {}",
        args.nodes,
        base_dir.display()
    );
    let (exited_tx, mut exited_rx) = mpsc::unbounded_channel();
    let mut pids = BTreeMap::new();
    for (id, plan) in &plans {
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(&plan.data_dir)
            .args(["--kafka-addr", &plan.kafka_addr])
            .args(["--http-addr", &plan.http_addr])
            .args(["--cluster-addr", &plan.cluster_addr])
            .args(["--peers", &peers])
            .arg("--cluster-secret-file")
            .arg(&secret_file)
            .args([
                "--shop",
                if *id == 1 || options.shop_on_every_node {
                    "true"
                } else {
                    "false"
                },
            ])
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        let pid = child.id().context("child exited at once")?;
        pids.insert(*id, pid);
        println!(
            "  node {id}: pid {pid}  kafka {}  http http://{}  cluster {}  data {}",
            plan.kafka_addr,
            plan.http_addr,
            plan.cluster_addr,
            plan.data_dir.display()
        );
        let tx = exited_tx.clone();
        let node = *id;
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send((node, status));
        });
    }
    println!("  bootstrap servers: {}", bootstrap(&plans));
    println!("  cluster secret: {}", secret_file.display());
    println!("  Raft status: GET http://{{http}}/api/raft on any node; Ctrl-C stops all");
    let announce = match (options.on_first_node, plans.get(&1)) {
        (Some(task), Some(first)) => {
            let launched = LaunchedCluster {
                first_http: first.http_addr.parse().context("node 1's HTTP address")?,
                bootstrap: bootstrap(&plans),
                base_dir: base_dir.clone(),
                temporary: temporary && options.remove_temporary_dir,
            };
            Some(tokio::spawn(task(launched)))
        }
        _ => None,
    };

    let mut running = pids.clone();
    let mut failed = None;
    let _announce = announce;
    tokio::select! {
        _ = crate::node::wait_for_signal() => println!("sluice cluster: stopping all nodes"),
        Some((node, status)) = exited_rx.recv() => {
            running.remove(&node);
            eprintln!("sluice cluster: node {node} exited ({status:?}); stopping the others");
            failed = Some(node);
        }
    }
    for pid in running.values() {
        signal(*pid, libc::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, exited_rx.recv()).await {
            Ok(Some((node, status))) => {
                running.remove(&node);
                println!("  node {node} stopped ({status:?})");
            }
            Ok(None) => break,
            Err(_) => {
                for (node, pid) in &running {
                    eprintln!("  node {node} did not stop in time; killing it");
                    signal(*pid, libc::SIGKILL);
                }
                break;
            }
        }
    }
    match failed {
        Some(node) => anyhow::bail!("node {node} exited unexpectedly"),
        None => {
            if temporary && options.remove_temporary_dir && running.is_empty() {
                if let Err(e) = std::fs::remove_dir_all(&base_dir) {
                    tracing::warn!(dir = %base_dir.display(), error = %e, "cannot remove the demo data dirs");
                }
            }
            Ok(())
        }
    }
}

/// The name of the generated secret in the base dir.
const SECRET_FILE_NAME: &str = "cluster.secret";

/// `path`, holding a secret: created with 32 random bytes (hex, readable by
/// the owner only) unless it exists already.
fn ensure_secret_file(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the cluster secret {}", path.display()))?;
    file.write_all(format!("{hex}\n").as_bytes())
        .with_context(|| format!("cannot write the cluster secret {}", path.display()))?;
    Ok(path.to_path_buf())
}

fn bootstrap(plans: &BTreeMap<u32, NodePlan>) -> String {
    plans
        .values()
        .map(|p| p.kafka_addr.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `count` distinct free ports on 127.0.0.1 (all bound at once, then released).
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Send `sig` to one child by its pid.
fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) only takes plain integers; the pid is one of our
        // own children, not yet reaped (its waiter task has not reported).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(9).unwrap();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), 9);
    }

    #[test]
    fn a_secret_is_generated_once_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRET_FILE_NAME);
        ensure_secret_file(&path).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(first.trim().len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        ensure_secret_file(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    }
}
