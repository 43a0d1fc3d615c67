//! coexist itself, run from its release binary.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::child::{Child, Spec};
use crate::proxy::{Proxy, Route, UdpRoute};

pub struct Coexist {
    /// The target's name in the table: `coexist`, or another build of it
    /// compared in the same run.
    pub name: String,
    pub binary: PathBuf,
}

impl Coexist {
    /// `coexist` next to this bench binary (both land in target/release).
    pub fn beside_current_exe() -> Result<Coexist> {
        let exe = std::env::current_exe().context("locating the coexist-bench binary")?;
        let dir = exe
            .parent()
            .context("coexist-bench binary has no parent directory")?;
        Ok(Coexist {
            name: "coexist".into(),
            binary: dir.join("coexist"),
        })
    }
}

/// One frontend and one round-robin backend per route; no admin endpoint,
/// no health checks (the servers are up from the start), 64 KiB splice pipes.
pub fn config(routes: &[Route]) -> String {
    let mut c = String::from("[admin]\nlisten = \"\"\n\n[tuning]\npipe_size = 65536\n");
    for r in routes {
        let servers: Vec<String> = r
            .servers
            .iter()
            .map(|s| format!("{{ address = \"{s}\" }}"))
            .collect();
        let _ = write!(
            c,
            "\n[[frontend]]\nname = \"{name}\"\nlisten = [\"{listen}\"]\nbackend = \"{name}\"\n\n\
             [[backend]]\nname = \"{name}\"\nbalance = \"round-robin\"\nservers = [{servers}]\n",
            name = r.name,
            listen = r.listen,
            servers = servers.join(", ")
        );
    }
    c
}

/// A UDP frontend and a round-robin backend per route; no admin endpoint,
/// no health checks; sessions end by `udp_responses` or the default idle
/// timeout (the bench's UDP_IDLE_SECONDS).
pub fn udp_config(routes: &[UdpRoute]) -> String {
    let mut c = String::from("[admin]\nlisten = \"\"\n");
    for r in routes {
        let servers: Vec<String> = r
            .servers
            .iter()
            .map(|s| format!("{{ address = \"{s}\" }}"))
            .collect();
        let responses = r
            .responses
            .map_or(String::new(), |n| format!("udp_responses = {n}\n"));
        let _ = write!(
            c,
            "\n[[frontend]]\nname = \"{name}\"\nprotocol = \"udp\"\nlisten = [\"{listen}\"]\n\
             backend = \"{name}\"\nudp_idle_timeout = \"{idle}s\"\n{responses}\n\
             [[backend]]\nname = \"{name}\"\nbalance = \"round-robin\"\nservers = [{servers}]\n",
            name = r.name,
            listen = r.listen,
            idle = crate::proxy::UDP_IDLE_SECONDS,
            servers = servers.join(", ")
        );
    }
    c
}

/// The line the daemon logs once every listener is bound.
pub const READY_LINE: &str = "coexist running";

impl Proxy for Coexist {
    fn name(&self) -> &str {
        &self.name
    }

    fn unavailable(&self) -> Option<String> {
        (!self.binary.is_file()).then(|| {
            format!(
                "no coexist binary at {} (build it with `cargo build --release -p lb`, or pass --coexist PATH)",
                self.binary.display()
            )
        })
    }

    fn start(&self, routes: &[Route], dir: &Path, cpu: Option<usize>) -> Result<Child> {
        let path = dir.join(format!("{}.toml", self.name));
        fs::write(&path, config(routes)).with_context(|| format!("writing {}", path.display()))?;
        let binary = self.binary.to_string_lossy();
        let path = path.to_string_lossy();
        let spec = Spec::new(&self.name, &binary, &["run", "--config", &path], cpu);
        let mut child = Child::spawn(&spec, dir)?;
        let ports: Vec<u16> = routes.iter().map(|r| r.listen.port()).collect();
        child.wait_ready(&ports, Some(READY_LINE), Duration::from_secs(10))?;
        Ok(child)
    }

    fn udp_unavailable(&self) -> Option<String> {
        self.unavailable()
    }

    fn start_udp(&self, routes: &[UdpRoute], dir: &Path, cpu: Option<usize>) -> Result<Child> {
        let path = dir.join(format!("{}-udp.toml", self.name));
        fs::write(&path, udp_config(routes))
            .with_context(|| format!("writing {}", path.display()))?;
        let binary = self.binary.to_string_lossy();
        let path = path.to_string_lossy();
        let name = format!("{}-udp", self.name);
        let spec = Spec::new(&name, &binary, &["run", "--config", &path], cpu);
        let mut child = Child::spawn(&spec, dir)?;
        child.wait_ready(&[], Some(READY_LINE), Duration::from_secs(10))?;
        Ok(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_config_has_a_udp_frontend_per_route_and_ends_dns_sessions_by_reply() {
        let routes = crate::proxy::sample_udp_routes();
        let c = udp_config(&routes);
        assert!(c.contains(
            "name = \"dns\"\nprotocol = \"udp\"\nlisten = [\"127.0.0.1:23020\"]\nbackend = \"dns\"\n\
             udp_idle_timeout = \"30s\"\nudp_responses = 1\n"
        ), "{c}");
        assert!(
            c.contains("servers = [{ address = \"[::1]:23005\" }, { address = \"[::1]:23006\" }]")
        );
        assert_eq!(
            c.matches("udp_responses").count(),
            1,
            "long sessions have no limit"
        );
        assert_eq!(c.matches("protocol = \"udp\"").count(), 2);
        // The daemon's own validation accepts it.
        let config = lb::config::parse(&c, "bench").unwrap();
        assert!(config.frontends.iter().all(|f| f.udp().is_some()));
    }

    #[test]
    fn config_has_a_frontend_and_backend_per_route() {
        let routes = [
            Route {
                name: "bulk",
                listen: "127.0.0.1:23011".parse().unwrap(),
                servers: vec!["127.0.0.1:23001".parse().unwrap()],
            },
            Route {
                name: "web",
                listen: "127.0.0.1:23012".parse().unwrap(),
                servers: vec![
                    "127.0.0.1:23002".parse().unwrap(),
                    "127.0.0.1:23003".parse().unwrap(),
                ],
            },
        ];
        let c = config(&routes);
        assert!(c.contains("[admin]\nlisten = \"\""));
        assert!(c.contains("pipe_size = 65536"));
        assert_eq!(c.matches("[[frontend]]").count(), 2);
        assert_eq!(c.matches("[[backend]]").count(), 2);
        assert!(c.contains("name = \"web\"\nlisten = [\"127.0.0.1:23012\"]\nbackend = \"web\""));
        assert!(c.contains("servers = [{ address = \"127.0.0.1:23001\" }]"));
        assert!(c.contains(
            "balance = \"round-robin\"\nservers = [{ address = \"127.0.0.1:23002\" }, \
             { address = \"127.0.0.1:23003\" }]"
        ));
    }
}
