//! A private network namespace for the whole run: its loopback carries only
//! the bench's traffic, its ports are all free, and no firewall or
//! connection tracking rule of the host applies.

use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::sched::{unshare, CloneFlags};

/// Moves this process into a new network namespace with `lo` up; every
/// child started afterwards runs in it. Call before any thread is spawned
/// (a namespace is per thread, and later threads inherit the caller's).
pub fn enter_private() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET) (needs root; or pass --host-network)")?;
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("running `ip link set lo up`")?;
    if !status.success() {
        bail!("`ip link set lo up` in the bench's namespace exited {status}");
    }
    Ok(())
}
