//! Replica placement: which brokers hold each new partition. Round robin
//! from a starting broker, so leaders (the first replica) and followers
//! spread evenly over the brokers.

/// Replica lists for `count` partitions over `brokers` (sorted ids) with
/// `replication_factor` replicas each: partition `i` gets the brokers from
/// position `start + i` onwards, wrapping around.
pub fn assign(
    brokers: &[i32],
    count: usize,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    if n == 0 {
        return Vec::new();
    }
    (0..count)
        .map(|i| {
            (0..replication_factor.min(n))
                .map(|j| brokers[(start + i + j) % n])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn leaders_and_replicas_spread_evenly() {
        let lists = assign(&[1, 2, 3], 6, 3, 1);
        let mut leaders = BTreeMap::new();
        for l in &lists {
            assert_eq!(l.len(), 3);
            let mut sorted = l.clone();
            sorted.sort();
            assert_eq!(sorted, vec![1, 2, 3]);
            *leaders.entry(l[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        assert_eq!(assign(&[1, 2, 3], 2, 1, 0), vec![vec![1], vec![2]]);
    }
}
