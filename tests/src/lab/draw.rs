//! A [`Timeline`] as an SVG picture (plotters, SVG backend): one panel
//! per lane, connections opened per bucket as bars (succeeded above the
//! axis, failed below), a vertical line per event, and beside each panel
//! a legend with the events' times. Text is left to the viewer's fonts.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::timeline::{Lane, Mark, Timeline, BUCKET};

/// Fill of the bars of connections that succeeded.
pub const SUCCEEDED: RGBColor = RGBColor(0x2e, 0x9e, 0x44);
/// Fill of the bars of connections that failed.
pub const FAILED: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// The colour of an event's line.
pub fn colour(mark: Mark) -> RGBColor {
    match mark {
        Mark::Fault => RGBColor(0x20, 0x20, 0x20),
        Mark::Repair => RGBColor(0x8a, 0x8a, 0x8a),
        Mark::VipMoved => RGBColor(0x1f, 0x5f, 0xbf),
        Mark::NeighbourMoved => RGBColor(0xe0, 0x80, 0x00),
    }
}

const WIDTH: u32 = 960;
const LEGEND_WIDTH: u32 = 250;
const TITLE_HEIGHT: u32 = 34;
const LANE_HEIGHT: u32 = 230;
const FONT: &str = "sans-serif";

/// The SVG document of `timeline`.
pub fn timeline_svg(timeline: &Timeline) -> anyhow::Result<String> {
    let mut svg = String::new();
    let height = TITLE_HEIGHT + LANE_HEIGHT * timeline.lanes.len().max(1) as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(TITLE_HEIGHT);
        title.draw(&Text::new(
            timeline.title.as_str(),
            (10, 8),
            (FONT, 20).into_font().style(FontStyle::Bold),
        ))?;
        let x_range = x_range(&timeline.lanes);
        let zero = zero_label(timeline);
        for (lane, area) in
            (timeline.lanes.iter()).zip(body.split_evenly((timeline.lanes.len().max(1), 1)))
        {
            draw_lane(lane, &area, x_range.clone(), &zero)?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// What time zero is, for the x axis: what the lab did at zero.
fn zero_label(timeline: &Timeline) -> String {
    let fault = (timeline.lanes.iter())
        .flat_map(|l| &l.events)
        .find(|e| matches!(e.mark, Mark::Fault | Mark::Repair) && e.at_ms == Some(0.0));
    match fault {
        Some(e) => format!("ms from: {}", e.label),
        None => "ms".to_owned(),
    }
}

/// One x axis for every lane: the buckets of all of them and every event.
fn x_range(lanes: &[Lane]) -> std::ops::Range<f64> {
    let mut from: f64 = 0.0;
    let mut to: f64 = 0.0;
    for lane in lanes {
        let (a, b) = lane.span_ms();
        from = from.min(a);
        to = to.max(b);
        for at in lane.events.iter().filter_map(|e| e.at_ms) {
            from = from.min(at);
            to = to.max(at);
        }
    }
    let pad = (to - from).max(100.0) * 0.01;
    from - pad..to + pad
}

fn draw_lane<DB: DrawingBackend>(
    lane: &Lane,
    area: &DrawingArea<DB, Shift>,
    x_range: std::ops::Range<f64>,
    zero: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (plot, legend) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let top = f64::from(lane.succeeded.iter().copied().max().unwrap_or(0).max(1));
    let bottom = f64::from(lane.failed.iter().copied().max().unwrap_or(0).max(1));
    let y_range = -bottom * 1.15..top * 1.15;
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            format!(
                "{} client: {} succeeded, {} failed",
                lane.name,
                lane.total_succeeded(),
                lane.total_failed()
            ),
            (FONT, 15),
        )
        .margin(6)
        .x_label_area_size(34)
        .y_label_area_size(44)
        .build_cartesian_2d(x_range.clone(), y_range.clone())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.08))
        .x_labels(12)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{:.0}", v.abs()))
        .x_desc(zero)
        .y_desc("opened / 10 ms (failed below)")
        .axis_desc_style((FONT, 12))
        .label_style((FONT, 11))
        .draw()?;
    let width = BUCKET.as_secs_f64() * 1000.0;
    let bars = |counts: &[u32], sign: f64, colour: RGBColor| {
        let starts: Vec<f64> = (0..counts.len()).map(|i| lane.bucket_start_ms(i)).collect();
        (counts.iter().zip(starts))
            .filter(|(&n, _)| n > 0)
            .map(move |(&n, x)| {
                Rectangle::new(
                    [(x, 0.0), (x + width, sign * f64::from(n))],
                    colour.filled(),
                )
            })
            .collect::<Vec<_>>()
    };
    chart.draw_series(bars(&lane.succeeded, 1.0, SUCCEEDED))?;
    chart.draw_series(bars(&lane.failed, -1.0, FAILED))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(x_range.start, 0.0), (x_range.end, 0.0)],
        BLACK.mix(0.4),
    )))?;
    chart.draw_series(lane.events.iter().filter_map(|e| {
        let at = e.at_ms?;
        Some(PathElement::new(
            vec![(at, y_range.start), (at, y_range.end)],
            colour(e.mark).stroke_width(2),
        ))
    }))?;
    draw_legend(lane, &legend)?;
    Ok(())
}

/// Swatches for the bars, then one line per event: its colour, its time
/// and what it was ("not seen" when the lab gave up watching for it).
fn draw_legend<DB: DrawingBackend>(lane: &Lane, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let font = (FONT, 12).into_font();
    let mut y = 34;
    let mut entry =
        |swatch: &dyn Fn(i32) -> anyhow::Result<()>, text: String| -> anyhow::Result<()> {
            swatch(y)?;
            area.draw(&Text::new(text, (28, y - 6), font.clone()))?;
            y += 19;
            Ok(())
        };
    let square = |colour: RGBColor| {
        move |y: i32| -> anyhow::Result<()> {
            area.draw(&Rectangle::new([(4, y - 5), (20, y + 5)], colour.filled()))?;
            Ok(())
        }
    };
    entry(&square(SUCCEEDED), "succeeded".to_owned())?;
    entry(&square(FAILED), "failed".to_owned())?;
    for event in &lane.events {
        let line = |y: i32| -> anyhow::Result<()> {
            area.draw(&PathElement::new(
                vec![(4, y), (20, y)],
                colour(event.mark).stroke_width(3),
            ))?;
            Ok(())
        };
        let when = match event.at_ms {
            Some(0.0) => "0 ms".to_owned(),
            Some(at) => format!("{at:+.0} ms"),
            None => "not seen".to_owned(),
        };
        entry(&line, format!("{when}: {}", event.label))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::load::Conn;

    const MS: u64 = 1_000_000;

    fn conns(from_ms: u64, to_ms: u64, ok: impl Fn(u64) -> bool) -> Vec<Conn> {
        (from_ms..to_ms)
            .step_by(5)
            .map(|t| Conn {
                start_ns: t * MS,
                greeted_ns: ok(t).then_some(t * MS + MS),
                end_ns: t * MS + 2 * MS,
                server: None,
                via: None,
                bytes_verified: 0,
                ok: ok(t),
                error: None,
            })
            .collect()
    }

    /// A node dies at 1000 ms; each client's connections opened during
    /// the outage (different per family) fail.
    fn takeover() -> Timeline {
        let zero = 1000 * MS;
        let mut v4 = Lane::of(
            "IPv4",
            &conns(600, 2000, |t| !(1000..1350).contains(&t)),
            zero,
            2000 * MS,
        );
        v4.event(Mark::Fault, "node1 dies", Some(0.0))
            .event(Mark::VipMoved, "VIP4 on node2", Some(342.4))
            .event(Mark::NeighbourMoved, "neighbour entry → node2", Some(351.0));
        let mut v6 = Lane::of(
            "IPv6",
            &conns(600, 2000, |t| !(1000..1400).contains(&t)),
            zero,
            2000 * MS,
        );
        v6.event(Mark::Fault, "node1 dies", Some(0.0))
            .event(Mark::VipMoved, "VIP6 on node2", Some(390.0))
            .event(Mark::NeighbourMoved, "neighbour entry → node2", None);
        Timeline {
            title: "node1 dies <&>".to_owned(),
            lanes: vec![v4, v6],
        }
    }

    fn fill(colour: RGBColor) -> String {
        format!("fill=\"#{:02X}{:02X}{:02X}\"", colour.0, colour.1, colour.2)
    }

    fn stroke(colour: RGBColor) -> String {
        format!(
            "stroke=\"#{:02X}{:02X}{:02X}\"",
            colour.0, colour.1, colour.2
        )
    }

    #[test]
    fn a_bar_per_bucket_with_connections_and_a_swatch_per_lane() {
        let t = takeover();
        let svg = timeline_svg(&t).unwrap();
        let nonzero = |counts: &[u32]| counts.iter().filter(|&&n| n > 0).count();
        let (ok, failed): (usize, usize) = t
            .lanes
            .iter()
            .map(|l| (nonzero(&l.succeeded), nonzero(&l.failed)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        // Input: 140 buckets per lane; IPv4 fails in 35 of them, IPv6 in 40.
        assert_eq!((ok, failed), (140 + 140 - 35 - 40, 35 + 40));
        // Output: one bar per bucket that had connections, plus a legend
        // swatch per lane.
        assert_eq!(svg.matches(&fill(SUCCEEDED)).count(), ok + 2, "{svg}");
        assert_eq!(svg.matches(&fill(FAILED)).count(), failed + 2);
    }

    #[test]
    fn events_are_lines_with_their_times_in_the_legend_for_both_families() {
        let svg = timeline_svg(&takeover()).unwrap();
        for family in [
            "IPv4 client: 210 succeeded, 70 failed",
            "IPv6 client: 200 succeeded, 80 failed",
        ] {
            assert!(svg.contains(family), "{family}: {svg}");
        }
        // A line over the plot and one in the legend per seen event; the
        // unseen neighbour move of IPv6 only in the legend.
        assert_eq!(svg.matches(&stroke(colour(Mark::Fault))).count(), 4);
        assert_eq!(svg.matches(&stroke(colour(Mark::VipMoved))).count(), 4);
        assert_eq!(
            svg.matches(&stroke(colour(Mark::NeighbourMoved))).count(),
            3
        );
        for text in [
            "0 ms: node1 dies",
            "+342 ms: VIP4 on node2",
            "+390 ms: VIP6 on node2",
            "+351 ms: neighbour entry → node2",
            "not seen: neighbour entry → node2",
            "ms from: node1 dies",
        ] {
            assert!(svg.contains(text), "{text}: {svg}");
        }
        // Text is escaped.
        assert!(svg.contains("node1 dies &lt;&amp;&gt;"), "{svg}");
    }
}
