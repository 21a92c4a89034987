//! Parts of the shop that run alone, without a node: `sluice shop
//! payment-processor --bootstrap HOST:PORT` runs only the payment processor
//! (what `sluice serve --shop-payment-processor false` leaves out), so it
//! can be scaled, stopped or killed on its own.
//!
//! Must never: open a read model or serve HTTP.

use anyhow::Context;
use tokio::sync::watch;

use super::domain::events::{PAYMENTS_TOPIC, PAYMENT_REQUESTS_TOPIC};
use super::workers::payment_processor::{self, ProcessorConfig};
use crate::client::{Client, ClientConfig};

/// `sluice shop ...`
#[derive(Debug, clap::Subcommand)]
pub enum ShopCommand {
    /// Run only the shop's payment processor until SIGINT/SIGTERM.
    PaymentProcessor(PaymentProcessorArgs),
}

/// Flags of `sluice shop payment-processor`.
#[derive(Debug, clap::Args)]
pub struct PaymentProcessorArgs {
    /// Kafka bootstrap servers, comma separated.
    #[arg(long)]
    pub bootstrap: String,
    /// Transactional id (Kafka's `transactional.id`) and static group member
    /// id; keep it across restarts so a new instance fences the old one.
    #[arg(long, default_value = "shop-payments-standalone")]
    pub transactional_id: String,
    /// Partition count of `payments`/`payment-requests` if they do not exist yet.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
}

/// Run a `sluice shop` subcommand until `stop` (the caller's SIGINT/SIGTERM
/// wait) completes.
pub async fn run_command(
    cmd: ShopCommand,
    stop_signal: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    match cmd {
        ShopCommand::PaymentProcessor(args) => {
            let client_config = ClientConfig::new(&args.bootstrap);
            let client = Client::connect(client_config.clone())
                .await
                .with_context(|| format!("cannot reach the cluster at {}", args.bootstrap))?;
            for topic in [PAYMENTS_TOPIC, PAYMENT_REQUESTS_TOPIC] {
                client
                    .ensure_topic(topic, args.partitions, -1)
                    .await
                    .with_context(|| format!("cannot create topic {topic}"))?;
            }
            let (stop, shutdown) = watch::channel(false);
            let config = ProcessorConfig {
                client: client_config,
                transactional_id: args.transactional_id,
            };
            let worker = tokio::spawn(payment_processor::run(config, shutdown));
            stop_signal.await;
            let _ = stop.send(true);
            let _ = worker.await;
            Ok(())
        }
    }
}
