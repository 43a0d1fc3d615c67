//! The IO around [`Resolution`] and [`Attempts`]: lookups through
//! hickory-resolver, and the racing connects of Happy Eyeballs.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::stream::{FuturesUnordered, StreamExt};
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use metrics::gauge;
use tokio::net::TcpStream;

use super::{Attempts, Bounds, NameOwner, NamedTarget, Outcome, Resolution, Resolved};
use crate::config::{self, Family};
use crate::metrics as m;

/// Resolves `named` (the target of `server`) until a reload removes the
/// server, following the `[resolver]` that `resolver` holds at each lookup.
pub fn spawn(
    server: Arc<impl NameOwner>,
    named: Arc<NamedTarget>,
    resolver: Arc<ArcSwap<config::Resolver>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let first = resolver.load_full();
        let mut resolution = Resolution::new(bounds(&first), Instant::now());
        let mut built: Option<(Arc<config::Resolver>, TokioResolver)> = None;
        loop {
            if server.is_retired() {
                return;
            }
            let wanted = resolver.load_full();
            resolution.set_bounds(bounds(&wanted), Instant::now());
            if built.as_ref().is_none_or(|(used, _)| **used != *wanted) {
                built = match build(&wanted) {
                    Ok(client) => Some((Arc::clone(&wanted), client)),
                    Err(error) => {
                        tracing::warn!(error = %error, "cannot set up the resolver");
                        None
                    }
                };
            }
            let outcome = match &built {
                Some((_, client)) => lookup(client, &named).await,
                None => Outcome::Failed("no resolver configuration".to_owned()),
            };
            if server.is_retired() {
                return;
            }
            let changed = resolution.record(outcome, Instant::now());
            publish(&*server, &named, &resolution, changed);
            let next = tokio::time::Instant::from_std(resolution.next_lookup());
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = server.retired() => return,
            }
        }
    })
}

fn bounds(resolver: &config::Resolver) -> Bounds {
    Bounds {
        min: resolver.min_ttl,
        max: resolver.max_ttl,
    }
}

/// A hickory resolver for `[resolver]`: its servers, or those of
/// `/etc/resolv.conf`. Its own cache is harmless: we ask again only once
/// the TTL ran out, when the cache has let the answer go too.
fn build(wanted: &config::Resolver) -> Result<TokioResolver, ResolveError> {
    let mut builder = if wanted.servers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let mut servers = ResolverConfig::new();
        for address in &wanted.servers {
            servers.add_name_server(NameServerConfig::new(*address, Protocol::Udp));
            servers.add_name_server(NameServerConfig::new(*address, Protocol::Tcp));
        }
        let mut builder =
            TokioResolver::builder_with_config(servers, TokioConnectionProvider::default());
        // `timeout` and `attempts` left out mean resolv.conf's, whoever
        // the name servers are.
        if let Ok((_, system)) = hickory_resolver::system_conf::read_system_conf() {
            let options = builder.options_mut();
            options.timeout = system.timeout;
            options.attempts = system.attempts;
        }
        builder
    };
    let options = builder.options_mut();
    if let Some(timeout) = wanted.timeout {
        options.timeout = timeout;
    }
    // `attempts` counts the queries to a name server, as resolv.conf's
    // does (and hickory reads resolv.conf's into its option as is); that
    // option counts the retries after the first query.
    let queries = wanted.attempts.unwrap_or(options.attempts).max(1);
    options.attempts = queries - 1;
    options.use_hosts_file = if wanted.hosts {
        ResolveHosts::Always
    } else {
        ResolveHosts::Never
    };
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    Ok(builder.build())
}

/// One A + AAAA lookup, restricted to the server's `family`.
async fn lookup(client: &TokioResolver, named: &NamedTarget) -> Outcome {
    match client.lookup_ip(named.host.as_str()).await {
        Ok(answer) => {
            let only = named.family_restriction();
            let addresses: Vec<IpAddr> = answer
                .iter()
                .filter(|ip| only.is_none_or(|f| Family::of(*ip) == f))
                .collect();
            Outcome::Answer {
                addresses,
                ttl: answer
                    .valid_until()
                    .saturating_duration_since(Instant::now()),
            }
        }
        Err(error) => Outcome::Failed(error.to_string()),
    }
}

fn publish(server: &impl NameOwner, named: &NamedTarget, resolution: &Resolution, changed: bool) {
    let resolved = Resolved {
        addresses: resolution.addresses().to_vec(),
        expires: resolution.expires(),
        error: resolution.error().map(str::to_owned),
    };
    let (backend, name) = (server.backend(), server.server_name());
    if let Some(error) = &resolved.error {
        tracing::warn!(
            backend = %backend,
            server = %name,
            host = %named.host,
            error = %error,
            kept = resolved.addresses.len(),
            "cannot resolve server name; keeping its last addresses"
        );
    } else if changed {
        tracing::info!(
            backend = %backend,
            server = %name,
            host = %named.host,
            addresses = ?resolved.addresses,
            "server name resolved to new addresses"
        );
    }
    for family in [Family::Ipv4, Family::Ipv6] {
        let count = resolved
            .addresses
            .iter()
            .filter(|a| Family::of(**a) == family)
            .count();
        gauge!(
            m::SERVER_RESOLVED_ADDRESSES,
            "backend" => backend.to_owned(),
            "server" => name.to_string(),
            "family" => family.as_str()
        )
        .set(count as f64);
    }
    if resolved.error.is_some() {
        metrics::counter!(
            m::SERVER_RESOLVE_ERRORS_TOTAL,
            "backend" => backend.to_owned(),
            "server" => name.to_string()
        )
        .increment(1);
    }
    named.publish(resolved);
}

/// Connects to a named server by Happy Eyeballs (RFC 8305), all within
/// `timeout`; the error is the last attempt's.
pub async fn connect(named: &NamedTarget, timeout: Duration) -> io::Result<TcpStream> {
    let ordered = named.ordered();
    if ordered.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} has no address yet", named.host),
        ));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempts = Attempts::new(ordered, named.delay(), Instant::now());
    let mut running = FuturesUnordered::new();
    let mut last_error = None;
    loop {
        while let Some(ip) = attempts.start(Instant::now()) {
            let address = SocketAddr::new(ip, named.port);
            running.push(async move { (ip, crate::net::connect(address, timeout).await) });
        }
        if attempts.exhausted() {
            return Err(last_error.unwrap_or_else(|| io::ErrorKind::NotConnected.into()));
        }
        let wake = attempts.wake_at().map_or(deadline, |at| {
            tokio::time::Instant::from_std(at).min(deadline)
        });
        tokio::select! {
            Some((ip, result)) = running.next(), if !running.is_empty() => match result {
                Ok(stream) => {
                    named.won(Family::of(ip));
                    return Ok(stream);
                }
                Err(error) => {
                    attempts.failed(Instant::now());
                    last_error = Some(error);
                }
            },
            _ = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("timeout after {}", humantime::format_duration(timeout)),
                    ));
                }
            }
        }
    }
}
