//! `cargo bench -p gateway --bench hot_path`: what every request pays for, piece by piece.
//!
//! | group | what |
//! |---|---|
//! | `routing/*` | [`gateway::routing::RouteTable::find`] on a 500-route table |
//! | `jwt/*` | token verification per algorithm, with and without the verified-token cache |
//! | `headers/*` | identity-header stripping, `X-Forwarded-For`, path normalisation, request id |
//! | `ratelimit/*` | the in-memory limiter on one key and over 10,000 keys, and bucket-key hashing |
//!
//! One bench binary (one link of the fat-LTO release profile); each group is a module. Filter
//! with a name: `cargo bench -p gateway --bench hot_path -- jwt/`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

mod headers;
mod jwt;
mod ratelimit;
mod routing;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = routing::bench, jwt::bench, headers::bench, ratelimit::bench
}
criterion_main!(benches);
