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

/// Apply fetched batches to `model` in one transaction (on a blocking thread).
pub(crate) async fn apply_batches(
    model: &Model,
    batches: Vec<FetchedBatch>,
    below: Option<&HashMap<(String, i32), i64>>,
) -> Result<Applied, ModelError> {
    let model = model.clone();
    let below = below.cloned();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        let mut last: Vec<(String, i32, i64)> = Vec::new();
        for batch in &batches {
            let limit = below
                .as_ref()
                .map(|b| {
                    b.get(&(batch.topic.to_string(), batch.partition))
                        .copied()
                        .unwrap_or(0)
                })
                .unwrap_or(i64::MAX);
            let mut next = None;
            for r in batch.records.iter().filter(|r| r.offset < limit) {
                records.push(SourceRecord {
                    topic: &batch.topic,
                    partition: batch.partition,
                    offset: r.offset,
                    value: r.value.as_deref(),
                });
                next = Some(r.offset + 1);
            }
            if let Some(next) = next {
                last.push((batch.topic.to_string(), batch.partition, next));
            }
        }
        let count = records.len();
        model.apply(&records).map(|changes| (changes, last, count))
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(e) => Err(ModelError::Corrupt {
            key: "-".to_owned(),
            reason: format!("apply task failed: {e}"),
        }),
    }
}
