//! Raw TOML structs → checked [`Config`], collecting every problem with its
//! location and key path.
//!
//! Checks continue past the first error (using a default in place of a bad
//! value) so one `coexist check` run reports as much as possible.

mod admin;
mod announce;
mod backend;
mod dns_check;
mod frontend;
mod values;
mod vrrp;

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::error::Diagnostic;
use super::locate;
use super::model::{Config, Resolver, Tuning};
use super::raw::{RawConfig, RawResolver, RawTuning, ReadValues};

/// Validate `raw`, parsed from `text`. Diagnostics come back in file order.
pub(super) fn validate(
    raw: RawConfig,
    text: &str,
    origin: &str,
) -> Result<Config, Vec<Diagnostic>> {
    let mut ctx = Ctx {
        text,
        origin,
        found: Vec::new(),
    };
    let admin = admin::admin(&mut ctx, raw.admin.as_ref().map(Spanned::get_ref));
    let tuning = tuning(&mut ctx, raw.tuning.as_ref().map(Spanned::get_ref));
    let resolver = resolver(&mut ctx, raw.resolver.as_ref());
    let backends = backend::backends(&mut ctx, &raw.backend);
    let frontends = frontend::frontends(&mut ctx, &raw.frontend, &backends);
    backend::tcp_keys_of_udp_backends(&mut ctx, &raw.backend, &frontends);
    let vrrp = vrrp::instances(&mut ctx, &raw.vrrp, &frontends);
    let bgp = announce::bgp(
        &mut ctx,
        raw.bgp.as_ref().map(Spanned::get_ref),
        raw.announce.len(),
    );
    let announce = announce::groups(&mut ctx, &raw.announce, &frontends);
    if ctx.found.is_empty() {
        Ok(Config {
            admin,
            frontends,
            backends,
            vrrp,
            tuning,
            resolver,
            bgp,
            announce,
        })
    } else {
        ctx.found.sort_by_key(|(offset, _)| *offset);
        Err(ctx.found.into_iter().map(|(_, d)| d).collect())
    }
}

/// Where diagnostics accumulate, plus the located-value helpers every section uses.
pub(super) struct Ctx<'t> {
    text: &'t str,
    origin: &'t str,
    found: Vec<(usize, Diagnostic)>,
}

impl Ctx<'_> {
    pub(super) fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = locate::line_col(self.text, span.start);
        self.found.push((
            span.start,
            Diagnostic {
                origin: self.origin.to_owned(),
                line,
                column,
                key: key.to_owned(),
                message: message.into(),
            },
        ));
    }

    /// Reports `message` at the key path `key`, located at the value there
    /// or, for a key the text leaves out, at its table.
    pub(super) fn error_at_key(&mut self, key: &str, message: impl Into<String>) {
        let span = locate::span_of(self.text, key).unwrap_or(0..0);
        self.error(span, key, message);
    }

    /// Reports `message` at `span`, under the key path found there.
    fn error_here(&mut self, span: Range<usize>, message: impl Into<String>) {
        let key = locate::key_path(self.text, span.start);
        self.error(span, &key, message);
    }

    /// How many problems have been reported so far.
    pub(super) fn reported(&self) -> usize {
        self.found.len()
    }

    /// A duration key; `default` when absent or invalid (the latter reported).
    pub(super) fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = value else { return default };
        match values::duration(v.get_ref()) {
            Ok(d) => d,
            Err(msg) => {
                self.error(v.span(), key, msg);
                default
            }
        }
    }

    /// A duration key that must lie within `range`.
    pub(super) fn duration_in(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Duration {
        let d = self.duration(value, key, default);
        match value {
            Some(v) if !range.contains(&d) => {
                let (lo, hi) = (range.start(), range.end());
                let msg = format!("{d:?} is out of range {lo:?}..={hi:?}");
                self.error(v.span(), key, msg);
                default
            }
            _ => d,
        }
    }

    /// An integer key within `range`; `default` when absent or invalid.
    pub(super) fn int_in<T>(
        &mut self,
        value: Option<&Spanned<i64>>,
        key: &str,
        default: T,
        range: RangeInclusive<i64>,
    ) -> T
    where
        T: TryFrom<i64>,
    {
        let Some(v) = value else { return default };
        let n = *v.get_ref();
        match T::try_from(n) {
            Ok(t) if range.contains(&n) => t,
            _ => {
                let msg = format!("{n} is out of range {}..={}", range.start(), range.end());
                self.error(v.span(), key, msg);
                default
            }
        }
    }

    pub(super) fn name(&mut self, value: &Spanned<String>, key: &str) {
        if let Err(msg) = values::name(value.get_ref()) {
            self.error(value.span(), key, msg);
        }
    }

    pub(super) fn socket_addr(&mut self, value: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match value.get_ref().trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let msg = format!(
                    "{:?} is not an address with a port, like \"192.0.2.1:80\" or \"[2001:db8::1]:80\" (host names are not resolved)",
                    value.get_ref()
                );
                self.error(value.span(), key, msg);
                None
            }
        }
    }
}

impl ReadValues for Ctx<'_> {
    /// An integer as the type of its setting; `None` (reported) when it
    /// does not fit.
    fn int<T: TryFrom<i64>>(&mut self, value: &Spanned<i64>) -> Option<T> {
        let n = *value.get_ref();
        let fitted = T::try_from(n).ok();
        if fitted.is_none() {
            let message = if n < 0 {
                format!("{n} must not be negative")
            } else {
                format!("{n} is too large for this key")
            };
            self.error_here(value.span(), message);
        }
        fitted
    }

    /// A value converted to its setting's type; `None` (reported, with
    /// the type's reason) when it cannot be.
    fn read<R, T>(&mut self, value: &Spanned<R>) -> Option<T>
    where
        R: Clone + Display,
        T: TryFrom<R>,
        T::Error: Display,
    {
        let raw = value.get_ref();
        T::try_from(raw.clone())
            .map_err(|e| self.error_here(value.span(), format!("{raw}: {e}")))
            .ok()
    }

    /// A string parsed as its setting's type; `None` (reported, with the
    /// type's reason) when it does not parse.
    fn parse<T>(&mut self, value: &Spanned<String>) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        let text = value.get_ref();
        text.trim()
            .parse()
            .map_err(|e| self.error_here(value.span(), format!("{text:?}: {e}")))
            .ok()
    }

    /// A duration; `None` (reported) when it does not parse.
    fn read_duration(&mut self, value: &Spanned<String>) -> Option<Duration> {
        values::duration(value.get_ref())
            .map_err(|msg| self.error_here(value.span(), msg))
            .ok()
    }
}

fn tuning(ctx: &mut Ctx<'_>, raw: Option<&RawTuning>) -> Tuning {
    let field = |f: fn(&RawTuning) -> Option<&Spanned<i64>>| raw.and_then(f);
    Tuning {
        // The kernel rounds up to whole pages and caps unprivileged
        // processes at /proc/sys/fs/pipe-max-size (1 MiB by default).
        pipe_size: ctx.int_in(
            field(|t| t.pipe_size.as_ref()),
            "tuning.pipe_size",
            65536,
            4096..=256 << 20,
        ),
        pipe_pool_max: ctx.int_in(
            field(|t| t.pipe_pool_max.as_ref()),
            "tuning.pipe_pool_max",
            1024,
            0..=1 << 20,
        ),
        splice: raw.and_then(|t| t.splice).unwrap_or(true),
        shutdown_grace: ctx.duration(
            raw.and_then(|t| t.shutdown_grace.as_ref()),
            "tuning.shutdown_grace",
            Duration::from_secs(30),
        ),
        backlog: ctx.int_in(
            field(|t| t.backlog.as_ref()),
            "tuning.backlog",
            1024,
            1..=i64::from(i32::MAX),
        ),
        threads: field(|t| t.threads.as_ref())
            .map(|n| ctx.int_in(Some(n), "tuning.threads", 1, 1..=super::MAX_THREADS as i64)),
    }
}

/// RFC 2181 §8: a TTL is at most 2^31 - 1 seconds; a day is already long
/// for a server to keep an address the name no longer has.
const MAX_TTL_BOUND: Duration = Duration::from_secs(24 * 3600);

fn resolver(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawResolver>>) -> Resolver {
    let r = raw.map(Spanned::get_ref);
    let servers = r.map_or(&[][..], |r| &r.servers[..]);
    let servers = servers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let text = s.get_ref().trim();
            let address = text
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| Some(SocketAddr::new(text.parse().ok()?, 53)));
            if address.is_none() {
                let msg = format!(
                    "{text:?} is not a name server address, like \"192.0.2.53\", \"[2001:db8::53]\" or \"127.0.0.1:5353\""
                );
                ctx.error(s.span(), &format!("resolver.servers[{i}]"), msg);
            }
            address
        })
        .collect();
    let key = |k: &str| format!("resolver.{k}");
    let defaults = Resolver::default();
    let bound = Duration::from_millis(100)..=MAX_TTL_BOUND;
    let min_ttl = ctx.duration_in(
        r.and_then(|r| r.min_ttl.as_ref()),
        &key("min_ttl"),
        defaults.min_ttl,
        bound.clone(),
    );
    let max_ttl = ctx.duration_in(
        r.and_then(|r| r.max_ttl.as_ref()),
        &key("max_ttl"),
        defaults.max_ttl,
        bound,
    );
    if min_ttl > max_ttl {
        let msg = format!(
            "min_ttl {} exceeds max_ttl {}",
            humantime::format_duration(min_ttl),
            humantime::format_duration(max_ttl)
        );
        ctx.error_at_key(&key("min_ttl"), msg);
    }
    let timeout = r.and_then(|r| r.timeout.as_ref()).map(|t| {
        ctx.duration_in(
            Some(t),
            &key("timeout"),
            Duration::from_secs(5),
            Duration::from_millis(10)..=Duration::from_secs(60),
        )
    });
    let attempts = r
        .and_then(|r| r.attempts.as_ref())
        .map(|a| ctx.int_in(Some(a), &key("attempts"), 2, 1..=10));
    Resolver {
        servers,
        timeout,
        attempts,
        hosts: r.and_then(|r| r.hosts).unwrap_or(defaults.hosts),
        min_ttl,
        max_ttl,
    }
}
