//! Upstreams at run time: resolved targets, a pingora load balancer, and the peer options
//! (timeouts, keep-alive) every connection to them uses. Also the weighted, sticky split.

use std::net::ToSocketAddrs;
use std::sync::Arc;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::selection::{Random, RoundRobin};
use pingora_load_balancing::{Backend, LoadBalancer};

use crate::config::model::{LoadBalancing, SplitSide, UpstreamSpec};

pub struct Upstream {
    pub spec: Arc<UpstreamSpec>,
    balancer: Balancer,
}

enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.spec.name)
            .finish()
    }
}

impl Upstream {
    /// Resolves the targets (DNS names are looked up here, once per config load).
    pub fn build(spec: Arc<UpstreamSpec>) -> Result<Self, String> {
        let mut addrs = Vec::new();
        for t in &spec.targets {
            let resolved = t.to_socket_addrs().map_err(|e| {
                format!(
                    "upstreams.{}: cannot resolve target \"{t}\": {e}",
                    spec.name
                )
            })?;
            // One backend per target: the first address the name resolves to.
            let first = resolved.into_iter().next().ok_or_else(|| {
                format!(
                    "upstreams.{}: target \"{t}\" resolves to no address",
                    spec.name
                )
            })?;
            addrs.push(first);
        }
        let err = |e: std::io::Error| format!("upstreams.{}: {e}", spec.name);
        let balancer = match spec.load_balancing {
            LoadBalancing::RoundRobin => {
                Balancer::RoundRobin(LoadBalancer::try_from_iter(addrs).map_err(err)?)
            }
            LoadBalancing::Random => {
                Balancer::Random(LoadBalancer::try_from_iter(addrs).map_err(err)?)
            }
        };
        Ok(Upstream { spec, balancer })
    }

    /// The next target by the upstream's load-balancing algorithm.
    pub fn select(&self) -> Option<Backend> {
        let tries = self.spec.targets.len().max(1);
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.select(b"", tries),
            Balancer::Random(lb) => lb.select(b"", tries),
        }
    }

    /// A peer for `backend` carrying this upstream's timeouts. pingora pools connections per
    /// peer, so requests to the same target reuse kept-alive connections.
    pub fn peer(&self, backend: &Backend) -> HttpPeer {
        let mut peer = HttpPeer::new(backend.addr.clone(), false, String::new());
        let t = self.spec.timeouts;
        peer.options.connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.response);
        peer.options.write_timeout = Some(t.response);
        peer.options.idle_timeout = Some(t.idle);
        peer
    }
}

/// Picks a side of a weighted split. With a key, the same key always gets the same side (for as
/// long as the weights do not change): `xxh3(key) mod total_weight` walks the cumulative weights.
/// Without a key the pick is random by weight.
pub fn pick_side<'a>(sides: &'a [SplitSide], key: Option<&[u8]>) -> &'a SplitSide {
    let total: u64 = sides.iter().map(|s| u64::from(s.weight)).sum();
    let point = match key {
        Some(k) => xxhash_rust::xxh3::xxh3_64(k) % total.max(1),
        None => rand::random_range(0..total.max(1)),
    };
    let mut acc = 0u64;
    for s in sides {
        acc += u64::from(s.weight);
        if point < acc {
            return s;
        }
    }
    &sides[sides.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sides() -> Vec<SplitSide> {
        vec![
            SplitSide {
                upstream: "a".into(),
                weight: 10,
            },
            SplitSide {
                upstream: "b".into(),
                weight: 90,
            },
            SplitSide {
                upstream: "zero".into(),
                weight: 0,
            },
        ]
    }

    #[test]
    fn same_key_same_side() {
        let s = sides();
        for i in 0..200 {
            let key = format!("user-{i}");
            let first = &pick_side(&s, Some(key.as_bytes())).upstream;
            for _ in 0..5 {
                assert_eq!(&pick_side(&s, Some(key.as_bytes())).upstream, first);
            }
        }
    }

    #[test]
    fn weights_hold_and_zero_never_wins() {
        let s = sides();
        let mut a = 0;
        for i in 0..10_000 {
            let side = &pick_side(&s, Some(format!("k{i}").as_bytes())).upstream;
            assert_ne!(side, "zero");
            if side == "a" {
                a += 1;
            }
        }
        assert!((800..1200).contains(&a), "a got {a} of 10000");
    }
}
