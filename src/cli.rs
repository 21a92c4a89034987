//! The command line: `serve`, `config`, `demo`, `bench`, `groups`, `tokens`, `users`, `cluster` and `shop`. The only place that turns
//! errors into exit codes.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config_file::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible log in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node: the Kafka listener and the HTTP listener. Each flag may
    /// also come from its SLUICE_* variable or from the --config file.
    Serve(ServeArgs),
    /// The effective node configuration: `sluice config show [serve's flags]`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a demo node: the shop with simulated traffic, on a fresh temporary
    /// data dir unless --data-dir is given; prints the dashboard's address.
    Demo(crate::demo::DemoArgs),
    /// Load generators speaking the Kafka protocol to any broker.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Consumer groups: list, describe (members, lag), reset offsets.
    #[command(subcommand)]
    Groups(crate::groups_cli::GroupsCommand),
    /// HTTP API tokens for --http-auth, in a stopped node's data dir.
    #[command(subcommand)]
    Tokens(crate::tokens_cli::TokensCommand),
    /// SCRAM users in a stopped node's data dir: add, remove, list.
    #[command(subcommand)]
    Users(crate::users_cli::UsersCommand),
    /// Start a local cluster: N child `serve` processes with distinct ports
    /// and data dirs; Ctrl-C stops them all. `cluster status` and `cluster
    /// remove-node` act on a running cluster.
    Cluster(ClusterCli),
    /// Parts of the shop run alone: `shop payment-processor`.
    #[command(subcommand)]
    Shop(crate::app::ShopCommand),
}

/// `sluice cluster [--nodes N ...]` launches; its subcommands act on a
/// running cluster.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ClusterCli {
    #[command(subcommand)]
    command: Option<crate::cluster_cli::ClusterCommand>,
    #[command(flatten)]
    launch: crate::cluster::launcher::ClusterArgs,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the configuration `sluice serve` would run with these flags,
    /// environment and config file, as TOML, with where each value came from.
    Show(ServeArgs),
}

/// The flags after the subcommand's name(s): what `config_file::resolve` reads again.
fn subcommand_args(words: usize) -> Vec<std::ffi::OsString> {
    std::env::args_os().skip(1 + words).collect()
}

/// Parse the command line, run the command, and map its outcome to an exit code.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `demo` picks a fresh data dir only when none was asked for.
    let data_dir_given = matches.subcommand_matches("demo").is_some_and(|m| {
        m.value_source("data_dir") != Some(clap::parser::ValueSource::DefaultValue)
    });
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(_) => {
                let resolved = crate::config_file::resolve(&subcommand_args(1))?;
                crate::node::run(resolved.node).await
            }
            Command::Config(ConfigCommand::Show(_)) => {
                crate::config_file::show(&subcommand_args(2)).map_err(Into::into)
            }
            Command::Demo(args) => crate::demo::run(args, data_dir_given).await,
            Command::Bench(cmd) => crate::bench::run(cmd).await,
            Command::Groups(cmd) => crate::groups_cli::run(cmd).await,
            Command::Cluster(ClusterCli {
                command: Some(cmd), ..
            }) => crate::cluster_cli::run(cmd).await,
            Command::Cluster(ClusterCli { launch, .. }) => {
                crate::cluster::launcher::run(launch).await
            }
            Command::Tokens(cmd) => crate::tokens_cli::run(cmd),
            Command::Users(cmd) => crate::users_cli::run(cmd).await,
            Command::Shop(cmd) => {
                crate::app::run_command(cmd, crate::node::wait_for_signal()).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft narrates its internals at info; its warnings still show.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
