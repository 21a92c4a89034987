//! The share groups' `simple` assignor (KIP-932): spreads each topic's
//! partitions over the members subscribed to it.
//!
//! A share-partition hands each record to one member at a time, so several
//! members may share a partition; a partition nobody is assigned is read by
//! nobody. Per topic, in topic name order:
//! - more partitions than subscribers: each partition goes to one member,
//!   round robin;
//! - as many subscribers or more: each member gets one partition, round
//!   robin, so every partition has at least one member and the members
//!   spread evenly over them.
//!
//! The round robin of each topic starts where the previous topic's ended,
//! so that many small topics do not all land on the first member. Members
//! are taken in member id order: the same group gives the same assignment
//! on every call (and every node).
//!
//! Pure: no locks, no I/O.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::group::consumer::TopicCatalog;

/// Each member's partitions by topic id.
pub type ShareAssignment = BTreeMap<String, BTreeMap<Uuid, Vec<i32>>>;

/// The assignment of `members` (member id → subscribed topic names) over
/// the topics of `catalog` (a subscribed topic that does not exist is left
/// out). Every member is in the answer, with no partitions if it has none.
pub fn assign<'a>(
    members: impl IntoIterator<Item = (&'a String, &'a Vec<String>)>,
    catalog: &TopicCatalog,
) -> ShareAssignment {
    let members: BTreeMap<&String, &Vec<String>> = members.into_iter().collect();
    let mut out: ShareAssignment = members
        .keys()
        .map(|id| ((*id).clone(), BTreeMap::new()))
        .collect();
    let mut cursor = 0usize;
    for (name, (topic_id, count)) in catalog {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, subscribed)| subscribed.iter().any(|s| s == name))
            .map(|(id, _)| *id)
            .collect();
        let partitions = usize::try_from(*count).unwrap_or(0);
        if subscribers.is_empty() || partitions == 0 {
            continue;
        }
        let slots = partitions.max(subscribers.len());
        for slot in 0..slots {
            let member = subscribers[(cursor + slot) % subscribers.len()];
            // `slot % partitions` is below `count`, an i32.
            let partition = (slot % partitions) as i32;
            let held = out.get_mut(member).map(|m| m.entry(*topic_id).or_default());
            if let Some(held) = held {
                if !held.contains(&partition) {
                    held.push(partition);
                }
            }
        }
        cursor = (cursor + slots) % subscribers.len();
    }
    for topics in out.values_mut() {
        for partitions in topics.values_mut() {
            partitions.sort_unstable();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(topics: &[(&str, i32)]) -> (TopicCatalog, BTreeMap<String, Uuid>) {
        let mut c = TopicCatalog::new();
        let mut ids = BTreeMap::new();
        for (name, n) in topics {
            let id = Uuid::new_v4();
            c.insert((*name).to_owned(), (id, *n));
            ids.insert((*name).to_owned(), id);
        }
        (c, ids)
    }

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(id, topics)| {
                (
                    (*id).to_owned(),
                    topics.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    }

    /// How many members hold each partition of `topic`.
    fn holders(a: &ShareAssignment, topic: Uuid, partitions: i32) -> Vec<usize> {
        (0..partitions)
            .map(|p| {
                a.values()
                    .filter(|m| m.get(&topic).is_some_and(|ps| ps.contains(&p)))
                    .count()
            })
            .collect()
    }

    #[test]
    fn more_partitions_than_members_gives_each_partition_one_member_evenly() {
        let (c, ids) = catalog(&[("orders", 6)]);
        let m = members(&[("a", &["orders"]), ("b", &["orders"]), ("c", &["orders"])]);
        let a = assign(&m, &c);
        assert_eq!(holders(&a, ids["orders"], 6), vec![1; 6]);
        for member in a.values() {
            assert_eq!(member[&ids["orders"]].len(), 2);
        }
    }

    #[test]
    fn more_members_than_partitions_gives_every_partition_a_member() {
        let (c, ids) = catalog(&[("orders", 2)]);
        let m = members(&[
            ("a", &["orders"]),
            ("b", &["orders"]),
            ("c", &["orders"]),
            ("d", &["orders"]),
            ("e", &["orders"]),
        ]);
        let a = assign(&m, &c);
        let h = holders(&a, ids["orders"], 2);
        assert!(h.iter().all(|n| *n >= 2), "{h:?}");
        assert_eq!(h.iter().sum::<usize>(), 5);
        for member in a.values() {
            assert_eq!(member[&ids["orders"]].len(), 1);
        }
    }

    #[test]
    fn a_lone_member_gets_every_partition_and_unknown_topics_are_left_out() {
        let (c, ids) = catalog(&[("orders", 4)]);
        let m = members(&[("a", &["orders", "missing"])]);
        let a = assign(&m, &c);
        assert_eq!(a["a"].len(), 1);
        assert_eq!(a["a"][&ids["orders"]], vec![0, 1, 2, 3]);
    }

    #[test]
    fn only_subscribers_get_a_topic_and_small_topics_spread_over_members() {
        let (c, ids) = catalog(&[("t1", 1), ("t2", 1), ("t3", 1), ("t4", 3)]);
        let m = members(&[
            ("a", &["t1", "t2", "t3"]),
            ("b", &["t1", "t2", "t3"]),
            ("c", &["t1", "t2", "t3", "t4"]),
        ]);
        let a = assign(&m, &c);
        // Each one-partition topic is held by all three (more members than
        // partitions); t4 only by its one subscriber.
        for t in ["t1", "t2", "t3"] {
            assert_eq!(holders(&a, ids[t], 1), vec![3]);
        }
        assert_eq!(a["c"][&ids["t4"]], vec![0, 1, 2]);
        assert!(!a["a"].contains_key(&ids["t4"]));
        let (c, ids) = catalog(&[("x", 1), ("y", 1), ("z", 1)]);
        let m = members(&[("a", &["x"]), ("b", &["x", "y", "z"]), ("c", &["y", "z"])]);
        let a = assign(&m, &c);
        assert_eq!(holders(&a, ids["x"], 1), vec![2]);
        assert!(a.values().all(|topics| !topics.is_empty()));
    }

    #[test]
    fn the_same_group_gets_the_same_assignment() {
        let (c, _) = catalog(&[("a", 5), ("b", 3)]);
        let m = members(&[("m2", &["a", "b"]), ("m1", &["a"]), ("m3", &["b"])]);
        assert_eq!(assign(&m, &c), assign(&m, &c));
        let none = members(&[("m1", &[])]);
        assert!(assign(&none, &c)["m1"].is_empty());
    }
}
