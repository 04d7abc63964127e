//! Exact, distribution-free SLO gates for a canary stage, judged from per-request samples.
//!
//! A gate asks whether the canary is within a threshold (error rate at most x, p99 at most y ms,
//! not slower than the baseline by more than r, …). Each gate here is a one-sided test whose
//! null hypothesis is "the canary is within the threshold", so it **fails only on evidence**:
//! a canary within the threshold fails with probability at most `alpha`, for any sample size,
//! and for the latency gates for any latency distributions (ties only make them conservative).
//! The statistics are finite-sample exact: binomial tails, order statistics, an exact
//! unconditional two-proportion test and the Mann–Whitney permutation distribution; the only
//! approximation is the normal one for large Mann–Whitney samples, where it is conservative in
//! the tails (see [`latency_shift_gate`]).
//!
//! | gate | test | decision rests on |
//! |---|---|---|
//! | [`error_rate_gate`] | exact binomial | Clopper–Pearson lower bound (1 − α) |
//! | [`relative_error_rate_gate`] | exact unconditional, Berger–Boos | inverted test (1 − α) |
//! | [`latency_quantile_gate`] | binomial count of samples ≤ y | order-statistic lower bound |
//! | [`relative_latency_quantile_gate`] | order statistics, Bonferroni | canary LB / baseline UB |
//! | [`latency_shift_gate`] | Mann–Whitney, Hodges–Lehmann | Lehmann lower bound of log-ratio |
//!
//! Every gate returns a [`GateJudgement`] whose `p_value <= alpha` exactly when it fails, and
//! whose `interval` is the one-sided (1 − α) confidence interval the decision rests on: its
//! lower end is the bound compared with the threshold, its upper end the edge of the parameter
//! space (1 for rates, +∞ for latencies and ratios). No samples, or too few samples for the
//! gate ever to fail at this `alpha`, give `decidable = false` (and `passed = true`, since there
//! is no evidence); the caller decides whether that blocks a promotion. Invalid parameters or
//! samples give `passed = false, decidable = false` and the problem in `reason`.
//!
//! All functions are pure; the work of each is bounded (stated per function).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};
use statrs::function::beta::beta_reg;
use statrs::function::erf::{erfc, erfc_inv};
use statrs::function::gamma::ln_gamma;

use crate::stats::clopper_pearson;

/// Latency ratios (and log-ratios) within this relative distance of the threshold count as at
/// the threshold, i.e. within it: `(1 + r)·y` computed in floating point can land one ulp on
/// either side of a sample that is exactly `(1 + r)·y`, and such ties must not count as evidence.
const RATIO_TOLERANCE: f64 = 1e-9;

/// Binomial probabilities are summed over a window outside which each tail has mass at most
/// this (a Chernoff bound); sums that must be upper bounds add the bound back.
const TAIL_MASS: f64 = 1e-15;

/// Upper bounds in the relative error-rate test are inflated by this relative amount to cover
/// floating-point rounding of the binomial recurrences and of sums of a few thousand terms.
const ROUNDING: f64 = 1e-11;

/// Berger–Boos: the nuisance (baseline rate) is restricted to a 1 − γ confidence interval with
/// γ = α / 50, the ratio Berger and Boos used (0.001 at α = 0.05).
const NUISANCE_SHARE: f64 = 1.0 / 50.0;

/// The supremum over the nuisance interval starts from this many equal pieces.
const INITIAL_PIECES: usize = 8;

/// At most this many probability evaluations per supremum (each costs O(√n) per arm).
const SUPREMUM_EVALUATIONS: usize = 1500;

/// A p-value is refined until its upper bound is within this relative distance of the lower.
const SUPREMUM_TOLERANCE: f64 = 1e-2;

/// Cheaper supremum for the bisection of the confidence bound: an undecided margin counts as
/// passing, which only makes the bound conservative.
const BOUND_EVALUATIONS: usize = 100;

/// The confidence bound of the error-rate difference is bisected to this width: 0.01 points,
/// the resolution it is shown with.
const BOUND_RESOLUTION: f64 = 1e-4;

/// Mann–Whitney is exact while the smaller sample has at most this many values, …
const EXACT_SMALLER: usize = 24;

/// … and the generating-function recurrence costs at most this much (≈ smaller² · larger).
const EXACT_WORK: usize = 1 << 24;

/// The verdict on one gate, with the figures a human needs to trust it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateJudgement {
    /// False only on evidence that the canary is outside the threshold (or on invalid input).
    pub passed: bool,
    /// Point estimate in the threshold's unit (rate, rate difference, ms, ratio); NaN when
    /// there is nothing to estimate.
    #[serde(with = "wire")]
    pub measured: f64,
    #[serde(with = "wire")]
    pub threshold: f64,
    /// One-sided (1 − α) interval: (bound compared with the threshold, edge of the space).
    #[serde(with = "wire::pair")]
    pub interval: (f64, f64),
    /// Fails iff `p_value <= alpha`.
    #[serde(with = "wire")]
    pub p_value: f64,
    #[serde(with = "wire")]
    pub alpha: f64,
    /// (canary, baseline); baseline 0 for absolute gates.
    pub samples: (u64, u64),
    /// False when the gate cannot fail at this `alpha` with these sample sizes.
    pub decidable: bool,
    /// One sentence: measured, threshold, interval, p-value.
    pub reason: String,
}

/// Errors among the requests one version answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCount {
    pub errors: u64,
    pub requests: u64,
}

// ---------------------------------------------------------------------------------------------
// Gate 1: absolute error rate.

/// Fails if the canary's error rate exceeds `max_rate`, on exact binomial evidence.
///
/// Null: error rate ≤ `max_rate`. The p-value is the exact tail P(X ≥ errors) of
/// Binomial(requests, max_rate); it fails iff p ≤ α, which is the same as the one-sided
/// Clopper–Pearson lower bound at 1 − α exceeding `max_rate`. The tail is largest at the
/// boundary of the null, so the false-failure probability is at most α for every rate in the
/// null. Decidable iff `max_rate^requests ≤ alpha` (all errors would fail). Work: O(1).
pub fn error_rate_gate(canary: ErrorCount, max_rate: f64, alpha: f64) -> GateJudgement {
    let base = Skeleton::new(max_rate, alpha, (canary.requests, 0));
    if let Err(problem) = check_alpha(alpha)
        .and_then(|()| check_rate("max_rate", max_rate))
        .and_then(|()| check_count("canary", canary))
    {
        return base.invalid(problem);
    }
    let ErrorCount { errors, requests } = canary;
    let level = confidence_percent(alpha);
    let needed = requests_to_fail_on_all_errors(max_rate, alpha);
    if requests == 0 {
        return base.undecidable(
            f64::NAN,
            (0.0, 1.0),
            format!(
                "no canary requests, so the error rate cannot be judged against {}",
                percent(max_rate)
            ),
        );
    }
    let measured = errors as f64 / requests as f64;
    let p_value = binomial_at_least(requests, errors, max_rate);
    let passed = p_value > alpha;
    let lower = clopper_pearson(errors, requests, 1.0 - 2.0 * alpha).0;
    let decidable = needed.is_some_and(|k| requests >= k);
    let observed = format!(
        "canary error rate {} ({errors} of {requests} requests; {level} % lower bound {})",
        percent(measured),
        percent(lower)
    );
    let reason = if !decidable {
        format!(
            "{observed} cannot exceed the {} limit at α = {}: {} ({})",
            percent(max_rate),
            sig(alpha),
            needed.map_or("no sample size suffices".to_string(), |k| format!(
                "it takes at least {k} requests"
            )),
            format_p(p_value)
        )
    } else if passed {
        format!(
            "{observed} is within the {} limit ({})",
            percent(max_rate),
            format_p(p_value)
        )
    } else {
        format!(
            "{observed} exceeds the {} limit ({} ≤ α = {})",
            percent(max_rate),
            format_p(p_value),
            sig(alpha)
        )
    };
    GateJudgement {
        passed,
        measured,
        interval: (lower, 1.0),
        p_value,
        decidable,
        reason,
        ..base.judgement()
    }
}

/// Exact probability that [`error_rate_gate`] fails when the true error rate is `true_rate`.
///
/// Sums the binomial tail over the error counts that fail (found by bisection on the same
/// p-value the gate uses). Work: O(log requests).
pub fn error_rate_gate_power(requests: u64, true_rate: f64, max_rate: f64, alpha: f64) -> f64 {
    if check_alpha(alpha).is_err()
        || check_rate("max_rate", max_rate).is_err()
        || check_rate("true_rate", true_rate).is_err()
    {
        return f64::NAN;
    }
    let fails = |errors: u64| binomial_at_least(requests, errors, max_rate) <= alpha;
    match first_true(0, requests, fails) {
        Some(critical) => binomial_at_least(requests, critical, true_rate),
        None => 0.0,
    }
}

/// Smallest n with max_rate^n ≤ α, the fewest requests at which all errors would fail.
fn requests_to_fail_on_all_errors(max_rate: f64, alpha: f64) -> Option<u64> {
    if max_rate >= 1.0 {
        return None;
    }
    if max_rate <= 0.0 {
        return Some(1);
    }
    smallest_n(
        |n| binomial_at_least(n, n, max_rate) <= alpha,
        alpha.ln() / max_rate.ln(),
    )
}

// ---------------------------------------------------------------------------------------------
// Gate 2: relative error rate.

/// Fails if the canary's error rate exceeds the baseline's by more than `margin` (a rate
/// difference, e.g. 0.01 for one point), by an exact unconditional test.
///
/// Null: p_c − p_b ≤ margin (any rates). The test is Barnard-type with Berger–Boos' nuisance
/// restriction:
/// * statistic T = (p̂_c − p̂_b − margin) / σ(x_b), with the null variance estimated from the
///   baseline, σ² = p*(1 − p*)/n_c + w(1 − w)/n_b, w = (x_b + 1)/(n_b + 2), p* = w + margin
///   (clamped inside (0, 1)). It increases in x_c for fixed x_b, so the rejection region
///   {T ≥ t} is closed upwards in x_c; it is then closed downwards in x_b by taking its
///   monotone hull (which only enlarges it, keeping the test valid).
/// * For a region closed that way, P(region) increases in p_c and decreases in p_b, so for a
///   given baseline rate ν the worst null point is p_c = ν + margin.
/// * p-value = γ + sup over ν in the (1 − γ) Clopper–Pearson interval of the baseline rate of
///   P_{ν+margin, ν}(region), γ = α/50. Valid by Berger and Boos (1994): the interval misses
///   the true rate with probability ≤ γ, and otherwise the sup bounds the exact tail.
/// * The sup is computed rigorously by branch and bound: on a piece [a, b] of the interval,
///   monotonicity gives P ≤ P_{b+margin, a}(region); pieces are split until the bound is within
///   1 % of the best value found (or 1 500 evaluations, each O(√n) per arm); binomial sums are
///   truncated where the Chernoff bound of each tail is below 1e-15, and the tails added back.
///   The reported p-value is therefore an upper bound on the exact Berger–Boos p-value, and
///   never below γ = α/50.
///
/// Chosen over the union of two Clopper–Pearson bounds (also exact, but its α/2 + α/2 split and
/// linearly added errors cost a lot of power: about z = 2.5–2.8 instead of 1.65 at 95 %) and
/// over Fisher's test (exact only for margin 0). The interval's lower end inverts this test
/// over margins (bisection), so it exceeds `margin` iff the gate fails. Decidable iff the most
/// extreme outcome (all canary requests failed, no baseline request failed) would fail. Work:
/// about 20 tests of O(n_b + √n_c · evaluations).
pub fn relative_error_rate_gate(
    canary: ErrorCount,
    baseline: ErrorCount,
    margin: f64,
    alpha: f64,
) -> GateJudgement {
    let base = Skeleton::new(margin, alpha, (canary.requests, baseline.requests));
    if let Err(problem) = check_alpha(alpha)
        .and_then(|()| check_margin(margin))
        .and_then(|()| check_count("canary", canary))
        .and_then(|()| check_count("baseline", baseline))
    {
        return base.invalid(problem);
    }
    let (xc, nc, xb, nb) = (
        canary.errors,
        canary.requests,
        baseline.errors,
        baseline.requests,
    );
    if nc == 0 || nb == 0 {
        let which = if nc == 0 { "canary" } else { "baseline" };
        return base.undecidable(
            f64::NAN,
            (-1.0, 1.0),
            format!(
                "no {which} requests, so the error rates cannot be compared (allowed: {})",
                points(margin)
            ),
        );
    }
    let measured = xc as f64 / nc as f64 - xb as f64 / nb as f64;
    let test = RelativeErrorTest::new(nc, nb, margin, alpha);
    let (p_value, passed) = test.p_value(xc, xb);
    let decidable = test.fails(nc, 0, SUPREMUM_EVALUATIONS);
    let lower = test.lower_bound(xc, xb, passed);
    let level = confidence_percent(alpha);
    let observed = format!(
        "canary error rate {} vs baseline {} ({}; {level} % lower bound {}; {nc} vs {nb} \
         requests)",
        percent(xc as f64 / nc as f64),
        percent(xb as f64 / nb as f64),
        points(measured),
        points(lower)
    );
    let verdict = if !passed {
        format!(
            "is worse than the baseline by more than the allowed {}",
            points(margin)
        )
    } else if !decidable {
        format!(
            "cannot be shown worse than the baseline by more than {} with so few requests at \
             α = {}",
            points(margin),
            sig(alpha)
        )
    } else {
        format!("is within the allowed {}", points(margin))
    };
    let test_figure = if passed {
        format!("exact unconditional test {}", format_p(p_value))
    } else {
        format!(
            "exact unconditional test {} ≤ α = {}",
            format_p(p_value),
            sig(alpha)
        )
    };
    GateJudgement {
        passed,
        measured,
        interval: (lower, 1.0),
        p_value,
        decidable,
        reason: format!("{observed} {verdict} ({test_figure})"),
        ..base.judgement()
    }
}

/// Exact probability that [`relative_error_rate_gate`] fails at true rates `canary_rate` and
/// `baseline_rate`, up to 2e-15 of truncated binomial mass.
///
/// Sums, over the plausible baseline error counts (Chernoff window), the probability of the
/// canary counts at which the gate fails; the gate fails on a suffix of canary counts, whose
/// start is found by galloping search from the previous row's start. Work: about
/// 3 × (window of baseline counts, at most ~12·√n_b + 70) gate decisions.
pub fn relative_error_rate_gate_power(
    canary_requests: u64,
    canary_rate: f64,
    baseline_requests: u64,
    baseline_rate: f64,
    margin: f64,
    alpha: f64,
) -> f64 {
    if check_alpha(alpha).is_err()
        || check_margin(margin).is_err()
        || check_rate("canary_rate", canary_rate).is_err()
        || check_rate("baseline_rate", baseline_rate).is_err()
    {
        return f64::NAN;
    }
    let (nc, nb) = (canary_requests, baseline_requests);
    if nc == 0 || nb == 0 {
        return 0.0;
    }
    let test = RelativeErrorTest::new(nc, nb, margin, alpha);
    let window = BinomialWindow::new(nb, baseline_rate);
    let mut guess = nc;
    let mut power = 0.0;
    for (offset, &mass) in window.pmf.iter().enumerate() {
        let xb = window.lo + offset as u64;
        let start = test.first_failing(xb, guess);
        if start <= nc {
            guess = start;
            power += mass * binomial_at_least(nc, start, canary_rate);
        }
    }
    power.min(1.0)
}

/// The fixed parts of one relative error-rate comparison.
struct RelativeErrorTest {
    nc: u64,
    nb: u64,
    margin: f64,
    alpha: f64,
    gamma: f64,
}

impl RelativeErrorTest {
    fn new(nc: u64, nb: u64, margin: f64, alpha: f64) -> Self {
        RelativeErrorTest {
            nc,
            nb,
            margin,
            alpha,
            gamma: alpha * NUISANCE_SHARE,
        }
    }

    fn with_margin(&self, margin: f64) -> Self {
        RelativeErrorTest::new(self.nc, self.nb, margin, self.alpha)
    }

    /// σ depends on the baseline count only, which is what makes T monotone in x_c.
    fn sigma(&self, xb: u64) -> f64 {
        let w = (xb as f64 + 1.0) / (self.nb as f64 + 2.0);
        let edge = 0.5 / (self.nc as f64 + 1.0);
        let pc = (w + self.margin).clamp(edge, 1.0 - edge);
        (pc * (1.0 - pc) / self.nc as f64 + w * (1.0 - w) / self.nb as f64).sqrt()
    }

    fn statistic(&self, xc: u64, xb: u64) -> f64 {
        (xc as f64 / self.nc as f64 - xb as f64 / self.nb as f64 - self.margin) / self.sigma(xb)
    }

    /// Smallest x_c with T(x_c, x_b) ≥ t, or n_c + 1 when there is none.
    fn row_start(&self, xb: u64, t: f64) -> u64 {
        let nc = self.nc;
        let needed = (t * self.sigma(xb) + xb as f64 / self.nb as f64 + self.margin) * nc as f64;
        let mut c = if needed <= 0.0 {
            0
        } else if needed > nc as f64 {
            nc + 1
        } else {
            needed.ceil() as u64
        };
        // The closed form can be one off by rounding; T itself decides.
        while c > 0 && self.statistic(c - 1, xb) >= t {
            c -= 1;
        }
        while c <= nc && self.statistic(c, xb) < t {
            c += 1;
        }
        c
    }

    /// Start of each row of the monotone hull of {T ≥ t}: closed upwards in x_c (rows are
    /// suffixes) and downwards in x_b (starts never decrease).
    fn region(&self, t: f64) -> Vec<u64> {
        let mut starts: Vec<u64> = (0..=self.nb).map(|xb| self.row_start(xb, t)).collect();
        for xb in (0..self.nb as usize).rev() {
            starts[xb] = starts[xb].min(starts[xb + 1]);
        }
        starts
    }

    /// Baseline rates to maximise over: the Berger–Boos interval, where the null is not empty.
    fn nuisance_range(&self, xb: u64) -> Option<(f64, f64)> {
        let (lo, hi) = clopper_pearson(xb, self.nb, 1.0 - self.gamma);
        let lo = lo.max((-self.margin).max(0.0));
        (lo <= hi).then_some((lo, hi))
    }

    /// The worst canary rate in the null for baseline rate ν.
    fn boundary(&self, nu: f64) -> f64 {
        (nu + self.margin).clamp(0.0, 1.0)
    }

    /// The binomial windows at nuisance value ν, shared by the point value at ν and the
    /// corner bounds of the two pieces that end at ν.
    fn node(&self, nu: f64) -> Node {
        let canary = BinomialWindow::new(self.nc, self.boundary(nu));
        let mut suffix = vec![0.0; canary.pmf.len() + 1];
        for i in (0..canary.pmf.len()).rev() {
            suffix[i] = suffix[i + 1] + canary.pmf[i];
        }
        Node {
            canary,
            suffix,
            baseline: BinomialWindow::new(self.nb, nu),
        }
    }

    /// P(region) with the canary distributed as in `canary` and the baseline as in `baseline`:
    /// a lower bound from the truncated sums, or (`upper`) an upper bound with the truncated
    /// tails added back.
    fn probability(&self, starts: &[u64], canary: &Node, baseline: &Node, upper: bool) -> f64 {
        let (window, suffix) = (&canary.canary, &canary.suffix);
        let top = window.lo + window.pmf.len() as u64 - 1;
        let at_least = |c: u64| -> f64 {
            if c > self.nc {
                return 0.0;
            }
            let inside = if c > top {
                0.0
            } else {
                suffix[(c.max(window.lo) - window.lo) as usize]
            };
            if upper {
                let below = if c < window.lo { window.below } else { 0.0 };
                inside + window.above + below
            } else {
                inside
            }
        };
        let rows = &baseline.baseline;
        let mut sum = 0.0;
        for (offset, &mass) in rows.pmf.iter().enumerate() {
            sum += mass * at_least(starts[(rows.lo + offset as u64) as usize]);
        }
        if upper {
            ((sum + rows.below + rows.above) * (1.0 + ROUNDING)).min(1.0)
        } else {
            sum.min(1.0)
        }
    }

    /// Bounds (lower, upper) on sup over ν in `range` of P_{ν+margin, ν}(region), by branch and
    /// bound: on a piece [a, b], P ≤ P_{b+margin, a}(region) since the region's probability
    /// increases in p_c and decreases in p_b. Stops once decided against `target` (and, when
    /// `refine`, once the bounds are within the tolerance), or after `cap` evaluations. The
    /// sequence of pieces is the same whatever the stopping rule, so a decision-only run agrees
    /// with a refined run.
    fn supremum(
        &self,
        starts: &[u64],
        range: (f64, f64),
        target: f64,
        refine: bool,
        cap: usize,
    ) -> (f64, f64) {
        let (lo, hi) = range;
        let pieces = if hi > lo { INITIAL_PIECES } else { 1 };
        let mut positions: Vec<f64> = (0..=pieces)
            .map(|i| {
                if i == pieces {
                    hi
                } else {
                    lo + (hi - lo) * i as f64 / pieces as f64
                }
            })
            .collect();
        let mut nodes: Vec<Node> = positions.iter().map(|&nu| self.node(nu)).collect();
        let point =
            |nodes: &[Node], i: usize| self.probability(starts, &nodes[i], &nodes[i], false);
        let corner = |nodes: &[Node], a: usize, b: usize| {
            self.probability(starts, &nodes[b], &nodes[a], true)
        };
        let mut best = (0..=pieces).map(|i| point(&nodes, i)).fold(0.0, f64::max);
        let mut heap: BinaryHeap<Piece> = (0..pieces)
            .map(|i| Piece {
                bound: corner(&nodes, i, i + 1),
                a: i,
                b: i + 1,
                start: positions[i],
            })
            .collect();
        let mut evaluations = 2 * pieces + 1;
        loop {
            let Some(top) = heap.pop() else {
                return (best, best);
            };
            let upper = top.bound.max(best);
            let decided = upper <= target || best > target;
            let close = upper <= best * (1.0 + SUPREMUM_TOLERANCE) + 1e-300;
            if (decided && (!refine || close)) || evaluations >= cap {
                return (best, upper);
            }
            let (a, b) = (positions[top.a], positions[top.b]);
            let mid = 0.5 * (a + b);
            if !(mid > a && mid < b) {
                // Float resolution: the corner bound of this piece is as tight as it gets.
                return (best, upper);
            }
            nodes.push(self.node(mid));
            positions.push(mid);
            let m = nodes.len() - 1;
            best = best.max(point(&nodes, m));
            heap.push(Piece {
                bound: corner(&nodes, top.a, m),
                a: top.a,
                b: m,
                start: a,
            });
            heap.push(Piece {
                bound: corner(&nodes, m, top.b),
                a: m,
                b: top.b,
                start: mid,
            });
            evaluations += 3;
        }
    }

    /// (p-value, passed) for the observed counts, with the p-value refined.
    fn p_value(&self, xc: u64, xb: u64) -> (f64, bool) {
        let target = self.alpha - self.gamma;
        let upper = match self.nuisance_range(xb) {
            Some(range) => {
                let starts = self.region(self.statistic(xc, xb));
                self.supremum(&starts, range, target, true, SUPREMUM_EVALUATIONS)
                    .1
            }
            None => 0.0,
        };
        let p = (self.gamma + upper).min(1.0);
        (p, upper > target)
    }

    /// The gate's decision without refining the p-value; same verdict as [`Self::p_value`]
    /// when `cap` is [`SUPREMUM_EVALUATIONS`].
    fn fails(&self, xc: u64, xb: u64, cap: usize) -> bool {
        let target = self.alpha - self.gamma;
        match self.nuisance_range(xb) {
            Some(range) => {
                let starts = self.region(self.statistic(xc, xb));
                self.supremum(&starts, range, target, false, cap).1 <= target
            }
            None => true,
        }
    }

    /// First canary count at which the gate fails for baseline count `xb` (n_c + 1 if none),
    /// by galloping from `guess`: the gate fails on a suffix of canary counts.
    fn first_failing(&self, xb: u64, guess: u64) -> u64 {
        let nc = self.nc;
        let fails = |xc: u64| self.fails(xc, xb, SUPREMUM_EVALUATIONS);
        let guess = guess.min(nc);
        // Invariant: `pass` passes (or is "-1"), `fail` fails (or is n_c + 1).
        let (mut pass, mut fail): (Option<u64>, u64);
        if fails(guess) {
            fail = guess;
            pass = None;
            let mut step = 1;
            while fail > 0 {
                let probe = fail.saturating_sub(step);
                if fails(probe) {
                    fail = probe;
                    step *= 2;
                } else {
                    pass = Some(probe);
                    break;
                }
            }
        } else {
            pass = Some(guess);
            fail = nc + 1;
            let mut step = 1;
            let mut at = guess;
            while at < nc {
                let probe = (at + step).min(nc);
                if fails(probe) {
                    fail = probe;
                    break;
                }
                at = probe;
                pass = Some(probe);
                step *= 2;
            }
        }
        let Some(mut pass) = pass else {
            return 0;
        };
        while fail - pass > 1 {
            let mid = pass + (fail - pass) / 2;
            if fails(mid) {
                fail = mid;
            } else {
                pass = mid;
            }
        }
        fail
    }

    /// Lower (1 − α) confidence bound of p_c − p_b: the largest margin at which the test still
    /// fails, by bisection. Bracketed at the gate's own margin, so it exceeds `margin` iff the
    /// gate failed, whether or not failing is monotone in the margin; the bracket is first
    /// narrowed by galloping from the Wald bound, which is usually close.
    fn lower_bound(&self, xc: u64, xb: u64, passed: bool) -> f64 {
        let fails = |margin: f64| self.with_margin(margin).fails(xc, xb, BOUND_EVALUATIONS);
        let (mut fail, mut pass) = if passed {
            (-1.0, self.margin)
        } else {
            (self.margin, 1.0)
        };
        let rate = |x: u64, n: u64| (x as f64 + 0.5) / (n as f64 + 1.0);
        let (pc, pb) = (rate(xc, self.nc), rate(xb, self.nb));
        let se = (pc * (1.0 - pc) / self.nc as f64 + pb * (1.0 - pb) / self.nb as f64).sqrt();
        let z = std::f64::consts::SQRT_2 * erfc_inv(2.0 * self.alpha);
        let guess = xc as f64 / self.nc as f64 - xb as f64 / self.nb as f64 - z * se;
        let mut step = (0.25 * se).max(BOUND_RESOLUTION);
        if guess > fail && guess < pass {
            if fails(guess) {
                fail = guess;
                while fail + step < pass {
                    if fails(fail + step) {
                        fail += step;
                        step *= 2.0;
                    } else {
                        pass = fail + step;
                        break;
                    }
                }
            } else {
                pass = guess;
                while pass - step > fail {
                    if fails(pass - step) {
                        fail = pass - step;
                        break;
                    }
                    pass -= step;
                    step *= 2.0;
                }
            }
        }
        while pass - fail > BOUND_RESOLUTION {
            let mid = 0.5 * (fail + pass);
            if fails(mid) {
                fail = mid;
            } else {
                pass = mid;
            }
        }
        fail
    }
}

/// Binomial windows at one nuisance value ν: the canary at the null boundary ν + margin (with
/// suffix sums), the baseline at ν.
struct Node {
    canary: BinomialWindow,
    suffix: Vec<f64>,
    baseline: BinomialWindow,
}

/// A piece of the nuisance interval, between two nodes, with an upper bound on the
/// probability over it.
struct Piece {
    bound: f64,
    a: usize,
    b: usize,
    /// Where the piece starts, to order ties deterministically.
    start: f64,
}

impl PartialEq for Piece {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Piece {}

impl PartialOrd for Piece {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Piece {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bound
            .total_cmp(&other.bound)
            .then(other.start.total_cmp(&self.start))
    }
}

/// Binomial(n, p) probabilities on the window [lo, lo + len) outside which each tail has mass
/// at most [`TAIL_MASS`]; `below` and `above` bound the masses left out.
struct BinomialWindow {
    lo: u64,
    pmf: Vec<f64>,
    below: f64,
    above: f64,
}

impl BinomialWindow {
    fn new(n: u64, p: f64) -> Self {
        if n == 0 || p <= 0.0 || p >= 1.0 {
            let lo = if p >= 1.0 { n } else { 0 };
            return BinomialWindow {
                lo,
                pmf: vec![1.0],
                below: 0.0,
                above: 0.0,
            };
        }
        let nf = n as f64;
        let budget = -TAIL_MASS.ln();
        // Chernoff: P(X ≥ k) ≤ exp(−n·KL(k/n ‖ p)) for k ≥ np, and likewise below.
        let exponent = |k: u64| nf * kl(k as f64 / nf, p);
        let mean_floor = (nf * p).floor() as u64;
        let mean_ceil = ((nf * p).ceil() as u64).min(n);
        let hi = first_true(mean_floor, n, |k| k == n || exponent(k + 1) >= budget).unwrap_or(n);
        let lo = last_true(0, mean_ceil, |k| k == 0 || exponent(k - 1) >= budget)
            .unwrap_or(0)
            .min(hi);
        let above = if hi == n {
            0.0
        } else {
            (-exponent(hi + 1)).exp()
        };
        let below = if lo == 0 {
            0.0
        } else {
            (-exponent(lo - 1)).exp()
        };
        let mode = (((nf + 1.0) * p).floor() as u64).clamp(lo, hi);
        let mut pmf = vec![0.0; (hi - lo + 1) as usize];
        let odds = p / (1.0 - p);
        let at = (mode - lo) as usize;
        pmf[at] = ln_binomial_pmf(n, mode, p).exp();
        for k in mode..hi {
            let i = (k - lo) as usize;
            pmf[i + 1] = pmf[i] * (n - k) as f64 / (k + 1) as f64 * odds;
        }
        for k in (lo + 1..=mode).rev() {
            let i = (k - lo) as usize;
            pmf[i - 1] = pmf[i] * k as f64 / (n - k + 1) as f64 / odds;
        }
        // The log-gamma at the mode is off by up to ~1e-11 for large n and scales every term;
        // the window's true mass is within 2e-15 of 1, so normalising removes that error.
        let total: f64 = pmf.iter().sum();
        for x in pmf.iter_mut() {
            *x /= total;
        }
        BinomialWindow {
            lo,
            pmf,
            below,
            above,
        }
    }
}

/// Kullback–Leibler divergence of Bernoulli(a) from Bernoulli(p).
fn kl(a: f64, p: f64) -> f64 {
    let term = |x: f64, y: f64| if x <= 0.0 { 0.0 } else { x * (x / y).ln() };
    term(a, p) + term(1.0 - a, 1.0 - p)
}

fn ln_binomial_pmf(n: u64, k: u64, p: f64) -> f64 {
    let (nf, kf) = (n as f64, k as f64);
    ln_gamma(nf + 1.0) - ln_gamma(kf + 1.0) - ln_gamma(nf - kf + 1.0)
        + kf * p.ln()
        + (nf - kf) * (1.0 - p).ln()
}

/// P(X ≥ k) for X ~ Binomial(n, p), from the regularised incomplete beta function.
fn binomial_at_least(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    beta_reg(k as f64, (n - k + 1) as f64, p).clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------------------------
// Order statistics (gates 3 and 4).

/// P(X ≤ k) and P(X ≥ k) for X ~ Binomial(n, q), k = 0..=n, each summed from its own end so
/// both tails keep their relative precision and both tables are monotone.
struct BinomialTables {
    at_most: Vec<f64>,
    at_least: Vec<f64>,
}

impl BinomialTables {
    fn new(n: usize, q: f64) -> Self {
        let (ln_q, ln_r) = (q.ln(), (1.0 - q).ln());
        let mut ln_choose = 0.0;
        let pmf: Vec<f64> = (0..=n)
            .map(|k| {
                if k > 0 {
                    ln_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
                }
                (ln_choose + k as f64 * ln_q + (n - k) as f64 * ln_r).exp()
            })
            .collect();
        let mut at_most = pmf.clone();
        for k in 1..=n {
            at_most[k] += at_most[k - 1];
        }
        let mut at_least = pmf;
        for k in (0..n).rev() {
            at_least[k] += at_least[k + 1];
        }
        BinomialTables { at_most, at_least }
    }

    /// Rank k (1-based) of the order statistic that is a (1 − α) lower confidence bound for
    /// the q-quantile: the largest k with P(Bin(n, q) ≤ k − 1) ≤ α, since
    /// P(X_(k) > ξ_q) = P(#{X ≤ ξ_q} ≤ k − 1) ≤ P(Bin(n, q) ≤ k − 1) for any distribution.
    fn lower_rank(&self, alpha: f64) -> Option<usize> {
        let n = self.at_most.len() - 1;
        let k = self.at_most[..n].partition_point(|&p| p <= alpha);
        (k >= 1).then_some(k)
    }

    /// Rank j of the (1 − α) upper confidence bound: the smallest j with
    /// P(Bin(n, q) ≥ j) ≤ α, since P(X_(j) < ξ_q) ≤ P(Bin(n, q) ≥ j).
    fn upper_rank(&self, alpha: f64) -> Option<usize> {
        let n = self.at_least.len() - 1;
        let j = 1 + self.at_least[1..].partition_point(|&p| p > alpha);
        (j <= n).then_some(j)
    }
}

/// The sample q-quantile: the smallest sample with at least a share q of samples at or below
/// it (the inverse of the empirical distribution function).
fn sample_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// Fails if the canary's `quantile` (e.g. 0.99) latency exceeds `max_ms`.
///
/// Null: ξ_q ≤ max_ms, i.e. F(max_ms) ≥ q. The count B of samples ≤ max_ms is
/// Binomial(n, F(max_ms)), so p = P(Bin(n, q) ≤ B) is exact at the boundary and conservative
/// inside the null, for any distribution (ties included). It fails iff the order-statistic
/// lower bound X_(k) (largest k with P(Bin(n, q) ≤ k − 1) ≤ α) exceeds `max_ms`. Decidable iff
/// (1 − q)^n ≤ α. Work: O(n log n).
pub fn latency_quantile_gate(
    canary_ms: &[f64],
    quantile: f64,
    max_ms: f64,
    alpha: f64,
) -> GateJudgement {
    let base = Skeleton::new(max_ms, alpha, (canary_ms.len() as u64, 0));
    if let Err(problem) = check_alpha(alpha)
        .and_then(|()| check_quantile(quantile))
        .and_then(|()| check_positive("max_ms", max_ms))
        .and_then(|()| check_latencies("canary", canary_ms))
    {
        return base.invalid(problem);
    }
    let name = quantile_name(quantile);
    let n = canary_ms.len();
    let needed = samples_for_bound(1.0 - quantile, alpha);
    if n == 0 {
        return base.undecidable(
            f64::NAN,
            (0.0, f64::INFINITY),
            format!(
                "no canary latencies, so {name} cannot be judged against {} ms",
                sig(max_ms)
            ),
        );
    }
    let sorted = sorted(canary_ms);
    let tables = BinomialTables::new(n, quantile);
    let within = sorted.partition_point(|&x| x <= max_ms);
    let p_value = if within >= n {
        1.0
    } else {
        tables.at_most[within].min(1.0)
    };
    let passed = p_value > alpha;
    let rank = tables.lower_rank(alpha);
    let lower = rank.map_or(0.0, |k| sorted[k - 1]);
    let measured = sample_quantile(&sorted, quantile);
    let level = confidence_percent(alpha);
    let observed = format!(
        "canary {name} {} ms ({n} samples, {within} at or below {} ms; {level} % lower bound {})",
        sig(measured),
        sig(max_ms),
        rank.map_or("none".to_string(), |_| format!("{} ms", sig(lower)))
    );
    let decidable = rank.is_some();
    let reason = if !decidable {
        format!(
            "{observed} cannot exceed the {} ms limit at α = {}: a lower bound for {name} \
             needs at least {needed} samples ({})",
            sig(max_ms),
            sig(alpha),
            format_p(p_value)
        )
    } else if passed {
        format!(
            "{observed} is within the {} ms limit ({})",
            sig(max_ms),
            format_p(p_value)
        )
    } else {
        format!(
            "{observed} exceeds the {} ms limit ({} ≤ α = {})",
            sig(max_ms),
            format_p(p_value),
            sig(alpha)
        )
    };
    GateJudgement {
        passed,
        measured,
        interval: (lower, f64::INFINITY),
        p_value,
        decidable,
        reason,
        ..base.judgement()
    }
}

/// Fails if the canary's `quantile` latency exceeds (1 + `max_increase`) × the baseline's.
///
/// Null: ξ_c ≤ (1 + r)·ξ_b. Fails iff the canary's order-statistic lower bound at α/2
/// exceeds (1 + r) × the baseline's order-statistic upper bound at α/2: if both bounds hold
/// (probability ≥ 1 − α for any distributions), LB_c ≤ ξ_c ≤ (1 + r)ξ_b ≤ (1 + r)UB_b. The
/// p-value is the smallest α at which it would fail,
/// min over baseline ranks j of 2·max(P(Bin(n_c, q) ≤ c_j), P(Bin(n_b, q) ≥ j)) with c_j the
/// canary samples ≤ (1 + r)·Y_(j). The interval is for the ratio ξ_c/ξ_b: LB_c / UB_b.
/// Undecidable when either bound does not exist at these sizes (the reason says how many
/// samples it takes). Ratios within 1e-9 of the threshold count as within it. Work:
/// O((n_c + n_b) log).
pub fn relative_latency_quantile_gate(
    canary_ms: &[f64],
    baseline_ms: &[f64],
    quantile: f64,
    max_increase: f64,
    alpha: f64,
) -> GateJudgement {
    let threshold = 1.0 + max_increase;
    let samples = (canary_ms.len() as u64, baseline_ms.len() as u64);
    let base = Skeleton::new(threshold, alpha, samples);
    if let Err(problem) = check_alpha(alpha)
        .and_then(|()| check_quantile(quantile))
        .and_then(|()| check_increase(max_increase))
        .and_then(|()| check_latencies("canary", canary_ms))
        .and_then(|()| check_latencies("baseline", baseline_ms))
    {
        return base.invalid(problem);
    }
    let name = quantile_name(quantile);
    let (nc, nb) = (canary_ms.len(), baseline_ms.len());
    let half = alpha / 2.0;
    let canary_needed = samples_for_bound(1.0 - quantile, half);
    let baseline_needed = samples_for_bound(quantile, half);
    if nc == 0 || nb == 0 {
        let which = if nc == 0 { "canary" } else { "baseline" };
        return base.undecidable(
            f64::NAN,
            (0.0, f64::INFINITY),
            format!(
                "no {which} latencies, so {name} cannot be compared (limit {}× baseline)",
                sig(threshold)
            ),
        );
    }
    let canary = sorted(canary_ms);
    let baseline = sorted(baseline_ms);
    let canary_tables = BinomialTables::new(nc, quantile);
    let baseline_tables = BinomialTables::new(nb, quantile);
    let limit = |y: f64| threshold * y * (1.0 + RATIO_TOLERANCE);

    let mut smallest = f64::INFINITY;
    for (j, &y) in baseline.iter().enumerate() {
        let below = canary.partition_point(|&x| x <= limit(y));
        if below < nc {
            let size = canary_tables.at_most[below].max(baseline_tables.at_least[j + 1]);
            smallest = smallest.min(2.0 * size);
        }
    }
    let p_value = smallest.min(1.0);
    let lower_rank = canary_tables.lower_rank(half);
    let upper_rank = baseline_tables.upper_rank(half);
    let passed = p_value > alpha;
    let measured = sample_quantile(&canary, quantile) / sample_quantile(&baseline, quantile);
    let level = confidence_percent(alpha);
    let (interval, bounds) = match (lower_rank, upper_rank) {
        (Some(k), Some(j)) => {
            let (lo, hi) = (canary[k - 1], baseline[j - 1]);
            (
                (lo / hi, f64::INFINITY),
                format!(
                    "{level} % lower bound {} = canary ≥ {} ms over baseline ≤ {} ms",
                    sig(lo / hi),
                    sig(lo),
                    sig(hi)
                ),
            )
        }
        _ => ((0.0, f64::INFINITY), "no bound".to_string()),
    };
    let decidable = lower_rank.is_some() && upper_rank.is_some();
    let observed = format!(
        "canary {name} {} ms vs baseline {} ms (ratio {}; {bounds}; {nc} vs {nb} samples)",
        sig(sample_quantile(&canary, quantile)),
        sig(sample_quantile(&baseline, quantile)),
        sig(measured)
    );
    let reason = if !decidable {
        let mut missing = Vec::new();
        if upper_rank.is_none() {
            missing.push(format!(
                "an upper bound for the baseline's {name} needs at least {baseline_needed} \
                 baseline samples"
            ));
        }
        if lower_rank.is_none() {
            missing.push(format!(
                "a lower bound for the canary's {name} needs at least {canary_needed} canary \
                 samples"
            ));
        }
        format!(
            "{observed} cannot exceed the {}× limit at α = {}: {} ({})",
            sig(threshold),
            sig(alpha),
            missing.join(" and "),
            format_p(p_value)
        )
    } else if passed {
        format!(
            "{observed} is within the {}× limit ({})",
            sig(threshold),
            format_p(p_value)
        )
    } else {
        format!(
            "{observed} exceeds the {}× limit ({} ≤ α = {})",
            sig(threshold),
            format_p(p_value),
            sig(alpha)
        )
    };
    GateJudgement {
        passed,
        measured,
        interval,
        p_value,
        decidable,
        reason,
        ..base.judgement()
    }
}

/// Smallest n with share^n ≤ level: the fewest samples for which an order-statistic bound
/// exists (share = 1 − q for a lower bound, q for an upper one).
fn samples_for_bound(share: f64, level: f64) -> u64 {
    smallest_n(
        |n| (n as f64 * share.ln()).exp() <= level,
        level.ln() / share.ln(),
    )
    .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Gate 5: latency shift (Mann–Whitney / Hodges–Lehmann on log latencies).

/// Fails if the canary is slower than the baseline by more than a factor 1 + `max_increase`,
/// Kayenta style, by Mann–Whitney on log latencies.
///
/// Null: canary latency / (1 + r) is stochastically no larger than baseline latency (this
/// includes identical distributions and any ratio ≤ 1 + r in the scale model). With
/// δ = ln(1 + r) and U = #{(i, j): ln X_i − ln Y_j > δ}, p = P₀(U ≥ u) under the permutation
/// null; differences equal to δ (within 1e-9) count as not exceeding it, which is conservative
/// with ties. It fails iff the Lehmann lower bound D_(k) of the pairwise differences exceeds
/// δ, k = nm − u_α + 1 with u_α the smallest count with P₀(U ≥ u_α) ≤ α. `measured` is
/// exp(Hodges–Lehmann), the median of the n·m differences, as a ratio.
///
/// The null distribution is exact (generating function of the Gaussian binomial coefficient,
/// O(min² · max) work) while the smaller sample has at most 24 values and min² · max ≤ 2^24.
/// Beyond that it is the normal approximation with continuity correction and the variance
/// corrected for ties within each sample; U's exact law is platykurtic, so in the tails that
/// matter (p below about 0.04) the normal tail is the larger one, and with ≥ 25 values per arm
/// the two differ by less than 2e-3 elsewhere (checked by the tests). A very small arm against
/// a very large one (min² · max > 2^24, e.g. 24 vs 30 000) also uses the normal approximation,
/// which there is only asymptotically exact. The order statistics of
/// the n·m differences are selected without materialising them: bisection on the value with
/// an O(n + m) count per step (≤ 64 steps). Work: O((n + m) · 64) plus the exact null if used.
pub fn latency_shift_gate(
    canary_ms: &[f64],
    baseline_ms: &[f64],
    max_increase: f64,
    alpha: f64,
) -> GateJudgement {
    let threshold = 1.0 + max_increase;
    let samples = (canary_ms.len() as u64, baseline_ms.len() as u64);
    let base = Skeleton::new(threshold, alpha, samples);
    if let Err(problem) = check_alpha(alpha)
        .and_then(|()| check_increase(max_increase))
        .and_then(|()| check_latencies("canary", canary_ms))
        .and_then(|()| check_latencies("baseline", baseline_ms))
    {
        return base.invalid(problem);
    }
    if canary_ms.is_empty() || baseline_ms.is_empty() {
        let which = if canary_ms.is_empty() {
            "canary"
        } else {
            "baseline"
        };
        return base.undecidable(
            f64::NAN,
            (0.0, f64::INFINITY),
            format!(
                "no {which} latencies, so the latency shift cannot be judged (limit {}×)",
                sig(threshold)
            ),
        );
    }
    let logs = |xs: &[f64]| sorted(&xs.iter().map(|x| x.ln()).collect::<Vec<_>>());
    let (a, b) = (logs(canary_ms), logs(baseline_ms));
    let pairs = a.len() as u64 * b.len() as u64;
    let null = MannWhitneyNull::new(&a, &b);
    let delta = max_increase.ln_1p() + RATIO_TOLERANCE;
    let exceeding = pairs - count_at_most(&a, &b, delta);
    let p_value = null.at_least(exceeding);
    let passed = p_value > alpha;
    let critical = null.critical(alpha);
    let rank = critical.map(|u| pairs - u + 1);
    let lower = rank.map_or(f64::NEG_INFINITY, |k| select(&a, &b, k));
    let measured = hodges_lehmann(&a, &b).exp();
    let decidable = critical.is_some();
    let level = confidence_percent(alpha);
    let method = if null.is_exact() {
        "exact"
    } else {
        "normal approximation"
    };
    let observed = format!(
        "canary/baseline latency ratio {} (Hodges–Lehmann on log latencies; {level} % lower \
         bound {}; {} vs {} samples)",
        sig(measured),
        if decidable {
            sig(lower.exp())
        } else {
            "none".to_string()
        },
        a.len(),
        b.len()
    );
    let reason = if !decidable {
        format!(
            "{observed} cannot exceed the {}× limit at α = {}: the smallest possible \
             Mann–Whitney p-value at these sizes is {} ({method}, {})",
            sig(threshold),
            sig(alpha),
            sig(null.at_least(pairs)),
            format_p(p_value)
        )
    } else if passed {
        format!(
            "{observed} is within the {}× limit (Mann–Whitney {}, {method})",
            sig(threshold),
            format_p(p_value)
        )
    } else {
        format!(
            "{observed} exceeds the {}× limit (Mann–Whitney {} ≤ α = {}, {method})",
            sig(threshold),
            format_p(p_value),
            sig(alpha)
        )
    };
    GateJudgement {
        passed,
        measured,
        interval: (lower.exp(), f64::INFINITY),
        p_value,
        decidable,
        reason,
        ..base.judgement()
    }
}

/// Null distribution of the Mann–Whitney count U (0..=n·m), continuous case.
enum MannWhitneyNull {
    /// P(U ≤ u) for u = 0..=⌊nm/2⌋; the rest follows by symmetry.
    Exact { pairs: u64, lower_half: Vec<f64> },
    /// Mean nm/2 and this standard deviation (ties within each sample corrected).
    Normal { pairs: u64, sd: f64 },
}

impl MannWhitneyNull {
    /// For sorted samples `a` and `b`.
    fn new(a: &[f64], b: &[f64]) -> Self {
        let (n, m) = (a.len(), b.len());
        let pairs = n as u64 * m as u64;
        let (small, large) = (n.min(m), n.max(m));
        if small <= EXACT_SMALLER && small * small * large <= EXACT_WORK {
            MannWhitneyNull::Exact {
                pairs,
                lower_half: mann_whitney_lower_half(small, large),
            }
        } else {
            let total = (n + m) as f64;
            let ties = tie_sum(a) + tie_sum(b);
            let variance = pairs as f64 / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)));
            MannWhitneyNull::Normal {
                pairs,
                sd: variance.max(0.0).sqrt(),
            }
        }
    }

    fn is_exact(&self) -> bool {
        matches!(self, MannWhitneyNull::Exact { .. })
    }

    /// P₀(U ≥ u).
    fn at_least(&self, u: u64) -> f64 {
        match self {
            MannWhitneyNull::Exact { pairs, lower_half } => {
                if u == 0 {
                    return 1.0;
                }
                if u > *pairs {
                    return 0.0;
                }
                // P(U ≥ u) = P(U ≤ nm − u) by symmetry.
                let v = pairs - u;
                let half = (lower_half.len() - 1) as u64;
                if v <= half {
                    lower_half[v as usize]
                } else {
                    1.0 - lower_half[(pairs - v - 1) as usize]
                }
            }
            MannWhitneyNull::Normal { pairs, sd } => {
                if u == 0 {
                    return 1.0;
                }
                if u > *pairs {
                    return 0.0;
                }
                let z = (u as f64 - 0.5 - *pairs as f64 / 2.0) / sd;
                0.5 * erfc(z / std::f64::consts::SQRT_2)
            }
        }
    }

    /// Smallest u with P₀(U ≥ u) ≤ α, if any.
    fn critical(&self, alpha: f64) -> Option<u64> {
        let pairs = match self {
            MannWhitneyNull::Exact { pairs, .. } | MannWhitneyNull::Normal { pairs, .. } => *pairs,
        };
        first_true(0, pairs, |u| self.at_least(u) <= alpha)
    }
}

/// Σ (t³ − t) over groups of equal values in a sorted sample.
fn tie_sum(sorted: &[f64]) -> f64 {
    let mut sum = 0.0;
    let mut start = 0;
    for i in 1..=sorted.len() {
        if i == sorted.len() || sorted[i] != sorted[start] {
            let t = (i - start) as f64;
            sum += t * t * t - t;
            start = i;
        }
    }
    sum
}

/// Exact P(U ≤ u), u = 0..=⌊sl/2⌋, for samples of sizes `small` and `large`.
///
/// The counts are the coefficients of the Gaussian binomial [s + l choose s]_q =
/// ∏_{i ≤ s} (1 − q^{l+i}) / (1 − q^i). Dividing by all (1 − q^i) first gives partition counts
/// (only additions); the multiplications by (1 − q^{l+i}) then subtract at most s/2 times per
/// coefficient below the middle, so little precision is lost. Work: 2·s·(sl/2).
fn mann_whitney_lower_half(small: usize, large: usize) -> Vec<f64> {
    let half = small * large / 2;
    let mut counts = vec![0.0f64; half + 1];
    counts[0] = 1.0;
    for i in 1..=small {
        for u in i..=half {
            counts[u] += counts[u - i];
        }
    }
    for i in 1..=small {
        let shift = large + i;
        for u in (shift..=half).rev() {
            counts[u] -= counts[u - shift];
        }
    }
    // Rounding can leave a tiny negative count; clamping keeps the cdf monotone.
    for c in counts.iter_mut() {
        *c = c.max(0.0);
    }
    let below: f64 = counts[..half].iter().sum();
    let total = if (small * large) % 2 == 0 {
        2.0 * below + counts[half]
    } else {
        2.0 * (below + counts[half])
    };
    let mut cumulative = 0.0;
    counts
        .iter()
        .map(|c| {
            cumulative += c;
            (cumulative / total).min(1.0)
        })
        .collect()
}

/// #{(i, j): a_i − b_j ≤ v} for sorted `a`, `b`, with the differences computed exactly as
/// [`select`] compares them. For each a_i the qualifying b_j form a suffix that only moves up.
fn count_at_most(a: &[f64], b: &[f64], v: f64) -> u64 {
    let m = b.len();
    let mut j = 0;
    let mut count = 0u64;
    for &x in a {
        while j < m && x - b[j] > v {
            j += 1;
        }
        count += (m - j) as u64;
    }
    count
}

/// The k-th smallest (1-based) of the n·m differences a_i − b_j, without materialising them:
/// bisection over the ordered bit patterns of doubles, O(n + m) per step, at most 64 steps.
fn select(a: &[f64], b: &[f64], k: u64) -> f64 {
    let (n, m) = (a.len(), b.len());
    let mut lo = order_key(a[0] - b[m - 1]);
    let mut hi = order_key(a[n - 1] - b[0]);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_at_most(a, b, from_order_key(mid)) >= k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    from_order_key(lo)
}

/// Hodges–Lehmann shift: the median of all n·m differences a_i − b_j.
fn hodges_lehmann(a: &[f64], b: &[f64]) -> f64 {
    let pairs = a.len() as u64 * b.len() as u64;
    let lower = select(a, b, pairs.div_ceil(2));
    if pairs % 2 == 1 {
        return lower;
    }
    // The next order statistic is the same value if it is tied, else the smallest above it.
    let upper = if count_at_most(a, b, lower) > pairs / 2 {
        lower
    } else {
        smallest_above(a, b, lower)
    };
    0.5 * (lower + upper)
}

/// The smallest difference a_i − b_j above `v` (which must not be the largest): for each a_i
/// it is the one just before the suffix that [`count_at_most`] counts.
fn smallest_above(a: &[f64], b: &[f64], v: f64) -> f64 {
    let m = b.len();
    let mut j = 0;
    let mut smallest = f64::INFINITY;
    for &x in a {
        while j < m && x - b[j] > v {
            j += 1;
        }
        if j > 0 {
            smallest = smallest.min(x - b[j - 1]);
        }
    }
    smallest
}

/// A u64 whose order is the numeric order of finite doubles.
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_order_key(key: u64) -> f64 {
    if key >> 63 == 1 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// The parts of a judgement every gate fills the same way.
struct Skeleton {
    threshold: f64,
    alpha: f64,
    samples: (u64, u64),
}

impl Skeleton {
    fn new(threshold: f64, alpha: f64, samples: (u64, u64)) -> Self {
        Skeleton {
            threshold,
            alpha,
            samples,
        }
    }

    fn judgement(&self) -> GateJudgement {
        GateJudgement {
            passed: true,
            measured: f64::NAN,
            threshold: self.threshold,
            interval: (f64::NAN, f64::NAN),
            p_value: 1.0,
            alpha: self.alpha,
            samples: self.samples,
            decidable: false,
            reason: String::new(),
        }
    }

    fn invalid(&self, problem: String) -> GateJudgement {
        GateJudgement {
            passed: false,
            p_value: f64::NAN,
            reason: format!("invalid gate input: {problem}"),
            ..self.judgement()
        }
    }

    fn undecidable(&self, measured: f64, interval: (f64, f64), reason: String) -> GateJudgement {
        GateJudgement {
            measured,
            interval,
            reason,
            ..self.judgement()
        }
    }
}

fn check_alpha(alpha: f64) -> Result<(), String> {
    // Written so that NaN fails too.
    if alpha > 0.0 && alpha < 0.5 {
        Ok(())
    } else {
        Err(format!("alpha must be in (0, 0.5), got {alpha}"))
    }
}

fn check_rate(name: &str, rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("{name} must be in [0, 1], got {rate}"))
    }
}

fn check_margin(margin: f64) -> Result<(), String> {
    if margin > -1.0 && margin < 1.0 {
        Ok(())
    } else {
        Err(format!("margin must be in (-1, 1), got {margin}"))
    }
}

fn check_quantile(q: f64) -> Result<(), String> {
    if q > 0.0 && q < 1.0 {
        Ok(())
    } else {
        Err(format!("quantile must be in (0, 1), got {q}"))
    }
}

fn check_positive(name: &str, value: f64) -> Result<(), String> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(format!("{name} must be positive and finite, got {value}"))
    }
}

fn check_increase(r: f64) -> Result<(), String> {
    if r > -1.0 && r.is_finite() {
        Ok(())
    } else {
        Err(format!("max_increase must be finite and above -1, got {r}"))
    }
}

fn check_count(name: &str, count: ErrorCount) -> Result<(), String> {
    if count.errors <= count.requests {
        Ok(())
    } else {
        Err(format!(
            "{name}: {} errors out of only {} requests",
            count.errors, count.requests
        ))
    }
}

fn check_latencies(name: &str, latencies: &[f64]) -> Result<(), String> {
    match latencies.iter().position(|&x| !(x > 0.0 && x.is_finite())) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{name} latency #{i} is {}, latencies must be positive and finite (ms)",
            latencies[i]
        )),
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values
}

/// Smallest `j` in `[low, high]` with `pred(j)`, for a predicate that is false then true.
fn first_true(low: u64, high: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
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
fn last_true(low: u64, high: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
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

/// Smallest n ≥ 1 with `pred(n)` (monotone), starting from a closed-form `estimate`.
fn smallest_n(pred: impl Fn(u64) -> bool, estimate: f64) -> Option<u64> {
    if !estimate.is_finite() || estimate > 1e15 {
        return None;
    }
    let mut n = (estimate.ceil().max(1.0)) as u64;
    while !pred(n) {
        n += 1;
    }
    while n > 1 && pred(n - 1) {
        n -= 1;
    }
    Some(n)
}

/// "p99", "p50", "p99.9".
pub fn quantile_name(q: f64) -> String {
    format!("p{}", trim_zeros(format!("{:.4}", q * 100.0)))
}

/// Three significant digits, no padding zeros: 0.0123, 12.3, 1234.
fn sig(x: f64) -> String {
    if x.is_nan() {
        return "n/a".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "∞" } else { "−∞" }.to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    if x.abs() < 1e-4 {
        return format!("{x:.2e}");
    }
    let decimals = (2 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    trim_zeros(format!("{x:.decimals$}"))
}

fn percent(rate: f64) -> String {
    format!("{} %", sig(rate * 100.0))
}

/// A rate difference in percentage points, signed: "+1.2 points".
fn points(difference: f64) -> String {
    let value = difference * 100.0;
    let sign = if value > 0.0 { "+" } else { "" };
    let unit = if value.abs() == 1.0 {
        "point"
    } else {
        "points"
    };
    format!("{sign}{} {unit}", sig(value))
}

/// "95" for α = 0.05, "99.99" for 1e-4: truncated so the level is never overstated.
fn confidence_percent(alpha: f64) -> String {
    let miss = alpha * 100.0;
    let decimals = ((-miss.log10()).ceil() as i32 + 1).clamp(0, 10);
    let scale = 10f64.powi(decimals);
    let truncated = ((100.0 - miss) * scale).floor() / scale;
    trim_zeros(format!("{truncated:.prec$}", prec = decimals as usize))
}

/// "p = 0.52", "p = 3.1e-9".
fn format_p(p: f64) -> String {
    if p.is_nan() {
        "p undefined".to_string()
    } else if p >= 0.995 {
        "p = 1".to_string()
    } else if p >= 1e-4 {
        let decimals = (1 - p.log10().floor() as i64).clamp(2, 6) as usize;
        format!("p = {}", trim_zeros(format!("{p:.decimals$}")))
    } else if p > 0.0 {
        format!("p = {p:.1e}")
    } else {
        "p < 1e-300".to_string()
    }
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Serde for doubles that may be NaN or infinite (JSON has no such numbers): finite values are
/// numbers, the others the strings "NaN", "inf" and "-inf".
mod wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Number {
        Finite(f64),
        Special(String),
    }

    fn encode(x: f64) -> Number {
        if x.is_finite() {
            Number::Finite(x)
        } else if x.is_nan() {
            Number::Special("NaN".to_string())
        } else if x > 0.0 {
            Number::Special("inf".to_string())
        } else {
            Number::Special("-inf".to_string())
        }
    }

    fn decode<E: serde::de::Error>(number: Number) -> Result<f64, E> {
        match number {
            Number::Finite(x) => Ok(x),
            Number::Special(text) => match text.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(E::custom(format!("not a number: {other:?}"))),
            },
        }
    }

    pub fn serialize<S: Serializer>(x: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        encode(*x).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        decode(Number::deserialize(deserializer)?)
    }

    pub mod pair {
        use super::*;

        pub fn serialize<S: Serializer>(x: &(f64, f64), serializer: S) -> Result<S::Ok, S::Error> {
            (encode(x.0), encode(x.1)).serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<(f64, f64), D::Error> {
            let (a, b) = <(Number, Number)>::deserialize(deserializer)?;
            Ok((decode(a)?, decode(b)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rstest::rstest;
    use std::collections::HashMap;

    /// Loose enough that simulated error rates are measurable.
    const ALPHA: f64 = 0.05;

    /// Binomial probability from log-gamma, independent of the windows and tables.
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

    /// Four standard errors of a simulated rate, plus one run for rates near 0.
    fn slack(rate: f64, runs: usize) -> f64 {
        4.0 * (rate * (1.0 - rate) / runs as f64).sqrt() + 1.0 / runs as f64
    }

    fn count(errors: u64, requests: u64) -> ErrorCount {
        ErrorCount { errors, requests }
    }

    /// Two uniforms in (0, 1) from one 64-bit draw: 32 bits each is ample here, and the
    /// generator calls dominate the simulations in the debug profile.
    fn uniform_pair(rng: &mut StdRng) -> (f64, f64) {
        let bits = rng.random::<u64>();
        let scale = 1.0 / 4_294_967_296.0;
        (
            ((bits >> 32) as f64 + 0.5) * scale,
            ((bits & 0xffff_ffff) as f64 + 0.5) * scale,
        )
    }

    /// Binomial counts by inverting the cumulative distribution: one uniform per draw.
    struct BinomialSampler {
        cumulative: Vec<f64>,
    }

    impl BinomialSampler {
        fn new(n: u64, p: f64) -> Self {
            let cumulative = (0..=n)
                .scan(0.0, |sum, k| {
                    *sum += pmf(k, n, p);
                    Some(*sum)
                })
                .collect();
            BinomialSampler { cumulative }
        }

        fn draw(&self, rng: &mut StdRng) -> u64 {
            let total = *self.cumulative.last().expect("n + 1 entries");
            let u = rng.random::<f64>() * total;
            let k = self.cumulative.partition_point(|&c| c < u);
            k.min(self.cumulative.len() - 1) as u64
        }
    }

    fn normal_quantile(q: f64) -> f64 {
        -std::f64::consts::SQRT_2 * erfc_inv(2.0 * q)
    }

    /// Baseline latency distributions, in ms.
    #[derive(Debug, Clone, Copy)]
    enum Shape {
        /// Median 20 ms, σ = 0.5 on the log scale.
        LogNormal,
        /// 5 ms floor plus an exponential with mean 15 ms.
        Exponential,
        /// Five values with many ties; F(10) = 0.5 and F(30) = 0.99 exactly.
        Discrete,
    }

    /// (value, weight in hundredths).
    const ATOMS: [(f64, u32); 5] = [(5.0, 30), (10.0, 20), (20.0, 30), (30.0, 19), (100.0, 1)];

    impl Shape {
        /// Two independent draws (Box–Muller gives normals in pairs).
        fn draw_pair(self, rng: &mut StdRng) -> (f64, f64) {
            let (u1, u2) = uniform_pair(rng);
            match self {
                Shape::LogNormal => {
                    let radius = (-2.0 * u1.ln()).sqrt();
                    let angle = std::f64::consts::TAU * u2;
                    let lognormal = |z: f64| 20.0 * (0.5 * z).exp();
                    (
                        lognormal(radius * angle.cos()),
                        lognormal(radius * angle.sin()),
                    )
                }
                Shape::Exponential => (5.0 - 15.0 * u1.ln(), 5.0 - 15.0 * u2.ln()),
                Shape::Discrete => {
                    let atom = |u: f64| {
                        let mut hundredths = (u * 100.0) as u32;
                        for (value, weight) in ATOMS {
                            if hundredths < weight {
                                return value;
                            }
                            hundredths -= weight;
                        }
                        unreachable!("weights sum to 100")
                    };
                    (atom(u1), atom(u2))
                }
            }
        }

        /// The q-quantile inf{x: F(x) ≥ q}.
        fn quantile(self, q: f64) -> f64 {
            match self {
                Shape::LogNormal => 20.0 * (0.5 * normal_quantile(q)).exp(),
                Shape::Exponential => 5.0 - 15.0 * (1.0 - q).ln(),
                Shape::Discrete => {
                    let mut cumulative = 0;
                    for (value, weight) in ATOMS {
                        cumulative += weight;
                        if cumulative as f64 >= q * 100.0 - 1e-9 {
                            return value;
                        }
                    }
                    unreachable!("q < 1")
                }
            }
        }
    }

    /// How a simulated canary differs from the baseline distribution.
    #[derive(Debug, Clone, Copy)]
    enum Canary {
        Scaled(f64),
        Plus(f64),
    }

    /// A simulated canary for the relative gates.
    #[derive(Debug, Clone, Copy)]
    enum Scenario {
        /// Exactly (1 + r) × the baseline distribution: the boundary of the null.
        Boundary,
        /// The same distribution as the baseline.
        Equal,
        /// Clearly worse: scaled by the case's bad factor.
        Bad,
    }

    fn latencies(rng: &mut StdRng, shape: Shape, canary: Canary, n: usize) -> Vec<f64> {
        let mut values = Vec::with_capacity(n + 1);
        while values.len() < n {
            let (x, y) = shape.draw_pair(rng);
            values.extend([x, y]);
        }
        values.truncate(n);
        for x in values.iter_mut() {
            *x = match canary {
                Canary::Scaled(factor) => factor * *x,
                Canary::Plus(ms) => *x + ms,
            };
        }
        values
    }

    // --- Building blocks against brute force --------------------------------------------------

    #[rstest]
    #[case(1, 0.5, 0.05)]
    #[case(10, 0.5, 0.05)]
    #[case(70, 0.5, 0.025)]
    #[case(298, 0.99, 0.05)]
    #[case(299, 0.99, 0.05)]
    #[case(366, 0.99, 0.025)]
    #[case(367, 0.99, 0.025)]
    #[case(600, 0.99, 0.025)]
    #[case(630, 0.9, 0.001)]
    fn order_statistic_ranks_match_binomial_sums(
        #[case] n: usize,
        #[case] q: f64,
        #[case] alpha: f64,
    ) {
        let nu = n as u64;
        let below = |k: usize| (0..k as u64).map(|i| pmf(i, nu, q)).sum::<f64>();
        let above = |j: usize| (j as u64..=nu).map(|i| pmf(i, nu, q)).sum::<f64>();
        let want_lower = (1..=n).rev().find(|&k| below(k) <= alpha);
        let want_upper = (1..=n).find(|&j| above(j) <= alpha);
        let tables = BinomialTables::new(n, q);
        assert_eq!(tables.lower_rank(alpha), want_lower);
        assert_eq!(tables.upper_rank(alpha), want_upper);
        // Exact coverage for any continuous distribution: P(X_(k) ≤ ξ_q) = P(Bin ≥ k) ≥ 1 − α.
        if let Some(k) = want_lower {
            assert!(below(k) <= alpha && (k == n || below(k + 1) > alpha));
        }
        if let Some(j) = want_upper {
            assert!(above(j) <= alpha && (j == 1 || above(j - 1) > alpha));
        }
        // The bound exists exactly when the extreme order statistic is a bound.
        assert_eq!(want_lower.is_some(), (1.0 - q).powi(n as i32) <= alpha);
        assert_eq!(want_upper.is_some(), q.powi(n as i32) <= alpha);
    }

    #[rstest]
    #[case(5, 0.3)]
    #[case(70, 0.999)]
    #[case(630, 0.02)]
    #[case(10_000, 0.5)]
    #[case(10_000, 1e-5)]
    fn binomial_window_matches_pmf_and_bounds_the_rest(#[case] n: u64, #[case] p: f64) {
        let window = BinomialWindow::new(n, p);
        let hi = window.lo + window.pmf.len() as u64 - 1;
        for (offset, &got) in window.pmf.iter().enumerate() {
            let want = pmf(window.lo + offset as u64, n, p);
            // The reference's log-gamma of 10^4 itself carries ~1e-11 of rounding.
            assert!(
                (got - want).abs() <= 1e-10 * want + 1e-300,
                "{got} vs {want}"
            );
        }
        let outside_below: f64 = (0..window.lo).map(|k| pmf(k, n, p)).sum();
        let outside_above: f64 = (hi + 1..=n).map(|k| pmf(k, n, p)).sum();
        assert!(outside_below <= window.below * (1.0 + 1e-9) + 1e-300);
        assert!(outside_above <= window.above * (1.0 + 1e-9) + 1e-300);
        assert!(window.below <= TAIL_MASS && window.above <= TAIL_MASS);
        let inside: f64 = window.pmf.iter().sum();
        assert!((inside - 1.0).abs() < 1e-12, "{inside}");
        // Bounded work: the window is a few dozen standard deviations at most.
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (window.pmf.len() as f64) < 20.0 * sd + 60.0,
            "{}",
            window.pmf.len()
        );
    }

    /// Small samples with many ties, as integers so every difference is exact.
    fn tied_samples(rng: &mut StdRng, n: usize, m: usize) -> (Vec<f64>, Vec<f64>) {
        let mut draw = |len: usize, offset: f64| {
            sorted(
                &(0..len)
                    .map(|_| rng.random_range(0..6u32) as f64 + offset)
                    .collect::<Vec<_>>(),
            )
        };
        (draw(n, 0.5), draw(m, 0.0))
    }

    fn all_differences(a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut d: Vec<f64> = a
            .iter()
            .flat_map(|x| b.iter().map(move |y| x - y))
            .collect();
        d.sort_by(f64::total_cmp);
        d
    }

    #[rstest]
    #[case(1, 1, 1)]
    #[case(3, 5, 2)]
    #[case(8, 4, 3)]
    #[case(13, 17, 4)]
    fn selection_and_counts_match_all_pairs(#[case] n: usize, #[case] m: usize, #[case] seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (a, b) = tied_samples(&mut rng, n, m);
        let d = all_differences(&a, &b);
        for (k, &want) in d.iter().enumerate() {
            assert_eq!(select(&a, &b, k as u64 + 1), want, "k = {}", k + 1);
        }
        for v in [-10.0, -0.5, 0.0, 0.5, 1.5, 2.0, 10.0] {
            let want = d.iter().filter(|&&x| x <= v).count() as u64;
            assert_eq!(count_at_most(&a, &b, v), want, "v = {v}");
        }
        let middle = d.len() / 2;
        let want = if d.len() % 2 == 1 {
            d[middle]
        } else {
            0.5 * (d[middle - 1] + d[middle])
        };
        assert_eq!(hodges_lehmann(&a, &b), want);
    }

    #[test]
    fn hodges_lehmann_of_continuous_samples_matches_all_pairs() {
        let mut rng = StdRng::seed_from_u64(5);
        for (n, m) in [(7, 9), (20, 11), (30, 30)] {
            let a = sorted(&latencies(
                &mut rng,
                Shape::LogNormal,
                Canary::Scaled(1.3),
                n,
            ));
            let b = sorted(&latencies(
                &mut rng,
                Shape::LogNormal,
                Canary::Scaled(1.0),
                m,
            ));
            let (la, lb): (Vec<f64>, Vec<f64>) = (
                a.iter().map(|x| x.ln()).collect(),
                b.iter().map(|x| x.ln()).collect(),
            );
            let d = all_differences(&la, &lb);
            let middle = d.len() / 2;
            let want = if d.len() % 2 == 1 {
                d[middle]
            } else {
                0.5 * (d[middle - 1] + d[middle])
            };
            assert_eq!(hodges_lehmann(&la, &lb), want, "{n} vs {m}");
        }
    }

    /// P(U ≤ u) by enumerating which of the N ranks belong to the first sample.
    fn permutation_cdf(n: usize, m: usize) -> Vec<f64> {
        let total = n + m;
        let pairs = n * m;
        let mut counts = vec![0u64; pairs + 1];
        for mask in 0u32..(1 << total) {
            if mask.count_ones() as usize != n {
                continue;
            }
            // U = pairs (first-sample rank, second-sample rank) with the first above.
            let mut u = 0;
            let mut second_below = 0;
            for rank in 0..total {
                if mask & (1 << rank) != 0 {
                    u += second_below;
                } else {
                    second_below += 1;
                }
            }
            counts[u] += 1;
        }
        let all: u64 = counts.iter().sum();
        let mut cumulative = 0;
        counts
            .iter()
            .map(|c| {
                cumulative += c;
                cumulative as f64 / all as f64
            })
            .collect()
    }

    #[rstest]
    #[case(1, 1)]
    #[case(1, 6)]
    #[case(2, 3)]
    #[case(3, 4)]
    #[case(4, 4)]
    #[case(5, 6)]
    #[case(3, 11)]
    #[case(7, 8)]
    fn exact_mann_whitney_matches_permutation_enumeration(#[case] n: usize, #[case] m: usize) {
        let want = permutation_cdf(n, m);
        let half = mann_whitney_lower_half(n.min(m), n.max(m));
        assert_eq!(half.len(), n * m / 2 + 1);
        for (u, &got) in half.iter().enumerate() {
            assert!((got - want[u]).abs() < 1e-12, "u = {u}: {got} vs {want:?}");
        }
        // The tail used by the gate, on both sides of the middle.
        let a = vec![0.0; n];
        let b = vec![0.0; m];
        let null = MannWhitneyNull::new(&a, &b);
        assert!(null.is_exact());
        for u in 0..=(n * m + 1) {
            let tail = if u == 0 {
                1.0
            } else if u > n * m {
                0.0
            } else {
                1.0 - want[u - 1]
            };
            assert!((null.at_least(u as u64) - tail).abs() < 1e-12, "u = {u}");
        }
    }

    /// The classic recursion P_{n,m}(u) = n/(n+m)·P_{n−1,m}(u − m) + m/(n+m)·P_{n,m−1}(u).
    fn recursion_cdf(n: usize, m: usize) -> Vec<f64> {
        // table[i][j] = distribution of U for sizes (i, j).
        let mut table: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); m + 1]; n + 1];
        for i in 0..=n {
            for j in 0..=m {
                table[i][j] = if i == 0 || j == 0 {
                    vec![1.0]
                } else {
                    let mut dist = vec![0.0; i * j + 1];
                    let (wi, wj) = (i as f64 / (i + j) as f64, j as f64 / (i + j) as f64);
                    for (u, p) in table[i - 1][j].iter().enumerate() {
                        dist[u + j] += wi * p;
                    }
                    for (u, p) in table[i][j - 1].iter().enumerate() {
                        dist[u] += wj * p;
                    }
                    dist
                };
            }
        }
        let mut cumulative = 0.0;
        table[n][m]
            .iter()
            .map(|p| {
                cumulative += p;
                cumulative
            })
            .collect()
    }

    #[rstest]
    #[case(10, 40)]
    #[case(24, 24)]
    #[case(24, 60)]
    fn exact_mann_whitney_matches_recursion(#[case] n: usize, #[case] m: usize) {
        let want = recursion_cdf(n, m);
        let half = mann_whitney_lower_half(n, m);
        for (u, &got) in half.iter().enumerate() {
            assert!(
                (got - want[u]).abs() <= 1e-10 * want[u] + 1e-15,
                "u = {u}: {got} vs {}",
                want[u]
            );
        }
    }

    /// Just past the switch the normal approximation is close, and in the tails a gate uses
    /// it overstates p (U is platykurtic), so the switch costs no false failures.
    #[rstest]
    #[case(25, 25)]
    #[case(25, 100)]
    #[case(25, 630)]
    #[case(40, 60)]
    fn normal_approximation_past_the_switch(#[case] n: usize, #[case] m: usize) {
        let exact = MannWhitneyNull::Exact {
            pairs: (n * m) as u64,
            lower_half: mann_whitney_lower_half(n, m),
        };
        let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..m).map(|j| j as f64 + 0.5).collect();
        let normal = MannWhitneyNull::new(&a, &b);
        assert!(!normal.is_exact());
        let mut worst: f64 = 0.0;
        for u in 0..=(n * m) as u64 {
            let (e, z) = (exact.at_least(u), normal.at_least(u));
            worst = worst.max((e - z).abs());
            if e <= 0.04 {
                assert!(z >= e * (1.0 - 1e-9), "u = {u}: normal {z} < exact {e}");
            }
        }
        eprintln!("{n} vs {m}: worst difference {worst}");
        assert!(worst < 2e-3, "worst difference {worst}");
    }

    // --- Gate 1: absolute error rate ------------------------------------------------------------

    #[rstest]
    #[case(70, 0.05)]
    #[case(600, 0.05)]
    #[case(1, 0.01)]
    #[case(200, 0.0)]
    fn error_rate_verdict_agrees_with_p_value_bound_and_power(
        #[case] n: u64,
        #[case] max_rate: f64,
    ) {
        let mut failing = Vec::new();
        for errors in 0..=n {
            let j = error_rate_gate(count(errors, n), max_rate, ALPHA);
            assert_eq!(j.passed, j.p_value > ALPHA, "{}", j.reason);
            // The Clopper–Pearson bound is computed separately; away from a tie it agrees.
            if (j.p_value - ALPHA).abs() > 1e-9 {
                assert_eq!(j.passed, j.interval.0 <= max_rate, "{}", j.reason);
            }
            let want_p: f64 = (errors..=n).map(|k| pmf(k, n, max_rate)).sum();
            assert!((j.p_value - want_p.min(1.0)).abs() < 1e-9, "{}", j.reason);
            if !j.passed {
                failing.push(errors);
            }
        }
        for true_rate in [max_rate, max_rate + 0.02, max_rate + 0.05, 0.5] {
            let want: f64 = failing.iter().map(|&k| pmf(k, n, true_rate)).sum();
            let got = error_rate_gate_power(n, true_rate, max_rate, ALPHA);
            assert!((got - want).abs() < 1e-9, "{got} vs {want} at {true_rate}");
        }
        assert!(error_rate_gate_power(n, max_rate, max_rate, ALPHA) <= ALPHA);
    }

    #[rstest]
    #[case(70, 0.05, 11)]
    #[case(600, 0.05, 12)]
    #[case(600, 0.01, 13)]
    fn error_rate_gate_simulated(#[case] n: u64, #[case] max_rate: f64, #[case] seed: u64) {
        let runs = 4000;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut verdicts: HashMap<u64, bool> = HashMap::new();
        // (true rate, within the threshold?): the boundary of the null and 5 points worse.
        for (true_rate, null) in [(max_rate, true), (max_rate + 0.05, false)] {
            let sampler = BinomialSampler::new(n, true_rate);
            let failed = (0..runs)
                .filter(|_| {
                    let errors = sampler.draw(&mut rng);
                    !*verdicts.entry(errors).or_insert_with(|| {
                        error_rate_gate(count(errors, n), max_rate, ALPHA).passed
                    })
                })
                .count();
            let rate = failed as f64 / runs as f64;
            let exact = error_rate_gate_power(n, true_rate, max_rate, ALPHA);
            eprintln!("n = {n}, limit {max_rate}, true {true_rate}: failed {rate}, exact {exact}");
            assert!(
                (rate - exact).abs() <= slack(exact, runs),
                "{rate} vs {exact}"
            );
            if null {
                assert!(exact <= ALPHA);
                assert!(rate <= ALPHA + slack(ALPHA, runs), "false failures {rate}");
            }
        }
    }

    #[test]
    fn error_rate_edges() {
        let empty = error_rate_gate(count(0, 0), 0.05, ALPHA);
        assert!(empty.passed && !empty.decidable && empty.measured.is_nan());
        assert!(
            empty.reason.contains("no canary requests"),
            "{}",
            empty.reason
        );

        let all = error_rate_gate(count(10, 10), 0.05, ALPHA);
        assert!(!all.passed && all.decidable);
        assert!((all.p_value - 0.05f64.powi(10)).abs() < 1e-20);
        assert!(
            all.reason.contains("exceeds the 5 % limit"),
            "{}",
            all.reason
        );

        // One request: an error is evidence against 1 %, but nothing is against 10 %.
        assert!(!error_rate_gate(count(1, 1), 0.01, ALPHA).passed);
        let one = error_rate_gate(count(1, 1), 0.1, ALPHA);
        assert!(one.passed && !one.decidable);
        assert!(one.reason.contains("at least 2 requests"), "{}", one.reason);
        // A 50 % limit needs 5 requests (0.5^5 ≤ 0.05 < 0.5^4) before all errors fail it.
        let four = error_rate_gate(count(4, 4), 0.5, ALPHA);
        assert!(four.passed && !four.decidable);
        assert!(
            four.reason.contains("at least 5 requests"),
            "{}",
            four.reason
        );
        let five = error_rate_gate(count(5, 5), 0.5, ALPHA);
        assert!(!five.passed && five.decidable);

        let zero = error_rate_gate(count(0, 100), 0.0, ALPHA);
        assert!(zero.passed && zero.p_value == 1.0);
        assert!(!error_rate_gate(count(1, 100), 0.0, ALPHA).passed);
        assert!(!error_rate_gate(count(100, 100), 1.0, ALPHA).decidable);

        let invalid = error_rate_gate(count(3, 2), 0.05, ALPHA);
        assert!(!invalid.passed && !invalid.decidable);
        assert!(
            invalid.reason.starts_with("invalid gate input"),
            "{}",
            invalid.reason
        );
        assert!(!error_rate_gate(count(0, 10), 0.05, 0.7).passed);
        assert!(error_rate_gate_power(10, 0.1, 0.05, f64::NAN).is_nan());
    }

    // --- Gate 2: relative error rate -------------------------------------------------------------

    /// The gate's verdict for every outcome of a small comparison, and the exact size of the
    /// resulting test at many null points, from first principles.
    #[rstest]
    #[case(10, 15, 0.0)]
    #[case(12, 9, 0.1)]
    #[case(20, 20, 0.05)]
    fn relative_error_rate_exact_size_by_enumeration(
        #[case] nc: u64,
        #[case] nb: u64,
        #[case] margin: f64,
    ) {
        let mut fails = vec![vec![false; nb as usize + 1]; nc as usize + 1];
        for xc in 0..=nc {
            for xb in 0..=nb {
                let j = relative_error_rate_gate(count(xc, nc), count(xb, nb), margin, ALPHA);
                assert_eq!(j.passed, j.p_value > ALPHA, "{}", j.reason);
                assert_eq!(j.passed, j.interval.0 <= margin, "{}", j.reason);
                fails[xc as usize][xb as usize] = !j.passed;
            }
        }
        // The gate fails on a suffix of canary counts (the statistic grows with x_c).
        for (xc, pair) in fails.windows(2).enumerate() {
            for (xb, (&below, &above)) in pair[0].iter().zip(&pair[1]).enumerate() {
                assert!(!below || above, "xc = {}, xb = {xb}", xc + 1);
            }
        }
        let size = |pc: f64, pb: f64| {
            let mut total = 0.0;
            for xc in 0..=nc {
                for xb in 0..=nb {
                    if fails[xc as usize][xb as usize] {
                        total += pmf(xc, nc, pc) * pmf(xb, nb, pb);
                    }
                }
            }
            total
        };
        let mut worst: f64 = 0.0;
        for i in 0..=100 {
            let pb = i as f64 / 100.0;
            let pc = (pb + margin).min(1.0);
            let s = size(pc, pb);
            worst = worst.max(s);
            assert!(s <= ALPHA, "size {s} at p_c = {pc}, p_b = {pb}");
            // Inside the null it is smaller still.
            assert!(size(pc * 0.7, pb) <= s + 1e-12);
        }
        eprintln!("{nc} vs {nb}, margin {margin}: worst size {worst}");
        for (pc, pb) in [(0.5, 0.1), (0.9, 0.2), ((0.3 + margin).min(1.0), 0.3)] {
            let want = size(pc, pb);
            let got = relative_error_rate_gate_power(nc, pc, nb, pb, margin, ALPHA);
            assert!((got - want).abs() < 1e-9, "power {got} vs {want}");
        }
    }

    /// (canary rate − baseline rate − margin, within the threshold?): the boundary of the null,
    /// a canary equal to the baseline, and one 5 points beyond the margin.
    #[rstest]
    fn relative_error_rate_gate_simulated(
        #[values((70, 630, 0.01), (70, 630, 0.0), (600, 400, 0.01))] sizes: (u64, u64, f64),
        #[values((0.0, true), (-1.0, true), (0.05, false))] scenario: (f64, bool),
    ) {
        let (nc, nb, margin) = sizes;
        let (excess, null) = scenario;
        let baseline_rate = 0.02;
        // −1 stands for "equal to the baseline".
        let canary_rate = if excess < 0.0 {
            baseline_rate
        } else {
            baseline_rate + margin + excess
        };
        let runs = 2000;
        let scenario_seed = if excess < 0.0 {
            1
        } else {
            2 + (excess * 100.0) as u64
        };
        let mut rng =
            StdRng::seed_from_u64(nc * 7 + nb * 3 + (margin * 1e4) as u64 + scenario_seed);
        let mut verdicts: HashMap<(u64, u64), bool> = HashMap::new();
        let (canary, baseline) = (
            BinomialSampler::new(nc, canary_rate),
            BinomialSampler::new(nb, baseline_rate),
        );
        let failed = (0..runs)
            .filter(|_| {
                let (xc, xb) = (canary.draw(&mut rng), baseline.draw(&mut rng));
                !*verdicts.entry((xc, xb)).or_insert_with(|| {
                    relative_error_rate_gate(count(xc, nc), count(xb, nb), margin, ALPHA).passed
                })
            })
            .count();
        let rate = failed as f64 / runs as f64;
        let exact =
            relative_error_rate_gate_power(nc, canary_rate, nb, baseline_rate, margin, ALPHA);
        eprintln!(
            "{nc} vs {nb}, baseline {baseline_rate}, canary {canary_rate}, margin {margin}: \
             failed {rate}, exact {exact}"
        );
        assert!(
            (rate - exact).abs() <= slack(exact, runs),
            "{rate} vs {exact}"
        );
        if null {
            assert!(exact <= ALPHA, "exact size {exact}");
            assert!(rate <= ALPHA + slack(ALPHA, runs), "false failures {rate}");
        }
    }

    /// Exact power of the union of two Clopper–Pearson bounds, the simple alternative.
    fn union_bound_power(nc: u64, pc: f64, nb: u64, pb: f64, margin: f64) -> f64 {
        let lower: Vec<f64> = (0..=nc)
            .map(|x| clopper_pearson(x, nc, 1.0 - ALPHA).0)
            .collect();
        let upper: Vec<f64> = (0..=nb)
            .map(|x| clopper_pearson(x, nb, 1.0 - ALPHA).1)
            .collect();
        let mut power = 0.0;
        for xb in 0..=nb {
            for xc in 0..=nc {
                if lower[xc as usize] - upper[xb as usize] > margin {
                    power += pmf(xc, nc, pc) * pmf(xb, nb, pb);
                }
            }
        }
        power
    }

    #[rstest]
    #[case(70, 630, 0.02, 0.01)]
    #[case(600, 400, 0.02, 0.01)]
    #[case(600, 400, 0.1, 0.0)]
    fn unconditional_test_is_more_powerful_than_union_of_bounds(
        #[case] nc: u64,
        #[case] nb: u64,
        #[case] pb: f64,
        #[case] margin: f64,
    ) {
        let pc = pb + margin + 0.05;
        let ours = relative_error_rate_gate_power(nc, pc, nb, pb, margin, ALPHA);
        let union = union_bound_power(nc, pc, nb, pb, margin);
        eprintln!("{nc} vs {nb}: power {ours} vs union of bounds {union}");
        assert!(ours > union + 0.05, "{ours} vs {union}");
    }

    #[test]
    fn relative_error_rate_edges() {
        let none = relative_error_rate_gate(count(0, 0), count(3, 100), 0.01, ALPHA);
        assert!(none.passed && !none.decidable);
        assert!(
            none.reason.contains("no canary requests"),
            "{}",
            none.reason
        );
        let no_baseline = relative_error_rate_gate(count(3, 100), count(0, 0), 0.01, ALPHA);
        assert!(no_baseline.passed && !no_baseline.decidable);

        // All canary requests failed, none of the baseline's: far beyond any small margin.
        let all = relative_error_rate_gate(count(70, 70), count(0, 630), 0.05, ALPHA);
        assert!(!all.passed && all.decidable);
        // Berger–Boos p-values never go below γ = α/50, the price of the nuisance interval.
        assert!(all.p_value >= ALPHA / 50.0 && all.p_value < ALPHA / 50.0 + 1e-10);
        assert!(all.interval.0 > 0.9, "{:?}", all.interval);
        // Both always failing: no difference.
        let both = relative_error_rate_gate(count(70, 70), count(630, 630), 0.0, ALPHA);
        assert!(both.passed, "{}", both.reason);
        // One request each cannot show anything.
        let tiny = relative_error_rate_gate(count(1, 1), count(0, 1), 0.0, ALPHA);
        assert!(tiny.passed && !tiny.decidable, "{}", tiny.reason);

        let ok = relative_error_rate_gate(count(2, 70), count(13, 630), 0.01, ALPHA);
        assert!(ok.passed && ok.decidable);
        assert!(ok.interval.0 < ok.measured && ok.interval.1 == 1.0);
        assert!(
            ok.reason.contains("within the allowed +1 point"),
            "{}",
            ok.reason
        );
        assert!(ok.reason.contains("70 vs 630 requests"), "{}", ok.reason);
        let bad = relative_error_rate_gate(count(9, 70), count(13, 630), 0.01, ALPHA);
        assert!(!bad.passed, "{}", bad.reason);
        assert!(bad.reason.contains("≤ α = 0.05"), "{}", bad.reason);

        assert!(!relative_error_rate_gate(count(1, 2), count(1, 2), 1.5, ALPHA).passed);
        assert!(relative_error_rate_gate_power(10, 0.2, 10, 0.1, 2.0, ALPHA).is_nan());
        assert_eq!(
            relative_error_rate_gate_power(0, 0.2, 10, 0.1, 0.0, ALPHA),
            0.0
        );
    }

    /// Bounded work at 10 000 requests per arm, including error rates near one half.
    #[test]
    fn relative_error_rate_large_arms() {
        let j = relative_error_rate_gate(count(5_200, 10_000), count(5_000, 10_000), 0.0, ALPHA);
        assert!(!j.passed && j.decidable, "{}", j.reason);
        let j = relative_error_rate_gate(count(120, 10_000), count(100, 10_000), 0.01, ALPHA);
        assert!(j.passed, "{}", j.reason);
        assert!(
            j.interval.0 < 0.0 && j.interval.0 > -0.01,
            "{:?}",
            j.interval
        );
    }

    // --- Gate 3: absolute latency quantile -------------------------------------------------------

    /// The discrete 2× canary at p50 is caught less often: its F at the limit is 0.3, not ~0.
    #[rstest]
    #[case(Shape::LogNormal, 600, 0.99, Canary::Scaled(2.0), 0.99, 31)]
    #[case(Shape::Exponential, 600, 0.99, Canary::Plus(40.0), 0.99, 32)]
    #[case(Shape::Discrete, 600, 0.99, Canary::Scaled(2.0), 0.99, 33)]
    #[case(Shape::LogNormal, 70, 0.5, Canary::Plus(40.0), 0.99, 34)]
    #[case(Shape::Discrete, 70, 0.5, Canary::Scaled(2.0), 0.9, 35)]
    fn latency_quantile_gate_simulated(
        #[case] shape: Shape,
        #[case] n: usize,
        #[case] q: f64,
        #[case] bad: Canary,
        #[case] level: f64,
        #[case] seed: u64,
    ) {
        let runs = 1500;
        let limit = shape.quantile(q);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut failure_rate = |canary: Canary| {
            let failed = (0..runs)
                .filter(|_| {
                    let sample = latencies(&mut rng, shape, canary, n);
                    let j = latency_quantile_gate(&sample, q, limit, ALPHA);
                    assert!(j.decidable);
                    assert_eq!(j.passed, j.p_value > ALPHA);
                    assert_eq!(j.passed, j.interval.0 <= limit);
                    !j.passed
                })
                .count();
            failed as f64 / runs as f64
        };
        // At the boundary, F(limit) = q exactly for all three shapes, so the exact rate is
        // P(Bin(n, q) ≤ k − 1).
        let at_boundary = failure_rate(Canary::Scaled(1.0));
        let tables = BinomialTables::new(n, q);
        let k = tables.lower_rank(ALPHA).expect("decidable");
        let exact = tables.at_most[k - 1];
        let caught = failure_rate(bad);
        eprintln!("{shape:?} n = {n} p{q}: false {at_boundary} (exact {exact}), caught {caught}");
        assert!(exact <= ALPHA);
        assert!(at_boundary <= ALPHA + slack(ALPHA, runs), "{at_boundary}");
        assert!((at_boundary - exact).abs() <= slack(exact, runs));
        assert!(caught >= level, "caught {caught}");
    }

    #[test]
    fn latency_quantile_edges() {
        let empty = latency_quantile_gate(&[], 0.99, 100.0, ALPHA);
        assert!(empty.passed && !empty.decidable);
        // One sample above a p99 limit is evidence already: P(X > ξ_0.99) ≤ 0.01 ≤ α.
        let one = latency_quantile_gate(&[500.0], 0.99, 100.0, ALPHA);
        assert!(!one.passed && one.decidable && one.interval.0 == 500.0);
        assert!((one.p_value - 0.01).abs() < 1e-12);
        assert!(
            one.reason.contains("exceeds the 100 ms limit"),
            "{}",
            one.reason
        );
        // A median needs 5 samples (0.5^5 ≤ 0.05 < 0.5^4), even if every one is slow.
        let j = latency_quantile_gate(&[500.0; 4], 0.5, 100.0, ALPHA);
        assert!(j.passed && !j.decidable && j.measured == 500.0);
        assert!(j.reason.contains("at least 5 samples"), "{}", j.reason);
        assert!(!latency_quantile_gate(&[500.0; 5], 0.5, 100.0, ALPHA).passed);
        // Ties at the limit count as within it.
        let tied = vec![100.0; 1000];
        let j = latency_quantile_gate(&tied, 0.99, 100.0, ALPHA);
        assert!(j.passed && j.p_value == 1.0 && j.measured == 100.0);
        let invalid = latency_quantile_gate(&[1.0, f64::NAN], 0.5, 10.0, ALPHA);
        assert!(
            !invalid.passed && invalid.reason.contains("latency #1"),
            "{}",
            invalid.reason
        );
        assert!(!latency_quantile_gate(&[1.0], 1.0, 10.0, ALPHA).passed);
    }

    // --- Gate 4: relative latency quantile ---------------------------------------------------

    /// Bad canaries: 2× for continuous latencies. With 400 baseline samples the upper bound
    /// of p99 is the baseline's maximum, so a 2× p99 is caught only about 60 % of the time.
    /// For the discrete shape the quantiles sit on jumps (F(10) = 0.5, F(30) = 0.99), so the
    /// baseline's upper bound is the next atom (20 or 100 ms) and it takes 3× (p50) or 5× (p99).
    #[rstest]
    #[case(Shape::LogNormal, 70, 630, 0.5, (2.0, 0.99), 41)]
    #[case(Shape::Discrete, 70, 630, 0.5, (3.0, 0.85), 42)]
    #[case(Shape::LogNormal, 600, 400, 0.5, (2.0, 0.99), 43)]
    #[case(Shape::LogNormal, 600, 400, 0.99, (2.0, 0.55), 44)]
    #[case(Shape::Exponential, 600, 400, 0.99, (2.0, 0.55), 45)]
    #[case(Shape::Discrete, 600, 400, 0.99, (5.0, 0.9), 46)]
    fn relative_latency_quantile_gate_simulated(
        #[case] shape: Shape,
        #[case] nc: usize,
        #[case] nb: usize,
        #[case] q: f64,
        #[case] bad: (f64, f64),
        #[case] seed: u64,
        #[values(Scenario::Boundary, Scenario::Equal, Scenario::Bad)] scenario: Scenario,
    ) {
        // (factor, probability it must be caught with)
        let (bad, level) = bad;
        let runs = 1000;
        let r = 0.2;
        let factor = match scenario {
            Scenario::Boundary => 1.0 + r,
            Scenario::Equal => 1.0,
            Scenario::Bad => bad,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let failed = (0..runs)
            .filter(|_| {
                let canary = latencies(&mut rng, shape, Canary::Scaled(factor), nc);
                let baseline = latencies(&mut rng, shape, Canary::Scaled(1.0), nb);
                let j = relative_latency_quantile_gate(&canary, &baseline, q, r, ALPHA);
                assert!(j.decidable, "{}", j.reason);
                assert_eq!(j.passed, j.p_value > ALPHA, "{}", j.reason);
                !j.passed
            })
            .count();
        let rate = failed as f64 / runs as f64;
        eprintln!("{shape:?} {nc} vs {nb} p{q}, canary {factor}× ({scenario:?}): failed {rate}");
        match scenario {
            Scenario::Bad => assert!(rate >= level, "caught {rate}"),
            _ => assert!(rate <= ALPHA + slack(ALPHA, runs), "false failures {rate}"),
        }
    }

    /// The p-value is the smallest α at which the bound comparison fails, so the verdict at
    /// any α follows from it, and agrees with comparing the bounds directly.
    #[test]
    fn relative_latency_quantile_p_value_is_the_smallest_failing_alpha() {
        let mut rng = StdRng::seed_from_u64(47);
        for round in 0..40 {
            let factor = 1.0 + round as f64 * 0.05;
            let canary = sorted(&latencies(
                &mut rng,
                Shape::LogNormal,
                Canary::Scaled(factor),
                80,
            ));
            let baseline = sorted(&latencies(
                &mut rng,
                Shape::Exponential,
                Canary::Scaled(1.0),
                90,
            ));
            let p = relative_latency_quantile_gate(&canary, &baseline, 0.5, 0.1, ALPHA).p_value;
            for alpha in [0.001, 0.01, 0.05, 0.2, 0.4] {
                let (ct, bt) = (BinomialTables::new(80, 0.5), BinomialTables::new(90, 0.5));
                let direct = match (ct.lower_rank(alpha / 2.0), bt.upper_rank(alpha / 2.0)) {
                    (Some(k), Some(j)) => {
                        canary[k - 1] > 1.1 * baseline[j - 1] * (1.0 + RATIO_TOLERANCE)
                    }
                    _ => false,
                };
                let j = relative_latency_quantile_gate(&canary, &baseline, 0.5, 0.1, alpha);
                assert_eq!(!j.passed, direct, "round {round}, α = {alpha}");
                assert_eq!(!j.passed, p <= alpha, "round {round}, α = {alpha}");
            }
        }
    }

    #[test]
    fn relative_latency_quantile_edges() {
        let base: Vec<f64> = (1..=300).map(|i| i as f64).collect();
        // The baseline's p99 has no upper bound at α/2 below 367 samples.
        let j = relative_latency_quantile_gate(&[1e6; 600], &base, 0.99, 0.2, ALPHA);
        assert!(j.passed && !j.decidable);
        assert!(
            j.reason.contains("at least 368 baseline samples"),
            "{}",
            j.reason
        );
        let j = relative_latency_quantile_gate(&[], &base, 0.5, 0.2, ALPHA);
        assert!(j.passed && !j.decidable && j.reason.contains("no canary"));
        // A single canary sample has no lower bound for its median.
        let j = relative_latency_quantile_gate(&[1e6], &base, 0.5, 0.2, ALPHA);
        assert!(j.passed && !j.decidable);
        assert!(
            j.reason.contains("at least 6 canary samples"),
            "{}",
            j.reason
        );
        // Identical, heavily tied samples are within any non-negative increase.
        let tied = vec![10.0; 500];
        let j = relative_latency_quantile_gate(&tied, &tied, 0.99, 0.0, ALPHA);
        assert!(j.passed && j.measured == 1.0, "{}", j.reason);
        let slow: Vec<f64> = base.iter().map(|x| 3.0 * x).collect();
        let j = relative_latency_quantile_gate(&slow, &base, 0.5, 0.2, ALPHA);
        assert!(!j.passed && j.interval.0 > 1.2, "{}", j.reason);
        assert!(j.reason.contains("exceeds the 1.2× limit"), "{}", j.reason);
        assert!(!relative_latency_quantile_gate(&[1.0], &[1.0], 0.5, -1.0, ALPHA).passed);
    }

    // --- Gate 5: latency shift -----------------------------------------------------------------

    #[rstest]
    #[case(Shape::LogNormal, 70, 630, 0.999, 51)]
    #[case(Shape::Discrete, 70, 630, 0.99, 52)]
    #[case(Shape::Exponential, 600, 400, 0.999, 53)]
    #[case(Shape::Discrete, 600, 400, 0.999, 54)]
    #[case(Shape::LogNormal, 12, 20, 0.6, 55)]
    #[case(Shape::Discrete, 12, 20, 0.3, 56)]
    fn latency_shift_gate_simulated(
        #[case] shape: Shape,
        #[case] nc: usize,
        #[case] nb: usize,
        #[case] level: f64,
        #[case] seed: u64,
        #[values(Scenario::Boundary, Scenario::Equal, Scenario::Bad)] scenario: Scenario,
    ) {
        let runs = 1000;
        let r = 0.2;
        let factor = match scenario {
            Scenario::Boundary => 1.0 + r,
            Scenario::Equal => 1.0,
            Scenario::Bad => 2.0,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let failed = (0..runs)
            .filter(|_| {
                let canary = latencies(&mut rng, shape, Canary::Scaled(factor), nc);
                let baseline = latencies(&mut rng, shape, Canary::Scaled(1.0), nb);
                let j = latency_shift_gate(&canary, &baseline, r, ALPHA);
                assert!(j.decidable, "{}", j.reason);
                assert_eq!(j.passed, j.p_value > ALPHA, "{}", j.reason);
                !j.passed
            })
            .count();
        let rate = failed as f64 / runs as f64;
        eprintln!("{shape:?} {nc} vs {nb}, canary {factor}× ({scenario:?}): failed {rate}");
        match scenario {
            Scenario::Bad => assert!(rate >= level, "caught {rate}"),
            _ => assert!(rate <= ALPHA + slack(ALPHA, runs), "false failures {rate}"),
        }
    }

    /// The verdict is the Lehmann bound's, and the bound is the order statistic of the
    /// pairwise differences at the critical count, checked against all pairs.
    #[rstest]
    #[case(9, 14, 61)]
    #[case(40, 30, 62)]
    fn latency_shift_bound_matches_all_pairs(
        #[case] nc: usize,
        #[case] nb: usize,
        #[case] seed: u64,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        for round in 0..20 {
            let factor = 0.8 + round as f64 * 0.06;
            let canary = latencies(&mut rng, Shape::LogNormal, Canary::Scaled(factor), nc);
            let baseline = latencies(&mut rng, Shape::LogNormal, Canary::Scaled(1.0), nb);
            let j = latency_shift_gate(&canary, &baseline, 0.1, ALPHA);
            let logs = |xs: &[f64]| sorted(&xs.iter().map(|x| x.ln()).collect::<Vec<_>>());
            let (a, b) = (logs(&canary), logs(&baseline));
            let d = all_differences(&a, &b);
            let null = MannWhitneyNull::new(&a, &b);
            let u = null.critical(ALPHA).expect("decidable");
            let lower = d[d.len() - u as usize];
            assert_eq!(j.interval.0, lower.exp());
            let delta = 0.1f64.ln_1p() + RATIO_TOLERANCE;
            assert_eq!(j.passed, lower <= delta, "round {round}: {}", j.reason);
            let exceeding = d.iter().filter(|&&x| x > delta).count() as u64;
            assert_eq!(j.p_value, null.at_least(exceeding));
        }
    }

    #[test]
    fn latency_shift_edges() {
        let empty = latency_shift_gate(&[], &[10.0], 0.2, ALPHA);
        assert!(empty.passed && !empty.decidable);
        // One sample each: the smallest p-value is 1/2.
        let one = latency_shift_gate(&[100.0], &[10.0], 0.2, ALPHA);
        assert!(one.passed && !one.decidable && (one.measured - 10.0).abs() < 1e-9);
        assert!(one.reason.contains("smallest possible"), "{}", one.reason);
        // 3 vs 4: 1/35 ≤ 0.05, so completely separated samples fail.
        let j = latency_shift_gate(&[50.0, 60.0, 70.0], &[10.0, 11.0, 12.0, 13.0], 0.2, ALPHA);
        assert!(!j.passed && j.decidable && (j.p_value - 1.0 / 35.0).abs() < 1e-12);
        // All tied, exact and normal regimes: no shift, p = 1.
        for n in [10, 100] {
            let tied = vec![20.0; n];
            let j = latency_shift_gate(&tied, &tied, 0.0, ALPHA);
            assert!(
                j.passed && j.p_value == 1.0 && j.measured == 1.0,
                "{}",
                j.reason
            );
        }
        // Canary exactly 1.2× a tied baseline sits on the boundary and must not fail.
        let baseline: Vec<f64> = (0..400).map(|i| [5.0, 10.0, 20.0][i % 3]).collect();
        let canary: Vec<f64> = (0..600).map(|i| 1.2 * [5.0, 10.0, 20.0][i % 3]).collect();
        let j = latency_shift_gate(&canary, &baseline, 0.2, ALPHA);
        assert!(j.passed, "{}", j.reason);
        assert!(!latency_shift_gate(&[0.0], &[1.0], 0.2, ALPHA).passed);
    }

    #[test]
    fn latency_shift_large_arms_stay_bounded() {
        let mut rng = StdRng::seed_from_u64(63);
        let canary = latencies(&mut rng, Shape::LogNormal, Canary::Scaled(1.05), 10_000);
        let baseline = latencies(&mut rng, Shape::LogNormal, Canary::Scaled(1.0), 10_000);
        let j = latency_shift_gate(&canary, &baseline, 0.2, ALPHA);
        assert!(j.passed && j.decidable, "{}", j.reason);
        assert!((j.measured - 1.05).abs() < 0.03, "{}", j.reason);
        // A small arm against a large one uses the exact null.
        let j = latency_shift_gate(&canary[..20], &baseline, 0.2, ALPHA);
        assert!(j.reason.contains("exact"), "{}", j.reason);
    }

    // --- Judgement ---------------------------------------------------------------------------

    #[test]
    fn judgement_round_trips_through_json_with_infinities() {
        let j = latency_quantile_gate(&[10.0; 400], 0.99, 100.0, ALPHA);
        assert_eq!(j.interval.1, f64::INFINITY);
        let json = serde_json::to_string(&j).expect("serializes");
        assert!(json.contains("\"inf\""), "{json}");
        let back: GateJudgement = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, j);
        let empty = error_rate_gate(count(0, 0), 0.05, ALPHA);
        let json = serde_json::to_string(&empty).expect("serializes");
        let back: GateJudgement = serde_json::from_str(&json).expect("deserializes");
        assert!(back.measured.is_nan() && back.reason == empty.reason);
        assert!(serde_json::from_str::<GateJudgement>(&json.replace("NaN", "nope")).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(sig(0.012345), "0.0123");
        assert_eq!(sig(123.456), "123");
        assert_eq!(sig(1.5), "1.5");
        assert_eq!(percent(0.05), "5 %");
        assert_eq!(points(0.01), "+1 point");
        assert_eq!(points(-0.0123), "-1.23 points");
        assert_eq!(confidence_percent(0.05), "95");
        assert_eq!(confidence_percent(1e-4), "99.99");
        assert_eq!(quantile_name(0.99), "p99");
        assert_eq!(quantile_name(0.999), "p99.9");
        assert_eq!(format_p(0.0123), "p = 0.012");
    }
}
