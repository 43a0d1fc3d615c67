//! The recorder behind the `metrics` facade, and `/metrics` rendered from
//! it.
//!
//! Why not metrics-exporter-prometheus's own recorder: it can never forget
//! a series (no removal API; its idle timeout drops series that were not
//! updated lately, which also drops an idle live server's, and leaves the
//! handles held to them writing into storage nobody renders). A daemon that
//! adds and removes servers by the thousand then grows without end. This
//! recorder keeps the series in tables it can prune when a reload removes
//! their objects, and still writes the page with the exporter's
//! [`formatting`] functions, so names, labels and the text format do not
//! change.
//!
//! Rendering never makes the data plane wait: under a table's read lock it
//! only copies reference-counted pointers to the series; keys are formatted
//! and values read after the lock is released (by the admin endpoint, on a
//! blocking thread). Connections record through handles resolved once; a
//! table's write lock is taken only to create a series, which then waits at
//! most for that copy.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use arc_swap::ArcSwapOption;
use metrics::atomics::AtomicU64;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram as HistogramHandle, HistogramFn, Key, KeyName,
    Metadata, SetRecorderError, SharedString, Unit,
};
use metrics_exporter_prometheus::formatting;

use super::histogram::{self, Histogram};
use super::LiveObjects;

/// One series: its key travels with it, so rendering needs no lock while
/// it formats.
#[derive(Debug)]
struct Series<T> {
    key: Key,
    value: T,
}

#[derive(Debug, Default)]
struct CounterValue(AtomicU64);

/// The value's `f64` bits.
#[derive(Debug, Default)]
struct GaugeValue(AtomicU64);

impl CounterFn for Series<CounterValue> {
    fn increment(&self, value: u64) {
        CounterFn::increment(&self.value.0, value);
    }

    fn absolute(&self, value: u64) {
        CounterFn::absolute(&self.value.0, value);
    }
}

impl GaugeFn for Series<GaugeValue> {
    fn increment(&self, value: f64) {
        GaugeFn::increment(&self.value.0, value);
    }

    fn decrement(&self, value: f64) {
        GaugeFn::decrement(&self.value.0, value);
    }

    fn set(&self, value: f64) {
        GaugeFn::set(&self.value.0, value);
    }
}

impl HistogramFn for Series<Histogram> {
    fn record(&self, value: f64) {
        self.value.record(value);
    }
}

/// A table entry, hashed and compared by its key.
#[derive(Debug)]
struct Entry<T>(Arc<Series<T>>);

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl<T> Eq for Entry<T> {}

impl<T> Hash for Entry<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl<T> Borrow<Key> for Entry<T> {
    fn borrow(&self) -> &Key {
        &self.0.key
    }
}

/// The series of one kind.
#[derive(Debug)]
struct Table<T> {
    entries: RwLock<HashSet<Entry<T>>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            entries: RwLock::default(),
        }
    }
}

impl<T> Table<T> {
    /// The series of `key`, created when `live` admits it. A series `live`
    /// refuses (an object a reload just removed, recording late) is handed
    /// out unlisted: it works but is never rendered.
    fn series(
        &self,
        key: &Key,
        live: &ArcSwapOption<LiveObjects>,
        new: impl FnOnce() -> T,
    ) -> Arc<Series<T>> {
        let lookup = |entries: &HashSet<Entry<T>>| entries.get(key).map(|e| Arc::clone(&e.0));
        if let Some(found) = lookup(&self.entries.read().unwrap_or_else(PoisonError::into_inner)) {
            return found;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = lookup(&entries) {
            return found;
        }
        let series = Arc::new(Series {
            key: key.clone(),
            value: new(),
        });
        // Read under the write lock: a prune that took the lock before
        // has stored the objects it keeps, so no series it removed can
        // come back.
        if live.load().as_ref().is_none_or(|live| live.admits(key)) {
            entries.insert(Entry(Arc::clone(&series)));
        }
        series
    }

    fn retain(&self, live: &LiveObjects) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let before = entries.len();
        entries.retain(|e| live.admits(&e.0.key));
        if entries.len() < before {
            // A table that held 10,000 servers' series would otherwise keep
            // its buckets for good.
            entries.shrink_to_fit();
        }
    }

    fn all(&self) -> Vec<Arc<Series<T>>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.iter().map(|e| Arc::clone(&e.0)).collect()
    }

    fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[derive(Debug, Default)]
struct Inner {
    counters: Table<CounterValue>,
    gauges: Table<GaugeValue>,
    histograms: Table<Histogram>,
    /// `None` until the daemon loads its config: everything is admitted.
    live: ArcSwapOption<LiveObjects>,
}

/// The recorder the process installs.
#[derive(Debug)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl metrics::Recorder for Recorder {
    // No HELP lines: nothing describes its metrics.
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let inner = &self.inner;
        Counter::from_arc(
            inner
                .counters
                .series(key, &inner.live, CounterValue::default),
        )
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let inner = &self.inner;
        Gauge::from_arc(inner.gauges.series(key, &inner.live, GaugeValue::default))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> HistogramHandle {
        let inner = &self.inner;
        HistogramHandle::from_arc(inner.histograms.series(key, &inner.live, || {
            Histogram::new(histogram::bounds_for(key.name()))
        }))
    }
}

/// Renders and prunes the series of a [`Recorder`].
#[derive(Debug, Clone, Default)]
pub struct MetricsHandle {
    inner: Arc<Inner>,
}

impl MetricsHandle {
    /// Installs a recorder as the process's.
    pub fn install() -> Result<Self, SetRecorderError<Recorder>> {
        let handle = Self::default();
        metrics::set_global_recorder(handle.recorder())?;
        Ok(handle)
    }

    /// A recorder whose series this handle renders.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            inner: Arc::clone(&self.inner),
        }
    }

    /// From now on only series of `live`'s objects are kept: the others
    /// are forgotten, and any registered later is not listed. Handles still
    /// held to a forgotten series (a connection to a removed server,
    /// finishing) go on working, unseen.
    pub fn keep_only(&self, live: LiveObjects) {
        let live = Arc::new(live);
        self.inner.live.store(Some(Arc::clone(&live)));
        self.inner.counters.retain(&live);
        self.inner.gauges.retain(&live);
        self.inner.histograms.retain(&live);
    }

    /// Series listed now, all kinds together.
    pub fn len(&self) -> usize {
        let inner = &self.inner;
        inner.counters.len() + inner.gauges.len() + inner.histograms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Prometheus text exposition (0.0.4) of every listed series:
    /// counters, gauges, then histograms; families in name order, series in
    /// label order. Takes time in proportion to the series: call it off
    /// the async workers.
    pub fn render(&self) -> String {
        let inner = &self.inner;
        let mut page = String::new();
        write_kind(
            &mut page,
            "counter",
            inner.counters.all(),
            |page, name, labels, s| {
                let value = s.value.0.load(std::sync::atomic::Ordering::Relaxed);
                formatting::write_metric_line::<&str, u64>(
                    page, name, None, labels, None, value, None,
                );
            },
        );
        write_kind(
            &mut page,
            "gauge",
            inner.gauges.all(),
            |page, name, labels, s| {
                let value = f64::from_bits(s.value.0.load(std::sync::atomic::Ordering::Relaxed));
                formatting::write_metric_line::<&str, f64>(
                    page, name, None, labels, None, value, None,
                );
            },
        );
        write_kind(
            &mut page,
            "histogram",
            inner.histograms.all(),
            |page, name, labels, s| {
                let h = s.value.snapshot();
                for (le, count) in &h.buckets {
                    formatting::write_metric_line(
                        page,
                        name,
                        Some("bucket"),
                        labels,
                        Some(("le", le)),
                        count,
                        None,
                    );
                }
                formatting::write_metric_line(
                    page,
                    name,
                    Some("bucket"),
                    labels,
                    Some(("le", "+Inf")),
                    h.count,
                    None,
                );
                formatting::write_metric_line::<&str, f64>(
                    page,
                    name,
                    Some("sum"),
                    labels,
                    None,
                    h.sum,
                    None,
                );
                formatting::write_metric_line::<&str, u64>(
                    page,
                    name,
                    Some("count"),
                    labels,
                    None,
                    h.count,
                    None,
                );
            },
        );
        page
    }
}

/// Writes the series of one kind, a `# TYPE` line before each family and a
/// blank line after it, as the exporter does.
fn write_kind<T>(
    page: &mut String,
    kind: &str,
    series: Vec<Arc<Series<T>>>,
    mut write: impl FnMut(&mut String, &str, &[String], &Series<T>),
) {
    let mut series: Vec<(String, Vec<String>, Arc<Series<T>>)> = series
        .into_iter()
        .map(|s| {
            let (name, labels) = formatting::key_to_parts(&s.key, None);
            (name, labels, s)
        })
        .collect();
    series.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut family: Option<&str> = None;
    for (name, labels, s) in &series {
        if family != Some(name.as_str()) {
            if family.is_some() {
                page.push('\n');
            }
            formatting::write_type_line(page, name, kind);
            family = Some(name);
        }
        write(page, name, labels, s);
    }
    if family.is_some() {
        page.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{Label, Recorder as _};

    const META: Metadata<'static> = Metadata::new("test", metrics::Level::INFO, None);

    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
        Key::from_parts(name, labels)
    }

    // Input: counters of two servers, a gauge, a connect-time histogram.
    // Output: the text format as metrics-exporter-prometheus wrote it
    // (same lines, same number formatting), families and series sorted.
    #[test]
    fn renders_the_exporters_text_format() {
        let handle = MetricsHandle::default();
        let recorder = handle.recorder();
        let server = |s| {
            key(
                super::super::SERVER_CONNECTIONS_TOTAL,
                &[("backend", "web"), ("server", s)],
            )
        };
        recorder.register_counter(&server("b"), &META).increment(2);
        recorder.register_counter(&server("a"), &META).increment(5);
        recorder
            .register_gauge(&key(super::super::PROCESS_MAX_FDS, &[]), &META)
            .set(1024.0);
        let connect = key(
            super::super::CONNECT_DURATION_SECONDS,
            &[("backend", "web")],
        );
        recorder.register_histogram(&connect, &META).record(0.002);
        recorder.register_histogram(&connect, &META).record(3.0);
        let page = handle.render();
        let expected_start = "# TYPE lb_server_connections_total counter\n\
             lb_server_connections_total{backend=\"web\",server=\"a\"} 5\n\
             lb_server_connections_total{backend=\"web\",server=\"b\"} 2\n\
             \n\
             # TYPE lb_process_max_fds gauge\n\
             lb_process_max_fds 1024\n\
             \n\
             # TYPE lb_connect_duration_seconds histogram\n\
             lb_connect_duration_seconds_bucket{backend=\"web\",le=\"0.0005\"} 0\n";
        assert!(page.starts_with(expected_start), "{page}");
        for line in [
            "lb_connect_duration_seconds_bucket{backend=\"web\",le=\"0.0025\"} 1\n",
            "lb_connect_duration_seconds_bucket{backend=\"web\",le=\"1\"} 1\n",
            "lb_connect_duration_seconds_bucket{backend=\"web\",le=\"2.5\"} 1\n",
            "lb_connect_duration_seconds_bucket{backend=\"web\",le=\"+Inf\"} 2\n",
            "lb_connect_duration_seconds_sum{backend=\"web\"} 3.002\n",
        ] {
            assert!(page.contains(line), "no {line:?} in\n{page}");
        }
        assert!(
            page.ends_with("lb_connect_duration_seconds_count{backend=\"web\"} 2\n\n"),
            "{page}"
        );
    }

    // Input: series of a kept and a removed server, a handle to the removed
    // one still in use, and a late registration of the removed one.
    // Output: only the kept one is listed; the held handle still counts
    // (nothing panics), unseen.
    #[test]
    fn keep_only_forgets_removed_objects_for_good() {
        let handle = MetricsHandle::default();
        let recorder = handle.recorder();
        let up = |s| {
            key(
                super::super::SERVER_UP,
                &[("backend", "pool"), ("server", s)],
            )
        };
        let kept = recorder.register_gauge(&up("s1"), &META);
        let gone = recorder.register_gauge(&up("s2"), &META);
        let reloads = key(super::super::CONFIG_RELOADS_TOTAL, &[("result", "ok")]);
        recorder.register_counter(&reloads, &META).increment(1);
        assert_eq!(handle.len(), 3);
        handle.keep_only(super::super::live::one_server());
        kept.set(1.0);
        gone.set(1.0);
        recorder.register_gauge(&up("s2"), &META).set(1.0);
        assert_eq!(handle.len(), 2);
        let page = handle.render();
        assert!(
            page.contains("lb_server_up{backend=\"pool\",server=\"s1\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("lb_config_reloads_total{result=\"ok\"} 1\n"),
            "{page}"
        );
        assert!(!page.contains("s2"), "{page}");
    }

    // Input: ten thousand servers' series, then a config without them.
    // Output: the table is back to the kept series.
    #[test]
    fn a_shrink_leaves_only_the_kept_series() {
        let handle = MetricsHandle::default();
        let recorder = handle.recorder();
        for i in 0..10_000 {
            let labels = vec![
                Label::new("backend", "pool"),
                Label::new("server", format!("bulk-{i}")),
            ];
            recorder
                .register_counter(&Key::from_parts(super::super::BYTES_TOTAL, labels), &META)
                .increment(1);
        }
        recorder
            .register_counter(
                &key(
                    super::super::BYTES_TOTAL,
                    &[("backend", "pool"), ("server", "s1")],
                ),
                &META,
            )
            .increment(1);
        handle.keep_only(super::super::live::one_server());
        assert_eq!(handle.len(), 1);
        assert_eq!(handle.render().lines().count(), 3);
    }
}
