//! The stages as the tutorial tells them: the VirtualService change as a YAML diff, the split
//! filling up live per entry point, and the verdict.

use std::time::Duration;

use harness::prober::Sample;
use harness::report::EntryReport;
use harness::routing::EntryPoint;
use harness::routing::Staged;
use harness::scenario::Stage;
use harness::verdict::TestPlan;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::narrator::Narrator;
use super::text::{indent, yaml_diff};

/// Width of the split bars, in cells.
const BAR: usize = 40;
const BASELINE_CELL: char = '█';
const CANARY_CELL: char = '▒';
const EMPTY_CELL: char = '·';

/// The split of one test (a class on an entry point) while its answers arrive.
pub struct Live {
    entry: EntryPoint,
    class: String,
    bar: ProgressBar,
    want: u64,
    expected: f64,
    counts: [u64; 2],
    other: u64,
    errors: u64,
}

impl Narrator {
    pub(super) fn weights_text(&self, weights: &harness::scenario::Weights) -> String {
        self.subsets
            .iter()
            .map(|s| format!("{s} {}", weights.get(s).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// A bar of `BAR` cells: baseline cells, canary cells, then the part still to come.
    fn split_bar(&self, baseline: f64, canary: f64) -> String {
        let b = (baseline * BAR as f64).round() as usize;
        let c = ((baseline + canary) * BAR as f64).round() as usize - b.min(BAR);
        let b = b.min(BAR);
        let c = c.min(BAR - b);
        format!(
            "{}{}{}",
            self.palette
                .baseline
                .apply_to(BASELINE_CELL.to_string().repeat(b)),
            self.palette
                .canary
                .apply_to(CANARY_CELL.to_string().repeat(c)),
            self.palette
                .dim
                .apply_to(EMPTY_CELL.to_string().repeat(BAR - b - c))
        )
    }

    fn live_line(&self, live: &Live) -> String {
        let answers = live.counts[0] + live.counts[1] + live.other;
        let filled = if live.want == 0 {
            1.0
        } else {
            (answers as f64 / live.want as f64).min(1.0)
        };
        let (b, c) = if answers == 0 {
            (0.0, 0.0)
        } else {
            (
                filled * live.counts[0] as f64 / answers as f64,
                filled * (live.counts[1] + live.other) as f64 / answers as f64,
            )
        };
        let share = if answers == 0 {
            0.0
        } else {
            live.counts[1] as f64 / answers as f64
        };
        let errors = if live.errors > 0 {
            format!(", {} errors", live.errors)
        } else {
            String::new()
        };
        let name = if live.class == harness::scenario::DEFAULT_CLASS {
            live.entry.to_string()
        } else {
            format!("{} {}", live.entry, live.class)
        };
        format!(
            "{name:<9}{}  {answers}/{} answers (at most), {} {:.1} % (expected {:.1} %){errors}",
            self.split_bar(b, c),
            live.want,
            self.canary_name,
            share * 100.0,
            live.expected * 100.0
        )
    }

    pub(super) fn tell_stage_started(&self, stage: &Stage, before: &Staged, after: &Staged) {
        if self.stopping() {
            return;
        }
        let share = stage.expected_share(&self.canary_name);
        let what = match share {
            s if s <= 0.0 => "all traffic on the baseline".to_string(),
            s if s >= 1.0 => "all traffic on the canary".to_string(),
            s => format!("{:.0} % of the traffic to the canary", s * 100.0),
        };
        self.section(
            &format!("stage {}/{}:", stage.index + 1, self.stages),
            &format!("{} ({what})", stage.name),
        );
        let diff = yaml_diff(&before.body, &after.body, &stage.name, &self.palette);
        if diff.is_empty() {
            self.say(format!(
                "The VirtualService already routes {}: nothing to change.",
                self.weights_text(&stage.weights)
            ));
        } else {
            self.say(format!(
                "The VirtualService change ({}):",
                self.weights_text(&stage.weights)
            ));
            self.say(indent(&diff, 2));
        }
        let spinner = self.progress.spinner(format!(
            "applying it and waiting until every proxy routes with {}",
            self.weights_text(&stage.weights)
        ));
        *self.wait.lock().expect("narrator lock") = Some(spinner);
    }

    pub(super) fn tell_converged(&self, stage: &Stage, elapsed: Duration) {
        if self.stopping() {
            return;
        }
        if let Some(spinner) = self.wait.lock().expect("narrator lock").take() {
            spinner.finish_and_clear();
        }
        self.say(format!(
            "every proxy routes with {} after {:.2} s",
            self.weights_text(&stage.weights),
            elapsed.as_secs_f64()
        ));
        let share = stage.expected_share(&self.canary_name);
        self.say(format!(
            "{:<9}{}  {} {:.1} %",
            "expected",
            self.split_bar(1.0 - share, share),
            self.canary_name,
            share * 100.0
        ));
    }

    pub(super) fn tell_sampling_started(
        &self,
        stage: &Stage,
        entry: EntryPoint,
        class: &str,
        plan: &TestPlan,
    ) {
        if self.stopping() {
            return;
        }
        let bar = self.bars.add(ProgressBar::with_draw_target(
            Some(plan.max_trials()),
            ProgressDrawTarget::stdout(),
        ));
        bar.set_style(
            ProgressStyle::with_template("  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let live = Live {
            entry,
            class: class.to_string(),
            bar,
            want: plan.max_trials(),
            expected: stage.class_share(class, &self.canary_name),
            counts: [0, 0],
            other: 0,
            errors: 0,
        };
        live.bar.set_message(self.live_line(&live));
        self.live
            .lock()
            .expect("narrator lock")
            .insert((entry, class.to_string()), live);
    }

    pub(super) fn tell_sample(&self, entry: EntryPoint, class: &str, sample: &Sample) {
        let mut guard = self.live.lock().expect("narrator lock");
        let Some(live) = guard.get_mut(&(entry, class.to_string())) else {
            return;
        };
        if sample.error.is_some() {
            live.errors += 1;
        }
        match sample.subset.as_deref() {
            Some(s) if s == self.subsets[0] => live.counts[0] += 1,
            Some(s) if s == self.subsets[1] => live.counts[1] += 1,
            _ => live.other += 1,
        }
        if !live.bar.is_hidden() {
            live.bar
                .set_position(live.counts.iter().sum::<u64>() + live.other);
            live.bar.set_message(self.live_line(live));
        }
    }

    pub(super) fn tell_entry_done(&self, result: &EntryReport) {
        if self.stopping() {
            return;
        }
        let live = self
            .live
            .lock()
            .expect("narrator lock")
            .remove(&(result.entry, result.class.clone()));
        if let Some(live) = live {
            live.bar.finish_and_clear();
            self.say(self.live_line(&live));
        }
        self.say(format!(
            "{:<9}{} {}",
            "",
            self.verdict(result.passed),
            result.reason
        ));
    }
}
