//! Counters `/status` shows, read back from the Prometheus exposition.
//!
//! The connection path counts connections and bytes only through metric
//! handles, whose values the `metrics` facade cannot read. Rather than
//! count a second time on that path, `/status` parses the rendered page of
//! the recorder: the figures then agree with `/metrics` by construction,
//! and the cost falls on the (rare) status request.
//!
//! Only samples of the names asked for are kept; the parser reads the
//! text format the exporter writes (`name{label="value",…} number`, label
//! values escaped with `\\`, `\"` and `\n`).

use std::collections::HashMap;

/// Label pairs of one sample, sorted by name.
type Labels = Vec<(String, String)>;

/// Sample values by metric name and label set.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counters {
    samples: HashMap<String, Vec<(Labels, f64)>>,
}

impl Counters {
    /// Reads the samples of `names` from a Prometheus text exposition.
    pub fn parse(exposition: &str, names: &[&str]) -> Self {
        let mut samples: HashMap<String, Vec<_>> = HashMap::new();
        for line in exposition.lines() {
            if line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            if !names.contains(&name) {
                continue;
            }
            if let Some((labels, value)) = parse_sample(&line[name_end..]) {
                samples
                    .entry(name.to_owned())
                    .or_default()
                    .push((labels, value));
            }
        }
        Self { samples }
    }

    /// The sample of `name` whose labels include all of `labels`, as an
    /// integer count; `None` when there is no such sample.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.samples
            .get(name)?
            .iter()
            .find(|(have, _)| {
                labels
                    .iter()
                    .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            // Counters are integers rendered as floats; saturating cast.
            .map(|(_, value)| *value as u64)
    }
}

/// Parses `{k="v",…} value [timestamp]` (or ` value` without labels).
fn parse_sample(rest: &str) -> Option<(Labels, f64)> {
    let (mut labels, after) = match rest.strip_prefix('{') {
        Some(inner) => parse_labels(inner)?,
        None => (Vec::new(), rest),
    };
    let value = after.split_whitespace().next()?.parse().ok()?;
    labels.sort();
    Some((labels, value))
}

/// Parses `k="v",…}` and returns the labels and the text after `}`.
fn parse_labels(mut text: &str) -> Option<(Labels, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        text = &after_key[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# TYPE lb_bytes_total counter
lb_bytes_total{backend="web",server="s1",direction="to_server"} 1200
lb_bytes_total{backend="web",server="s1",direction="to_client"} 34
lb_bytes_total{backend="web",server="a \"quoted\", odd\\name",direction="to_client"} 7
lb_connections_total{frontend="web"} 5
lb_server_up{backend="web",server="s1"} 1
lb_connections_total_other 9
lb_config_reloads_total 3 1700000000000
"#;

    // Input: a page as the exporter renders it. Output: the counts of the
    // names asked for, matched by a subset of their labels.
    #[test]
    fn reads_samples_by_name_and_labels() {
        let c = Counters::parse(
            PAGE,
            &[
                "lb_bytes_total",
                "lb_connections_total",
                "lb_config_reloads_total",
            ],
        );
        let s1 = [("backend", "web"), ("server", "s1")];
        assert_eq!(
            c.count(
                "lb_bytes_total",
                &[s1[0], s1[1], ("direction", "to_server")]
            ),
            Some(1200)
        );
        assert_eq!(
            c.count("lb_bytes_total", &[s1[1], ("direction", "to_client")]),
            Some(34)
        );
        assert_eq!(
            c.count("lb_connections_total", &[("frontend", "web")]),
            Some(5)
        );
        assert_eq!(c.count("lb_config_reloads_total", &[]), Some(3));
        assert_eq!(
            c.count("lb_connections_total", &[("frontend", "api")]),
            None
        );
    }

    // Input: a label value with escaped quote, comma and backslash.
    // Output: the value unescaped, the sample found.
    #[test]
    fn unescapes_label_values() {
        let c = Counters::parse(PAGE, &["lb_bytes_total"]);
        assert_eq!(
            c.count("lb_bytes_total", &[("server", "a \"quoted\", odd\\name")]),
            Some(7)
        );
    }

    // Input: names not asked for, and a longer name sharing a prefix.
    // Output: not kept.
    #[test]
    fn keeps_only_the_names_asked_for() {
        let c = Counters::parse(PAGE, &["lb_connections_total"]);
        assert_eq!(c.count("lb_server_up", &[]), None);
        assert_eq!(c.count("lb_connections_total", &[]), Some(5));
        assert_eq!(c.samples["lb_connections_total"].len(), 1);
    }

    // Input: truncated or malformed lines. Output: skipped, no panic.
    #[test]
    fn malformed_lines_are_skipped() {
        let page = "lb_connections_total{frontend=\"web\" 5\nlb_connections_total{frontend=\"x\\\nlb_connections_total{} nan?\nlb_connections_total{frontend=\"ok\"} 2\n";
        let c = Counters::parse(page, &["lb_connections_total"]);
        assert_eq!(
            c.count("lb_connections_total", &[("frontend", "ok")]),
            Some(2)
        );
        assert_eq!(c.samples["lb_connections_total"].len(), 1);
    }
}
