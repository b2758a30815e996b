//! The cohort pin cookie end to end: a visitor placed by their anonymous key keeps their side
//! once a better key appears (as after logging in); a forged pin, or one signed with another
//! secret, is ignored and replaced.

use gateway::split::{Position, in_share, seed};

use crate::support::{Echo, Gateway};

const SALT: &str = "pin-test";
/// The share of the new side, in hundredths of a percent (50 %).
const BASIS_POINTS: u32 = 5_000;

fn on_new(key: &str) -> bool {
    in_share(BASIS_POINTS, Position::of(seed(SALT), key.as_bytes()))
}

fn config(new: &Echo, old: &Echo, secret: &std::path::Path) -> String {
    format!(
        "upstreams:
  new: {{ targets: [{n}] }}
  old: {{ targets: [{o}] }}
cohorts:
  early:
    by: header.x-user
    fallback_by: cookie.sessionid
    salt: {SALT}
    pin: {{ cookie: gw_pin, ttl: 1h, secret_file: \"{s}\" }}
routes:
  - name: r
    match: {{ path_prefix: / }}
    split: {{ to: new, percent: 50, cohort: early, rest: old }}
",
        n = new.addr(),
        o = old.addr(),
        s = secret.display()
    )
}

/// One request: who served it and the pin it was given (the `gw_pin=` value), if any.
async fn send(gw: &Gateway, headers: &[(&str, &str)]) -> (String, Option<String>) {
    let mut req = testkit::http_client().get(gw.url("/x"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let pins: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(pins.len() <= 1, "{pins:?}");
    let pin = pins.first().map(|c| {
        assert!(
            c.ends_with("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"),
            "{c}"
        );
        c.strip_prefix("gw_pin=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    });
    let body: serde_json::Value = resp.json().await.unwrap();
    (body["server"].as_str().unwrap().to_string(), pin)
}

#[tokio::test]
async fn a_pinned_visitor_keeps_their_side_and_a_forged_pin_is_ignored() {
    let (new, old) = (Echo::start("new").await, Echo::start("old").await);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pin.key");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let gw = Gateway::start(&config(&new, &old, &secret)).await;

    // An anonymous session placed on `new`, and a user id that on its own would go to `old`.
    let session = (0..).map(|i| format!("s{i}")).find(|k| on_new(k)).unwrap();
    let user = (0..).map(|i| format!("u{i}")).find(|k| !on_new(k)).unwrap();
    let cookie = format!("sessionid={session}");
    let (by, pin) = send(&gw, &[("cookie", &cookie)]).await;
    assert_eq!(by, "new");
    let pin = pin.expect("a first answer sets the pin");
    let (by, _) = send(&gw, &[("x-user", &user)]).await;
    assert_eq!(by, "old", "the user id alone places on old");

    // Logged in, with the pin: still `new`, and no new pin while this one is valid.
    let pinned = format!("sessionid={session}; gw_pin={pin}");
    for _ in 0..5 {
        assert_eq!(
            send(&gw, &[("x-user", &user), ("cookie", &pinned)]).await,
            ("new".to_string(), None)
        );
    }

    // A forged pin (another position, same signature) is ignored: placed by the user id, and
    // given a real pin.
    let mut parts: Vec<&str> = pin.split('.').collect();
    let forged_position = format!("{:016x}", 0u64);
    parts[1] = &forged_position;
    let forged = format!("gw_pin={}", parts.join("."));
    let (by, fresh) = send(&gw, &[("x-user", &user), ("cookie", &forged)]).await;
    assert_eq!(by, "old");
    assert!(fresh.is_some(), "a forged pin is replaced");
    let (by, fresh) = send(&gw, &[("x-user", &user), ("cookie", "gw_pin=junk")]).await;
    assert_eq!((by.as_str(), fresh.is_some()), ("old", true));

    // A new secret (a reload rotates it): pins signed with the old one no longer count.
    std::fs::write(&secret, [9u8; 32]).unwrap();
    gw.write_config(&config(&new, &old, &secret));
    testkit::eventually(
        "the new secret to be in use",
        crate::support::WAIT,
        || async {
            let (by, fresh) = send(&gw, &[("x-user", &user), ("cookie", &pinned)]).await;
            if by == "old" && fresh.is_some() {
                Ok(())
            } else {
                Err((by, gw.proc.stderr()))
            }
        },
    )
    .await;
}
