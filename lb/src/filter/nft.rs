//! The thin shell: hands a script to the `nft` program (`nft -f -`), which
//! applies it in one netlink transaction.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncWriteExt;

/// Why a script was not applied.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft is not installed (Debian package nftables)")]
    Missing,
    #[error("cannot run {program}: {error}")]
    Run {
        program: String,
        error: std::io::Error,
    },
    /// nft read the script and the kernel (or nft) refused it; `stderr`
    /// says why (no permission, no nf_tables in the kernel, ...).
    #[error("nft failed ({status}): {stderr}")]
    Refused { status: ExitStatus, stderr: String },
}

/// The `nft` program: on `PATH`, or in the sbin directories a service's or
/// a user's `PATH` may lack.
pub fn locate() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| p.is_file())
}

/// Applies `script` with `nft -f -`.
pub async fn apply(script: &str) -> Result<(), NftError> {
    let program = locate().ok_or(NftError::Missing)?;
    let failed = |error| NftError::Run {
        program: program.display().to_string(),
        error,
    };
    let mut child = tokio::process::Command::new(&program)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(failed)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(failed)?;
    }
    let output = child.wait_with_output().await.map_err(failed)?;
    if output.status.success() {
        return Ok(());
    }
    Err(NftError::Refused {
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}
