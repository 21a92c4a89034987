//! Choosing a partition for a record, exactly as the Java client's default
//! partitioner does for keyed records, so that a key lands on the same
//! partition whichever client produced it:
//! `toPositive(murmur2(key)) % numPartitions`.
//!
//! Records without a key are spread by the producer (sticky per batch); this
//! module only owns the keyed rule and the hash. Must never: import anything
//! of the client (it is a leaf).

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), returning
/// the same signed 32-bit value as the Java code.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let length = data.len();
    // Java hashes `int length`; keys above 2 GiB do not exist in Kafka.
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // The Java switch falls through from case 3 to case 1.
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: clear the sign bit (not `abs`, which overflows).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition for `key` among `num_partitions` (which must be > 0).
pub fn partition_for_key(key: &[u8], num_partitions: usize) -> i32 {
    let n = num_partitions.max(1) as i64;
    (i64::from(to_positive(murmur2(key))) % n) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_java_client_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn murmur2_of_empty_key_is_stable() {
        // Every tail length (0..=3) is exercised by the vectors above and here.
        assert_eq!(murmur2(b""), murmur2(&[]));
        assert_ne!(murmur2(b"a"), murmur2(b"b"));
    }

    #[test]
    fn to_positive_clears_the_sign_bit() {
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(5), 5);
    }

    #[test]
    fn keyed_partition_is_to_positive_murmur2_mod_partitions() {
        // -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(to_positive(murmur2(b"21")), 1_173_551_340);
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        assert_eq!(partition_for_key(b"foobar", 1), 0);
        for n in 1..50 {
            let p = partition_for_key(b"a-little-bit-long-string", n);
            assert!((0..n as i32).contains(&p));
        }
    }
}
