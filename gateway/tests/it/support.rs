//! Handles for the real processes these tests run: the `gateway` binary and `echo` origins,
//! each on an ephemeral port, each stopped by PID when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testkit::{Proc, cargo_bin, eventually, free_port, wait_http_ok};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const START: Duration = Duration::from_secs(20);

/// How long a test waits for something the gateway will do (see [`Gateway::wait_metric`]).
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Echo {
    /// Held so the process lives as long as the handle.
    pub proc: Proc,
    pub port: u16,
}

impl Echo {
    pub async fn start(name: &str) -> Echo {
        let port = free_port();
        Self::start_on(name, port).await
    }

    pub async fn start_on(name: &str, port: u16) -> Echo {
        Self::start_args(name, port, &[]).await
    }

    /// With `--log`: one JSON line per request on stderr (request id, trace).
    pub async fn start_logging(name: &str) -> Echo {
        Self::start_args(name, free_port(), &["--log"]).await
    }

    async fn start_args(name: &str, port: u16, extra: &[&str]) -> Echo {
        let mut cmd = Command::new(cargo_bin("echo"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--name", name])
            .args(extra);
        let proc = Proc::spawn(&format!("echo {name}"), cmd);
        wait_http_ok(&format!("http://127.0.0.1:{port}/healthz"), START).await;
        Echo { proc, port }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process now (SIGKILL, by PID) and reaps it: a service dying mid-flight, its
    /// open connections reset by the kernel, its port refusing from then on.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

pub struct Gateway {
    pub proc: Proc,
    pub port: u16,
    pub admin: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// `listen`, `admin` and one thread, prepended to a test's routes and upstreams.
pub fn preamble(port: u16, admin: u16) -> String {
    format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nserver: {{ threads: 1, reload_debounce: 50ms, drain_timeout: 10s }}\n"
    )
}

impl Gateway {
    /// Starts the gateway with `body` (upstreams, routes, ...) after the preamble.
    pub async fn start(body: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, format!("{}{body}", preamble(port, admin))).unwrap();
        Self::start_with(dir, config, port, admin).await
    }

    pub async fn start_with(
        dir: tempfile::TempDir,
        config: PathBuf,
        port: u16,
        admin: u16,
    ) -> Gateway {
        let gw = Self::spawn(dir, config, port, admin).await;
        wait_http_ok(&gw.admin_url("/readyz"), START).await;
        gw
    }

    /// Starts the gateway and waits until it is alive (`/healthz`) and its proxy listener
    /// accepts, but not until it is ready: for tests of what it does before then.
    pub async fn spawn(dir: tempfile::TempDir, config: PathBuf, port: u16, admin: u16) -> Gateway {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info");
        let proc = Proc::spawn("gateway", cmd);
        wait_http_ok(&format!("http://127.0.0.1:{admin}/healthz"), START).await;
        // The admin listener can answer before the proxy listener is bound (pingora starts the
        // services on their own threads): wait for the proxy port too.
        eventually("the proxy listener", START, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Gateway {
            proc,
            port,
            admin,
            dir,
            config,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// Rewrites the config file in place (same inode), keeping the preamble.
    pub fn write_config(&self, body: &str) {
        std::fs::write(
            &self.config,
            format!("{}{body}", preamble(self.port, self.admin)),
        )
        .unwrap();
    }

    /// A JSON page of the admin listener (`/admin/upstreams`, `/admin/routes`).
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        testkit::http_client()
            .get(self.admin_url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `/admin/upstreams`' entry for one target.
    pub async fn target_state(&self, upstream: &str, target: &str) -> serde_json::Value {
        let v = self.admin_json("/admin/upstreams").await;
        let up = v["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == upstream)
            .unwrap_or_else(|| panic!("no upstream {upstream} in {v}"))
            .clone();
        up["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == target)
            .unwrap_or_else(|| panic!("no target {target} in {up}"))
            .clone()
    }

    pub async fn metrics(&self) -> String {
        testkit::http_client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of `series` on `/metrics` (see [`testkit::prom::value`]), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        testkit::prom::value(&self.metrics().await, series)
    }

    /// The sum of every `name` series on `/metrics` whose labels include all of `labels`
    /// (0 when there is none); see [`metric_sum`].
    pub async fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics().await, name, labels)
    }

    /// Waits (up to [`WAIT`]) until `series` on `/metrics` is as `want`s; returns its value.
    /// A timeout names the series and its last value.
    pub async fn wait_metric(&self, series: &str, want: Want) -> f64 {
        eventually(&format!("{series} {want}"), WAIT, || async {
            match self.metric(series).await {
                Some(v) if want.holds(v) => Ok(v),
                other => Err(other),
            }
        })
        .await
    }
}

/// What [`Gateway::wait_metric`] waits for.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    /// Exactly this value (gauges: a breaker state, a health flag).
    Eq(f64),
    /// This value or more (counters, and gauges such as requests in flight).
    AtLeast(f64),
}

impl Want {
    fn holds(self, v: f64) -> bool {
        match self {
            Want::Eq(w) => v == w,
            Want::AtLeast(w) => v >= w,
        }
    }
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Eq(w) => write!(f, "to be {w}"),
            Want::AtLeast(w) => write!(f, "to reach {w}"),
        }
    }
}

/// Upstream `a` at `addr` and one route sending everything there.
pub fn one_route(addr: &str) -> String {
    format!(
        "upstreams:\n  a: {{ targets: [{addr}] }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: a\n"
    )
}

/// A raw HTTP/1.1 exchange: writes `request` bytes, reads until the server closes.
/// For requests a well-behaved client library would refuse to send or would normalise.
pub async fn raw(port: u16, request: &[u8]) -> RawResponse {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    RawResponse::parse(&buf)
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    pub fn parse(buf: &[u8]) -> RawResponse {
        let text = String::from_utf8_lossy(buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        RawResponse {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        // Bodies of small responses here are not chunked (content-length is set).
        serde_json::from_str(self.body.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// GET through the gateway and parse the echo's JSON answer.
pub async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = testkit::http_client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// The real auth-service on an ephemeral port, with a fresh SQLite database and cheap argon2.
pub struct AuthService {
    pub proc: Proc,
    pub port: u16,
    /// Holds the database for the service's lifetime.
    _dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl AuthService {
    pub async fn start() -> AuthService {
        Self::start_extra("").await
    }

    /// Started with `extra` appended to its YAML config (e.g. an `otlp:` block).
    pub async fn start_extra(extra: &str) -> AuthService {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("auth.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\ndatabase_url: \"sqlite://{}/auth.db\"\naccess_ttl: 5m\njwks_max_age: 1s\nkey_reload_interval: 200ms\npassword_hash: {{ memory_kib: 64, iterations: 1, parallelism: 1 }}\n{extra}",
                dir.path().display()
            ),
        )
        .unwrap();
        Self::start_with(dir, config, port).await
    }

    async fn start_with(dir: tempfile::TempDir, config: PathBuf, port: u16) -> AuthService {
        let mut cmd = Command::new(cargo_bin("auth-service"));
        cmd.args(["serve", "--config"]).arg(&config);
        let proc = Proc::spawn("auth-service", cmd);
        wait_http_ok(&format!("http://127.0.0.1:{port}/healthz"), START).await;
        AuthService {
            proc,
            port,
            _dir: dir,
            config,
        }
    }

    /// Stops the process; the database stays for [`AuthService::restart`].
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The `auth:` block of a gateway config that trusts this service.
    pub fn gateway_auth_block(&self) -> String {
        format!(
            "auth:\n  issuer: http://127.0.0.1:{p}\n  audiences: [api]\n  jwks_url: http://127.0.0.1:{p}/.well-known/jwks.json\n  algorithms: [RS256, ES256, EdDSA]\n  leeway: 5s\n  jwks_unknown_kid_cooldown: 1s\n  claims_to_headers: {{ sub: X-User-Id, email: X-User-Email, roles: X-User-Roles }}\n",
            p = self.port
        )
    }

    /// Registers `email` and returns a fresh access token.
    pub async fn register_and_login(&self, email: &str) -> String {
        let client = testkit::http_client();
        let body =
            serde_json::json!({ "email": email, "password": "correct horse battery staple" });
        let r = client
            .post(self.url("/api/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        self.login(email).await
    }

    pub async fn login(&self, email: &str) -> String {
        let body =
            serde_json::json!({ "email": email, "password": "correct horse battery staple" });
        let r = testkit::http_client()
            .post(self.url("/api/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Runs an `auth-service` CLI command against this service's database.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(cargo_bin("auth-service"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "auth-service {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The `kid` in a JWT's header.
pub fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

/// A throwaway `redis-server` on an ephemeral port, no persistence, so a test can kill it
/// mid-run and start it again on the same port (empty).
pub struct Redis {
    proc: Proc,
    pub port: u16,
    password: Option<String>,
}

impl Redis {
    pub async fn start() -> Redis {
        Self::start_with_password(None).await
    }

    /// With `requirepass` when `password` is given.
    pub async fn start_with_password(password: Option<&str>) -> Redis {
        let port = free_port();
        let password = password.map(str::to_string);
        Redis {
            proc: Self::spawn(port, password.as_deref()).await,
            port,
            password,
        }
    }

    async fn spawn(port: u16, password: Option<&str>) -> Proc {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("redis-server not found: run scripts/setup.sh (installs the Debian package)");
        let mut cmd = Command::new(bin);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let proc = Proc::spawn("redis-server", cmd);
        let url = Self::url_for(port, password);
        eventually("redis-server to answer PING", START, || {
            let url = url.clone();
            async move {
                let client = redis::Client::open(url).ok()?;
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                let pong: String = redis::cmd("PING").query_async(&mut c).await.ok()?;
                (pong == "PONG").then_some(())
            }
        })
        .await;
        proc
    }

    fn url_for(port: u16, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{port}/0"),
            None => format!("redis://127.0.0.1:{port}/0"),
        }
    }

    pub fn url(&self) -> String {
        Self::url_for(self.port, self.password.as_deref())
    }

    /// Kills the server (SIGKILL): its data is gone.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Sends a signal (`STOP` freezes it: connections stay open, nothing answers).
    pub fn signal(&self, sig: &str) {
        self.proc.signal(sig);
    }

    /// Starts a fresh server on the same port.
    pub async fn restart(&mut self) {
        self.proc.kill();
        self.proc = Self::spawn(self.port, self.password.as_deref()).await;
    }

    /// The keys matching `pattern`.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut c)
            .await
            .unwrap()
    }

    /// The remaining TTL of `key` in milliseconds (-2: no such key, -1: no TTL).
    pub async fn pttl(&self, key: &str) -> i64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap()
    }
}

/// How an [`Origin`] treats requests (other than `GET /healthz`, which follows `set_healthy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `200`, body = the origin's name, `X-Served-By: <name>`.
    Ok,
    /// This status, same body.
    Status(u16),
    /// Reads the request, then closes the connection without answering.
    Close,
    /// Reads the request and never answers; the connection stays open until the peer closes it.
    Hang,
}

/// An in-process HTTP/1.1 origin with a chosen failure mode (and a health switch), counting the
/// requests it received. For failure modes a real service can't be told to produce on cue
/// (answer nothing after reading a request; fail only its health check).
pub struct Origin {
    pub port: u16,
    state: std::sync::Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

struct OriginState {
    mode: Mode,
    healthy: std::sync::atomic::AtomicBool,
    requests: std::sync::atomic::AtomicUsize,
    health_checks: std::sync::atomic::AtomicUsize,
    /// Set by [`Origin::die`]: open connections read their next request and close.
    dead: std::sync::atomic::AtomicBool,
    /// The request head of the last health check.
    last_health_check: std::sync::Mutex<String>,
    /// Every request received (health checks excluded), in order.
    received: std::sync::Mutex<Vec<Received>>,
}

/// One request an [`Origin`] received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request head, lower-cased (`"post /pay http/1.1\r\nhost: …"`).
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    /// The method, upper-case as sent.
    pub fn method(&self) -> String {
        self.head
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase()
    }

    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == name).then(|| v.trim())
        })
    }
}

impl Origin {
    pub async fn start(name: &str, mode: Mode) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(OriginState {
            mode,
            healthy: true.into(),
            requests: 0.into(),
            health_checks: 0.into(),
            last_health_check: Default::default(),
            dead: false.into(),
            received: Default::default(),
        });
        let (st, n) = (state.clone(), name.to_string());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_origin_conn(conn, st.clone(), n.clone()));
            }
        });
        Origin { port, state, task }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state
            .healthy
            .store(healthy, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests received, health checks excluded.
    pub fn requests(&self) -> usize {
        self.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Dies like a killed process would, as seen from a pooled connection: the listener closes
    /// (new connections are refused) and each open connection reads its next request, then
    /// closes without answering.
    pub fn die(&self) {
        self.state
            .dead
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.abort();
    }

    /// The last health check's request head, lower-cased.
    pub fn last_health_check(&self) -> String {
        self.state.last_health_check.lock().unwrap().clone()
    }

    /// Every request received so far (health checks excluded), in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn health_checks(&self) -> usize {
        self.state
            .health_checks
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_origin_conn(
    mut conn: tokio::net::TcpStream,
    state: std::sync::Arc<OriginState>,
    name: String,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut buf = Vec::new();
    loop {
        // Read one request head, then its Content-Length body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body_bytes = buf[head_end..head_end + body_len].to_vec();
        buf.drain(..head_end + body_len);
        let health_check = head.starts_with("get /healthz ");
        if !health_check {
            state.received.lock().unwrap().push(Received {
                head: head.clone(),
                body: body_bytes,
            });
        }
        if state.dead.load(SeqCst) {
            state.requests.fetch_add(1, SeqCst);
            return;
        }
        let (status, body) = if health_check {
            state.health_checks.fetch_add(1, SeqCst);
            *state.last_health_check.lock().unwrap() = head.clone();
            match state.healthy.load(SeqCst) {
                true => (200, "ok".to_string()),
                false => (503, "unhealthy".to_string()),
            }
        } else {
            state.requests.fetch_add(1, SeqCst);
            match state.mode {
                Mode::Ok => (200, name.clone()),
                Mode::Status(s) => (s, name.clone()),
                Mode::Close => return,
                Mode::Hang => {
                    // Holds the connection open, answering nothing, until the peer closes it.
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                    return;
                }
            }
        };
        // An answer to HEAD has the headers of the GET answer and no body.
        let sent_body = if head.starts_with("head ") { "" } else { &body };
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nx-served-by: {name}\r\n\r\n{sent_body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends `GET url`: (status, the origin's name from `x-served-by` / `x-echo-server` / the echo's
/// JSON `server`, else the body).
pub async fn get_served_by(client: &reqwest::Client, url: &str) -> (u16, String) {
    match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let served = resp
                .headers()
                .get("x-served-by")
                .or_else(|| resp.headers().get("x-echo-server"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp.text().await.unwrap_or_default();
            let echo_server = || {
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                v["server"].as_str().map(str::to_string)
            };
            let by = served.or_else(echo_server).unwrap_or_else(|| body.clone());
            (status, by)
        }
        Err(e) => (0, format!("transport error: {e:?}")),
    }
}

/// The header the gateway sets on an answer that came from a route's fallback.
pub const FALLBACK_HEADER: &str = "x-gateway-fallback";

/// What a client saw of one answer through the gateway.
#[derive(Clone, Debug)]
pub struct Reply {
    /// 0 for a transport error (then `body` says which).
    pub status: u16,
    /// The origin's name (as [`get_served_by`] finds it), else the body.
    pub by: String,
    /// The `X-Gateway-Fallback` header, if any.
    pub fallback: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (a problem+json answer), or panics showing it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends `req` and reads the whole answer.
pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => {
            return Reply {
                status: 0,
                by: String::new(),
                fallback: None,
                content_type: None,
                body: format!("transport error: {e:?}"),
            };
        }
    };
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (served, fallback, content_type) = (
        header("x-served-by").or_else(|| header("x-echo-server")),
        header(FALLBACK_HEADER),
        header("content-type"),
    );
    let body = resp.text().await.unwrap_or_default();
    let echo_server = || {
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["server"].as_str().map(str::to_string)
    };
    let by = served.or_else(echo_server).unwrap_or_else(|| body.clone());
    Reply {
        status,
        by,
        fallback,
        content_type,
        body,
    }
}

/// The sum of every `name` series in the Prometheus text `text` whose labels include all of
/// `labels` (other labels may vary); 0 when there is none. For counters split by a label the
/// test does not care about (e.g. every `reason` of a fallback).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let has = |(k, v): &(&str, &str)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\""));
            labels
                .iter()
                .all(has)
                .then(|| value.split_whitespace().next()?.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Every `name` series in `text` whose labels include all of `labels`, as its label text
/// (`method="GET",route="r",...`) and value.
pub fn metric_series(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let (set, value) = line
                .strip_prefix(name)?
                .strip_prefix('{')?
                .split_once('}')?;
            let has = |(k, v): &(&str, &str)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\""));
            let value = value.split_whitespace().next()?.parse().ok()?;
            labels.iter().all(has).then(|| (set.to_string(), value))
        })
        .collect()
}

/// One answer seen by a [`Load`] client.
#[derive(Clone, Debug)]
pub struct Answer {
    pub sent: std::time::Instant,
    pub done: std::time::Instant,
    pub status: u16,
    pub by: String,
}

/// Steady traffic from `clients` concurrent keep-alive clients, until [`Load::finish`] (or a
/// 45 s cap, so a failed test cannot leave it running).
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Answer>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Each client sends `request(client)`, one every `every` (from one send to the next).
    pub fn start<F>(clients: usize, every: Duration, request: F) -> Load
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
    {
        use std::sync::atomic::Ordering::SeqCst;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let request = std::sync::Arc::new(request);
        let cap = std::time::Instant::now() + Duration::from_secs(45);
        let tasks = (0..clients)
            .map(|_| {
                let (stop, seen, request) = (stop.clone(), seen.clone(), request.clone());
                tokio::spawn(async move {
                    let client = testkit::http_client();
                    while !stop.load(SeqCst) && std::time::Instant::now() < cap {
                        let sent = std::time::Instant::now();
                        let reply = send(request(&client)).await;
                        seen.lock().unwrap().push(Answer {
                            sent,
                            done: std::time::Instant::now(),
                            status: reply.status,
                            by: reply.by,
                        });
                        // Not a wait: the pacing is the scenario, clients sending steadily
                        // rather than as fast as they can.
                        tokio::time::sleep(every.saturating_sub(sent.elapsed())).await;
                    }
                })
            })
            .collect();
        Load { stop, seen, tasks }
    }

    /// Waits (up to [`WAIT`]) until `n` answers satisfy `pred`.
    pub async fn wait_for(&self, what: &str, n: usize, pred: impl Fn(&Answer) -> bool) {
        eventually(what, WAIT, || {
            let seen = self.seen.lock().unwrap();
            let count = seen.iter().filter(|a| pred(a)).count();
            let last = format!(
                "{count} of {} answers; the last {:?}",
                seen.len(),
                seen.last()
            );
            async move { if count >= n { Ok(()) } else { Err(last) } }
        })
        .await
    }

    /// Stops the clients (each finishes its request in flight) and returns every answer.
    pub async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// An in-process WebSocket origin (tokio-tungstenite) that echoes every text and binary
/// message. The request path picks its behaviour:
///
/// | path | behaviour |
/// |---|---|
/// | `/refuse` | answers the handshake `400` with the body `no websocket here` |
/// | `/close-after-echo` | echoes one message, then closes (a close frame) |
/// | `/drop-after-echo` | echoes one message, then drops the TCP connection (no close frame) |
/// | anything else | echoes until the client closes |
pub struct WsOrigin {
    pub port: u16,
    sessions: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WsOrigin {
    pub async fn start() -> WsOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sessions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = sessions.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_ws_conn(conn, count.clone()));
            }
        });
        WsOrigin {
            port,
            sessions,
            task,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Handshakes accepted (`101` sent) so far.
    pub fn sessions(&self) -> usize {
        self.sessions.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for WsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_ws_conn(
    conn: tokio::net::TcpStream,
    sessions: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    let mut path = String::new();
    #[allow(
        clippy::result_large_err,
        reason = "the signature of tungstenite's handshake Callback"
    )]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        path = req.uri().path().to_string();
        if path == "/refuse" {
            let body = "no websocket here";
            let refusal = http::Response::builder()
                .status(400)
                .header("content-length", body.len())
                .header("content-type", "text/plain")
                .body(Some(body.to_string()))
                .expect("a valid response");
            return Err(refusal);
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(conn, callback).await else {
        return;
    };
    sessions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    while let Some(Ok(msg)) = ws.next().await {
        let echo = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            // Pings are answered by tungstenite itself; a close is answered on the next read.
            _ => continue,
        };
        if ws.send(echo).await.is_err() {
            return;
        }
        match path.as_str() {
            "/close-after-echo" => {
                let _ = ws.close(None).await;
                // Reads the client's close reply; the stream ends after it.
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
            "/drop-after-echo" => return,
            _ => {}
        }
    }
}

/// One request a [`Scripted`] origin received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Seen {
    /// The (first) value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a [`Scripted`] origin answers.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Sent in one piece with a `Content-Length`, or (`chunked`) in 16 KiB pieces without one.
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Canned {
    /// `200`, `content-type: application/json`, the JSON text of `v`.
    pub fn json(v: &serde_json::Value) -> Canned {
        Canned {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(v).unwrap(),
            chunked: false,
        }
    }
}

type Script = dyn Fn(&Seen) -> Canned + Send + Sync;

/// An in-process HTTP/1.1 origin (axum) whose answers the test scripts (a function of the
/// request), recording every request it gets with its headers and body, and how many it was
/// answering at once. Optionally gated: requests are held (received, counted as in flight,
/// unanswered) until the test opens the gate, so a test can hold a copy under way as long as
/// it needs without a timed sleep.
pub struct Scripted {
    pub port: u16,
    state: std::sync::Arc<ScriptedState>,
    gate: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct ScriptedState {
    script: Box<Script>,
    seen: std::sync::Mutex<Vec<Seen>>,
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
    answered: std::sync::atomic::AtomicUsize,
}

/// Counts a request out of [`ScriptedState::now`] however its handler ends (answered, or
/// dropped because the peer went away).
struct InFlightGuard(std::sync::Arc<ScriptedState>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Scripted {
    /// Answers each request with `script(request)` at once.
    pub async fn start(script: impl Fn(&Seen) -> Canned + Send + Sync + 'static) -> Scripted {
        Self::start_gated(true, script).await
    }

    /// Same, the gate starting `open` or closed (see [`Scripted::open`]).
    pub async fn start_gated(
        open: bool,
        script: impl Fn(&Seen) -> Canned + Send + Sync + 'static,
    ) -> Scripted {
        use std::sync::atomic::Ordering::SeqCst;
        let state = std::sync::Arc::new(ScriptedState {
            script: Box::new(script),
            seen: Default::default(),
            now: 0.into(),
            max: 0.into(),
            answered: 0.into(),
        });
        let (gate, gate_rx) = tokio::sync::watch::channel(open);
        let st = state.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (st, mut gate_rx) = (st.clone(), gate_rx.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().map(str::to_string),
                    headers: parts.headers,
                    body,
                };
                let now = st.now.fetch_add(1, SeqCst) + 1;
                st.max.fetch_max(now, SeqCst);
                let _guard = InFlightGuard(st.clone());
                st.seen.lock().unwrap().push(seen.clone());
                let _ = gate_rx.wait_for(|open| *open).await;
                let canned = (st.script)(&seen);
                st.answered.fetch_add(1, SeqCst);
                let mut resp = http::Response::builder().status(canned.status);
                for (k, v) in &canned.headers {
                    resp = resp.header(k.as_str(), v.as_str());
                }
                let body = if canned.chunked {
                    let pieces: Vec<Result<bytes::Bytes, std::convert::Infallible>> = canned
                        .body
                        .chunks(16 * 1024)
                        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                        .collect();
                    axum::body::Body::from_stream(futures_util::stream::iter(pieces))
                } else {
                    axum::body::Body::from(canned.body)
                };
                resp.body(body).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Scripted {
            port,
            state,
            gate,
            task,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Lets every held request (and every later one) be answered.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests being handled right now (received, not yet answered or dropped).
    pub fn in_flight(&self) -> usize {
        self.state.now.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most requests it was handling at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn answered(&self) -> usize {
        self.state
            .answered
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// A `kB` field of the gateway's `/proc/PID/status` (`VmRSS`: resident now; `VmHWM`: the
    /// most it has been resident), in bytes.
    pub fn proc_status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status:\n{status}"));
        kib * 1024
    }
}
