//! `sluice users add|remove|list`: SCRAM credentials in a stopped node's
//! data dir, so the first user exists before the node's first start. The
//! password is salted and hashed here (PBKDF2, RFC 5802's StoredKey and
//! ServerKey); only those are stored.
//!
//! A running node holds sled's lock on its data dir: the command then
//! refuses, and users are managed through the Admin API
//! (AlterUserScramCredentials). Must never: store or print a password.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::security::credentials::CredentialChange;
use crate::security::scram::{Mechanism, ScramCredential, DEFAULT_ITERATIONS};
use crate::security::SecurityChange;
use crate::storage::Storage;

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Add a user's SCRAM credential, or replace it. The password comes from
    /// --password, or else from the first line of standard input.
    Add {
        /// The user name (the principal is User:NAME).
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN logins are checked against either).
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// The password (visible to other local users in the process list;
        /// prefer standard input).
        #[arg(long)]
        password: Option<String>,
        /// Read the password from standard input (the default without --password).
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        /// PBKDF2 iterations (4096..=16384).
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: i32,
        /// The stopped node's data dir.
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
        data_dir: PathBuf,
    },
    /// Remove a user's credential for one mechanism, or all of them.
    Remove {
        name: String,
        #[arg(long)]
        mechanism: Option<String>,
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
        data_dir: PathBuf,
    },
    /// List the users and their mechanisms (never a secret).
    List {
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
        data_dir: PathBuf,
    },
}

fn mechanism(name: &str) -> anyhow::Result<Mechanism> {
    Mechanism::from_name(name)
        .with_context(|| format!("unknown mechanism {name} (SCRAM-SHA-256 or SCRAM-SHA-512)"))
}

fn open(data_dir: &Path) -> anyhow::Result<Storage> {
    Storage::open(data_dir, 0, 16 * 1024 * 1024).map_err(|e| {
        anyhow::anyhow!(
            "cannot open {}: {e}\n(is the node running? it locks its data dir; stop it first, \
             or change users through the Admin API)",
            data_dir.display()
        )
    })
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

pub async fn run(cmd: UsersCommand) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .context("the users command panicked")?
}

fn run_blocking(cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::Add {
            name,
            mechanism: m,
            password,
            password_stdin: _,
            iterations,
            data_dir,
        } => {
            let m = mechanism(&m)?;
            let password = match password {
                Some(p) => p,
                None => read_password()?,
            };
            let credential = ScramCredential::new(m, password.as_bytes(), iterations);
            let storage = open(&data_dir)?;
            let change = SecurityChange::Credential(CredentialChange::Upsert {
                user: name.clone(),
                mechanism: m,
                credential,
            });
            crate::broker::edit_stored_security(&storage, Some(&change))?;
            println!("user {name}: {} credential stored", m.name());
        }
        UsersCommand::Remove {
            name,
            mechanism: m,
            data_dir,
        } => {
            let m = m.as_deref().map(mechanism).transpose()?;
            let storage = open(&data_dir)?;
            let change = SecurityChange::Credential(CredentialChange::Delete {
                user: name.clone(),
                mechanism: m,
            });
            crate::broker::edit_stored_security(&storage, Some(&change))?;
            println!("user {name}: removed");
        }
        UsersCommand::List { data_dir } => {
            let storage = open(&data_dir)?;
            let state = crate::broker::edit_stored_security(&storage, None)?;
            for (user, by_mechanism) in &state.credentials.users {
                let list: Vec<String> = by_mechanism
                    .iter()
                    .map(|(m, c)| format!("{} (iterations {})", m.name(), c.iterations))
                    .collect();
                println!("{user}\t{}", list.join(", "));
            }
        }
    }
    Ok(())
}
