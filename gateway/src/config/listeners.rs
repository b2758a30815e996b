//! Checks of where and how the gateway listens: `listen`, `admin`, `tls`, `server`,
//! `trusted_proxies` and `path_normalization`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::IpNet;

use super::model::{EncodedSlashes, ServerSettings, TlsListener};
use super::yaml::index;
use super::{Problem, Validator, defaults, duration, file};

impl Validator<'_> {
    /// `listen:`.
    pub(super) fn listen(&mut self, v: Option<serde_json::Value>) -> Option<SocketAddr> {
        let Some(v) = v else {
            return Some(defaults::LISTEN);
        };
        let s: String = self.decode(v, "listen")?;
        self.addr(&s, "listen")
    }

    /// `admin: { listen }`.
    pub(super) fn admin(&mut self, v: Option<serde_json::Value>) -> Option<SocketAddr> {
        let Some(v) = v else {
            return Some(defaults::ADMIN_LISTEN);
        };
        let a: file::Admin = self.decode(v, "admin")?;
        self.addr(&a.listen, "admin.listen")
    }

    fn addr(&mut self, s: &str, path: &str) -> Option<SocketAddr> {
        SocketAddr::from_str(s)
            .map_err(|_| self.err(path, Problem::BadListenAddress(s.to_string())))
            .ok()
    }

    /// `tls:`: the files must exist and load as a certificate and its key.
    pub(super) fn tls(&mut self, v: serde_json::Value) -> Option<TlsListener> {
        let t: file::Tls = self.decode(v, "tls")?;
        let listen = self.addr(&t.listen, "tls.listen");
        let cert_ok = self.readable(&t.cert_file, "tls.cert_file");
        let key_ok = self.readable(&t.key_file, "tls.key_file");
        if cert_ok
            && key_ok
            && let Err(e) =
                crate::tls::load_certified_key(Path::new(&t.cert_file), Path::new(&t.key_file))
        {
            self.err("tls", Problem::Certificate(e));
        }
        Some(TlsListener {
            listen: listen?,
            cert_file: PathBuf::from(t.cert_file),
            key_file: PathBuf::from(t.key_file),
        })
    }

    fn readable(&mut self, file: &str, path: &str) -> bool {
        match std::fs::metadata(file) {
            Ok(m) if m.is_file() => true,
            Ok(_) => {
                self.err(path, Problem::NotAFile(file.to_string()));
                false
            }
            Err(e) => {
                self.err(
                    path,
                    Problem::CannotRead {
                        file: file.to_string(),
                        error: e.to_string(),
                    },
                );
                false
            }
        }
    }

    /// `server:`.
    pub(super) fn server(&mut self, v: Option<serde_json::Value>) -> Option<ServerSettings> {
        let s: file::Server = match v {
            None => file::Server::default(),
            Some(v) => self.decode(v, "server")?,
        };
        let threads = s.threads.unwrap_or_else(defaults::server_threads);
        let drain_timeout = duration::or(s.drain_timeout, defaults::DRAIN_TIMEOUT);
        let reload_debounce = duration::or(s.reload_debounce, defaults::RELOAD_DEBOUNCE);
        let upstream_keepalive_pool = s
            .upstream_keepalive_pool
            .unwrap_or(defaults::UPSTREAM_KEEPALIVE_POOL);
        let ok = [
            self.within("server.threads", threads, defaults::SERVER_THREADS_RANGE),
            self.within(
                "server.drain_timeout",
                drain_timeout,
                defaults::DRAIN_TIMEOUT_RANGE,
            ),
            self.within(
                "server.reload_debounce",
                reload_debounce,
                defaults::RELOAD_DEBOUNCE_RANGE,
            ),
            self.within(
                "server.upstream_keepalive_pool",
                upstream_keepalive_pool,
                defaults::UPSTREAM_KEEPALIVE_POOL_RANGE,
            ),
        ];
        ok.iter().all(|ok| *ok).then_some(ServerSettings {
            threads,
            drain_timeout,
            reload_debounce,
            upstream_keepalive_pool,
        })
    }

    /// `trusted_proxies:`: CIDRs or single addresses, stored as networks.
    pub(super) fn trusted_proxies(&mut self, v: Option<serde_json::Value>) -> Option<Vec<IpNet>> {
        let Some(v) = v else { return Some(Vec::new()) };
        let list: Vec<String> = self.decode(v, "trusted_proxies")?;
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let parsed = IpNet::from_str(s)
                .ok()
                .or_else(|| IpAddr::from_str(s).ok().map(IpNet::from));
            match parsed {
                Some(net) => out.push(net.trunc()),
                None => self.err(
                    &index("trusted_proxies", i),
                    Problem::BadCidr(s.to_string()),
                ),
            }
        }
        Some(out)
    }

    /// `path_normalization: { encoded_slashes }`. A broken block is reported and the default
    /// applies (the error fails the load anyway).
    pub(super) fn path_normalization(&mut self, v: Option<serde_json::Value>) -> EncodedSlashes {
        v.and_then(|v| self.decode::<file::PathNormalization>(v, "path_normalization"))
            .and_then(|p| p.encoded_slashes)
            .unwrap_or(defaults::ENCODED_SLASHES)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::tests::{MINIMAL, at, errors, load, out_of_range, problems};

    #[test]
    fn a_minimal_file_listens_where_the_defaults_say() {
        let c = load(MINIMAL);
        assert_eq!(c.listen, defaults::LISTEN);
        assert_eq!(c.admin_listen, defaults::ADMIN_LISTEN);
        assert!(c.tls.is_none());
        assert_eq!(c.server.threads, defaults::server_threads());
        assert_eq!(c.server.drain_timeout, defaults::DRAIN_TIMEOUT);
        assert_eq!(c.server.reload_debounce, defaults::RELOAD_DEBOUNCE);
        assert_eq!(
            c.server.upstream_keepalive_pool,
            defaults::UPSTREAM_KEEPALIVE_POOL
        );
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.encoded_slashes, defaults::ENCODED_SLASHES);
    }

    #[test]
    fn configured_values_are_kept() {
        let c = load(&format!(
            "{MINIMAL}listen: 127.0.0.1:81\nadmin: {{ listen: \"[::1]:82\" }}\n\
             server: {{ threads: 3, drain_timeout: 1s, reload_debounce: 5ms, upstream_keepalive_pool: 7 }}\n\
             trusted_proxies: [10.1.2.3/8, 192.168.1.10, \"::1\"]\n\
             path_normalization: {{ encoded_slashes: keep }}\n"
        ));
        assert_eq!(c.listen, SocketAddr::from((Ipv4Addr::LOCALHOST, 81)));
        assert_eq!(c.admin_listen.to_string(), "[::1]:82");
        assert_eq!(c.server.threads, 3);
        assert_eq!(c.server.drain_timeout, std::time::Duration::from_secs(1));
        assert_eq!(
            c.server.reload_debounce,
            std::time::Duration::from_millis(5)
        );
        assert_eq!(c.server.upstream_keepalive_pool, 7);
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.168.1.10/32", "::1/128"]);
        assert_eq!(c.encoded_slashes, EncodedSlashes::Keep);
    }

    #[test]
    fn bad_addresses_threads_and_cidrs_name_their_field() {
        let src = format!(
            "{MINIMAL}listen: localhost:80\nadmin: {{ listen: \"9901\" }}\nserver: {{ threads: 0 }}\n\
             trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]\n"
        );
        assert_eq!(
            problems(&src),
            at([
                ("listen", Problem::BadListenAddress("localhost:80".into())),
                ("admin.listen", Problem::BadListenAddress("9901".into())),
                (
                    "server.threads",
                    out_of_range(defaults::SERVER_THREADS_RANGE, 0)
                ),
                ("trusted_proxies[1]", Problem::BadCidr("10.0.0.0/33".into())),
            ])
        );
        assert_eq!(
            errors(&src).lines().next(),
            Some(
                "gw.yaml:5:9: listen: invalid listen address \"localhost:80\": expected IP:PORT such as 0.0.0.0:8080"
            )
        );
    }

    #[test]
    fn tls_files_must_exist_and_load() {
        let dir = std::env::temp_dir().display().to_string();
        let missing = format!("{dir}/gateway-config-test-no-such.pem");
        let src = format!(
            "{MINIMAL}tls: {{ listen: 0.0.0.0:8443, cert_file: \"{missing}\", key_file: \"{dir}\" }}\n"
        );
        let p = problems(&src);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "tls.cert_file");
        assert!(
            matches!(&p[0].1, Problem::CannotRead { file, .. } if *file == missing),
            "{p:?}"
        );
        assert_eq!(p[1], ("tls.key_file".to_string(), Problem::NotAFile(dir)));

        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), "not PEM").unwrap();
        let junk = junk.path().display();
        let p = problems(&format!(
            "{MINIMAL}tls: {{ listen: 0.0.0.0:8443, cert_file: \"{junk}\", key_file: \"{junk}\" }}\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "tls");
        assert!(matches!(p[0].1, Problem::Certificate(_)), "{p:?}");
    }

    #[test]
    fn an_unknown_encoded_slashes_mode_is_a_decode_error() {
        let p = problems(&format!(
            "{MINIMAL}path_normalization: {{ encoded_slashes: decode }}\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "path_normalization.encoded_slashes");
        assert!(
            matches!(&p[0].1, Problem::Decode(m) if m.starts_with("unknown variant `decode`")),
            "{p:?}"
        );
    }
}
