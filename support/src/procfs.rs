//! What tests and benchmarks read about a process from /proc: resident
//! memory and open descriptors.

use std::io;

/// Resident set size in KiB from the text of `/proc/PID/status` (`VmRSS:`).
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)?;
    parse_status_rss_kib(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} has no VmRSS line in kB"),
        )
    })
}

/// Descriptors `pid` holds open now.
pub fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: the lines of /proc/PID/status around VmRSS. Output: the KiB.
    #[test]
    fn reads_vm_rss_in_kib() {
        let status = "Name:\tcoexist\nVmPeak:\t  20000 kB\nVmRSS:\t    7312 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(7312));
        assert_eq!(parse_status_rss_kib("VmRSS:\t7312 MB\n"), None);
        assert_eq!(parse_status_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_memory_and_descriptors() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(open_fds(pid).unwrap() >= 3);
    }
}
