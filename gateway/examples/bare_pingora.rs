//! The benchmark's `pingora-bare` row: the smallest pingora proxy, built with the gateway's
//! release profile and allocator, so the benchmark can show what pingora itself costs on this
//! machine next to what the gateway adds on top of it. Not a product; no config file.
//!
//! ```sh
//! cargo build --release -p gateway --example bare_pingora
//! target/release/examples/bare_pingora 127.0.0.1:8080 127.0.0.1:9000   # LISTEN ORIGIN
//! curl -s http://127.0.0.1:8080/any/path                                # ORIGIN's answer
//! ```
//!
//! One proxy thread, upstream keep-alive (pingora's connection pool), every request to ORIGIN.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::Result;
use pingora_proxy::{ProxyHttp, Session};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    origin: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.origin, false, String::new())))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(origin)) = (args.first(), args.get(1)) else {
        eprintln!("usage: bare_pingora LISTEN_ADDR ORIGIN_ADDR");
        return ExitCode::from(2);
    };
    let (listen, origin): (SocketAddr, SocketAddr) = match (listen.parse(), origin.parse()) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) => {
            eprintln!("bare_pingora: LISTEN_ADDR {listen:?}: {e}");
            return ExitCode::from(2);
        }
        (_, Err(e)) => {
            eprintln!("bare_pingora: ORIGIN_ADDR {origin:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut proxy =
        pingora_proxy::http_proxy_service_with_name(&server.configuration, Bare { origin }, "bare");
    proxy.add_tcp(&listen.to_string());
    server.add_service(proxy);
    server.bootstrap();
    server.run_forever()
}
