//! What `upstream_request_filter` and `request_filter` do to headers on every request.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{BatchSize, Criterion};
use gateway::auth::identity;
use gateway::config::model::EncodedSlashes;
use gateway::{forwarding, path, request_id};
use ipnet::IpNet;
use pingora_http::RequestHeader;

/// A browser-ish API request with a 700-byte token and one spoofed identity header.
fn request(spoofed: bool) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/v1/orders/42?expand=items", None)
        .expect("request header");
    let token = format!("Bearer {}", "a".repeat(700));
    let mut headers = vec![
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.8"),
        ("authorization", token.as_str()),
        ("cookie", "sessionid=abc123; csrftoken=def456"),
        ("x-request-id", "0f6b8a4c-2c3d-4e5f-8a9b-0c1d2e3f4a5b"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    if spoofed {
        headers.push(("X-User_Id", "admin"));
    }
    for (k, v) in headers {
        req.append_header(k.to_string(), v).expect("header");
    }
    req
}

pub fn bench(c: &mut Criterion) {
    let names: Vec<String> = ["X-User-Id", "X-User-Email", "X-User-Roles"]
        .into_iter()
        .map(identity::normalized)
        .collect();
    let mut g = c.benchmark_group("headers");
    for (label, spoofed) in [
        ("strip_identity/clean", false),
        ("strip_identity/spoofed", true),
    ] {
        let req = request(spoofed);
        g.bench_function(label, |b| {
            b.iter_batched_ref(
                || req.clone(),
                |r| identity::strip(r, black_box(&names)),
                BatchSize::SmallInput,
            )
        });
    }
    let req = request(false);
    g.bench_function("bearer", |b| {
        b.iter(|| black_box(identity::bearer(black_box(&req.headers))))
    });

    let peer: IpAddr = "203.0.113.9".parse().expect("ip");
    let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
    g.bench_function("forwarded_for/untrusted_peer", |b| {
        b.iter(|| {
            black_box(forwarding::forwarded_for(
                black_box(peer),
                std::iter::empty::<&[u8]>(),
                &trusted,
            ))
        })
    });
    let chain: [&[u8]; 1] = [b"198.51.100.7, 10.1.2.3"];
    g.bench_function("forwarded_for/trusted_chain", |b| {
        b.iter(|| {
            black_box(forwarding::forwarded_for(
                black_box(proxy),
                chain.iter().copied(),
                &trusted,
            ))
        })
    });

    for (label, p) in [
        ("normalize_path/already_normal", "/api/v1/orders/42/items"),
        (
            "normalize_path/dirty",
            "/api//v1/./orders/%7euser/../42/items/",
        ),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| black_box(path::normalize(black_box(p), EncodedSlashes::Reject)))
        });
    }

    g.bench_function("request_id/accept", |b| {
        b.iter(|| {
            black_box(request_id::accept(black_box(
                b"0f6b8a4c-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
            )))
        })
    });
    g.bench_function("request_id/generate", |b| {
        b.iter(|| black_box(request_id::generate()))
    });
    g.finish();
}
