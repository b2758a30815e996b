//! What the service stores: captured payments, in the shell's bounded in-memory store (the
//! newest `--capacity` of the process, 10,000 by default). During the canary the monolith
//! remains the system of record for orders; this service does not see them (see the crate docs).

use serde::{Serialize, Serializer};
use service_kit::store::Record;

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

/// A captured payment; answered as
/// `{id, order_id, amount, status: "captured", served_by: "payments-service", created_at}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub order_id: u64,
    pub amount: Cents,
    pub status: &'static str,
    pub served_by: &'static str,
    #[serde(skip)]
    pub user_id: String,
}

impl Payment {
    /// `user_id`'s capture of `amount` for `order_id`.
    pub fn captured(user_id: &str, order_id: u64, amount: Cents) -> Self {
        Payment {
            order_id,
            amount,
            status: "captured",
            served_by: SERVED_BY,
            user_id: user_id.to_string(),
        }
    }
}

impl Record for Payment {
    fn owner(&self) -> &str {
        &self.user_id
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
        let store = service_kit::Store::new(2);
        for order_id in 1..=3 {
            store.add(Payment::captured("u", order_id, Cents(100)));
        }
        let orders: Vec<u64> = store
            .for_user("u")
            .iter()
            .map(|p| p.record.order_id)
            .collect();
        assert_eq!(orders, [3, 2]);
        assert!(store.for_user("someone else").is_empty());
        let newest = &store.for_user("u")[0].record;
        assert_eq!((newest.status, newest.served_by), ("captured", SERVED_BY));
    }
}
