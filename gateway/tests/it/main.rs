//! Gateway integration tests: the real `gateway` binary and real `echo` origins on 127.0.0.1
//! ephemeral ports. One test binary with a module per area (one link, not twelve).
#![allow(clippy::unwrap_used)]

mod support;

mod auth;
mod cli;
mod cohorts;
mod drain;
mod errors;
mod failover;
mod framing;
mod heads;
mod observability;
mod pin;
mod ratelimit;
mod reload;
mod resilience;
mod routing;
mod shadow;
mod streaming;
mod tls;
mod upgrade;
