//! `coexist-lab --report DIR`: the matrix and the rows' timelines as one
//! self-contained HTML page (`lab.html`: inline SVG and style, no script,
//! no external asset, so it opens from a file on a machine without
//! internet), and each timeline also as its own SVG file beside it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::draw::timeline_svg;
use super::report::{render, Report, RowResult};
use super::timeline::Timeline;

/// The page's file name in the report directory.
pub const PAGE: &str = "lab.html";

const STYLE: &str = "
body { font-family: sans-serif; margin: 1.5rem auto; max-width: 64rem; padding: 0 1rem; color: #202020; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
td.pass { color: #1d7a33; font-weight: bold; }
td.fail { color: #b3191b; font-weight: bold; }
ul.figures { margin: 0; padding-left: 1rem; }
figure { margin: 1rem 0 2rem; }
figure svg { max-width: 100%; height: auto; }
";

/// Writes the page and one SVG file per timeline into `dir` (created if
/// missing); returns the page's path.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut pictures = Vec::new();
    for row in &report.rows {
        for timeline in &row.timelines {
            let svg = timeline_svg(timeline)
                .with_context(|| format!("drawing row {}: {}", row.id, timeline.title))?;
            let file = dir.join(svg_name(row.id, timeline));
            std::fs::write(&file, &svg).with_context(|| format!("write {}", file.display()))?;
            pictures.push(svg);
        }
    }
    let page = dir.join(PAGE);
    std::fs::write(&page, page_html(report, &pictures).into_string())
        .with_context(|| format!("write {}", page.display()))?;
    Ok(page)
}

/// `row4-node1-dies.svg`: the row and the timeline's title in lower-case
/// words, stable from run to run (the README's picture is one of them).
pub fn svg_name(row: u8, timeline: &Timeline) -> String {
    let words: Vec<String> = timeline
        .title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    format!("row{row}-{}.svg", words.join("-"))
}

/// The page; `pictures` are the timelines' SVG documents in row order.
fn page_html(report: &Report, pictures: &[String]) -> Markup {
    let failed: Vec<String> = (report.rows.iter())
        .filter(|r| !r.pass)
        .map(|r| r.id.to_string())
        .collect();
    let mut pictures = pictures.iter();
    let drawn: Vec<&RowResult> = report
        .rows
        .iter()
        .filter(|r| !r.timelines.is_empty())
        .collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "coexist-lab report" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "coexist-lab report" }
                p {
                    "VRRP advertisement interval " (report.advert_interval_ms) " ms. "
                    @if failed.is_empty() {
                        "All " (report.rows.len()) " rows pass."
                    } @else {
                        strong { "FAILED rows: " (failed.join(", ")) "." }
                    }
                }
                h2 { "Matrix" }
                table {
                    thead { tr { th { "#" } th { "row" } th { "result" } th { "figures" } } }
                    tbody {
                        @for row in &report.rows { (matrix_row(row)) }
                    }
                }
                h2 { "Takeover timelines" }
                p {
                    "Each client (one per address family) opens a connection every 5 ms. "
                    "Bars: the connections it opened in each 10 ms, counted where they were opened: "
                    "green above the axis reached a server and echoed every byte, red below it failed "
                    "(a connection opened during an outage fails when its 1 s connect timeout runs out). "
                    "Lines: black what the lab broke, grey what it repaired, blue the virtual address "
                    "appearing on its new holder, orange the client's neighbour entry (ARP or NDP) for "
                    "the virtual address naming the new holder's MAC. Times are from the first fault."
                }
                @if drawn.is_empty() {
                    p { "No row drew a timeline." }
                }
                @for row in drawn {
                    section id=(anchor(row.id)) {
                        h3 { "Row " (row.id) ": " (row.name) }
                        @for timeline in &row.timelines {
                            figure aria-label=(timeline.title) {
                                (PreEscaped(pictures.next().map_or("", String::as_str)))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn anchor(id: u8) -> String {
    format!("row-{id}")
}

fn matrix_row(row: &RowResult) -> Markup {
    html! {
        tr {
            td { (row.id) }
            td {
                @if row.timelines.is_empty() {
                    (row.name)
                } @else {
                    a href={ "#" (anchor(row.id)) } { (row.name) }
                }
            }
            @if row.pass {
                td.pass { "PASS" }
            } @else {
                td.fail {
                    "FAIL"
                    ul.figures { @for check in &row.failed { li { (check) } } }
                }
            }
            td {
                ul.figures {
                    @for (key, value) in row.figures.iter() {
                        li { (key) ": " (render(value)) }
                    }
                }
            }
        }
    }
}

/// Every reference in `html` to something outside the page (`src`,
/// `href` other than `#fragment`, CSS `url(` or `@import`, any http(s)
/// address but the SVG namespace). Empty for a self-contained page.
pub fn external_references(html: &str) -> Vec<String> {
    const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";
    let mut found = Vec::new();
    for marker in ["src=", "href=", "url(", "@import", "http:", "https:"] {
        for (at, _) in html.match_indices(marker) {
            let rest = &html[at..];
            let end = rest[marker.len()..]
                .find(|c: char| c.is_whitespace() || c == '>')
                .map_or(rest.len(), |e| e + marker.len());
            let reference = &rest[..end];
            let local = reference.starts_with("href=\"#") || reference.starts_with(SVG_NAMESPACE);
            if !local {
                found.push(reference.to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::report::Verdict;
    use crate::lab::timeline::{Lane, Mark};

    fn report() -> Report {
        let mut lane = Lane::of("IPv4", &[], 0, 0);
        lane.event(Mark::Fault, "link down", Some(0.0));
        let mut v4 = Verdict::default();
        v4.check("takeover within the bound", true)
            .figure("gap_ms", serde_json::json!({"IPv4": 350.4, "IPv6": null}))
            .timeline(Timeline {
                title: "node1 dies: <b>".to_owned(),
                lanes: vec![
                    lane.clone(),
                    Lane {
                        name: "IPv6".to_owned(),
                        ..lane
                    },
                ],
            });
        let mut v1 = Verdict::default();
        v1.check("no failed connection", false)
            .figure("failed", serde_json::json!(3));
        Report {
            advert_interval_ms: 100,
            rows: vec![
                RowResult::of(1, "balance & <more>", Ok(v1)),
                RowResult::of(4, "takeover", Ok(v4)),
            ],
        }
    }

    #[test]
    fn the_page_has_the_matrix_and_the_timelines_and_nothing_external() {
        let dir = tempfile::tempdir().unwrap();
        let page = write(&report(), dir.path()).unwrap();
        let html = std::fs::read_to_string(&page).unwrap();
        assert_eq!(external_references(&html), Vec::<String>::new());
        // The matrix: every row, its verdict, its failed checks, its figures.
        assert!(html.contains("FAILED rows: 1."), "{html}");
        assert!(
            html.contains("<td>balance &amp; &lt;more&gt;</td>"),
            "{html}"
        );
        assert!(html.contains("<li>no failed connection</li>"), "{html}");
        assert!(
            html.contains("<li>gap_ms: IPv4 350.4, IPv6 -</li>"),
            "{html}"
        );
        assert!(
            html.contains(r##"<a href="#row-4">takeover</a>"##),
            "{html}"
        );
        // The timeline, inline and as its own file.
        assert_eq!(html.matches("<svg ").count(), 1);
        assert!(
            html.contains("IPv6 client: 0 succeeded, 0 failed"),
            "{html}"
        );
        let svg = std::fs::read_to_string(dir.path().join("row4-node1-dies-b.svg")).unwrap();
        assert!(html.contains(&svg));
        assert!(svg.contains("node1 dies: &lt;b&gt;"));
    }

    #[test]
    fn external_references_are_found() {
        let page = r##"<a href="#row-4">x</a><svg xmlns="http://www.w3.org/2000/svg"></svg>
            <img src="a.png"><link href="https://cdn.example/x.css"><style>b{background:url(x.png)}</style>"##;
        assert_eq!(
            external_references(page),
            [
                "src=\"a.png\"",
                "href=\"https://cdn.example/x.css\"",
                "url(x.png)}</style",
                "https://cdn.example/x.css\""
            ]
        );
    }
}
