//! The server-side assignors of the consumer group protocol (KIP-848):
//! `uniform` (the default: balanced and sticky) and `range` (per topic,
//! contiguous ranges in member order, so co-partitioned topics line up).
//!
//! Owns: turning the members' subscriptions, the topics' partition counts
//! and the previous target assignment into a new target assignment.
//! Must never: look at what members own right now (that is reconciliation's
//! business, `reconcile.rs`) or touch the group's lock or the log.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignor a member does not name: Kafka's first of
/// `group.consumer.assignors` (`uniform`).
pub const DEFAULT_ASSIGNOR: &str = "uniform";

/// The assignors this coordinator runs.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// What an assignor sees of one member.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    /// Ids of the topics the member subscribes to (and that exist).
    pub topics: BTreeSet<Uuid>,
    /// Its partitions in the previous target assignment.
    pub previous: Assignment,
}

/// Run the assignor named `name` (an unknown name runs the default).
/// `members` by member id; `partitions` is each subscribed topic's count.
pub fn assign(
    name: &str,
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

fn empty_for(members: &BTreeMap<String, MemberSpec>) -> BTreeMap<String, Assignment> {
    members
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect()
}

/// The range assignor: for each topic, its subscribers in member-id order
/// each take a contiguous range; the first `count % subscribers` take one more.
fn range(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_for(members);
    for (topic, &count) in partitions {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.topics.contains(topic))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (quota, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, id) in subscribers.into_iter().enumerate() {
            let take = quota + i32::from((i as i32) < extra);
            if take > 0 {
                let set = (next..next + take).collect::<BTreeSet<i32>>();
                out.entry(id.clone()).or_default().insert(*topic, set);
            }
            next += take;
        }
    }
    out
}

/// The uniform assignor: every partition of a subscribed topic goes to one
/// of its subscribers; each member keeps what it had while that keeps the
/// group balanced, and the rest goes to the least loaded subscriber. With
/// one subscription for all, counts differ by at most one.
fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_for(members);
    if members.is_empty() {
        return out;
    }
    // Each member's fair share: the partitions it can take, spread over
    // the members that can take them (exact when subscriptions are equal).
    let quota = |id: &str| -> usize {
        let Some(m) = members.get(id) else { return 0 };
        let mut share = 0f64;
        for t in &m.topics {
            let count = partitions.get(t).copied().unwrap_or(0).max(0) as f64;
            let subscribers = members.values().filter(|o| o.topics.contains(t)).count();
            share += count / subscribers.max(1) as f64;
        }
        share.ceil() as usize
    };
    let total_partitions: usize = partitions.values().map(|&c| c.max(0) as usize).sum();
    let homogeneous = members.values().all(|m| {
        m.topics
            == members
                .values()
                .next()
                .map(|f| f.topics.clone())
                .unwrap_or_default()
    });
    // With equal subscriptions only `total % n` members may hold one more
    // than `total / n`.
    let n = members.len();
    let base = total_partitions / n;
    let mut extra_slots = total_partitions % n;
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    // Sticky pass: members with the most previous partitions keep first, so
    // the extra slots go to the ones that already hold more.
    let mut order: Vec<(&String, &MemberSpec)> = members.iter().collect();
    order.sort_by_key(|(id, m)| {
        (
            std::cmp::Reverse(m.previous.values().map(BTreeSet::len).sum::<usize>()),
            (*id).clone(),
        )
    });
    for (id, m) in &order {
        let cap = if homogeneous {
            let kept_possible: usize = m
                .previous
                .iter()
                .filter(|(t, _)| m.topics.contains(t))
                .map(|(t, ps)| {
                    let count = partitions.get(t).copied().unwrap_or(0);
                    ps.iter().filter(|&&p| p < count).count()
                })
                .sum();
            if kept_possible > base && extra_slots > 0 {
                extra_slots -= 1;
                base + 1
            } else {
                base
            }
        } else {
            quota(id)
        };
        let mine = out.entry((*id).clone()).or_default();
        let mut count = 0;
        'topics: for (t, ps) in &m.previous {
            let Some(&topic_count) = partitions.get(t) else {
                continue;
            };
            if !m.topics.contains(t) {
                continue;
            }
            for &p in ps {
                if count >= cap {
                    break 'topics;
                }
                if p < topic_count && taken.insert((*t, p)) {
                    mine.entry(*t).or_default().insert(p);
                    count += 1;
                }
            }
        }
        load.insert(id.as_str(), count);
    }
    // Fill: each free partition to its least loaded subscriber, topics with
    // the fewest subscribers first (they have the fewest choices).
    let mut topics: Vec<(&Uuid, &i32)> = partitions.iter().collect();
    topics.sort_by_key(|(t, _)| {
        (
            members.values().filter(|m| m.topics.contains(t)).count(),
            **t,
        )
    });
    for (t, &count) in topics {
        let subscribers: Vec<&str> = members
            .iter()
            .filter(|(_, m)| m.topics.contains(t))
            .map(|(id, _)| id.as_str())
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        for p in 0..count.max(0) {
            if taken.contains(&(*t, p)) {
                continue;
            }
            let Some(best) = subscribers
                .iter()
                .min_by_key(|id| (load.get(**id).copied().unwrap_or(0), **id))
                .copied()
            else {
                continue;
            };
            taken.insert((*t, p));
            *load.entry(best).or_default() += 1;
            out.entry(best.to_owned())
                .or_default()
                .entry(*t)
                .or_default()
                .insert(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn spec(topics: &[Uuid], previous: &[(Uuid, &[i32])]) -> MemberSpec {
        MemberSpec {
            topics: topics.iter().copied().collect(),
            previous: previous
                .iter()
                .map(|(t, ps)| (*t, ps.iter().copied().collect()))
                .collect(),
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn all_once(result: &BTreeMap<String, Assignment>, partitions: &BTreeMap<Uuid, i32>) {
        let mut seen = BTreeSet::new();
        for a in result.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} assigned twice");
                }
            }
        }
        let expected: usize = partitions.values().map(|&c| c as usize).sum();
        assert_eq!(seen.len(), expected, "every partition assigned");
    }

    #[test]
    fn uniform_balances_equal_subscriptions() {
        let t = topic(1);
        let partitions = BTreeMap::from([(t, 6)]);
        let members = BTreeMap::from([
            ("a".to_owned(), spec(&[t], &[])),
            ("b".to_owned(), spec(&[t], &[])),
            ("c".to_owned(), spec(&[t], &[])),
            ("d".to_owned(), spec(&[t], &[])),
        ]);
        let result = assign("uniform", &members, &partitions);
        all_once(&result, &partitions);
        let counts: Vec<usize> = result.values().map(count).collect();
        assert_eq!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap(),
            1
        );
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins_or_leaves() {
        let t = topic(1);
        let partitions = BTreeMap::from([(t, 6)]);
        let before = BTreeMap::from([
            ("a".to_owned(), spec(&[t], &[(t, &[0, 1, 2])])),
            ("b".to_owned(), spec(&[t], &[(t, &[3, 4, 5])])),
            ("c".to_owned(), spec(&[t], &[])),
        ]);
        let after = assign("uniform", &before, &partitions);
        all_once(&after, &partitions);
        // Only what c needs moves: a and b each keep two of their three.
        for (id, old) in [("a", [0, 1, 2]), ("b", [3, 4, 5])] {
            let kept = after[id][&t].iter().filter(|p| old.contains(p)).count();
            assert_eq!(kept, 2, "{id} keeps two: {after:?}");
            assert_eq!(count(&after[id]), 2);
        }
        // c leaves: a and b keep theirs and share c's.
        let mut left = BTreeMap::new();
        for id in ["a", "b"] {
            let prev: Vec<i32> = after[id][&t].iter().copied().collect();
            left.insert(id.to_owned(), spec(&[t], &[(t, prev.as_slice())]));
        }
        let again = assign("uniform", &left, &partitions);
        all_once(&again, &partitions);
        for id in ["a", "b"] {
            assert!(after[id][&t].is_subset(&again[id][&t]));
            assert_eq!(count(&again[id]), 3);
        }
    }

    #[test]
    fn uniform_respects_different_subscriptions() {
        let (t1, t2) = (topic(1), topic(2));
        let partitions = BTreeMap::from([(t1, 4), (t2, 2)]);
        let members = BTreeMap::from([
            ("a".to_owned(), spec(&[t1], &[])),
            ("b".to_owned(), spec(&[t1, t2], &[])),
        ]);
        let result = assign("uniform", &members, &partitions);
        all_once(&result, &partitions);
        assert!(!result["a"].contains_key(&t2), "a is not subscribed to t2");
        assert_eq!(count(&result["a"]), 3);
        assert_eq!(count(&result["b"]), 3);
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let (t1, t2) = (topic(1), topic(2));
        let partitions = BTreeMap::from([(t1, 7), (t2, 3)]);
        let members = BTreeMap::from([
            ("a".to_owned(), spec(&[t1, t2], &[])),
            ("b".to_owned(), spec(&[t1, t2], &[])),
            ("c".to_owned(), spec(&[t1], &[])),
        ]);
        let result = assign("range", &members, &partitions);
        all_once(&result, &partitions);
        let got = |id: &str, t: Uuid| -> Vec<i32> {
            result[id]
                .get(&t)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default()
        };
        assert_eq!(got("a", t1), vec![0, 1, 2]);
        assert_eq!(got("b", t1), vec![3, 4]);
        assert_eq!(got("c", t1), vec![5, 6]);
        assert_eq!(got("a", t2), vec![0, 1]);
        assert_eq!(got("b", t2), vec![2]);
        assert_eq!(got("c", t2), Vec::<i32>::new());
    }
}
