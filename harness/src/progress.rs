//! Progress on the terminal while a walk runs: a bar per sampling batch and per wait.
//!
//! Bars draw only on a terminal (indicatif hides them otherwise); the log lines of the walk
//! say the same in plain text for CI.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::prober::Sample;
use crate::report::EntryReport;
use crate::routing::EntryPoint;
use crate::routing::Staged;
use crate::run::Observer;
use crate::scenario::Stage;
use crate::steps::Step;
use crate::verdict::TestPlan;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct TerminalProgress {
    bars: MultiProgress,
    current: Mutex<Option<ProgressBar>>,
    /// A bar per test being sampled (entry points are sampled at the same time).
    sampling: Mutex<BTreeMap<(EntryPoint, String), ProgressBar>>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        Self::default()
    }

    /// A spinner for a wait that may last longer than a second; finish it when done.
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

impl Observer for TerminalProgress {
    fn step_started(&self, step: &Step) {
        let bar = self.spinner(step.to_string());
        *self.current.lock().expect("progress lock") = Some(bar);
    }

    fn step_done(&self, _step: &Step, _elapsed: Duration, _error: Option<&str>) {
        if let Some(bar) = self.current.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }

    fn stage_started(&self, stage: &Stage, _before: &Staged, _after: &Staged) {
        let bar = self.spinner(format!(
            "stage `{}`: waiting for the proxies to route with {:?}",
            stage.name, stage.weights
        ));
        *self.current.lock().expect("progress lock") = Some(bar);
    }

    fn converged(&self, _stage: &Stage, _elapsed: Duration) {
        if let Some(bar) = self.current.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }

    fn sampling_started(&self, stage: &Stage, entry: EntryPoint, class: &str, plan: &TestPlan) {
        let bar = self.bars.add(ProgressBar::new(plan.max_trials()));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>32} [{bar:30}] {pos}/{len} answers (at most) {per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} · {entry} · {class}", stage.name));
        self.sampling
            .lock()
            .expect("progress lock")
            .insert((entry, class.to_string()), bar);
    }

    fn sample(&self, _stage: &Stage, entry: EntryPoint, class: &str, sample: &Sample) {
        if let Some(bar) = self
            .sampling
            .lock()
            .expect("progress lock")
            .get(&(entry, class.to_string()))
        {
            bar.inc(1);
            if !sample.is_ok() {
                bar.set_message("(with errors)");
            }
        }
    }

    fn entry_done(&self, _stage: &Stage, result: &EntryReport) {
        if let Some(bar) = self
            .sampling
            .lock()
            .expect("progress lock")
            .remove(&(result.entry, result.class.clone()))
        {
            bar.finish_with_message(if result.passed { "pass" } else { "FAIL" });
        }
    }
}
