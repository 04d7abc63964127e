//! The stage walk: the same for every mesh.
//!
//! For each stage: apply its VirtualService (stamped with the stage), wait until every proxy
//! routes with its weights, then sample every entry point at the same time, each traffic class
//! as its own test, until each verdict is decided. Each result is logged the moment it is
//! known; the report is written by the session, also when the walk stops early.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::input_error::{InputError, InputErrors};
use crate::mesh::Mesh;
use crate::prober::{Probe, Sample, Target};
use crate::report::{EntryReport, Report, ResultsLog, StageReport};
use crate::routing::{EntryPoint, Routing, Staged};
use crate::scenario::{Identify, Scenario, Stage};
use crate::steps::Step;
use crate::tally::{PerSubset, Tally, TestContext};
use crate::verdict::{self, TestPlan, Verdict};

/// Bounds and places of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub report_dir: PathBuf,
    /// Bound on waiting for the proxies to route with a stage's weights.
    pub converge_timeout: Duration,
    /// Bound on sampling one test (a class on an entry point).
    pub sample_timeout: Duration,
    /// Bound on the whole teardown (stopping processes, deleting what the run created).
    pub teardown_timeout: Duration,
}

impl RunOptions {
    pub fn new(report_dir: PathBuf) -> Self {
        Self {
            report_dir,
            converge_timeout: Duration::from_secs(60),
            sample_timeout: Duration::from_secs(600),
            teardown_timeout: Duration::from_secs(300),
        }
    }
}

/// Watches a walk as it goes: progress bars, the demo's narration. All methods default to
/// nothing; the sampling ones may be called from several entry points at once.
pub trait Observer: Send + Sync {
    /// A step of the set-up or the teardown starts.
    fn step_started(&self, _step: &Step) {}
    /// It ended, after `elapsed`; `error` says why it failed.
    fn step_done(&self, _step: &Step, _elapsed: Duration, _error: Option<&str>) {}
    /// The set-up is done: the mesh is up.
    fn mesh_ready(&self, _mesh: &str, _elapsed: Duration) {}
    fn stage_started(&self, _stage: &Stage, _before: &Staged, _after: &Staged) {}
    fn converged(&self, _stage: &Stage, _elapsed: Duration) {}
    fn sampling_started(&self, _stage: &Stage, _entry: EntryPoint, _class: &str, _plan: &TestPlan) {
    }
    fn sample(&self, _stage: &Stage, _entry: EntryPoint, _class: &str, _sample: &Sample) {}
    fn entry_done(&self, _stage: &Stage, _result: &EntryReport) {}
    fn stage_done(&self, _stage: &StageReport) {}
}

/// The plan of every test, by stage and class, made before anything starts.
#[derive(Debug, Clone)]
pub struct TestPlans {
    /// `[stage][class]`, classes in the scenario's order.
    pub plans: Vec<Vec<TestPlan>>,
    /// α of each test that can fail a correct mesh.
    pub alpha_test: f64,
}

/// Plans every test of the scenario; a budget that needs too many requests (or too much
/// planning) is bad input, with the figures and the fix.
pub fn plan_tests(scenario: &Scenario, entry_points: usize) -> Result<TestPlans, InputErrors> {
    let alpha_test = scenario.budget.alpha / scenario.tests_in_run(entry_points) as f64;
    let mut errors = Vec::new();
    let mut plans = Vec::new();
    for stage in &scenario.stages {
        let mut row = Vec::new();
        for class in &scenario.classes {
            let share = stage.class_share(&class.name, &scenario.canary);
            match verdict::plan_test(
                share,
                &scenario.budget,
                alpha_test,
                scenario.design,
                scenario.look_every,
            ) {
                Ok(plan) => row.push(plan),
                Err(e) => errors.push(InputError::new(
                    &scenario.file,
                    format!("stages[{}] (class {})", stage.index, class.name),
                    format!(
                        "cannot plan the test of a {:.1} % canary share: {e}",
                        share * 100.0
                    ),
                    "use a larger `statistics.delta` (or a larger alpha or beta)",
                )),
            }
        }
        plans.push(row);
    }
    if errors.is_empty() {
        Ok(TestPlans { plans, alpha_test })
    } else {
        Err(InputErrors(errors))
    }
}

/// The report of a run before its first stage: what was planned, nothing measured yet.
pub fn new_report(scenario: &Scenario, routing: &Routing, mesh: &str) -> Report {
    let entries = routing.entry_points();
    Report {
        scenario: scenario.name.clone(),
        scenario_file: scenario.file.clone(),
        description: scenario.description.clone(),
        mesh: mesh.to_string(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        passed: false,
        aborted: None,
        budget: scenario.budget,
        design: scenario.design,
        tests_in_run: scenario.tests_in_run(entries.len()),
        entry_points: entries,
        subsets: routing.subsets.iter().map(|s| s.name.clone()).collect(),
        versions: routing
            .subsets
            .iter()
            .map(|s| (s.name.clone(), s.backend_version().to_string()))
            .collect(),
        setup: Vec::new(),
        cluster_changes: Default::default(),
        stages: Vec::new(),
        wall_time_s: 0.0,
    }
}

/// The stage walk of one run.
pub struct Walk<'a> {
    pub scenario: &'a Scenario,
    pub routing: &'a Routing,
    pub plans: &'a TestPlans,
    pub options: &'a RunOptions,
    pub observer: &'a dyn Observer,
    /// When the run began: timelines count from it.
    pub started: Instant,
}

/// What sampling one entry point at one stage gave.
struct EntryResult {
    reports: Vec<EntryReport>,
    /// Per class, the per-subset samples (for the gates).
    _per_subset: Vec<BTreeMap<String, PerSubset>>,
}

impl Walk<'_> {
    /// Walks every stage of the scenario on the mesh, adding each finished stage to `report`
    /// (so a walk that is cancelled leaves the stages it finished). A mesh failure ends the
    /// walk early with an error.
    pub async fn run(
        &self,
        mesh: &mut dyn Mesh,
        report: &mut Report,
        log: &mut ResultsLog,
    ) -> anyhow::Result<()> {
        let mut current = self
            .routing
            .staged(&self.routing.manifest_weights(), "manifests");
        for (applied, stage) in self.scenario.stages.iter().enumerate() {
            let stamp = format!("{}.{}", stage.index + 1, applied + 1);
            let staged = self.routing.staged(&stage.weights, &stamp);
            let stage_report = self
                .walk_stage(mesh, stage, &current, &staged, log)
                .await
                .with_context(|| format!("stage `{}`", stage.name))?;
            self.observer.stage_done(&stage_report);
            report.stages.push(stage_report);
            current = staged;
        }
        Ok(())
    }

    async fn walk_stage(
        &self,
        mesh: &mut dyn Mesh,
        stage: &Stage,
        before: &Staged,
        staged: &Staged,
        log: &mut ResultsLog,
    ) -> anyhow::Result<StageReport> {
        let scenario = self.scenario;
        self.observer.stage_started(stage, before, staged);
        tracing::info!(
            "stage {}/{} `{}`: applying weights {:?}",
            stage.index + 1,
            scenario.stages.len(),
            stage.name,
            stage.weights
        );
        let t0 = Instant::now();
        mesh.apply(staged)
            .await
            .context("applying the stage's VirtualService")?;
        mesh.await_weights(&stage.weights, self.options.converge_timeout)
            .await
            .context("waiting for the proxies to route with the stage's weights")?;
        let converge = t0.elapsed();
        self.observer.converged(stage, converge);
        tracing::info!(
            "proxies route with the new weights after {:.2} s",
            converge.as_secs_f64()
        );
        let mut targets = Vec::new();
        for entry in self.routing.entry_points() {
            targets.push((entry, mesh.target(entry)?));
        }
        // Every entry point at once, each with its own concurrency: a stage costs the slower
        // one, not the sum.
        let sampled = futures::future::join_all(
            targets
                .iter()
                .map(|(entry, target)| self.sample_entry(*entry, target.clone(), stage, staged)),
        )
        .await;
        let mut results = Vec::new();
        for result in sampled {
            for r in result?.reports {
                tracing::info!(
                    "{} on {} ({}): canary {:.1} % (expected {:.1} %) in {} trials: {}",
                    stage.name,
                    r.entry,
                    r.class,
                    r.observed_share * 100.0,
                    r.expected_share * 100.0,
                    r.trials,
                    if r.passed { "pass" } else { "FAIL" }
                );
                log.append(&r)?;
                results.push(r);
            }
        }
        Ok(StageReport {
            index: stage.index,
            name: stage.name.clone(),
            weights: stage.weights.clone(),
            expect: stage.expect.clone(),
            expected_share: stage.expected_share(&scenario.canary),
            converge_s: converge.as_secs_f64(),
            stamp: staged.stamp.clone(),
            passed: results.iter().all(|r| r.passed),
            entries: results,
        })
    }

    /// Every class of the scenario on one entry point, one after the other.
    async fn sample_entry(
        &self,
        entry: EntryPoint,
        target: Arc<dyn Target>,
        stage: &Stage,
        staged: &Staged,
    ) -> anyhow::Result<EntryResult> {
        let scenario = self.scenario;
        let mut reports = Vec::new();
        let mut per_subset = Vec::new();
        for (c, class) in scenario.classes.iter().enumerate() {
            let plan = self.plans.plans[stage.index][c].clone();
            let max_trials = plan.max_trials();
            // Room for the unroutable failures and stale answers the scenario tolerates.
            let max_requests = max_trials
                + (max_trials as f64 * scenario.max_error_rate * 2.0).ceil() as u64
                + 10 * scenario.concurrency as u64;
            self.observer
                .sampling_started(stage, entry, &class.name, &plan);
            let probe = Probe {
                class: Arc::new(class.clone()),
                identify: scenario.identify.clone(),
                concurrency: scenario.concurrency,
                max_requests,
            };
            let expected_versions = expected_versions(scenario.identify.as_ref(), self.routing);
            let mut tally = Tally::new(
                TestContext {
                    routing: self.routing,
                    stage,
                    entry,
                    class: &class.name,
                    target: target.describe(),
                    stamp: &staged.stamp,
                    expected_versions,
                    started_s: self.started.elapsed().as_secs_f64(),
                    max_error_rate: scenario.max_error_rate,
                },
                Verdict::new(plan),
            );
            let sampling = Instant::now();
            let stop = CancellationToken::new();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
            let produce = async {
                let result = target.stream(&probe, &stop, &tx).await;
                drop(tx);
                result
            };
            let consume = async {
                while let Some(sample) = rx.recv().await {
                    self.observer.sample(stage, entry, &class.name, &sample);
                    if tally.take(sample) {
                        stop.cancel();
                    }
                }
            };
            let bounded = tokio::time::timeout(self.options.sample_timeout, async {
                tokio::join!(produce, consume).0
            });
            match bounded.await {
                Ok(result) => result.with_context(|| {
                    format!(
                        "sampling {entry} ({}, class {})",
                        target.describe(),
                        class.name
                    )
                })?,
                Err(_) => anyhow::bail!(
                    "sampling {entry} ({}, class {}) was not decided within {:?}",
                    target.describe(),
                    class.name,
                    self.options.sample_timeout
                ),
            }
            let (report, per) = tally.finish(sampling.elapsed().as_secs_f64());
            self.observer.entry_done(stage, &report);
            reports.push(report);
            per_subset.push(per);
        }
        Ok(EntryResult {
            reports,
            _per_subset: per_subset,
        })
    }
}

/// The versions a scenario's answers must report, per subset (none without `identify`).
pub fn expected_versions(
    identify: Option<&Identify>,
    routing: &Routing,
) -> Option<BTreeMap<String, String>> {
    identify.map(|_| {
        routing
            .subsets
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.version.clone()?)))
            .collect()
    })
}
