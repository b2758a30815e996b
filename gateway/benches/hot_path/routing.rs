//! Route matching on a 500-route table: exact paths, prefixes of many lengths, hosts (exact and
//! wildcard), header conditions and method lists, and a catch-all, loaded through the same
//! config code as a real file.

use std::fmt::Write;
use std::hint::black_box;

use criterion::Criterion;
use gateway::routing::{RequestFacts, RouteTable};
use http::{HeaderMap, HeaderValue, Method};

const SERVICES: [&str; 10] = [
    "users",
    "orders",
    "payments",
    "notifications",
    "search",
    "catalog",
    "carts",
    "reviews",
    "shipping",
    "invoices",
];

/// 500 routes: 150 exact paths, 200 prefixes, 75 host routes, 50 header routes, 24 method
/// routes and the catch-all.
fn table_yaml() -> String {
    let mut y = String::from("upstreams:\n");
    for s in SERVICES {
        let _ = writeln!(y, "  {s}: {{ targets: [127.0.0.1:9] }}");
    }
    y.push_str("  monolith: { targets: [127.0.0.1:9] }\nroutes:\n");
    let mut n = 0;
    let mut route = |y: &mut String, m: &str, up: &str| {
        let _ = writeln!(y, "  - {{ name: r{n}, match: {{ {m} }}, upstream: {up} }}");
        n += 1;
    };
    for i in 0..150 {
        let s = SERVICES[i % 10];
        route(&mut y, &format!("path: /api/v1/{s}/{i}/status"), s);
    }
    for i in 0..200 {
        let s = SERVICES[i % 10];
        let m = match i % 4 {
            0 => format!("path_prefix: /api/v1/{s}-{i}/"),
            1 => format!("path_prefix: /api/v2/{s}/{i}"),
            2 => format!("path_prefix: /{s}/legacy-{i}/"),
            _ => format!("path_prefix: /api/v1/{s}/{i}/items/"),
        };
        route(&mut y, &m, s);
    }
    for i in 0..75 {
        let s = SERVICES[i % 10];
        let host = if i % 3 == 0 {
            format!("\"*.region-{i}.example.com\"")
        } else {
            format!("tenant-{i}.example.com")
        };
        route(&mut y, &format!("host: {host}, path_prefix: /api/"), s);
    }
    for i in 0..50 {
        let s = SERVICES[i % 10];
        route(
            &mut y,
            &format!("path_prefix: /api/v1/{s}/, headers: {{ x-canary: \"{i}\" }}"),
            s,
        );
    }
    for i in 0..24 {
        let s = SERVICES[i % 10];
        route(
            &mut y,
            &format!("path_prefix: /api/v1/{s}/{i}/, methods: [POST, PUT]"),
            s,
        );
    }
    route(&mut y, "path_prefix: /", "monolith");
    assert_eq!(n, 500);
    y
}

struct Req {
    name: &'static str,
    method: Method,
    path: &'static str,
    host: Option<&'static str>,
    headers: HeaderMap,
    want: &'static str,
}

fn req(
    name: &'static str,
    method: Method,
    path: &'static str,
    host: Option<&'static str>,
    headers: &[(&'static str, &'static str)],
    want: &'static str,
) -> Req {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_static(v));
    }
    Req {
        name,
        method,
        path,
        host,
        headers: h,
        want,
    }
}

fn find<'a>(t: &'a RouteTable, r: &Req) -> Option<&'a str> {
    t.find(&RequestFacts {
        method: &r.method,
        path: r.path,
        host: r.host,
        headers: &r.headers,
    })
    .map(|s| s.name.as_str())
}

pub fn bench(c: &mut Criterion) {
    let config = gateway::config::load_str("bench.yaml", &table_yaml()).expect("valid table");
    let table = RouteTable::new(&config.routes);
    let host = Some("api.example.com");
    let cases = [
        req(
            "exact",
            Method::GET,
            "/api/v1/orders/41/status",
            host,
            &[],
            "r41",
        ),
        req(
            "prefix",
            Method::GET,
            "/api/v1/carts-196/lines/3",
            host,
            &[],
            "r346",
        ),
        req(
            "prefix_deep",
            Method::GET,
            "/api/v1/orders/151/items/9",
            host,
            &[],
            "r301",
        ),
        req(
            "host_exact",
            Method::GET,
            "/api/things",
            Some("tenant-40.example.com"),
            &[],
            "r390",
        ),
        req(
            "host_wildcard",
            Method::GET,
            "/api/things",
            Some("eu.region-3.example.com"),
            &[],
            "r353",
        ),
        req(
            "header",
            Method::GET,
            "/api/v1/reviews/x",
            host,
            &[("x-canary", "7")],
            "r432",
        ),
        req(
            "method",
            Method::POST,
            "/api/v1/payments/2/pay",
            host,
            &[],
            "r477",
        ),
        req(
            "catch_all",
            Method::GET,
            "/static/app.js",
            host,
            &[],
            "r499",
        ),
    ];
    for r in &cases {
        assert_eq!(find(&table, r), Some(r.want), "{}: route", r.name);
    }
    let mut g = c.benchmark_group("routing/500_routes");
    for r in &cases {
        g.bench_function(r.name, |b| b.iter(|| black_box(find(&table, black_box(r)))));
    }
    g.bench_function("mix", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % cases.len();
            black_box(find(&table, black_box(&cases[i])))
        })
    });
    g.finish();
}
