//! The directives of `defaults`, `frontend`, `backend` and `listen`
//! sections (and of `global`, all reported): what a proxy keeps for the
//! translation, and why the rest has no counterpart.
//!
//! Values are kept with the line that set them, so the line is counted as
//! carried only when a proxy that is carried over uses it.

use std::time::Duration;

use super::{At, Kind, Line};
use crate::config::MAX_THREADS;
use crate::import::plan::{Origin, Plan, Threads};
use crate::import::tally::{Loc, Tally};
use crate::import::values::haproxy_time;

#[derive(Debug, Clone)]
pub(super) enum CheckOption {
    /// `option tcp-check`: the `tcp-check` rules, or a connect.
    TcpCheck,
    /// `option httpchk [[method] uri [version]]`.
    HttpChk {
        method: String,
        uri: String,
        version: String,
    },
    /// `option redis-check`: PING, expect +PONG.
    Redis,
    /// Another `option ...-chk` / `...-check` with no coexist counterpart.
    Other(String),
}

/// Rules that a proxy either inherits whole or replaces whole.
#[derive(Debug, Clone, Default)]
pub(super) struct Rules {
    pub lines: Vec<Line>,
    /// Still the inherited list: the proxy's first own rule replaces it.
    inherited: bool,
}

impl Rules {
    fn push(&mut self, line: &Line) {
        if self.inherited {
            self.lines.clear();
            self.inherited = false;
        }
        self.lines.push(line.clone());
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Settings {
    pub mode: Option<At<String>>,
    /// The words after `balance`.
    pub balance: Option<At<Vec<String>>>,
    pub hash_type: Option<At<String>>,
    pub timeout_connect: Option<At<Duration>>,
    pub timeout_client: Option<At<Duration>>,
    pub timeout_server: Option<At<Duration>>,
    pub timeout_tunnel: Option<At<Duration>>,
    pub timeout_check: Option<At<Duration>>,
    pub retries: Option<At<u32>>,
    pub maxconn: Option<At<u64>>,
    pub redispatch: Option<At<bool>>,
    pub check: Option<At<CheckOption>>,
    pub tcp_checks: Rules,
    pub http_checks: Rules,
    /// `default-server` lines, inherited ones first.
    pub default_server: Vec<Line>,
    /// The `disabled` directive of the proxy.
    pub disabled: Option<Loc>,
    pub binds: Vec<Line>,
    pub servers: Vec<Line>,
    pub default_backend: Option<At<String>>,
    pub use_backend: Vec<Line>,
}

const LOGGING: &str = "coexist logs to stderr (the journal under systemd); connections and errors are counted in /metrics";
const ADMIN: &str =
    "the admin endpoint takes its place: /status, /metrics, `coexist status`, `coexist server`";
const RULES: &str = "rules on a connection's source or content: coexist sends every connection of a frontend to its backend";
const STICKY: &str = "no stickiness table: balance = \"maglev\" keeps each client on one server, on both nodes of a pair";
const HTTP: &str = "an HTTP-mode feature; coexist forwards TCP";
const TLS: &str = "TLS is not terminated by coexist: it forwards the bytes as they are";
const PROCESS: &str = "the systemd unit runs coexist (user, confinement, limits); coexist uses every CPU and runs in the foreground";

impl Settings {
    /// A proxy section begins: its own check rules will replace the
    /// inherited ones rather than add to them.
    pub fn own_section_started(&mut self) {
        self.tcp_checks.inherited = true;
        self.http_checks.inherited = true;
    }

    /// Records `line` of a section of `kind`, or reports it.
    pub fn apply(&mut self, line: &Line, kind: Kind, tally: &mut Tally) {
        let at = line.at;
        if line.environment {
            tally.not_carried(
                at,
                "uses an environment variable, whose value HAProxy reads when it starts",
            );
            return;
        }
        let proxy = kind != Kind::Defaults;
        let frontend_side = matches!(kind, Kind::Frontend | Kind::Listen);
        let backend_side = matches!(kind, Kind::Backend | Kind::Listen);
        let w = |i: usize| line.word(i);
        match w(0) {
            "mode" => self.mode = Some(at_(at, w(1).to_owned())),
            "balance" => self.balance = Some(at_(at, line.words[1..].to_vec())),
            "hash-type" => self.hash_type = Some(at_(at, line.words[1..].join(" "))),
            "timeout" => self.timeout(line, tally),
            "contimeout" | "clitimeout" | "srvtimeout" => {
                tally.not_carried(
                    at,
                    "removed from HAProxy; write `timeout connect|client|server`",
                );
            }
            "retries" => match w(1).parse() {
                Ok(n) => self.retries = Some(at_(at, n)),
                Err(_) => tally.not_carried(at, "not a number of retries"),
            },
            "maxconn" if kind == Kind::Backend => {
                tally.not_carried(at, "HAProxy ignores maxconn in a backend");
            }
            "maxconn" => match w(1).parse() {
                Ok(n) => self.maxconn = Some(at_(at, n)),
                Err(_) => tally.not_carried(at, "not a number of connections"),
            },
            "option" => self.option(line, true, tally),
            "no" if w(1) == "option" => {
                let rest = Line {
                    words: line.words[1..].to_vec(),
                    ..line.clone()
                };
                self.option(&rest, false, tally);
            }
            "tcp-check" => self.tcp_checks.push(line),
            "http-check" => self.http_checks.push(line),
            "default-server" => self.default_server.push(line.clone()),
            "disabled" if proxy => self.disabled = Some(at),
            "enabled" => tally.carried(at),
            "bind" if frontend_side => self.binds.push(line.clone()),
            "server" if backend_side => self.servers.push(line.clone()),
            "default_backend" if kind == Kind::Frontend => {
                self.default_backend = Some(at_(at, w(1).to_owned()));
            }
            "use_backend" if kind == Kind::Frontend || kind == Kind::Listen => {
                self.use_backend.push(line.clone());
            }
            "server-template" => tally.not_carried(
                at,
                "servers found through DNS are not carried yet: list the servers by address",
            ),
            "log" | "log-format" | "log-tag" | "error-log-format" | "log-format-sd" | "capture" => {
                tally.not_carried(at, LOGGING);
            }
            "stats" | "monitor-uri" | "monitor" => tally.not_carried(at, ADMIN),
            "acl" | "tcp-request" | "tcp-response" | "use-server" | "force-persist"
            | "ignore-persist" | "rate-limit" | "declare" => tally.not_carried(at, RULES),
            "stick-table" | "stick" | "persist" | "cookie" | "dynamic-cookie-key" => {
                tally.not_carried(at, STICKY);
            }
            "http-request"
            | "http-response"
            | "http-after-response"
            | "http-reuse"
            | "http-error"
            | "errorfile"
            | "errorfiles"
            | "errorloc"
            | "errorloc302"
            | "errorloc303"
            | "redirect"
            | "compression"
            | "filter"
            | "unique-id-format"
            | "unique-id-header"
            | "http-send-name-header"
            | "reqadd"
            | "rspadd" => {
                tally.not_carried(at, HTTP);
            }
            "source" | "usesrc" => tally.not_carried(
                at,
                "connections to servers leave from the address the kernel chooses",
            ),
            "backlog" => tally.not_carried(
                at,
                "the accept backlog is process-wide in coexist: [tuning] backlog",
            ),
            "fullconn" => tally.not_carried(at, "no dynamic server limits in coexist"),
            "bind-process" => tally.not_carried(at, PROCESS),
            "description" | "id" | "guid" => tally.not_carried(
                at,
                "names and comments have no counterpart; the name is kept",
            ),
            "email-alert" => {
                tally.not_carried(at, "no e-mail alerts: watch lb_server_up in /metrics")
            }
            "external-check" | "load-server-state-from-file" | "server-state-file-name" => {
                tally.not_carried(at, "no counterpart in coexist");
            }
            "bind" | "server" | "default_backend" | "use_backend" | "disabled" => {
                tally.not_carried(at, "HAProxy does not allow it in this section");
            }
            other => tally.not_carried(at, format!("`{other}` has no counterpart in coexist")),
        }
    }

    fn timeout(&mut self, line: &Line, tally: &mut Tally) {
        let at = line.at;
        let value = haproxy_time(line.word(2));
        let slot = match line.word(1) {
            "connect" => &mut self.timeout_connect,
            "client" => &mut self.timeout_client,
            "server" => &mut self.timeout_server,
            "tunnel" => &mut self.timeout_tunnel,
            "check" => &mut self.timeout_check,
            "queue" => {
                tally.not_carried(
                    at,
                    "coexist does not queue connections: at the limit it stops accepting",
                );
                return;
            }
            "client-fin" | "server-fin" => {
                tally.not_carried(
                    at,
                    "a half-closed connection ends with the idle timeout in coexist",
                );
                return;
            }
            "http-request" | "http-keep-alive" | "tarpit" => {
                tally.not_carried(at, HTTP);
                return;
            }
            other => {
                tally.not_carried(at, format!("no `timeout {other}` in coexist"));
                return;
            }
        };
        match value {
            Some(d) => *slot = Some(at_(at, d)),
            None => tally.not_carried(at, "not a time HAProxy reads"),
        }
    }

    fn option(&mut self, line: &Line, on: bool, tally: &mut Tally) {
        let at = line.at;
        let name = line.word(1);
        let check = |c: CheckOption| Some(at_(at, c));
        match (name, on) {
            ("tcp-check", true) => self.check = check(CheckOption::TcpCheck),
            ("httpchk", true) => {
                let args = &line.words[2..];
                let (method, uri, version) = match args {
                    [] => ("OPTIONS", "/", "HTTP/1.0"),
                    [uri] => ("OPTIONS", uri.as_str(), "HTTP/1.0"),
                    [method, uri] => (method.as_str(), uri.as_str(), "HTTP/1.0"),
                    [method, uri, version, ..] => {
                        (method.as_str(), uri.as_str(), version.as_str())
                    }
                };
                self.check = check(CheckOption::HttpChk {
                    method: method.to_owned(),
                    uri: uri.to_owned(),
                    version: version.to_owned(),
                });
            }
            ("redis-check", true) => self.check = check(CheckOption::Redis),
            (
                "ssl-hello-chk" | "mysql-check" | "pgsql-check" | "smtpchk" | "ldap-check"
                | "spop-check" | "external-check",
                true,
            ) => self.check = check(CheckOption::Other(name.to_owned())),
            ("redispatch", _) => self.redispatch = Some(at_(at, on)),
            // coexist splices whenever it can.
            ("splice-auto" | "splice-request" | "splice-response", true) => tally.carried(at),
            // Listeners set SO_KEEPALIVE, which accepted sockets inherit.
            ("clitcpka", true) => tally.carried(at),
            ("tcpka", true) => tally.changed(
                at,
                "coexist keeps client connections alive with TCP keep-alive, not server connections",
            ),
            ("srvtcpka", true) => {
                tally.not_carried(at, "coexist does not set TCP keep-alive towards servers")
            }
            ("tcplog" | "httplog" | "dontlognull" | "logasap" | "log-separate-errors"
            | "log-health-checks" | "dontlog-normal", _) => tally.not_carried(at, LOGGING),
            ("forwardfor" | "http-server-close" | "httpclose" | "http-keep-alive"
            | "http-buffer-request" | "http-use-htx" | "originalto" | "http-pretend-keepalive"
            | "http-no-delay" | "http-ignore-probes" | "http-use-proxy-header"
            | "h1-case-adjust-bogus-client" | "h1-case-adjust-bogus-server"
            | "accept-invalid-http-request" | "accept-invalid-http-response"
            | "http_proxy" | "http-restrict-req-hdr-names" | "checkcache", _) => {
                tally.not_carried(at, HTTP)
            }
            ("persist" | "prefer-last-server", _) => tally.not_carried(at, STICKY),
            (other, _) => {
                let negated = if on { "" } else { "no " };
                tally.not_carried(
                    at,
                    format!("`{negated}option {other}` has no counterpart in coexist"),
                );
            }
        }
    }
}

fn at_<T>(at: Loc, value: T) -> At<T> {
    At { at, value }
}

/// A line of the `global` section: the thread count is carried, the other
/// process settings reported.
pub(super) fn global(line: &Line, tally: &mut Tally, plan: &mut Plan) {
    let at = line.at;
    let keyword = line.keyword();
    if keyword == "nbthread" {
        return threads(line, tally, plan);
    }
    let reason = match keyword {
        "maxconn" => {
            "a process-wide limit: coexist limits each frontend (max_connections)".to_owned()
        }
        "log" | "log-send-hostname" | "log-tag" => LOGGING.to_owned(),
        "stats" => ADMIN.to_owned(),
        "daemon"
        | "master-worker"
        | "user"
        | "group"
        | "uid"
        | "gid"
        | "chroot"
        | "pidfile"
        | "nbproc"
        | "cpu-map"
        | "ulimit-n"
        | "setenv"
        | "presetenv"
        | "resetenv"
        | "unsetenv"
        | "node"
        | "hard-stop-after"
        | "grace"
        | "default-path"
        | "zero-warning"
        | "strict-limits"
        | "localpeer"
        | "numa-cpu-mapping"
        | "expose-experimental-directives"
        | "insecure-fork-wanted"
        | "set-dumpable" => PROCESS.to_owned(),
        k if k.starts_with("ssl-")
            || k == "ca-base"
            || k == "crt-base"
            || k.starts_with("tune.ssl") =>
        {
            TLS.to_owned()
        }
        k if k.starts_with("tune.") => {
            "HAProxy tuning; coexist's own knobs are under [tuning]".to_owned()
        }
        other => format!("process-wide setting `{other}` has no counterpart in coexist"),
    };
    tally.not_carried(at, reason);
}

/// `nbthread N` becomes `[tuning] threads = N`: HAProxy's threads run
/// everything, coexist's serve TCP clients, with health checks, VRRP, UDP
/// and the admin API beside them.
fn threads(line: &Line, tally: &mut Tally, plan: &mut Plan) {
    let at = line.at;
    let count = match line.words.as_slice() {
        [_, count] => count.parse::<usize>().ok(),
        _ => None,
    };
    let Some(count) = count.filter(|n| (1..=MAX_THREADS).contains(n)) else {
        return tally.not_carried(
            at,
            format!("`[tuning] threads` takes a count from 1 to {MAX_THREADS}"),
        );
    };
    if let Some(earlier) = &plan.threads {
        return tally.not_carried(
            at,
            format!(
                "`[tuning] threads` is already {} from an earlier nbthread",
                earlier.count
            ),
        );
    }
    tally.changed(
        at,
        "`[tuning] threads`: coexist's threads serve TCP clients; health checks, VRRP, UDP and the admin API run beside them",
    );
    plan.threads = Some(Threads {
        count,
        origin: Origin {
            at,
            what: format!("global: nbthread {count}"),
        },
    });
}
