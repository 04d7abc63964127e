//! The tutorial's second half as the run goes: each stage's SLO gates, the rollback a failed
//! gate triggers and its proof, and the patched build rolled out before the walk goes on.

use harness::mesh::Rollout;
use harness::report::{RollbackReport, StageReport};
use harness::scenario::Stage;

use super::narrator::Narrator;

impl Narrator {
    pub(super) fn tell_gates(&self, stage: &StageReport) {
        for g in &stage.gates {
            self.say(format!(
                "{:<9}{} gate `{}` ({}): {}",
                "",
                self.verdict(g.passed),
                g.gate,
                g.asks,
                g.judgement.reason
            ));
        }
        let slower = stage
            .gates
            .iter()
            .any(|g| !g.passed && g.asks.contains(" × "));
        if slower {
            self.say(format!(
                "The {} responds slower than the {}: the SLA is not met, so the release goes back.",
                self.subsets[1], self.subsets[0]
            ));
        }
    }

    pub(super) fn tell_rollout(&self, stage: &Stage, rollout: &Rollout) {
        if self.stopping() {
            return;
        }
        self.section(
            &format!("stage {}/{}:", stage.index + 1, self.stages),
            &format!("ship a patched {} build", rollout.subset),
        );
        self.say(format!(
            "A new build of `{}`: {} (as the tutorial's 0.2.0 → 0.2.1). It is rolled out before \
             the weights change, and from now on every answer of `{}` must report {}.",
            rollout.subset,
            rollout.image,
            rollout.subset,
            rollout
                .version()
                .unwrap_or_else(|| "its new version".into())
        ));
    }

    pub(super) fn tell_rollback(&self, rollback: &RollbackReport) {
        if self.stopping() {
            return;
        }
        self.section(
            "",
            &format!("revert: roll back after `{}`", rollback.stage_name),
        );
        self.say(format!(
            "The weights go back to {} ({:.2} s until every proxy routed with them).",
            self.weights_text(&rollback.weights),
            rollback.converge_s
        ));
        for e in &rollback.entries {
            self.say(format!(
                "{:<9}{} {}: {} of {} answers from the {}",
                "",
                self.verdict(e.passed),
                e.label(),
                e.counts.get(&self.subsets[1]).copied().unwrap_or(0),
                e.trials,
                self.subsets[1]
            ));
        }
        self.say(if rollback.verified {
            format!(
                "Rolled back and proven: the {} gets no traffic.",
                self.subsets[1]
            )
        } else {
            format!(
                "The rollback did NOT take the {} out of the traffic.",
                self.subsets[1]
            )
        });
    }
}
