//! What tests and benchmarks read about a process from /proc: resident
//! memory, other `Key: value` lines of `status` and `smaps_rollup`, and
//! open descriptors.

use std::io;

/// The value of the `key` line in the text of a /proc file made of
/// `Key:   value [unit]` lines (`status`, `smaps_rollup`), and its unit.
pub fn parse_field<'t>(text: &'t str, key: &str) -> Option<(u64, Option<&'t str>)> {
    let rest = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let mut words = rest.split_whitespace();
    let value = words.next()?.parse().ok()?;
    Some((value, words.next()))
}

fn read_field(pid: u32, file: &str, key: &str, unit: Option<&str>) -> io::Result<u64> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path)?;
    match parse_field(&text, key) {
        Some((value, found)) if found == unit => Ok(value),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{path} has no {key} line in {}",
                unit.unwrap_or("a plain number")
            ),
        )),
    }
}

/// `key` of `/proc/PID/FILE`, a line in kB, in KiB.
pub fn kib(pid: u32, file: &str, key: &str) -> io::Result<u64> {
    read_field(pid, file, key, Some("kB"))
}

/// `key` of `/proc/PID/FILE`, a line holding a plain number.
pub fn number(pid: u32, file: &str, key: &str) -> io::Result<u64> {
    read_field(pid, file, key, None)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    kib(pid, "status", "VmRSS")
}

/// Descriptors `pid` holds open now.
pub fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: the lines of /proc/PID/status around VmRSS. Output: the KiB,
    // with its unit; a number without one.
    #[test]
    fn reads_fields_with_their_units() {
        let status = "Name:\tcoexist\nVmPeak:\t  20000 kB\nVmRSS:\t    7312 kB\nThreads:\t3\n";
        assert_eq!(parse_field(status, "VmRSS"), Some((7312, Some("kB"))));
        assert_eq!(
            parse_field("VmRSS:\t7312 MB\n", "VmRSS"),
            Some((7312, Some("MB")))
        );
        assert_eq!(parse_field(status, "Threads"), Some((3, None)));
        assert_eq!(parse_field(status, "Vm"), None);
        assert_eq!(parse_field("Name:\tx\n", "VmRSS"), None);
    }

    #[test]
    fn this_process_has_memory_and_descriptors() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(number(pid, "status", "Threads").unwrap() >= 1);
        assert!(
            kib(pid, "status", "Threads").is_err(),
            "Threads has no unit"
        );
        assert!(open_fds(pid).unwrap() >= 3);
    }
}
