//! Removing a broker from the cluster (`sluice cluster remove-node`, Kafka's
//! UnregisterBroker): once the image marks a broker as decommissioning, the
//! controller reassigns each of its replicas to the least loaded live broker
//! that does not hold the partition yet (the reassignment completes when the
//! new replica is in sync), and when it holds none any more removes it from
//! the Raft voters and unregisters it from the image. The broker can then be
//! stopped.
//!
//! The plan is a pure function of the image, so a new controller picks the
//! work up where the old one left it. Must never: reassign a partition that
//! is already being reassigned. Locks: none held across an await.

use std::collections::BTreeMap;

use super::image::{Command, MetadataImage};
use super::ClusterHandle;

/// One thing the controller does next for a decommissioning broker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Move a partition to `target` (the leaving broker replaced).
    Reassign {
        name: String,
        partition: i32,
        target: Vec<i32>,
    },
    /// The broker holds nothing: out of the voters and the image.
    Remove { broker_id: i32 },
}

/// What to do now, as the image stands.
fn next_steps(image: &MetadataImage) -> Vec<Step> {
    let leaving: Vec<i32> = image
        .brokers
        .values()
        .filter(|b| b.decommissioning)
        .map(|b| b.broker_id)
        .collect();
    if leaving.is_empty() {
        return Vec::new();
    }
    let mut load: BTreeMap<i32, usize> = image
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.decommissioning)
        .map(|b| (b.broker_id, 0))
        .collect();
    for p in image.topics.values().flat_map(|t| t.partitions.iter()) {
        for r in &p.replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    let mut steps = Vec::new();
    for broker_id in leaving {
        let held = image.partitions_of(broker_id);
        if held.is_empty() {
            steps.push(Step::Remove { broker_id });
            continue;
        }
        for (name, partition) in held {
            let Some(p) = image
                .topics
                .get(&name)
                .and_then(|t| t.partitions.get(partition as usize))
            else {
                continue;
            };
            if p.reassigning() {
                continue;
            }
            let candidate = load
                .iter()
                .filter(|(b, _)| !p.replicas.contains(b))
                .min_by_key(|(b, n)| (**n, **b))
                .map(|(b, _)| *b);
            let Some(candidate) = candidate else {
                continue;
            };
            if let Some(n) = load.get_mut(&candidate) {
                *n += 1;
            }
            let target = p
                .replicas
                .iter()
                .map(|r| if *r == broker_id { candidate } else { *r })
                .collect();
            steps.push(Step::Reassign {
                name,
                partition,
                target,
            });
        }
    }
    steps
}

/// On the controller: take the next steps of every broker being removed.
pub(super) async fn drive(handle: &ClusterHandle) {
    let steps = handle.read_image(next_steps);
    for step in steps {
        match step {
            Step::Reassign {
                name,
                partition,
                target,
            } => {
                tracing::info!(topic = %name, partition, ?target, "moving a replica off a broker being removed");
                let command = Command::ReassignPartition {
                    name,
                    partition,
                    target: Some(target),
                };
                if let Err(e) = handle.propose_local(command).await {
                    tracing::warn!(error = %e, "reassignment not committed");
                }
            }
            Step::Remove { broker_id } => {
                tracing::info!(
                    broker = broker_id,
                    "broker holds no replica; removing it from the cluster"
                );
                if let Err(e) = handle.remove_voter(broker_id as u64).await {
                    tracing::warn!(broker = broker_id, error = %e, "voter not removed");
                    continue;
                }
                if let Err(e) = handle
                    .propose_local(Command::UnregisterBroker { broker_id })
                    .await
                {
                    tracing::warn!(broker = broker_id, error = %e, "broker not unregistered");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::image::tests::register;
    use std::collections::BTreeMap;

    #[test]
    fn replicas_of_a_leaving_broker_go_to_the_least_loaded_others_then_it_is_removed() {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.apply(&register(id));
        }
        image.apply(&Command::CreateTopic {
            name: "t".into(),
            topic_id: uuid::Uuid::new_v4(),
            configs: BTreeMap::new(),
            assignments: vec![vec![3, 1], vec![2, 1]],
        });
        assert!(next_steps(&image).is_empty());
        image.apply(&Command::DecommissionBroker { broker_id: 3 });
        let steps = next_steps(&image);
        assert_eq!(
            steps,
            vec![Step::Reassign {
                name: "t".into(),
                partition: 0,
                target: vec![2, 1],
            }]
        );
        let Step::Reassign { target, .. } = &steps[0] else {
            unreachable!()
        };
        image.apply(&Command::ReassignPartition {
            name: "t".into(),
            partition: 0,
            target: Some(target.clone()),
        });
        // Under way: nothing more to do until it completes.
        assert!(next_steps(&image).is_empty());
        let p = &image.topics["t"].partitions[0];
        image.apply(&Command::UpdatePartitionLeadership {
            name: "t".into(),
            partition: 0,
            leader: p.leader,
            isr: vec![2, 1, 3],
            partition_epoch: p.partition_epoch,
        });
        assert_eq!(next_steps(&image), vec![Step::Remove { broker_id: 3 }]);
    }
}
