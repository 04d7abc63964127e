//! The report's charts, drawn by plotters as SVG text: no font files, no images, no scripts.
//!
//! plotters' SVG backend writes text as `<text>` elements that the browser lays out with its
//! own fonts, so the charts need nothing but the page they sit in.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{EntryReport, Report};

/// The `id` of each chart's `<svg>`: canary share, traffic shift, latency.
pub const CHART_IDS: [&str; 4] = [
    "chart-split",
    "chart-traffic",
    "chart-latency",
    "chart-latency-gate",
];

const SIZE: (u32, u32) = (960, 420);
const FONT: &str = "sans-serif";
/// Baseline (first subset) and canary (second subset).
const SUBSET_COLORS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(230, 115, 0)];
/// Ingress and mesh in the share chart.
const ENTRY_COLORS: [RGBColor; 2] = [RGBColor(106, 61, 154), RGBColor(27, 140, 110)];
const EXPECTED: RGBColor = RGBColor(60, 60, 60);
const FAIL: RGBColor = RGBColor(204, 0, 0);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws on a fresh SVG canvas and returns the `<svg>` element with `id` and a `<title>`.
fn svg(
    id: &str,
    title: &str,
    draw: impl FnOnce(&Area<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    let open = text
        .find("<svg")
        .and_then(|start| text[start..].find('>').map(|end| start + end))
        .ok_or_else(|| anyhow::anyhow!("plotters wrote no <svg> element"))?;
    let (head, rest) = text.split_at(open);
    Ok(format!(
        "{} id=\"{id}\" role=\"img\" aria-labelledby=\"{id}-title\">\n<title id=\"{id}-title\">{}</title>{}",
        head.trim_end_matches('/'),
        super::html::escape(title),
        &rest[1..]
    ))
}

fn subset_color(i: usize) -> RGBColor {
    SUBSET_COLORS[i % SUBSET_COLORS.len()]
}

fn entry_color(i: usize) -> RGBColor {
    ENTRY_COLORS[i % ENTRY_COLORS.len()]
}

/// `2. canary warm-up · 10 %`: the x labels of the per-stage charts.
fn stage_labels(report: &Report) -> Vec<String> {
    report
        .stages
        .iter()
        .map(|s| {
            format!(
                "{}. {} · {:.0} %",
                s.index + 1,
                s.name,
                s.expected_share * 100.0
            )
        })
        .collect()
}

/// Horizontal offsets that spread `n` marks around a stage's tick.
fn offsets(n: usize, spread: f64) -> Vec<f64> {
    if n <= 1 {
        return vec![0.0; n];
    }
    (0..n)
        .map(|i| -spread / 2.0 + spread * i as f64 / (n - 1) as f64)
        .collect()
}

/// The test of a stage on an entry point that the charts show: with traffic classes, the
/// first class that follows the stage's weights (the one the stage moves).
fn entry_of(report: &Report, stage: usize, j: usize) -> Option<&EntryReport> {
    let entry = report.entry_points.get(j)?;
    let mut on_entry = report
        .stages
        .get(stage)?
        .entries
        .iter()
        .filter(|e| e.entry == *entry);
    let follows = |e: &&EntryReport| {
        let total: u32 = e.weights.values().sum();
        let canary = report
            .subsets
            .get(1)
            .and_then(|c| e.weights.get(c))
            .copied()
            .unwrap_or(0);
        total > 0 && (f64::from(canary) / f64::from(total) - e.expected_share).abs() < 1e-9
    };
    on_entry.clone().find(follows).or_else(|| on_entry.next())
}

/// Chart 1: the canary share each stage expects, and what each entry point observed with its
/// confidence interval.
pub fn split_chart(report: &Report) -> anyhow::Result<String> {
    let title = "Canary share per stage: expected vs observed (bars: confidence interval at 1 − α per test)";
    svg(CHART_IDS[0], title, |root| {
        let n = report.stages.len().max(1);
        let labels = stage_labels(report);
        let mut chart = ChartBuilder::on(root)
            .caption("Canary share per stage: expected vs observed", (FONT, 20))
            .margin(14)
            .x_label_area_size(34)
            .y_label_area_size(60)
            .build_cartesian_2d(StageAxis::new(n), -3f64..103f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| label_at(&labels, *x))
            .y_labels(11)
            .y_label_formatter(&|y| format!("{y:.0} %"))
            .y_desc("canary share of answers")
            .label_style((FONT, 13))
            .light_line_style(WHITE)
            .draw()?;

        let expected: Vec<(f64, f64)> = report
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64, s.expected_share * 100.0))
            .collect();
        chart.draw_series(LineSeries::new(
            expected.clone(),
            EXPECTED.mix(0.25).stroke_width(1),
        ))?;
        chart
            .draw_series(expected.iter().map(|&(x, y)| {
                PathElement::new(vec![(x - 0.32, y), (x + 0.32, y)], EXPECTED.stroke_width(2))
            }))?
            .label("expected (the stage's weights)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], EXPECTED.stroke_width(2)));

        let spread = offsets(report.entry_points.len(), 0.3);
        for (j, entry) in report.entry_points.iter().enumerate() {
            let color = entry_color(j);
            let points: Vec<(f64, &EntryReport)> = (0..report.stages.len())
                .filter_map(|i| entry_of(report, i, j).map(|e| (i as f64 + spread[j], e)))
                .collect();
            chart
                .draw_series(points.iter().map(|(x, e)| {
                    ErrorBar::new_vertical(
                        *x,
                        e.interval.0 * 100.0,
                        e.observed_share * 100.0,
                        e.interval.1 * 100.0,
                        color.filled().stroke_width(2),
                        10,
                    )
                }))?
                .label(format!("observed on {entry}"))
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
            // Ingress labels to the left of its bar, mesh labels to the right.
            // Outside the expected mark, so the two never overlap.
            let (dx, anchor) = if j % 2 == 0 {
                (-0.36 - spread[j], HPos::Right)
            } else {
                (0.36 - spread[j], HPos::Left)
            };
            let style = TextStyle::from((FONT, 12).into_font())
                .color(&color)
                .pos(Pos::new(anchor, VPos::Center));
            chart.draw_series(points.iter().map(|(x, e)| {
                Text::new(
                    format!("{:.1} %", e.observed_share * 100.0),
                    (*x + dx, e.observed_share * 100.0),
                    style.clone(),
                )
            }))?;
            chart.draw_series(points.iter().filter(|(_, e)| !e.passed).map(|(x, e)| {
                Cross::new((*x, e.observed_share * 100.0), 9, FAIL.stroke_width(3))
            }))?;
        }
        if report.failed_entries().next().is_some() {
            chart
                .draw_series(std::iter::empty::<Cross<(f64, f64), i32>>())?
                .label("failed verdict")
                .legend(|(x, y)| Cross::new((x + 9, y), 6, FAIL.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.9))
            .border_style(EXPECTED.mix(0.4))
            .draw()?;
        Ok(())
    })
}

/// The points of the traffic-shift chart for one entry: the middle of each span and answers
/// per second in it (failed requests when `subset` is `None`).
fn rates(e: &EntryReport, subset: Option<&str>) -> Vec<(f64, f64)> {
    super::spans(e)
        .iter()
        .map(|span| {
            let count = match subset {
                Some(s) => span.counts.get(s).copied().unwrap_or(0),
                None => span.errors,
            };
            (
                (span.from_s + span.to_s) / 2.0,
                count as f64 / span.seconds(),
            )
        })
        .collect()
}

/// Chart 2: answers per second of each version over the run, across the stages.
pub fn traffic_chart(report: &Report) -> anyhow::Result<String> {
    let title = "Traffic shift: answers per second of each version over the run";
    svg(CHART_IDS[1], title, |root| {
        let entries: Vec<&EntryReport> = report.stages.iter().flat_map(|s| &s.entries).collect();
        let end = entries
            .iter()
            .map(|e| e.started_s + e.wall_time_s)
            .fold(report.wall_time_s, f64::max)
            .max(0.1);
        let top = entries
            .iter()
            .flat_map(|e| {
                report
                    .subsets
                    .iter()
                    .flat_map(|s| rates(e, Some(s)))
                    .chain(rates(e, None))
            })
            .map(|(_, r)| r)
            .fold(1.0, f64::max)
            // Room above the lines for the stage names and, below them, the legend.
            * 1.5;
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Traffic shift: answers per second of each version",
                (FONT, 20),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..end, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start of the run")
            .y_desc("answers per second")
            .x_label_formatter(&|x| {
                if end < 10.0 {
                    format!("{x:.1} s")
                } else {
                    format!("{x:.0} s")
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FONT, 13))
            .light_line_style(WHITE)
            .draw()?;

        // A band per stage, named where it is wide enough and numbered where it is not.
        for (i, stage) in report.stages.iter().enumerate() {
            let (Some(first), Some(last)) = (stage.entries.first(), stage.entries.last()) else {
                continue;
            };
            let (from, to) = (first.started_s, last.started_s + last.wall_time_s);
            let shade = if i % 2 == 0 { 0.07 } else { 0.13 };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(from, 0.0), (to, top)],
                EXPECTED.mix(shade).filled(),
            )))?;
            let pixels = chart.backend_coord(&(to, 0.0)).0 - chart.backend_coord(&(from, 0.0)).0;
            let name = format!("{}. {}", stage.index + 1, stage.name);
            let text = if pixels as f64 > name.len() as f64 * 7.0 + 8.0 {
                name
            } else {
                (stage.index + 1).to_string()
            };
            let style = TextStyle::from((FONT, 13).into_font())
                .color(&EXPECTED)
                .pos(Pos::new(HPos::Center, VPos::Top));
            chart.draw_series(std::iter::once(Text::new(
                text,
                ((from + to) / 2.0, top * 0.985),
                style,
            )))?;
        }

        // The transitions the background load went through, and every request it lost.
        if let Some(load) = report.background_load.first() {
            let at = |ms: f64| load.started_s + ms / 1000.0;
            let marks: Vec<(f64, &str)> = load
                .load
                .windows
                .iter()
                .filter(|w| w.kind == crate::load::WindowKind::Transition)
                .map(|w| (at(w.from_ms), w.name.as_str()))
                .collect();
            let series = chart.draw_series(marks.iter().map(|(x, _)| {
                PathElement::new(vec![(*x, 0.0), (*x, top * 0.93)], EXPECTED.mix(0.55))
            }))?;
            series
                .label("transition (weights, rollout, rollback)")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x + 9, y - 6), (x + 9, y + 6)], EXPECTED.mix(0.55))
                });
            let style = TextStyle::from((FONT, 11).into_font())
                .color(&EXPECTED)
                .pos(Pos::new(HPos::Left, VPos::Bottom));
            chart.draw_series(
                marks
                    .iter()
                    .filter(|(_, name)| !name.starts_with("weights"))
                    .map(|(x, name)| {
                        let word = name.split_whitespace().next().unwrap_or_default();
                        Text::new(word.to_string(), (*x, top * 0.02), style.clone())
                    }),
            )?;
        }
        let lost: Vec<f64> = report
            .background_load
            .iter()
            .flat_map(|l| {
                l.load
                    .failures
                    .iter()
                    .map(move |f| l.started_s + f.intended_ms / 1000.0)
            })
            .collect();
        if !lost.is_empty() {
            chart
                .draw_series(
                    lost.iter()
                        .map(|x| Cross::new((*x, top * 0.05), 5, FAIL.stroke_width(2))),
                )?
                .label("request the background load lost")
                .legend(|(x, y)| Cross::new((x + 9, y), 5, FAIL.stroke_width(2)));
        }

        for (k, subset) in report.subsets.iter().enumerate() {
            let color = subset_color(k);
            for (n, e) in entries.iter().enumerate() {
                let series = chart.draw_series(LineSeries::new(
                    rates(e, Some(subset)),
                    color.stroke_width(2),
                ))?;
                if n == 0 {
                    series
                        .label(super::label(report, subset))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                        });
                }
            }
        }
        if entries.iter().any(|e| e.errors > 0) {
            for (n, e) in entries.iter().enumerate() {
                let series =
                    chart.draw_series(LineSeries::new(rates(e, None), FAIL.stroke_width(1)))?;
                if n == 0 {
                    series.label("failed requests").legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], FAIL.stroke_width(2))
                    });
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::Coordinate(12, 30))
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.9))
            .border_style(EXPECTED.mix(0.4))
            .draw()?;
        Ok(())
    })
}

/// Chart 3: latency of each version per stage and entry point: p50 (dot), p90 (tick), p99
/// (top of the bar).
pub fn latency_chart(report: &Report) -> anyhow::Result<String> {
    let title = "Latency of each version per stage and entry point: dot p50, tick p90, top p99";
    svg(CHART_IDS[2], title, |root| {
        let n = report.stages.len().max(1);
        let labels = stage_labels(report);
        let top = report
            .stages
            .iter()
            .flat_map(|s| &s.entries)
            .flat_map(|e| e.latency.values())
            .map(|l| l.p99_ms)
            .fold(1.0, f64::max)
            // Headroom for the legend above the highest bar.
            * 1.45;
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Latency per version: p50 (dot), p90 (tick), p99 (top)",
                (FONT, 20),
            )
            .margin(14)
            .x_label_area_size(34)
            .y_label_area_size(60)
            .build_cartesian_2d(StageAxis::new(n), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| label_at(&labels, *x))
            .y_label_formatter(&|y| format!("{y:.0} ms"))
            .y_desc("latency of good answers")
            .label_style((FONT, 13))
            .light_line_style(WHITE)
            .draw()?;

        let combos: Vec<(usize, usize)> = (0..report.entry_points.len())
            .flat_map(|j| (0..report.subsets.len()).map(move |k| (j, k)))
            .collect();
        let spread = offsets(combos.len(), 0.5);
        for (c, &(j, k)) in combos.iter().enumerate() {
            let subset = &report.subsets[k];
            // The first entry point in full color, the second lighter.
            let color = subset_color(k).mix(if j == 0 { 1.0 } else { 0.5 });
            let marks: Vec<(f64, crate::report::Latency)> = (0..report.stages.len())
                .filter_map(|i| {
                    let l = entry_of(report, i, j)?.latency.get(subset)?;
                    (l.count > 0).then_some((i as f64 + spread[c], *l))
                })
                .collect();
            chart
                .draw_series(marks.iter().map(|(x, l)| {
                    ErrorBar::new_vertical(
                        *x,
                        l.p50_ms,
                        l.p50_ms,
                        l.p99_ms,
                        color.filled().stroke_width(2),
                        8,
                    )
                }))?
                .label(format!(
                    "{} · {}",
                    super::label(report, subset),
                    report.entry_points[j]
                ))
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
            chart.draw_series(marks.iter().map(|(x, l)| {
                PathElement::new(
                    vec![(x - 0.035, l.p90_ms), (x + 0.035, l.p90_ms)],
                    color.stroke_width(2),
                )
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.9))
            .border_style(EXPECTED.mix(0.4))
            .draw()?;
        Ok(())
    })
}

/// A stage's relative latency gate: where it was judged, what it measured and allowed.
struct GatePoint {
    x: f64,
    measured: f64,
    /// The one-sided interval's bound, compared with the limit.
    bound: f64,
    limit: f64,
    passed: bool,
}

/// Chart 4: the canary's latency relative to the baseline's, per stage, as each relative
/// latency gate judged it: the estimate (dot), its one-sided interval down to the bound the
/// gate compares (bar), and the gate's limit (dash). A gate fails when the whole interval lies
/// above the limit.
pub fn latency_gate_chart(report: &Report) -> anyhow::Result<String> {
    let title = "Canary latency relative to the baseline per stage, with the latency gates";
    svg(CHART_IDS[3], title, |root| {
        let n = report.stages.len().max(1);
        let labels = stage_labels(report);
        let mut points = Vec::new();
        for (i, stage) in report.stages.iter().enumerate() {
            for g in stage.gates.iter().filter(|g| is_relative_latency(&g.asks)) {
                let j = &g.judgement;
                if j.measured.is_finite() && j.threshold.is_finite() {
                    points.push(GatePoint {
                        x: i as f64,
                        measured: j.measured,
                        bound: if j.interval.0.is_finite() {
                            j.interval.0
                        } else {
                            j.measured
                        },
                        limit: j.threshold,
                        passed: g.passed,
                    });
                }
            }
        }
        let top = points
            .iter()
            .map(|p| p.measured.max(p.limit))
            .fold(2.0, f64::max)
            // Room above the highest mark for the legend (the axis is logarithmic).
            * 4.0;
        let bottom = points
            .iter()
            .map(|p| p.bound.min(p.measured))
            .filter(|v| *v > 0.0)
            .fold(0.5, f64::min)
            * 0.8;
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{} latency relative to {}'s, with the gates",
                    report
                        .subsets
                        .get(1)
                        .map(String::as_str)
                        .unwrap_or("canary"),
                    report
                        .subsets
                        .first()
                        .map(String::as_str)
                        .unwrap_or("baseline"),
                ),
                (FONT, 20),
            )
            .margin(14)
            .x_label_area_size(34)
            .y_label_area_size(60)
            .build_cartesian_2d(StageAxis::new(n), (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| label_at(&labels, *x))
            .y_label_formatter(&|y| format!("{y:.2} ×"))
            .y_desc("canary ÷ baseline")
            .label_style((FONT, 13))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
                EXPECTED.mix(0.4),
            )))?
            .label("as fast as the baseline (1 ×)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], EXPECTED.mix(0.4)));
        chart
            .draw_series(points.iter().map(|p| {
                PathElement::new(
                    vec![(p.x - 0.3, p.limit), (p.x + 0.3, p.limit)],
                    EXPECTED.stroke_width(3),
                )
            }))?
            .label("the gate's limit")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], EXPECTED.stroke_width(3)));
        let color = subset_color(1);
        chart
            .draw_series(points.iter().map(|p| {
                ErrorBar::new_vertical(
                    p.x,
                    p.bound.min(p.measured),
                    p.measured,
                    p.measured,
                    color.filled().stroke_width(2),
                    10,
                )
            }))?
            .label("estimate, down to its one-sided bound")
            .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
        if points.iter().any(|p| !p.passed) {
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| !p.passed)
                        .map(|p| Cross::new((p.x, p.measured), 9, FAIL.stroke_width(3))),
                )?
                .label("gate failed")
                .legend(|(x, y)| Cross::new((x + 9, y), 6, FAIL.stroke_width(3)));
        }
        if points.is_empty() {
            let style = TextStyle::from((FONT, 15).into_font())
                .color(&EXPECTED)
                .pos(Pos::new(HPos::Center, VPos::Center));
            chart.draw_series(std::iter::once(Text::new(
                "no relative latency gate in this scenario",
                ((n as f64 - 1.0) / 2.0, 1.4),
                style,
            )))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.9))
            .border_style(EXPECTED.mix(0.4))
            .draw()?;
        Ok(())
    })
}

/// Whether a gate's description is a relative latency gate's (`latency ≤ 1.50 × ga's`,
/// `p99 ≤ 1.20 × ga's`): their measure is a ratio.
fn is_relative_latency(asks: &str) -> bool {
    asks.contains(" × ") && !asks.starts_with("error rate")
}

/// The x axis of the per-stage charts: one tick per stage at 0, 1, …, with room for marks
/// spread around each tick.
struct StageAxis {
    stages: usize,
    inner: RangedCoordf64,
}

impl StageAxis {
    fn new(stages: usize) -> Self {
        Self {
            stages,
            inner: (-0.5..stages as f64 - 0.5).into(),
        }
    }
}

impl Ranged for StageAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.stages).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

fn label_at(labels: &[String], x: f64) -> String {
    if (x - x.round()).abs() > 1e-6 || x < -0.5 {
        return String::new();
    }
    labels.get(x.round() as usize).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture;

    #[test]
    fn each_chart_is_one_svg_with_its_id_and_title() {
        let report = fixture::report(Some("canary promotion"));
        for (chart, id) in [
            split_chart(&report).unwrap(),
            traffic_chart(&report).unwrap(),
            latency_chart(&report).unwrap(),
            latency_gate_chart(&report).unwrap(),
        ]
        .iter()
        .zip(CHART_IDS)
        {
            assert!(chart.starts_with("<svg "), "{chart}");
            assert_eq!(chart.matches("<svg").count(), 1);
            assert!(chart.contains(&format!("id=\"{id}\"")), "{chart}");
            assert!(
                chart.contains(&format!("<title id=\"{id}-title\">")),
                "{chart}"
            );
            assert!(chart.contains("<text"), "text is SVG text, not glyph paths");
            assert!(chart.trim_end().ends_with("</svg>"));
        }
    }

    #[test]
    fn an_empty_report_still_draws() {
        let mut report = fixture::report(None);
        report.stages.clear();
        split_chart(&report).unwrap();
        traffic_chart(&report).unwrap();
        latency_chart(&report).unwrap();
        latency_gate_chart(&report).unwrap();
    }

    #[test]
    fn rates_are_answers_per_second_of_each_bucket() {
        let report = fixture::report(None);
        let e = &report.stages[2].entries[0];
        let r = rates(e, Some("canary"));
        assert!(r.len() + 1 >= e.timeline.len(), "{r:?}");
        let width = e.timeline[1].t_s - e.timeline[0].t_s;
        let want = e.timeline[0].counts["canary"] as f64 / width;
        assert!((r[0].1 - want).abs() < 1e-9, "{r:?}");
    }
}
