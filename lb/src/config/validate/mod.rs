//! Raw TOML structs → checked [`Config`], collecting every problem with its
//! location and key path.
//!
//! Checks continue past the first error (using a default in place of a bad
//! value) so one `coexist check` run reports as much as possible.

mod admin;
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
use super::model::{Config, Tuning};
use super::raw::{RawConfig, RawTuning, ReadValues};

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
    let backends = backend::backends(&mut ctx, &raw.backend);
    let frontends = frontend::frontends(&mut ctx, &raw.frontend, &backends);
    let vrrp = vrrp::instances(&mut ctx, &raw.vrrp, &frontends);
    if frontends.is_empty() && vrrp.is_empty() && ctx.found.is_empty() {
        ctx.error(0..0, "", "no [[frontend]] and no [[vrrp]]: nothing to run");
    }
    if ctx.found.is_empty() {
        Ok(Config {
            admin,
            frontends,
            backends,
            vrrp,
            tuning,
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
    }
}
