//! `gateway validate` and `gateway explain`, run as a user would, with their exact output.
//! Also: every shipped gateway config passes `validate`.

use std::process::Command;

fn gateway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn validate_prints_every_error_with_position_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "bad.yaml",
        r#"listen: 0.0.0.0:8080
upstreams:
  monolith:
    targets: [127.0.0.1:8000]
    timeouts: { connect: 5x }
  payments:
    targets: [127.0.0.1:8003]
routes:
  - name: a
    match: { path_prefix: /a/ }
    upstream: paymnts
  - name: a
    match: { path_prefx: /b/ }
    upstream: payments
  - name: c
    match: { path_prefix: /c/ }
    split: [ { upstream: payments, weight: 0 }, { upstream: monolith, weight: 0 } ]
  - name: d
    match: { path_prefix: /d/, methods: [GET, "BAD METHOD"] }
    upstream: payments
    typo_key: 1
  - name: e
    match: { path_prefix: /e/ }
    upstream: payments
    strip_prefix: "yes"
"#,
    );
    let (code, stdout, stderr) = gateway(&["validate", &file]);
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    let expected = [
        format!(
            "{file}:5:26: upstreams.monolith.timeouts.connect: invalid duration `5x`: expected a number with a unit (ms, s, m, h), e.g. `250ms`, `5s`, `10m`"
        ),
        format!("{file}:11:15: routes[0].upstream: unknown upstream \"paymnts\" (known: payments)"),
        format!(
            "{file}:13:14: routes[1].match.path_prefx: unknown field `path_prefx`, expected one of `path_prefix`, `path`, `host`, `methods`, `headers`"
        ),
        format!(
            "{file}:17:12: routes[2].split: the weights sum to 0: at least one side needs a weight above 0"
        ),
        format!(
            "{file}:21:5: routes[3].typo_key: unknown field `typo_key`, expected one of `name`, `match`, `upstream`, `split`, `sticky_by`, `strip_prefix`, `prefix_rewrite`, `auth`, `fallback`, `timeouts`, `rate_limit`, `shadow`"
        ),
        format!(
            "{file}:25:19: routes[4].strip_prefix: invalid type: string \"yes\", expected a boolean"
        ),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, expected, "\n{stderr}");
}

#[test]
fn validate_reports_syntax_errors_duplicates_and_accepts_good_files() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(
        &dir,
        "broken.yaml",
        "routes:\n  - name: a\n    match: { path_prefix: /a/\n",
    );
    let (code, _, stderr) = gateway(&["validate", &broken]);
    assert_ne!(code, 0);
    assert!(stderr.starts_with(&format!("{broken}:")), "{stderr}");
    assert!(stderr.contains("invalid YAML"), "{stderr}");

    let dup = write(
        &dir,
        "dup.yaml",
        "upstreams:\n  u: { targets: [127.0.0.1:1] }\nroutes:\n  - name: same\n    upstream: u\n    match: {}\n  - name: same\n    upstream: u\n    match: {}\n",
    );
    let (code, _, stderr) = gateway(&["validate", &dup]);
    assert_ne!(code, 0);
    assert_eq!(
        stderr.trim(),
        format!(
            "{dup}:7:11: routes[1].name: duplicate route name \"same\" (first defined at line 4)"
        )
    );

    let good = write(
        &dir,
        "good.yaml",
        "upstreams:\n  u: { targets: [monolith:8000] }\nroutes:\n  - name: all\n    match: { path_prefix: / }\n    upstream: u\n",
    );
    // `monolith` resolves in the compose network only: --offline checks the file alone.
    let (code, stdout, stderr) = gateway(&["validate", "--offline", &good]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(stdout.trim(), format!("{good}: ok"));
}

/// Issue 16: `validate` said yes where `run` said no (an access log in a missing directory, a
/// target name that does not resolve). Both now go through the same code and say the same,
/// with the position; `--offline` leaves out what depends on the machine.
#[test]
fn validate_and_run_agree_on_what_this_machine_must_provide() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("no-such-dir").join("access.log");
    let file = write(
        &dir,
        "host.yaml",
        &format!(
            "upstreams:\n  a: {{ targets: [127.0.0.1:8000, no-such-host.invalid:80] }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: a }}\nobservability:\n  access_log: {{ output: \"{}\" }}\n",
            log.display()
        ),
    );
    let (code, _, validate) = gateway(&["validate", &file]);
    assert_ne!(code, 0);
    let lines: Vec<&str> = validate.lines().collect();
    assert_eq!(lines.len(), 2, "{validate}");
    assert!(
        lines[0].starts_with(&format!(
            "{file}:2:34: upstreams.a.targets[1]: cannot resolve target \"no-such-host.invalid:80\": "
        )),
        "{validate}"
    );
    assert_eq!(
        lines[1],
        format!(
            "{file}:6:25: observability.access_log.output: cannot open \"{}\" for appending: No such file or directory (os error 2)",
            log.display()
        )
    );
    // `run` refuses the file with the same words.
    let (code, _, run) = gateway(&["run", "--config", &file]);
    assert_ne!(code, 0);
    for line in &lines {
        assert!(run.contains(line), "run said:\n{run}\nnot:\n{line}");
    }
    // Offline, the file itself is fine.
    let (code, stdout, stderr) = gateway(&["validate", "--offline", &file]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");

    // Once the directory exists, validate opens (creates) the log, as run would.
    std::fs::create_dir(log.parent().unwrap()).unwrap();
    let ok = write(
        &dir,
        "ok.yaml",
        &format!(
            "upstreams:\n  a: {{ targets: [localhost:8000] }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: a }}\nobservability:\n  access_log: {{ output: \"{}\" }}\n",
            log.display()
        ),
    );
    let (code, _, stderr) = gateway(&["validate", &ok]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert!(log.is_file());
}

/// Values that aborted the gateway (issue 16) are `validate` errors with their range.
#[test]
fn validate_refuses_values_outside_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "ranges.yaml",
        "server: { threads: 2147483648, drain_timeout: 1000000y }\nauth: { issuer: i, audiences: [a], jwks_url: \"http://127.0.0.1:1/j\", algorithms: [RS256], jwks_timeout: 0s }\nrate_limits:\n  policies:\n    p: { key: route, limit: 1, per: 584y }\nupstreams:\n  a: { targets: [127.0.0.1:8000] }\nroutes:\n  - { name: all, match: { path_prefix: / }, upstream: a }\n",
    );
    let (code, _, stderr) = gateway(&["validate", &file]);
    assert_ne!(code, 0);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{file}:1:20: server.threads: must be between 1 and 1024, got 2147483648"),
            format!(
                "{file}:1:47: server.drain_timeout: must be between 0s and 1h, got 1000000years"
            ),
            format!("{file}:2:105: auth.jwks_timeout: must be between 1ms and 5m, got 0s"),
            format!(
                "{file}:5:37: rate_limits.policies.p.per: must be between 1ms and 1year, got 584years"
            ),
        ],
        "{stderr}"
    );
}

#[test]
fn every_shipped_gateway_config_validates() {
    let root = testkit::workspace_root().join("config");
    let mut files = Vec::new();
    for entry in walk(&root) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("gateway") && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            files.push(entry);
        }
    }
    assert!(
        !files.is_empty(),
        "no gateway configs under {}",
        root.display()
    );
    for f in files {
        let (code, stdout, stderr) = gateway(&["validate", &f.display().to_string()]);
        assert_eq!(code, 0, "{}: {stdout}{stderr}", f.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn explain_names_route_upstreams_and_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "g.yaml",
        r#"upstreams:
  monolith: { targets: [127.0.0.1:8000] }
  payments:
    targets: [127.0.0.1:8003]
    timeouts: { response: 5s }
    retries: { attempts: 2, backoff: 10ms, max_backoff: 40ms, budget: { ratio: 0.1 } }
    health_check: { path: /healthz, interval: 2s }
    circuit_breaker: { failure_statuses: [502, 503, 504, 429] }
  legacy: { targets: [127.0.0.1:8009], retries: { attempts: 0 }, circuit_breaker: { enabled: false } }
routes:
  - name: payments
    match: { path_prefix: /api/payments/ }
    split: [ { upstream: payments, weight: 10 }, { upstream: monolith, weight: 90 } ]
    sticky_by: header.x-user
    fallback: { upstream: legacy, on: [connect_error, { status: [502, 503] }], methods: [GET] }
    timeouts: { response: 2s, total: 4s }
  - name: legacy
    match: { path_prefix: /legacy/, methods: [GET] }
    upstream: monolith
    strip_prefix: true
  - name: monolith
    match: { path_prefix: / }
    upstream: monolith
"#,
    );
    let (code, stdout, _) = gateway(&[
        "explain",
        "--config",
        &file,
        "GET",
        "/api/payments/../payments/7?x=1",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "request:   GET /api/payments/../payments/7?x=1\n\
         normalised: /api/payments/7\n\
         route:     payments (routes[0], line 11)\n\
         matched:   path_prefix /api/payments/\n\
         upstream:  split payments 10.0% / monolith 90.0%, sticky by header.x-user\n\
         \x20          payments -> 127.0.0.1:8003 (round_robin; timeouts connect 1s, response 5s)\n\
         \x20          monolith -> 127.0.0.1:8000 (round_robin; timeouts connect 1s, response 30s)\n\
         placed:    no header.x-user: each request takes a side at random, by weight\n\
         side:      random\n\
         fallback:  legacy -> 127.0.0.1:8009 (round_robin; timeouts connect 1s, response 30s) (on connect_error, status 502-503; replays GET or with Idempotency-Key, budget 10%)\n\
         resilience: payments: retries 2 (connect failures; idempotent or Idempotency-Key requests before a response), backoff 10ms..40ms, budget 10%; breaker opens above 50% failures (429,502-504) of >= 20 requests in 10s, open 10s; health GET /healthz every 2s\n\
         timeouts:  payments: connect 1s, response 2s, upgraded idle 1h, total 4s\n\
         resilience: monolith: retries 1 (connect failures; idempotent or Idempotency-Key requests before a response), backoff 25ms..250ms, budget 20%; breaker opens above 50% failures (500-599) of >= 20 requests in 10s, open 10s; no active health check\n\
         timeouts:  monolith: connect 1s, response 2s, upgraded idle 1h, total 4s\n\
         resilience: legacy: no retries; breaker off; no active health check\n\
         timeouts:  legacy: connect 1s, response 2s, upgraded idle 1h, total 4s\n\
         forwarded: /api/payments/7?x=1\n\
         auth:      none\n\
         headers:   X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-ID\n\
         also matched, lower precedence: monolith (line 21)\n"
    );
    let (code, stdout, _) = gateway(&[
        "explain",
        "--config",
        &file,
        "GET",
        "/legacy/a",
        "--header",
        "x-user: 7",
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("route:     legacy (routes[1], line 17)"),
        "{stdout}"
    );
    assert!(stdout.contains("forwarded: /a\n"), "{stdout}");
    // The upstream's own timeouts where the route sets none.
    assert!(
        stdout.contains(
            "timeouts:  monolith: connect 1s, response 30s, upgraded idle 1h, total none\n"
        ),
        "{stdout}"
    );
    // POST does not match `legacy` (GET only) and falls through to the monolith.
    let (_, stdout, _) = gateway(&["explain", "--config", &file, "POST", "/legacy/a"]);
    assert!(stdout.contains("route:     monolith"), "{stdout}");
    // A refused path says so, and exits non-zero.
    let (code, stdout, _) = gateway(&["explain", "--config", &file, "GET", "/a%2fb"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("400 Bad Request"), "{stdout}");
}

#[test]
fn validate_checks_the_auth_block_and_route_rules() {
    let dir = tempfile::tempdir().unwrap();
    let no_block = write(
        &dir,
        "no-auth.yaml",
        "upstreams:\n  u: { targets: [127.0.0.1:1] }\nroutes:\n  - name: a\n    match: {}\n    upstream: u\n    auth: required\n",
    );
    let (code, _, stderr) = gateway(&["validate", &no_block]);
    assert_ne!(code, 0);
    assert_eq!(
        stderr.trim(),
        format!(
            "{no_block}:7:11: routes[0].auth: this route checks tokens, but there is no top-level `auth:` block (issuer, audiences, jwks_url, algorithms)"
        )
    );
    let hmac = write(
        &dir,
        "hmac.yaml",
        "auth:\n  issuer: i\n  audiences: [api]\n  jwks_url: ftp://x/jwks\n  algorithms: [HS256, RS999]\nupstreams:\n  u: { targets: [127.0.0.1:1] }\nroutes:\n  - name: a\n    match: {}\n    upstream: u\n    auth: { roles: [admin] }\n",
    );
    let (code, _, stderr) = gateway(&["validate", &hmac]);
    assert_ne!(code, 0);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].ends_with(
            "auth.jwks_url: invalid URL \"ftp://x/jwks\": expected http(s)://host[:port]/path"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].contains(":5:16: auth.algorithms[0]: \"HS256\" is a shared-secret algorithm"),
        "{stderr}"
    );
    assert!(
        lines[2].contains(":5:23: auth.algorithms[1]: unknown algorithm \"RS999\""),
        "{stderr}"
    );
}

#[test]
fn validate_checks_retries_breakers_health_checks_and_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "resilience.yaml",
        r#"upstreams:
  a:
    targets: [127.0.0.1:1]
    retries: { attempts: 50, backoff: 1s, max_backoff: 10ms, budget: { ratio: 1.5 } }
    health_check: { path: healthz, interval: 10ms, timeout: 5s, healthy_threshold: 0 }
    circuit_breaker: { failure_ratio: 1, min_requests: 0, failure_statuses: [5xx, 700, "teapot"] }
  b: { targets: [127.0.0.1:2] }
routes:
  - name: r
    match: {}
    upstream: b
    fallback: b
  - name: s
    match: { path: /s }
    upstream: b
    fallback: nope
"#,
    );
    let (code, _, stderr) = gateway(&["validate", &file]);
    assert_ne!(code, 0);
    let expect = [
        ":4:26: upstreams.a.retries.attempts: must be between 0 and 10, got 50",
        ":4:56: upstreams.a.retries.max_backoff: must be at least backoff (1s), got 10ms",
        ":4:79: upstreams.a.retries.budget.ratio: must be between 0 and 1, got 1.5",
        ":5:27: upstreams.a.health_check.path: \"healthz\" must start with '/'",
        ":5:46: upstreams.a.health_check.interval: must be between 100ms and 1day, got 10ms",
        ":5:84: upstreams.a.health_check.healthy_threshold: must be between 1 and 10000, got 0",
        ":6:39: upstreams.a.circuit_breaker.failure_ratio: must be at least 0 and below 1, got 1",
        ":6:56: upstreams.a.circuit_breaker.min_requests: must be between 1 and 1000000, got 0",
        ":6:83: upstreams.a.circuit_breaker.failure_statuses[1]: 700 is not an HTTP status (100-599)",
        ":6:88: upstreams.a.circuit_breaker.failure_statuses[2]: \"teapot\": use a status code (503) or a class (4xx, 5xx)",
        ":16:15: routes[1].fallback: unknown upstream \"nope\" (known: b)",
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    for e in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(&file) && l.contains(e)),
            "missing {e:?} in:\n{stderr}"
        );
    }
    assert_eq!(lines.len(), expect.len(), "{stderr}");
}

#[test]
fn validate_checks_the_observability_block() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "obs.yaml",
        r#"upstreams:
  a: { targets: [127.0.0.1:8000] }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: a
observability:
  service_name: ""
  access_log: { format: json, output: stdout, sample_successful: 1.5 }
  otlp:
    endpoint: grpc://collector
    protocol: grpc
    sample_ratio: -0.1
    timeout: 0s
"#,
    );
    let (code, _, stderr) = gateway(&["validate", &file]);
    assert_ne!(code, 0);
    let expected = [
        format!("{file}:8:17: observability.service_name: must not be empty"),
        format!(
            "{file}:9:66: observability.access_log.sample_successful: 1.5 is not a ratio: use 0.0 to 1.0"
        ),
        format!(
            "{file}:11:15: observability.otlp.endpoint: invalid endpoint \"grpc://collector\": expected http://host:port such as http://127.0.0.1:4317"
        ),
        format!(
            "{file}:13:19: observability.otlp.sample_ratio: -0.1 is not a ratio: use 0.0 to 1.0"
        ),
        format!("{file}:14:14: observability.otlp.timeout: must be between 1ms and 5m, got 0s"),
    ];
    assert_eq!(stderr.trim_end().lines().collect::<Vec<_>>(), expected);

    let typo = write(
        &dir,
        "typo.yaml",
        "upstreams:\n  a: { targets: [127.0.0.1:8000] }\nroutes:\n  - { name: all, match: { path_prefix: / }, upstream: a }\nobservability:\n  otlp: { endpoint: \"http://127.0.0.1:4317\", protocl: grpc }\n",
    );
    let (code, _, stderr) = gateway(&["validate", &typo]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!("{typo}:6:"))
            && stderr.contains("observability.otlp")
            && stderr.contains("unknown field `protocl`"),
        "{stderr}"
    );
    let short = write(
        &dir,
        "short.yaml",
        "upstreams:\n  a: { targets: [127.0.0.1:8000] }\nroutes:\n  - { name: all, match: { path_prefix: / }, upstream: a }\nobservability: { access_log: jsn }\n",
    );
    let (code, _, stderr) = gateway(&["validate", &short]);
    assert_ne!(code, 0);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{short}:5:30: observability.access_log: unknown access log \"jsn\": use json, off or a mapping {{ format, output, sample_successful, buffer }}"
        )
    );
    let ok = write(
        &dir,
        "ok.yaml",
        "upstreams:\n  a: { targets: [127.0.0.1:8000] }\nroutes:\n  - { name: all, match: { path_prefix: / }, upstream: a }\nobservability: { access_log: json, otlp: { endpoint: \"http://127.0.0.1:4318\", protocol: http } }\n",
    );
    assert_eq!(gateway(&["validate", &ok]).0, 0);
}
