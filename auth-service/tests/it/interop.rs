//! A real third-party verifier accepts our tokens: PyJWT's `PyJWKClient` fetches the live JWKS,
//! verifies signature, `iss`, `aud` and `exp`, and rejects a tampered token.

use std::time::Duration;

use crate::support::{Backend, Server, TestDb, server_login, tamper_signature, write_config};

async fn pyjwt_verifies_through_the_jwks(alg: &str) {
    let db = TestDb::new(Backend::Sqlite).await;
    let config = write_config(&db, &format!("signing_alg: {alg}"));
    let client = testkit::http_client();
    let server = Server::start(&config, &[]).await;
    let login = server_login(&client, &server, "python@example.com").await;
    let token = login["access_token"].as_str().unwrap();
    let issuer = server.base.clone();

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop_pyjwt.py");
    let python = testkit::venv_python();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python)
            .arg(&script)
            .args(["--jwks-url", &server.url("/.well-known/jwks.json")])
            .args(["--issuer", &issuer, "--audience", "api", "--algorithm", alg])
            .args(["--token", token, "--tampered", &tamper_signature(token)])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python timed out")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "interop script failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("OK valid token accepted"), "{stdout}");
    assert!(stdout.contains("OK tampered token rejected"), "{stdout}");
    server.stop().await;
}

#[tokio::test]
async fn pyjwt_pyjwkclient_accepts_rs256_tokens_and_rejects_tampered_ones() {
    tokio::time::timeout(
        Duration::from_secs(90),
        pyjwt_verifies_through_the_jwks("RS256"),
    )
    .await
    .expect("timed out");
}

#[tokio::test]
async fn pyjwt_pyjwkclient_accepts_es256_tokens_and_rejects_tampered_ones() {
    tokio::time::timeout(
        Duration::from_secs(90),
        pyjwt_verifies_through_the_jwks("ES256"),
    )
    .await
    .expect("timed out");
}
