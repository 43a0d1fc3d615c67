//! An early, standalone measurement of UDP forwarding: coexist against
//! nginx `stream` UDP on loopback, both pinned to CPU 0, with echo servers
//! and the load on the other CPU. Until `coexist-bench` gains UDP rows.
//!
//! ```text
//!   load (F flows, 1 outstanding each) ──► proxy 127.0.0.1:P (CPU 0) ──► echo [::1]:a, [::1]:b
//! ```
//!
//! Two scenarios: long sessions (each flow keeps its session) and DNS-like
//! sessions (one response ends the session: `udp_responses = 1`,
//! `proxy_responses 1`), so every request opens a session. Each run is
//! bounded in time; figures are medians of the repetitions with min–max.
//!
//! ```sh
//! cargo build --release -p lb && cargo build --release -p coexist-tests --examples
//! quiet taskset -c 1 target/release/examples/udp_measure [SECONDS] [REPETITIONS]
//! ```
//!
//! `UDP_MEASURE_ONLY=coexist,DNS` (a target, then a word of the scenario
//! name) runs one case alone, e.g. to profile it.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coexist_tests::daemon::coexist_binary;
use coexist_tests::ports::free_port;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

const FLOWS: usize = 64;
const PAYLOAD: usize = 64;
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

struct Outcome {
    rate: f64,
    per_core: f64,
    cpu: f64,
    p50_us: f64,
    p99_us: f64,
    lost: u64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let repetitions: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let echoes: Vec<SocketAddr> = (0..2).map(|_| echo_server()).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "UDP echo through a proxy pinned to CPU 0; {FLOWS} flows x 1 outstanding, {PAYLOAD}-byte datagrams, IPv4 client -> IPv6 servers; {seconds} s x {repetitions} runs"
    );
    let only = std::env::var("UDP_MEASURE_ONLY").unwrap_or_default();
    for (scenario, responses) in [
        ("long sessions", None),
        ("one response per session (DNS-like)", Some(1)),
    ] {
        if !only.is_empty() && !scenario.contains(only.split(',').nth(1).unwrap_or("")) {
            continue;
        }
        let coexist_port = free_port();
        let nginx_port = free_port();
        let mut coexist = start_coexist(dir.path(), coexist_port, &echoes, responses);
        let mut nginx = start_nginx(dir.path(), nginx_port, &echoes, responses);
        std::thread::sleep(Duration::from_millis(500));
        let targets = [
            ("coexist", coexist.id(), coexist_port),
            ("nginx", nginx.id(), nginx_port),
        ];
        let mut results: Vec<Vec<Outcome>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..repetitions {
            for (i, (name, pid, port)) in targets.iter().enumerate() {
                if !only.is_empty() && !only.starts_with(name) {
                    continue;
                }
                let target: SocketAddr = ([127, 0, 0, 1], *port).into();
                load(target, Duration::from_millis(500), None);
                results[i].push(load(target, Duration::from_secs(seconds), Some(*pid)));
            }
        }
        println!("\n{scenario}");
        println!(
            "{:<8} {:>24} {:>14} {:>28} {:>20} {:>20} {:>6}",
            "target", "req/s", "proxy CPU", "req/s per proxy core", "p50 us", "p99 us", "lost"
        );
        for ((name, _, _), runs) in targets.iter().zip(&results) {
            println!(
                "{:<8} {:>24} {:>14} {:>28} {:>20} {:>20} {:>6}",
                name,
                spread(runs, |o| o.rate, 0),
                spread(runs, |o| o.cpu * 100.0, 0),
                spread(runs, |o| o.per_core, 0),
                spread(runs, |o| o.p50_us, 1),
                spread(runs, |o| o.p99_us, 1),
                runs.iter().map(|o| o.lost).sum::<u64>()
            );
        }
        let median = |i: usize, f: fn(&Outcome) -> f64| {
            let mut v: Vec<f64> = results[i].iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        if results.iter().any(Vec::is_empty) {
            stop(&mut coexist);
            stop(&mut nginx);
            continue;
        }
        println!(
            "coexist/nginx: per proxy core {:.2}x, p99 {:.2}x",
            median(0, |o| o.per_core) / median(1, |o| o.per_core),
            median(0, |o| o.p99_us) / median(1, |o| o.p99_us)
        );
        stop(&mut coexist);
        stop(&mut nginx);
    }
}

/// "median [min-max]" of `f` over the runs.
fn spread(runs: &[Outcome], f: impl Fn(&Outcome) -> f64, decimals: usize) -> String {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "-".to_owned();
    }
    format!(
        "{:.*} [{:.*}-{:.*}]",
        decimals,
        v[v.len() / 2],
        decimals,
        v[0],
        decimals,
        v[v.len() - 1]
    )
}

/// An echo server on [::1] in a thread of this process.
fn echo_server() -> SocketAddr {
    let socket = UdpSocket::bind("[::1]:0").expect("bind echo");
    let address = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(&buffer[..n], peer);
        }
    });
    address
}

fn start_coexist(dir: &Path, port: u16, echoes: &[SocketAddr], responses: Option<u32>) -> Child {
    let servers: Vec<String> = echoes
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    let responses = responses.map_or(String::new(), |r| format!("udp_responses = {r}\n"));
    let config = format!(
        "[admin]\nlisten = \"\"\n\n[[frontend]]\nname = \"echo\"\nprotocol = \"udp\"\nlisten = [\"127.0.0.1:{port}\"]\nbackend = \"echo\"\n{responses}\n[[backend]]\nname = \"echo\"\nservers = [{}]\n",
        servers.join(", ")
    );
    let path = dir.join(format!("coexist-{port}.toml"));
    std::fs::write(&path, config).unwrap();
    Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg(coexist_binary())
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("COEXIST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start coexist")
}

fn start_nginx(dir: &Path, port: u16, echoes: &[SocketAddr], responses: Option<u32>) -> Child {
    let prefix = dir.join(format!("nginx-{port}"));
    std::fs::create_dir_all(&prefix).unwrap();
    let p = prefix.display();
    let servers: String = echoes.iter().map(|a| format!("server {a}; ")).collect();
    let responses = responses.map_or(String::new(), |r| format!("proxy_responses {r};"));
    let config = format!(
        "load_module {NGINX_STREAM_MODULE};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
         worker_rlimit_nofile 20000;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{ worker_connections 16000; }}\n\
         stream {{ upstream echo {{ {servers} }}\n  server {{ listen 127.0.0.1:{port} udp; proxy_pass echo; proxy_timeout 30s; {responses} }} }}\n"
    );
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg("nginx")
        .arg("-p")
        .arg(format!("{p}/"))
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .stdin(Stdio::null())
        .spawn()
        .expect("start nginx")
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// User + system CPU ticks of `pid` (man proc(5), fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

/// FLOWS sockets each keep one request outstanding for `duration`; a
/// request unanswered after 200 ms counts as lost and is sent anew.
fn load(target: SocketAddr, duration: Duration, pid: Option<u32>) -> Outcome {
    let sockets: Vec<UdpSocket> = (0..FLOWS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(target).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let mut sent_at = vec![Instant::now(); FLOWS];
    let mut sequence = vec![0u64; FLOWS];
    let mut latencies: Vec<u32> = Vec::with_capacity(4_000_000);
    let mut lost = 0;
    let mut payload = [0u8; PAYLOAD];
    let send = |i: usize, seq: u64, socket: &UdpSocket, payload: &mut [u8; PAYLOAD]| {
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        payload[8..16].copy_from_slice(&(i as u64).to_be_bytes());
        let _ = socket.send(payload);
    };
    let ticks_before = pid.map(cpu_ticks);
    let started = Instant::now();
    for (i, socket) in sockets.iter().enumerate() {
        send(i, 0, socket, &mut payload);
    }
    let mut buffer = [0u8; 2048];
    while started.elapsed() < duration {
        let mut fds: Vec<PollFd<'_>> = sockets
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        let _ = poll(&mut fds, PollTimeout::from(50u8));
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .collect();
        drop(fds);
        let now = Instant::now();
        for (i, socket) in sockets.iter().enumerate() {
            if ready[i] {
                while let Ok(n) = socket.recv(&mut buffer) {
                    let seq = u64::from_be_bytes(buffer[..8].try_into().unwrap());
                    if n == PAYLOAD && seq == sequence[i] {
                        latencies.push(now.duration_since(sent_at[i]).as_micros() as u32);
                        sequence[i] += 1;
                        sent_at[i] = now;
                        send(i, sequence[i], socket, &mut payload);
                    }
                }
            } else if now.duration_since(sent_at[i]) > Duration::from_millis(200) {
                lost += 1;
                sequence[i] += 1;
                sent_at[i] = now;
                send(i, sequence[i], socket, &mut payload);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (pid, ticks_before) {
        (Some(pid), Some(before)) => (cpu_ticks(pid) - before) as f64 / 100.0 / elapsed,
        _ => 0.0,
    };
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
    };
    let rate = latencies.len() as f64 / elapsed;
    Outcome {
        rate,
        per_core: if cpu > 0.0 { rate / cpu } else { 0.0 },
        cpu,
        p50_us: at(0.5),
        p99_us: at(0.99),
        lost,
    }
}
