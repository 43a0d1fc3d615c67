//! nginx in two roles: the HTTP backend serving a small static page, and the
//! `stream` (layer-4) proxy under test.
//!
//! Both run as one process (`master_process off`, one worker) with their own
//! prefix and config in the run's temp dir, never the system service.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::child::{installed, Child, Spec};
use crate::proxy::{Proxy, Route, UdpRoute};

/// Where Debian's libnginx-mod-stream installs the module.
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Size of the static page: a small response (1 KiB), so that connection
/// setup dominates the request.
pub const PAGE_BYTES: usize = 1024;

/// Settings shared by both roles: a single foreground process that may hold
/// the idle-memory test's connections (one descriptor each for the backend,
/// two for the proxy).
fn common(prefix: &Path) -> String {
    let p = prefix.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 50000;\n\
         pid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{\n    worker_connections 20000;\n}}\n"
    )
}

/// The HTTP backend, one server block listening on every address in
/// `listen` (each is one server of the proxies' round robin). Idle
/// connections that never send a request must stay open through the memory
/// test, hence the long header timeout; keep-alive has no request cap.
pub fn backend_config(listen: &[SocketAddr], prefix: &Path) -> String {
    let p = prefix.display();
    let mut c = common(prefix);
    let listen: String = listen
        .iter()
        .map(|a| format!("        listen {a} backlog=4096;\n"))
        .collect();
    let _ = write!(
        c,
        "http {{\n    access_log off;\n    default_type text/html;\n    \
         keepalive_requests 100000000;\n    keepalive_timeout 600s;\n    client_header_timeout 600s;\n    \
         client_body_temp_path {p}/tmp/body;\n    proxy_temp_path {p}/tmp/proxy;\n    \
         fastcgi_temp_path {p}/tmp/fastcgi;\n    uwsgi_temp_path {p}/tmp/uwsgi;\n    \
         scgi_temp_path {p}/tmp/scgi;\n    \
         server {{\n{listen}        root {p}/www;\n        \
         location / {{\n            index index.html;\n        }}\n    }}\n}}\n"
    );
    c
}

/// The `stream` proxy under test: an upstream (round robin, nginx's
/// default) and a server block per route, defaults otherwise (16 KiB proxy
/// buffer, no splice: nginx stream has none).
pub fn stream_config(routes: &[Route], prefix: &Path) -> String {
    let mut c = format!("load_module {STREAM_MODULE};\n");
    c.push_str(&common(prefix));
    c.push_str("stream {\n");
    for r in routes {
        let _ = writeln!(c, "    upstream {} {{", r.name);
        for server in &r.servers {
            let _ = writeln!(c, "        server {server};");
        }
        let _ = write!(
            c,
            "    }}\n    server {{\n        listen {} backlog=4096;\n        proxy_pass {};\n        \
             proxy_timeout 10m;\n    }}\n",
            r.listen, r.name
        );
    }
    c.push_str("}\n");
    c
}

/// The `stream` proxy for UDP: an upstream and a `listen ... udp` server
/// per route; `proxy_responses` ends a session like coexist's
/// `udp_responses`, `proxy_timeout` is the idle timeout.
pub fn stream_udp_config(routes: &[UdpRoute], prefix: &Path) -> String {
    let mut c = format!("load_module {STREAM_MODULE};\n");
    c.push_str(&common(prefix));
    c.push_str("stream {\n");
    for r in routes {
        let _ = writeln!(c, "    upstream {} {{", r.name);
        for server in &r.servers {
            let _ = writeln!(c, "        server {server};");
        }
        let responses = r
            .responses
            .map_or(String::new(), |n| format!("        proxy_responses {n};\n"));
        let _ = write!(
            c,
            "    }}\n    server {{\n        listen {} udp;\n        proxy_pass {};\n        \
             proxy_timeout {}s;\n{responses}    }}\n",
            r.listen,
            r.name,
            crate::proxy::UDP_IDLE_SECONDS
        );
    }
    c.push_str("}\n");
    c
}

fn start(
    name: &str,
    config: &str,
    prefix: &Path,
    ports: &[u16],
    cpu: Option<usize>,
) -> Result<Child> {
    for sub in ["tmp", "www"] {
        fs::create_dir_all(prefix.join(sub))
            .with_context(|| format!("creating {}/{sub}", prefix.display()))?;
    }
    let conf = prefix.join("nginx.conf");
    fs::write(&conf, config).with_context(|| format!("writing {}", conf.display()))?;
    let prefix_arg = format!("{}/", prefix.display());
    let conf_arg = conf.to_string_lossy();
    let err_arg = prefix.join("error.log");
    let err_arg = err_arg.to_string_lossy();
    // -e: the startup error log too goes to the prefix, not /var/log/nginx.
    let spec = Spec::new(
        name,
        "nginx",
        &["-p", &prefix_arg, "-c", &conf_arg, "-e", &err_arg],
        cpu,
    );
    let mut child = Child::spawn(&spec, prefix)?;
    child
        .wait_ready(ports, None, Duration::from_secs(10))
        .map_err(|e| e.context(fs::read_to_string(prefix.join("error.log")).unwrap_or_default()))?;
    Ok(child)
}

/// Starts the HTTP backend with its page under `prefix`.
pub fn start_backend(listen: &[SocketAddr], prefix: &Path, cpu: Option<usize>) -> Result<Child> {
    fs::create_dir_all(prefix.join("www"))
        .with_context(|| format!("creating {}", prefix.display()))?;
    fs::write(prefix.join("www/index.html"), page()).context("writing the static page")?;
    let ports: Vec<u16> = listen.iter().map(|a| a.port()).collect();
    start(
        "nginx-backend",
        &backend_config(listen, prefix),
        prefix,
        &ports,
        cpu,
    )
}

/// A page of exactly PAGE_BYTES bytes.
pub fn page() -> String {
    let head = "<!DOCTYPE html>\n<html><head><title>coexist-bench</title></head><body>\n";
    let tail = "\n</body></html>\n";
    let filler = PAGE_BYTES - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(filler))
}

pub fn installed_nginx() -> bool {
    installed("nginx")
}

pub struct NginxStream;

impl Proxy for NginxStream {
    fn name(&self) -> &str {
        "nginx-stream"
    }

    fn unavailable(&self) -> Option<String> {
        if !installed_nginx() {
            Some("nginx is not installed (apt-get install nginx libnginx-mod-stream)".into())
        } else if !Path::new(STREAM_MODULE).is_file() {
            Some(format!(
                "no {STREAM_MODULE} (apt-get install libnginx-mod-stream)"
            ))
        } else {
            None
        }
    }

    fn start(&self, routes: &[Route], dir: &Path, cpu: Option<usize>) -> Result<Child> {
        let prefix = dir.join("nginx-stream");
        let ports: Vec<u16> = routes.iter().map(|r| r.listen.port()).collect();
        start(
            "nginx-stream",
            &stream_config(routes, &prefix),
            &prefix,
            &ports,
            cpu,
        )
    }

    fn udp_unavailable(&self) -> Option<String> {
        self.unavailable()
    }

    fn start_udp(&self, routes: &[UdpRoute], dir: &Path, cpu: Option<usize>) -> Result<Child> {
        let prefix = dir.join("nginx-stream-udp");
        // No TCP port to wait for: the caller probes the UDP routes.
        start(
            "nginx-stream-udp",
            &stream_udp_config(routes, &prefix),
            &prefix,
            &[],
            cpu,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_the_advertised_size() {
        assert_eq!(page().len(), PAGE_BYTES);
    }

    #[test]
    fn backend_keeps_idle_connections_and_stays_in_its_prefix() {
        let listen = [
            "127.0.0.1:23002".parse().unwrap(),
            "127.0.0.1:23003".parse().unwrap(),
        ];
        let c = backend_config(&listen, Path::new("/x/nb"));
        assert!(c.contains(
            "listen 127.0.0.1:23002 backlog=4096;\n        listen 127.0.0.1:23003 backlog=4096;\n"
        ));
        assert!(c.contains("client_header_timeout 600s;"));
        assert!(c.contains("master_process off;"));
        assert!(c.contains("root /x/nb/www;"));
        assert!(c.contains("pid /x/nb/nginx.pid;"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn udp_config_listens_udp_and_ends_dns_sessions_by_reply() {
        let routes = crate::proxy::sample_udp_routes();
        let c = stream_udp_config(&routes, Path::new("/x/nu"));
        assert!(c.contains(
            "upstream dns {\n        server [::1]:23005;\n        server [::1]:23006;\n    }"
        ));
        assert!(c.contains(
            "listen 127.0.0.1:23020 udp;\n        proxy_pass dns;\n        proxy_timeout 30s;\n        \
             proxy_responses 1;\n    }"
        ), "{c}");
        assert!(c.contains("listen 127.0.0.1:23021 udp;\n        proxy_pass flows;\n        proxy_timeout 30s;\n    }"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn stream_config_loads_the_module_and_proxies_each_route() {
        let routes = [Route {
            name: "web",
            listen: "127.0.0.1:23013".parse().unwrap(),
            servers: vec![
                "127.0.0.1:23002".parse().unwrap(),
                "127.0.0.1:23003".parse().unwrap(),
            ],
        }];
        let c = stream_config(&routes, Path::new("/x/ns"));
        assert!(c.starts_with(&format!("load_module {STREAM_MODULE};\n")));
        assert!(c.contains(
            "upstream web {\n        server 127.0.0.1:23002;\n        server 127.0.0.1:23003;\n    }"
        ));
        assert!(c.contains("listen 127.0.0.1:23013 backlog=4096;\n        proxy_pass web;"));
        assert!(!c.contains("http {"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }
}
