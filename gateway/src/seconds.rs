//! Whole seconds for the HTTP fields that count in seconds (`Retry-After`, the `t` of the
//! `RateLimit` field): always rounded up, so a client that waits as told is never early.
//!
//! A leaf module: both the rate limiter (its fields) and [`crate::respond`] (the 503 of an open
//! breaker) use it, and neither may depend on the other's side of that.

use std::time::Duration;

/// `d` in whole seconds, rounded up (`0` stays `0`).
pub fn ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `Retry-After` in whole seconds: rounded up and at least 1 (0 would invite an immediate
/// retry storm).
pub fn retry_after(d: Duration) -> u64 {
    ceil(d).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_rounds_up() {
        assert_eq!(ceil(Duration::from_millis(1001)), 2);
        assert_eq!(ceil(Duration::from_secs(3)), 3);
        assert_eq!(ceil(Duration::ZERO), 0);
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after(Duration::ZERO), 1);
        assert_eq!(retry_after(Duration::from_millis(1)), 1);
        assert_eq!(retry_after(Duration::from_millis(9_001)), 10);
        assert_eq!(retry_after(Duration::from_secs(20)), 20);
    }
}
