//! Applying fetched record batches to a read model, shared by the projector
//! (the live model) and the replay (a model being rebuilt).
//!
//! Must never: decide which offsets to read or commit (its callers do), or
//! import the other workers or HTTP.

use std::collections::HashMap;

use crate::app::read_model::{Change, Model, ModelError, SourceRecord};
use crate::client::FetchedBatch;

/// What one apply did: the changes, the next offset of every partition it
/// applied records of, and how many records it applied.
pub(crate) type Applied = (Vec<Change>, Vec<(String, i32, i64)>, usize);

/// Apply fetched batches to `model` in one transaction of its store,
/// leaving out records at or past `below` (per partition) when given.
pub(crate) async fn apply_batches(
    model: &Model,
    batches: Vec<FetchedBatch>,
    below: Option<&HashMap<(String, i32), i64>>,
) -> Result<Applied, ModelError> {
    let mut records = Vec::new();
    for batch in &batches {
        let limit = below
            .map(|b| {
                b.get(&(batch.topic.to_string(), batch.partition))
                    .copied()
                    .unwrap_or(0)
            })
            .unwrap_or(i64::MAX);
        for r in batch.records.iter().filter(|r| r.offset < limit) {
            records.push(SourceRecord {
                topic: batch.topic.clone(),
                partition: batch.partition,
                offset: r.offset,
                value: r.value.clone(),
            });
        }
    }
    let count = records.len();
    let applied = model.apply(records).await?;
    let last = applied
        .offsets
        .into_iter()
        .map(|((topic, partition), next)| (topic, partition, next))
        .collect();
    Ok((applied.changes, last, count))
}
