//! `sluice tokens add | remove | list`: the HTTP listener's API tokens in a
//! node's data dir (used with `--http-auth`).
//!
//! It opens the node's database directly, so the node must be stopped (the
//! database is locked while it runs); the node reads the tokens on every
//! request, so what is changed here counts from its next start.
//! Must never: print a token except the one `add` makes, once.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::storage::Storage;
use crate::web::auth::tokens::{Role, TokenStore};

/// The `tokens` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Add a token; prints it once on standard output (it is stored hashed).
    Add {
        /// A name for the token (who or what uses it).
        name: String,
        /// viewer (reads, WebSocket), operator (shop writes) or admin
        /// (replay, simulator, cluster and topic administration).
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Remove the token named NAME; it stops working at once.
    Remove {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// List the tokens: name, role, created (never the token).
    List {
        #[command(flatten)]
        dir: DataDir,
    },
}

/// The stopped node's data dir.
#[derive(Debug, clap::Args)]
pub struct DataDir {
    /// The node's data directory (as given to `sluice serve --data-dir`).
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
}

impl DataDir {
    fn open(&self) -> anyhow::Result<TokenStore> {
        let storage = Storage::open(&self.data_dir, 0, 8 * 1024 * 1024).with_context(|| {
            format!(
                "cannot open data dir {} (is its node still running? stop it first)",
                self.data_dir.display()
            )
        })?;
        Ok(TokenStore::new(storage))
    }
}

pub fn run(cmd: TokensCommand) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::Add { name, role, dir } => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let token = dir.open()?.add(&name, role, now_ms)?;
            eprintln!("token {name:?} ({role}) added; it is shown only now:");
            println!("{token}");
        }
        TokensCommand::Remove { name, dir } => {
            if !dir.open()?.remove(&name)? {
                bail!("no token named {name:?}");
            }
            eprintln!("token {name:?} removed");
        }
        TokensCommand::List { dir } => {
            println!("NAME\tROLE\tCREATED");
            for record in dir.open()?.list()? {
                println!(
                    "{}\t{}\t{}",
                    record.name,
                    record.role,
                    rfc3339(record.created_ms)
                );
            }
        }
    }
    Ok(())
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn creation_times_print_as_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_210_096_000), "2024-02-29T12:34:56Z");
    }
}
