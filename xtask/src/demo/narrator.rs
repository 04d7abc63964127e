//! The narrator: an [`Observer`] of the run that tells each step of the set-up under its
//! tutorial section, and each stage as it goes (see `setup.rs` and `stages.rs`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::collections::BTreeMap;

use harness::prober::Sample;
use harness::progress::TerminalProgress;
use harness::report::{EntryReport, StageReport};
use harness::routing::EntryPoint;
use harness::routing::Staged;
use harness::run::Observer;
use harness::scenario::Stage;
use harness::steps::{Section, Step};
use harness::verdict::TestPlan;
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use super::text::Palette;
use crate::e2e::Prepared;
use crate::flags::MeshKind;

/// Tells the tutorial as the run goes. Prints to stdout; bars draw only on a terminal.
pub struct Narrator {
    pub(super) mesh: MeshKind,
    pub(super) prepared_text: PreparedText,
    pub(super) subsets: [String; 2],
    pub(super) versions: [String; 2],
    pub(super) canary_name: String,
    pub(super) stages: usize,
    pub(super) palette: Palette,
    /// Lines typed on stdin, when stepping through sections on a terminal.
    enter: Option<Mutex<mpsc::UnboundedReceiver<()>>>,
    interrupted: AtomicBool,
    pub(super) progress: TerminalProgress,
    pub(super) wait: Mutex<Option<ProgressBar>>,
    /// The tests being sampled (entry points are sampled at the same time), and their bars.
    pub(super) live: Mutex<BTreeMap<(EntryPoint, String), super::stages::Live>>,
    pub(super) bars: indicatif::MultiProgress,
    /// The sections told so far: each gets its heading once, numbered in the order told.
    pub(super) section: Mutex<Vec<Section>>,
    pub(super) sections_told: std::sync::atomic::AtomicUsize,
}

/// What the set-up sections say about the routing state, worked out before the run.
pub struct PreparedText {
    pub workloads: String,
    pub routing: String,
}

impl Narrator {
    pub fn new(prepared: &Prepared, mesh: MeshKind, step: bool) -> Self {
        let subsets = prepared.routing.subsets.clone().map(|s| s.name);
        let versions = prepared
            .routing
            .subsets
            .clone()
            .map(|s| s.backend_version().to_string());
        let interactive = std::io::stdin().is_terminal();
        if step && !interactive {
            println!("(--step needs a terminal on stdin; running straight through)");
        }
        let enter = (step && interactive).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            // A plain thread: it dies with the process, whatever it is blocked on.
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if line.is_err() || tx.send(()).is_err() {
                        break;
                    }
                }
            });
            Mutex::new(rx)
        });
        let palette = Palette::new();
        Self {
            mesh,
            prepared_text: super::setup::prepared_text(prepared, mesh, &palette),
            subsets,
            versions,
            canary_name: prepared.scenario.canary.clone(),
            stages: prepared.scenario.stages.len(),
            palette,
            enter,
            interrupted: AtomicBool::new(false),
            progress: TerminalProgress::new(),
            wait: Mutex::new(None),
            live: Mutex::new(BTreeMap::new()),
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stdout(),
            ),
            section: Mutex::new(Vec::new()),
            sections_told: Default::default(),
        }
    }

    /// Ctrl-C at a prompt: the run stops at its next step, and the story with it.
    pub(super) fn stopping(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    pub(super) fn section(&self, number: &str, title: &str) {
        self.pause(title);
        let heading = if number.is_empty() {
            title.to_string()
        } else {
            format!("{number} {title}")
        };
        println!();
        println!("{}", self.palette.title.apply_to(&heading));
        println!(
            "{}",
            self.palette
                .dim
                .apply_to("─".repeat(heading.chars().count()))
        );
    }

    pub(super) fn say(&self, text: impl AsRef<str>) {
        for line in text.as_ref().lines() {
            println!("  {line}");
        }
    }

    /// With `--step` on a terminal, waits for Enter (or Ctrl-C, which the run then handles).
    fn pause(&self, next: &str) {
        let Some(enter) = &self.enter else { return };
        if self.stopping() {
            return;
        }
        print!(
            "\n{}",
            self.palette
                .dim
                .apply_to(format!("⏎  Enter for “{next}” (Ctrl-C stops) "))
        );
        let _ = std::io::stdout().flush();
        let mut rx = enter.lock().expect("stdin lock");
        match tokio::runtime::Handle::try_current() {
            // Inside the run: Ctrl-C must still reach the session, which cleans up.
            Ok(handle) => tokio::task::block_in_place(|| {
                handle.block_on(async {
                    tokio::select! {
                        _ = rx.recv() => {}
                        _ = tokio::signal::ctrl_c() => {
                            self.interrupted.store(true, Ordering::SeqCst);
                        }
                    }
                })
            }),
            Err(_) => {
                let _ = rx.blocking_recv();
            }
        }
    }

    pub(super) fn verdict(&self, passed: bool) -> String {
        if passed {
            self.palette.pass.apply_to("PASS").to_string()
        } else {
            self.palette.fail.apply_to("FAIL").to_string()
        }
    }
}

impl Observer for Narrator {
    fn step_started(&self, step: &Step) {
        self.tell_step(step);
    }

    fn step_done(&self, step: &Step, elapsed: Duration, error: Option<&str>) {
        self.tell_step_done(step, elapsed, error);
    }

    fn mesh_ready(&self, mesh: &str, elapsed: Duration) {
        if !self.stopping() {
            self.say(format!(
                "the {mesh} mesh is up after {:.1} s; now the stages",
                elapsed.as_secs_f64()
            ));
        }
    }

    fn stage_started(&self, stage: &Stage, before: &Staged, after: &Staged) {
        self.tell_stage_started(stage, before, after);
    }

    fn converged(&self, stage: &Stage, elapsed: Duration) {
        self.tell_converged(stage, elapsed);
    }

    fn sampling_started(&self, stage: &Stage, entry: EntryPoint, class: &str, plan: &TestPlan) {
        self.tell_sampling_started(stage, entry, class, plan);
    }

    fn sample(&self, _stage: &Stage, entry: EntryPoint, class: &str, sample: &Sample) {
        self.tell_sample(entry, class, sample);
    }

    fn entry_done(&self, _stage: &Stage, result: &EntryReport) {
        self.tell_entry_done(result);
    }

    fn stage_done(&self, stage: &StageReport) {
        if !self.stopping() {
            self.tell_gates(stage);
            self.say(format!(
                "stage `{}`: {}",
                stage.name,
                self.verdict(stage.passed)
            ));
        }
    }

    fn rolling_out(&self, stage: &Stage, rollout: &harness::mesh::Rollout) {
        self.tell_rollout(stage, rollout);
    }

    fn rolled_back(&self, rollback: &harness::report::RollbackReport) {
        self.tell_rollback(rollback);
    }
}
