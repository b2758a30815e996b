//! `otlp-receiver --grpc ADDR --http ADDR --out FILE`: a real OTLP trace receiver for tests
//! (see `testkit::otlp`). Each span received is appended to FILE as one JSON line.

use std::net::SocketAddr;
use std::path::PathBuf;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut grpc: Option<SocketAddr> = None;
    let mut http: Option<SocketAddr> = None;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))?;
        match a.as_str() {
            "--grpc" => grpc = Some(v.parse()?),
            "--http" => http = Some(v.parse()?),
            "--out" => out = Some(v.into()),
            _ => anyhow::bail!("unknown argument {a}: use --grpc ADDR --http ADDR --out FILE"),
        }
    }
    let (Some(grpc), Some(http), Some(out)) = (grpc, http, out) else {
        anyhow::bail!("usage: otlp-receiver --grpc ADDR --http ADDR --out FILE");
    };
    testkit::otlp::serve(grpc, http, &out).await
}
