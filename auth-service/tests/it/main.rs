//! auth-service integration tests, one binary (link time) with a module per area:
//!
//! - `api`: handler tests through `app().oneshot(..)`, each run against SQLite and PostgreSQL;
//! - `server`: the real binary on an ephemeral port (restart persistence, key rotation via the
//!   CLI, promtool, log hygiene, config errors);
//! - `interop`: PyJWT's `PyJWKClient` verifies our tokens through the live JWKS.
//!
//! PostgreSQL: `AUTH_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! each test works in its own schema, dropped afterwards. Tests fail (not skip) when it is down.

// Test code: unwrap is fine here (clippy's allow-unwrap-in-tests only covers #[test] fns).
#![allow(clippy::unwrap_used)]

mod api;
mod interop;
mod server;
mod support;
