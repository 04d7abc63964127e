//! One split test (a stage's class on an entry point) from its plan to its verdict: the plan is
//! fixed before sampling ([`plan_test`]), the verdict takes the trials one by one in send order
//! and says when it is decided ([`Verdict::feed`]), so that sampling stops as soon as it can.
//!
//! - A 0 % or 100 % stage is a zero-leak check: it fails at the first trial of the wrong subset
//!   and passes after the planned number of trials without one.
//! - A split stage is sequential by default ([`crate::sequential`]): looks every k trials, exact
//!   size and power over the binomial path; or, with `statistics: {design: fixed}`, the exact
//!   fixed-n test of [`crate::stats`], decided once at n.

use serde::{Deserialize, Serialize};

use crate::scenario::Design;
use crate::sequential::{self, Decision, SequentialPlan};
use crate::stats::{self, Budget, CheckKind, Plan, PlanError};

/// How one test will be judged, decided before sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "design", rename_all = "snake_case")]
pub enum TestPlan {
    ZeroLeak(Plan),
    Fixed(Plan),
    Sequential(SequentialPlan),
}

impl TestPlan {
    /// The most trials the test takes.
    pub fn max_trials(&self) -> u64 {
        match self {
            TestPlan::ZeroLeak(p) | TestPlan::Fixed(p) => p.requests,
            TestPlan::Sequential(s) => s.max_requests,
        }
    }

    /// The trials a correct mesh takes on average (exact for sequential plans).
    pub fn expected_trials(&self) -> f64 {
        match self {
            TestPlan::ZeroLeak(p) | TestPlan::Fixed(p) => p.requests as f64,
            TestPlan::Sequential(s) => s.expected_requests.at_p0,
        }
    }

    pub fn expected_share(&self) -> f64 {
        match self {
            TestPlan::ZeroLeak(p) | TestPlan::Fixed(p) => p.expected_share,
            TestPlan::Sequential(s) => s.expected_share,
        }
    }

    pub fn alpha_test(&self) -> f64 {
        match self {
            TestPlan::ZeroLeak(p) | TestPlan::Fixed(p) => p.alpha_test,
            TestPlan::Sequential(s) => s.alpha_test,
        }
    }

    /// Exact P(fail | correct mesh): 0 for a zero-leak check.
    pub fn false_failure(&self) -> f64 {
        match self {
            TestPlan::ZeroLeak(p) | TestPlan::Fixed(p) => p.false_failure,
            TestPlan::Sequential(s) => s.false_failure,
        }
    }

    /// Exact power against a share off by δ (the smaller side).
    pub fn power(&self) -> f64 {
        match self {
            TestPlan::ZeroLeak(p) | TestPlan::Fixed(p) => p.power,
            TestPlan::Sequential(s) => s.power,
        }
    }

    /// Whether a correct mesh can fail this test (only those share the run's α).
    pub fn can_false_fail(&self) -> bool {
        !matches!(self, TestPlan::ZeroLeak(_))
    }

    pub fn design_name(&self) -> &'static str {
        match self {
            TestPlan::ZeroLeak(_) => "zero-leak",
            TestPlan::Fixed(_) => "fixed",
            TestPlan::Sequential(_) => "sequential",
        }
    }
}

/// Plans the test of a class whose canary share should be `share`, at `alpha_test` (the run's
/// α divided among the tests that can fail a correct mesh).
pub fn plan_test(
    share: f64,
    budget: &Budget,
    alpha_test: f64,
    design: Design,
    look_every: u64,
) -> Result<TestPlan, PlanError> {
    let plan = stats::try_plan(share, budget, alpha_test)?;
    if plan.kind == CheckKind::ZeroLeak {
        return Ok(TestPlan::ZeroLeak(plan));
    }
    match design {
        Design::Fixed => Ok(TestPlan::Fixed(plan)),
        Design::Sequential => sequential::plan_sequential(share, budget, alpha_test, look_every)
            .map(TestPlan::Sequential),
    }
}

/// The verdict of one test, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub passed: bool,
    /// Trials judged (the first `trials` routed requests by send order).
    pub trials: u64,
    pub canary: u64,
    pub observed_share: f64,
    /// Clopper–Pearson at 1 − α per test (fixed, zero-leak); the repeated interval at
    /// 1 − α / looks for a sequential verdict.
    pub interval: (f64, f64),
    /// Exact two-sided (fixed); stagewise-ordering (sequential); 1 or 0 (zero-leak).
    pub p_value: f64,
    /// Zero-leak, no leak: the leak rate ruled out at 1 − α per test.
    pub leak_bound: Option<f64>,
    /// The look (from 1) a sequential verdict stopped at, and how many it had.
    pub look: Option<(usize, usize)>,
    pub reason: String,
}

/// The state of one test while its trials arrive.
#[derive(Debug, Clone)]
pub struct Verdict {
    plan: TestPlan,
    /// Zero-leak: which side a trial must not land on (`true`: canary must get nothing).
    trials: u64,
    canary: u64,
    decided: Option<Outcome>,
}

impl Verdict {
    pub fn new(plan: TestPlan) -> Self {
        Self {
            plan,
            trials: 0,
            canary: 0,
            decided: None,
        }
    }

    pub fn plan(&self) -> &TestPlan {
        &self.plan
    }

    pub fn trials(&self) -> u64 {
        self.trials
    }

    pub fn decided(&self) -> Option<&Outcome> {
        self.decided.as_ref()
    }

    /// Takes the next trial in send order; returns the outcome once the test is decided (and
    /// ignores trials after that).
    pub fn feed(&mut self, is_canary: bool) -> Option<&Outcome> {
        if self.decided.is_some() {
            return self.decided.as_ref();
        }
        self.trials += 1;
        self.canary += u64::from(is_canary);
        let n = self.trials;
        let outcome = match &self.plan {
            TestPlan::ZeroLeak(plan) => {
                let leaked = if plan.expected_share >= 0.5 {
                    n - self.canary
                } else {
                    self.canary
                };
                (leaked > 0 || n >= plan.requests).then(|| fixed_outcome(plan, self.canary, n))
            }
            TestPlan::Fixed(plan) => {
                (n >= plan.requests).then(|| fixed_outcome(plan, self.canary, n))
            }
            TestPlan::Sequential(plan) => match plan.look_at(n) {
                Some(look) if plan.decide(look, self.canary) != Decision::Continue => {
                    Some(sequential_outcome(plan, look, self.canary))
                }
                _ => None,
            },
        };
        self.decided = outcome;
        self.decided.as_ref()
    }

    /// The outcome when the trials ran out before a decision: a failure that says how far the
    /// test got.
    pub fn undecided(&self, why: &str) -> Outcome {
        let n = self.trials;
        let share = if n == 0 {
            0.0
        } else {
            self.canary as f64 / n as f64
        };
        Outcome {
            passed: false,
            trials: n,
            canary: self.canary,
            observed_share: share,
            interval: stats::clopper_pearson(self.canary, n, 1.0 - self.plan.alpha_test()),
            p_value: 1.0,
            leak_bound: None,
            look: None,
            reason: format!(
                "undecided after {n} of at most {} trials: {why}",
                self.plan.max_trials()
            ),
        }
    }
}

fn fixed_outcome(plan: &Plan, canary: u64, n: u64) -> Outcome {
    let j = stats::judge(plan, canary, n);
    Outcome {
        passed: j.passed,
        trials: n,
        canary,
        observed_share: j.observed_share,
        interval: j.interval,
        p_value: j.p_value,
        leak_bound: j.leak_bound,
        look: None,
        reason: j.reason,
    }
}

fn sequential_outcome(plan: &SequentialPlan, look: usize, canary: u64) -> Outcome {
    let j = sequential::judge(plan, look, canary);
    Outcome {
        passed: j.passed,
        trials: j.n,
        canary,
        observed_share: j.observed_share,
        interval: j.interval,
        p_value: j.p_value,
        leak_bound: None,
        look: Some((look + 1, plan.looks.len())),
        reason: j.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn budget() -> Budget {
        Budget::default()
    }

    #[test]
    fn a_zero_leak_check_fails_at_the_first_leak() {
        let plan = plan_test(0.0, &budget(), 1.25e-5, Design::Sequential, 50).unwrap();
        assert!(!plan.can_false_fail());
        let mut v = Verdict::new(plan);
        for _ in 0..10 {
            assert!(v.feed(false).is_none());
        }
        let out = v.feed(true).unwrap().clone();
        assert!(!out.passed);
        assert_eq!(out.trials, 11);
        assert!(out.reason.contains("leak"), "{}", out.reason);
    }

    #[test]
    fn a_clean_zero_leak_check_passes_at_its_planned_n() {
        let plan = plan_test(1.0, &budget(), 1.25e-5, Design::Sequential, 50).unwrap();
        let n = plan.max_trials();
        let mut v = Verdict::new(plan);
        for i in 1..n {
            assert!(v.feed(true).is_none(), "decided early at {i}");
        }
        let out = v.feed(true).unwrap();
        assert!(out.passed && out.leak_bound.is_some());
        assert_eq!(out.trials, n);
    }

    /// The sequential verdict decides at a look, with the same answer as the plan's rule.
    #[rstest]
    #[case(0.1, true)]
    #[case(0.6, true)]
    #[case(0.1, false)]
    fn a_sequential_verdict_stops_at_the_first_deciding_look(
        #[case] share: f64,
        #[case] on_target: bool,
    ) {
        let plan = plan_test(share, &budget(), 2.5e-5, Design::Sequential, 50).unwrap();
        let TestPlan::Sequential(seq) = &plan else {
            panic!("a split plans sequentially by default")
        };
        let seq = seq.clone();
        let mut v = Verdict::new(plan);
        // A deterministic stream at the expected share (or 20 points off): every k-th trial
        // lands on the canary, k = 1 / share.
        let actual = if on_target { share } else { share + 0.2 };
        let mut acc = 0.0;
        let mut outcome = None;
        for _ in 0..seq.max_requests {
            acc += actual;
            let canary = acc >= 1.0;
            if canary {
                acc -= 1.0;
            }
            if let Some(o) = v.feed(canary) {
                outcome = Some(o.clone());
                break;
            }
        }
        let o = outcome.expect("decided by the last look");
        let (look, looks) = o.look.unwrap();
        assert_eq!(seq.looks[look - 1].n, o.trials);
        assert!(looks == seq.looks.len() && look <= looks);
        assert_eq!(seq.decide(look - 1, o.canary) == Decision::Pass, o.passed);
        assert_eq!(o.passed, on_target, "{}", o.reason);
        if on_target {
            assert!(o.trials < seq.fixed_requests, "{} trials", o.trials);
        }
    }

    #[test]
    fn a_fixed_verdict_decides_at_n() {
        let plan = plan_test(0.5, &budget(), 1.25e-5, Design::Fixed, 50).unwrap();
        let n = plan.max_trials();
        let mut v = Verdict::new(plan);
        for i in 0..n - 1 {
            assert!(v.feed(i % 2 == 0).is_none());
        }
        assert!(v.feed(false).unwrap().passed);
    }
}
