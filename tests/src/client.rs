//! Client-side helpers for the loopback tests.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Reads the greeting line a named test server sends first ("name\n").
/// The error says what a client would have seen instead.
pub async fn read_greeting(stream: &mut TcpStream) -> Result<String, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte)).await {
            Err(_) => return Err("no greeting in 3 s".into()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Ok(Ok(0)) => return Err("closed before greeting".into()),
            Ok(Ok(_)) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(Ok(_)) => line.push(byte[0]),
        }
    }
}
