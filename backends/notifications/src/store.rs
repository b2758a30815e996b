//! What the service stores: notifications, in the shell's bounded in-memory store (the newest
//! `--capacity` of the process, 10,000 by default), which adds each one's `id` and
//! `created_at`. The monolith stays the system of record during the migration; this store
//! serves reads of what this service delivered.

use serde::Serialize;
use service_kit::store::Record;

/// `{user_id, kind, message}`; answered as `{id, user_id, kind, message, created_at}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub user_id: String,
    pub kind: String,
    pub message: String,
}

impl Record for Notification {
    fn owner(&self) -> &str {
        &self.user_id
    }
}
