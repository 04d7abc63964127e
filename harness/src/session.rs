//! One run, from the planned mesh to the last report: set-up → walk → reports → teardown, the
//! same for every mesh and every command (`e2e`, `demo`, `bench`).
//!
//! Cancellation (Ctrl-C, SIGTERM) stops only the set-up or the walk. Whatever happened, the
//! session then writes every report for the stages that finished (`aborted: "interrupted"`
//! when cancelled), collects diagnostics of a failure, and executes the mesh's teardown within a
//! bound, so that no process, port or object of the run is left behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::input_error::InputError;
use crate::mesh::{Mesh, Planned};
use crate::render;
use crate::report::{self, Report, ResultsLog, StepReport};
use crate::routing::Routing;
use crate::run::{self, Observer, RunOptions};
use crate::scenario::Scenario;
use crate::steps::{Step, StepLog};

/// The runtime every command runs its session on (`e2e`, `demo`, `bench`: the bench measures
/// the prober on the runtime users run).
///
/// One worker thread: the prober's workers, the verdicts and the meshes' waits are I/O-bound,
/// and on two cores, where Envoy and the backends need the other core, a second worker thread
/// cost more in cross-thread wake-ups than it gave. Measured with `cargo xtask bench`, the two
/// alternating: the prober at 0.88–0.92 of wrk's rate through the local mesh with one worker
/// thread against 0.77 with two, and the tutorial's wall time the same (median 0.70 s against
/// 0.75 s). The runtime is still the multi-threaded kind, so blocking sections
/// (`block_in_place`) keep working.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// Bound on collecting diagnostics of a failed run.
const DIAGNOSTICS_TIMEOUT: Duration = Duration::from_secs(120);

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every stage passed.
    Passed,
    /// A stage failed its verdict.
    Failed,
    /// The set-up or a stage could not go on.
    Aborted,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// What a finished run leaves.
#[derive(Debug)]
pub struct Finished {
    pub report: Report,
    pub outcome: Outcome,
    /// The rendered reports, `report.json` first.
    pub files: Vec<PathBuf>,
    /// The steps executed, set-up and teardown.
    pub steps: StepLog,
    /// Problems of the teardown (what may be left behind, and how to remove it).
    pub teardown_errors: Vec<String>,
}

/// A run of one scenario on one planned mesh.
pub struct Session<'a> {
    pub scenario: &'a Scenario,
    pub routing: &'a Routing,
    pub plans: &'a run::TestPlans,
    pub options: &'a RunOptions,
    pub observer: &'a dyn Observer,
}

impl Session<'_> {
    /// Runs the planned mesh: see the module's doc. Errors are only those that leave no report
    /// (the report folder cannot be locked or written).
    pub async fn run(
        &self,
        planned: Planned,
        cancel: CancellationToken,
    ) -> anyhow::Result<Finished> {
        let dir = &self.options.report_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut locks = vec![RunLock::acquire(&dir.join(LOCK_FILE), LockOf::ReportDir)?];
        for path in &planned.locks {
            locks.push(RunLock::acquire(path, LockOf::Cluster)?);
        }
        // Diagnostics of an earlier run in the same folder would be mistaken for this one's.
        let _ = std::fs::remove_dir_all(dir.join("diagnostics"));
        let started = Instant::now();
        let mut mesh = planned.mesh;
        let mut report = run::new_report(self.scenario, self.routing, mesh.kind());
        let mut log = ResultsLog::create(dir)?;
        let steps = StepLog::default();

        let mut aborted = None;
        for step in &planned.setup {
            if cancel.is_cancelled() {
                aborted = Some(report::INTERRUPTED.to_string());
                break;
            }
            let outcome = tokio::select! {
                r = self.execute(mesh.as_mut(), step, &steps, &mut report) => r,
                _ = cancel.cancelled() => {
                    record(&steps, &mut report, step, Duration::ZERO, Some("interrupted"));
                    Err(anyhow::anyhow!(report::INTERRUPTED))
                }
            };
            if let Err(e) = outcome {
                aborted = Some(if cancel.is_cancelled() {
                    report::INTERRUPTED.to_string()
                } else {
                    format!("set-up step `{}`: {e:#}", step.to_string().trim())
                });
                break;
            }
        }
        if aborted.is_none() {
            self.observer.mesh_ready(mesh.kind(), started.elapsed());
            let walk = run::Walk {
                scenario: self.scenario,
                routing: self.routing,
                plans: self.plans,
                options: self.options,
                observer: self.observer,
                started,
            };
            let walk = walk.run(mesh.as_mut(), &mut report, &mut log);
            tokio::select! {
                r = walk => if let Err(e) = r {
                    aborted = Some(format!("{e:#}"));
                },
                _ = cancel.cancelled() => aborted = Some(report::INTERRUPTED.to_string()),
            }
        }
        let interrupted = aborted.as_deref() == Some(report::INTERRUPTED);
        if let Some(reason) = &aborted {
            if interrupted {
                tracing::warn!("interrupted: writing the reports and cleaning up");
            } else {
                tracing::error!("the run stopped early: {reason}");
            }
        }
        report.aborted = aborted;
        report.conclude(self.scenario.stages.len());

        if !report.passed && !interrupted {
            let diagnostics = dir.join("diagnostics");
            match tokio::time::timeout(DIAGNOSTICS_TIMEOUT, mesh.diagnostics(&diagnostics)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("collecting diagnostics failed: {e:#}"),
                Err(_) => tracing::warn!(
                    "collecting diagnostics took longer than {DIAGNOSTICS_TIMEOUT:?}; stopped"
                ),
            }
        }

        let teardown_errors = self.teardown(mesh.as_mut(), &steps, &mut report).await;
        report.cluster_changes = mesh.cluster_changes();
        drop(mesh);
        report.wall_time_s = started.elapsed().as_secs_f64();
        let mut files = vec![report.write_json(dir)?];
        files.extend(render::write_all(&report, dir).context("writing the reports")?);
        drop(locks);
        let outcome = match (&report.aborted, report.passed) {
            (Some(_), _) if interrupted => Outcome::Interrupted,
            (Some(_), _) => Outcome::Aborted,
            (None, true) => Outcome::Passed,
            (None, false) => Outcome::Failed,
        };
        Ok(Finished {
            report,
            outcome,
            files,
            steps,
            teardown_errors,
        })
    }

    async fn execute(
        &self,
        mesh: &mut dyn Mesh,
        step: &Step,
        steps: &StepLog,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        tracing::info!("{step}");
        self.observer.step_started(step);
        let t0 = Instant::now();
        let result = mesh.execute(step).await;
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        self.observer
            .step_done(step, t0.elapsed(), error.as_deref());
        record(steps, report, step, t0.elapsed(), error.as_deref());
        result
    }

    /// Executes the mesh's teardown within the run's bound; every step is tried even when an
    /// earlier one failed. Returns what went wrong.
    async fn teardown(
        &self,
        mesh: &mut dyn Mesh,
        steps: &StepLog,
        report: &mut Report,
    ) -> Vec<String> {
        let deadline = Instant::now() + self.options.teardown_timeout;
        let mut errors = Vec::new();
        for step in mesh.teardown() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                errors.push(format!(
                    "not done within the teardown's {:?}: {step}",
                    self.options.teardown_timeout
                ));
                continue;
            }
            match tokio::time::timeout(left, self.execute(mesh, &step, steps, report)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("{step}: {e:#}")),
                Err(_) => errors.push(format!(
                    "{step}: not done within the teardown's {:?}",
                    self.options.teardown_timeout
                )),
            }
        }
        for e in &errors {
            tracing::error!("teardown: {e}");
        }
        errors
    }
}

fn record(
    steps: &StepLog,
    report: &mut Report,
    step: &Step,
    elapsed: Duration,
    error: Option<&str>,
) {
    steps.record(step, error.map(|e| Err(e.to_string())).unwrap_or(Ok(())));
    report.setup.push(StepReport {
        step: step.to_string(),
        seconds: elapsed.as_secs_f64(),
        error: error.map(str::to_string),
    });
}

/// A short random id that names what a run makes on a cluster (`canary-mesh-client-<id>`).
pub fn new_run_id() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// The lock file in a report folder.
pub const LOCK_FILE: &str = ".canary-run.lock";

#[derive(Debug, Clone, Copy)]
enum LockOf {
    ReportDir,
    Cluster,
}

/// An exclusive lock a run holds on its report folder (and on its kind cluster's name), so
/// that two runs never share them. The kernel drops it when the process dies, so a crashed
/// run never blocks the next one.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    fn acquire(path: &Path, of: LockOf) -> anyhow::Result<Self> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::io::AsRawFd;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another run".to_string()
            } else {
                format!("the run of process {holder}")
            };
            let (what, fix) = match of {
                LockOf::ReportDir => (
                    format!(
                        "the report folder {} is in use by {who}",
                        path.parent().unwrap_or(path).display()
                    ),
                    "wait for that run to end, or give this run its own folder with --report-dir",
                ),
                LockOf::Cluster => (
                    format!("the kind cluster of {} is in use by {who}", path.display()),
                    "wait for that run to end, or give this run its own cluster with --cluster-name",
                ),
            };
            return Err(InputError::new(path, "", what, fix).into());
        }
        file.set_len(0)?;
        file.seek(std::io::SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Self { _file: file })
    }
}

/// Cancels the token on the first Ctrl-C or SIGTERM (how CI cancels a job), and exits the
/// process at once with 130 on the second. Call from inside the runtime.
pub fn cancel_on_signals() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot listen for Ctrl-C and SIGTERM: they will end the run at once");
            return;
        };
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                eprintln!(
                    "interrupted: finishing the reports and cleaning up (press Ctrl-C again to exit at once)"
                );
                token.cancel();
            } else {
                eprintln!("interrupted twice: exiting now; child processes die with the harness");
                std::process::exit(130);
            }
        }
    });
    cancel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::Manifests;

    fn tutorial() -> (Scenario, Routing) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
        let scenario = Scenario::load(&path).unwrap();
        let manifests = Manifests::load_all(&scenario.manifests).unwrap();
        let routing = Routing::resolve(&scenario, manifests).unwrap();
        (scenario, routing)
    }

    /// A session of `scenario` on `planned`, with the scenario's own test plans.
    async fn run_tutorial(
        scenario: &Scenario,
        routing: &Routing,
        options: &RunOptions,
        observer: &dyn Observer,
        planned: Planned,
        cancel: CancellationToken,
    ) -> anyhow::Result<Finished> {
        Session {
            scenario,
            routing,
            plans: &crate::run::plan_tests(scenario, routing.entry_points().len()).unwrap(),
            options,
            observer,
        }
        .run(planned, cancel)
        .await
    }

    struct Quiet;
    impl Observer for Quiet {}

    /// Cancels the run once `stages` stages are done, as Ctrl-C in the middle of sampling.
    struct CancelAfter {
        stages: usize,
        cancel: CancellationToken,
        seen: std::sync::atomic::AtomicUsize,
    }

    impl Observer for CancelAfter {
        fn stage_done(&self, _stage: &crate::report::StageReport) {
            let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n == self.stages {
                self.cancel.cancel();
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_passes_writes_every_report_and_tears_down() {
        let (scenario, routing) = tutorial();
        let dir = tempfile::tempdir().unwrap();
        let options = RunOptions::new(dir.path().to_path_buf());
        let planned = crate::fake_mesh::plan(&routing, Duration::ZERO, 7);
        let finished = run_tutorial(
            &scenario,
            &routing,
            &options,
            &Quiet,
            planned,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            finished.outcome,
            Outcome::Passed,
            "{:?}",
            finished.report.aborted
        );
        assert_eq!(finished.report.stages.len(), 4);
        assert_eq!(
            finished.steps.lines().last().unwrap(),
            "stop    envoy (SIGTERM, then SIGKILL after 2 s)"
        );
        for file in [
            "report.json",
            "junit.xml",
            "summary.md",
            "report.html",
            "results.jsonl",
        ] {
            assert!(dir.path().join(file).exists(), "{file}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_walk_keeps_its_finished_stages_and_still_tears_down() {
        let (scenario, routing) = tutorial();
        let dir = tempfile::tempdir().unwrap();
        let options = RunOptions::new(dir.path().to_path_buf());
        // Slow answers: the third stage is still sampling when the cancel comes.
        let planned = crate::fake_mesh::plan(&routing, Duration::from_micros(300), 7);
        let cancel = CancellationToken::new();
        let observer = CancelAfter {
            stages: 2,
            cancel: cancel.clone(),
            seen: Default::default(),
        };
        let finished = run_tutorial(&scenario, &routing, &options, &observer, planned, cancel)
            .await
            .unwrap();
        assert_eq!(finished.outcome, Outcome::Interrupted);
        let report = Report::read(&dir.path().join("report.json")).unwrap();
        assert_eq!(report.aborted.as_deref(), Some(report::INTERRUPTED));
        assert!(!report.passed);
        let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["initial state", "canary warm-up"]);
        let results = std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
        assert_eq!(results.lines().count(), 4, "two stages × two entry points");
        assert!(dir.path().join("junit.xml").exists());
        assert_eq!(
            report.setup.last().unwrap().step,
            "stop    envoy (SIGTERM, then SIGKILL after 2 s)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_set_up_is_torn_down_and_reported() {
        let (scenario, routing) = tutorial();
        let dir = tempfile::tempdir().unwrap();
        let options = RunOptions::new(dir.path().to_path_buf());
        let planned = crate::fake_mesh::plan(&routing, Duration::ZERO, 7);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let finished = run_tutorial(&scenario, &routing, &options, &Quiet, planned, cancel)
            .await
            .unwrap();
        assert_eq!(finished.outcome, Outcome::Interrupted);
        assert!(finished.report.stages.is_empty());
        // Nothing ran, so nothing is undone either.
        assert!(finished.steps.lines().is_empty());
        assert!(dir.path().join("report.html").exists());
    }

    #[test]
    fn a_second_lock_on_a_folder_names_the_holder_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let first = RunLock::acquire(&path, LockOf::ReportDir).unwrap();
        let err = RunLock::acquire(&path, LockOf::ReportDir).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        assert!(text.contains("--report-dir"), "{text}");
        assert!(crate::input_error::is_input_error(&err));
        drop(first);
        RunLock::acquire(&path, LockOf::ReportDir).unwrap();
    }

    #[test]
    fn a_second_lock_on_a_cluster_name_names_the_holder_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        // Where the kind plan puts it: `<state>/kind-<name>.lock`; the folder may not exist yet.
        let path = dir.path().join("state").join("kind-canary-harness.lock");
        let first = RunLock::acquire(&path, LockOf::Cluster).unwrap();
        let err = RunLock::acquire(&path, LockOf::Cluster).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("--cluster-name"), "{text}");
        assert!(text.contains("kind-canary-harness.lock"), "{text}");
        assert!(!text.contains("--report-dir"), "{text}");
        assert!(crate::input_error::is_input_error(&err));
        // Another cluster name is another lock.
        RunLock::acquire(&dir.path().join("state/kind-other.lock"), LockOf::Cluster).unwrap();
        drop(first);
        RunLock::acquire(&path, LockOf::Cluster).unwrap();
    }

    /// A cluster name in use: the session refuses before any step of the set-up, writes no
    /// report, and lets go of the report folder again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_on_a_cluster_name_in_use_is_refused_before_anything_runs() {
        let (scenario, routing) = tutorial();
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let cluster_lock = state.path().join("kind-canary-harness.lock");
        let _other_run = RunLock::acquire(&cluster_lock, LockOf::Cluster).unwrap();
        let options = RunOptions::new(dir.path().to_path_buf());
        let mut planned = crate::fake_mesh::plan(&routing, Duration::ZERO, 7);
        planned.locks = vec![cluster_lock.clone()];
        let err = run_tutorial(
            &scenario,
            &routing,
            &options,
            &Quiet,
            planned,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        assert!(text.contains("--cluster-name"), "{text}");
        assert!(crate::input_error::is_input_error(&err));
        assert!(!dir.path().join("report.json").exists());
        assert!(!dir.path().join("results.jsonl").exists());
        RunLock::acquire(&dir.path().join(LOCK_FILE), LockOf::ReportDir).unwrap();
    }

    /// A mesh whose teardown starts with a step that hangs for `hang`; every step it executes
    /// is noted in `executed`.
    struct HangingTeardown {
        /// In a Mutex only to make the wrapper Sync (`&self` methods' futures must be Send).
        inner: std::sync::Mutex<Box<dyn Mesh>>,
        hang: Duration,
        executed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    fn teardown_step(name: &str) -> Step {
        Step::new(
            crate::steps::Section::Teardown,
            crate::steps::Action::Delete(crate::steps::ObjectRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: name.into(),
            }),
        )
    }

    #[async_trait::async_trait]
    impl Mesh for HangingTeardown {
        fn kind(&self) -> &'static str {
            self.inner.lock().unwrap().kind()
        }
        async fn execute(&mut self, step: &Step) -> anyhow::Result<()> {
            self.executed.lock().unwrap().push(step.to_string());
            if step.to_string().contains("hangs") {
                tokio::time::sleep(self.hang).await;
            }
            self.inner.get_mut().unwrap().execute(step).await
        }
        fn teardown(&self) -> Vec<Step> {
            vec![teardown_step("hangs"), teardown_step("after")]
        }
        fn entry_points(&self) -> Vec<crate::routing::EntryPoint> {
            self.inner.lock().unwrap().entry_points()
        }
        async fn apply(&mut self, staged: &crate::routing::Staged) -> anyhow::Result<()> {
            self.inner.get_mut().unwrap().apply(staged).await
        }
        async fn await_weights(
            &mut self,
            weights: &crate::scenario::Weights,
            timeout: Duration,
        ) -> anyhow::Result<()> {
            self.inner
                .get_mut()
                .unwrap()
                .await_weights(weights, timeout)
                .await
        }
        fn target(
            &self,
            entry: crate::routing::EntryPoint,
        ) -> anyhow::Result<std::sync::Arc<dyn crate::prober::Target>> {
            self.inner.lock().unwrap().target(entry)
        }
        async fn diagnostics(&self, dir: &Path) -> anyhow::Result<()> {
            std::fs::create_dir_all(dir)?;
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_teardown_that_hangs_is_cut_off_at_its_bound_and_reported() {
        let (scenario, routing) = tutorial();
        let dir = tempfile::tempdir().unwrap();
        let mut options = RunOptions::new(dir.path().to_path_buf());
        options.teardown_timeout = Duration::from_millis(300);
        let mut planned = crate::fake_mesh::plan(&routing, Duration::ZERO, 7);
        let executed = std::sync::Arc::default();
        planned.mesh = Box::new(HangingTeardown {
            inner: std::sync::Mutex::new(planned.mesh),
            hang: Duration::from_secs(3600),
            executed: std::sync::Arc::clone(&executed),
        });
        let finished = tokio::time::timeout(
            Duration::from_secs(120),
            run_tutorial(
                &scenario,
                &routing,
                &options,
                &Quiet,
                planned,
                CancellationToken::new(),
            ),
        )
        .await
        .expect("the session ends although a teardown step hangs")
        .unwrap();
        assert_eq!(
            finished.outcome,
            Outcome::Passed,
            "{:?}",
            finished.report.aborted
        );
        assert_eq!(
            finished.teardown_errors,
            [
                format!(
                    "{}: not done within the teardown's 300ms",
                    teardown_step("hangs")
                ),
                format!(
                    "not done within the teardown's 300ms: {}",
                    teardown_step("after")
                ),
            ]
        );
        // The step after the hanging one is not started once the bound has passed.
        let executed = executed.lock().unwrap().clone();
        assert_eq!(
            executed.last().unwrap(),
            &teardown_step("hangs").to_string(),
            "{executed:?}"
        );
        let report = Report::read(&dir.path().join("report.json")).unwrap();
        assert!(report.passed);
        assert_eq!(report.stages.len(), 4);
        for file in ["junit.xml", "summary.md", "report.html"] {
            assert!(dir.path().join(file).exists(), "{file}");
        }
        // The lock of the report folder is let go.
        RunLock::acquire(&dir.path().join(LOCK_FILE), LockOf::ReportDir).unwrap();
    }
}
