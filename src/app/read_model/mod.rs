//! The CQRS read model: the shop's own sled trees (`app:*`), kept by the
//! projector and read by queries.
//!
//! `store` owns the key layout and the projection rule, `query` the listings,
//! `progress` the applied and produced offsets. [`ReadModel`] (this file) is
//! the live model of the node: which generation is current, the hand-over to
//! a rebuilt generation after a replay, the flush.
//!
//! This is the only place of the shop that touches sled. Must never: talk to
//! Kafka, shape JSON, or import the command side, the workers or HTTP.

mod progress;
mod query;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::storage::Storage;

pub(crate) use progress::Progress;
pub(crate) use query::{DeliveryFilter, OrderFilter, PaymentFilter};
pub(crate) use store::{Change, Model, ModelError, SourceRecord};

/// Tree holding the shop's own bookkeeping: the instance id and the current
/// read-model generation.
const META_TREE: &str = "app:meta";

/// The live read model of this node.
pub(crate) struct ReadModel {
    /// The node's database, holding the `app:*` trees.
    storage: Storage,
    /// The live model (replaced whole by a replay).
    model: RwLock<Model>,
    /// Applied and produced offsets.
    pub(crate) progress: Progress,
    /// Bumped whenever the model changes (the stats push watches it).
    version: AtomicU64,
}

impl ReadModel {
    /// Open the shop's trees in `storage`, dropping any half-built replay;
    /// returns the model and the stable id of this node's shop instance.
    pub(crate) fn open(storage: Storage) -> Result<(ReadModel, String), ModelError> {
        let meta = storage.db.open_tree(META_TREE)?;
        let instance_id = match meta.get("instance_id")? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
                meta.insert("instance_id", id.as_bytes())?;
                id
            }
        };
        let generation = match meta.get("generation")? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref()).map_or(1, u64::from_be_bytes),
            None => {
                meta.insert("generation", &1u64.to_be_bytes())?;
                1
            }
        };
        let current = store::tree_name(generation);
        for name in storage.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if name.starts_with("app:model:") && name != current {
                tracing::info!(tree = %name, "dropping an unfinished read model");
                storage.db.drop_tree(name.as_bytes())?;
            }
        }
        let model = Model::new(storage.db.open_tree(&current)?, generation);
        let applied: HashMap<(String, i32), i64> = model.stored_offsets()?;
        let read_model = ReadModel {
            storage,
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

    /// How many times the model changed since the start.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Say that the model changed.
    pub(crate) fn bump_version(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// An empty tree for generation `generation` (replacing any left over).
    pub(crate) fn fresh_generation(&self, generation: u64) -> Result<Model, ModelError> {
        let name = store::tree_name(generation);
        let db = &self.storage.db;
        db.drop_tree(name.as_bytes())?;
        Ok(Model::new(db.open_tree(&name)?, generation))
    }

    /// Make `model` the live one: record its generation, then swap it in.
    pub(crate) fn install(&self, model: Model) -> Result<(), ModelError> {
        let meta = self.storage.db.open_tree(META_TREE)?;
        meta.insert("generation", &model.generation.to_be_bytes())?;
        meta.flush()?;
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
        Ok(())
    }

    /// Drop a generation's tree (a replaced or unfinished model).
    pub(crate) fn discard(&self, model: Model) -> Result<(), ModelError> {
        model.drop_tree(&self.storage.db)
    }

    /// Make everything applied so far durable.
    pub(crate) async fn flush(&self) -> Result<(), crate::storage::StorageError> {
        self.storage.flush().await
    }
}
