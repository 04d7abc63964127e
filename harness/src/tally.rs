//! Turns the answers of one test (a stage's class on an entry point) into counts, latencies
//! and a verdict, as they arrive.
//!
//! Answers are read in send order (a reorder buffer holds those that overtook earlier ones),
//! because the binomial model needs the judged requests to be chosen before their outcomes are
//! known. Each answer is one of:
//! - **stale**: stamped by an older route configuration (a worker thread of Envoy can serve a
//!   request with the previous configuration shortly after the admin shows the new one): left
//!   out, and reported;
//! - **unroutable**: no subset's header (no route reached a subset, or the request never got
//!   to the proxy): left out of the split, counted as an error;
//! - a **trial**: routed to a subset by the current configuration, whatever its status, and
//!   counted for that subset (a subset that fails more must not look smaller).

use std::collections::BTreeMap;

use crate::prober::Sample;
use crate::report::{EntryReport, Latency, TimeBucket};
use crate::routing::{EntryPoint, Routing};
use crate::scenario::Stage;
use crate::verdict::{Outcome, Verdict};

/// What the tally needs to know about the test.
pub struct TestContext<'a> {
    pub routing: &'a Routing,
    pub stage: &'a Stage,
    pub entry: EntryPoint,
    pub class: &'a str,
    pub target: String,
    /// The stamp the current route configuration puts on its answers.
    pub stamp: &'a str,
    /// The version each subset's app must report, when the scenario says where to read it.
    pub expected_versions: Option<BTreeMap<String, String>>,
    /// Seconds since the start of the run when sampling began.
    pub started_s: f64,
    pub max_error_rate: f64,
}

/// The samples a test judged, per subset, for the gates (latency and failures).
#[derive(Debug, Clone, Default)]
pub struct PerSubset {
    /// Latency of the answers that did not fail, in milliseconds.
    pub latency_ms: Vec<f64>,
    pub trials: u64,
    pub failed: u64,
}

/// The running tally of one test.
pub struct Tally<'a> {
    ctx: TestContext<'a>,
    verdict: Verdict,
    /// Answers that arrived before an earlier-numbered one, by number.
    waiting: BTreeMap<u64, Sample>,
    next: u64,
    /// Answers in send order up to the verdict, for the report.
    judged: Vec<Sample>,
    after_verdict: u64,
    stale: u64,
    per_subset: BTreeMap<String, PerSubset>,
}

impl<'a> Tally<'a> {
    pub fn new(ctx: TestContext<'a>, verdict: Verdict) -> Self {
        let per_subset = ctx
            .routing
            .subsets
            .iter()
            .map(|s| (s.name.clone(), PerSubset::default()))
            .collect();
        Self {
            ctx,
            verdict,
            waiting: BTreeMap::new(),
            next: 0,
            judged: Vec::new(),
            after_verdict: 0,
            stale: 0,
            per_subset,
        }
    }

    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Takes an answer in any order; returns true once the verdict is decided (the batch can
    /// stop sending).
    pub fn take(&mut self, sample: Sample) -> bool {
        if self.verdict.decided().is_some() {
            self.after_verdict += 1;
            return true;
        }
        self.waiting.insert(sample.seq, sample);
        while let Some(sample) = self.waiting.remove(&self.next) {
            self.next += 1;
            if self.verdict.decided().is_some() {
                self.after_verdict += 1;
                continue;
            }
            self.judge_one(sample);
        }
        self.verdict.decided().is_some()
    }

    fn judge_one(&mut self, sample: Sample) {
        let canary = &self.ctx.routing.subsets[1].name;
        let current = sample.stamp.as_deref() == Some(self.ctx.stamp);
        match (&sample.subset, current) {
            (Some(subset), true) if self.per_subset.contains_key(subset) => {
                let per = self.per_subset.get_mut(subset).expect("known subset");
                per.trials += 1;
                if sample.is_ok() {
                    per.latency_ms.push(sample.latency_ms);
                } else {
                    per.failed += 1;
                }
                self.verdict.feed(subset == canary);
            }
            (Some(_), true) | (None, _) => {}
            (Some(_), false) => self.stale += 1,
        }
        self.judged.push(sample);
    }

    /// The report of the test, decided or not, and the per-subset samples for the gates.
    pub fn finish(mut self, wall_time_s: f64) -> (EntryReport, BTreeMap<String, PerSubset>) {
        // Answers still waiting for an earlier number never got their turn.
        self.after_verdict += self.waiting.len() as u64;
        let ctx = &self.ctx;
        let subsets = &ctx.routing.subsets;
        let mut counts: BTreeMap<String, u64> =
            subsets.iter().map(|s| (s.name.clone(), 0)).collect();
        let mut unexpected = BTreeMap::new();
        let mut error_kinds = BTreeMap::new();
        let mut errors_by_subset = BTreeMap::new();
        let mut wrong_build: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut errors = 0u64;
        let mut unroutable = 0u64;
        for s in &self.judged {
            if let Some(e) = &s.error {
                errors += 1;
                *error_kinds.entry(e.clone()).or_insert(0) += 1;
            }
            let current = s.stamp.as_deref() == Some(ctx.stamp);
            match &s.subset {
                None => unroutable += 1,
                Some(_) if !current => {}
                Some(subset) if counts.contains_key(subset) => {
                    *counts.get_mut(subset).expect("known") += 1;
                    if s.error.is_some() {
                        *errors_by_subset.entry(subset.clone()).or_insert(0) += 1;
                    }
                    if let (Some(expected), Some(reported)) = (
                        ctx.expected_versions.as_ref().and_then(|v| v.get(subset)),
                        s.reported.as_ref(),
                    ) && reported != expected
                    {
                        *wrong_build
                            .entry(subset.clone())
                            .or_default()
                            .entry(reported.clone())
                            .or_insert(0) += 1;
                    }
                }
                Some(other) => *unexpected.entry(other.clone()).or_insert(0) += 1,
            }
        }
        let requests = self.judged.len() as u64;
        let error_rate = if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        };
        let outcome: Outcome = match self.verdict.decided() {
            Some(o) => o.clone(),
            None => self.verdict.undecided(&format!(
                "{requests} requests answered, {unroutable} of them unroutable and {} stale",
                self.stale
            )),
        };
        let unexpected_total: u64 = unexpected.values().sum();
        let (passed, reason) = if unexpected_total > 0 {
            let list: Vec<String> = unexpected
                .iter()
                .map(|(v, n)| format!("{n} from `{v}`"))
                .collect();
            (
                false,
                format!(
                    "{unexpected_total} answers came from subsets that are neither baseline nor canary ({}); {}",
                    list.join(", "),
                    outcome.reason
                ),
            )
        } else if !wrong_build.is_empty() {
            let list: Vec<String> = wrong_build
                .iter()
                .map(|(subset, versions)| {
                    let expected = ctx
                        .expected_versions
                        .as_ref()
                        .and_then(|v| v.get(subset))
                        .cloned()
                        .unwrap_or_default();
                    let seen: Vec<String> = versions
                        .iter()
                        .map(|(v, n)| format!("{v} ({n} answers)"))
                        .collect();
                    format!(
                        "subset {subset} answered as {} instead of {expected}",
                        seen.join(", ")
                    )
                })
                .collect();
            (
                false,
                format!("wrong build: {}; {}", list.join("; "), outcome.reason),
            )
        } else if error_rate > ctx.max_error_rate {
            (
                false,
                format!(
                    "{errors} of {requests} requests failed ({:.2} % > the allowed {:.2} %: {}); {}",
                    error_rate * 100.0,
                    ctx.max_error_rate * 100.0,
                    kinds(&error_kinds),
                    outcome.reason
                ),
            )
        } else {
            (outcome.passed, outcome.reason.clone())
        };
        let latency = self
            .per_subset
            .iter()
            .filter(|(_, p)| !p.latency_ms.is_empty())
            .map(|(k, p)| (k.clone(), latency(p.latency_ms.clone())))
            .collect();
        let plan = self.verdict.plan().clone();
        let report = EntryReport {
            stage: ctx.stage.index,
            stage_name: ctx.stage.name.clone(),
            entry: ctx.entry,
            class: ctx.class.to_string(),
            target: ctx.target.clone(),
            weights: ctx.stage.weights.clone(),
            expected_share: plan.expected_share(),
            plan,
            requests,
            trials: outcome.trials,
            counts,
            unexpected,
            stale: self.stale,
            unroutable,
            after_verdict: self.after_verdict,
            errors,
            error_kinds,
            errors_by_subset,
            error_rate,
            wrong_build,
            observed_share: outcome.observed_share,
            interval: outcome.interval,
            p_value: outcome.p_value,
            leak_bound: outcome.leak_bound,
            look: outcome.look,
            passed,
            reason,
            latency,
            started_s: ctx.started_s,
            wall_time_s,
            timeline: timeline(ctx.routing, &self.judged, ctx.started_s),
        };
        (report, self.per_subset)
    }
}

fn kinds(kinds: &BTreeMap<String, u64>) -> String {
    kinds
        .iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Percentiles by the nearest-rank method.
pub fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let rank = |q: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        ms[i]
    };
    Latency {
        count: n as u64,
        mean_ms: if n == 0 {
            0.0
        } else {
            ms.iter().sum::<f64>() / n as f64
        },
        p50_ms: rank(0.50),
        p90_ms: rank(0.90),
        p99_ms: rank(0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

/// Buckets answers per subset over time; about 20 buckets per test.
fn timeline(routing: &Routing, samples: &[Sample], started_s: f64) -> Vec<TimeBucket> {
    let end_ms = samples.iter().map(|s| s.at_ms).fold(0.0, f64::max);
    let width_ms = (end_ms / 20.0).max(50.0);
    let mut buckets: Vec<TimeBucket> = Vec::new();
    for s in samples {
        let i = (s.at_ms / width_ms) as usize;
        while buckets.len() <= i {
            let t_s = started_s + buckets.len() as f64 * width_ms / 1e3;
            let counts = routing
                .subsets
                .iter()
                .map(|s| (s.name.clone(), 0))
                .collect();
            buckets.push(TimeBucket {
                t_s,
                counts,
                errors: 0,
            });
        }
        let b = &mut buckets[i];
        if !s.is_ok() {
            b.errors += 1;
        } else if let Some(subset) = &s.subset
            && let Some(count) = b.counts.get_mut(subset)
        {
            *count += 1;
        }
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::Manifests;
    use crate::scenario::{Design, Scenario};
    use crate::verdict::{TestPlan, plan_test};
    use std::path::Path;

    fn routing() -> (Scenario, Routing) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
        let scenario = Scenario::load(&path).unwrap();
        let manifests = Manifests::load_all(&scenario.manifests).unwrap();
        let routing = Routing::resolve(&scenario, manifests).unwrap();
        (scenario, routing)
    }

    fn sample(seq: u64, subset: Option<&str>, stamp: &str, error: Option<&str>) -> Sample {
        Sample {
            seq,
            at_ms: seq as f64,
            latency_ms: 1.0 + seq as f64 / 100.0,
            status: Some(if error.is_some() { 500 } else { 200 }),
            subset: subset.map(str::to_string),
            stamp: Some(stamp.to_string()),
            reported: subset.map(|s| if s == "ga" { "6.14.0" } else { "6.14.1" }.to_string()),
            error: error.map(str::to_string),
        }
    }

    fn tally<'a>(
        scenario: &'a Scenario,
        routing: &'a Routing,
        stage: usize,
        design: Design,
    ) -> Tally<'a> {
        let st = &scenario.stages[stage];
        let plan = plan_test(
            st.expected_share("canary"),
            &scenario.budget,
            2.5e-5,
            design,
            50,
        )
        .unwrap();
        let expected = routing
            .subsets
            .iter()
            .map(|s| (s.name.clone(), s.version.clone().unwrap()))
            .collect();
        Tally::new(
            TestContext {
                routing,
                stage: st,
                entry: EntryPoint::Ingress,
                class: "default",
                target: "t".into(),
                stamp: "s1",
                expected_versions: Some(expected),
                started_s: 1.0,
                max_error_rate: 0.01,
            },
            crate::verdict::Verdict::new(plan),
        )
    }

    #[test]
    fn answers_are_judged_in_send_order_whatever_order_they_arrive_in() {
        let (scenario, routing) = routing();
        let mut t = tally(&scenario, &routing, 0, Design::Sequential);
        // A canary answer numbered 5 arrives first, but the zero-leak check must not see it
        // before requests 0..4.
        assert!(!t.take(sample(5, Some("canary"), "s1", None)));
        assert_eq!(t.verdict().trials(), 0);
        for seq in 0..5 {
            t.take(sample(seq, Some("ga"), "s1", None));
        }
        // Now 0..=5 are in: the leak at 5 decides.
        assert!(t.verdict().decided().is_some());
        assert_eq!(t.verdict().trials(), 6);
        t.take(sample(6, Some("ga"), "s1", None));
        let (report, _) = t.finish(0.1);
        assert!(!report.passed);
        assert_eq!(report.after_verdict, 1);
        assert_eq!(report.counts["canary"], 1);
    }

    #[test]
    fn stale_and_unroutable_answers_are_left_out_and_failed_ones_count_for_their_subset() {
        let (scenario, routing) = routing();
        let mut t = tally(&scenario, &routing, 0, Design::Sequential);
        let n = t.verdict().plan().max_trials();
        let mut seq = 0;
        let push = |t: &mut Tally, s: Sample| {
            t.take(s);
        };
        // A stale canary answer (the old configuration) is no leak.
        push(&mut t, sample(seq, Some("canary"), "s0", None));
        seq += 1;
        // An unroutable failure is an error, not a trial.
        let mut refused = sample(seq, None, "s1", Some("connection refused or reset"));
        refused.stamp = None;
        push(&mut t, refused);
        seq += 1;
        // A failed GA answer is a trial of GA.
        push(&mut t, sample(seq, Some("ga"), "s1", Some("HTTP 500")));
        seq += 1;
        for _ in 1..n {
            push(&mut t, sample(seq, Some("ga"), "s1", None));
            seq += 1;
        }
        let (report, per) = t.finish(1.0);
        assert_eq!(report.stale, 1);
        assert_eq!(report.unroutable, 1);
        assert_eq!(report.trials, n);
        assert_eq!(report.counts["ga"], n);
        assert_eq!(report.errors, 2);
        assert_eq!(report.errors_by_subset["ga"], 1);
        assert_eq!(per["ga"].failed, 1);
        assert_eq!(per["ga"].latency_ms.len() as u64, n - 1);
        // 2 of n + 2 requests failed: above 1 %.
        assert!(
            !report.passed && report.reason.contains("requests failed"),
            "{}",
            report.reason
        );
        assert!(matches!(report.plan, TestPlan::ZeroLeak(_)));
    }

    #[test]
    fn a_subset_running_the_wrong_build_fails_with_its_own_reason() {
        let (scenario, routing) = routing();
        let mut t = tally(&scenario, &routing, 3, Design::Sequential);
        let n = t.verdict().plan().max_trials();
        for seq in 0..n {
            let mut s = sample(seq, Some("canary"), "s1", None);
            s.reported = Some("6.14.0".into());
            t.take(s);
        }
        let (report, _) = t.finish(1.0);
        assert!(!report.passed);
        assert!(
            report.reason.starts_with(&format!(
                "wrong build: subset canary answered as 6.14.0 ({n} answers) instead of 6.14.1"
            )),
            "{}",
            report.reason
        );
    }

    #[test]
    fn too_few_trials_are_an_undecided_failure() {
        let (scenario, routing) = routing();
        let mut t = tally(&scenario, &routing, 1, Design::Fixed);
        for seq in 0..100 {
            t.take(sample(
                seq,
                Some(if seq % 10 == 0 { "canary" } else { "ga" }),
                "s1",
                None,
            ));
        }
        let (report, _) = t.finish(1.0);
        assert!(!report.passed);
        assert!(
            report.reason.contains("undecided after 100"),
            "{}",
            report.reason
        );
    }

    #[test]
    fn latency_percentiles_by_nearest_rank() {
        let l = latency((1..=100).map(f64::from).collect());
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(l.count, 100);
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(latency(vec![]).count, 0);
    }
}
