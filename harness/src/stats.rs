//! Exact binomial statistics for judging traffic splits.
//!
//! Weighted routing sends every request to the canary independently with probability `p`, so
//! the canary count of `n` answers is exactly `Binomial(n, p)`. Everything here is computed from
//! that model rather than from a normal approximation, because the harness promises two hard
//! numbers per run: a correct mesh fails at most with probability `alpha` (split over all tests
//! with Bonferroni), and a stage that is off by `delta` or more is caught with probability at
//! least `1 - beta`. Approximations are only used for scale in messages and suggestions.
//!
//! The flow is: [`try_plan`] before sampling (how many answers, which canary counts pass), then
//! [`judge`] after sampling (verdict plus the figures a human needs to trust it). Planning is
//! bounded: a test never plans more than [`MAX_REQUESTS_PER_TEST`] requests. The sequential
//! design in [`crate::sequential`] builds on the same budget and usually needs far fewer.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, Binomial, ContinuousCDF, Discrete, DiscreteCDF};
use statrs::function::erf::erfc_inv;
use statrs::function::gamma::ln_gamma;

/// Shares this close to 0 or 1 come from weights such as 0/100 and mean "no traffic at all";
/// treating them as exact avoids planning a split test for a floating-point crumb.
const SHARE_EPS: f64 = 1e-12;

/// Relative tolerance when comparing outcome probabilities in the two-sided p-value, so that
/// mathematically tied outcomes (e.g. `k` and `n - k` at `p = 0.5`) are not split by rounding.
const TIE_TOLERANCE: f64 = 1e-7;

/// Most requests one test may plan. The prober allocates its samples up front and a run has to
/// finish in minutes, so a budget that needs more is refused ([`try_plan`]) instead of planning
/// a test that cannot run (δ = 1e-4 would need well over a billion requests).
pub const MAX_REQUESTS_PER_TEST: u64 = 250_000;

/// Slack when comparing the Neyman–Pearson power with `1 - beta` in [`requests_lower_bound`],
/// so that rounding can only make the bound smaller, never larger than the truth.
const LOWER_BOUND_SLACK: f64 = 1e-9;

/// Why a test cannot be planned. Every variant carries the figures and a fix a person can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanError {
    #[error("invalid budget: {message}")]
    InvalidBudget { message: String },
    /// Even the best possible test of this size needs more requests than one test may send.
    #[error(
        "the budget needs at least {needed_at_least} requests for one test (normal estimate \
         {estimate}), more than the cap of {cap}; {fix}"
    )]
    TooManyRequests {
        /// A proven lower bound: no test with this size and power can use fewer.
        needed_at_least: u64,
        /// The normal-approximation estimate, for scale.
        estimate: u64,
        cap: u64,
        fix: String,
    },
    /// Planning itself would take more computation than allowed (sequential designs).
    #[error(
        "planning this design takes about {work_needed} DP cell updates, more than the bound of \
         {work_bound} (up to {max_requests} requests in {looks} looks); {fix}"
    )]
    TooMuchWork {
        work_needed: u64,
        work_bound: u64,
        max_requests: u64,
        looks: u64,
        fix: String,
    },
    /// The search ended without a design that meets the budget.
    #[error("no design meets the budget: {reason}; {fix}")]
    NoDesign { reason: String, fix: String },
}

/// Error budget and effect size of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Probability that a correct mesh fails anywhere in the run.
    pub alpha: f64,
    /// Probability of missing a stage that is off by `delta` (per test and direction).
    pub beta: f64,
    /// Smallest error of the canary share (as a fraction) that must be caught.
    pub delta: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            alpha: 1e-4,
            beta: 1e-3,
            delta: 0.05,
        }
    }
}

impl Budget {
    /// Checks 0 < alpha < 1, 0 < beta < 1 and 0 < delta < 0.5.
    ///
    /// `delta` stays below one half so that at least one of `p0 ± delta` is a share that can
    /// exist, whatever `p0` is.
    pub fn validate(&self) -> Result<(), String> {
        check_open("alpha", self.alpha, 1.0)?;
        check_open("beta", self.beta, 1.0)?;
        check_open("delta", self.delta, 0.5)
    }

    /// [`plan`] cannot report errors, so a field that fails [`Budget::validate`] falls back to
    /// its default instead of producing a meaningless plan. Callers should validate first.
    fn sanitized(&self) -> Budget {
        let default = Budget::default();
        let pick = |value: f64, high: f64, fallback: f64| {
            if value > 0.0 && value < high {
                value
            } else {
                fallback
            }
        };
        Budget {
            alpha: pick(self.alpha, 1.0, default.alpha),
            beta: pick(self.beta, 1.0, default.beta),
            delta: pick(self.delta, 0.5, default.delta),
        }
    }
}

fn check_open(name: &str, value: f64, high: f64) -> Result<(), String> {
    // Written so that NaN fails too.
    if value > 0.0 && value < high {
        Ok(())
    } else {
        Err(format!("{name} must be in (0, {high}), got {value}"))
    }
}

/// Which statistical question a test asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Both subsets get traffic: is the canary share compatible with `p0`?
    Split,
    /// One subset must get nothing (0 % or 100 % stage): did anything leak?
    ZeroLeak,
}

/// How one test (one stage on one entry point) will be judged, decided before sampling.
///
/// Fixing the acceptance region up front keeps the verdict a plain range check and makes the
/// error rates stated here the real ones, not post-hoc figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub kind: CheckKind,
    /// p0, canary share in [0, 1].
    pub expected_share: f64,
    /// n: valid (non-error) answers to collect; for a plan that meets its budget, the smallest
    /// that does (see [`try_plan`]).
    pub requests: u64,
    /// α for this one test.
    pub alpha_test: f64,
    pub beta: f64,
    pub delta: f64,
    /// Acceptance region of canary counts, inclusive.
    pub accept_low: u64,
    pub accept_high: u64,
    /// Exact P(reject | p0) for this n (0 for zero-leak).
    pub false_failure: f64,
    /// Exact minimum power over p0 ± δ inside [0, 1].
    pub power: f64,
}

/// Plans the test of one stage on one entry point.
///
/// `tests_in_run` is the number of tests sharing the run's `alpha` (stages × entry points);
/// zero is treated as one. The design is [`try_plan`]'s. `plan` cannot report errors, so a field
/// of the budget that fails [`Budget::validate`] falls back to its default, and a budget that
/// needs more than [`MAX_REQUESTS_PER_TEST`] requests gets the exact test at the cap, whose
/// `power` then states the lower power it really has. Callers should use [`try_plan`], which
/// refuses such budgets with the figures instead.
pub fn plan(expected_share: f64, budget: &Budget, tests_in_run: usize) -> Plan {
    let budget = budget.sanitized();
    let alpha_test = budget.alpha / tests_in_run.max(1) as f64;
    let p0 = snap_share(expected_share);
    plan_capped(p0, &budget, alpha_test, MAX_REQUESTS_PER_TEST)
        .unwrap_or_else(|_| plan_at(p0, alpha_test, &budget, MAX_REQUESTS_PER_TEST))
}

/// Plans one test at significance `alpha_test`: the caller splits the run's alpha over the tests
/// that can fail a correct mesh (zero-leak checks cannot).
///
/// A split stage (0 < p0 < 1) gets the smallest `n` such that the exact two-sided test at
/// `alpha_test` has exact size `<= alpha_test` and exact power `>= 1 - beta` against
/// `p0 - delta` and `p0 + delta` (those inside [0, 1]). Exact power is a sawtooth in `n`, so no
/// bisection can find that size: every `n` is checked upwards from [`requests_lower_bound`],
/// below which no test at all reaches the power, so the first size that works is the smallest.
/// A 0 % or 100 % stage is a zero-leak check that needs the smallest `n` with
/// `(1 - delta)^n <= beta`.
///
/// Refuses an invalid budget, and one that needs more than [`MAX_REQUESTS_PER_TEST`] requests
/// (with the proven minimum and a larger `delta` that would fit).
pub fn try_plan(expected_share: f64, budget: &Budget, alpha_test: f64) -> Result<Plan, PlanError> {
    budget
        .validate()
        .and_then(|()| check_open("alpha_test", alpha_test, 1.0))
        .map_err(|message| PlanError::InvalidBudget { message })?;
    plan_capped(
        snap_share(expected_share),
        budget,
        alpha_test,
        MAX_REQUESTS_PER_TEST,
    )
}

fn plan_capped(p0: f64, budget: &Budget, alpha_test: f64, cap: u64) -> Result<Plan, PlanError> {
    if p0 == 0.0 || p0 == 1.0 {
        zero_leak_plan(p0, alpha_test, budget, cap)
    } else {
        split_plan(p0, alpha_test, budget, cap, |n| {
            acceptance_region(n, p0, alpha_test)
        })
    }
}

/// The test with exactly `n` requests, whatever power that gives: [`plan`]'s fallback.
fn plan_at(p0: f64, alpha_test: f64, budget: &Budget, n: u64) -> Plan {
    if p0 == 0.0 || p0 == 1.0 {
        return zero_leak_plan_at(p0, alpha_test, budget, n);
    }
    let alternatives = alternatives(p0, budget.delta);
    let (low, high) = acceptance_region(n, p0, alpha_test);
    split_figures(p0, alpha_test, budget, &alternatives, n, low, high)
}

fn zero_leak_plan(p0: f64, alpha_test: f64, budget: &Budget, cap: u64) -> Result<Plan, PlanError> {
    let n = zero_leak_requests(budget.beta, budget.delta);
    if n > cap {
        return Err(PlanError::TooManyRequests {
            needed_at_least: n,
            estimate: n,
            cap,
            fix: fix_for_cap(p0, alpha_test, budget, cap),
        });
    }
    Ok(zero_leak_plan_at(p0, alpha_test, budget, n))
}

fn zero_leak_plan_at(p0: f64, alpha_test: f64, budget: &Budget, n: u64) -> Plan {
    let (accept_low, accept_high) = if p0 == 0.0 { (0, 0) } else { (n, n) };
    Plan {
        kind: CheckKind::ZeroLeak,
        expected_share: p0,
        requests: n,
        alpha_test,
        beta: budget.beta,
        delta: budget.delta,
        accept_low,
        accept_high,
        false_failure: 0.0,
        power: 1.0 - (1.0 - budget.delta).powf(n as f64),
    }
}

/// Smallest `n` such that a leak rate of `delta` shows at least one leak with probability
/// `>= 1 - beta`, i.e. `(1 - delta)^n <= beta`. The closed form is corrected by a couple of
/// steps so rounding cannot put it off by one.
fn zero_leak_requests(beta: f64, delta: f64) -> u64 {
    let keep = 1.0 - delta;
    let miss = |n: u64| keep.powf(n as f64);
    let mut n = (beta.ln() / keep.ln()).ceil().max(1.0) as u64;
    while miss(n) > beta {
        n += 1;
    }
    while n > 1 && miss(n - 1) <= beta {
        n -= 1;
    }
    n
}

/// The split test with `n` requests and acceptance region `low..=high`, with its exact figures.
fn split_figures(
    p0: f64,
    alpha_test: f64,
    budget: &Budget,
    alternatives: &[f64],
    n: u64,
    low: u64,
    high: u64,
) -> Plan {
    let power = alternatives
        .iter()
        .map(|&p1| rejection_probability(n, low, high, p1))
        .fold(1.0, f64::min);
    Plan {
        kind: CheckKind::Split,
        expected_share: p0,
        requests: n,
        alpha_test,
        beta: budget.beta,
        delta: budget.delta,
        accept_low: low,
        accept_high: high,
        false_failure: rejection_probability(n, low, high, p0),
        power,
    }
}

/// The smallest `n` in `[requests_lower_bound, cap]` whose test with acceptance region
/// `region(n)` meets the budget exactly. Generic over the region so that a test can check that
/// a wrong region ends in an error rather than a search without end.
fn split_plan(
    p0: f64,
    alpha_test: f64,
    budget: &Budget,
    cap: u64,
    region: impl Fn(u64) -> (u64, u64),
) -> Result<Plan, PlanError> {
    let alternatives = alternatives(p0, budget.delta);
    let lower =
        capped_lower_bound(p0, &alternatives, alpha_test, budget.beta, cap).ok_or_else(|| {
            PlanError::TooManyRequests {
                needed_at_least: lower_bound(p0, &alternatives, alpha_test, budget.beta),
                estimate: normal_estimate(p0, &alternatives, alpha_test, budget),
                cap,
                fix: fix_for_cap(p0, alpha_test, budget, cap),
            }
        })?;
    for n in lower.max(1)..=cap {
        let (low, high) = region(n);
        if low > high || high > n {
            return Err(PlanError::NoDesign {
                reason: format!(
                    "the acceptance region {low}–{high} for {n} requests is not a range of \
                     counts out of {n}"
                ),
                fix: "this is a bug in the planner; please report it with the budget".to_string(),
            });
        }
        let plan = split_figures(p0, alpha_test, budget, &alternatives, n, low, high);
        if plan.false_failure <= alpha_test && plan.power >= 1.0 - budget.beta {
            return Ok(plan);
        }
    }
    Err(PlanError::NoDesign {
        reason: format!(
            "no size from the proven minimum of {lower} up to the cap of {cap} requests gives \
             the exact test size <= {} and power >= {}",
            format_alpha(alpha_test),
            1.0 - budget.beta
        ),
        fix: fix_for_cap(p0, alpha_test, budget, cap),
    })
}

/// Searched this far for [`requests_lower_bound`]; a bound beyond is reported as this value.
const LOWER_BOUND_LIMIT: u64 = 1 << 34;

/// A proven lower bound on the requests of any test of `expected_share` at size `alpha_test`
/// with power `1 - beta` against both shares `p0 ± delta` inside [0, 1], fixed-size or
/// sequential (for a sequential design, on its maximum number of requests).
///
/// By the Neyman–Pearson lemma no test of size `alpha_test` is more powerful against one
/// alternative than the randomized one-sided likelihood-ratio test, so the bound is the smallest
/// `n` at which that test reaches the power against each alternative. Its power never falls as
/// `n` grows (a test may ignore a request), so bisection finds it. Bounds beyond 2^34 are
/// reported as 2^34. Zero-leak stages get their exact size.
pub fn requests_lower_bound(expected_share: f64, budget: &Budget, alpha_test: f64) -> u64 {
    let budget = budget.sanitized();
    let p0 = snap_share(expected_share);
    if p0 == 0.0 || p0 == 1.0 {
        return zero_leak_requests(budget.beta, budget.delta);
    }
    let alternatives = alternatives(p0, budget.delta);
    lower_bound(p0, &alternatives, alpha_test, budget.beta)
}

fn lower_bound(p0: f64, alternatives: &[f64], alpha: f64, beta: f64) -> u64 {
    let target = 1.0 - beta - LOWER_BOUND_SLACK;
    alternatives
        .iter()
        .map(|&p1| {
            let works = |n: u64| most_powerful_power(n, p0, p1, alpha) >= target;
            // Doubling first keeps every power evaluation near the answer's size.
            let mut high = 1u64;
            while high < LOWER_BOUND_LIMIT && !works(high) {
                high = (high * 2).min(LOWER_BOUND_LIMIT);
            }
            first_true(high / 2 + 1, high, works).unwrap_or(LOWER_BOUND_LIMIT)
        })
        .fold(1, u64::max)
}

/// [`lower_bound`] if it is at most `cap`.
fn capped_lower_bound(
    p0: f64,
    alternatives: &[f64],
    alpha: f64,
    beta: f64,
    cap: u64,
) -> Option<u64> {
    let target = 1.0 - beta - LOWER_BOUND_SLACK;
    let mut bound = 1;
    for &p1 in alternatives {
        let works = |n: u64| most_powerful_power(n, p0, p1, alpha) >= target;
        bound = bound.max(first_true(1, cap, works)?);
    }
    Some(bound)
}

/// Power at `p1` of the most powerful level-`alpha` test of `p0` against `p1` with `n`
/// requests: the Neyman–Pearson test, which rejects the counts beyond a cut-off on `p1`'s side
/// and the cut-off itself with the probability that makes its size exactly `alpha`.
fn most_powerful_power(n: u64, p0: f64, p1: f64, alpha: f64) -> f64 {
    if p1 < p0 {
        // Counting GA answers instead turns a lower alternative into an upper one.
        return most_powerful_power(n, 1.0 - p0, 1.0 - p1, alpha);
    }
    let Some(null) = ExactBinomial::new(n, p0) else {
        // Claiming full power can only lower the bound.
        return 1.0;
    };
    let null_tail = |x: u64| match x {
        0 => 1.0,
        x if x > n => 0.0,
        x => null.sf(x - 1),
    };
    // Reject every count >= cut; tail(n + 1) = 0 <= alpha, so the cut exists.
    let cut = first_true(0, n + 1, |x| null_tail(x) <= alpha).unwrap_or(n + 1);
    let at_cut = |dist: &ExactBinomial| dist.ln_pmf(cut - 1).exp();
    let randomized = if cut == 0 {
        0.0
    } else {
        ((alpha - null_tail(cut)) / at_cut(&null)).clamp(0.0, 1.0)
    };
    if p1 >= 1.0 {
        // All answers are canary: only the count n occurs.
        return if cut <= n {
            1.0
        } else if cut == n + 1 {
            randomized
        } else {
            0.0
        };
    }
    let Some(alt) = ExactBinomial::new(n, p1) else {
        return 1.0;
    };
    let above = match cut {
        0 => 1.0,
        x if x > n => 0.0,
        x => alt.sf(x - 1),
    };
    let edge = if cut == 0 { 0.0 } else { at_cut(&alt) };
    (above + randomized * edge).min(1.0)
}

/// The fix for a budget beyond `cap`, with [`larger_delta`]'s suggestion.
fn fix_for_cap(p0: f64, alpha_test: f64, budget: &Budget, cap: u64) -> String {
    match larger_delta(p0, alpha_test, budget, cap) {
        Some(delta) => format!(
            "use a larger delta (about {} or more fits), or a larger alpha or beta",
            trim_zeros(format!("{delta:.12}"))
        ),
        None => "use a larger alpha or beta".to_string(),
    }
}

/// The smallest `delta` (two significant digits, rounded up) whose normal-approximation size
/// fits in 90 % of `cap`; `None` when not even `delta` = 0.49 fits.
fn larger_delta(p0: f64, alpha_test: f64, budget: &Budget, cap: u64) -> Option<f64> {
    let fits = |delta: f64| {
        let n = if p0 == 0.0 || p0 == 1.0 {
            zero_leak_requests(budget.beta, delta)
        } else {
            let widened = Budget { delta, ..*budget };
            normal_estimate(p0, &alternatives(p0, delta), alpha_test, &widened)
        };
        (n as f64) <= 0.9 * cap as f64
    };
    let (mut low, mut high) = (budget.delta, 0.49);
    if !fits(high) {
        return None;
    }
    for _ in 0..60 {
        let mid = (low + high) / 2.0;
        if fits(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    let scale = 10f64.powi(1 - high.log10().floor() as i32);
    Some(((high * scale).ceil() / scale).min(0.49))
}

/// The shares `p0 ± delta` that can exist; a stage off by delta in a direction that would
/// leave [0, 1] is impossible and needs no power.
pub(crate) fn alternatives(p0: f64, delta: f64) -> Vec<f64> {
    [p0 - delta, p0 + delta]
        .into_iter()
        .filter(|p| (-SHARE_EPS..=1.0 + SHARE_EPS).contains(p))
        .map(|p| p.clamp(0.0, 1.0))
        .collect()
}

/// Normal-approximation sample size, for scale in errors and the suggested larger delta:
/// `n ≈ ((z_{α/2}·sqrt(p0(1−p0)) + z_β·sqrt(p1(1−p1))) / δ)²`, worst direction.
fn normal_estimate(p0: f64, alternatives: &[f64], alpha_test: f64, budget: &Budget) -> u64 {
    let z_alpha = upper_normal_quantile(alpha_test / 2.0);
    let z_beta = upper_normal_quantile(budget.beta);
    let worst = alternatives
        .iter()
        .map(|&p1| {
            let spread = z_alpha * (p0 * (1.0 - p0)).sqrt() + z_beta * (p1 * (1.0 - p1)).sqrt();
            (spread / budget.delta).powi(2)
        })
        .fold(1.0, f64::max);
    worst.ceil().min(1e15) as u64
}

/// `z` with `P(Z > z) = tail` for a standard normal `Z`.
fn upper_normal_quantile(tail: f64) -> f64 {
    std::f64::consts::SQRT_2 * erfc_inv(2.0 * tail)
}

/// Canary counts the exact two-sided test at level `alpha` accepts out of `n`: exactly those
/// whose p-value exceeds `alpha`.
///
/// The p-value only depends on how likely the count is, and binomial probabilities rise up to
/// the mode and fall after it, so the accepted counts form one interval around the mode. Its
/// ends are found by walking from a normal-approximation guess, checking each step with the
/// same p-value function [`judge`] reports, so the region and the reported p-value agree.
fn acceptance_region(n: u64, p0: f64, alpha: f64) -> (u64, u64) {
    let p0 = snap_share(p0);
    if p0 == 0.0 {
        return (0, 0);
    }
    if p0 == 1.0 {
        return (n, n);
    }
    let mode = binomial_mode(n, p0);
    let accepted = |k: u64| binomial_two_sided_p(k, n, p0) > alpha;
    if !accepted(mode) {
        // Only when alpha >= 1, where every count is rejected; inclusive bounds cannot express
        // an empty region, so accept just the mode.
        return (mode, mode);
    }
    let z = upper_normal_quantile(alpha / 2.0).max(0.0);
    let mean = n as f64 * p0;
    let sd = (mean * (1.0 - p0)).sqrt();

    let mut low = ((mean - z * sd).floor().max(0.0) as u64).min(mode);
    while low > 0 && accepted(low - 1) {
        low -= 1;
    }
    while !accepted(low) {
        low += 1;
    }

    let mut high = ((mean + z * sd).ceil().min(n as f64) as u64).max(mode);
    while high < n && accepted(high + 1) {
        high += 1;
    }
    while !accepted(high) {
        high -= 1;
    }
    (low, high)
}

/// Exact probability that `Binomial(n, p)` lands outside `[low, high]`.
fn rejection_probability(n: u64, low: u64, high: u64, p: f64) -> f64 {
    let p = snap_share(p);
    if p == 0.0 {
        return if low > 0 { 1.0 } else { 0.0 };
    }
    if p == 1.0 {
        return if high < n { 1.0 } else { 0.0 };
    }
    let Some(dist) = ExactBinomial::new(n, p) else {
        return 1.0;
    };
    let below = if low > 0 { dist.cdf(low - 1) } else { 0.0 };
    let above = if high < n { dist.sf(high) } else { 0.0 };
    (below + above).min(1.0)
}

/// `Binomial(n, p)` with tail probabilities that stay accurate for large `n`.
///
/// statrs computes the tails with an incomplete-beta continued fraction capped at 140 terms,
/// which is accurate in the tails (the part the tests' error rates depend on) but loses
/// precision near the mean once `n` reaches about a million (a relative error of 5e-4 at
/// n = 10^6 and far worse at 10^7). Near the mean of a large `n` the probabilities are therefore
/// summed term by term instead, which costs a few standard deviations' worth of terms.
struct ExactBinomial {
    dist: Binomial,
    n: u64,
    p: f64,
    mean: f64,
    sd: f64,
}

impl ExactBinomial {
    /// Below this `n` statrs is accurate everywhere (relative error under 1e-9 at the mean).
    const SUMMATION_N: u64 = 50_000;
    /// Beyond this many standard deviations from the mean statrs is accurate for any `n`.
    const SUMMATION_Z: f64 = 2.5;

    fn new(n: u64, p: f64) -> Option<Self> {
        let dist = Binomial::new(p, n).ok()?;
        let mean = n as f64 * p;
        Some(ExactBinomial {
            dist,
            n,
            p,
            mean,
            sd: (mean * (1.0 - p)).sqrt(),
        })
    }

    fn ln_pmf(&self, k: u64) -> f64 {
        self.dist.ln_pmf(k)
    }

    fn near_mean(&self, k: u64) -> bool {
        self.n > Self::SUMMATION_N && (k as f64 - self.mean).abs() < Self::SUMMATION_Z * self.sd
    }

    /// P(X <= k).
    fn cdf(&self, k: u64) -> f64 {
        if self.near_mean(k) {
            self.sum_down_to_zero(k)
        } else {
            self.dist.cdf(k)
        }
    }

    /// P(X > k).
    fn sf(&self, k: u64) -> f64 {
        if self.near_mean(k) {
            (1.0 - self.sum_down_to_zero(k)).max(0.0)
        } else {
            self.dist.sf(k)
        }
    }

    /// P(X <= k) as a sum from `k` downwards, each term from the previous one by the ratio
    /// pmf(j - 1) / pmf(j) = j (1 - p) / ((n - j + 1) p), until the terms no longer matter.
    fn sum_down_to_zero(&self, k: u64) -> f64 {
        let k = k.min(self.n);
        let mut term = self.ln_pmf(k).exp();
        let mut sum = term;
        let odds = (1.0 - self.p) / self.p;
        let mut j = k;
        while j > 0 {
            term *= j as f64 * odds / (self.n - j + 1) as f64;
            sum += term;
            j -= 1;
            if (j as f64) < self.mean && term < sum * 1e-17 {
                break;
            }
        }
        sum.min(1.0)
    }
}

/// A mode of `Binomial(n, p)`: probabilities do not decrease up to it and do not increase after.
fn binomial_mode(n: u64, p: f64) -> u64 {
    (((n + 1) as f64 * p).floor().max(0.0) as u64).min(n)
}

/// Weights arrive as fractions such as 10/100; values outside [0, 1] are clamped and NaN is
/// read as 0 so that no input can make the distributions fail to build.
pub(crate) fn snap_share(p: f64) -> f64 {
    if p.is_nan() || p < SHARE_EPS {
        0.0
    } else if p > 1.0 - SHARE_EPS {
        1.0
    } else {
        p
    }
}

/// The verdict on one test, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub passed: bool,
    /// k
    pub canary: u64,
    /// n actually judged.
    pub total: u64,
    pub observed_share: f64,
    /// Clopper–Pearson at 1 − alpha_test.
    pub interval: (f64, f64),
    /// Exact two-sided; for zero-leak, P(at least this many leaks | p0): 1 or 0.
    pub p_value: f64,
    /// Zero-leak and no leak: the leak rate ruled out at 1 − alpha_test, 1 − alpha_test^(1/n).
    pub leak_bound: Option<f64>,
    /// One human sentence: why it passed or failed, with figures.
    pub reason: String,
}

/// Judges `canary` canary answers out of `total` valid answers against `plan`.
///
/// When fewer or more answers than planned were collected, the acceptance region is recomputed
/// for the actual total at the plan's `alpha_test`, so the false-failure guarantee still holds
/// (the power guarantee only holds for the planned count).
pub fn judge(plan: &Plan, canary: u64, total: u64) -> Judgement {
    let alpha = plan.alpha_test;
    let confidence = 1.0 - alpha;
    let level = confidence_percent(alpha);
    if total == 0 {
        return Judgement {
            passed: false,
            canary,
            total,
            observed_share: 0.0,
            interval: (0.0, 1.0),
            p_value: 1.0,
            leak_bound: None,
            reason: "no valid answers were collected, so the split cannot be judged".to_string(),
        };
    }
    if canary > total {
        return Judgement {
            passed: false,
            canary,
            total,
            observed_share: 1.0,
            interval: (0.0, 1.0),
            p_value: 0.0,
            leak_bound: None,
            reason: format!(
                "invalid tally: {canary} canary answers out of only {total} valid answers"
            ),
        };
    }

    let observed_share = canary as f64 / total as f64;
    let interval = clopper_pearson(canary, total, confidence);
    let p0 = snap_share(plan.expected_share);
    let expected = percent_setting(p0);

    match plan.kind {
        CheckKind::ZeroLeak => {
            // At 0 % any canary answer is a leak; at 100 % any GA answer is.
            let (leaks, wrong) = if p0 >= 0.5 {
                (total - canary, "GA")
            } else {
                (canary, "canary")
            };
            let passed = leaks == 0;
            let leak_bound = passed.then(|| 1.0 - alpha.powf(1.0 / total as f64));
            let setting = if wrong == "GA" {
                format!("{expected} % canary")
            } else {
                format!("{expected} %")
            };
            let reason = match leak_bound {
                Some(bound) => format!(
                    "no request in {total} reached {wrong} (expected {setting}): rules out a \
                     leak rate above {} % at {level} % confidence",
                    percent(bound, true)
                ),
                None => format!(
                    "{leaks} of {total} requests reached {wrong} at an expected {setting}: leak"
                ),
            };
            Judgement {
                passed,
                canary,
                total,
                observed_share,
                interval,
                p_value: if passed { 1.0 } else { 0.0 },
                leak_bound,
                reason,
            }
        }
        CheckKind::Split => {
            let (low, high) = if total == plan.requests {
                (plan.accept_low, plan.accept_high)
            } else {
                acceptance_region(total, p0, alpha)
            };
            let passed = low <= canary && canary <= high;
            let p_value = binomial_two_sided_p(canary, total, p0);
            let observed = format!(
                "canary share {} % ({level} % CI {}–{} %)",
                percent(observed_share, false),
                percent(interval.0, false),
                percent(interval.1, false)
            );
            let reason = if passed {
                format!(
                    "{observed} is consistent with the expected {expected} % ({}; {total} \
                     requests)",
                    format_p(p_value)
                )
            } else {
                format!(
                    "{observed} differs from the expected {expected} % ({} ≤ α = {}; \
                     {canary} of {total} requests on canary, outside the accepted {low}–{high})",
                    format_p(p_value),
                    format_alpha(alpha)
                )
            };
            Judgement {
                passed,
                canary,
                total,
                observed_share,
                interval,
                p_value,
                leak_bound: None,
                reason,
            }
        }
    }
}

/// Exact (Clopper–Pearson) two-sided interval for a binomial share at `confidence`.
///
/// Chosen over Wald or Wilson because it never under-covers, which matters when the interval is
/// shown next to a verdict made at the same level. Degenerate input (`n == 0`) gives `(0, 1)`;
/// `k > n` is read as `k == n`.
pub fn clopper_pearson(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let k = k.min(n);
    let tail = if confidence.is_nan() {
        0.0
    } else {
        ((1.0 - confidence) / 2.0).clamp(0.0, 0.5)
    };
    let lower = if k == 0 {
        0.0
    } else {
        Beta::new(k as f64, (n - k + 1) as f64).map_or(0.0, |b| b.inverse_cdf(tail))
    };
    let upper = if k == n {
        1.0
    } else {
        Beta::new((k + 1) as f64, (n - k) as f64).map_or(1.0, |b| b.inverse_cdf(1.0 - tail))
    };
    (lower.clamp(0.0, 1.0), upper.clamp(0.0, 1.0))
}

/// Exact two-sided binomial p-value of `k` out of `n` under share `p`: the probability of all
/// outcomes no more likely than `k` (ties within a relative 1e-7), as in R's `binom.test`.
///
/// Rather than summing every outcome, it takes the tail on `k`'s side of the mode and finds
/// where the other tail becomes no more likely than `k` by bisection (probabilities are
/// monotone on each side of the mode), then uses the exact tail functions. `k > n` gives 0.
pub fn binomial_two_sided_p(k: u64, n: u64, p: f64) -> f64 {
    if k > n {
        return 0.0;
    }
    let p = snap_share(p);
    if p == 0.0 {
        return if k == 0 { 1.0 } else { 0.0 };
    }
    if p == 1.0 {
        return if k == n { 1.0 } else { 0.0 };
    }
    let mode = binomial_mode(n, p);
    if n == 0 || k == mode {
        return 1.0;
    }
    let Some(dist) = ExactBinomial::new(n, p) else {
        return 0.0;
    };
    // ln_pmf is a difference of log-factorials of size n ln n, so its rounding error grows
    // with n; widen the tie tolerance by that much so symmetric outcomes stay tied at any n.
    let rounding = 8.0 * f64::EPSILON * ln_gamma(n as f64 + 1.0);
    let threshold = dist.ln_pmf(k) + TIE_TOLERANCE.ln_1p() + rounding;
    let no_more_likely = |j: u64| dist.ln_pmf(j) <= threshold;
    let total = if k < mode {
        // Probabilities fall from the mode to n: find where they drop to k's level.
        let far = first_true(mode, n, no_more_likely)
            .map_or(0.0, |j| if j == 0 { 1.0 } else { dist.sf(j - 1) });
        dist.cdf(k) + far
    } else {
        // Probabilities rise from 0 to the mode: find the last count still at k's level.
        let far = last_true(0, mode, no_more_likely).map_or(0.0, |j| dist.cdf(j));
        dist.sf(k - 1) + far
    };
    total.clamp(0.0, 1.0)
}

/// Smallest `j` in `[low, high]` with `pred(j)`, for a predicate that is false then true.
pub(crate) fn first_true(low: u64, high: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
    if low > high || !pred(high) {
        return None;
    }
    let (mut lo, mut hi) = (low, high);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// Largest `j` in `[low, high]` with `pred(j)`, for a predicate that is true then false.
pub(crate) fn last_true(low: u64, high: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
    if low > high || !pred(low) {
        return None;
    }
    let (mut lo, mut hi) = (low, high);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if pred(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Percent of a measured share, e.g. "10.4": one decimal, more near 0 % and 100 % so that small
/// shares do not collapse to "0.0"; `round_up` keeps bounds conservative when they are claims.
pub(crate) fn percent(share: f64, round_up: bool) -> String {
    let value = (share * 100.0).clamp(0.0, 100.0);
    let distance = value.min(100.0 - value);
    if distance == 0.0 {
        return format!("{value:.0}");
    }
    if distance < 0.001 {
        return if value < 50.0 { "<0.001" } else { ">99.999" }.to_string();
    }
    let decimals = if distance >= 0.1 {
        1
    } else {
        // Two significant digits of the distance to the nearer end.
        (1 - distance.log10().floor() as i32).clamp(1, 3)
    };
    let scale = 10f64.powi(decimals);
    let shown = if round_up {
        (value * scale).ceil() / scale
    } else {
        value
    };
    format!("{shown:.prec$}", prec = decimals as usize)
}

/// Percent of a configured share, e.g. "10" for 0.1: as written, without padding zeros.
pub(crate) fn percent_setting(share: f64) -> String {
    trim_zeros(format!("{:.6}", share * 100.0))
}

/// "99.99" for alpha = 1e-4: enough decimals to show how close to 100 % the level is, truncated
/// so that it is never overstated (99.99875 shows as 99.9987, not 99.9988 or 100).
pub(crate) fn confidence_percent(alpha: f64) -> String {
    let miss = alpha * 100.0;
    let decimals = if miss > 0.0 {
        ((-miss.log10()).ceil() as i32 + 1).clamp(0, 10)
    } else {
        0
    };
    let scale = 10f64.powi(decimals);
    let truncated = ((100.0 - miss) * scale).floor() / scale;
    trim_zeros(format!("{truncated:.prec$}", prec = decimals as usize))
}

/// "p = 0.52", "p = 3.1e-9": two significant digits, scientific notation once it is tiny.
pub(crate) fn format_p(p: f64) -> String {
    if p >= 0.995 {
        "p = 1".to_string()
    } else if p >= 1e-4 {
        let decimals = (1 - p.log10().floor() as i64).clamp(2, 6) as usize;
        format!("p = {}", trim_zeros(format!("{p:.decimals$}")))
    } else if p > 0.0 {
        format!("p = {p:.1e}")
    } else {
        // Underflowed: smaller than a double can hold.
        "p < 1e-300".to_string()
    }
}

/// A significance level: three significant digits, "1.25e-5" or "1e-4".
pub(crate) fn format_alpha(alpha: f64) -> String {
    let text = format!("{alpha:.2e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zeros(mantissa.to_string())),
        None => text,
    }
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rstest::rstest;

    /// Binomial probability from log-gamma, independent of statrs' Binomial.
    fn pmf(k: u64, n: u64, p: f64) -> f64 {
        if p == 0.0 {
            return if k == 0 { 1.0 } else { 0.0 };
        }
        if p == 1.0 {
            return if k == n { 1.0 } else { 0.0 };
        }
        let (k, n) = (k as f64, n as f64);
        (ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
            + k * p.ln()
            + (n - k) * (1.0 - p).ln())
        .exp()
    }

    /// P(count outside [low, high]) by summing probabilities one by one.
    fn outside(n: u64, low: u64, high: u64, p: f64) -> f64 {
        (0..=n)
            .filter(|&k| k < low || k > high)
            .map(|k| pmf(k, n, p))
            .sum()
    }

    fn power(n: u64, low: u64, high: u64, p0: f64, delta: f64) -> f64 {
        [p0 - delta, p0 + delta]
            .into_iter()
            .filter(|p| (0.0..=1.0).contains(p))
            .map(|p| outside(n, low, high, p))
            .fold(1.0, f64::min)
    }

    fn budget(alpha: f64, beta: f64, delta: f64) -> Budget {
        Budget { alpha, beta, delta }
    }

    #[rstest]
    fn planned_split_meets_exact_constraints_and_is_near_minimal(
        #[values(0.1, 0.3, 0.5, 0.6, 0.9)] p0: f64,
        #[values(
            (Budget::default(), 8),
            (budget(0.01, 0.05, 0.1), 1),
            (budget(1e-3, 1e-2, 0.03), 4)
        )]
        case: (Budget, usize),
    ) {
        let (budget, tests) = case;
        let plan = plan(p0, &budget, tests);
        let alpha_test = budget.alpha / tests as f64;
        assert_eq!(plan.kind, CheckKind::Split);
        assert_eq!(plan.alpha_test, alpha_test);
        let n = plan.requests;
        assert!(plan.accept_low <= plan.accept_high && plan.accept_high <= n);

        let false_failure = outside(n, plan.accept_low, plan.accept_high, p0);
        assert!(
            false_failure <= alpha_test,
            "{false_failure} > {alpha_test} at n = {n}"
        );
        assert!((false_failure - plan.false_failure).abs() <= 1e-9 + 1e-6 * false_failure);

        let exact_power = power(n, plan.accept_low, plan.accept_high, p0, budget.delta);
        assert!(
            exact_power >= 1.0 - budget.beta,
            "power {exact_power} at n = {n}"
        );
        assert!((exact_power - plan.power).abs() <= 1e-9);

        // The region is the exact test's: widening it by one count on either side would
        // accept a count whose p-value is at most alpha_test.
        if plan.accept_low > 0 {
            assert!(binomial_two_sided_p(plan.accept_low - 1, n, p0) <= alpha_test);
        }
        if plan.accept_high < n {
            assert!(binomial_two_sided_p(plan.accept_high + 1, n, p0) <= alpha_test);
        }

        // Minimality: 10 % fewer requests cannot reach the power with that size's region.
        let smaller = n * 9 / 10;
        let (low, high) = acceptance_region(smaller, p0, alpha_test);
        assert!(power(smaller, low, high, p0, budget.delta) < 1.0 - budget.beta);
    }

    /// Exact power is a sawtooth in n, so a smaller n could work even though its neighbours do
    /// not; the plan must not miss one in the 20 % below it.
    #[rstest]
    fn no_smaller_split_plan_works(
        #[values(0.05, 0.1, 0.3, 0.5, 0.9)] p0: f64,
        #[values((Budget::default(), 8), (budget(0.01, 0.05, 0.1), 1))] case: (Budget, usize),
    ) {
        let (budget, tests) = case;
        let plan = plan(p0, &budget, tests);
        let alpha_test = plan.alpha_test;
        let works = |m: u64| {
            let (low, high) = acceptance_region(m, p0, alpha_test);
            rejection_probability(m, low, high, p0) <= alpha_test
                && [p0 - budget.delta, p0 + budget.delta]
                    .into_iter()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .all(|p1| rejection_probability(m, low, high, p1) >= 1.0 - budget.beta)
        };
        assert!(works(plan.requests));
        let n = plan.requests;
        let smaller: Vec<u64> = (n * 8 / 10..n).filter(|&m| works(m)).collect();
        assert!(smaller.is_empty(), "{smaller:?} also work below n = {n}");
    }

    /// Shares close to 0 or 1 only have one alternative inside [0, 1] (or one on its edge) and a
    /// very skewed distribution; the plan must still meet the exact constraints.
    #[rstest]
    fn planned_split_near_the_edges_meets_exact_constraints(
        #[values(0.001, 0.05, 0.95, 0.999)] p0: f64,
    ) {
        let budget = Budget::default();
        let plan = plan(p0, &budget, 8);
        let n = plan.requests;
        assert_eq!(plan.kind, CheckKind::Split);
        assert!(outside(n, plan.accept_low, plan.accept_high, p0) <= plan.alpha_test);
        assert!(power(n, plan.accept_low, plan.accept_high, p0, budget.delta) >= 1.0 - budget.beta);
    }

    #[rstest]
    #[case(0.0, Budget::default())]
    #[case(1.0, Budget::default())]
    #[case(1e-13, budget(0.05, 0.1, 0.1))]
    #[case(1.0 - 1e-13, budget(0.01, 0.01, 0.2))]
    #[case(0.0, budget(0.01, 0.125, 0.5 - 1e-9))]
    fn zero_leak_plan_is_smallest_n_catching_a_delta_leak(#[case] p0: f64, #[case] budget: Budget) {
        let plan = plan(p0, &budget, 3);
        assert_eq!(plan.kind, CheckKind::ZeroLeak);
        let n = plan.requests;
        let miss = |n: u64| (1.0 - budget.delta).powi(n as i32);
        assert!(miss(n) <= budget.beta);
        assert!(n == 1 || miss(n - 1) > budget.beta);
        assert_eq!(plan.false_failure, 0.0);
        assert!(plan.power >= 1.0 - budget.beta);
        let region = if plan.expected_share == 0.0 {
            (0, 0)
        } else {
            (n, n)
        };
        assert_eq!((plan.accept_low, plan.accept_high), region);
    }

    /// Clopper–Pearson ends by bisection on the summed binomial cdf.
    fn clopper_pearson_by_bisection(k: u64, n: u64, confidence: f64) -> (f64, f64) {
        let tail = (1.0 - confidence) / 2.0;
        let cdf = |x: u64, p: f64| (0..=x).map(|j| pmf(j, n, p)).sum::<f64>();
        let solve = |f: &dyn Fn(f64) -> f64| {
            // f increases in p.
            let (mut lo, mut hi) = (0.0f64, 1.0f64);
            for _ in 0..100 {
                let mid = (lo + hi) / 2.0;
                if f(mid) < 0.0 { lo = mid } else { hi = mid }
            }
            (lo + hi) / 2.0
        };
        // P(X >= k | p) = tail; P(X <= k | p) = tail.
        let lower = if k == 0 {
            0.0
        } else {
            solve(&|p| (1.0 - cdf(k - 1, p)) - tail)
        };
        let upper = if k == n {
            1.0
        } else {
            solve(&|p| tail - cdf(k, p))
        };
        (lower, upper)
    }

    #[rstest]
    #[case(0, 10, 0.95)]
    #[case(10, 10, 0.95)]
    #[case(1, 10, 0.95)]
    #[case(5, 10, 0.95)]
    #[case(3, 40, 0.99)]
    #[case(0, 135, 0.9999)]
    #[case(135, 135, 0.9999)]
    #[case(17, 200, 0.9999)]
    #[case(150, 300, 0.999)]
    fn clopper_pearson_matches_bisection(#[case] k: u64, #[case] n: u64, #[case] confidence: f64) {
        let (lower, upper) = clopper_pearson(k, n, confidence);
        let (want_lower, want_upper) = clopper_pearson_by_bisection(k, n, confidence);
        assert!((lower - want_lower).abs() < 1e-8, "{lower} vs {want_lower}");
        assert!((upper - want_upper).abs() < 1e-8, "{upper} vs {want_upper}");
    }

    #[test]
    fn clopper_pearson_known_values_and_edges() {
        // Textbook value for 5 of 10 at 95 %: 0.1871 – 0.8129.
        let (lower, upper) = clopper_pearson(5, 10, 0.95);
        assert!((lower - 0.187086).abs() < 1e-5 && (upper - 0.812914).abs() < 1e-5);
        // k = 0 and k = n have closed forms.
        let (lower, upper) = clopper_pearson(0, 20, 0.9);
        assert_eq!(lower, 0.0);
        assert!((upper - (1.0 - 0.05f64.powf(1.0 / 20.0))).abs() < 1e-10);
        let (lower, upper) = clopper_pearson(20, 20, 0.9);
        assert_eq!(upper, 1.0);
        assert!((lower - 0.05f64.powf(1.0 / 20.0)).abs() < 1e-10);
        assert_eq!(clopper_pearson(0, 0, 0.95), (0.0, 1.0));
    }

    /// p-value by summing every outcome no more likely than k.
    fn p_by_summation(k: u64, n: u64, p: f64) -> f64 {
        let observed = pmf(k, n, p);
        let sum: f64 = (0..=n)
            .map(|j| pmf(j, n, p))
            .filter(|&q| q <= observed * (1.0 + 1e-7))
            .sum();
        sum.min(1.0)
    }

    #[rstest]
    #[case(3, 10, 0.5)]
    #[case(7, 20, 0.3)]
    #[case(0, 20, 0.3)]
    #[case(20, 20, 0.3)]
    #[case(2, 50, 0.1)]
    #[case(12, 50, 0.1)]
    #[case(60, 500, 0.1)]
    #[case(271, 500, 0.6)]
    #[case(5, 9, 0.5)]
    fn p_value_matches_summation(#[case] k: u64, #[case] n: u64, #[case] p: f64) {
        let got = binomial_two_sided_p(k, n, p);
        let want = p_by_summation(k, n, p);
        assert!((got - want).abs() <= 1e-9 + 1e-6 * want, "{got} vs {want}");
    }

    #[test]
    fn p_value_shape() {
        // Known value: 2·P(X ≤ 3) for Binomial(10, 1/2) = 0.34375.
        assert!((binomial_two_sided_p(3, 10, 0.5) - 0.34375).abs() < 1e-12);
        for k in 0..=30 {
            let left = binomial_two_sided_p(k, 30, 0.5);
            let right = binomial_two_sided_p(30 - k, 30, 0.5);
            assert!((left - right).abs() < 1e-12, "k = {k}");
        }
        assert!(binomial_two_sided_p(100, 1000, 0.1) > 0.95);
        assert!(binomial_two_sided_p(500, 1000, 0.5) > 0.95);
        assert!(binomial_two_sided_p(200, 1000, 0.1) < 1e-20);
        assert_eq!(binomial_two_sided_p(3, 10, 0.0), 0.0);
        assert_eq!(binomial_two_sided_p(0, 10, 0.0), 1.0);
        assert_eq!(binomial_two_sided_p(11, 10, 0.5), 0.0);
    }

    #[rstest]
    #[case(0.1)]
    #[case(0.5)]
    #[case(0.6)]
    fn verdict_agrees_with_p_value_around_the_borders(#[case] p0: f64) {
        let plan = plan(p0, &Budget::default(), 8);
        let n = plan.requests;
        for total in [n, n - 37, n + 101] {
            let (low, high) = acceptance_region(total, p0, plan.alpha_test);
            for k in (low.saturating_sub(3)..=low + 3).chain(high - 3..=(high + 3).min(total)) {
                let judgement = judge(&plan, k, total);
                assert_eq!(
                    judgement.passed,
                    judgement.p_value > plan.alpha_test,
                    "k = {k}"
                );
                assert_eq!(judgement.passed, low <= k && k <= high, "k = {k}");
                let (lower, upper) = judgement.interval;
                assert!(lower <= judgement.observed_share && judgement.observed_share <= upper);
            }
        }
    }

    #[test]
    fn judge_reports_split_figures() {
        let plan = plan(0.1, &Budget::default(), 8);
        let n = plan.requests;
        let expected = (n as f64 * 0.1).round() as u64;
        let pass = judge(&plan, expected, n);
        assert!(pass.passed, "{}", pass.reason);
        assert!(
            pass.reason.contains("consistent with the expected 10 %"),
            "{}",
            pass.reason
        );
        assert!(
            pass.reason.contains(&format!("{n} requests")),
            "{}",
            pass.reason
        );
        let fail = judge(&plan, n / 2, n);
        assert!(!fail.passed);
        assert!(
            fail.reason.contains("differs from the expected 10 %"),
            "{}",
            fail.reason
        );
        assert!(fail.p_value < 1e-20);
    }

    #[test]
    fn judge_zero_leak() {
        let budget = Budget::default();
        let at_zero = plan(0.0, &budget, 8);
        let n = at_zero.requests;
        let clean = judge(&at_zero, 0, n);
        assert!(clean.passed && clean.p_value == 1.0);
        let bound = clean.leak_bound.expect("bound when no leak");
        // Seeing no leak at rate `bound` has probability exactly alpha_test.
        assert!(((1.0 - bound).powf(n as f64) - at_zero.alpha_test).abs() < 1e-12);
        assert!(
            clean
                .reason
                .contains(&format!("no request in {n} reached canary"))
        );
        let leak = judge(&at_zero, 1, n);
        assert!(!leak.passed && leak.p_value == 0.0 && leak.leak_bound.is_none());
        assert!(leak.reason.contains("leak"), "{}", leak.reason);

        let at_full = plan(1.0, &budget, 8);
        assert!(judge(&at_full, n, n).passed);
        let leak = judge(&at_full, n - 47, n);
        assert!(!leak.passed);
        assert!(leak.reason.starts_with("47 of"), "{}", leak.reason);
    }

    #[test]
    fn judge_degenerate_tallies() {
        let plan = plan(0.3, &Budget::default(), 1);
        let empty = judge(&plan, 0, 0);
        assert!(!empty.passed);
        assert!(empty.reason.contains("no valid answers"));
        assert!(!judge(&plan, 11, 10).passed);
    }

    #[test]
    fn budget_validation() {
        assert!(Budget::default().validate().is_ok());
        let err = budget(1.5, 0.1, 0.1).validate().unwrap_err();
        assert_eq!(err, "alpha must be in (0, 1), got 1.5");
        assert!(
            budget(0.1, 0.0, 0.1)
                .validate()
                .unwrap_err()
                .starts_with("beta")
        );
        assert!(
            budget(0.1, 0.1, 0.5)
                .validate()
                .unwrap_err()
                .starts_with("delta")
        );
        assert!(budget(f64::NAN, 0.1, 0.1).validate().is_err());
        // An invalid budget still plans (with defaults) instead of panicking.
        let plan = plan(0.2, &budget(f64::NAN, 2.0, -1.0), 0);
        assert_eq!(plan.alpha_test, Budget::default().alpha);
    }

    #[test]
    fn check_kind_serializes_in_snake_case() {
        let json = serde_json::to_string(&CheckKind::ZeroLeak).expect("serializes");
        assert_eq!(json, "\"zero_leak\"");
    }

    /// Simulates whole runs with a loose budget so the error rates are measurable, and checks
    /// that judge's verdicts fail a correct mesh and miss a shifted one no more often than
    /// planned (plus three standard errors of the simulation).
    #[rstest]
    #[case(0.3, 11)]
    #[case(0.5, 12)]
    #[case(0.85, 13)]
    fn simulated_error_rates_stay_within_budget(#[case] p0: f64, #[case] seed: u64) {
        let budget = budget(0.05, 0.1, 0.1);
        let plan = plan(p0, &budget, 1);
        let n = plan.requests;
        // judge's verdict for every possible count, so each simulated run is a lookup.
        let fails: Vec<bool> = (0..=n).map(|k| !judge(&plan, k, n).passed).collect();
        let runs = 20_000;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut failure_rate = |p: f64| {
            // Binomial draws by inverting the cumulative distribution: one uniform per run.
            let cumulative: Vec<f64> = (0..=n)
                .scan(0.0, |sum, k| {
                    *sum += pmf(k, n, p);
                    Some(*sum)
                })
                .collect();
            let failed = (0..runs)
                .filter(|_| {
                    let u = rng.random::<f64>() * cumulative[n as usize];
                    let canary = cumulative.partition_point(|&c| c < u).min(n as usize);
                    fails[canary]
                })
                .count();
            failed as f64 / runs as f64
        };
        let margin =
            |rate: f64| 4.0 * (rate * (1.0 - rate) / runs as f64).sqrt() + 1.0 / runs as f64;
        let exact_failures = |p: f64| outside(n, plan.accept_low, plan.accept_high, p);

        let false_failures = failure_rate(p0);
        assert!(
            false_failures <= plan.alpha_test + margin(plan.alpha_test),
            "false failures {false_failures} at n = {n}"
        );
        // The simulation also agrees with the exact rate the plan states.
        let exact = exact_failures(p0);
        assert!(
            (false_failures - exact).abs() <= margin(exact),
            "{false_failures} vs {exact}"
        );
        for p1 in [p0 - budget.delta, p0 + budget.delta] {
            if (0.0..=1.0).contains(&p1) {
                let misses = 1.0 - failure_rate(p1);
                assert!(
                    misses <= budget.beta + margin(budget.beta),
                    "misses {misses} at {p1}, n = {n}"
                );
                let exact = 1.0 - exact_failures(p1);
                assert!(
                    (misses - exact).abs() <= margin(exact),
                    "{misses} vs {exact}"
                );
            }
        }
    }

    /// statrs' tails drift near the mean for large n; ours must not. At p = 1/2 the normal
    /// approximation with continuity correction is off by O(1/n) only, an independent check.
    #[rstest]
    #[case(1_000_001)]
    #[case(10_000_001)]
    fn tails_stay_exact_for_large_n(#[case] n: u64) {
        let dist = ExactBinomial::new(n, 0.5).expect("valid");
        let mean = n as f64 / 2.0;
        let sd = mean.sqrt() / std::f64::consts::SQRT_2;
        // Symmetry: exactly half the mass lies at or below the lower middle count.
        assert!((dist.cdf(n / 2) - 0.5).abs() < 1e-9);
        for z in [-2.2, -1.0, -0.3, 0.4, 1.7] {
            let k = (mean + z * sd).round() as u64;
            let x = (k as f64 + 0.5 - mean) / sd;
            let normal = 0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2);
            assert!((dist.cdf(k) - normal).abs() < 1e-6, "z = {z}");
            assert!((dist.sf(k) - (1.0 - normal)).abs() < 1e-6, "z = {z}");
        }
        assert!(binomial_two_sided_p(n / 2, n, 0.5) > 0.999_999);
        let k = (mean - sd).round() as u64;
        let (got, want) = (binomial_two_sided_p(k, n, 0.5), 2.0 * dist.cdf(k));
        // Log-factorials of 10^7 carry ~1e-8 of rounding, which bounds the agreement.
        assert!((got - want).abs() < 1e-7, "{got} vs {want}");
    }

    /// Power of the randomized Neyman–Pearson test by summing probabilities one by one.
    fn most_powerful_by_summation(n: u64, p0: f64, p1: f64, alpha: f64) -> f64 {
        // Counts ordered from the most to the least extreme towards p1.
        let order: Vec<u64> = if p1 > p0 {
            (0..=n).rev().collect()
        } else {
            (0..=n).collect()
        };
        let (mut size, mut power) = (0.0, 0.0);
        for k in order {
            let (null, alt) = (pmf(k, n, p0), pmf(k, n, p1));
            if size + null <= alpha {
                size += null;
                power += alt;
            } else {
                power += alt * (alpha - size) / null;
                break;
            }
        }
        power
    }

    #[rstest]
    #[case(0.1, 0.15, 1e-3, 0.01)]
    #[case(0.1, 0.05, 1e-3, 0.01)]
    #[case(0.5, 0.6, 0.05, 0.1)]
    #[case(0.9, 0.8, 0.01, 0.05)]
    #[case(0.05, 0.0, 1e-3, 0.01)]
    #[case(0.97, 1.0, 1e-3, 0.01)]
    fn lower_bound_is_where_the_most_powerful_test_reaches_the_power(
        #[case] p0: f64,
        #[case] p1: f64,
        #[case] alpha: f64,
        #[case] beta: f64,
    ) {
        let bound = lower_bound(p0, &[p1], alpha, beta);
        let power = |n: u64| most_powerful_by_summation(n, p0, p1, alpha);
        assert!(
            power(bound) >= 1.0 - beta - 1e-9,
            "power {} at {bound}",
            power(bound)
        );
        assert!(
            bound == 1 || power(bound - 1) < 1.0 - beta,
            "bound {bound} is not the first"
        );
        for n in [bound / 2, bound.saturating_sub(1), bound, bound + 7] {
            let n = n.max(1);
            let got = most_powerful_power(n, p0, p1, alpha);
            assert!(
                (got - power(n)).abs() < 1e-9,
                "n = {n}: {got} vs {}",
                power(n)
            );
        }
    }

    /// The scan starts at the proven lower bound and checks every size, so the plan is the
    /// smallest size whose exact test meets the budget: every smaller size fails.
    #[rstest]
    fn split_plan_is_the_smallest_size_that_works(
        #[values(0.02, 0.1, 0.5, 0.63, 0.95)] p0: f64,
        #[values(
            budget(0.05, 0.1, 0.1),
            budget(0.01, 0.05, 0.1),
            budget(0.2, 0.2, 0.25)
        )]
        budget: Budget,
    ) {
        let alpha_test = budget.alpha;
        let plan = try_plan(p0, &budget, alpha_test).expect("plans");
        let works = |m: u64| {
            let (low, high) = acceptance_region(m, p0, alpha_test);
            outside(m, low, high, p0) <= alpha_test
                && power(m, low, high, p0, budget.delta) >= 1.0 - budget.beta
        };
        assert!(works(plan.requests));
        let smaller: Vec<u64> = (1..plan.requests).filter(|&m| works(m)).collect();
        assert!(
            smaller.is_empty(),
            "{smaller:?} work below n = {}",
            plan.requests
        );
        assert!(requests_lower_bound(p0, &budget, alpha_test) <= plan.requests);
    }

    #[test]
    fn try_plan_refuses_beyond_the_cap_with_the_figures_and_a_delta_that_fits() {
        let tiny = budget(1e-4, 1e-3, 1e-4);
        let err = try_plan(0.5, &tiny, 1.25e-5).unwrap_err();
        let PlanError::TooManyRequests {
            needed_at_least,
            estimate,
            cap,
            ref fix,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(cap, MAX_REQUESTS_PER_TEST);
        // About a billion: z-values of 4.4 and 3.1 over a shift of 1e-4 at sd 0.5.
        assert!(needed_at_least > 1_000_000_000 && needed_at_least <= estimate);
        assert!(fix.contains("larger delta"), "{fix}");
        assert!(err.to_string().contains("cap of 250000"), "{err}");
        let delta = larger_delta(0.5, 1.25e-5, &tiny, cap).expect("a delta fits");
        let fitted = try_plan(0.5, &budget(1e-4, 1e-3, delta), 1.25e-5).expect("fits");
        assert!(fitted.requests <= cap);

        let leak = try_plan(0.0, &budget(1e-4, 1e-3, 1e-6), 1.25e-5).unwrap_err();
        assert!(
            matches!(leak, PlanError::TooManyRequests { needed_at_least, .. }
                if needed_at_least == zero_leak_requests(1e-3, 1e-6)),
            "{leak:?}"
        );
        assert!(matches!(
            try_plan(0.5, &budget(1e-4, 1e-3, 0.05), 0.0),
            Err(PlanError::InvalidBudget { .. })
        ));
    }

    /// plan() cannot fail: beyond the cap it plans the cap and states the power it really has.
    #[rstest]
    #[case(0.5)]
    #[case(0.0)]
    fn plan_beyond_the_cap_falls_back_to_the_cap(#[case] p0: f64) {
        let tiny = budget(1e-4, 1e-3, 1e-5);
        let plan = plan(p0, &tiny, 8);
        assert_eq!(plan.requests, MAX_REQUESTS_PER_TEST);
        assert!(plan.power < 1.0 - tiny.beta, "power {}", plan.power);
        assert!(plan.false_failure <= plan.alpha_test);
    }

    /// A wrong acceptance region must end the search with an error, not run without end.
    #[rstest]
    #[case::accepts_everything(|n: u64| (0, n))]
    #[case::rejects_the_mode(|n: u64| (n, n))]
    #[case::inverted(|n: u64| (n / 2 + 1, n / 2))]
    #[case::beyond_n(|n: u64| (0, n + 1))]
    fn broken_region_ends_in_an_error(#[case] region: fn(u64) -> (u64, u64)) {
        let budget = Budget::default();
        let result = split_plan(0.1, 1.25e-5, &budget, 20_000, region);
        assert!(
            matches!(result, Err(PlanError::NoDesign { .. })),
            "{result:?}"
        );
    }
}
