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
use crate::load::{self, LoadSpec, Transitions};
use crate::mesh::{Mesh, Rollout};
use crate::prober::{Probe, Sample, Target};
use crate::report::{
    EntryLoad, EntryReport, Report, ResultsLog, RollbackReport, StageReport, StepReport,
};
use crate::routing::{EntryPoint, Routing, Staged};
use crate::scenario::{Identify, OnFailure, Scenario, Stage};
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
    /// A stage starts rolling out a new build of a subset.
    fn rolling_out(&self, _stage: &Stage, _rollout: &Rollout) {}
    /// A failed stage was rolled back, and the rollback measured.
    fn rolled_back(&self, _rollback: &RollbackReport) {}
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
        rollbacks: Vec::new(),
        skipped_stages: Vec::new(),
        expected_rollback: scenario.expect_rollback.clone(),
        problems: Vec::new(),
        background_load: Vec::new(),
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

/// What the walk carries from stage to stage besides the report.
struct Progress<'l> {
    log: &'l mut ResultsLog,
    /// The background load's marks of each transition.
    transitions: Transitions,
    /// The version each subset's answers must report (`None` without `identify`); a rollout
    /// changes it.
    versions: Option<BTreeMap<String, String>>,
}

/// What sampling one entry point at one stage gave.
struct EntryResult {
    reports: Vec<EntryReport>,
    /// Per class, the per-subset samples (for the gates).
    per_subset: Vec<BTreeMap<String, PerSubset>>,
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
        let transitions = Transitions::new();
        let loads = self.start_load(mesh, &transitions)?;
        let margin = Duration::from_secs_f64(self.scenario.load.margin_s);
        if !loads.is_empty() && !margin.is_zero() {
            tracing::info!("background load: {margin:?} before the first stage");
            tokio::time::sleep(margin).await;
        }
        let mut progress = Progress {
            log,
            transitions: transitions.clone(),
            versions: expected_versions(self.scenario.identify.as_ref(), self.routing),
        };
        let walked = self.walk(mesh, report, &mut progress).await;
        if !loads.is_empty() && !margin.is_zero() {
            tracing::info!("background load: {margin:?} after the last stage");
            tokio::time::sleep(margin).await;
        }
        // The load's verdicts count also when the walk stopped early: what it dropped happened.
        for (entry, started_s, handle) in loads {
            let load = handle
                .stop()
                .await
                .with_context(|| format!("stopping the background load on {entry}"))?;
            let max_errors = self.scenario.max_transition_errors;
            let verdicts = load::judge_transitions(&load, max_errors);
            for v in verdicts.iter().filter(|v| !v.passed) {
                tracing::error!("background load on {entry}: {}", v.message);
                report
                    .problems
                    .push(format!("background load on {entry}: {}", v.message));
            }
            report.background_load.push(EntryLoad {
                entry,
                started_s,
                load,
                transitions: verdicts,
                max_errors,
            });
        }
        walked
    }

    /// Starts the background load on every entry point that carries one: requests of the
    /// class that follows the weights (the first class without its own expectation).
    fn start_load(
        &self,
        mesh: &dyn Mesh,
        transitions: &Transitions,
    ) -> anyhow::Result<Vec<(EntryPoint, f64, load::LoadHandle)>> {
        let scenario = self.scenario;
        let mut loads = Vec::new();
        if scenario.load.rate <= 0.0 {
            return Ok(loads);
        }
        let class = scenario
            .classes
            .iter()
            .find(|c| c.expect.is_none())
            .unwrap_or(&scenario.classes[0]);
        for entry in self.routing.entry_points() {
            let Some(target) = mesh.load_target(entry)? else {
                continue;
            };
            let mut spec = LoadSpec::new(Arc::new(class.clone()));
            spec.rate_per_s = scenario.load.rate;
            let started_s = self.started.elapsed().as_secs_f64();
            loads.push((
                entry,
                started_s,
                load::start(target, spec, transitions.clone())?,
            ));
        }
        Ok(loads)
    }

    async fn walk(
        &self,
        mesh: &mut dyn Mesh,
        report: &mut Report,
        progress: &mut Progress<'_>,
    ) -> anyhow::Result<()> {
        let stages = &self.scenario.stages;
        let mut current = self
            .routing
            .staged(&self.routing.manifest_weights(), "manifests");
        let mut applied = 0;
        let mut i = 0;
        while i < stages.len() {
            let stage = &stages[i];
            applied += 1;
            let stamp = format!("{}.{}", stage.index + 1, applied);
            let staged = self.routing.staged(&stage.weights, &stamp);
            let (rollouts, rollout_steps) = self
                .roll_out(mesh, stage, progress)
                .await
                .with_context(|| format!("stage `{}`: rolling out its new builds", stage.name))?;
            let mut stage_report = self
                .walk_stage(mesh, stage, &current, &staged, progress)
                .await
                .with_context(|| format!("stage `{}`", stage.name))?;
            stage_report.rollouts = rollouts;
            stage_report.rollout_steps = rollout_steps;
            self.observer.stage_done(&stage_report);
            let failed = !stage_report.passed;
            let because = stage_report.failures();
            let failed_gates = stage_report.failed_gates();
            report.stages.push(stage_report);
            current = staged;
            if failed && self.scenario.on_failure == OnFailure::Rollback {
                applied += 1;
                let stamp = format!("{}.{}.rollback", stage.index + 1, applied);
                let staged = self.routing.staged(&self.scenario.rollback_weights, &stamp);
                let mut rollback = self
                    .roll_back(mesh, stage, &staged, progress)
                    .await
                    .with_context(|| format!("rolling back after stage `{}`", stage.name))?;
                current = staged;
                rollback.because = because;
                rollback.failed_gates = failed_gates;
                // Resume at the next stage that ships a new canary build; nothing else would
                // change what just failed.
                let resume = stages[i + 1..]
                    .iter()
                    .position(|s| s.images.contains_key(&self.scenario.canary))
                    .map(|k| i + 1 + k);
                let next = resume.unwrap_or(stages.len());
                report.skipped_stages.extend(i + 1..next);
                rollback.resumed_at = resume;
                tracing::warn!(
                    "rolled back after stage {} `{}` because {}; {}",
                    stage.index + 1,
                    stage.name,
                    rollback.because,
                    match resume {
                        Some(r) => format!("resuming at stage {} `{}`", r + 1, stages[r].name),
                        None => "no later stage ships a new canary build: the walk ends".into(),
                    }
                );
                self.observer.rolled_back(&rollback);
                report.rollbacks.push(rollback);
                i = next;
                continue;
            }
            i += 1;
        }
        Ok(())
    }

    /// Rolls out the stage's new builds, one subset after the other, each a transition of the
    /// background load; from then on the subset's answers must report the new version.
    async fn roll_out(
        &self,
        mesh: &mut dyn Mesh,
        stage: &Stage,
        progress: &mut Progress<'_>,
    ) -> anyhow::Result<(Vec<String>, Vec<StepReport>)> {
        let mut done = Vec::new();
        let mut executed = Vec::new();
        for rollout in crate::mesh::stage_rollouts(stage) {
            let subset = &rollout.subset;
            let what = rollout.describe();
            tracing::info!("stage {} `{}`: {what}", stage.index + 1, stage.name);
            self.observer.rolling_out(stage, &rollout);
            progress.transitions.mark(&what);
            for step in mesh.rollout_steps(&rollout, self.options.converge_timeout)? {
                self.observer.step_started(&step);
                let t0 = Instant::now();
                let result = mesh.execute(&step).await;
                let error = result.as_ref().err().map(|e| format!("{e:#}"));
                self.observer
                    .step_done(&step, t0.elapsed(), error.as_deref());
                executed.push(StepReport {
                    step: step.to_string(),
                    seconds: t0.elapsed().as_secs_f64(),
                    error,
                });
                result.with_context(|| step.to_string().trim().to_string())?;
            }
            progress.transitions.settled();
            if let (Some(versions), Some(version)) = (progress.versions.as_mut(), rollout.version())
            {
                versions.insert(subset.clone(), version);
            }
            done.push(what);
        }
        Ok((done, executed))
    }

    /// Applies the rollback weights after a failed stage and proves, with a zero-leak test
    /// per entry point and class, that the traffic left the canary.
    async fn roll_back(
        &self,
        mesh: &mut dyn Mesh,
        failed: &Stage,
        staged: &Staged,
        progress: &mut Progress<'_>,
    ) -> anyhow::Result<RollbackReport> {
        let scenario = self.scenario;
        let weights = scenario.rollback_weights.clone();
        let stage = Stage {
            index: failed.index,
            name: format!("rollback after {}", failed.name),
            weights: weights.clone(),
            expect: weights.clone(),
            class_expect: scenario
                .classes
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        c.expect.clone().unwrap_or_else(|| weights.clone()),
                    )
                })
                .collect(),
            images: Default::default(),
            env: Default::default(),
            backends: Default::default(),
        };
        // Only what a rollback can prove: classes now routed to one subset alone.
        let plans: Vec<(usize, TestPlan)> = scenario
            .classes
            .iter()
            .enumerate()
            .filter_map(|(c, class)| {
                let share = stage.class_share(&class.name, &scenario.canary);
                (share == 0.0 || share == 1.0).then(|| {
                    verdict::plan_test(
                        share,
                        &scenario.budget,
                        self.plans.alpha_test,
                        scenario.design,
                        scenario.look_every,
                    )
                    .map(|p| (c, p))
                })
            })
            .collect::<Result<_, _>>()
            .context("planning the rollback's zero-leak tests")?;
        progress.transitions.mark(&format!(
            "rollback after stage {} ({})",
            failed.index + 1,
            failed.name
        ));
        let (converge, results, _) = self
            .apply_and_sample(mesh, &stage, staged, &plans, progress)
            .await?;
        Ok(RollbackReport {
            after_stage: failed.index,
            stage_name: failed.name.clone(),
            because: String::new(),
            failed_gates: Vec::new(),
            weights,
            stamp: staged.stamp.clone(),
            converge_s: converge.as_secs_f64(),
            verified: results.iter().all(|r| r.passed),
            entries: results,
            resumed_at: None,
        })
    }

    async fn walk_stage(
        &self,
        mesh: &mut dyn Mesh,
        stage: &Stage,
        before: &Staged,
        staged: &Staged,
        progress: &mut Progress<'_>,
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
        let plans: Vec<(usize, TestPlan)> = self.plans.plans[stage.index]
            .iter()
            .cloned()
            .enumerate()
            .collect();
        progress.transitions.mark(&format!(
            "weights → stage {} ({})",
            stage.index + 1,
            stage.name
        ));
        let (converge, results, per_subset) = self
            .apply_and_sample(mesh, stage, staged, &plans, progress)
            .await?;
        let share = stage.expected_share(&scenario.canary);
        let gates = crate::gates::judge_stage(
            &scenario.gates,
            share,
            &per_subset,
            scenario.subsets(),
            self.plans.alpha_test,
        );
        for g in &gates {
            tracing::info!(
                "{} gate `{}` ({}): {}",
                stage.name,
                g.gate,
                g.asks,
                if g.passed { "pass" } else { "FAIL" }
            );
        }
        Ok(StageReport {
            index: stage.index,
            name: stage.name.clone(),
            weights: stage.weights.clone(),
            expect: stage.expect.clone(),
            expected_share: share,
            converge_s: converge.as_secs_f64(),
            stamp: staged.stamp.clone(),
            passed: results.iter().all(|r| r.passed) && gates.iter().all(|g| g.passed),
            entries: results,
            gates,
            rollouts: Vec::new(),
            rollout_steps: Vec::new(),
            versions: progress.versions.clone().unwrap_or_default(),
        })
    }

    /// Applies a VirtualService, waits until every proxy routes with it, then samples every
    /// entry point at the same time (each with its own concurrency: a stage costs the slower
    /// one, not the sum), one test per planned class. Returns the time to converge, the tests'
    /// reports, and their answers pooled per subset (for the gates).
    async fn apply_and_sample(
        &self,
        mesh: &mut dyn Mesh,
        stage: &Stage,
        staged: &Staged,
        plans: &[(usize, TestPlan)],
        progress: &mut Progress<'_>,
    ) -> anyhow::Result<(Duration, Vec<EntryReport>, BTreeMap<String, PerSubset>)> {
        let t0 = Instant::now();
        mesh.apply(staged)
            .await
            .context("applying the stage's VirtualService")?;
        mesh.await_weights(&staged.weights, self.options.converge_timeout)
            .await
            .context("waiting for the proxies to route with the stage's weights")?;
        let converge = t0.elapsed();
        progress.transitions.settled();
        self.observer.converged(stage, converge);
        tracing::info!(
            "proxies route with the new weights after {:.2} s",
            converge.as_secs_f64()
        );
        let mut targets = Vec::new();
        for entry in self.routing.entry_points() {
            targets.push((entry, mesh.target(entry)?));
        }
        let sampled = futures::future::join_all(targets.iter().map(|(entry, target)| {
            self.sample_entry(
                *entry,
                target.clone(),
                stage,
                staged,
                plans,
                &progress.versions,
            )
        }))
        .await;
        let mut results = Vec::new();
        let mut pooled: BTreeMap<String, PerSubset> = BTreeMap::new();
        for result in sampled {
            let result = result?;
            for per in result.per_subset {
                for (subset, p) in per {
                    let into = pooled.entry(subset).or_default();
                    into.trials += p.trials;
                    into.failed += p.failed;
                    into.latency_ms.extend(p.latency_ms);
                }
            }
            for r in result.reports {
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
                progress.log.append(&r)?;
                results.push(r);
            }
        }
        Ok((converge, results, pooled))
    }

    /// The planned classes on one entry point, one after the other.
    async fn sample_entry(
        &self,
        entry: EntryPoint,
        target: Arc<dyn Target>,
        stage: &Stage,
        staged: &Staged,
        plans: &[(usize, TestPlan)],
        versions: &Option<BTreeMap<String, String>>,
    ) -> anyhow::Result<EntryResult> {
        let scenario = self.scenario;
        let mut reports = Vec::new();
        let mut per_subset = Vec::new();
        for (c, plan) in plans {
            let class = &scenario.classes[*c];
            let plan = plan.clone();
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
            let expected_versions = versions.clone();
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
            per_subset,
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
