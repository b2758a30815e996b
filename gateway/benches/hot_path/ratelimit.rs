//! The in-process limiter: what `rate_limit:` costs a request (the Redis store is a network round
//! trip and is measured by `bench/`, not here).

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::Criterion;
use gateway::config::model::{LimitKey, LimitPolicy};
use gateway::ratelimit::memory::MemoryLimiter;
use gateway::ratelimit::{BucketKey, KeyInputs, bucket_key};
use http::HeaderMap;

fn policy() -> LimitPolicy {
    // High enough never to refuse: the admitted path is what every request pays.
    LimitPolicy {
        name: "per_user".into(),
        key: LimitKey::ClientIp,
        limit: 1_000_000,
        per: Duration::from_secs(1),
        burst: 1_000_000,
    }
}

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit");
    let limiter = MemoryLimiter::new(&policy());
    let one = BucketKey([7; 16]);
    g.bench_function("memory/one_key", |b| {
        b.iter(|| black_box(limiter.check(black_box(&one))))
    });

    let keys: Vec<BucketKey> = (0u32..10_000)
        .map(|i| {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            BucketKey(k)
        })
        .collect();
    let many = MemoryLimiter::new(&policy());
    let mut i = 0;
    g.bench_function("memory/10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(many.check(black_box(&keys[i])))
        })
    });

    let headers = HeaderMap::new();
    let ip: IpAddr = "203.0.113.7".parse().expect("ip");
    let inputs = KeyInputs {
        client_ip: Some(ip),
        identity: None,
        headers: &headers,
        route: "payments",
    };
    g.bench_function("bucket_key/client_ip", |b| {
        b.iter(|| {
            black_box(bucket_key(
                black_box(&LimitKey::ClientIp),
                black_box(&inputs),
            ))
        })
    });
    g.finish();
}
