//! In-memory notification storage, bounded: the newest `capacity` notifications of the process
//! are kept (default 10,000), older ones are dropped first. The monolith stays the system of
//! record during the migration; this store serves reads of what this service delivered.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub id: u64,
    pub user_id: String,
    pub kind: String,
    pub message: String,
    /// RFC 3339, UTC, microseconds (the monolith's format).
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub user_id: String,
    pub kind: String,
    pub message: String,
}

#[derive(Debug)]
pub struct Store {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    items: VecDeque<Notification>,
}

impl Store {
    pub fn new(capacity: usize) -> Self {
        Store {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn add(&self, new: NewNotification) -> Notification {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.next_id += 1;
        let notification = Notification {
            id: inner.next_id,
            user_id: new.user_id,
            kind: new.kind,
            message: new.message,
            created_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        };
        if inner.items.len() == self.capacity {
            inner.items.pop_front();
        }
        inner.items.push_back(notification.clone());
        notification
    }

    /// A user's notifications, newest first.
    pub fn for_user(&self, user_id: &str) -> Vec<Notification> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner
            .items
            .iter()
            .rev()
            .filter(|n| n.user_id == user_id)
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

    fn new(user: &str, message: &str) -> NewNotification {
        NewNotification {
            user_id: user.into(),
            kind: "k".into(),
            message: message.into(),
        }
    }

    #[test]
    fn keeps_only_the_newest_capacity_items() {
        let store = Store::new(3);
        for i in 0..5 {
            store.add(new("u", &format!("m{i}")));
        }
        assert_eq!(store.len(), 3);
        let messages: Vec<_> = store.for_user("u").into_iter().map(|n| n.message).collect();
        assert_eq!(messages, ["m4", "m3", "m2"]);
        assert_eq!(
            store.add(new("u", "m5")).id,
            6,
            "ids keep counting after eviction"
        );
    }

    #[test]
    fn for_user_filters_and_orders_newest_first() {
        let store = Store::new(10);
        store.add(new("a", "1"));
        store.add(new("b", "2"));
        store.add(new("a", "3"));
        let a: Vec<_> = store.for_user("a").into_iter().map(|n| n.message).collect();
        assert_eq!(a, ["3", "1"]);
        assert!(store.for_user("nobody").is_empty());
    }
}
