//! The stage walk: the same for every mesh.
//!
//! For each stage: apply its weights, wait until every proxy routes with them, then sample
//! each entry point with the planned number of requests and judge the split. Each result is
//! logged the moment it is known; the report is written at the end, also when the walk aborts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::istio::VirtualService;
use crate::mesh::Mesh;
use crate::prober::{Batch, Sample, Target};
use crate::report::{EntryReport, Report, ResultsLog, StageReport};
use crate::routing::{EntryPoint, Routing};
use crate::scenario::{Scenario, Stage};
use crate::stats::{self, Plan};
use crate::steps::Step;
use crate::tally::{self, Measurement};

/// Bounds and places of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub report_dir: PathBuf,
    /// Bound on waiting for the proxies to route with a stage's weights.
    pub converge_timeout: Duration,
    /// Bound on sampling one stage on one entry point.
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
/// nothing.
pub trait Observer: Send + Sync {
    /// A step of the set-up or the teardown starts.
    fn step_started(&self, _step: &Step) {}
    /// It ended, after `elapsed`; `error` says why it failed.
    fn step_done(&self, _step: &Step, _elapsed: Duration, _error: Option<&str>) {}
    /// The set-up is done: the mesh is up.
    fn mesh_ready(&self, _mesh: &str, _elapsed: Duration) {}
    fn stage_started(&self, _stage: &Stage, _before: &VirtualService, _after: &VirtualService) {}
    fn converged(&self, _stage: &Stage, _elapsed: Duration) {}
    fn sampling_started(&self, _stage: &Stage, _entry: EntryPoint, _plan: &Plan) {}
    fn sample(&self, _stage: &Stage, _entry: EntryPoint, _sample: &Sample) {}
    fn entry_done(&self, _stage: &Stage, _result: &EntryReport) {}
    fn stage_done(&self, _stage: &StageReport) {}
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
        tests_in_run: scenario.tests_in_run(entries.len()),
        entry_points: entries,
        subsets: routing.subsets.iter().map(|s| s.name.clone()).collect(),
        versions: routing
            .subsets
            .iter()
            .map(|s| (s.name.clone(), s.version.clone()))
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
    pub options: &'a RunOptions,
    pub observer: &'a dyn Observer,
    /// When the run began: timelines count from it.
    pub started: Instant,
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
        let entries = report.entry_points.clone();
        let mut current = self.routing.virtual_service.value.clone();
        for stage in &self.scenario.stages {
            let (stage_report, applied) = walk_stage(
                self.scenario,
                self.routing,
                mesh,
                self.options,
                self.observer,
                stage,
                &current,
                &entries,
                self.started,
                log,
            )
            .await
            .with_context(|| format!("stage `{}`", stage.name))?;
            self.observer.stage_done(&stage_report);
            report.stages.push(stage_report);
            current = applied;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn walk_stage(
    scenario: &Scenario,
    routing: &Routing,
    mesh: &mut dyn Mesh,
    options: &RunOptions,
    observer: &dyn Observer,
    stage: &Stage,
    before: &VirtualService,
    entries: &[EntryPoint],
    run_started: Instant,
    log: &mut ResultsLog,
) -> anyhow::Result<(StageReport, VirtualService)> {
    let vs = routing.with_weights(&stage.weights);
    observer.stage_started(stage, before, &vs);
    tracing::info!(
        "stage {}/{} `{}`: applying weights {:?}",
        stage.index + 1,
        scenario.stages.len(),
        stage.name,
        stage.weights
    );
    let t0 = Instant::now();
    mesh.apply(&vs)
        .await
        .context("applying the stage's VirtualService")?;
    mesh.await_weights(&stage.weights, options.converge_timeout)
        .await
        .context("waiting for the proxies to route with the stage's weights")?;
    let converge = t0.elapsed();
    observer.converged(stage, converge);
    tracing::info!(
        "proxies route with the new weights after {:.2} s",
        converge.as_secs_f64()
    );
    let expected_share = stage.expected_share(&scenario.canary);
    let tests = scenario.tests_in_run(entries.len());
    let mut results = Vec::new();
    for entry in entries {
        let plan = stats::plan(expected_share, &scenario.budget, tests);
        let target: Arc<dyn Target> = mesh.target(*entry)?;
        observer.sampling_started(stage, *entry, &plan);
        let batch = Batch {
            want: plan.requests,
            // Room for the failures the scenario tolerates, and then some.
            max_requests: plan.requests
                + (plan.requests as f64 * scenario.max_error_rate * 2.0).ceil() as u64
                + 10,
            concurrency: scenario.concurrency,
        };
        let sampling_started = Instant::now();
        let started_s = run_started.elapsed().as_secs_f64();
        let on_sample = |s: &Sample| observer.sample(stage, *entry, s);
        let samples =
            tokio::time::timeout(options.sample_timeout, target.collect(batch, &on_sample))
                .await
                .with_context(|| {
                    format!(
                        "sampling {} requests on {entry} ({}) did not finish within {:?}",
                        plan.requests,
                        target.describe(),
                        options.sample_timeout
                    )
                })??;
        let result = tally::judge(Measurement {
            routing,
            stage,
            entry: *entry,
            target: target.describe(),
            plan,
            samples: &samples,
            started_s,
            wall_time_s: sampling_started.elapsed().as_secs_f64(),
            max_error_rate: scenario.max_error_rate,
        });
        tracing::info!(
            "{} on {entry}: canary {:.1} % (expected {:.1} %) in {} requests: {}",
            stage.name,
            result.observed_share * 100.0,
            result.expected_share * 100.0,
            result.requests,
            if result.passed { "pass" } else { "FAIL" }
        );
        log.append(&result)?;
        observer.entry_done(stage, &result);
        results.push(result);
    }
    let stage_report = StageReport {
        index: stage.index,
        name: stage.name.clone(),
        weights: stage.weights.clone(),
        expect: stage.expect.clone(),
        expected_share,
        converge_s: converge.as_secs_f64(),
        passed: results.iter().all(|r| r.passed),
        entries: results,
    };
    Ok((stage_report, vs))
}
