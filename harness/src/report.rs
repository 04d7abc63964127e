//! The results of a run: what each stage applied, measured and concluded.
//!
//! One [`EntryReport`] per stage and entry point is written as a JSON line as soon as it is
//! known (`results.jsonl`), so a run that dies still leaves what it measured; `report.json`
//! holds the whole [`Report`] at the end. Every other report is rendered from these types.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::gates::GateReport;
use crate::routing::EntryPoint;
use crate::scenario::Weights;
use crate::scenario::{Design, ExpectRollback};
use crate::stats::Budget;
use crate::verdict::TestPlan;

pub const REPORT_JSON: &str = "report.json";
pub const RESULTS_JSONL: &str = "results.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub scenario_file: PathBuf,
    pub description: Option<String>,
    /// `local`, `kind` or `existing`.
    pub mesh: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub passed: bool,
    /// Set when the run stopped early: `interrupted` (Ctrl-C or SIGTERM, exit 130), or why the
    /// set-up or a stage could not go on (exit 2).
    pub aborted: Option<String>,
    pub budget: Budget,
    /// How split stages are decided.
    #[serde(default)]
    pub design: Design,
    /// Tests the error budget α is split over: those that can fail a correct mesh.
    pub tests_in_run: usize,
    pub entry_points: Vec<EntryPoint>,
    /// Subsets in the order baseline, canary.
    pub subsets: Vec<String>,
    pub versions: BTreeMap<String, String>,
    /// The set-up and teardown steps executed, in order, and how each went.
    #[serde(default)]
    pub setup: Vec<StepReport>,
    /// What the run did to a cluster.
    #[serde(default)]
    pub cluster_changes: ClusterChanges,
    pub stages: Vec<StageReport>,
    /// Every rollback, in order: why, and the measurement that proves it.
    #[serde(default)]
    pub rollbacks: Vec<RollbackReport>,
    /// Stages a rollback skipped (their indexes): the walk resumed at the next new build.
    #[serde(default)]
    pub skipped_stages: Vec<usize>,
    /// The rollback the scenario expects its gates to cause.
    #[serde(default)]
    pub expected_rollback: Option<ExpectRollback>,
    /// Why the run failed beyond its stages: a missed expected rollback, an unverified
    /// rollback, a transition that dropped requests.
    #[serde(default)]
    pub problems: Vec<String>,
    /// The background load on each entry point, through the whole walk, and its verdict on
    /// each transition.
    #[serde(default)]
    pub background_load: Vec<EntryLoad>,
    pub wall_time_s: f64,
}

/// A rollback: the baseline weights applied after a failed stage, and the zero-leak check that
/// the canary then gets no traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackReport {
    /// The stage that failed (index).
    pub after_stage: usize,
    pub stage_name: String,
    /// What failed, in one sentence.
    pub because: String,
    /// The gates that failed there.
    pub failed_gates: Vec<String>,
    pub weights: Weights,
    pub stamp: String,
    pub converge_s: f64,
    /// The zero-leak tests of the rolled-back routing, per entry point and class.
    pub entries: Vec<EntryReport>,
    /// Every zero-leak test passed: the canary got no traffic.
    pub verified: bool,
    /// The stage the walk resumed at (the next one shipping a new canary build), if any.
    pub resumed_at: Option<usize>,
}

/// The value of `aborted` when Ctrl-C or SIGTERM stopped the run.
pub const INTERRUPTED: &str = "interrupted";

/// One executed step of the set-up or teardown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: String,
    pub seconds: f64,
    pub error: Option<String>,
}

/// What a run wrote to a cluster: what it created (and deleted again unless kept), and what it
/// changed without creating it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClusterChanges {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub deleted: Vec<String>,
    /// Left in place on purpose (`--keep`, `--keep-cluster`) or because deleting failed.
    pub left: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub index: usize,
    pub name: String,
    /// Weights applied to the VirtualService.
    pub weights: Weights,
    /// Weights the observation is judged against.
    pub expect: Weights,
    pub expected_share: f64,
    /// Seconds from applying the weights until every proxy routed with them.
    pub converge_s: f64,
    /// The stamp of this stage's route configuration in its answers.
    #[serde(default)]
    pub stamp: String,
    pub passed: bool,
    pub entries: Vec<EntryReport>,
    /// The SLO gates judged at this stage, on its answers pooled per subset.
    #[serde(default)]
    pub gates: Vec<GateReport>,
    /// New builds rolled out before the weights applied (`rollout canary → image`).
    #[serde(default)]
    pub rollouts: Vec<String>,
    /// The steps those rollouts executed, as a dry run lists them.
    #[serde(default)]
    pub rollout_steps: Vec<StepReport>,
    /// The version each subset's answers had to report at this stage (with `identify`).
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
}

/// The background load of one entry point and whether each window of it kept its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryLoad {
    pub entry: EntryPoint,
    /// When the load started, in seconds since the start of the run (the `*_ms` times of
    /// `load` count from it).
    #[serde(default)]
    pub started_s: f64,
    pub load: crate::load::LoadReport,
    pub transitions: Vec<crate::load::TransitionVerdict>,
    /// Requests a window may drop and still pass.
    pub max_errors: u64,
}

impl EntryLoad {
    pub fn passed(&self) -> bool {
        self.transitions.iter().all(|t| t.passed)
    }
}

impl StageReport {
    /// The names of the gates that failed.
    pub fn failed_gates(&self) -> Vec<String> {
        self.gates
            .iter()
            .filter(|g| !g.passed)
            .map(|g| g.gate.clone())
            .collect()
    }

    /// What failed at this stage, in one sentence; empty if nothing did.
    pub fn failures(&self) -> String {
        let mut parts: Vec<String> = self
            .gates
            .iter()
            .filter(|g| !g.passed)
            .map(|g| format!("gate `{}` ({}): {}", g.gate, g.asks, g.judgement.reason))
            .collect();
        parts.extend(
            self.entries
                .iter()
                .filter(|e| !e.passed)
                .map(|e| format!("{}: {}", e.label(), e.reason)),
        );
        parts.join("; ")
    }
}

/// One test: a stage's traffic class on one entry point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryReport {
    pub stage: usize,
    pub stage_name: String,
    pub entry: EntryPoint,
    /// The traffic class (`default` for a scenario that declares none).
    pub class: String,
    /// Where the requests went.
    pub target: String,
    pub weights: Weights,
    pub expected_share: f64,
    pub plan: TestPlan,
    /// Answers read in send order up to the verdict, stale and unroutable ones included.
    pub requests: u64,
    /// Routed answers of the current configuration that the verdict judged.
    pub trials: u64,
    /// Trials per subset, failed answers included.
    pub counts: BTreeMap<String, u64>,
    /// Answers whose subset header names neither subset.
    pub unexpected: BTreeMap<String, u64>,
    /// Answers stamped by an older route configuration: left out.
    pub stale: u64,
    /// Answers that no route sent to a subset (or requests that never reached the proxy).
    pub unroutable: u64,
    /// Answers that came after the verdict was decided: not judged.
    pub after_verdict: u64,
    /// Failed requests of all kinds.
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Failed trials per subset.
    #[serde(default)]
    pub errors_by_subset: BTreeMap<String, u64>,
    pub error_rate: f64,
    /// Answers of a subset whose app reported another version than the subset's image tag.
    #[serde(default)]
    pub wrong_build: BTreeMap<String, BTreeMap<String, u64>>,
    pub observed_share: f64,
    /// Clopper–Pearson at 1 − α per test, or the repeated interval of a sequential verdict.
    pub interval: (f64, f64),
    pub p_value: f64,
    /// Zero-leak stages that saw no leak: the leak rate ruled out at 1 − α per test.
    pub leak_bound: Option<f64>,
    /// The look a sequential verdict stopped at, and how many looks it had.
    pub look: Option<(usize, usize)>,
    pub passed: bool,
    pub reason: String,
    /// Latency of good answers per subset.
    pub latency: BTreeMap<String, Latency>,
    /// Seconds since the start of the run when sampling began.
    pub started_s: f64,
    pub wall_time_s: f64,
    /// Answers per subset over time, for the traffic-shift chart.
    pub timeline: Vec<TimeBucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeBucket {
    /// Start of the bucket, in seconds since the start of the run.
    pub t_s: f64,
    pub counts: BTreeMap<String, u64>,
    pub errors: u64,
}

impl EntryReport {
    /// The entry point, with the traffic class when the scenario declares classes:
    /// `ingress` or `ingress · insiders`. Names a test uniquely within its stage.
    pub fn label(&self) -> String {
        if self.class == crate::scenario::DEFAULT_CLASS {
            self.entry.to_string()
        } else {
            format!("{} · {}", self.entry, self.class)
        }
    }
}

impl Report {
    /// Decides whether the run passed, once the walk is over: every planned stage walked (or
    /// skipped by a rollback that resumed later) and passed, except the stage where the
    /// scenario expects its gate to cause a rollback, which must fail that gate and only it;
    /// every rollback proved; no other problem.
    pub fn conclude(&mut self, planned_stages: usize) {
        if let Some(expected) = self.expected_rollback.clone() {
            let happened = self
                .rollbacks
                .iter()
                .find(|r| r.after_stage == expected.stage);
            match happened {
                None => self.problems.push(format!(
                    "expected gate `{}` to roll the canary back at stage {}, but {}",
                    expected.gate,
                    expected.stage + 1,
                    match self.stages.iter().find(|s| s.index == expected.stage) {
                        Some(s) if s.passed => format!(
                            "stage {} `{}` passed: the canary slipped through",
                            expected.stage + 1,
                            s.name
                        ),
                        Some(_) => "no rollback happened".to_string(),
                        None => "the walk never reached that stage".to_string(),
                    }
                )),
                Some(r) if !r.failed_gates.contains(&expected.gate) => self.problems.push(format!(
                    "expected gate `{}` to roll the canary back at stage {}, but it rolled back because {}",
                    expected.gate,
                    expected.stage + 1,
                    r.because
                )),
                Some(_) => {}
            }
        }
        for r in &self.rollbacks {
            if !r.verified {
                self.problems.push(format!(
                    "the rollback after stage {} did not take the canary out of the traffic",
                    r.after_stage + 1
                ));
            }
        }
        let expected_failure = |s: &StageReport| {
            self.expected_rollback.as_ref().is_some_and(|x| {
                x.stage == s.index
                    && s.entries.iter().all(|e| e.passed)
                    && s.failed_gates().contains(&x.gate)
                    && self.rollbacks.iter().any(|r| r.after_stage == s.index)
            })
        };
        let stages_ok = self.stages.iter().all(|s| s.passed || expected_failure(s));
        let walked = self.stages.len() + self.skipped_stages.len() == planned_stages;
        self.passed = self.aborted.is_none() && walked && stages_ok && self.problems.is_empty();
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn write_json(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join(REPORT_JSON);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    pub fn failed_entries(&self) -> impl Iterator<Item = &EntryReport> {
        self.stages
            .iter()
            .flat_map(|s| &s.entries)
            .filter(|e| !e.passed)
    }
}

/// Appends each result as one JSON line the moment it is known.
pub struct ResultsLog {
    file: std::fs::File,
}

impl ResultsLog {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(RESULTS_JSONL);
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { file })
    }

    pub fn append(&mut self, entry: &EntryReport) -> anyhow::Result<()> {
        let line = serde_json::to_string(entry)?;
        writeln!(self.file, "{line}")?;
        self.file.flush()?;
        Ok(())
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The per-stage table printed at the end of a run.
pub fn terminal_table(report: &Report) -> String {
    let mut rows = vec![[
        "stage".to_string(),
        "entry".into(),
        "weights".into(),
        "expected".into(),
        "observed".into(),
        "interval".into(),
        "p-value".into(),
        "requests".into(),
        "errors".into(),
        "p50/p99 ms".into(),
        "verdict".into(),
    ]];
    for stage in &report.stages {
        for e in &stage.entries {
            let weights: Vec<String> = report
                .subsets
                .iter()
                .map(|s| format!("{s} {}", e.weights.get(s).copied().unwrap_or(0)))
                .collect();
            let latency: Vec<String> = report
                .subsets
                .iter()
                .filter_map(|s| {
                    e.latency
                        .get(s)
                        .map(|l| format!("{:.1}/{:.1}", l.p50_ms, l.p99_ms))
                })
                .collect();
            rows.push([
                stage.name.clone(),
                e.label(),
                weights.join(" / "),
                pct(e.expected_share),
                pct(e.observed_share),
                format!("{}–{}", pct(e.interval.0), pct(e.interval.1)),
                format!("{:.3}", e.p_value),
                e.requests.to_string(),
                e.errors.to_string(),
                latency.join(" · "),
                if e.passed {
                    "PASS".into()
                } else {
                    "FAIL".into()
                },
            ]);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}", w = *w))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let _ = writeln!(
                out,
                "{}",
                widths
                    .iter()
                    .map(|w| "─".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
    for e in report.failed_entries() {
        let _ = writeln!(out, "FAIL {} / {}: {}", e.stage_name, e.label(), e.reason);
    }
    let mut topic = None;
    for f in crate::render::findings(report) {
        if topic != Some(f.topic) {
            let _ = writeln!(out, "{}:", f.topic.title());
            topic = Some(f.topic);
        }
        let word = if f.passed { "pass" } else { "FAIL" };
        let _ = writeln!(out, "  {word} {}: {}", f.title, f.detail);
    }
    let _ = writeln!(out, "{}", crate::render::headline(report));
    out
}
