//! The matrix's results: rows with named figures and the named checks
//! that failed, printed as a table or as JSON
//! (`{ "rows": [ { "id", "name", "pass", "failed", "figures" } ] }`).

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::timeline::Timeline;

/// The result of one row of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowResult {
    pub id: u8,
    pub name: String,
    /// Every check of the row held.
    pub pass: bool,
    /// The names of the checks that did not hold, in the row's order.
    #[serde(default)]
    pub failed: Vec<String>,
    pub figures: Figures,
    /// What the clients saw, for the HTML report (not in the JSON: the
    /// figures say it in numbers).
    #[serde(skip)]
    pub timelines: Vec<Timeline>,
}

impl RowResult {
    /// Row `id` judged by what its run found, or failed by its error.
    pub fn of(id: u8, name: &str, run: anyhow::Result<Verdict>) -> RowResult {
        let verdict = run.unwrap_or_else(|e| {
            let mut v = Verdict::default();
            v.figure("error", serde_json::json!(format!("{e:#}")));
            v.check("ran to the end", false);
            v
        });
        RowResult {
            id,
            name: name.to_owned(),
            pass: verdict.checks.iter().all(|(_, held)| *held),
            failed: (verdict.checks.into_iter())
                .filter(|(_, held)| !held)
                .map(|(check, _)| check)
                .collect(),
            figures: verdict.figures,
            timelines: verdict.timelines,
        }
    }
}

/// What a row found: its named checks, each held or not, and its figures.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    checks: Vec<(String, bool)>,
    figures: Figures,
    timelines: Vec<Timeline>,
}

impl Verdict {
    /// A named check the row makes; the row passes when all hold.
    pub fn check(&mut self, name: impl Into<String>, held: bool) -> &mut Self {
        self.checks.push((name.into(), held));
        self
    }

    /// A figure to report, in the order measured.
    pub fn figure(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.figures.push(key, value);
        self
    }

    /// Figures to report, in the order measured.
    pub fn figures(&mut self, pairs: Vec<(&str, Value)>) -> &mut Self {
        for (key, value) in pairs {
            self.figure(key, value);
        }
        self
    }

    /// A picture of what the clients saw, for the HTML report.
    pub fn timeline(&mut self, timeline: Timeline) -> &mut Self {
        self.timelines.push(timeline);
        self
    }

    /// Adds `other`'s checks, figures and timelines, its check names prefixed with
    /// `label`; a part that did not run is one failed check.
    pub fn merge(&mut self, label: &str, other: anyhow::Result<Verdict>) {
        match other {
            Ok(other) => {
                for (name, held) in other.checks {
                    self.check(format!("{label}: {name}"), held);
                }
                self.figures.0.extend(other.figures.0);
                self.timelines.extend(other.timelines);
            }
            Err(e) => {
                self.figure(
                    format!("{label}: error"),
                    serde_json::json!(format!("{e:#}")),
                );
                self.check(format!("{label}: ran to the end"), false);
            }
        }
    }
}

/// Named figures in the order the row measured them (a JSON object).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures(pub Vec<(String, Value)>);

impl Figures {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn push(&mut self, key: impl Into<String>, value: Value) {
        self.0.push((key.into(), value));
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, Value)> {
        self.0.iter()
    }
}

impl Serialize for Figures {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Figures {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Figures;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of figures")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Figures, A::Error> {
                let mut figures = Figures::default();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    figures.push(k, v);
                }
                Ok(figures)
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub advert_interval_ms: u64,
    pub rows: Vec<RowResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.pass)
    }

    pub fn row(&self, id: u8) -> Option<&RowResult> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// One line per row (id, name, PASS/FAIL), the failed checks and the
    /// figures indented below.
    pub fn table(&self) -> String {
        self.table_titled(&format!("advert interval {} ms", self.advert_interval_ms))
    }

    /// [`Report::table`] under another first line.
    pub fn table_titled(&self, title: &str) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(3)
            .max(3);
        let mut out = format!(
            "coexist-lab: {title}\n\n{:>2}  {:<width$}  pass\n",
            "id", "row"
        );
        for r in &self.rows {
            let pad = width - r.name.chars().count();
            out.push_str(&format!(
                "{:>2}  {}{}  {}\n",
                r.id,
                r.name,
                " ".repeat(pad),
                if r.pass { "PASS" } else { "FAIL" }
            ));
            for check in &r.failed {
                out.push_str(&format!("      FAILED: {check}\n"));
            }
            for (key, value) in r.figures.iter() {
                out.push_str(&format!("      {key}: {}\n", render(value)));
            }
        }
        let failed: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.pass)
            .map(|r| r.id.to_string())
            .collect();
        if failed.is_empty() {
            out.push_str(&format!("\nall {} rows pass\n", self.rows.len()));
        } else {
            out.push_str(&format!("\nFAILED rows: {}\n", failed.join(", ")));
        }
        out
    }
}

/// A figure as a reader wants it: numbers with at most one decimal,
/// strings bare, objects as `a 1, b 2`.
pub fn render(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", render(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(", "),
        Value::Null => "-".to_owned(),
        Value::Bool(b) => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pass: bool) -> Report {
        let mut verdict = Verdict::default();
        verdict
            .figure(
                "takeover_ms",
                serde_json::json!({"IPv4": 312.24, "IPv6": 320.0}),
            )
            .figure("failed", serde_json::json!(0))
            .check("takeover within the bound", true)
            .check("no failed connection", pass);
        Report {
            advert_interval_ms: 100,
            rows: vec![RowResult::of(4, "node1 dies", Ok(verdict))],
        }
    }

    #[test]
    fn table_shows_rows_figures_and_verdict() {
        let t = report(true).table();
        assert!(t.contains(" 4  node1 dies  PASS"), "{t}");
        assert!(t.contains("takeover_ms: IPv4 312.2, IPv6 320.0"), "{t}");
        assert!(t.contains("failed: 0"), "{t}");
        assert!(t.contains("all 1 rows pass"), "{t}");
        assert!(!t.contains("FAILED:"), "{t}");
        let t = report(false).table();
        assert!(t.contains("FAILED rows: 4"), "{t}");
        assert!(t.contains("      FAILED: no failed connection\n"), "{t}");
        assert!(!t.contains("FAILED: takeover"), "{t}");
    }

    // A row whose run fails says so, as a failed check and its error.
    #[test]
    fn a_row_that_did_not_run_fails_with_its_error() {
        let row = RowResult::of(3, "state", Err(anyhow::anyhow!("no status")));
        assert!(!row.pass);
        assert_eq!(row.failed, ["ran to the end"]);
        assert_eq!(
            row.figures.get("error"),
            Some(&serde_json::json!("no status"))
        );
        let mut merged = Verdict::default();
        merged.check("first", true);
        merged.merge("part b", Err(anyhow::anyhow!("gone")));
        let row = RowResult::of(4, "merged", Ok(merged));
        assert_eq!(row.failed, ["part b: ran to the end"]);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = serde_json::to_value(report(false)).unwrap();
        assert_eq!(v["rows"][0]["id"], 4);
        assert_eq!(v["rows"][0]["pass"], false);
        assert_eq!(v["rows"][0]["failed"][0], "no failed connection");
        assert_eq!(v["rows"][0]["figures"]["failed"], 0);
        assert!(!report(false).passed());
        assert!(report(true).passed());
        // Through text, not Value (whose objects sort their keys).
        let text = serde_json::to_string(&report(false)).unwrap();
        assert!(
            text.find("\"takeover_ms\"") < text.find("\"failed\":0"),
            "{text}"
        );
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report(false), "figures keep their order");
    }
}
