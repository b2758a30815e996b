//! In-memory payment storage, bounded: the newest `capacity` payments of the process are kept
//! (default 10,000), older ones are dropped first. During the canary the monolith remains the
//! system of record for orders; this service does not see them (see the crate docs).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Serialize, Serializer};

pub const DEFAULT_CAPACITY: usize = 10_000;
/// `served_by` in every payment this service answers with (the monolith says "monolith").
pub const SERVED_BY: &str = "payments-service";

/// An amount of money in cents, written as a decimal string with two places ("12.50"), as the
/// monolith (Django REST framework's DecimalField) writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(pub i64);

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub id: u64,
    pub order_id: u64,
    pub amount: Cents,
    pub status: &'static str,
    pub served_by: &'static str,
    /// RFC 3339, UTC, microseconds (the monolith's format).
    pub created_at: String,
    #[serde(skip)]
    pub user_id: String,
}

#[derive(Debug)]
pub struct Store {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    items: VecDeque<Payment>,
}

impl Store {
    pub fn new(capacity: usize) -> Self {
        Store {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records a captured payment.
    pub fn capture(&self, user_id: &str, order_id: u64, amount: Cents) -> Payment {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.next_id += 1;
        let payment = Payment {
            id: inner.next_id,
            order_id,
            amount,
            status: "captured",
            served_by: SERVED_BY,
            created_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            user_id: user_id.to_string(),
        };
        if inner.items.len() == self.capacity {
            inner.items.pop_front();
        }
        inner.items.push_back(payment.clone());
        payment
    }

    /// A user's payments, newest first.
    pub fn for_user(&self, user_id: &str) -> Vec<Payment> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner
            .items
            .iter()
            .rev()
            .filter(|p| p.user_id == user_id)
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .items
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_render_with_two_places() {
        assert_eq!(Cents(1250).to_string(), "12.50");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents(100).to_string(), "1.00");
        assert_eq!(
            serde_json::to_string(&Cents(1999)).ok().as_deref(),
            Some("\"19.99\"")
        );
    }

    #[test]
    fn keeps_only_the_newest_capacity_payments_per_process() {
        let store = Store::new(2);
        for order in 1..=3 {
            store.capture("u", order, Cents(100));
        }
        let orders: Vec<u64> = store.for_user("u").iter().map(|p| p.order_id).collect();
        assert_eq!(orders, [3, 2]);
        assert!(store.for_user("someone else").is_empty());
    }
}
