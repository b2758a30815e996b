//! The real binary: `serve` on an ephemeral port, the CLI against the same database.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    Backend, PASSWORD, Server, TestDb, cli, fetch_jwks, http_json, jwt_parts, kids, server_login,
    verify_with_jwks, write_config,
};

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn serve_prints_the_ready_line_and_applies_flag_and_env_precedence() {
    bounded(async {
        let db = TestDb::new(Backend::Sqlite).await;
        // The file says audience "from-file"; the environment overrides it, a flag overrides that.
        let config = write_config(&db, "audience: from-file\naccess_ttl: 10m");
        let port = testkit::free_port();
        let mut cmd = std::process::Command::new(crate::support::BIN);
        cmd.args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")]);
        cmd.env("AUTH_AUDIENCE", "from-env")
            .env("AUTH_ACCESS_TTL", "7m")
            .env("AUTH_ISSUER", "https://auth.example.test");
        cmd.args(["--access-ttl", "3m"]);
        let proc = testkit::Proc::spawn("auth-service", cmd);
        let base = format!("http://127.0.0.1:{port}");
        testkit::wait_http_ok(&format!("{base}/healthz"), Duration::from_secs(30)).await;
        assert!(
            proc.stdout().contains(&format!(
                "auth-service listening on http://127.0.0.1:{port}"
            )),
            "{}",
            proc.stdout()
        );

        let client = testkit::http_client();
        client
            .post(format!("{base}/api/auth/register"))
            .json(&json!({"email": "env@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let (status, body) = http_json(
            client
                .post(format!("{base}/api/auth/login"))
                .json(&json!({"email": "env@example.com", "password": PASSWORD}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["expires_in"], 180, "flag beats env beats file");
        let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
        assert_eq!(claims["aud"], "from-env", "env beats file");
        assert_eq!(claims["iss"], "https://auth.example.test");
        let (_, conf) = http_json(
            client
                .get(format!("{base}/.well-known/openid-configuration"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            conf["jwks_uri"],
            "https://auth.example.test/.well-known/jwks.json"
        );
    })
    .await;
}

#[tokio::test]
async fn sqlite_file_and_directory_are_created_on_first_start() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested/data/auth.db");
        let db_url = format!("sqlite://{}", file.display());
        let config = dir.path().join("c.yaml");
        std::fs::write(&config, crate::support::config_yaml(&db_url, "")).unwrap();
        let server = Server::start(&config, &[]).await;
        assert!(file.exists());
        server.stop().await;
    })
    .await;
}

async fn restart_keeps_the_signing_key(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = write_config(&db, "");
    let client = testkit::http_client();
    let server = Server::start(&config, &[]).await;
    let first = server_login(&client, &server, "restart@example.com").await;
    let old_token = first["access_token"].as_str().unwrap().to_string();
    let kid = jwt_parts(&old_token).0["kid"].as_str().unwrap().to_string();
    let issuer = jwt_parts(&old_token).1["iss"].as_str().unwrap().to_string();
    server.stop().await;

    // Same database, new process (and port: the issuer is pinned by the old token's iss).
    let server = Server::start(&config, &["--issuer", &issuer]).await;
    let jwks = fetch_jwks(&client, &server).await;
    assert_eq!(kids(&jwks), vec![kid.clone()], "no new key on restart");
    verify_with_jwks(&old_token, &jwks, &issuer, "api")
        .expect("old token verifies against the new JWKS");
    let r = client
        .get(server.url("/api/auth/me"))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again = server_login(&client, &server, "restart@example.com").await;
    assert_eq!(
        jwt_parts(again["access_token"].as_str().unwrap()).0["kid"],
        kid.as_str()
    );
    // The refresh token from before the restart still rotates.
    let r = client
        .post(server.url("/api/auth/refresh"))
        .json(&json!({"refresh_token": first["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn sqlite_restart_keeps_the_signing_key() {
    bounded(restart_keeps_the_signing_key(Backend::Sqlite)).await;
}

#[tokio::test]
async fn postgres_restart_keeps_the_signing_key() {
    bounded(restart_keeps_the_signing_key(Backend::Postgres)).await;
}

async fn cli_rotation_is_picked_up_and_the_old_key_retires(backend: Backend) {
    let db = TestDb::new(backend).await;
    // overlap = access_ttl + jwks_max_age = 2 s; reload every 200 ms.
    let config = write_config(&db, "access_ttl: 1s\njwks_max_age: 1s");
    let client = testkit::http_client();
    let server = Server::start(&config, &[]).await;
    let login = server_login(&client, &server, "rotate@example.com").await;
    let old_kid = jwt_parts(login["access_token"].as_str().unwrap()).0["kid"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, out, err) = cli(&config, &["keys", "rotate"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let new_kid = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("new active signing key: "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert_ne!(new_kid, old_kid);
    assert!(
        out.contains("1 previous key(s) stay published for 2s"),
        "{out}"
    );
    let rotated_at = Instant::now();

    // Within the reload interval the JWKS has both kids and new tokens carry the new one.
    testkit::eventually("both kids in the JWKS", Duration::from_secs(5), || async {
        let k = kids(&fetch_jwks(&client, &server).await);
        (k == vec![new_kid.clone(), old_kid.clone()]).then_some(())
    })
    .await;
    let fresh = server_login(&client, &server, "rotate@example.com").await;
    assert_eq!(
        jwt_parts(fresh["access_token"].as_str().unwrap()).0["kid"],
        new_kid.as_str()
    );

    let (code, out, _) = cli(&config, &["keys", "list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("KID"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&old_kid) && l.contains("overlap until ")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&new_kid) && l.contains(" active ") && l.contains("RS256")),
        "{out}"
    );

    // After the overlap only the new key is published.
    testkit::eventually("the old kid to retire", Duration::from_secs(10), || async {
        let k = kids(&fetch_jwks(&client, &server).await);
        (k == vec![new_kid.clone()]).then_some(())
    })
    .await;
    assert!(
        rotated_at.elapsed() >= Duration::from_millis(1500),
        "retired too early: {:?}",
        rotated_at.elapsed()
    );
    let (_, out, _) = cli(&config, &["keys", "list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&old_kid) && l.contains("retired")),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test]
async fn sqlite_cli_rotation_is_picked_up_and_the_old_key_retires() {
    bounded(cli_rotation_is_picked_up_and_the_old_key_retires(
        Backend::Sqlite,
    ))
    .await;
}

#[tokio::test]
async fn postgres_cli_rotation_is_picked_up_and_the_old_key_retires() {
    bounded(cli_rotation_is_picked_up_and_the_old_key_retires(
        Backend::Postgres,
    ))
    .await;
}

#[tokio::test]
async fn cli_grant_role_shows_up_in_new_tokens() {
    bounded(async {
        let db = TestDb::new(Backend::Sqlite).await;
        let config = write_config(&db, "");
        let client = testkit::http_client();
        let server = Server::start(&config, &[]).await;
        server_login(&client, &server, "roles@example.com").await;
        let (code, out, err) = cli(
            &config,
            &["users", "grant-role", "Roles@Example.com", "admin"],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(out.trim(), "granted admin to Roles@Example.com");
        let login = server_login(&client, &server, "roles@example.com").await;
        assert_eq!(
            jwt_parts(login["access_token"].as_str().unwrap()).1["roles"],
            json!(["admin", "user"])
        );
        let (code, _, err) = cli(
            &config,
            &["users", "grant-role", "ghost@example.com", "admin"],
        );
        assert_eq!(code, 1);
        assert!(
            err.contains("no user with email ghost@example.com"),
            "{err}"
        );
        let (code, _, err) = cli(
            &config,
            &["users", "grant-role", "roles@example.com", "Bad Role"],
        );
        assert_eq!(code, 1);
        assert!(err.contains("invalid role"), "{err}");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn metrics_pass_promtool() {
    bounded(async {
        let promtool = std::path::Path::new("/usr/bin/promtool");
        assert!(
            promtool.exists(),
            "/usr/bin/promtool is required for this test: install the Debian package `prometheus`"
        );
        let db = TestDb::new(Backend::Sqlite).await;
        let config = write_config(&db, "");
        let client = testkit::http_client();
        let server = Server::start(&config, &[]).await;
        let login = server_login(&client, &server, "metrics@example.com").await;
        client
            .post(server.url("/api/auth/refresh"))
            .json(&json!({"refresh_token": login["refresh_token"]}))
            .send()
            .await
            .unwrap();
        client
            .post(server.url("/api/auth/refresh"))
            .json(&json!({"refresh_token": login["refresh_token"]}))
            .send()
            .await
            .unwrap();
        client.get(server.url("/nope")).send().await.unwrap();
        let text = client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("auth_refresh_reuse_detected_total 1"),
            "{text}"
        );
        assert!(
            text.contains("auth_refreshes_total{result=\"success\"} 1"),
            "{text}"
        );

        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run promtool");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn logs_are_json_and_never_contain_passwords_or_tokens() {
    bounded(async {
        let db = TestDb::new(Backend::Sqlite).await;
        let config = write_config(&db, "");
        let client = testkit::http_client();
        let server = Server::start(&config, &[]).await;
        let login = server_login(&client, &server, "secret@example.com").await;
        let refresh = login["refresh_token"].as_str().unwrap().to_string();
        let r = client
            .post(server.url("/api/auth/refresh"))
            .header("x-request-id", "log-check-1")
            .json(&json!({"refresh_token": refresh}))
            .send()
            .await
            .unwrap();
        let (_, rotated) = http_json(r).await;
        client
            .post(server.url("/api/auth/login"))
            .json(&json!({"email": "secret@example.com", "password": "wrong wrong wrong"}))
            .send()
            .await
            .unwrap();
        client
            .get(server.url("/api/auth/me"))
            .bearer_auth(login["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        // Let the last access-log lines reach the file.
        testkit::eventually("the /me access log line", Duration::from_secs(5), || {
            let logs = server.proc.stderr();
            async move { logs.contains("/api/auth/me").then_some(()) }
        })
        .await;
        let logs = format!("{}{}", server.proc.stdout(), server.proc.stderr());
        let private_pem: String = {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT private_key_pem FROM signing_keys")
                .fetch_one(&mut conn)
                .await
                .unwrap()
        };
        let pem_body_line = private_pem.lines().nth(1).unwrap().to_string();
        for secret in [
            PASSWORD,
            "wrong wrong wrong",
            login["access_token"].as_str().unwrap(),
            &refresh,
            rotated["refresh_token"].as_str().unwrap(),
            rotated["access_token"].as_str().unwrap(),
            &pem_body_line,
        ] {
            assert!(
                !logs.contains(secret),
                "a secret leaked into the logs:\n{logs}"
            );
        }
        // JSON lines with the request id in the request's span.
        let mut saw_request_id = false;
        for line in server
            .proc
            .stderr()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            saw_request_id |= v["span"]["request_id"] == "log-check-1";
        }
        assert!(
            saw_request_id,
            "the request id is in the span of the request's log lines"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn throttling_uses_x_forwarded_for_from_the_trusted_local_proxy() {
    bounded(async {
        let db = TestDb::new(Backend::Sqlite).await;
        let config = write_config(&db, "login_throttle: { free_failures: 2, base_delay: 1m }");
        let client = testkit::http_client();
        let server = Server::start(&config, &[]).await;
        server_login(&client, &server, "xff@example.com").await;
        let attempt = |ip: &'static str, password: &'static str| {
            client
                .post(server.url("/api/auth/login"))
                .header("x-forwarded-for", ip)
                .json(&json!({"email": "xff@example.com", "password": password}))
                .send()
        };
        for _ in 0..3 {
            assert_eq!(
                attempt("198.51.100.1", "bad bad bad bad")
                    .await
                    .unwrap()
                    .status(),
                401
            );
        }
        let r = attempt("198.51.100.1", PASSWORD).await.unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.headers().get("retry-after").is_some());
        assert_eq!(
            r.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        assert_eq!(
            attempt("198.51.100.2", PASSWORD).await.unwrap().status(),
            200,
            "another client gets in"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_config_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "access_ttl: soon\n").unwrap();
    let (code, _, err) = cli(&config, &["keys", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("access_ttl: invalid duration \"soon\""),
        "{err}"
    );
    std::fs::write(&config, "listen: 127.0.0.1:1\nacess_ttl: 5m\n").unwrap();
    let (code, _, err) = cli(&config, &["serve"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("acess_ttl"), "{err}");
}

/// The service continues the caller's W3C trace: with `OTEL_EXPORTER_OTLP_ENDPOINT` set (over
/// the file's lack of an `otlp:` block), its server span reaches a real OTLP receiver as a
/// child of the caller's span, and its log lines carry the request id and the trace id.
#[tokio::test]
async fn serve_continues_the_callers_trace_and_logs_the_request_id() {
    bounded(async {
        let receiver = testkit::otlp::OtlpReceiver::start().await;
        let db = TestDb::new(Backend::Sqlite).await;
        let config = write_config(&db, "");
        let port = testkit::free_port();
        let mut cmd = std::process::Command::new(crate::support::BIN);
        cmd.args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint())
            .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
            .env_remove("RUST_LOG");
        let proc = testkit::Proc::spawn("auth-service", cmd);
        let base = format!("http://127.0.0.1:{port}");
        testkit::wait_http_ok(&format!("{base}/healthz"), Duration::from_secs(30)).await;
        let resp = testkit::http_client()
            .post(format!("{base}/api/auth/register"))
            .header("x-request-id", "rid-auth-trace:1")
            .header("traceparent", testkit::otlp::CALLER_TRACEPARENT)
            .json(&json!({"email": "traced@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-request-id"], "rid-auth-trace:1");
        testkit::otlp::assert_continued_caller_trace(
            &receiver,
            &proc,
            "auth-service",
            "rid-auth-trace:1",
        )
        .await;
    })
    .await;
}
