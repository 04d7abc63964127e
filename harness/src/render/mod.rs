//! The reports people read: JUnit XML for CI, a Markdown summary, and a self-contained HTML
//! page with charts. All are pure functions of a [`Report`]; [`write_all`] puts them next to
//! `report.json`.

mod charts;
mod html;
mod junit;
mod markdown;
mod release;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::report::{EntryReport, Report};

pub use charts::{CHART_IDS, latency_chart, latency_gate_chart, split_chart, traffic_chart};
pub use html::html;
pub use junit::junit;
pub use markdown::markdown;
pub use release::{Finding, Topic, findings};

pub const JUNIT_XML: &str = "junit.xml";
pub const SUMMARY_MD: &str = "summary.md";
pub const REPORT_HTML: &str = "report.html";

/// Writes `junit.xml`, `summary.md` and `report.html` into `dir` and returns their paths. The
/// summary is also appended to `$GITHUB_STEP_SUMMARY` when that is set.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let summary = markdown(report);
    let files = [
        (JUNIT_XML, junit(report)),
        (SUMMARY_MD, summary.clone()),
        (REPORT_HTML, html(report)?),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        paths.push(path);
    }
    if let Some(step_summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty()) {
        append(Path::new(&step_summary), &summary)?;
    }
    Ok(paths)
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("appending to {}", path.display()))
}

/// `PASSED: scenario `tutorial` on the local mesh, 4 stages × 2 entry points in 13.9 s (α…)`.
pub fn headline(report: &Report) -> String {
    format!(
        "{}: scenario `{}` on the {} mesh, {} stages × {} entry points in {:.1} s (α = {}, β = {}, δ = {} points)",
        verdict_word(report),
        report.scenario,
        report.mesh,
        report.stages.len(),
        report.entry_points.len(),
        report.wall_time_s,
        report.budget.alpha,
        report.budget.beta,
        report.budget.delta * 100.0,
    )
}

fn verdict_word(report: &Report) -> &'static str {
    match (&report.aborted, report.passed) {
        (Some(_), _) => "ABORTED",
        (None, true) => "PASSED",
        (None, false) => "FAILED",
    }
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// The cells of one table row, shared by the Markdown and HTML tables.
struct Row {
    stage: String,
    entry: String,
    weights: String,
    expected: String,
    observed: String,
    interval: String,
    p_value: String,
    requests: String,
    errors: String,
    /// `p50 / p99 ms` per subset, in the report's subset order; `–` when it had no answers.
    latency: Vec<String>,
    passed: bool,
}

const HEADERS: [&str; 9] = [
    "stage", "entry", "weights", "expected", "observed", "interval", "p-value", "requests",
    "errors",
];

fn latency_headers(report: &Report) -> Vec<String> {
    report
        .subsets
        .iter()
        .map(|s| format!("{} p50/p99 ms", label(report, s)))
        .collect()
}

fn rows(report: &Report) -> Vec<Row> {
    report
        .stages
        .iter()
        .flat_map(|stage| stage.entries.iter().map(move |e| (stage, e)))
        .map(|(stage, e)| Row {
            stage: format!("{}. {}", stage.index + 1, stage.name),
            entry: e.label(),
            weights: weights(report, e),
            expected: pct(e.expected_share),
            observed: pct(e.observed_share),
            interval: format!("{}–{}", pct(e.interval.0), pct(e.interval.1)),
            p_value: format!("{:.3}", e.p_value),
            requests: e.requests.to_string(),
            errors: e.errors.to_string(),
            latency: report
                .subsets
                .iter()
                .map(|s| match e.latency.get(s) {
                    Some(l) if l.count > 0 => format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms),
                    _ => "–".to_string(),
                })
                .collect(),
            passed: e.passed,
        })
        .collect()
}

fn weights(report: &Report, e: &EntryReport) -> String {
    report
        .subsets
        .iter()
        .map(|s| format!("{s} {}", e.weights.get(s).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `ga (6.14.0)`: a subset with the version its workload reports.
/// `ga (6.14.0)`: a subset with the version its workload reports; `canary (6.11.1 → 6.11.2)`
/// when a stage rolled out a new build of it.
fn label(report: &Report, subset: &str) -> String {
    let mut versions: Vec<&String> = report.versions.get(subset).into_iter().collect();
    for stage in &report.stages {
        if let Some(v) = stage.versions.get(subset)
            && versions.last() != Some(&v)
        {
            versions.push(v);
        }
    }
    if versions.is_empty() {
        subset.to_string()
    } else {
        let joined: Vec<&str> = versions.iter().map(|v| v.as_str()).collect();
        format!("{subset} ({})", joined.join(" → "))
    }
}

/// A stretch of one entry point's sampling and the answers in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Seconds since the start of the run.
    pub from_s: f64,
    pub to_s: f64,
    /// Good answers per subset.
    pub counts: BTreeMap<String, u64>,
    pub errors: u64,
}

impl Span {
    pub fn seconds(&self) -> f64 {
        (self.to_s - self.from_s).max(1e-3)
    }
}

/// An entry point's timeline as stretches of time: each bucket lasts until the next, the last
/// until sampling ended. A last bucket cut to less than half a bucket joins the one before, so
/// that a sliver neither inflates nor sinks a rate.
pub fn spans(e: &EntryReport) -> Vec<Span> {
    let buckets = &e.timeline;
    let end = e.started_s + e.wall_time_s;
    let width = match buckets.as_slice() {
        [a, b, ..] => b.t_s - a.t_s,
        _ => e.wall_time_s,
    }
    .max(1e-3);
    let mut spans: Vec<Span> = Vec::new();
    for (i, b) in buckets.iter().enumerate() {
        let to = if i + 1 == buckets.len() {
            end.clamp(b.t_s, b.t_s + width)
        } else {
            b.t_s + width
        };
        match spans.last_mut() {
            Some(last) if to - b.t_s < width / 2.0 => {
                last.to_s = to;
                for (s, c) in &b.counts {
                    *last.counts.entry(s.clone()).or_insert(0) += c;
                }
                last.errors += b.errors;
            }
            _ => spans.push(Span {
                from_s: b.t_s,
                to_s: to.max(b.t_s + width / 2.0),
                counts: b.counts.clone(),
                errors: b.errors,
            }),
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TimeBucket;

    fn bucket(t_s: f64, ga: u64) -> TimeBucket {
        TimeBucket {
            t_s,
            counts: [("ga".to_string(), ga)].into(),
            errors: 0,
        }
    }

    #[test]
    fn a_sliver_at_the_end_joins_the_span_before() {
        let mut report = fixture::report(None);
        let e = &mut report.stages[1].entries[0];
        e.started_s = 1.0;
        e.wall_time_s = 0.21;
        e.timeline = vec![bucket(1.0, 100), bucket(1.1, 100), bucket(1.2, 10)];
        let spans = spans(e);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[1].counts["ga"], 110);
        assert!((spans[1].seconds() - 0.11).abs() < 1e-9, "{spans:?}");
    }

    #[test]
    fn a_last_bucket_of_half_a_width_or_more_stands_alone() {
        let mut report = fixture::report(None);
        let e = &mut report.stages[1].entries[0];
        e.started_s = 1.0;
        e.wall_time_s = 0.26;
        e.timeline = vec![bucket(1.0, 100), bucket(1.1, 100), bucket(1.2, 60)];
        let spans = spans(e);
        assert_eq!(spans.len(), 3, "{spans:?}");
        assert!((spans[2].seconds() - 0.06).abs() < 1e-9, "{spans:?}");
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    use std::collections::BTreeMap;

    use crate::report::{EntryReport, Latency, Report, StageReport, TimeBucket};
    use crate::routing::EntryPoint;
    use crate::stats::{self, Budget};
    use crate::verdict::TestPlan;

    /// A four-stage tutorial report on two entry points; `fail` names a stage whose mesh
    /// entry fails.
    pub fn report(fail: Option<&str>) -> Report {
        let budget = Budget {
            alpha: 1e-4,
            beta: 1e-3,
            delta: 0.05,
        };
        let entries = [EntryPoint::Ingress, EntryPoint::Mesh];
        let stages_spec = [
            ("initial state", 0u32),
            ("canary warm-up", 10),
            ("canary promotion", 60),
            ("full promotion", 100),
        ];
        let mut t = 0.2;
        let mut stages = Vec::new();
        for (index, (name, canary)) in stages_spec.iter().enumerate() {
            let weights: BTreeMap<String, u32> = [
                ("ga".to_string(), 100 - canary),
                ("canary".to_string(), *canary),
            ]
            .into();
            let share = f64::from(*canary) / 100.0;
            let mut results = Vec::new();
            for entry in entries {
                let plan = stats::plan(share, &budget, 8);
                let failed = fail == Some(*name) && entry == EntryPoint::Mesh;
                let n = plan.requests;
                let observed = if failed {
                    (share - 0.2).max(0.0)
                } else {
                    share
                };
                let k = (n as f64 * observed).round() as u64;
                let j = stats::judge(&plan, k, n);
                let counts: BTreeMap<String, u64> =
                    [("ga".to_string(), n - k), ("canary".to_string(), k)].into();
                let latency = counts
                    .iter()
                    .filter(|(_, c)| **c > 0)
                    .map(|(s, c)| {
                        let slow = if s == "canary" { 2.0 } else { 0.0 };
                        (
                            s.clone(),
                            Latency {
                                count: *c,
                                mean_ms: 6.0 + slow,
                                p50_ms: 5.5 + slow,
                                p90_ms: 9.0 + slow,
                                p99_ms: 14.0 + slow,
                                max_ms: 20.0 + slow,
                            },
                        )
                    })
                    .collect();
                let wall = n as f64 / 1200.0;
                let width = (wall / 20.0).max(0.05);
                let buckets = (wall / width).ceil() as usize;
                let timeline = (0..buckets)
                    .map(|b| TimeBucket {
                        t_s: t + b as f64 * width,
                        counts: counts
                            .iter()
                            .map(|(s, c)| (s.clone(), c / buckets as u64))
                            .collect(),
                        errors: 0,
                    })
                    .collect();
                results.push(EntryReport {
                    stage: index,
                    stage_name: name.to_string(),
                    entry,
                    target: format!("http://127.0.0.1:1000{index}/"),
                    weights: weights.clone(),
                    expected_share: share,
                    plan: if plan.kind == stats::CheckKind::ZeroLeak {
                        TestPlan::ZeroLeak(plan)
                    } else {
                        TestPlan::Fixed(plan)
                    },
                    class: "default".into(),
                    requests: n,
                    trials: n,
                    counts,
                    unexpected: BTreeMap::new(),
                    stale: 0,
                    unroutable: 0,
                    after_verdict: 0,
                    wrong_build: BTreeMap::new(),
                    look: None,
                    errors: 0,
                    error_kinds: BTreeMap::new(),
                    errors_by_subset: BTreeMap::new(),
                    error_rate: 0.0,
                    observed_share: j.observed_share,
                    interval: j.interval,
                    p_value: j.p_value,
                    leak_bound: j.leak_bound,
                    passed: j.passed && !failed,
                    reason: j.reason,
                    latency,
                    started_s: t,
                    wall_time_s: wall,
                    timeline,
                });
                t += wall + 0.01;
            }
            stages.push(StageReport {
                index,
                name: name.to_string(),
                weights: weights.clone(),
                expect: weights,
                expected_share: share,
                converge_s: 0.01,
                stamp: format!("{}.{}", index + 1, index + 1),
                passed: results.iter().all(|r| r.passed),
                entries: results,
                gates: Vec::new(),
                rollouts: Vec::new(),
                rollout_steps: Vec::new(),
                versions: Default::default(),
            });
        }
        Report {
            scenario: "tutorial".into(),
            scenario_file: "scenarios/tutorial.yaml".into(),
            description: Some("Canary 0 → 10 → 60 → 100 % <between> podinfo's releases.".into()),
            mesh: "local".into(),
            started_at: "2026-11-27T10:54:35Z".into(),
            passed: stages.iter().all(|s| s.passed),
            aborted: None,
            budget,
            design: Default::default(),
            tests_in_run: 8,
            entry_points: entries.to_vec(),
            subsets: vec!["ga".into(), "canary".into()],
            versions: [
                ("ga".to_string(), "6.14.0".to_string()),
                ("canary".to_string(), "6.14.1".to_string()),
            ]
            .into(),
            setup: Vec::new(),
            cluster_changes: Default::default(),
            stages,
            rollbacks: Vec::new(),
            skipped_stages: Vec::new(),
            expected_rollback: None,
            problems: Vec::new(),
            background_load: Vec::new(),
            wall_time_s: t,
        }
    }
}
