//! What the bench reads about a process (CPU time, resident memory, open
//! files) and about the host (listening ports), from /proc.
//!
//! The parsers are pure functions over the text of a /proc file; the readers
//! below them only fetch the text.

use std::fs;

use anyhow::{anyhow, Context, Result};

/// User + system CPU time of the whole process (all threads), in clock ticks,
/// from the text of `/proc/PID/stat` (fields 14 and 15, man proc(5)).
pub fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may itself contain
    // spaces or ')': split after the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("no ')' closing the command name in /proc stat line"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("/proc stat line has no field {n}"))?
            .parse::<u64>()
            .with_context(|| format!("/proc stat field {n} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// Resident set size in KiB from the text of `/proc/PID/status` (`VmRSS:`).
pub fn parse_status_rss_kib(status: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS line in /proc status"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value = words
        .next()
        .ok_or_else(|| anyhow!("VmRSS line has no value"))?
        .parse::<u64>()
        .context("VmRSS value is not a number")?;
    match words.next() {
        Some("kB") => Ok(value),
        other => Err(anyhow!("VmRSS unit is {other:?}, expected kB")),
    }
}

/// TCP ports in LISTEN state, from the text of `/proc/net/tcp` or
/// `/proc/net/tcp6`.
pub fn parse_listening_ports(net_tcp: &str) -> Vec<u16> {
    const LISTEN: &str = "0A";
    net_tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1)?;
            let state = cols.nth(1)?;
            if state != LISTEN {
                return None;
            }
            let port = local.rsplit(':').next()?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

/// Clock ticks one CPU spent since boot, from `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Not idle: running tasks, interrupts, softirqs, or stolen by the
    /// hypervisor (a stolen tick was no more available to the bench's
    /// processes than a busy one).
    pub busy: u64,
    pub total: u64,
}

impl CpuTicks {
    /// The busy share of the ticks since `earlier`; `None` over no ticks.
    pub fn busy_since(self, earlier: CpuTicks) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// The ticks of CPU `cpu` from the text of `/proc/stat` (its `cpuN` line:
/// user nice system idle iowait irq softirq steal ..., man proc(5); guest
/// time is already inside user).
pub fn parse_cpu_ticks(stat: &str, cpu: usize) -> Result<CpuTicks> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .ok_or_else(|| anyhow!("no {name} line in /proc/stat"))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse::<u64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("/proc/stat {name} line has a field that is not a number"))?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
        return Err(anyhow!("/proc/stat {name} line has fewer than 8 fields"));
    };
    let busy = user + nice + system + irq + softirq + steal;
    Ok(CpuTicks {
        busy,
        total: busy + idle + iowait,
    })
}

pub fn cpu_ticks(cpu: usize) -> Result<CpuTicks> {
    let text = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_cpu_ticks(&text, cpu)
}

pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_cpu_ticks(&text).with_context(|| format!("parsing {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_second()? as f64)
}

pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_rss_kib(&text).with_context(|| format!("parsing {path}"))
}

pub fn open_fds(pid: u32) -> Result<usize> {
    let path = format!("/proc/{pid}/fd");
    Ok(fs::read_dir(&path)
        .with_context(|| format!("listing {path}"))?
        .count())
}

pub fn listening_ports() -> Result<Vec<u16>> {
    let mut ports = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // tcp6 is absent when IPv6 is disabled; that is not an error.
        if let Ok(text) = fs::read_to_string(path) {
            ports.extend(parse_listening_ports(&text));
        }
    }
    Ok(ports)
}

fn clock_ticks_per_second() -> Result<u64> {
    use nix::unistd::{sysconf, SysconfVar};
    let ticks = sysconf(SysconfVar::CLK_TCK)
        .context("sysconf(CLK_TCK)")?
        .ok_or_else(|| anyhow!("sysconf(CLK_TCK) has no value"))?;
    u64::try_from(ticks).context("negative CLK_TCK")
}

/// The 1-minute load average from the text of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<f64> {
    text.split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("empty /proc/loadavg"))?
        .parse()
        .context("/proc/loadavg: first field is not a number")
}

/// The 1-minute load average: other work on the machine skews every figure.
pub fn load_average() -> Result<f64> {
    parse_loadavg(&fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?)
}

/// CPU model and kernel, for the report header.
pub fn machine_description() -> String {
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = fs::read_to_string("/proc/cpuinfo")
        .map(|t| t.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".into());
    format!("{cpus} x {model}, Linux {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_sum_utime_and_stime_even_with_parens_in_the_name() {
        // Input: a /proc/PID/stat line whose comm contains ") (" and spaces;
        // utime = 1234, stime = 566.
        let line =
            "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 566 0 0 20 0 3 0 \
                    100 2000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        // Output: 1800 ticks.
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), 1800);
    }

    #[test]
    fn stat_line_too_short_is_an_error() {
        assert!(parse_stat_cpu_ticks("1 (x) S 1 2").is_err());
        assert!(parse_stat_cpu_ticks("no parenthesis").is_err());
    }

    #[test]
    fn status_rss_is_read_in_kib() {
        let status = "Name:\thaproxy\nVmPeak:\t  100 kB\nVmRSS:\t    8812 kB\nRssAnon:\t 4000 kB\n";
        assert_eq!(parse_status_rss_kib(status).unwrap(), 8812);
        assert!(parse_status_rss_kib("Name:\tx\n").is_err());
        assert!(parse_status_rss_kib("VmRSS:\t12 MB\n").is_err());
    }

    #[test]
    fn listening_ports_keep_only_listen_state() {
        // Input: one listener on 127.0.0.1:23000 (0x59D8), one established
        // connection from port 0x3B9E, one IPv6 listener on [::]:80.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 0100007F:59D8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
                  1: 0100007F:3B9E 0100007F:59D8 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n";
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue\n\
                  0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000\n";
        assert_eq!(parse_listening_ports(v4), vec![23000]);
        assert_eq!(parse_listening_ports(v6), vec![80]);
    }

    #[test]
    fn a_cpus_busy_share_counts_everything_but_idle_and_iowait() {
        // Input: cpu1 from 100 busy ticks of 1000 (idle 800, iowait 100)
        // to 550 of 1500 (idle 850, iowait 100; steal counts as busy).
        let before = "cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n\
                      cpu1 50 0 20 800 100 10 10 10 0 0\nintr 1 2 3\n";
        let after = "cpu1 300 0 100 850 100 20 30 100 7 0\n";
        let (a, b) = (
            parse_cpu_ticks(before, 1).unwrap(),
            parse_cpu_ticks(after, 1).unwrap(),
        );
        assert_eq!(
            a,
            CpuTicks {
                busy: 100,
                total: 1000
            }
        );
        assert_eq!(
            b,
            CpuTicks {
                busy: 550,
                total: 1500
            }
        );
        // Output: 450 busy of 500 ticks.
        assert_eq!(b.busy_since(a), Some(0.9));
        assert_eq!(a.busy_since(a), None);
        assert!(parse_cpu_ticks(before, 2).is_err());
        assert!(parse_cpu_ticks("cpu1 1 2 3\n", 1).is_err());
        assert!(parse_cpu_ticks("cpu1 1 2 x 4 5 6 7 8\n", 1).is_err());
    }

    #[test]
    fn loadavg_first_field() {
        assert_eq!(parse_loadavg("3.23 4.70 5.14 2/301 31337\n").unwrap(), 3.23);
        assert!(parse_loadavg("").is_err());
    }

    #[test]
    fn readers_work_on_this_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(open_fds(pid).unwrap() >= 3);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let cpu0 = cpu_ticks(0).unwrap();
        assert!(cpu0.total >= cpu0.busy);
    }
}
