//! HAProxy in `mode tcp`, as the reference the table compares against.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::child::{installed, Child, Spec};
use crate::proxy::{Proxy, Route, PROXY_MAX_CONNECTIONS};

pub struct Haproxy {
    /// With `option splice-request` + `option splice-response`.
    /// (`splice-auto` was seen never to engage on loopback.)
    pub splice: bool,
}

impl Haproxy {
    fn label(&self) -> &'static str {
        if self.splice {
            "haproxy-splice"
        } else {
            "haproxy"
        }
    }
}

/// Pipes HAProxy may hold for splicing (its default, a quarter of maxconn,
/// would push its descriptors past the bench's limit); only the active
/// connections of a test need one.
pub const MAX_PIPES: u32 = 1_000;

/// The configuration: HAProxy's own thread count (one per CPU it may run on,
/// so one when pinned), default buffers, no logging, long client/server
/// timeouts so idle connections stay, round robin over each route's servers.
pub fn config(routes: &[Route], splice: bool) -> String {
    let mut c = String::new();
    let _ = write!(
        c,
        "global\n    maxconn {max}\n    maxpipes {MAX_PIPES}\n\n\
         defaults\n    mode tcp\n    maxconn {max}\n    timeout connect 5s\n    \
         timeout client 10m\n    timeout server 10m\n",
        max = PROXY_MAX_CONNECTIONS
    );
    if splice {
        c.push_str("    option splice-request\n    option splice-response\n");
    }
    for r in routes {
        let _ = write!(
            c,
            "\nfrontend fe_{name}\n    bind {listen}\n    default_backend be_{name}\n\n\
             backend be_{name}\n    balance roundrobin\n",
            name = r.name,
            listen = r.listen,
        );
        for (i, server) in r.servers.iter().enumerate() {
            let _ = writeln!(c, "    server s{} {server}", i + 1);
        }
    }
    c
}

impl Proxy for Haproxy {
    fn name(&self) -> &str {
        self.label()
    }

    fn unavailable(&self) -> Option<String> {
        (!installed("haproxy")).then(|| "haproxy is not installed (apt-get install haproxy)".into())
    }

    fn start(&self, routes: &[Route], dir: &Path, cpu: Option<usize>) -> Result<Child> {
        let path = dir.join(format!("{}.cfg", self.label()));
        fs::write(&path, config(routes, self.splice))
            .with_context(|| format!("writing {}", path.display()))?;
        let path = path.to_string_lossy();
        // -db: stay in the foreground, no master process, so the child's PID
        // is the process that forwards.
        let spec = Spec::new(self.label(), "haproxy", &["-db", "-f", &path], cpu);
        let mut child = Child::spawn(&spec, dir)?;
        let ports: Vec<u16> = routes.iter().map(|r| r.listen.port()).collect();
        child.wait_ready(&ports, None, Duration::from_secs(10))?;
        Ok(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        vec![Route {
            name: "web",
            listen: "127.0.0.1:23010".parse().unwrap(),
            servers: vec![
                "127.0.0.1:23002".parse().unwrap(),
                "127.0.0.1:23003".parse().unwrap(),
            ],
        }]
    }

    #[test]
    fn plain_config_is_tcp_mode_round_robin_without_splice() {
        let c = config(&routes(), false);
        assert!(!c.contains("nbthread"), "HAProxy picks its thread count");
        assert!(c.contains("mode tcp"));
        assert!(c.contains("bind 127.0.0.1:23010"));
        assert!(c.contains(
            "balance roundrobin\n    server s1 127.0.0.1:23002\n    server s2 127.0.0.1:23003\n"
        ));
        assert!(!c.contains("splice"));
    }

    #[test]
    fn splice_variant_forces_splice_both_ways() {
        let c = config(&routes(), true);
        assert!(c.contains("option splice-request\n"));
        assert!(c.contains("option splice-response\n"));
    }
}
