//! In-memory storage for the extracted services, bounded: the newest `capacity` records of the
//! process are kept (default [`DEFAULT_CAPACITY`]), older ones are dropped first. The monolith
//! stays the system of record during the migration; a service's store serves reads of what that
//! service itself recorded.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;

pub const DEFAULT_CAPACITY: usize = 10_000;

/// What a service stores: its own fields; the store adds an id and a time ([`Stored`]).
pub trait Record: Clone + Send + Sync + 'static {
    /// Whose it is (a subject, as in `X-User-Id`): what [`Store::for_user`] selects by.
    fn owner(&self) -> &str;
}

/// A record as stored and answered: `{"id", <the record's fields>, "created_at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stored<T> {
    /// 1, 2, 3, … in the order of arrival, per process.
    pub id: u64,
    #[serde(flatten)]
    pub record: T,
    /// RFC 3339, UTC, microseconds (the monolith's format).
    pub created_at: String,
}

#[derive(Debug)]
pub struct Store<T> {
    capacity: usize,
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    next_id: u64,
    items: VecDeque<Stored<T>>,
}

impl<T: Record> Store<T> {
    /// A store of at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        Store {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                next_id: 0,
                items: VecDeque::new(),
            }),
        }
    }

    /// Stores `record` with the next id (ids keep counting after evictions) and the current
    /// time.
    pub fn add(&self, record: T) -> Stored<T> {
        let mut inner = self.lock();
        inner.next_id += 1;
        let stored = Stored {
            id: inner.next_id,
            record,
            created_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        };
        if inner.items.len() == self.capacity {
            inner.items.pop_front();
        }
        inner.items.push_back(stored.clone());
        stored
    }

    /// A user's records, newest first.
    pub fn for_user(&self, user_id: &str) -> Vec<Stored<T>> {
        self.lock()
            .items
            .iter()
            .rev()
            .filter(|s| s.record.owner() == user_id)
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A panic while the lock was held leaves the queue whole (every change is one push or
    /// pop), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize)]
    struct Note {
        user: String,
        text: String,
    }

    impl Record for Note {
        fn owner(&self) -> &str {
            &self.user
        }
    }

    fn note(user: &str, text: &str) -> Note {
        Note {
            user: user.into(),
            text: text.into(),
        }
    }

    fn texts(stored: Vec<Stored<Note>>) -> Vec<String> {
        stored.into_iter().map(|s| s.record.text).collect()
    }

    #[test]
    fn keeps_only_the_newest_capacity_items() {
        let store = Store::new(3);
        for i in 0..5 {
            store.add(note("u", &format!("m{i}")));
        }
        assert_eq!(store.len(), 3);
        assert_eq!(texts(store.for_user("u")), ["m4", "m3", "m2"]);
        assert_eq!(
            store.add(note("u", "m5")).id,
            6,
            "ids keep counting after eviction"
        );
    }

    #[test]
    fn for_user_filters_and_orders_newest_first() {
        let store = Store::new(10);
        store.add(note("a", "1"));
        store.add(note("b", "2"));
        store.add(note("a", "3"));
        assert_eq!(texts(store.for_user("a")), ["3", "1"]);
        assert!(store.for_user("nobody").is_empty());
        assert!(!store.is_empty());
    }

    #[test]
    fn a_stored_record_is_its_fields_between_id_and_time() {
        let stored = Store::new(1).add(note("a", "hi"));
        assert!(humantime::parse_rfc3339(&stored.created_at).is_ok());
        let json = serde_json::to_string(&stored).unwrap_or_default();
        assert_eq!(
            json,
            format!(
                r#"{{"id":1,"user":"a","text":"hi","created_at":"{}"}}"#,
                stored.created_at
            )
        );
    }
}
