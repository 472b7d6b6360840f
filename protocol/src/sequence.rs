//! Idempotent publishing's producer sequence numbers.
//!
//! An idempotent producer numbers the events of a partition consecutively with a
//! 32-bit `int` (`com.microsoft:producer-sequence-number`). After `i32::MAX` the
//! number starts again at 0, as the .NET SDK's `NextSequence` does; it never goes
//! negative.

/// The sequence number `n` places after `sequence`, wrapping from `i32::MAX` to 0.
///
/// ```
/// use eventhubs_protocol::sequence::advance;
/// assert_eq!(advance(41, 1), 42);
/// assert_eq!(advance(i32::MAX, 1), 0);
/// assert_eq!(advance(i32::MAX - 1, 3), 1);
/// ```
pub fn advance(sequence: i32, n: u32) -> i32 {
    let modulus = i64::from(i32::MAX) + 1;
    (i64::from(sequence) + i64::from(n)).rem_euclid(modulus) as i32
}

#[cfg(test)]
mod tests {
    use super::advance;

    #[test]
    fn wraps_to_zero_and_never_goes_negative() {
        assert_eq!(advance(0, 0), 0);
        assert_eq!(advance(i32::MAX, 0), i32::MAX);
        assert_eq!(advance(i32::MAX, 2), 1);
        assert_eq!(
            advance(i32::MAX - 5, u32::MAX),
            advance(i32::MAX - 5, u32::MAX % (1 << 31))
        );
        for start in [0, 1, 1000, i32::MAX - 1, i32::MAX] {
            for n in [0u32, 1, 7, 1 << 20] {
                assert!(advance(start, n) >= 0);
            }
        }
    }
}
