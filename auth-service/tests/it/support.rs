//! Shared test plumbing: per-test databases (a SQLite file in a temp dir, or a fresh
//! PostgreSQL schema), settings with cheap argon2 parameters, a `oneshot` client for the
//! router, a handle on the real binary, and JWT helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use auth_service::config::{Overrides, RawConfig, Settings};
use auth_service::{AppState, app};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("AUTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    schema: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("auth.db").display()),
                dir,
                schema: None,
            },
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let admin = postgres_admin_url();
                let schema = format!(
                    "auth_test_{}",
                    &auth_service::random::new_id().replace('-', "")[..16]
                );
                let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for these tests and is not reachable at {admin}: {e}\n\
                         (start it, or set AUTH_TEST_POSTGRES_URL)"
                    )
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .expect("create schema");
                let _ = conn.close().await;
                let sep = if admin.contains('?') { '&' } else { '?' };
                TestDb {
                    url: format!("{admin}{sep}options=-c%20search_path%3D{schema}"),
                    dir,
                    schema: Some(schema),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let admin = postgres_admin_url();
        // Drop may run inside a runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// YAML for a test config: fast argon2 and short timers, plus `extra` lines.
pub fn config_yaml(database_url: &str, extra: &str) -> String {
    let hash = if extra.contains("password_hash:") {
        ""
    } else {
        "password_hash: { memory_kib: 64, iterations: 1, parallelism: 1 }\n"
    };
    format!("database_url: \"{database_url}\"\n{hash}key_reload_interval: 200ms\n{extra}\n")
}

pub fn settings(database_url: &str, extra: &str) -> Settings {
    let raw = RawConfig::from_yaml(&config_yaml(database_url, extra)).expect("test yaml");
    Settings::resolve(raw, Overrides::default()).expect("test settings")
}

/// The router on a fresh database, and what it is made of.
pub struct TestApp {
    pub router: axum::Router,
    pub state: AppState,
    pub db: TestDb,
    pub peer: SocketAddr,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and returns it.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let b = &self.body;
        assert_eq!(b["status"], status);
        assert!(
            b["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:problem-type:auth-service:")),
            "{b}"
        );
        assert!(b["title"].is_string() && b["detail"].is_string(), "{b}");
        assert_eq!(
            b["request_id"].as_str(),
            self.header("x-request-id"),
            "request_id in body and header"
        );
        b
    }
}

impl TestApp {
    pub async fn new(backend: Backend) -> TestApp {
        TestApp::with_config(backend, "").await
    }

    pub async fn with_config(backend: Backend, extra: &str) -> TestApp {
        let db = TestDb::new(backend).await;
        let state = AppState::new(settings(&db.url, extra))
            .await
            .expect("app state");
        TestApp {
            router: app(state.clone()),
            state,
            db,
            peer: "192.0.2.10:40000".parse().expect("addr"),
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let mut req = req;
        if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            req.extensions_mut().insert(ConnectInfo(self.peer));
        }
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(json_request(path, &body)).await
    }

    pub async fn post_from(&self, path: &str, body: Value, peer: &str) -> Resp {
        let mut req = json_request(path, &body);
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().expect("peer")));
        self.send(req).await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Resp {
        let mut b = Request::builder().method(Method::GET).uri(path);
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Body::empty()).expect("request")).await
    }

    /// Registers `email` with [`PASSWORD`]; returns the user id.
    pub async fn register(&self, email: &str) -> String {
        let r = self
            .post(
                "/api/auth/register",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().expect("id").to_string()
    }

    /// Logs in; returns the token response.
    pub async fn login(&self, email: &str) -> Value {
        let r = self
            .post(
                "/api/auth/login",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }
}

pub fn json_request(path: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// The (unverified) header and claims of a JWT.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::Engine;
    let mut it = token.split('.');
    let mut part = || {
        let s = it.next().expect("jwt part");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .expect("base64url");
        serde_json::from_slice::<Value>(&bytes).expect("json")
    };
    let header = part();
    let claims = part();
    (header, claims)
}

/// Verifies `token` against a JWKS document like a third party would (kid lookup, alg from
/// the key, iss, aud, exp). Returns the claims.
pub fn verify_with_jwks(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
) -> Result<Value, String> {
    use jsonwebtoken::jwk::JwkSet;
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in JWKS"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// Flips one character in the middle of the signature.
pub fn tamper_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').expect("jwt");
    let mut sig: Vec<char> = sig.chars().collect();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == 'A' { 'B' } else { 'A' };
    format!("{head}.{}", sig.into_iter().collect::<String>())
}

// ---------------------------------------------------------------------------------------------
// The real binary

pub const BIN: &str = env!("CARGO_BIN_EXE_auth-service");

/// A running `auth-service serve`, killed on drop.
pub struct Server {
    pub proc: testkit::Proc,
    pub base: String,
    pub config: PathBuf,
}

impl Server {
    /// Starts `serve` with the config file and extra args; waits for /healthz.
    pub async fn start(config: &Path, args: &[&str]) -> Server {
        let port = testkit::free_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .arg("serve");
        cmd.env_remove("RUST_LOG");
        let proc = testkit::Proc::spawn("auth-service", cmd);
        let base = format!("http://127.0.0.1:{port}");
        testkit::wait_http_ok(&format!("{base}/healthz"), Duration::from_secs(30)).await;
        let server = Server {
            proc,
            base,
            config: config.to_path_buf(),
        };
        testkit::eventually("the ready line on stdout", Duration::from_secs(5), || {
            let ready = server.proc.stdout().contains(&format!(
                "auth-service listening on http://127.0.0.1:{port}"
            ));
            async move { ready.then_some(()) }
        })
        .await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server with SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) {
        self.proc.signal("TERM");
        let code = self.proc.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(
            code,
            Some(0),
            "graceful shutdown; stderr:\n{}",
            self.proc.stderr()
        );
    }
}

/// Runs the CLI with the config file; returns (exit code, stdout, stderr).
pub fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run auth-service");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Writes a config file for `db` into its temp dir.
pub fn write_config(db: &TestDb, extra: &str) -> PathBuf {
    let path = db.dir.path().join("auth-service.yaml");
    std::fs::write(&path, config_yaml(&db.url, extra)).expect("write config");
    path
}

pub async fn http_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Registers and logs in against a real server; returns the token response.
pub async fn server_login(client: &reqwest::Client, server: &Server, email: &str) -> Value {
    let r = client
        .post(server.url("/api/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert!(
        r.status() == 201 || r.status() == 409,
        "register: {}",
        r.status()
    );
    let (status, body) = http_json(
        client
            .post(server.url("/api/auth/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login"),
    )
    .await;
    assert_eq!(status, 200, "login: {body}");
    body
}

pub async fn fetch_jwks(client: &reqwest::Client, server: &Server) -> Value {
    client
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json")
}

pub fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}
