//! The TLS listener: HTTP/1.1 and HTTP/2 by ALPN, next to plain HTTP; the certificate is
//! reloaded with the config.

use std::time::Duration;

use crate::support::{Echo, Gateway};

struct Cert {
    cert_pem: String,
    key_pem: String,
}

fn self_signed() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Cert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

fn client(cert: &Cert, http2: bool, port: u16) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10));
    let b = if http2 { b } else { b.http1_only() };
    b.build().unwrap()
}

#[tokio::test]
async fn tls_serves_http1_and_http2_and_reloads_the_certificate() {
    let a = Echo::start("a").await;
    let first = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let tls_port = testkit::free_port();
    let body = format!(
        "tls: {{ listen: 127.0.0.1:{tls_port}, cert_file: {}, key_file: {} }}\nupstreams:\n  a: {{ targets: [{}] }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: a\n",
        cert.display(),
        key.display(),
        a.addr()
    );
    let gw = Gateway::start(&body).await;
    let url = format!("https://localhost:{tls_port}/hello");

    let resp = client(&first, false, tls_port)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["server"], "a");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");

    let resp = client(&first, true, tls_port)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);

    // Plain HTTP keeps working next to TLS.
    assert_eq!(
        testkit::http_client()
            .get(gw.url("/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Renew the certificate: a client that trusts only the new one connects after SIGHUP.
    let second = self_signed();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    std::fs::write(&key, &second.key_pem).unwrap();
    assert!(
        client(&second, false, tls_port)
            .get(&url)
            .send()
            .await
            .is_err(),
        "still the old certificate"
    );
    gw.proc.signal("HUP");
    testkit::eventually("the new certificate", Duration::from_secs(10), || async {
        client(&second, false, tls_port)
            .get(&url)
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}
