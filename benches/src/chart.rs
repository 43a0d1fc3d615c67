//! `coexist-bench --report DIR`: the ratios to HAProxy as a picture. Per
//! figure a panel with one bar per target (the ratio of its median to
//! HAProxy's median), a whisker over its spread (its minimum and maximum
//! over the repetitions, each divided by HAProxy's median) and a line at
//! 1, HAProxy itself; a bar is green where the target beats HAProxy in the
//! figure's better direction and red where it does not. `bench.html` holds
//! the picture inline beside the Markdown table: no script, no external
//! asset, it opens from the file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use maud::{html, PreEscaped, DOCTYPE};
use plotters::prelude::*;

use crate::report::{markdown, Report, TargetSummary, DIRECT, HAPROXY, METRICS};
use crate::stats::Spread;

/// The page's and the picture's file names in the report directory.
pub const PAGE: &str = "bench.html";
pub const PICTURE: &str = "bench-ratios.svg";

const BETTER: RGBColor = RGBColor(0x2e, 0x9e, 0x44);
const WORSE: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const WIDTH: u32 = 900;
const TITLE_HEIGHT: u32 = 28;
const BAR_HEIGHT: u32 = 30;
const AXIS_HEIGHT: u32 = 30;
const FONT: &str = "sans-serif";

/// A target's figure relative to HAProxy's median.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    pub target: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// A panel: one figure, the better direction, a ratio per target.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub higher_is_better: bool,
    pub ratios: Vec<Ratio>,
}

/// The panels of `report`: every figure HAProxy has, with every target
/// that has it too (HAProxy and the direct connection are the reference,
/// not bars). Empty when HAProxy did not run.
pub fn panels(report: &Report) -> Vec<Panel> {
    let targets: Vec<&TargetSummary> = (report.summary.iter())
        .filter(|t| t.skipped.is_none() && t.name != HAPROXY && t.name != DIRECT)
        .collect();
    let haproxy = (report.summary.iter()).find(|t| t.name == HAPROXY && t.skipped.is_none());
    let Some(haproxy) = haproxy else {
        return Vec::new();
    };
    METRICS
        .iter()
        .filter_map(|metric| {
            let reference = haproxy.figures.get(metric.key).filter(|h| h.median > 0.0)?;
            let ratios: Vec<Ratio> = (targets.iter())
                .filter_map(|t| {
                    let s: &Spread = t.figures.get(metric.key)?;
                    Some(Ratio {
                        target: t.name.clone(),
                        median: s.median / reference.median,
                        min: s.min / reference.median,
                        max: s.max / reference.median,
                    })
                })
                .collect();
            (!ratios.is_empty()).then(|| Panel {
                title: (metric.label)(&report.settings),
                higher_is_better: metric.higher_is_better,
                ratios,
            })
        })
        .collect()
}

/// The SVG document of `panels`, one below the other.
pub fn ratios_svg(panels: &[Panel]) -> anyhow::Result<String> {
    let heights: Vec<u32> = (panels.iter())
        .map(|p| TITLE_HEIGHT + AXIS_HEIGHT + BAR_HEIGHT * p.ratios.len() as u32)
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, heights.iter().sum::<u32>().max(1)))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let mut rest = root.clone();
        for (panel, height) in panels.iter().zip(heights) {
            let (area, below) = rest.split_vertically(height);
            draw_panel(panel, &area)?;
            rest = below;
        }
        root.present()?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let widest = (panel.ratios.iter()).fold(1.0_f64, |m, r| m.max(r.max).max(r.median));
    let x_end = (widest * 1.35).max(2.0);
    let rows = panel.ratios.len() as f64;
    let direction = if panel.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} — ratio to HAProxy, {direction}", panel.title),
            (FONT, 14),
        )
        .margin(4)
        .x_label_area_size(AXIS_HEIGHT - 8)
        .y_label_area_size(8)
        .build_cartesian_2d(0.0..x_end, 0.0..rows)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.08))
        .x_labels(8)
        .x_label_formatter(&|v| format!("{v:.1}×"))
        .label_style((FONT, 11))
        .draw()?;
    for (i, ratio) in panel.ratios.iter().enumerate() {
        let y = rows - i as f64 - 1.0;
        let better = (ratio.median > 1.0) == panel.higher_is_better && ratio.median != 1.0;
        let fill = if better { BETTER } else { WORSE };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y + 0.2), (ratio.median, y + 0.8)],
            fill.mix(0.85).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(ratio.min, y + 0.5), (ratio.max, y + 0.5)],
            BLACK.stroke_width(2),
        )))?;
        let spread = if ratio.min < ratio.max {
            format!(" ({:.2}–{:.2})", ratio.min, ratio.max)
        } else {
            String::new()
        };
        chart.draw_series(std::iter::once(Text::new(
            format!("{} {:.2}×{spread}", ratio.target, ratio.median),
            (ratio.max.max(ratio.median) + x_end * 0.01, y + 0.72),
            (FONT, 12).into_font(),
        )))?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, rows)],
        BLACK.stroke_width(1),
    )))?;
    Ok(())
}

/// Writes `bench.html` (the picture and the Markdown table) and the
/// picture as its own SVG file into `dir` (created if missing); returns
/// the page's path.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let panels = panels(report);
    let svg = ratios_svg(&panels).context("drawing the ratios")?;
    let picture = dir.join(PICTURE);
    std::fs::write(&picture, &svg).with_context(|| format!("write {}", picture.display()))?;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "coexist-bench report" }
                style { "body { font-family: sans-serif; margin: 1.5rem auto; max-width: 64rem; padding: 0 1rem; } svg { max-width: 100%; height: auto; } pre { overflow-x: auto; font-size: 0.8rem; }" }
            }
            body {
                h1 { "coexist-bench report" }
                p { "Machine: " (report.machine) ". Each bar: a target's median divided by HAProxy's median; the whisker spans its minimum and maximum over the repetitions, divided by the same. The line at 1× is HAProxy." }
                @if panels.is_empty() {
                    p { "HAProxy did not run: no ratio to draw." }
                }
                figure { (PreEscaped(svg)) }
                h2 { "Table" }
                pre { (markdown(report)) }
            }
        }
    };
    let path = dir.join(PAGE);
    std::fs::write(&path, page.into_string())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Bulk, IdleMemory};
    use crate::run::TargetResult;

    /// A target with a bulk figure (higher is better) and a memory figure
    /// (lower is better).
    fn target(name: &str, gbit8: f64, kib: f64) -> TargetResult {
        TargetResult {
            name: name.into(),
            bulk_8: Some(Bulk {
                streams: 8,
                bytes: 1 << 30,
                seconds: 1.0,
                gbit_per_second: gbit8,
                proxy_cpu_seconds: None,
                busy: Default::default(),
            }),
            idle_memory: Some(IdleMemory {
                connections: 1000,
                rss_before_kib: 0,
                rss_after_kib: 0,
                bytes_per_connection: kib * 1024.0,
                proxy_fds_before: 0,
                proxy_fds_after: 0,
            }),
            ..Default::default()
        }
    }

    fn report() -> Report {
        let settings = crate::report::tests::settings();
        // Input: coexist bulk 30 and 32, HAProxy 20 (ratio 1.55, spread
        // 1.50–1.60); coexist memory 4 KiB, HAProxy 2 (ratio 2, worse).
        let reps = (0..2)
            .map(|i| {
                vec![
                    target(DIRECT, 40.0, 1.0),
                    target("coexist", 30.0 + 2.0 * i as f64, 4.0),
                    target(HAPROXY, 20.0, 2.0),
                    TargetResult::skipped("nginx-stream", "not installed".into()),
                ]
            })
            .collect();
        Report::new("m <1>".into(), [None, None], vec![], settings, reps)
    }

    #[test]
    fn a_bar_per_target_but_haproxy_and_direct_per_figure_haproxy_has() {
        let panels = panels(&report());
        let shown: Vec<(&str, bool, Vec<&str>)> = (panels.iter())
            .map(|p| {
                let targets = p.ratios.iter().map(|r| r.target.as_str()).collect();
                (p.title.as_str(), p.higher_is_better, targets)
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("Bulk, 8 streams (Gbit/s)", true, vec!["coexist"]),
                ("Memory per idle connection (KiB)", false, vec!["coexist"]),
            ]
        );
        let bulk = &panels[0].ratios[0];
        assert_eq!((bulk.median, bulk.min, bulk.max), (1.55, 1.5, 1.6));
        assert_eq!(panels[1].ratios[0].median, 2.0);
    }

    #[test]
    fn better_is_green_worse_is_red_with_the_ratio_written() {
        let svg = ratios_svg(&panels(&report())).unwrap();
        let fill = |c: RGBColor| format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        assert_eq!(svg.matches(&fill(BETTER)).count(), 1, "{svg}");
        assert_eq!(svg.matches(&fill(WORSE)).count(), 1, "{svg}");
        assert!(svg.contains("coexist 1.55× (1.50–1.60)"), "{svg}");
        assert!(svg.contains("coexist 2.00×\n"), "{svg}");
        assert!(svg.contains("Bulk, 8 streams (Gbit/s) — ratio to HAProxy, higher is better"));
        assert!(
            svg.contains("Memory per idle connection (KiB) — ratio to HAProxy, lower is better")
        );
    }

    #[test]
    fn the_page_holds_the_picture_and_the_table_and_nothing_external() {
        let dir = tempfile::tempdir().unwrap();
        let page = write(&report(), dir.path()).unwrap();
        let html = std::fs::read_to_string(&page).unwrap();
        let svg = std::fs::read_to_string(dir.path().join(PICTURE)).unwrap();
        assert!(html.contains(&svg));
        assert!(html.contains("Machine: m &lt;1&gt;."), "{html}");
        assert!(html.contains("| metric | better | direct | coexist | haproxy |"));
        for external in ["src=", "href=", "url(", "@import", "https:"] {
            assert!(!html.contains(external), "{external}");
        }
        let http: Vec<&str> = html.matches("http:").collect();
        assert_eq!(
            http.len(),
            html.matches("http://www.w3.org/2000/svg").count()
        );
    }
}
