//! Partition-key hashing exactly as the Event Hubs service does it.
//!
//! The service maps a partition key to a partition with Bob Jenkins' lookup3
//! `hashlittle2` (both seeds 0) over the key's UTF-8 bytes, folds the two 32-bit
//! results into a signed 16-bit value and takes `|h % n|` with a truncating
//! remainder. The algorithm and the test vectors come from the .NET SDK's
//! `PartitionResolver` ("a direct port of the Event Hubs service code") and the
//! JS SDK's `mapPartitionKeyToId` tests.
//!
//! ```
//! use eventhubs_protocol::partition_key::{hash16, partition_index};
//!
//! assert_eq!(hash16("alphabet"), -23478);
//! assert_eq!(partition_index("alphabet", 11), 4);
//! ```

/// The service's signed 16-bit hash of a partition key.
pub fn hash16(key: &str) -> i16 {
    let (h1, h2) = lookup3_hashlittle2(key.as_bytes());
    // Truncation to the low 16 bits is the algorithm, not an accident.
    (h1 ^ h2) as u16 as i16
}

/// The index (into the hub's partition id list) of the partition that `key` maps to.
///
/// Returns 0 when `partition_count` is 0 or 1.
pub fn partition_index(key: &str, partition_count: usize) -> usize {
    if partition_count <= 1 {
        return 0;
    }
    let n = i32::try_from(partition_count).unwrap_or(i32::MAX);
    (i32::from(hash16(key)) % n).unsigned_abs() as usize
}

#[inline]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// Little-endian word from up to four bytes (missing high bytes are zero).
#[inline]
fn word(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .enumerate()
        .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (8 * i)))
}

/// lookup3 `hashlittle2` with both seeds 0; returns `(c, b)`.
fn lookup3_hashlittle2(data: &[u8]) -> (u32, u32) {
    let init = 0xDEAD_BEEFu32.wrapping_add(data.len() as u32);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut rest = data;
    while rest.len() > 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        return (c, b);
    }
    // The tail (1..=12 bytes) is added as zero-padded little-endian words.
    a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
    if rest.len() > 4 {
        b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(word(&rest[8..]));
    }
    final_mix(&mut a, &mut b, &mut c);
    (c, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key → signed 16-bit hash, shared by the .NET, Java, Python and Rust SDK test suites.
    const HASH_VECTORS: &[(&str, i16)] = &[
        ("7", -15263),
        ("131", 30562),
        ("7149583486996073602", 12977),
        ("FWfAT", -22341),
        ("sOdeEAsyQoEuEFPGerWO", -6503),
        (
            "FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs",
            5226,
        ),
        (
            "1XYM6!(7(lF5wq4k4m*e$Nc!1ezLJv*1YK1Y-C^*&B$O)lq^iUkG(TNzXG;Zi#z2Og*Qq0#^*k):vXh$3,C7We7%W0meJ;b3,rQCg^J;^twXgs5E$$hWKxqp",
            23950,
        ),
        (
            "E(x;RRIaQcJs*P;D&jTPau-4K04oqr:lF6Z):ERpo&;9040qyV@G1_c9mgOs-8_8/10Fwa-7b7-yP!T-!IH&968)FWuI;(^g$2fN;)HJ^^yTn:",
            -29304,
        ),
        ("!c*_!I@1^c", 15372),
        ("p4*!jioeO/z-!-;w:dh", -3104),
        ("$0cb", 26269),
        ("-4189260826195535198", 453),
    ];

    #[test]
    fn hashes_match_the_published_sdk_vectors() {
        for (key, expected) in HASH_VECTORS {
            assert_eq!(hash16(key), *expected, "key {key:?}");
        }
    }

    #[test]
    fn partition_indices_match_the_js_sdk_vectors() {
        // JS SDK test/internal/mapPartitionKeyToId.spec.ts, made from the C# implementation.
        assert_eq!(partition_index("alphabet", 3), 0);
        assert_eq!(partition_index("alphabet", 11), 4);
        assert_eq!(partition_index("TheBestParitionEver", 4), 2);
        assert_eq!(partition_index("TheWorstParitionEver", 15), 1);
    }

    #[test]
    fn negative_hashes_use_truncating_remainder() {
        // Derived from the SDK-tested hashes with the C# formula.
        assert_eq!(partition_index("7", 4), 3);
        assert_eq!(partition_index("7", 8), 7);
        assert_eq!(partition_index("131", 4), 2);
        assert_eq!(partition_index("FWfAT", 32), 5);
        assert_eq!(partition_index("sOdeEAsyQoEuEFPGerWO", 16), 7);
        assert_eq!(partition_index("$0cb", 32), 29);
        assert_eq!(partition_index("-4189260826195535198", 5), 3);
        assert_eq!(partition_index("p4*!jioeO/z-!-;w:dh", 5), 4);
    }

    #[test]
    fn empty_key_and_single_partition_map_to_zero() {
        assert_eq!(partition_index("", 7), 0);
        assert_eq!(partition_index("anything", 1), 0);
        assert_eq!(partition_index("anything", 0), 0);
    }
}
