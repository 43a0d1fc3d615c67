//! Real TCP servers for tests: they listen on loopback (or any address the
//! test gives), count what they see and can be stopped and restarted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// What a test server does with each connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Writes `greeting` first, then echoes everything until EOF, then
    /// half-closes its side.
    Echo { greeting: Vec<u8> },
    /// Parses a PROXY header, records it, then echoes.
    ProxyHeader,
    /// Answers every request with a fixed HTTP response, then closes.
    Http { status: u16 },
}

#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub proxy_headers: Mutex<Vec<lb::proxy_protocol::ProxyHeader>>,
}

/// A running test server. Dropping it stops accepting.
#[derive(Debug)]
pub struct TestServer {
    pub address: SocketAddr,
    pub stats: Arc<Stats>,
    behaviour: Behaviour,
    task: Option<JoinHandle<()>>,
    /// The listening socket, also held by the accept task: `stop` closes
    /// it for new connects at once, as a process that dies does.
    listener: Option<Arc<tokio::net::TcpListener>>,
}

impl TestServer {
    pub async fn start(address: SocketAddr, behaviour: Behaviour) -> std::io::Result<Self> {
        let stats = Arc::new(Stats::default());
        let mut server = Self {
            address,
            stats,
            behaviour,
            task: None,
            listener: None,
        };
        server.listen().await?;
        Ok(server)
    }

    /// An echo server that greets with `name` and a newline, so a client
    /// can tell which server it reached.
    pub async fn named(address: SocketAddr, name: &str) -> std::io::Result<Self> {
        Self::start(
            address,
            Behaviour::Echo {
                greeting: format!("{name}\n").into_bytes(),
            },
        )
        .await
    }

    async fn listen(&mut self) -> std::io::Result<()> {
        // The daemon's own listener setup (v6-only, address reuse).
        let listener = Arc::new(lb::net::bind_listener(self.address, 1024)?);
        self.address = listener.local_addr()?;
        let stats = Arc::clone(&self.stats);
        let behaviour = self.behaviour.clone();
        let accepting = Arc::clone(&listener);
        self.task = Some(tokio::spawn(async move {
            loop {
                match accepting.accept().await {
                    Ok((stream, _)) => {
                        stats.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(handle(stream, behaviour.clone(), Arc::clone(&stats)));
                    }
                    // `stop` shut the socket down: it listens no more.
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => break,
                    Err(_) => continue,
                }
            }
        }));
        self.listener = Some(listener);
        Ok(())
    }

    /// Closes the listener: new connects are refused. Connections already
    /// accepted keep running.
    pub fn stop(&mut self) {
        // Aborting the task drops the listener only when the runtime gets to
        // it; until then the kernel kept completing handshakes into a
        // backlog nobody accepted from (a client of the daemon hung 3 s in
        // `a_server_dying_under_load_costs_no_client_connection` under
        // load). Shut down, a listening socket stops listening at once and
        // resets what is queued, as when a server process dies.
        if let Some(listener) = self.listener.take() {
            let _ = socket2::SockRef::from(listener.as_ref()).shutdown(std::net::Shutdown::Both);
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        // The aborted task drops its listener asynchronously; retry briefly.
        for _ in 0..100 {
            match self.listen().await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => return Err(e),
            }
        }
        self.listen().await
    }

    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::Relaxed)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn handle(mut stream: TcpStream, behaviour: Behaviour, stats: Arc<Stats>) {
    let _ = stream.set_nodelay(true);
    match behaviour {
        Behaviour::Echo { greeting } => {
            if stream.write_all(&greeting).await.is_err() {
                return;
            }
            echo(stream, Vec::new()).await;
        }
        Behaviour::ProxyHeader => {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                match lb::proxy_protocol::decode(&buf) {
                    Ok(Some((header, used))) => {
                        stats.proxy_headers.lock().unwrap().push(header);
                        let rest = buf.split_off(used);
                        echo(stream, rest).await;
                        return;
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
        Behaviour::Http { status } => {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let body = "ok\n";
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Echoes until EOF, then half-closes, so tests see half-close propagate.
async fn echo(mut stream: TcpStream, pending: Vec<u8>) {
    if !pending.is_empty() && stream.write_all(&pending).await.is_err() {
        return;
    }
    let (mut reader, mut writer) = stream.split();
    if tokio::io::copy(&mut reader, &mut writer).await.is_ok() {
        let _ = writer.shutdown().await;
    }
}
