//! Socket setup for both legs of a proxied connection.
//!
//! Listeners are created with `socket2` so options that must precede
//! `bind(2)` (free bind, v6-only, address reuse) are set in the right order.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Binds a listening socket for a frontend address.
///
/// Free bind lets a VRRP backup listen on a virtual address it does not own
/// yet, so it serves the moment it takes over. IPv6 sockets are v6-only so
/// `0.0.0.0:p` and `[::]:p` can both be listed.
pub fn bind_listener(address: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_listening_socket(address, backlog)?)
}

/// [`bind_listener`] before it is registered with a runtime: the daemon
/// hands it (and duplicates of it) to the runtimes that accept from it.
pub fn bind_listening_socket(
    address: SocketAddr,
    backlog: u32,
) -> io::Result<std::net::TcpListener> {
    let domain = Domain::for_address(address);
    let socket = Socket::new(
        domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
        socket.set_freebind_ipv6(true)?;
    } else {
        socket.set_freebind(true)?;
    }
    // Accepted sockets inherit both from the listener (checked by a test),
    // which saves two system calls per connection.
    socket.set_nodelay(true)?;
    // Keepalive finds clients that vanished without a FIN long before the
    // idle timeout would, freeing their server-side connection too.
    socket.set_keepalive(true)?;
    socket.bind(&address.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Connects to a server within `timeout`.
///
/// A timeout is reported as `io::ErrorKind::TimedOut` so callers treat it
/// like any other failed connect (retry elsewhere, count it passively).
pub async fn connect(address: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_nodelay(true)?;
    match tokio::time::timeout(timeout, socket.connect(address)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timeout after {}", humantime::format_duration(timeout)),
        )),
    }
}

/// The short reason shown in logs and `/status` for a failed connect, the
/// same whether a client's connect or a health check failed.
pub fn describe_connect_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connect refused".to_owned(),
        io::ErrorKind::TimedOut => error.to_string(),
        _ => format!("connect failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    #[tokio::test]
    async fn ipv4_and_ipv6_wildcards_share_a_port() {
        let v4 = bind_listener("0.0.0.0:0".parse().unwrap(), 16).unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = bind_listener(SocketAddr::new("::".parse().unwrap(), port), 16);
        assert!(
            v6.is_ok(),
            "v6-only listener must coexist with 0.0.0.0:{port}: {v6:?}"
        );
    }

    #[tokio::test]
    async fn free_bind_accepts_an_address_this_host_does_not_own() {
        // 192.0.2.0/24 is TEST-NET-1: never assigned here, and nothing is sent to it.
        let listener = bind_listener("192.0.2.77:0".parse().unwrap(), 16);
        assert!(listener.is_ok(), "free bind failed: {listener:?}");
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive() {
        for address in ["127.0.0.1:0", "[::1]:0"] {
            let listener = bind_listener(address.parse().unwrap(), 16).unwrap();
            let _client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            assert!(
                accepted.nodelay().unwrap(),
                "{address}: TCP_NODELAY not inherited"
            );
            assert!(
                SockRef::from(&accepted).keepalive().unwrap(),
                "{address}: SO_KEEPALIVE not inherited"
            );
        }
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_fails_fast() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = connect(address, Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    }
}
