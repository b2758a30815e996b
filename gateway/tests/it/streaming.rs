//! Bodies stream both ways: 200 MB up and 200 MB down through the gateway while its peak
//! resident memory stays bounded.

use futures_util::StreamExt;

use crate::support::{Echo, Gateway, one_route};

const SIZE: u64 = 200 * 1024 * 1024;
/// Growth of the gateway's peak RSS allowed across both transfers. A gateway that buffered a
/// body would grow by ~200 MB.
const MAX_GROWTH_KB: u64 = 48 * 1024;

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn large_bodies_stream_with_bounded_memory() {
    let a = Echo::start("a").await;
    let gw = Gateway::start(&one_route(&a.addr())).await;
    let client = testkit::http_client();
    // Warm up so one-time allocations are not counted as growth.
    client.get(gw.url("/warm")).send().await.unwrap();
    let before = peak_rss_kb(gw.proc.pid());

    // Upload: a 200 MB streamed body; the origin counts what it received.
    let chunk = bytes::Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = SIZE / chunk.len() as u64;
    let body = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let resp = client
        .post(gw.url("/upload"))
        .header("content-length", SIZE.to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["body_bytes"], SIZE);

    // Download: 200 MB streamed from the origin, counted here without keeping it.
    let resp = client
        .get(gw.url("/download"))
        .header("x-echo-body-bytes", SIZE.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = 0u64;
    while let Some(part) = stream.next().await {
        got += part.unwrap().len() as u64;
    }
    assert_eq!(got, SIZE);

    let after = peak_rss_kb(gw.proc.pid());
    eprintln!("gateway peak RSS: {before} kB before, {after} kB after 2 x 200 MB");
    assert!(
        after - before < MAX_GROWTH_KB,
        "peak RSS grew from {before} kB to {after} kB"
    );
}
