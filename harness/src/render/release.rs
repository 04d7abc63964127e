//! The release's verdicts beside the split tests, as lines every report format shows the same
//! way: the SLO gates of each stage, the rollbacks and their proof, the background load and its
//! transitions, and the run's other problems.

use crate::report::{EntryLoad, Report, RollbackReport};

/// Failed requests of a window listed by name; the rest are counted (all are in report.json).
const FAILURES_SHOWN: usize = 3;

/// What a group of findings is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Gate,
    Rollback,
    Load,
    Problem,
}

impl Topic {
    pub fn title(self) -> &'static str {
        match self {
            Topic::Gate => "SLO gates",
            Topic::Rollback => "Rollbacks",
            Topic::Load => "Background load and transitions",
            Topic::Problem => "Problems",
        }
    }
}

/// One verdict: a short title and the sentence that backs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub topic: Topic,
    pub passed: bool,
    /// `2. canary warm-up · gate latency (latency ≤ 1.50 × ga's)`.
    pub title: String,
    /// What was measured: estimate, threshold, interval, p-value; or the dropped requests.
    pub detail: String,
}

/// Every finding of the run, grouped by topic in this order: gates, rollbacks, load, problems.
pub fn findings(report: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    for stage in &report.stages {
        for g in &stage.gates {
            out.push(Finding {
                topic: Topic::Gate,
                passed: g.passed,
                title: format!(
                    "{}. {} · gate {} ({})",
                    stage.index + 1,
                    stage.name,
                    g.gate,
                    g.asks
                ),
                detail: g.judgement.reason.clone(),
            });
        }
    }
    for r in &report.rollbacks {
        out.push(rollback(report, r));
    }
    for load in &report.background_load {
        out.extend(load_findings(load));
    }
    // The load's failed windows are already listed as load findings.
    for p in report
        .problems
        .iter()
        .filter(|p| !p.starts_with("background load on "))
    {
        out.push(Finding {
            topic: Topic::Problem,
            passed: false,
            title: "run".into(),
            detail: p.clone(),
        });
    }
    out
}

fn rollback(report: &Report, r: &RollbackReport) -> Finding {
    let weights: Vec<String> = report
        .subsets
        .iter()
        .map(|s| format!("{s} {}", r.weights.get(s).copied().unwrap_or(0)))
        .collect();
    let checks: Vec<String> = r
        .entries
        .iter()
        .map(|e| {
            format!(
                "{}: {} of {} answers from the canary ({})",
                e.label(),
                e.counts.get(canary(report)).copied().unwrap_or(0),
                e.trials,
                if e.passed { "pass" } else { "FAIL" }
            )
        })
        .collect();
    let next = match r.resumed_at {
        Some(i) => format!("resumed at stage {}", i + 1),
        None => "the walk ended there".into(),
    };
    Finding {
        topic: Topic::Rollback,
        passed: r.verified,
        title: format!(
            "rolled back at stage {} `{}` because {}",
            r.after_stage + 1,
            r.stage_name,
            r.because
        ),
        detail: format!(
            "applied {} (routes converged in {:.2} s); zero-leak check {}: {}; {next}",
            weights.join(" / "),
            r.converge_s,
            if r.verified { "verified" } else { "FAILED" },
            checks.join("; "),
        ),
    }
}

fn canary(report: &Report) -> &str {
    report
        .subsets
        .get(1)
        .map(String::as_str)
        .unwrap_or("canary")
}

fn load_findings(load: &EntryLoad) -> Vec<Finding> {
    let l = &load.load;
    let transitions = load
        .transitions
        .iter()
        .filter(|t| t.kind == crate::load::WindowKind::Transition)
        .count();
    let mut out = vec![Finding {
        topic: Topic::Load,
        passed: load.passed(),
        title: format!(
            "background load on {}: {} requests/s through {} transitions",
            load.entry, l.rate_per_s, transitions
        ),
        detail: format!(
            "{} scheduled, {} answered ok, {} failed ({} not sent, {} cut at stop); latency from the intended send p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; at most {} dropped per window allowed",
            l.scheduled,
            l.ok,
            l.failed,
            l.not_sent,
            l.cut_at_stop,
            l.latency.p50_ms,
            l.latency.p99_ms,
            l.latency.max_ms,
            load.max_errors
        ),
    }];
    for t in load.transitions.iter().filter(|t| t.failed > 0) {
        let failed: Vec<String> = l
            .failures
            .iter()
            .filter(|f| f.window == t.window)
            .take(FAILURES_SHOWN)
            .map(|f| {
                format!(
                    "{:.2} s after the load started, {}: {}",
                    f.intended_ms / 1000.0,
                    f.subset.as_deref().unwrap_or("no subset"),
                    f.error
                )
            })
            .collect();
        let more = t.failed.saturating_sub(failed.len() as u64);
        out.push(Finding {
            topic: Topic::Load,
            passed: t.passed,
            title: format!("{} · {}", load.entry, t.name),
            detail: format!(
                "{}; {}{}",
                t.message,
                failed.join("; "),
                if more > 0 {
                    format!("; {more} more in report.json")
                } else {
                    String::new()
                }
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{LoadReport, TransitionVerdict, WindowKind};
    use crate::routing::EntryPoint;

    fn load(failed_in: &[(&str, u64)]) -> EntryLoad {
        let transitions = failed_in
            .iter()
            .enumerate()
            .map(|(i, (name, failed))| TransitionVerdict {
                window: i,
                kind: WindowKind::Transition,
                name: name.to_string(),
                requests: 10,
                failed: *failed,
                passed: *failed == 0,
                message: format!("{name} dropped {failed}"),
            })
            .collect();
        EntryLoad {
            entry: EntryPoint::Ingress,
            started_s: 0.0,
            load: LoadReport {
                rate_per_s: 10.0,
                scheduled: 30,
                // One of the two failures of window 1 made it into the list (the cap).
                failures: vec![crate::load::FailedRequest {
                    seq: 1,
                    intended_ms: 100.0,
                    latency_ms: Some(1.0),
                    service_ms: Some(1.0),
                    status: Some(503),
                    subset: Some("canary".into()),
                    stamp: None,
                    error: "HTTP 503".into(),
                    window: 1,
                }],
                ..Default::default()
            },
            transitions,
            max_errors: 0,
        }
    }

    #[test]
    fn a_load_lists_only_the_windows_that_dropped_requests() {
        let found = load_findings(&load(&[("weights → stage 1", 0), ("rollout canary", 2)]));
        assert_eq!(found.len(), 2);
        assert!(!found[0].passed);
        assert!(
            found[0].title.contains("through 2 transitions"),
            "{found:?}"
        );
        assert_eq!(found[1].title, "ingress · rollout canary");
        assert_eq!(
            found[1].detail,
            "rollout canary dropped 2; 0.10 s after the load started, canary: HTTP 503; 1 more in report.json"
        );
    }

    #[test]
    fn a_clean_load_is_one_passing_line() {
        let found = load_findings(&load(&[("weights → stage 1", 0)]));
        assert_eq!(found.len(), 1);
        assert!(found[0].passed);
        assert!(found[0].detail.starts_with("30 scheduled"), "{found:?}");
    }
}
