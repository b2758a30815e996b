//! Hot reload by write, by rename, by symlink swap and by SIGHUP; a bad file keeps the old
//! routes serving and flips the metric; in-flight requests finish on their config.

use std::time::Duration;

use testkit::eventually;

use crate::support::{Echo, Gateway, Want, get_json, preamble};

fn routes_to(upstream_addr: &str, name: &str) -> String {
    format!(
        "upstreams:\n  u: {{ targets: [{upstream_addr}] }}\nroutes:\n  - name: {name}\n    match: {{ path_prefix: / }}\n    upstream: u\n"
    )
}

async fn served_by(gw: &Gateway) -> String {
    get_json(&gw.url("/x"), &[]).await.1["server"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn wait_served_by(gw: &Gateway, who: &str) {
    eventually(
        &format!("traffic to move to {who}"),
        Duration::from_secs(10),
        || async {
            let by = served_by(gw).await;
            if by == who { Ok(()) } else { Err(by) }
        },
    )
    .await
}

#[tokio::test]
async fn reload_by_write_then_bad_file_then_recovery() {
    let (a, b) = (Echo::start("a").await, Echo::start("b").await);
    let gw = Gateway::start(&routes_to(&a.addr(), "r1")).await;
    assert_eq!(served_by(&gw).await, "a");
    assert_eq!(
        gw.metric("gateway_config_last_reload_successful").await,
        Some(1.0)
    );

    gw.write_config(&routes_to(&b.addr(), "r2"));
    wait_served_by(&gw, "b").await;

    // A broken file: the old routes keep serving and the metric says so.
    gw.write_config("upstreams:\n  u: { targets: [127.0.0.1:1] }\nroutes:\n  - name: r3\n    match: { path_prefx: / }\n    upstream: u\n");
    gw.wait_metric("gateway_config_last_reload_successful", Want::Eq(0.0))
        .await;
    assert_eq!(
        gw.metric(r#"gateway_config_reloads_total{result="failure"}"#)
            .await,
        Some(1.0)
    );
    for _ in 0..20 {
        assert_eq!(served_by(&gw).await, "b");
    }
    reload_error_about(
        &gw,
        "routes[0].match.path_prefx: unknown field `path_prefx`",
    )
    .await;
    assert!(
        gw.proc.stderr().contains("config reload failed"),
        "the failure is logged"
    );

    // The next good file recovers.
    gw.write_config(&routes_to(&a.addr(), "r4"));
    wait_served_by(&gw, "a").await;
    assert_eq!(
        gw.metric("gateway_config_last_reload_successful").await,
        Some(1.0)
    );
    assert!(
        gw.metric(r#"gateway_config_reloads_total{result="success"}"#)
            .await
            .unwrap()
            >= 2.0
    );
}

#[tokio::test]
async fn reload_by_rename_and_by_symlink_swap() {
    let (a, b) = (Echo::start("a").await, Echo::start("b").await);
    // The config is a symlink `gateway.yaml -> ..data/gateway.yaml`, as a Kubernetes ConfigMap
    // volume lays it out.
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (testkit::free_port(), testkit::free_port());
    let v1 = dir.path().join("..v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(
        v1.join("gateway.yaml"),
        format!("{}{}", preamble(port, admin), routes_to(&a.addr(), "v1")),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/gateway.yaml", dir.path().join("gateway.yaml")).unwrap();
    let config = dir.path().join("gateway.yaml");
    let gw = Gateway::start_with(dir, config.clone(), port, admin).await;
    assert_eq!(served_by(&gw).await, "a");

    // ConfigMap update: write a new version dir, then atomically swap `..data`.
    let v2 = gw.dir.path().join("..v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("gateway.yaml"),
        format!("{}{}", preamble(port, admin), routes_to(&b.addr(), "v2")),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v2", gw.dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(
        gw.dir.path().join("..data_tmp"),
        gw.dir.path().join("..data"),
    )
    .unwrap();
    wait_served_by(&gw, "b").await;

    // Editor-style save: write a temp file and rename it over the config (replacing the link).
    let tmp = gw.dir.path().join("gateway.yaml.tmp");
    std::fs::write(
        &tmp,
        format!("{}{}", preamble(port, admin), routes_to(&a.addr(), "v3")),
    )
    .unwrap();
    std::fs::rename(&tmp, &config).unwrap();
    wait_served_by(&gw, "a").await;
}

#[tokio::test]
async fn reload_by_sighup_and_in_flight_requests_keep_their_config() {
    let (a, b) = (Echo::start("a").await, Echo::start("b").await);
    // An hour-long debounce: the file watcher will not reload within this test, SIGHUP must.
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (testkit::free_port(), testkit::free_port());
    let config = dir.path().join("gateway.yaml");
    let slow_debounce =
        preamble(port, admin).replace("reload_debounce: 50ms", "reload_debounce: 1h");
    std::fs::write(
        &config,
        format!("{slow_debounce}{}", routes_to(&a.addr(), "r1")),
    )
    .unwrap();
    let gw = Gateway::start_with(dir, config, port, admin).await;

    let slow = {
        let url = gw.url("/slow");
        tokio::spawn(async move { get_json(&url, &[("x-echo-delay-ms", "1500")]).await })
    };
    // The slow request has its config (taken when the gateway accepts it) before the reload.
    gw.wait_metric("gateway_requests_in_flight", Want::AtLeast(1.0))
        .await;
    gw.write_config(&routes_to(&b.addr(), "r2"));
    // The watcher saw the write (it only arms the 1h deadline): nothing is reloaded yet.
    gw.wait_metric("gateway_config_file_events_total", Want::AtLeast(1.0))
        .await;
    assert_eq!(served_by(&gw).await, "a", "no reload before SIGHUP");
    gw.proc.signal("HUP");
    wait_served_by(&gw, "b").await;
    // The request that started on the old config finished there.
    let (status, v) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["server"], "a");
    assert!(
        gw.proc.stderr().contains("trigger=\"SIGHUP\""),
        "{}",
        gw.proc.stderr()
    );
}

/// Issue 16: a 4,200-deep YAML list (8.6 KB) overflowed the reloader's stack and aborted the
/// gateway, and a rate-limit `per` of 584 years aborted it on reload. Both are now refused
/// like any bad file: the gateway keeps serving its last good config, counts and logs the
/// failure, and `gateway validate` names the same place in the file.
#[tokio::test]
async fn a_file_that_used_to_crash_the_reloader_is_refused_and_serving_goes_on() {
    let a = Echo::start("a").await;
    let good = routes_to(&a.addr(), "r1");
    let gw = Gateway::start(&good).await;
    assert_eq!(served_by(&gw).await, "a");

    let deep = format!("{good}deep:\n  {}x\n", "- ".repeat(4_200));
    gw.write_config(&deep);
    let error = reload_error_about(&gw, "nest more than").await;
    // The preamble is 3 lines, `good` 6: `deep:` is line 10, its 64th `-` opens level 65.
    assert!(
        error.ends_with(":11:129: lists and mappings nest more than 64 deep here"),
        "{error}"
    );
    for _ in 0..10 {
        assert_eq!(served_by(&gw).await, "a", "the last good config serves");
    }

    gw.write_config(&format!(
        "{good}rate_limits: {{ policies: {{ p: {{ key: route, limit: 1, per: 584y }} }} }}\n"
    ));
    let error = reload_error_about(&gw, "rate_limits.policies.p.per").await;
    assert!(
        error.ends_with(
            ":10:60: rate_limits.policies.p.per: must be between 1ms and 1year, got 584years"
        ),
        "{error}"
    );
    assert_eq!(served_by(&gw).await, "a");
    assert_eq!(
        gw.metric("gateway_config_last_reload_successful").await,
        Some(0.0)
    );
    assert!(
        gw.metric(r#"gateway_config_reloads_total{result="failure"}"#)
            .await
            .unwrap()
            >= 2.0
    );
    assert!(gw.proc.stderr().contains("config reload failed"));

    // `validate` says the same about the same file, with its position.
    std::fs::write(&gw.config, &deep).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .arg(&gw.config)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "{}:8:129: lists and mappings nest more than 64 deep here",
            gw.config.display()
        )
    );

    // And the next good file still applies.
    gw.write_config(&routes_to(&a.addr(), "r2"));
    gw.wait_metric("gateway_config_last_reload_successful", Want::Eq(1.0))
        .await;
}

/// Waits until `/admin/config`'s `last_reload_error` mentions `what`; returns it.
async fn reload_error_about(gw: &Gateway, what: &str) -> String {
    eventually(
        &format!("a reload error about {what}"),
        Duration::from_secs(10),
        || async {
            let cfg: serde_json::Value = testkit::http_client()
                .get(gw.admin_url("/admin/config"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let error = cfg["last_reload_error"].as_str().unwrap_or_default();
            if error.contains(what) {
                Ok(error.to_string())
            } else {
                Err(error.to_string())
            }
        },
    )
    .await
}
