//! The CQRS read model: kept by the projector and read by queries, in the
//! node's own sled database (the default) or in a PostgreSQL database shared
//! by several shop instances (`--read-model postgres://...`).
//!
//! `store` is the seam (`ModelStore`, one generation of the model) and its
//! shared types, `rule` the pure projection every store applies,
//! `sled_store` and `postgres` the two stores, `query` the listings'
//! filters, `progress` the applied and produced offsets. [`ReadModel`] (this
//! file) is the live model of the node: which store and generation is
//! current, the hand-over to a rebuilt generation after a replay, the flush,
//! and (on a shared database) following what other nodes applied.
//!
//! Must never: talk to Kafka, shape JSON, or import the command side, the
//! workers or HTTP.

mod postgres;
mod progress;
mod query;
mod rule;
mod sled_store;
mod store;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::storage::Storage;

pub(crate) use progress::Progress;
pub(crate) use query::{DeliveryFilter, OrderFilter, PaymentFilter};
pub(crate) use store::{Change, Model, ModelError, SourceRecord};

use postgres::PgDatabase;
use sled_store::{tree_name, SledModel};

/// Tree holding the shop's own bookkeeping: the instance id and the current
/// read-model generation (of the sled store).
const META_TREE: &str = "app:meta";

/// How often a node on a shared database reads what the others applied.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// Where the read model lives.
enum Backend {
    /// The node's own database.
    Sled(Storage),
    /// A PostgreSQL database shared with other nodes.
    Postgres(Arc<PgDatabase>),
}

/// The live read model of this node.
pub(crate) struct ReadModel {
    /// The node's database (the instance id; the model itself on sled).
    storage: Storage,
    /// Where the model lives.
    backend: Backend,
    /// The live model (replaced whole by a replay).
    model: RwLock<Model>,
    /// Applied and produced offsets.
    pub(crate) progress: Progress,
    /// Bumped whenever the model changes (the stats push watches it).
    version: AtomicU64,
}

impl ReadModel {
    /// Open the read model: in `storage` (dropping any half-built replay),
    /// or in the PostgreSQL database at `url` (migrating its schema).
    /// Returns the model and the stable id of this node's shop instance.
    pub(crate) async fn open(
        storage: Storage,
        url: Option<&str>,
    ) -> Result<(ReadModel, String), ModelError> {
        let meta = storage.app_tree(META_TREE)?;
        let instance_id = match meta.get(b"instance_id")? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
                meta.insert(b"instance_id", id.as_bytes())?;
                id
            }
        };
        let (backend, model) = match url {
            Some(url) => {
                let db = PgDatabase::open(url).await?;
                let generation = db.current_generation().await?;
                let model = db.model(generation);
                (Backend::Postgres(db), model)
            }
            None => {
                let own = storage.clone();
                let model = tokio::task::spawn_blocking(move || open_sled(&own))
                    .await
                    .map_err(|e| ModelError::Corrupt {
                        key: "-".to_owned(),
                        reason: format!("opening the read model failed: {e}"),
                    })??;
                (Backend::Sled(storage.clone()), model)
            }
        };
        let applied = model.stored_offsets().await?;
        let read_model = ReadModel {
            storage,
            backend,
            model: RwLock::new(model),
            progress: Progress::default(),
            version: AtomicU64::new(0),
        };
        read_model.progress.reset_applied(applied);
        Ok((read_model, instance_id))
    }

    /// The live model.
    pub(crate) fn current(&self) -> Model {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The consumer group of the projector: one per node on sled (every node
    /// reads every partition), one per database on PostgreSQL (the nodes
    /// split the partitions).
    pub(crate) fn projector_group(&self, instance_id: &str) -> String {
        match &self.backend {
            Backend::Sled(_) => format!("sluice-shop-projector-{instance_id}"),
            Backend::Postgres(db) => format!("sluice-shop-projector-{}", db.shop_id),
        }
    }

    /// How many times the model changed since the start.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Say that the model changed.
    pub(crate) fn bump_version(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// An empty model for a new generation (on sled `generation`, replacing
    /// any left over; on PostgreSQL the next number of its sequence).
    pub(crate) async fn fresh_generation(&self, generation: u64) -> Result<Model, ModelError> {
        match &self.backend {
            Backend::Sled(storage) => {
                let name = tree_name(generation);
                storage.drop_tree(&name)?;
                Ok(sled_model(storage.app_tree(&name)?, generation))
            }
            Backend::Postgres(db) => db.fresh_generation().await,
        }
    }

    /// Make `model` the live one: record its generation, then swap it in.
    pub(crate) async fn install(&self, model: Model) -> Result<(), ModelError> {
        match &self.backend {
            Backend::Sled(storage) => {
                let meta = storage.app_tree(META_TREE)?;
                meta.insert(b"generation", &model.generation.to_be_bytes())?;
                storage.flush().await?;
            }
            Backend::Postgres(db) => db.install(&model).await?,
        }
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
        Ok(())
    }

    /// Drop a generation (a replaced or unfinished model).
    pub(crate) async fn discard(&self, model: Model) -> Result<(), ModelError> {
        match &self.backend {
            Backend::Sled(storage) => Ok(storage.drop_tree(&tree_name(model.generation))?),
            Backend::Postgres(db) => db.discard(&model).await,
        }
    }

    /// Make everything applied so far durable (a PostgreSQL commit already is).
    pub(crate) async fn flush(&self) -> Result<(), ModelError> {
        Ok(self.storage.flush().await?)
    }

    /// On a shared database, follow what the other nodes do until
    /// `shutdown`: their applied offsets (so a command waiting for its own
    /// writes sees them applied, whichever node applied them) and a
    /// generation another node's replay installed. Returns at once on sled.
    pub(crate) async fn follow(&self, mut shutdown: watch::Receiver<bool>) {
        let Backend::Postgres(db) = &self.backend else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.follow_once(db).await {
                tracing::debug!(error = %e, "cannot read the shared read model's progress");
            }
        }
    }

    async fn follow_once(&self, db: &Arc<PgDatabase>) -> Result<(), ModelError> {
        let generation = db.current_generation().await?;
        if generation != self.current().generation {
            let model = db.model(generation);
            let applied = model.stored_offsets().await?;
            *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
            self.progress.reset_applied(applied);
            self.bump_version();
            tracing::info!(
                generation,
                "the shared read model moved to a new generation"
            );
            return Ok(());
        }
        let stored = self.current().stored_offsets().await?;
        if self.progress.merge_applied(&stored) {
            self.bump_version();
        }
        Ok(())
    }
}

fn sled_model(tree: crate::storage::AppTree, generation: u64) -> Model {
    Model {
        store: Arc::new(SledModel { tree }),
        generation,
    }
}

/// Open the current generation in `storage`, dropping unfinished ones.
fn open_sled(storage: &Storage) -> Result<Model, ModelError> {
    let meta = storage.app_tree(META_TREE)?;
    let generation = match meta.get(b"generation")? {
        Some(v) => <[u8; 8]>::try_from(v.as_slice()).map_or(1, u64::from_be_bytes),
        None => {
            meta.insert(b"generation", &1u64.to_be_bytes())?;
            1
        }
    };
    let current = tree_name(generation);
    for name in storage.tree_names_with("app:model:") {
        if name != current {
            tracing::info!(tree = %name, "dropping an unfinished read model");
            storage.drop_tree(&name)?;
        }
    }
    Ok(sled_model(storage.app_tree(&current)?, generation))
}
