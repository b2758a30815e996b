//! Splits that keep their users: where a key falls, and which side owns it.
//!
//! A key's [`Position`] is a fixed point of the split space `[0, 1)`: its 64-bit
//! `xxh3(key)`, seeded by the cohort's salt, read as a fraction of 2^64. It depends on nothing
//! but the key and the salt: not on the weights, the percent, the route, the replica or the
//! config's other contents. Each side of a split owns one contiguous share of the space, in the
//! order the sides are written:
//!
//! ```text
//!   split: [payments 10, monolith 90]      0 ──payments── 0.1 ─────────monolith─────────── 1
//!   split: [payments 20, monolith 90]      0 ────payments──── 0.18 ───────monolith───────── 1
//!   percent form { to: payments, 10 }      0 ──payments── 0.1 ───────────rest───────────── 1
//! ```
//!
//! So a change that grows the first side's share only moves its boundary to the right: every
//! key that was on it stays on it, and keys join it only from the side next to it. Shrinking it
//! moves the boundary left: no key joins it. The same holds for the *last* side (its share is
//! anchored at 1). With more than two sides, a middle side's share moves when the sides before
//! it change: only the first and the last side have the guarantee, which is why a migration
//! names the new service first (or uses the percent form, which has exactly two sides).
//!
//! The comparison is exact (integer arithmetic on the 64-bit position, no rounding to buckets),
//! so any weights work, however large their total. For people, the position is also shown as a
//! [`Position::bucket`] of [`BUCKETS`]: with the percent form, a key is on the new side exactly
//! when its bucket is below the percent in hundredths (`percent: 12.5` → buckets 0 to 1249).

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The buckets a position is shown in: hundredths of a percent.
pub const BUCKETS: u32 = 10_000;

/// A key's place in the split space: `self.0 / 2^64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub u64);

impl Position {
    /// The position of `key` under `seed` ([`seed`] of a cohort's salt; 0 for a weighted
    /// split's `sticky_by`, which has no salt).
    pub fn of(seed: u64, key: &[u8]) -> Position {
        Position(xxh3_64_with_seed(key, seed))
    }

    /// A position at random: a request without a key on a weighted split.
    pub fn random() -> Position {
        Position(rand::random())
    }

    /// The bucket (of [`BUCKETS`]) this position falls in: `floor(position × 10,000)`.
    pub fn bucket(self) -> u32 {
        ((u128::from(self.0) * u128::from(BUCKETS)) >> 64) as u32
    }
}

/// The seed a salt stands for (hashed once, when the config loads).
pub fn seed(salt: &str) -> u64 {
    xxh3_64(salt.as_bytes())
}

/// The index of the side (of `weights`, in order) that owns `p`: side `i` owns
/// `[c(i-1) / total, c(i) / total)`, `c` being the running sum of the weights. `None` when
/// every weight is 0.
pub fn side_of(weights: impl Iterator<Item = u32> + Clone, p: Position) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    // floor(p × total) < c  ⟺  p × total < c (c is whole)  ⟺  p < c / total.
    let point = ((u128::from(p.0) * u128::from(total)) >> 64) as u64;
    let mut end = 0u64;
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        end += u64::from(w);
        if point < end {
            return Some(i);
        }
        last = i;
    }
    // Unreachable: point < total, the last end.
    Some(last)
}

/// The percent form: whether `p` is in the new side's share, `basis_points` of 10,000
/// (`percent × 100`).
pub fn in_share(basis_points: u32, p: Position) -> bool {
    p.bucket() < basis_points
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn positions_are_fixed_and_salted() {
        assert_eq!(Position::of(0, b"42"), Position::of(0, b"42"));
        assert_eq!(
            Position::of(0, b"42").0,
            xxh3_64(b"42"),
            "unsalted is plain xxh3"
        );
        assert_ne!(
            Position::of(seed("a"), b"42"),
            Position::of(seed("b"), b"42")
        );
        assert_eq!(Position(0).bucket(), 0);
        assert_eq!(Position(u64::MAX).bucket(), BUCKETS - 1);
        assert_eq!(Position(1 << 63).bucket(), 5_000);
    }

    #[test]
    fn shares_are_contiguous_in_order() {
        let at = |f: f64| Position((f * 2f64.powi(64)) as u64);
        assert_eq!(side_of([10, 90].into_iter(), at(0.05)), Some(0));
        assert_eq!(side_of([10, 90].into_iter(), at(0.0999)), Some(0));
        assert_eq!(side_of([10, 90].into_iter(), at(0.1001)), Some(1));
        assert_eq!(side_of([1, 1, 2].into_iter(), at(0.3)), Some(1));
        assert_eq!(side_of([1, 1, 2].into_iter(), at(0.6)), Some(2));
        assert_eq!(
            side_of([0, 5].into_iter(), at(0.0)),
            Some(1),
            "a side of weight 0 owns nothing"
        );
        assert_eq!(side_of([0, 0].into_iter(), at(0.5)), None);
        assert_eq!(
            side_of([u32::MAX, u32::MAX].into_iter(), Position(u64::MAX)),
            Some(1)
        );
        assert!(in_share(1_000, at(0.0999)));
        assert!(!in_share(1_000, at(0.1)));
        assert!(!in_share(0, Position(0)));
        assert!(in_share(BUCKETS, Position(u64::MAX)));
    }

    /// Keys the property tests place: 100,000 of them, as user ids and session cookies are.
    fn keys() -> impl Iterator<Item = Vec<u8>> {
        (0..100_000u32).map(|i| format!("user-{i}").into_bytes())
    }

    proptest! {
        #![proptest_config(testkit::proptest_config(16))]

        /// The guarantee: a change of weights that grows the first side's share moves no key
        /// off it; one that shrinks it moves none onto it. The last side likewise.
        #[test]
        fn fuzz_growing_a_share_keeps_every_key_on_it(
            before in (0u32..2_000_000, 0u32..2_000_000),
            after in (0u32..2_000_000, 0u32..2_000_000),
            salt in "[a-z0-9-]{0,12}",
        ) {
            prop_assume!(before.0 + before.1 > 0 && after.0 + after.1 > 0);
            let seed = seed(&salt);
            // Compare the shares exactly: a / (a + b) against c / (c + d).
            let share = |(a, b): (u32, u32)| (u128::from(a), u128::from(a) + u128::from(b));
            let ((a, t), (c, u)) = (share(before), share(after));
            let grows_first = c * t >= a * u;
            for key in keys() {
                let p = Position::of(seed, &key);
                let was = side_of([before.0, before.1].into_iter(), p);
                let is = side_of([after.0, after.1].into_iter(), p);
                if grows_first {
                    prop_assert!(!(was == Some(0) && is == Some(1)), "left the first side");
                } else {
                    prop_assert!(!(was == Some(1) && is == Some(0)), "joined the first side");
                }
            }
        }

        #[test]
        fn fuzz_raising_a_percent_keeps_every_key_on_the_new_side(
            before in 0u32..=BUCKETS,
            after in 0u32..=BUCKETS,
            salt in "[a-z0-9-]{0,12}",
        ) {
            let seed = seed(&salt);
            let mut moved_in = 0u32;
            for key in keys() {
                let p = Position::of(seed, &key);
                let (was, is) = (in_share(before, p), in_share(after, p));
                if after >= before {
                    prop_assert!(!was || is, "a key left the new side");
                } else {
                    prop_assert!(was || !is, "a key joined a shrinking side");
                }
                moved_in += u32::from(!was && is);
            }
            // And the shares are what they say, within sampling error (100,000 keys).
            let joined = f64::from(moved_in) / 100_000.0;
            let expected = f64::from(after.saturating_sub(before)) / f64::from(BUCKETS);
            prop_assert!((joined - expected).abs() < 0.01, "{joined} vs {expected}");
        }

        /// With three sides the first and the last keep their keys when they grow.
        #[test]
        fn fuzz_the_ends_of_a_longer_split_are_monotone(
            mid in 0u32..1_000, last in 0u32..1_000, first in 1u32..1_000, grow in 0u32..1_000,
        ) {
            prop_assume!(mid + last > 0);
            for key in keys().take(20_000) {
                let p = Position::of(0, &key);
                if side_of([first, mid, last].into_iter(), p) == Some(0) {
                    prop_assert_eq!(side_of([first + grow, mid, last].into_iter(), p), Some(0));
                }
                if side_of([mid, last, first].into_iter(), p) == Some(2) {
                    prop_assert_eq!(side_of([mid, last, first + grow].into_iter(), p), Some(2));
                }
            }
        }
    }

    /// Two routes with the same cohort (salt and key) and percent send the same keys to their
    /// new service; another salt deals them independently.
    #[test]
    fn a_shared_salt_gives_the_same_users_another_salt_others() {
        let (early, other) = (seed("early-2026"), seed("late"));
        let mut same = 0;
        let mut both_in = 0;
        for key in keys() {
            let a = in_share(1_000, Position::of(early, &key));
            let b = in_share(1_000, Position::of(early, &key));
            assert_eq!(a, b);
            same += 1;
            both_in += u32::from(a && in_share(1_000, Position::of(other, &key)));
        }
        assert_eq!(same, 100_000);
        // Independent cohorts overlap like independent 10% samples: about 1%.
        assert!((800..1_200).contains(&both_in), "{both_in}");
    }
}
