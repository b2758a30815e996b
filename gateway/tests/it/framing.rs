//! Ambiguous message framing is refused with 400 and the connection is closed.

use crate::support::{Echo, Gateway, one_route, raw};

async fn gateway() -> (Echo, Gateway) {
    let a = Echo::start("a").await;
    let gw = Gateway::start(&one_route(&a.addr())).await;
    (a, gw)
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_400() {
    let (_a, gw) = gateway().await;
    // The smuggling shape: a CL.TE request with a second request hidden in the body.
    let r = raw(
        gw.port,
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(r.body.contains("ambiguous-framing"), "{}", r.body);
    assert!(!r.head.contains("smuggled") && !r.body.contains("smuggled"));
    // Exactly one response: the hidden request was never parsed.
    assert_eq!(r.body.matches("HTTP/1.1").count(), 0, "{r:?}");

    // Spelling variants of the header name are caught too.
    let r = raw(
        gw.port,
        b"POST /x HTTP/1.1\r\nHost: t\r\ncontent-LENGTH: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test]
async fn differing_duplicate_content_lengths_are_400() {
    let (_a, gw) = gateway().await;
    let r = raw(
        gw.port,
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    // A plain chunked body and a plain length still work.
    let r = raw(
        gw.port,
        b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = raw(
        gw.port,
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}
