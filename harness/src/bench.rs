//! The figures of `cargo xtask bench`: how fast the harness samples through the local mesh
//! compared with load generators at the same concurrency, how fast each backend answers alone,
//! how long the tutorial takes, how many requests its verdicts spend (sequential vs fixed, from
//! the plan and as measured) and how much memory the harness takes.
//!
//! This module measures and renders; `xtask` brings the mesh up and decides what to run. Every
//! figure is a median or a ratio of numbers that are in the same [`Bench`], and the Markdown
//! table is rendered from the JSON's numbers only, so the two always agree.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::envoy_config;
use crate::prober::{Probe, Target};
use crate::report::Report;
use crate::routing::{EntryPoint, Routing};
use crate::run::TestPlans;
use crate::verdict::TestPlan;

pub const BENCH_JSON: &str = "bench.json";
pub const BENCH_MD: &str = "bench.md";

/// Everything one bench run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bench {
    pub date: String,
    pub machine: Machine,
    /// Requests in flight for every rate below.
    pub concurrency: usize,
    /// Seconds each rate was measured for.
    pub duration_s: f64,
    /// Load through Envoy's ingress listener (`GET /` with the Gateway's Host), round after
    /// round: in each, the harness's prober first, then the load generators.
    pub through_mesh: Vec<Rate>,
    /// The harness's rate over wrk's in each round where both were measured.
    #[serde(default)]
    pub harness_vs_wrk_rounds: Vec<f64>,
    /// The median of those.
    pub harness_vs_wrk: Option<f64>,
    /// Each backend alone, straight to its port.
    pub backends: Vec<Rate>,
    pub tutorial: Tutorial,
    /// Requests per verdict of each split stage (and all tests together), sequential vs fixed.
    pub verdicts: Vec<VerdictRow>,
    /// What was skipped and why.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    /// The cargo profile the bench binary was built in (the folder it runs from).
    pub profile: String,
    pub debug_assertions: bool,
    /// `/proc/loadavg`'s 1-minute load when the figures were taken (the machine may be shared).
    #[serde(default)]
    pub load_1m: Option<f64>,
}

impl Machine {
    pub fn this() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let profile = std::env::current_exe()
            .ok()
            .and_then(|exe| {
                let dir = exe.parent()?.file_name()?.to_str()?.to_string();
                // Test binaries run from target/<profile>/deps.
                Some(if dir == "deps" {
                    exe.parent()?.parent()?.file_name()?.to_str()?.to_string()
                } else {
                    dir
                })
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            profile,
            debug_assertions: cfg!(debug_assertions),
            load_1m: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse().ok()),
        }
    }
}

/// A request rate, or why it was not measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// What sent the load (`harness prober`, `wrk`, `oha`).
    pub tool: String,
    /// What it was sent to.
    pub target: String,
    pub requests: u64,
    /// Failed requests (non-2xx/3xx, socket errors).
    pub errors: u64,
    pub seconds: f64,
    /// `requests / seconds`; `None` when skipped.
    pub per_s: Option<f64>,
    pub skipped: Option<String>,
    /// Which round of the bench it was measured in, from 1.
    #[serde(default = "first_round")]
    pub round: usize,
}

fn first_round() -> usize {
    1
}

impl Rate {
    pub fn measured(tool: &str, target: &str, requests: u64, errors: u64, seconds: f64) -> Self {
        Rate {
            tool: tool.into(),
            target: target.into(),
            requests,
            errors,
            seconds,
            per_s: ratio(requests as f64, seconds),
            skipped: None,
            round: 1,
        }
    }

    /// The same rate, as measured in `round`.
    pub fn in_round(self, round: usize) -> Self {
        Rate { round, ..self }
    }

    pub fn skipped(tool: &str, target: &str, why: impl Into<String>) -> Self {
        Rate {
            tool: tool.into(),
            target: target.into(),
            requests: 0,
            errors: 0,
            seconds: 0.0,
            per_s: None,
            skipped: Some(why.into()),
            round: 1,
        }
    }
}

/// The tutorial, run N times as its own process (`xtask e2e --mesh local`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tutorial {
    pub runs: Vec<TutorialRun>,
    /// Median of the runs' process wall times.
    pub median_wall_s: Option<f64>,
    /// Median of the session's own wall time (`report.json`'s `wall_time_s`).
    pub median_session_s: Option<f64>,
    /// Median of the runs' peak RSS (VmHWM of the harness process), KiB.
    pub median_peak_rss_kib: Option<u64>,
    pub max_peak_rss_kib: Option<u64>,
    pub passed: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TutorialRun {
    pub wall_s: f64,
    pub exit_code: Option<i32>,
    pub peak_rss_kib: Option<u64>,
    pub report_dir: PathBuf,
    pub session_s: Option<f64>,
}

impl Tutorial {
    pub fn from_runs(runs: Vec<TutorialRun>) -> Self {
        let walls: Vec<f64> = runs.iter().map(|r| r.wall_s).collect();
        let sessions: Vec<f64> = runs.iter().filter_map(|r| r.session_s).collect();
        let rss: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.peak_rss_kib.map(|k| k as f64))
            .collect();
        Tutorial {
            median_wall_s: median(&walls),
            median_session_s: median(&sessions),
            median_peak_rss_kib: median(&rss).map(|k| k.round() as u64),
            max_peak_rss_kib: runs.iter().filter_map(|r| r.peak_rss_kib).max(),
            passed: runs.iter().filter(|r| r.exit_code == Some(0)).count(),
            runs,
        }
    }
}

/// Requests per verdict of one stage's split tests (or of all tests: `stage` = `all tests`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictRow {
    pub stage: String,
    /// Tests in the row per run (entry points × classes).
    pub tests: usize,
    /// The plan's expected requests per verdict under a correct mesh.
    pub plan_expected: f64,
    /// The fixed design's requests per verdict for the same budget.
    pub fixed: f64,
    /// `plan_expected / fixed`.
    pub plan_ratio: Option<f64>,
    /// Mean judged requests per verdict over the measured runs (`None`: no run measured).
    pub measured: Option<f64>,
    /// `measured / fixed`.
    pub measured_ratio: Option<f64>,
    /// Verdicts the mean is over.
    pub measured_verdicts: usize,
}

/// `a / b`, when `b` is not zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The requests per verdict of each split stage and of all tests: the plan's expected and the
/// fixed design's, and the mean over the runs' reports.
pub fn verdict_rows(plans: &TestPlans, names: &[String], reports: &[Report]) -> Vec<VerdictRow> {
    let per_test = |plan: &TestPlan| match plan {
        TestPlan::Sequential(s) => (s.expected_requests.at_p0, s.fixed_requests as f64),
        other => (other.expected_trials(), other.max_trials() as f64),
    };
    let mut rows = Vec::new();
    let (mut all_plan, mut all_fixed, mut all_tests) = (0.0, 0.0, 0);
    let (mut all_measured, mut all_count) = (0.0, 0usize);
    for (stage, classes) in plans.plans.iter().enumerate() {
        let entries: Vec<_> = reports
            .iter()
            .flat_map(|r| r.stages.iter().filter(|s| s.index == stage))
            .flat_map(|s| s.entries.iter())
            .collect();
        let tests_per_class = entries
            .iter()
            .map(|e| e.entry)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            .max(1);
        let (mut plan_sum, mut fixed_sum) = (0.0, 0.0);
        for plan in classes {
            let (e, f) = per_test(plan);
            plan_sum += e * tests_per_class as f64;
            fixed_sum += f * tests_per_class as f64;
        }
        let tests = classes.len() * tests_per_class;
        let measured_sum: f64 = entries.iter().map(|e| e.trials as f64).sum();
        all_plan += plan_sum;
        all_fixed += fixed_sum;
        all_tests += tests;
        all_measured += measured_sum;
        all_count += entries.len();
        if classes.iter().any(TestPlan::can_false_fail) {
            let name = names
                .get(stage)
                .cloned()
                .unwrap_or_else(|| stage.to_string());
            rows.push(row(
                name,
                tests,
                plan_sum / tests as f64,
                fixed_sum / tests as f64,
                measured_sum,
                entries.len(),
            ));
        }
    }
    if all_tests > 0 {
        rows.push(row(
            "all tests".into(),
            all_tests,
            all_plan / all_tests as f64,
            all_fixed / all_tests as f64,
            all_measured,
            all_count,
        ));
    }
    rows
}

/// A row from its sums: `measured_sum` is the judged requests of `verdicts` verdicts.
pub fn row(
    stage: String,
    tests: usize,
    plan_expected: f64,
    fixed: f64,
    measured_sum: f64,
    verdicts: usize,
) -> VerdictRow {
    let measured = (verdicts > 0).then(|| measured_sum / verdicts as f64);
    VerdictRow {
        stage,
        tests,
        plan_expected,
        fixed,
        plan_ratio: ratio(plan_expected, fixed),
        measured,
        measured_ratio: measured.and_then(|m| ratio(m, fixed)),
        measured_verdicts: verdicts,
    }
}

impl Bench {
    /// Fills the ratios from the measured numbers.
    pub fn finish(mut self) -> Self {
        let rate_of = |tool: &str, round: usize| {
            self.through_mesh
                .iter()
                .find(|r| r.tool == tool && r.round == round)
                .and_then(|r| r.per_s)
        };
        self.harness_vs_wrk_rounds = self
            .rounds()
            .into_iter()
            .filter_map(|round| ratio(rate_of(HARNESS, round)?, rate_of("wrk", round)?))
            .collect();
        self.harness_vs_wrk = median(&self.harness_vs_wrk_rounds);
        self
    }

    /// The rounds of the rates through the mesh, in order.
    pub fn rounds(&self) -> Vec<usize> {
        let rounds: std::collections::BTreeSet<usize> =
            self.through_mesh.iter().map(|r| r.round).collect();
        rounds.into_iter().collect()
    }

    /// Writes `bench.json` and `bench.md` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join(BENCH_JSON);
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", json.display()))?;
        let md = dir.join(BENCH_MD);
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("writing {}", md.display()))?;
        Ok(vec![json, md])
    }

    /// The Markdown table: one line per figure, rendered from this struct's numbers only.
    pub fn markdown(&self) -> String {
        let c = self.concurrency;
        let mut out = format!(
            "Bench of {} on {} cores ({}{}), binary from `target/{}/`{}; concurrency {c}, {} s per rate.\n\n",
            self.date,
            self.machine.cores,
            self.machine.cpu,
            self.machine
                .load_1m
                .map(|l| format!(", load average {l:.1}"))
                .unwrap_or_default(),
            self.machine.profile,
            if self.machine.debug_assertions {
                " with debug assertions"
            } else {
                ""
            },
            fmt_num(self.duration_s, 1),
        );
        out.push_str("| figure | value |\n|---|---|\n");
        let mut line = |what: String, value: String| {
            out.push_str(&format!("| {what} | {value} |\n"));
        };
        let rounds = self.rounds().len();
        for r in &self.through_mesh {
            let round = if rounds > 1 {
                format!(", round {}", r.round)
            } else {
                String::new()
            };
            line(
                format!("{} through Envoy ({}), c = {c}{round}", r.tool, r.target),
                rate_cell(r),
            );
        }
        if let Some(x) = self.harness_vs_wrk {
            let each = &self.harness_vs_wrk_rounds;
            if each.len() > 1 {
                let (lo, hi) = each
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                        (lo.min(r), hi.max(r))
                    });
                line(
                    format!(
                        "harness / wrk, same mesh and concurrency, median of {} rounds (min–max)",
                        each.len()
                    ),
                    format!("{} ({}–{})", fmt_ratio(x), fmt_ratio(lo), fmt_ratio(hi)),
                );
            } else {
                line(
                    "harness / wrk, same mesh and concurrency".into(),
                    fmt_ratio(x),
                );
            }
        }
        for r in &self.backends {
            line(
                format!("{} alone ({}), c = {c}", r.target, r.tool),
                rate_cell(r),
            );
        }
        let t = &self.tutorial;
        let n = t.runs.len();
        line(
            format!("tutorial wall (process), median of {n}"),
            t.median_wall_s
                .map(|s| format!("{} s", fmt_num(s, 2)))
                .unwrap_or_else(|| "not run".into()),
        );
        if let Some(s) = t.median_session_s {
            line(
                format!("tutorial session (report.json), median of {n}"),
                format!("{} s", fmt_num(s, 2)),
            );
        }
        if n > 0 {
            line(
                "tutorial runs passed".into(),
                format!("{} of {n}", t.passed),
            );
        }
        if let (Some(m), Some(max)) = (t.median_peak_rss_kib, t.max_peak_rss_kib) {
            line(
                "harness peak RSS (VmHWM), median / max".into(),
                format!("{} / {} MiB", fmt_mib(m), fmt_mib(max)),
            );
        }
        for v in &self.verdicts {
            line(
                format!(
                    "requests per verdict, {} ({} tests): plan E[N] / fixed",
                    v.stage, v.tests
                ),
                format!(
                    "{} / {} = {}",
                    fmt_num(v.plan_expected, 0),
                    fmt_num(v.fixed, 0),
                    v.plan_ratio.map(fmt_ratio).unwrap_or_else(|| "–".into())
                ),
            );
            if let Some(m) = v.measured {
                line(
                    format!(
                        "requests per verdict, {}: measured mean ({} verdicts) / fixed",
                        v.stage, v.measured_verdicts
                    ),
                    format!(
                        "{} / {} = {}",
                        fmt_num(m, 0),
                        fmt_num(v.fixed, 0),
                        v.measured_ratio
                            .map(fmt_ratio)
                            .unwrap_or_else(|| "–".into())
                    ),
                );
            }
        }
        for note in &self.notes {
            out.push_str(&format!("\n- {note}"));
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

fn rate_cell(r: &Rate) -> String {
    match (r.per_s, &r.skipped) {
        (Some(x), _) => {
            let errors = if r.errors > 0 {
                format!(", {} errors", r.errors)
            } else {
                String::new()
            };
            format!("{} req/s ({} requests{errors})", fmt_num(x, 0), r.requests)
        }
        (None, Some(why)) => format!("skipped: {why}"),
        (None, None) => "–".into(),
    }
}

pub fn fmt_num(x: f64, decimals: usize) -> String {
    format!("{x:.decimals$}")
}

pub fn fmt_ratio(x: f64) -> String {
    format!("{x:.2}")
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The name of the harness's own prober in [`Bench::through_mesh`].
pub const HARNESS: &str = "harness prober";

/// Where the local mesh listens, read from what it wrote and from Envoy's admin interface.
#[derive(Debug, Clone)]
pub struct MeshAddresses {
    pub entries: BTreeMap<EntryPoint, (SocketAddr, String)>,
    /// Each subset's backend.
    pub backends: Vec<(String, SocketAddr)>,
}

impl MeshAddresses {
    /// `work_dir` is the local mesh's folder (`<report dir>/local-mesh`), after its set-up.
    pub async fn read(routing: &Routing, work_dir: &Path) -> anyhow::Result<Self> {
        let admin_file = work_dir.join("envoy-admin-address");
        let admin = std::fs::read_to_string(&admin_file)
            .with_context(|| format!("reading {}", admin_file.display()))?;
        let url = format!("http://{}/listeners?format=json", admin.trim());
        let json: serde_json::Value = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(&url)
            .send()
            .await?
            .json()
            .await
            .with_context(|| format!("reading {url}"))?;
        let entries = crate::local_mesh::listener_addresses(&json)
            .into_iter()
            .map(|(e, addr)| (e, (addr, envoy_config::authority(routing, e))))
            .collect();
        let file = envoy_config::cluster_dir(work_dir).join(envoy_config::CLUSTER_FILE);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let backends = backend_addresses(routing, &serde_json::from_str(&text)?);
        Ok(MeshAddresses { entries, backends })
    }
}

/// Each subset's address in a clusters `DiscoveryResponse` of the local mesh.
pub fn backend_addresses(
    routing: &Routing,
    clusters: &serde_json::Value,
) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    for subset in &routing.subsets {
        let name = envoy_config::cluster_name(routing.port, &subset.name, &routing.host);
        let cluster = clusters["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name.as_str());
        let sa = cluster.map(|c| {
            &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        });
        if let Some(sa) = sa
            && let (Some(ip), Some(port)) = (sa["address"].as_str(), sa["port_value"].as_u64())
            && let Ok(addr) = format!("{ip}:{port}").parse()
        {
            out.push((subset.name.clone(), addr));
        }
    }
    out
}

/// The harness's prober against `target` for `duration` at the probe's concurrency: every
/// answer counts, failed ones as errors.
pub async fn prober_rate(
    target: Arc<dyn Target>,
    probe: &Probe,
    duration: Duration,
    label: &str,
) -> anyhow::Result<Rate> {
    let (sink, mut rx) = tokio::sync::mpsc::unbounded_channel::<crate::prober::Sample>();
    let stop = CancellationToken::new();
    let counter = tokio::spawn(async move {
        let (mut n, mut errors) = (0u64, 0u64);
        while let Some(sample) = rx.recv().await {
            n += 1;
            errors += u64::from(!sample.is_ok());
        }
        (n, errors)
    });
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        })
    };
    let t0 = Instant::now();
    target.stream(probe, &stop, &sink).await?;
    let seconds = t0.elapsed().as_secs_f64();
    timer.abort();
    drop(sink);
    let (n, errors) = counter.await?;
    Ok(Rate::measured(HARNESS, label, n, errors, seconds))
}

/// A load generator's rate, parsed from its text output (wrk's and oha's both print
/// `Requests/sec:`).
pub fn load_tool_rate(
    tool: &str,
    program: &Path,
    args: &[String],
    label: &str,
    duration: Duration,
) -> Rate {
    let out = match Command::new(program).args(args).output() {
        Ok(out) => out,
        Err(e) => return Rate::skipped(tool, label, format!("{}: {e}", program.display())),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_load_output(&text) {
        Some((requests, errors, seconds)) => {
            let seconds = seconds.unwrap_or(duration.as_secs_f64());
            Rate::measured(tool, label, requests, errors, seconds)
        }
        None => Rate::skipped(
            tool,
            label,
            format!(
                "no rate in its output (exit {:?}): {}{}",
                out.status.code(),
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ),
    }
}

/// `(requests, errors, seconds)` from wrk's or oha's text output. wrk: `N requests in 5.00s`,
/// `Non-2xx or 3xx responses: E`, `Socket errors: connect a, read b, write c, timeout d`.
/// oha: `Requests/sec:` and `Total:` seconds, status lines `[200] N responses`.
pub fn parse_load_output(text: &str) -> Option<(u64, u64, Option<f64>)> {
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut requests = None;
    let mut seconds = None;
    let mut errors = 0u64;
    let mut rate = None;
    let mut total = None;
    let mut ok_statuses = 0u64;
    for line in text.lines() {
        let w = words(line);
        let t = line.trim();
        if w.len() >= 4 && w[1] == "requests" && w[2] == "in" {
            requests = w[0].parse::<u64>().ok();
            seconds = parse_seconds(w[3].trim_end_matches(','));
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(rest) = t.strip_prefix("Requests/sec:") {
            rate = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = t.strip_prefix("Total:") {
            total = parse_seconds(rest.split_whitespace().next().unwrap_or(""));
        } else if t.starts_with('[') && t.ends_with("responses") && w.len() >= 3 {
            let code: u16 = w[0].trim_matches(['[', ']']).parse().unwrap_or(0);
            let count: u64 = w[1].parse().unwrap_or(0);
            if (200..400).contains(&code) {
                ok_statuses += count;
            } else {
                errors += count;
            }
        }
    }
    match (requests, rate, total) {
        (Some(n), _, _) => Some((n, errors, seconds)),
        // oha: the responses by status, over the total time.
        (None, Some(r), Some(s)) => {
            let n = if ok_statuses + errors > 0 {
                ok_statuses + errors
            } else {
                (r * s).round() as u64
            };
            Some((n, errors, Some(s)))
        }
        _ => None,
    }
}

fn parse_seconds(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|x| x / 1000.0);
    }
    if let Some(m) = t.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|x| x * 60.0);
    }
    t.trim_end_matches(" secs")
        .trim_end_matches("secs")
        .trim_end_matches('s')
        .parse()
        .ok()
}

/// wrk's arguments for `duration` at `concurrency` (at most 2 threads: this is a 2-core box).
pub fn wrk_args(url: &str, host: &str, concurrency: usize, duration: Duration) -> Vec<String> {
    let threads = concurrency.clamp(1, 2);
    vec![
        "-t".into(),
        threads.to_string(),
        "-c".into(),
        concurrency.max(1).to_string(),
        "-d".into(),
        format!("{}s", duration.as_secs().max(1)),
        "-H".into(),
        format!("Host: {host}"),
        url.into(),
    ]
}

pub fn oha_args(url: &str, host: &str, concurrency: usize, duration: Duration) -> Vec<String> {
    vec![
        "--no-tui".into(),
        "-z".into(),
        format!("{}s", duration.as_secs().max(1)),
        "-c".into(),
        concurrency.max(1).to_string(),
        "-H".into(),
        format!("Host: {host}"),
        url.into(),
    ]
}

/// `program` on `PATH`, if it is there.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| crate::tools::executable(p))
    })
}

/// Runs `command` to its end, reading its peak RSS (VmHWM) from `/proc` while it runs.
/// Returns the exit code, the wall time and the last VmHWM read, in KiB.
pub fn run_measured(mut command: Command) -> anyhow::Result<(Option<i32>, f64, Option<u64>)> {
    let t0 = Instant::now();
    let mut child = command.spawn().context("starting the tutorial run")?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = None;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            peak = Some(peak.map_or(kib, |p: u64| p.max(kib)));
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok((status.code(), t0.elapsed().as_secs_f64(), peak))
}

/// `VmHWM:` of a `/proc/<pid>/status` text, in KiB.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// wrk from PATH; when missing, installed with apt-get if allowed and running as root.
pub fn find_wrk(install: bool, notes: &mut Vec<String>) -> Option<PathBuf> {
    if let Some(p) = which("wrk") {
        return Some(p);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if install && root {
        println!("bench: wrk is missing; installing Debian's package (apt-get install -y wrk)");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !apt(&["install", "-y", "-qq", "wrk"]) {
            let _ = apt(&["update", "-qq"]);
            apt(&["install", "-y", "-qq", "wrk"]);
        }
        if let Some(p) = which("wrk") {
            return Some(p);
        }
    }
    notes.push(format!(
        "wrk is not installed{}: its rates are skipped and the backends are measured with the harness's prober; install it with `apt-get install -y wrk` (as root)",
        if install && root { " (apt-get failed)" } else { "" }
    ));
    None
}
