//! # auth-service
//!
//! Centralised authentication for the migration edge: accounts, access tokens (JWT) and
//! rotating refresh tokens, the JWKS and OpenID discovery documents the gateway (and any Django
//! service using djangorestframework-simplejwt with `JWK_URL`) verifies tokens against, and a CLI
//! to rotate signing keys and grant roles.
//!
//! The crate is a library plus a thin `main`: [`app`] builds the axum [`Router`](axum::Router)
//! from an [`AppState`], so handlers are tested with `oneshot` and no server; [`server::serve`]
//! runs it on a socket; [`cli`] is the command line.
//!
//! ## Module map
//! Top to bottom: a module uses only modules of the layers above its row, never one of its own
//! layer or below (and service-kit, the shell it shares with the other Rust services: request
//! middleware, problems, JSON bodies, HTTP metrics, logs and traces, serving). A unit test below
//! checks every `use crate::…` against this table (`testkit::layers`), so it cannot rot.
//!
//! | layer | module | what |
//! |---|---|---|
//! | 0 | [`db`] | the sqlx `AnyPool` (SQLite or PostgreSQL by URL), embedded migrations per backend, time helpers |
//! | 0 | [`config`] | YAML file → raw struct (`deny_unknown_fields`) → validated [`Settings`]; precedence flags > env > file > defaults |
//! | 0 | [`error`] | the one error enum and its `IntoResponse` (a service-kit problem: RFC 9457 `application/problem+json`) |
//! | 0 | [`client`] | what a request says about its caller: peer address, client IP behind trusted proxies, bearer token |
//! | 0 | [`metrics`] | every Prometheus metric of the service, registered once in a per-process registry |
//! | 0 | [`random`] | the OS CSPRNG: random bytes, opaque tokens, UUID ids |
//! | 1 | [`keys`] | signing keys: generation (RS256/ES256/EdDSA via aws-lc-rs), rotation, overlap window, the live key set reloaded from the DB |
//! | 1 | [`users`] | accounts and roles: email/password policy, storage |
//! | 1 | [`refresh`] | opaque refresh tokens: issue, atomic rotation, reuse detection (family revocation), logout |
//! | 1 | [`password`] | argon2id hashing on the blocking pool with bounded concurrency, dummy hash for unknown emails |
//! | 1 | [`throttle`] | in-memory, bounded login throttling per (account, client IP) and per client IP |
//! | 2 | [`state`] | [`AppState`]: settings, DB, key store, hasher, throttle, metrics behind one `Arc` |
//! | 2 | [`tokens`] | access-token claims, signing with the active key, verification against the key set |
//! | 3 | [`handlers`] | one function per endpoint; they only call into the modules above |
//! | 4 | [`http`] | the router: routes, fallbacks, body limit, service-kit's request middleware |
//! | 5 | [`server`] | serving a built state: the key-reload and refresh-purge tasks around service-kit's `serve` |
//! | 6 | [`cli`] | clap definitions and the subcommands (`serve`, `keys rotate/list`, `users grant-role/revoke-role`) |
//!
//! ## Request path
//! `request id → access log + HTTP metrics → body limit → route → handler`. Errors from any
//! stage become one problem+json response carrying the request id.

pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod handlers;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod password;
pub mod random;
pub mod refresh;
pub mod server;
pub mod state;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use config::Settings;
pub use error::AppError;
pub use http::app;
pub use state::AppState;

/// The name the service answers as: its problem types (`urn:problem-type:auth-service:<slug>`),
/// its ready line, the service name of its spans.
pub const SERVICE: &str = "auth-service";

#[cfg(test)]
mod tests {
    #[test]
    fn modules_import_only_from_the_layers_above_theirs() {
        testkit::layers::assert_layered(env!("CARGO_MANIFEST_DIR"));
    }
}
