//! Group-sequential verdicts for split stages: stop as soon as the canary share is clearly right
//! or clearly wrong, with the same exact guarantees as the fixed-size test of [`crate::stats`].
//!
//! # Model
//! Envoy picks the cluster of every request from a fresh random number, so the canary count of
//! the first `n` requests is exactly `Binomial(n, p)` for every `n`, and the counts seen at the
//! looks are a binomial random walk. That holds for the first `n` requests **by send order**, or
//! any set of requests chosen before their outcomes are known; counting answers in the order
//! they come back would let slow or failed answers choose the set. The caller guarantees it.
//!
//! # Design
//! A look every `k` requests (default 50) up to `max_requests` (1.25 × the fixed design's `n`,
//! rounded up to a multiple of `k`). With `L±(n, x)` the log-likelihood ratio of `p0 ± δ`
//! against `p0` after `x` canary answers out of `n`, for each alternative inside [0, 1]:
//! - **fail** when `L+ ≥ A+` or `L− ≥ A−`: the count is beyond a line in (n, x);
//! - **pass** when `L+ ≤ −B+` and `L− ≤ −B−`: a band around `n·p0` that opens once `n` is large
//!   enough to tell `p0` from both alternatives;
//! - otherwise **continue**. At the last look each side spends what is left of its α on its
//!   most extreme counts (the Neyman–Pearson choice at that look, and only counts more likely
//!   under the alternative than under `p0`), and every other count passes.
//!
//! These are two one-sided sequential probability ratio tests, truncated. Their constants are
//! calibrated on exact figures, not Wald's approximations: each side may spend `α_test / 2`
//! (all of `α_test` if only one alternative exists); `A±` is set so the early looks spend about
//! [`EARLY_SPEND`] of it, and `B±` as small as the power allows, which keeps `E[N | p0]` small.
//!
//! # Exact figures
//! Size, power and expected requests come from the exact distribution of the count among the
//! paths that are still undecided, carried from look to look by convolving with
//! `Binomial(k, p0)`. The same walk serves every share `p`: the probability of a path to
//! `(n, x)` under `p` is its probability under `p0` times `exp(L_p(n, x))`, so one pass gives
//! the figures at `p0`, `p0 − δ` and `p0 + δ`. Kernel terms beyond a tail of at most
//! `1e-9 · min(α, β) / looks` are dropped for speed; that mass is tracked and counts as a
//! failure in the size, as a miss in the power and as `max_requests` in `E[N]`, so the stated
//! figures are bounds (up to floating-point rounding).
//!
//! # Bounded planning
//! Planning counts its work (cell updates of the walk) and refuses with
//! [`PlanError::TooMuchWork`] beyond [`MAX_WORK`]; designs with more than [`MAX_LOOKS`] looks
//! look less often instead, and the fixed design's cap [`stats::MAX_REQUESTS_PER_TEST`] bounds
//! the requests.

use serde::{Deserialize, Serialize};
use statrs::function::factorial::ln_binomial;

use crate::stats::{self, Budget, PlanError};

/// Requests between looks unless the caller asks otherwise.
pub const DEFAULT_LOOK_EVERY: u64 = 50;

/// At most this many looks: bigger designs look every `k·m` requests for the smallest `m` that
/// fits, because the planning work grows with the number of looks.
pub const MAX_LOOKS: u64 = 200;

/// The maximum requests of a sequential design, relative to the fixed design's.
pub const MAX_REQUESTS_FACTOR: f64 = 1.25;

/// Cell updates one plan may spend on its exact walks (all calibration passes together).
pub const MAX_WORK: u64 = 2_000_000_000;

/// Share of each side's α that the early looks aim to spend; the rest goes to the last look.
pub const EARLY_SPEND: f64 = 0.5;

/// Calibration passes (one exact walk each) before the best design found so far is taken.
const MAX_PASSES: usize = 40;

/// Dropped kernel tails per look, relative to `min(α, β) / looks`.
const KERNEL_TAIL: f64 = 1e-9;

/// The calibration aims this far inside the power bound, so that a design on the boundary's
/// integer steps still meets it, and stops once every miss rate is within [`TIGHT`] of β.
const AIM: f64 = 0.99;
const TIGHT: f64 = 0.98;

/// One look: the counts that decide, all bounds inclusive, `None` where a side has no boundary
/// (yet). A count `x` out of `n` fails if `x <= fail_below` or `x >= fail_above`, passes if
/// `pass_from <= x <= pass_to`, and otherwise continues; at the last look nothing continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Look {
    pub n: u64,
    pub fail_below: Option<u64>,
    pub fail_above: Option<u64>,
    pub pass_from: Option<u64>,
    pub pass_to: Option<u64>,
}

/// What to do after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Continue,
    Pass,
    Fail,
}

impl Look {
    fn fails_low(&self, x: u64) -> bool {
        self.fail_below.is_some_and(|b| x <= b)
    }

    fn fails_high(&self, x: u64) -> bool {
        x > self.n || self.fail_above.is_some_and(|a| x >= a)
    }

    fn passes(&self, x: u64) -> bool {
        matches!((self.pass_from, self.pass_to), (Some(from), Some(to)) if from <= x && x <= to)
    }

    /// The side a failing count fails on: 0 below, 1 above. At the last look a count outside
    /// every band (possible only in hand-made looks) fails on the side of `n·p0` it lies.
    fn fail_side(&self, x: u64, p0: f64) -> usize {
        if self.fails_low(x) {
            0
        } else if self.fails_high(x) {
            1
        } else {
            usize::from(x as f64 >= self.n as f64 * p0)
        }
    }

    fn decide(&self, x: u64, last: bool) -> Decision {
        if self.fails_low(x) || self.fails_high(x) {
            Decision::Fail
        } else if self.passes(x) {
            Decision::Pass
        } else if last {
            Decision::Fail
        } else {
            Decision::Continue
        }
    }
}

/// Expected requests until a verdict, exact (an upper bound by the dropped mass).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpectedRequests {
    pub at_p0: f64,
    /// At `p0 − δ`, if that share exists.
    pub at_low: Option<f64>,
    /// At `p0 + δ`, if that share exists.
    pub at_high: Option<f64>,
}

/// The calibrated constants, in log-likelihood-ratio units, per side (`None`: no alternative
/// on that side, so no boundary).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Constants {
    /// Fail when `L− ≥ fail_low`.
    pub fail_low: Option<f64>,
    /// Fail when `L+ ≥ fail_high`.
    pub fail_high: Option<f64>,
    /// Pass needs `L− ≤ −pass_low` ...
    pub pass_low: Option<f64>,
    /// ... and `L+ ≤ −pass_high`.
    pub pass_high: Option<f64>,
}

/// A group-sequential test of one split stage, fixed before sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialPlan {
    /// p0, in (0, 1).
    pub expected_share: f64,
    pub alpha_test: f64,
    pub beta: f64,
    pub delta: f64,
    /// Requests between looks (the requested `k`, or a multiple when the looks were capped).
    pub look_every: u64,
    /// The most requests a verdict can take (the last look's `n`).
    pub max_requests: u64,
    pub looks: Vec<Look>,
    pub constants: Constants,
    /// Exact P(fail | p0), both sides, bound including dropped mass; `<= alpha_test`.
    pub false_failure: f64,
    /// Exact P(fail below | p0) and P(fail above | p0) (without dropped mass).
    pub false_failure_low: f64,
    pub false_failure_high: f64,
    /// Exact P(fail | p0 − δ) and P(fail | p0 + δ) where those shares exist.
    pub power_low: Option<f64>,
    pub power_high: Option<f64>,
    /// The smaller of the two; `>= 1 − beta`.
    pub power: f64,
    pub expected_requests: ExpectedRequests,
    /// `n` of the fixed design ([`stats::try_plan`]) for the same budget.
    pub fixed_requests: u64,
    /// Cell updates the planning took, deterministic; at most [`MAX_WORK`].
    pub planning_work: u64,
}

/// Plans a group-sequential test of a split stage (`0 < p0 < 1`) at significance `alpha_test`
/// with looks every `look_every` requests.
///
/// The design meets, exactly: P(fail | p0) `<= alpha_test`, and P(fail | p) `>= 1 − beta` at
/// `p = p0 − δ` and `p = p0 + δ` where those lie in [0, 1] (as in [`stats::try_plan`]).
/// Refuses an invalid budget, a 0 % or 100 % stage (a zero-leak check), a budget beyond
/// [`stats::MAX_REQUESTS_PER_TEST`] and one whose planning would exceed [`MAX_WORK`].
pub fn plan_sequential(
    expected_share: f64,
    budget: &Budget,
    alpha_test: f64,
    look_every: u64,
) -> Result<SequentialPlan, PlanError> {
    plan_with_limits(
        expected_share,
        budget,
        alpha_test,
        look_every,
        &Limits::default(),
    )
}

/// Bounds on planning; tests shrink them to see the refusals.
#[derive(Debug, Clone, Copy)]
struct Limits {
    work: u64,
    looks: u64,
    requests: u64,
    passes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            work: MAX_WORK,
            looks: MAX_LOOKS,
            requests: stats::MAX_REQUESTS_PER_TEST,
            passes: MAX_PASSES,
        }
    }
}

fn invalid(message: impl Into<String>) -> PlanError {
    PlanError::InvalidBudget {
        message: message.into(),
    }
}

fn plan_with_limits(
    expected_share: f64,
    budget: &Budget,
    alpha_test: f64,
    look_every: u64,
    limits: &Limits,
) -> Result<SequentialPlan, PlanError> {
    budget.validate().map_err(invalid)?;
    if !(alpha_test > 0.0 && alpha_test < 1.0) {
        return Err(invalid(format!(
            "alpha_test must be in (0, 1), got {alpha_test}"
        )));
    }
    if look_every == 0 {
        return Err(invalid("look_every must be at least 1"));
    }
    let p0 = stats::snap_share(expected_share);
    if p0 == 0.0 || p0 == 1.0 {
        return Err(invalid(format!(
            "a {} % stage is a zero-leak check, not a split: plan it with stats::try_plan",
            p0 * 100.0
        )));
    }
    let fixed = stats::try_plan(p0, budget, alpha_test)?;
    let model = Model::new(p0, budget, alpha_test, look_every, fixed.requests, limits)?;
    let (constants, looks, figures, work) = calibrate(&model, limits)?;
    Ok(model.plan(budget, constants, looks, &figures, fixed.requests, work))
}

/// One alternative share and its log-likelihood ratio against `p0`.
#[derive(Debug, Clone, Copy)]
struct Side {
    p: f64,
    /// ln(p / p0) per canary answer, ln((1 − p) / (1 − p0)) per other answer (−∞ at the edges).
    per_canary: f64,
    per_other: f64,
}

impl Side {
    fn new(p0: f64, p: f64) -> Side {
        let ln_or_minus_infinity = |ratio: f64| {
            if ratio > 0.0 {
                ratio.ln()
            } else {
                f64::NEG_INFINITY
            }
        };
        Side {
            p,
            per_canary: ln_or_minus_infinity(p / p0),
            per_other: ln_or_minus_infinity((1.0 - p) / (1.0 - p0)),
        }
    }

    /// `L_p(n, x)`; a share of 0 or 1 gives −∞ for counts it cannot produce.
    fn llr(&self, n: u64, x: u64) -> f64 {
        // 0 · (−∞) would be NaN: no answers of a kind contribute nothing.
        let canary = if x > 0 {
            x as f64 * self.per_canary
        } else {
            0.0
        };
        let other = if n > x {
            (n - x) as f64 * self.per_other
        } else {
            0.0
        };
        canary + other
    }

    /// A share of 0 or 1: its paths are a single count, so only a fail boundary matters.
    fn degenerate(&self) -> bool {
        self.p <= 0.0 || self.p >= 1.0
    }
}

/// The alternatives `p0 − δ` and `p0 + δ` that lie in [0, 1], as the fixed design has them.
fn sides(p0: f64, delta: f64) -> [Option<Side>; 2] {
    let alternatives = stats::alternatives(p0, delta);
    let side_of = |below: bool| {
        alternatives
            .iter()
            .find(|&&p| (p < p0) == below)
            .map(|&p| Side::new(p0, p))
    };
    [side_of(true), side_of(false)]
}

/// `Binomial(k, p0)` over the increments a look can add, with the tails dropped.
#[derive(Debug, Clone)]
struct Kernel {
    /// Smallest increment kept.
    start: u64,
    pmf: Vec<f64>,
    /// Mass of the dropped increments under p0, p0 − δ and p0 + δ.
    dropped: [f64; 3],
}

impl Kernel {
    fn new(k: u64, p0: f64, sides: &[Option<Side>; 2], tail: f64) -> Kernel {
        let shares = [Some(p0), sides[0].map(|s| s.p), sides[1].map(|s| s.p)];
        let pmfs: Vec<Option<Vec<f64>>> = shares
            .iter()
            .map(|p| p.map(|p| binomial_pmf(k, p)))
            .collect();
        // Keep the union of the increments each share needs.
        let (mut start, mut end) = (k, 0);
        for pmf in pmfs.iter().flatten() {
            let (low, high) = central_range(pmf, tail / 2.0);
            start = start.min(low);
            end = end.max(high);
        }
        let dropped = std::array::from_fn(|i| {
            pmfs[i].as_ref().map_or(0.0, |pmf| {
                let below: f64 = pmf[..start as usize].iter().sum();
                let above: f64 = pmf[end as usize + 1..].iter().rev().sum();
                below + above
            })
        });
        let pmf = pmfs[0].as_ref().expect("p0 kernel")[start as usize..=end as usize].to_vec();
        Kernel {
            start,
            pmf,
            dropped,
        }
    }
}

/// Binomial(k, p) probabilities of 0..=k, exact for the edge shares 0 and 1.
fn binomial_pmf(k: u64, p: f64) -> Vec<f64> {
    (0..=k)
        .map(|d| {
            if p <= 0.0 {
                f64::from(u8::from(d == 0))
            } else if p >= 1.0 {
                f64::from(u8::from(d == k))
            } else {
                (ln_binomial(k, d) + d as f64 * p.ln() + (k - d) as f64 * (-p).ln_1p()).exp()
            }
        })
        .collect()
}

/// Smallest range of indices whose two tails outside each hold at most `tail`, summed from the
/// small end so that the sums are accurate.
fn central_range(pmf: &[f64], tail: f64) -> (u64, u64) {
    let last = pmf.len() - 1;
    let (mut low, mut below) = (0, 0.0);
    while low < last && below + pmf[low] <= tail {
        below += pmf[low];
        low += 1;
    }
    let (mut high, mut above) = (last, 0.0);
    while high > low && above + pmf[high] <= tail {
        above += pmf[high];
        high -= 1;
    }
    (low as u64, high as u64)
}

/// Everything the walk needs that does not depend on the constants.
#[derive(Debug, Clone)]
struct Model {
    p0: f64,
    alpha_test: f64,
    beta: f64,
    /// `p0 − δ` and `p0 + δ`, where they exist.
    sides: [Option<Side>; 2],
    /// α each side may spend.
    side_alpha: [f64; 2],
    k: u64,
    ns: Vec<u64>,
    kernel: Kernel,
}

impl Model {
    fn new(
        p0: f64,
        budget: &Budget,
        alpha_test: f64,
        look_every: u64,
        fixed_requests: u64,
        limits: &Limits,
    ) -> Result<Model, PlanError> {
        let sides = sides(p0, budget.delta);
        let present = sides.iter().filter(|s| s.is_some()).count() as f64;
        let side_alpha = sides.map(|s| {
            if s.is_some() {
                alpha_test / present
            } else {
                0.0
            }
        });

        let wanted = (fixed_requests as f64 * MAX_REQUESTS_FACTOR).ceil() as u64;
        let mut k = look_every;
        if wanted.div_ceil(k) > limits.looks {
            // Look less often rather than more than the bound allows.
            k *= wanted.div_ceil(k).div_ceil(limits.looks);
        }
        let looks = wanted.div_ceil(k).min(limits.requests / k);
        if looks == 0 {
            return Err(PlanError::TooManyRequests {
                needed_at_least: k,
                estimate: wanted,
                cap: limits.requests,
                fix: "look more often (a smaller look_every)".to_string(),
            });
        }
        let ns = (1..=looks).map(|j| j * k).collect();
        let tail = KERNEL_TAIL * alpha_test.min(budget.beta) / looks as f64;
        let kernel = Kernel::new(k, p0, &sides, tail);
        Ok(Model {
            p0,
            alpha_test,
            beta: budget.beta,
            sides,
            side_alpha,
            k,
            ns,
            kernel,
        })
    }

    fn max_requests(&self) -> u64 {
        *self.ns.last().expect("at least one look")
    }

    /// The boundaries of a look before the last, from the constants.
    fn early_look(&self, c: &Constants, n: u64) -> Look {
        let mut look = Look {
            n,
            fail_below: None,
            fail_above: None,
            pass_from: Some(0),
            pass_to: Some(n),
        };
        // L− falls as x grows, L+ rises.
        if let (Some(low), Some(fail), Some(pass)) = (self.sides[0], c.fail_low, c.pass_low) {
            look.fail_below = stats::last_true(0, n, |x| low.llr(n, x) >= fail);
            look.pass_from = stats::first_true(0, n, |x| low.llr(n, x) <= -pass);
        }
        if let (Some(high), Some(fail), Some(pass)) = (self.sides[1], c.fail_high, c.pass_high) {
            look.fail_above = stats::first_true(0, n, |x| high.llr(n, x) >= fail);
            look.pass_to = stats::last_true(0, n, |x| high.llr(n, x) <= -pass);
        }
        if !matches!((look.pass_from, look.pass_to), (Some(a), Some(b)) if a <= b) {
            look.pass_from = None;
            look.pass_to = None;
        }
        look
    }

    /// The last look: each side fails its most extreme counts while its α lasts (`spent` is
    /// what it has spent, `lost` the dropped mass, counted against both), and only counts more
    /// likely under its alternative than under p0; every other count passes.
    fn last_look(&self, n: u64, lo: u64, h: &[f64], spent: [f64; 2], lost: f64) -> Look {
        let hi = lo + h.len() as u64 - 1;
        let mass = |x: u64| {
            if x < lo || x > hi {
                0.0
            } else {
                h[(x - lo) as usize]
            }
        };
        let mut fail_below = None;
        if let Some(low) = self.sides[0] {
            let left = (self.side_alpha[0] - spent[0] - lost).max(0.0);
            let evidence = stats::last_true(0, n, |x| low.llr(n, x) >= 0.0);
            // Walk up from 0 while the mass of the counts failed so far fits.
            let (mut x, mut sum) = (0u64, 0.0);
            let mut last = None;
            while evidence.is_some_and(|e| x <= e) && sum + mass(x) <= left {
                sum += mass(x);
                last = Some(x);
                x += 1;
            }
            fail_below = last;
        }
        let mut fail_above = None;
        if let Some(high) = self.sides[1] {
            let left = (self.side_alpha[1] - spent[1] - lost).max(0.0);
            let evidence = stats::first_true(0, n, |x| high.llr(n, x) >= 0.0);
            let (mut x, mut sum) = (n, 0.0);
            let mut first = None;
            while evidence.is_some_and(|e| x >= e) && sum + mass(x) <= left {
                sum += mass(x);
                first = Some(x);
                if x == 0 {
                    break;
                }
                x -= 1;
            }
            fail_above = first;
        }
        let pass_from = fail_below.map_or(0, |b| b + 1);
        let pass_to = fail_above.map_or(n, |a| a.saturating_sub(1));
        let (pass_from, pass_to) = if pass_from <= pass_to && fail_above != Some(0) {
            (Some(pass_from), Some(pass_to))
        } else {
            (None, None)
        };
        Look {
            n,
            fail_below,
            fail_above,
            pass_from,
            pass_to,
        }
    }

    /// Cell updates one walk with these constants would take at most.
    fn work_estimate(&self, c: &Constants) -> u64 {
        let last = self.ns.len() - 1;
        let kernel = self.kernel.pmf.len() as u64;
        self.ns[..last]
            .iter()
            .map(|&n| {
                let look = self.early_look(c, n);
                let low = look.fail_below.map_or(0, |b| b + 1);
                let high = look.fail_above.map_or(n, |a| a.saturating_sub(1));
                let band = match (look.pass_from, look.pass_to) {
                    (Some(a), Some(b)) => b + 1 - a,
                    _ => 0,
                };
                (high + 1).saturating_sub(low).saturating_sub(band) * kernel
            })
            .sum::<u64>()
            + kernel
    }

    fn plan(
        &self,
        budget: &Budget,
        constants: Constants,
        looks: Vec<Look>,
        figures: &Figures,
        fixed_requests: u64,
        work: u64,
    ) -> SequentialPlan {
        // Sums of tilted masses can pass 1 by rounding; the figures are lower bounds.
        let power_low = self.sides[0].map(|_| figures.fail[1].min(1.0));
        let power_high = self.sides[1].map(|_| figures.fail[2].min(1.0));
        SequentialPlan {
            expected_share: self.p0,
            alpha_test: self.alpha_test,
            beta: self.beta,
            delta: budget.delta,
            look_every: self.k,
            max_requests: self.max_requests(),
            looks,
            constants,
            false_failure: figures.false_failure(),
            false_failure_low: figures.size[0],
            false_failure_high: figures.size[1],
            power_low,
            power_high,
            power: power_low.into_iter().chain(power_high).fold(1.0, f64::min),
            expected_requests: ExpectedRequests {
                at_p0: figures.expected[0],
                at_low: power_low.map(|_| figures.expected[1]),
                at_high: power_high.map(|_| figures.expected[2]),
            },
            fixed_requests,
            planning_work: work,
        }
    }
}

/// The walk over the undecided paths: the distribution of the count at each look, under p0,
/// before that look's decision.
struct Walk<'m> {
    kernel: &'m Kernel,
    /// The undecided mass after the previous look, by count from `lo`.
    lo: u64,
    undecided: Vec<f64>,
    /// The distribution at the current look, by count from `h_lo`.
    h_lo: u64,
    h: Vec<f64>,
    work: u64,
}

impl<'m> Walk<'m> {
    fn new(kernel: &'m Kernel) -> Walk<'m> {
        Walk {
            kernel,
            lo: 0,
            undecided: vec![1.0],
            h_lo: 0,
            h: Vec::new(),
            work: 0,
        }
    }

    /// Moves `k` requests on: convolves the undecided mass with the kernel.
    fn step(&mut self) {
        let kernel = &self.kernel.pmf;
        self.h.clear();
        self.h.resize(self.undecided.len() + kernel.len() - 1, 0.0);
        for (i, &mass) in self.undecided.iter().enumerate() {
            if mass == 0.0 {
                continue;
            }
            self.work += kernel.len() as u64;
            let out = &mut self.h[i..i + kernel.len()];
            for (cell, &b) in out.iter_mut().zip(kernel) {
                *cell += mass * b;
            }
        }
        self.h_lo = self.lo + self.kernel.start;
    }

    /// Keeps the paths that continue after `look`.
    fn keep(&mut self, look: &Look) {
        let h_lo = self.h_lo;
        let continues = |i: usize| {
            self.h[i] != 0.0 && look.decide(h_lo + i as u64, false) == Decision::Continue
        };
        let mut cells = (0..self.h.len()).filter(|&i| continues(i));
        let Some(first) = cells.next() else {
            self.undecided.clear();
            self.undecided.push(0.0);
            return;
        };
        let last = cells.next_back().unwrap_or(first);
        let kept: Vec<f64> = (first..=last)
            .map(|i| if continues(i) { self.h[i] } else { 0.0 })
            .collect();
        self.lo = h_lo + first as u64;
        self.undecided = kept;
    }
}

/// Exact figures of one design. Index 0 is p0, 1 is p0 − δ, 2 is p0 + δ.
#[derive(Debug, Clone, Default)]
struct Figures {
    /// P0(fail below), P0(fail above), without the dropped mass.
    size: [f64; 2],
    /// The same, spent before the last look.
    early: [f64; 2],
    /// Dropped mass under each share.
    lost: [f64; 3],
    /// P(fail) under each share (dropped mass not counted: a lower bound).
    fail: [f64; 3],
    /// E[N] under each share, dropped mass counted at `max_requests`.
    expected: [f64; 3],
    work: u64,
}

impl Figures {
    fn false_failure(&self) -> f64 {
        self.size[0] + self.size[1] + self.lost[0]
    }

    fn miss(&self, side: usize) -> f64 {
        (1.0 - self.fail[side + 1]).max(0.0)
    }
}

/// Runs the exact walk for `constants`: the looks (the last one from the walk) and the figures.
fn evaluate(model: &Model, constants: &Constants) -> (Vec<Look>, Figures) {
    let mut figures = Figures::default();
    let mut looks = Vec::with_capacity(model.ns.len());
    let mut walk = Walk::new(&model.kernel);
    // The start is a single path at count 0.
    let mut undecided_mass = [1.0, 1.0, 1.0];
    let last = model.ns.len() - 1;
    for (j, &n) in model.ns.iter().enumerate() {
        for (lost, (mass, dropped)) in figures
            .lost
            .iter_mut()
            .zip(undecided_mass.iter().zip(model.kernel.dropped))
        {
            *lost += mass * dropped;
        }
        walk.step();
        let look = if j < last {
            model.early_look(constants, n)
        } else {
            model.last_look(n, walk.h_lo, &walk.h, figures.size, figures.lost[0])
        };
        undecided_mass = [0.0; 3];
        for (i, &mass) in walk.h.iter().enumerate() {
            if mass == 0.0 {
                continue;
            }
            let x = walk.h_lo + i as u64;
            let tilt = [
                1.0,
                model.sides[0].map_or(0.0, |s| s.llr(n, x).exp()),
                model.sides[1].map_or(0.0, |s| s.llr(n, x).exp()),
            ];
            match look.decide(x, j == last) {
                Decision::Continue => {
                    for (u, t) in undecided_mass.iter_mut().zip(tilt) {
                        *u += mass * t;
                    }
                }
                decision => {
                    if decision == Decision::Fail {
                        let side = look.fail_side(x, model.p0);
                        figures.size[side] += mass;
                        if j < last {
                            figures.early[side] += mass;
                        }
                        for (f, t) in figures.fail.iter_mut().zip(tilt) {
                            *f += mass * t;
                        }
                    }
                    for (e, t) in figures.expected.iter_mut().zip(tilt) {
                        *e += n as f64 * mass * t;
                    }
                }
            }
        }
        looks.push(look);
        if j < last {
            walk.keep(&look);
        }
    }
    let max = model.max_requests() as f64;
    for (e, lost) in figures.expected.iter_mut().zip(figures.lost) {
        *e += max * lost;
    }
    figures.work = walk.work;
    (looks, figures)
}

/// The starting point: Wald's constants `A = ln(1 / (spend · α_side))` and `B = ln(1 / β)`,
/// lowered by Siegmund's overshoot correction `0.583 · σ · sqrt(k)` for looks every `k` requests
/// (σ: standard deviation of one request's log-likelihood ratio).
fn initial_constants(model: &Model) -> Constants {
    let overshoot = |side: &Side, p: f64| {
        let spread = if side.degenerate() {
            0.0
        } else {
            (side.per_canary - side.per_other).abs() * (p * (1.0 - p)).sqrt()
        };
        0.583 * spread * (model.k as f64).sqrt()
    };
    let fail = |s: usize| {
        model.sides[s].map(|side| {
            (1.0 / (EARLY_SPEND * model.side_alpha[s])).ln() - overshoot(&side, model.p0)
        })
    };
    let pass = |s: usize| {
        model.sides[s].map(|side| ((1.0 / model.beta).ln() - overshoot(&side, side.p)).max(0.5))
    };
    Constants {
        fail_low: fail(0),
        fail_high: fail(1),
        pass_low: pass(0),
        pass_high: pass(1),
    }
}

/// One constant moved by secant steps on the log of its figure towards a target.
#[derive(Debug, Clone, Copy)]
struct Secant {
    value: f64,
    /// d ln(figure) / d value, negative: a larger constant lowers the figure.
    slope: f64,
    previous: Option<(f64, f64)>,
}

impl Secant {
    fn new(value: f64) -> Secant {
        Secant {
            value,
            slope: -1.0,
            previous: None,
        }
    }

    /// The step towards `ln_target` after observing `ln_figure` at the current value.
    fn step(&mut self, ln_figure: f64, ln_target: f64) -> f64 {
        if let Some((value, ln_before)) = self.previous {
            let run = self.value - value;
            let rise = ln_figure - ln_before;
            if run.abs() > 1e-9 && rise.is_finite() && rise != 0.0 {
                self.slope = (rise / run).clamp(-4.0, -0.1);
            }
        }
        self.previous = Some((self.value, ln_figure));
        let step = if ln_figure.is_finite() {
            (ln_target - ln_figure) / self.slope
        } else {
            // The figure is 0: the constant is far too large.
            -1.0
        };
        step.clamp(-2.0, 2.0)
    }
}

/// A pass constant `B` searched between the largest value known to miss too often and the
/// smallest known not to. Misses fall with `B` in steps (boundaries are whole counts), so the
/// search ends when the bracket is narrower than [`B_TOLERANCE`], the miss is tight, or `B`
/// reaches 0 (passing only on evidence for p0). Until both ends are known it steps out in
/// growing steps, so a flat stretch cannot stall it.
#[derive(Debug, Clone, Copy)]
struct Bracket {
    secant: Secant,
    /// (B, ln miss) with miss > β, largest B.
    too_small: Option<(f64, f64)>,
    /// (B, ln miss) with miss <= β, smallest B.
    enough: Option<(f64, f64)>,
    reach: f64,
    done: bool,
}

/// Width in log-likelihood units at which a pass constant is final: a change of E[N | p0]
/// of about a request at the designs here.
const B_TOLERANCE: f64 = 2e-3;

/// First step out of a one-sided bracket; it doubles with every step.
const B_REACH: f64 = 0.02;

/// Pass constants beyond this cannot help: the pass band would open after the last look.
const B_MAX: f64 = 100.0;

impl Bracket {
    fn new(value: f64) -> Bracket {
        Bracket {
            secant: Secant::new(value),
            too_small: None,
            enough: None,
            reach: B_REACH,
            done: false,
        }
    }

    /// Forgets the ends (the other constants changed), keeping the value and the slope.
    fn reopen(&mut self) {
        self.too_small = None;
        self.enough = None;
        self.reach = B_REACH;
        self.done = false;
    }

    /// Records the miss at the current value and moves to the next one.
    fn observe(&mut self, miss: f64, beta: f64) {
        let (value, ln_miss) = (self.secant.value, miss.ln());
        if miss <= beta {
            if self.enough.is_none_or(|(b, _)| value < b) {
                self.enough = Some((value, ln_miss));
            }
        } else if self.too_small.is_none_or(|(b, _)| value > b) {
            self.too_small = Some((value, ln_miss));
        }
        let ln_target = (AIM * beta).ln();
        let secant = self.secant.step(ln_miss, ln_target);
        let tight = miss <= beta && miss >= TIGHT * beta;
        self.secant.value = match (self.too_small, self.enough) {
            (Some((a, _)), Some((b, _))) if tight || b - a < B_TOLERANCE => {
                self.done = true;
                b
            }
            (_, Some((b, _))) if tight || b <= 0.0 => {
                self.done = true;
                b
            }
            (Some((a, ln_a)), Some((b, ln_b))) => {
                // Regula falsi on ln(miss), kept off the ends so the bracket always shrinks.
                let t = if ln_b < ln_a {
                    (ln_a - ln_target) / (ln_a - ln_b)
                } else {
                    0.5
                };
                a + t.clamp(0.2, 0.8) * (b - a)
            }
            (None, Some((b, _))) => (b - secant.abs().clamp(self.reach, 2.0)).max(0.0),
            (Some((a, _)), None) if a >= B_MAX => {
                // No pass band meets the power: leave it to the error.
                self.done = true;
                a
            }
            (Some((a, _)), None) => (a + secant.abs().clamp(self.reach, 2.0)).min(B_MAX),
            (None, None) => value,
        };
        self.reach *= 2.0;
    }
}

/// Calibrates the constants by exact walks; returns the design with the smallest E[N | p0]
/// among those that meet the budget.
///
/// First the fail constants `A` take up to [`FAIL_ROUNDS`] secant steps towards spending
/// [`EARLY_SPEND`] of each side's α before the last look (the last look spends the rest, so
/// their exact value matters little), together with secant steps on `B`. Then `A` stays and
/// each pass constant `B` is bracketed, as small as the power allows. Should the early looks
/// ever overspend a side's α, its `A` rises and the brackets start again.
fn calibrate(
    model: &Model,
    limits: &Limits,
) -> Result<(Constants, Vec<Look>, Figures, u64), PlanError> {
    let start = initial_constants(model);
    let mut fail = [start.fail_low, start.fail_high].map(|c| c.map(Secant::new));
    let mut pass = [start.pass_low, start.pass_high].map(|c| c.map(Bracket::new));
    // A side whose alternative is 0 or 1 has a pass band edge that B cannot move.
    let fixed_pass = |s: usize| model.sides[s].is_none_or(|side| side.degenerate());
    for (s, bracket) in pass.iter_mut().enumerate() {
        if let Some(bracket) = bracket.as_mut() {
            bracket.done = fixed_pass(s);
        }
    }
    let mut fail_moving = true;
    let mut raises = 0;
    let mut best: Option<(Constants, Vec<Look>, Figures)> = None;
    let mut evaluated: Vec<Constants> = Vec::new();
    let mut work = 0u64;
    for round in 0..limits.passes {
        let constants = Constants {
            fail_low: fail[0].map(|s| s.value),
            fail_high: fail[1].map(|s| s.value),
            pass_low: pass[0].map(|s| s.secant.value),
            pass_high: pass[1].map(|s| s.secant.value),
        };
        // Nothing new to learn from a design already walked.
        if evaluated.contains(&constants) {
            break;
        }
        let estimate = model.work_estimate(&constants);
        if work + estimate > limits.work {
            if best.is_some() {
                break;
            }
            return Err(too_much_work(model, work + estimate, limits));
        }
        let (looks, figures) = evaluate(model, &constants);
        work += figures.work;
        evaluated.push(constants);
        let overspent = |s: usize| figures.size[s] + figures.lost[0] > model.side_alpha[s];
        let meets = (0..2)
            .all(|s| model.sides[s].is_none() || (!overspent(s) && figures.miss(s) <= model.beta));
        if meets
            && best
                .as_ref()
                .is_none_or(|(_, _, b)| figures.expected[0] < b.expected[0])
        {
            best = Some((constants, looks, figures.clone()));
        }
        let ln_spend = |s: usize| (figures.early[s] / (EARLY_SPEND * model.side_alpha[s])).ln();
        let near = (0..2).all(|s| model.sides[s].is_none() || ln_spend(s).abs() < 1.2f64.ln());
        fail_moving = fail_moving && !near && round + 1 < FAIL_ROUNDS;
        let raise: Vec<usize> = (0..2)
            .filter(|&s| model.sides[s].is_some() && !fail_moving && overspent(s))
            .collect();
        if !raise.is_empty() && raises < MAX_RAISES {
            raises += 1;
            for &s in &raise {
                if let Some(secant) = fail[s].as_mut() {
                    secant.value += ln_spend(s).max(0.5);
                }
            }
            for (s, bracket) in pass.iter_mut().enumerate() {
                if let Some(bracket) = bracket.as_mut().filter(|_| !fixed_pass(s)) {
                    bracket.reopen();
                }
            }
            continue;
        }
        for s in 0..2 {
            if let Some(secant) = fail[s].as_mut().filter(|_| fail_moving) {
                let target = EARLY_SPEND * model.side_alpha[s];
                secant.value += secant
                    .step(figures.early[s].ln(), target.ln())
                    .clamp(-1.0, 1.0);
            }
            let Some(bracket) = pass[s].as_mut().filter(|b| !b.done) else {
                continue;
            };
            if fail_moving {
                // Brackets only hold once the fail constants stay put.
                let step = bracket
                    .secant
                    .step(figures.miss(s).ln(), (AIM * model.beta).ln());
                bracket.secant.value = (bracket.secant.value + step).clamp(0.0, B_MAX);
            } else {
                bracket.observe(figures.miss(s), model.beta);
            }
        }
    }
    match best {
        Some((constants, looks, figures)) => Ok((constants, looks, figures, work)),
        None => Err(PlanError::NoDesign {
            reason: format!(
                "{} calibration passes found no sequential design with exact size <= {} and \
                 power >= {} within {} requests",
                limits.passes,
                model.alpha_test,
                1.0 - model.beta,
                model.max_requests()
            ),
            fix: "use the fixed design (stats::try_plan), or a larger delta".to_string(),
        }),
    }
}

/// Times the fail constants may rise after an overspend.
const MAX_RAISES: usize = 3;

/// Passes in which the fail constants move.
const FAIL_ROUNDS: usize = 3;

fn too_much_work(model: &Model, needed: u64, limits: &Limits) -> PlanError {
    PlanError::TooMuchWork {
        work_needed: needed,
        work_bound: limits.work,
        max_requests: model.max_requests(),
        looks: model.ns.len() as u64,
        fix: "use a larger delta, or the fixed design (stats::try_plan)".to_string(),
    }
}

impl SequentialPlan {
    /// The decision at look `look` (an index into [`SequentialPlan::looks`]) after `canary`
    /// canary answers among the first `looks[look].n` requests by send order. An index past
    /// the last look or a count above `n` fails.
    pub fn decide(&self, look: usize, canary: u64) -> Decision {
        match self.looks.get(look) {
            Some(l) => l.decide(canary, look + 1 == self.looks.len()),
            None => Decision::Fail,
        }
    }

    /// The index of the look after `n` requests, if there is one.
    pub fn look_at(&self, n: u64) -> Option<usize> {
        self.looks.iter().position(|l| l.n == n)
    }

    /// Confidence level of [`SequentialJudgement::interval`]: `1 − alpha_test / looks`.
    pub fn interval_confidence(&self) -> f64 {
        1.0 - self.alpha_test / self.looks.len().max(1) as f64
    }

    /// The walk's model, rebuilt exactly as planning built it.
    fn model(&self) -> Model {
        let sides = sides(self.expected_share, self.delta);
        let looks = self.looks.len().max(1) as f64;
        let tail = KERNEL_TAIL * self.alpha_test.min(self.beta) / looks;
        Model {
            p0: self.expected_share,
            alpha_test: self.alpha_test,
            beta: self.beta,
            sides,
            side_alpha: [0.0; 2],
            k: self.look_every,
            ns: self.looks.iter().map(|l| l.n).collect(),
            kernel: Kernel::new(self.look_every, self.expected_share, &sides, tail),
        }
    }
}

/// The verdict at the look where the design stopped, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialJudgement {
    pub passed: bool,
    pub decision: Decision,
    /// Index into the plan's looks; the reason counts looks from 1.
    pub look: usize,
    /// n at that look.
    pub n: u64,
    pub canary: u64,
    pub observed_share: f64,
    /// Repeated confidence interval: Clopper–Pearson at `1 − alpha_test / looks`.
    pub interval: (f64, f64),
    pub interval_confidence: f64,
    /// Two-sided p-value of the stagewise ordering (see [`judge`]); 1 without a verdict.
    pub p_value: f64,
    /// One human sentence: why it passed or failed, with figures.
    pub reason: String,
}

/// Judges `canary` canary answers among the first `plan.looks[look].n` requests by send order.
///
/// Call it at the first look where [`SequentialPlan::decide`] is not `Continue`: the error
/// rates hold for that stopping rule. The figures reported are valid for the sequential design,
/// where a fixed-sample p-value or interval at the stopping look would not be:
///
/// - `p_value` comes from the **stagewise ordering** of the outcomes (Fairbanks & Madsen;
///   Tsiatis, Rosner & Mehta): upwards, failing above at an earlier look is more extreme than at
///   a later one, and at the same look a larger count is more extreme; then come all passes,
///   ordered by `z = (x − n·p0) / sqrt(n·p0·(1 − p0))`, then the failures below, latest first.
///   The one-sided p-values are the exact probabilities under p0 (from the same walk as the
///   plan, dropped mass added) of an outcome at least as extreme. The two-sided p-value is
///   `min(1, upper / w+, lower / w−)` with weights `w±` the share of the design's size each
///   side spends: `2·min(upper, lower)` when the sides spend equally, a Bonferroni bound in
///   general, and it makes a fail exactly an outcome with `p <= false_failure`.
/// - `interval` is a **repeated confidence interval**: Clopper–Pearson at
///   `1 − alpha_test / looks` at the stopping look. It covers the true share with probability
///   at least `1 − alpha_test` at every look at once (Bonferroni over the looks), so at the
///   stopping look whatever the stopping rule, even if the run stopped early for another
///   reason. It is conservative, which is the price of that robustness.
///
/// Without a verdict (`Continue`) the judgement fails with `p_value` 1 and says so.
pub fn judge(plan: &SequentialPlan, look: usize, canary: u64) -> SequentialJudgement {
    let looks = plan.looks.len();
    let confidence = plan.interval_confidence();
    let level = stats::confidence_percent(1.0 - confidence);
    let expected = stats::percent_setting(plan.expected_share);
    let Some(at) = plan.looks.get(look) else {
        return SequentialJudgement {
            passed: false,
            decision: Decision::Fail,
            look,
            n: 0,
            canary,
            observed_share: 0.0,
            interval: (0.0, 1.0),
            interval_confidence: confidence,
            p_value: 1.0,
            reason: format!("invalid look {}: the design has {looks} looks", look + 1),
        };
    };
    let n = at.n;
    if canary > n {
        return SequentialJudgement {
            passed: false,
            decision: Decision::Fail,
            look,
            n,
            canary,
            observed_share: 1.0,
            interval: (0.0, 1.0),
            interval_confidence: confidence,
            p_value: 0.0,
            reason: format!(
                "invalid tally: {canary} canary answers out of only {n} requests at look {} of \
                 {looks}",
                look + 1
            ),
        };
    }
    let decision = plan.decide(look, canary);
    let observed_share = canary as f64 / n as f64;
    let interval = stats::clopper_pearson(canary, n, confidence);
    let observed = format!(
        "canary share {} % ({level} % repeated CI {}–{} %)",
        stats::percent(observed_share, false),
        stats::percent(interval.0, false),
        stats::percent(interval.1, false)
    );
    let p_value = if decision == Decision::Continue {
        1.0
    } else {
        StagewiseOrder::new(plan).two_sided(look, canary)
    };
    let place = format!("at look {} of {looks} after {n} requests", look + 1);
    let reason = match decision {
        Decision::Pass => {
            let band = match (at.pass_from, at.pass_to) {
                (Some(from), Some(to)) => format!("within the pass band {from}–{to}"),
                _ => "in the pass band".to_string(),
            };
            format!(
                "{observed} is consistent with the expected {expected} % (passed {place}: \
                 {canary} canary answers {band}; {})",
                stats::format_p(p_value)
            )
        }
        Decision::Fail => {
            let last = look + 1 == looks;
            let boundary = match (at.fails_low(canary), at.fails_high(canary)) {
                (true, _) if !last => format!(
                    "at or below the fail boundary {}",
                    at.fail_below.unwrap_or_default()
                ),
                (_, true) if !last && canary <= n => format!(
                    "at or above the fail boundary {}",
                    at.fail_above.unwrap_or_default()
                ),
                _ => match (at.pass_from, at.pass_to) {
                    (Some(from), Some(to)) => {
                        format!("outside the final acceptance region {from}–{to}")
                    }
                    _ => "with no final acceptance region".to_string(),
                },
            };
            format!(
                "{observed} differs from the expected {expected} % ({} ≤ α = {}; failed {place}: \
                 {canary} canary answers, {boundary})",
                stats::format_p(p_value),
                stats::format_alpha(plan.alpha_test)
            )
        }
        Decision::Continue => format!(
            "no verdict yet {place}: {canary} canary answers ({observed}) lie between the pass \
             and fail boundaries, so the design needs more requests (at most {})",
            plan.max_requests
        ),
    };
    SequentialJudgement {
        passed: decision == Decision::Pass,
        decision,
        look,
        n,
        canary,
        observed_share,
        interval,
        interval_confidence: confidence,
        p_value,
        reason,
    }
}

/// The stagewise ordering of a plan's outcomes with their exact probabilities under p0, from
/// one walk; answers the one-sided p-values of any outcome.
struct StagewiseOrder {
    p0: f64,
    looks: Vec<Look>,
    /// Per look: the distribution before the decision, by count from `lo`.
    at: Vec<(u64, Vec<f64>)>,
    /// P0(fail above) and P0(fail below) at looks before each look.
    above_before: Vec<f64>,
    below_before: Vec<f64>,
    size: [f64; 2],
    /// Passes by z, with the cumulative mass from below.
    passes: Vec<(f64, f64)>,
    lost: f64,
    /// w−, w+: the share of the size each side spends.
    weight: [f64; 2],
}

impl StagewiseOrder {
    fn new(plan: &SequentialPlan) -> StagewiseOrder {
        let model = plan.model();
        let p0 = model.p0;
        let z = |n: u64, x: u64| (x as f64 - n as f64 * p0) / (n as f64 * p0 * (1.0 - p0)).sqrt();
        let mut walk = Walk::new(&model.kernel);
        let (mut lost, mut undecided) = (0.0, 1.0);
        let (mut size, mut passes) = ([0.0; 2], Vec::new());
        let (mut at, mut above_before, mut below_before) = (Vec::new(), Vec::new(), Vec::new());
        let last = plan.looks.len().saturating_sub(1);
        for (j, look) in plan.looks.iter().enumerate() {
            lost += undecided * model.kernel.dropped[0];
            walk.step();
            above_before.push(size[1]);
            below_before.push(size[0]);
            undecided = 0.0;
            for (i, &mass) in walk.h.iter().enumerate() {
                let x = walk.h_lo + i as u64;
                match look.decide(x, j == last) {
                    Decision::Fail => size[look.fail_side(x, p0)] += mass,
                    Decision::Pass => passes.push((z(look.n, x), mass)),
                    Decision::Continue => undecided += mass,
                }
            }
            at.push((walk.h_lo, walk.h.clone()));
            if j < last {
                walk.keep(look);
            }
        }
        passes.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut below = 0.0;
        for pass in passes.iter_mut() {
            below += pass.1;
            pass.1 = below;
        }
        let spent = plan.false_failure_low + plan.false_failure_high;
        let weight = if spent > 0.0 {
            [
                plan.false_failure_low / spent,
                plan.false_failure_high / spent,
            ]
        } else {
            [0.0; 2]
        };
        StagewiseOrder {
            p0,
            looks: plan.looks.clone(),
            at,
            above_before,
            below_before,
            size,
            passes,
            lost,
            weight,
        }
    }

    /// P0(an outcome at least as extreme upwards, downwards) for a stopping outcome; `None`
    /// for a count that continues.
    fn one_sided(&self, look: usize, x: u64) -> Option<(f64, f64)> {
        let at = self.looks.get(look)?;
        let last = look + 1 == self.looks.len();
        let (lo, h) = &self.at[look];
        let mass = |c: u64| {
            c.checked_sub(*lo)
                .and_then(|i| h.get(i as usize))
                .copied()
                .unwrap_or(0.0)
        };
        let decides = |c: u64| at.decide(c, last);
        match decides(x) {
            Decision::Continue => None,
            Decision::Fail => {
                let side = at.fail_side(x, self.p0);
                // Same look, same side, at least as far out.
                let (from, to) = if side == 1 { (x, at.n) } else { (0, x) };
                let hi = lo + h.len() as u64;
                let same: f64 = (from.max(*lo)..=to.min(hi))
                    .filter(|&c| decides(c) == Decision::Fail && at.fail_side(c, self.p0) == side)
                    .map(mass)
                    .sum();
                let before = if side == 1 {
                    self.above_before[look]
                } else {
                    self.below_before[look]
                };
                let tail = (before + same + self.lost).min(1.0);
                Some(if side == 1 { (tail, 1.0) } else { (1.0, tail) })
            }
            Decision::Pass => {
                let z = (x as f64 - at.n as f64 * self.p0)
                    / (at.n as f64 * self.p0 * (1.0 - self.p0)).sqrt();
                let total = self.passes.last().map_or(0.0, |p| p.1);
                // Cumulative pass mass with z below (strictly) and up to (inclusive) this z.
                let below_strict = self.cumulative(|pz| pz < z);
                let up_to = self.cumulative(|pz| pz <= z);
                let upper = self.size[1] + (total - below_strict) + self.lost;
                let lower = self.size[0] + up_to + self.lost;
                Some((upper.min(1.0), lower.min(1.0)))
            }
        }
    }

    /// Pass mass of the passes whose z satisfies `pred` (a prefix of the sorted passes).
    fn cumulative(&self, pred: impl Fn(f64) -> bool) -> f64 {
        let count = self.passes.partition_point(|p| pred(p.0));
        if count == 0 {
            0.0
        } else {
            self.passes[count - 1].1
        }
    }

    /// `min(1, upper / w+, lower / w−)`; 1 for a count that continues.
    fn two_sided(&self, look: usize, x: u64) -> f64 {
        let Some((upper, lower)) = self.one_sided(look, x) else {
            return 1.0;
        };
        let scaled = |tail: f64, weight: f64| {
            if weight > 0.0 {
                tail / weight
            } else {
                f64::INFINITY
            }
        };
        scaled(upper, self.weight[1])
            .min(scaled(lower, self.weight[0]))
            .min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rstest::rstest;

    fn budget(alpha: f64, beta: f64, delta: f64) -> Budget {
        Budget { alpha, beta, delta }
    }

    /// The tutorial's split stages: α = 1e-4 over 4 split tests, β = 1e-3, δ = 0.05.
    fn tutorial(p0: f64) -> SequentialPlan {
        plan_sequential(p0, &Budget::default(), 2.5e-5, DEFAULT_LOOK_EVERY).expect("plans")
    }

    fn loose() -> Budget {
        budget(0.05, 0.1, 0.1)
    }

    /// Exact figures of a plan's stopping rule under share `p`, by a walk over every count one
    /// request at a time, written apart from the planner: no kernel, no tilting, no dropped
    /// tails, the looks' rule applied through [`SequentialPlan::decide`].
    struct Naive {
        fail: f64,
        fail_low: f64,
        fail_high: f64,
        pass: f64,
        expected: f64,
        second_moment: f64,
        /// (look, count, probability) of every stopping outcome.
        stops: Vec<(usize, u64, f64)>,
    }

    fn naive(plan: &SequentialPlan, p: f64) -> Naive {
        let mut out = Naive {
            fail: 0.0,
            fail_low: 0.0,
            fail_high: 0.0,
            pass: 0.0,
            expected: 0.0,
            second_moment: 0.0,
            stops: Vec::new(),
        };
        // mass[i] = P(undecided, count = lo + i) after n requests.
        let (mut lo, mut mass, mut n) = (0u64, vec![1.0f64], 0u64);
        for (j, look) in plan.looks.iter().enumerate() {
            while n < look.n {
                let mut next = vec![0.0; mass.len() + 1];
                for (i, &m) in mass.iter().enumerate() {
                    next[i] += m * (1.0 - p);
                    next[i + 1] += m * p;
                }
                mass = next;
                n += 1;
            }
            for (i, m) in mass.iter_mut().enumerate() {
                let x = lo + i as u64;
                let decision = plan.decide(j, x);
                if *m == 0.0 || decision == Decision::Continue {
                    continue;
                }
                if decision == Decision::Fail {
                    out.fail += *m;
                    if (x as f64) < n as f64 * plan.expected_share {
                        out.fail_low += *m;
                    } else {
                        out.fail_high += *m;
                    }
                } else {
                    out.pass += *m;
                }
                out.expected += n as f64 * *m;
                out.second_moment += (n * n) as f64 * *m;
                out.stops.push((j, x, *m));
                *m = 0.0;
            }
            // Only the undecided counts go on.
            let first = mass.iter().position(|&m| m != 0.0).unwrap_or(0);
            let last = mass.iter().rposition(|&m| m != 0.0).unwrap_or(0);
            mass = mass[first..=last].to_vec();
            lo += first as u64;
        }
        out
    }

    fn close(got: f64, want: f64, relative: f64) -> bool {
        (got - want).abs() <= relative * want.abs() + 1e-15
    }

    /// The plans' exact figures agree with the independent walk, and meet the budget.
    #[rstest]
    #[case::tutorial_10(0.1, Budget::default(), 2.5e-5, 50)]
    #[case::tutorial_60(0.6, Budget::default(), 2.5e-5, 50)]
    #[case::loose_30(0.3, loose(), 0.05, 10)]
    #[case::loose_50(0.5, loose(), 0.05, 10)]
    #[case::one_alternative(0.03, loose(), 0.05, 10)]
    #[case::alternative_at_zero(0.05, budget(0.01, 0.05, 0.05), 0.01, 25)]
    fn exact_figures_match_an_independent_walk(
        #[case] p0: f64,
        #[case] budget: Budget,
        #[case] alpha_test: f64,
        #[case] look_every: u64,
    ) {
        let plan = plan_sequential(p0, &budget, alpha_test, look_every).expect("plans");
        let null = naive(&plan, p0);
        assert!(
            close(null.fail + null.pass, 1.0, 1e-12),
            "{}",
            null.fail + null.pass
        );
        // The stated size bounds the exact one and is it up to the dropped mass.
        assert!(plan.false_failure >= null.fail * (1.0 - 1e-9));
        assert!(
            close(plan.false_failure, null.fail, 1e-8),
            "{} vs {}",
            plan.false_failure,
            null.fail
        );
        assert!(close(plan.false_failure_low, null.fail_low, 1e-8));
        assert!(close(plan.false_failure_high, null.fail_high, 1e-8));
        assert!(plan.false_failure <= alpha_test);
        assert!(close(plan.expected_requests.at_p0, null.expected, 1e-9));
        let alternatives = stats::alternatives(p0, budget.delta);
        let shares = [
            (
                p0 - budget.delta,
                plan.power_low,
                plan.expected_requests.at_low,
            ),
            (
                p0 + budget.delta,
                plan.power_high,
                plan.expected_requests.at_high,
            ),
        ];
        for (p, power, expected) in shares {
            let p = p.clamp(0.0, 1.0);
            let exists = alternatives.iter().any(|&a| (a - p).abs() < 1e-12);
            assert_eq!(power.is_some(), exists, "p = {p}");
            assert_eq!(expected.is_some(), exists, "p = {p}");
            let (Some(power), Some(expected)) = (power, expected) else {
                continue;
            };
            let walk = naive(&plan, p);
            assert!(power <= walk.fail + 1e-12, "{power} vs {}", walk.fail);
            assert!(close(power, walk.fail, 1e-9), "{power} vs {}", walk.fail);
            assert!(power >= 1.0 - budget.beta, "power {power} at {p}");
            assert!(close(expected, walk.expected, 1e-9));
        }
        assert!(plan.power >= 1.0 - budget.beta);
    }

    #[rstest]
    #[case(tutorial(0.1))]
    #[case(plan_sequential(0.5, &loose(), 0.05, 10).expect("plans"))]
    #[case(plan_sequential(0.05, &budget(0.01, 0.05, 0.05), 0.01, 25).expect("plans"))]
    fn looks_are_well_formed(#[case] plan: SequentialPlan) {
        let k = plan.look_every;
        assert_eq!(plan.max_requests, plan.looks.last().expect("looks").n);
        let wanted = (plan.fixed_requests as f64 * MAX_REQUESTS_FACTOR).ceil() as u64;
        assert_eq!(plan.max_requests, wanted.div_ceil(k) * k);
        for (j, look) in plan.looks.iter().enumerate() {
            assert_eq!(look.n, (j as u64 + 1) * k);
            assert_eq!(plan.look_at(look.n), Some(j));
            let last = j + 1 == plan.looks.len();
            // Bands in order: fail below, continue, pass, continue, fail above.
            let below = look.fail_below.map_or(-1, |b| b as i64);
            let above = look.fail_above.map_or(look.n as i64 + 1, |a| a as i64);
            assert!(below < above);
            if let (Some(from), Some(to)) = (look.pass_from, look.pass_to) {
                assert!(below < from as i64 && from <= to && (to as i64) < above);
            }
            for x in 0..=look.n {
                let decision = plan.decide(j, x);
                assert!(!last || decision != Decision::Continue, "look {j}, x = {x}");
                let in_fail = (x as i64) <= below || (x as i64) >= above;
                assert_eq!(
                    decision == Decision::Fail,
                    in_fail || (last && !look.passes(x))
                );
            }
        }
        assert_eq!(plan.look_at(k / 2 + 1), None);
        assert_eq!(plan.decide(plan.looks.len(), 0), Decision::Fail);
        assert_eq!(plan.decide(0, k + 1), Decision::Fail);
    }

    /// Same budget, same exact guarantees, far fewer requests on a correct mesh.
    #[rstest]
    #[case(0.1, 2.5e-5)]
    #[case(0.6, 2.5e-5)]
    #[case(0.1, 1.25e-5)]
    #[case(0.6, 1.25e-5)]
    fn sequential_beats_the_fixed_design(#[case] p0: f64, #[case] alpha_test: f64) {
        let budget = Budget::default();
        let fixed = stats::try_plan(p0, &budget, alpha_test).expect("fixed");
        let plan = plan_sequential(p0, &budget, alpha_test, 50).expect("plans");
        assert_eq!(plan.fixed_requests, fixed.requests);
        assert!(plan.false_failure <= alpha_test && fixed.false_failure <= alpha_test);
        assert!(plan.power >= 1.0 - budget.beta && fixed.power >= 1.0 - budget.beta);
        let n = fixed.requests as f64;
        let expected = plan.expected_requests;
        assert!(
            expected.at_p0 <= 0.4 * n,
            "E[N | p0] = {} vs n = {n}",
            expected.at_p0
        );
        for at in [expected.at_low, expected.at_high] {
            assert!(at.expect("both alternatives") < n);
        }
        assert!(plan.max_requests as f64 <= MAX_REQUESTS_FACTOR * n + plan.look_every as f64);
    }

    /// Simulated requests: the canary count of each look's `k` new requests drawn with one
    /// uniform by inverting the Binomial(k, p) distribution (built here by its recurrence), so
    /// a run costs one draw per look rather than one per request.
    struct Sampler {
        cumulative: Vec<f64>,
    }

    impl Sampler {
        fn new(k: u64, p: f64) -> Sampler {
            let q = 1.0 - p;
            let mut pmf = vec![0.0; k as usize + 1];
            if p <= 0.0 {
                pmf[0] = 1.0;
            } else if p >= 1.0 {
                pmf[k as usize] = 1.0;
            } else {
                pmf[0] = q.powi(k as i32);
                for d in 0..k as usize {
                    pmf[d + 1] = pmf[d] * (k as usize - d) as f64 / (d + 1) as f64 * p / q;
                }
            }
            let cumulative = pmf
                .iter()
                .scan(0.0, |sum, m| {
                    *sum += m;
                    Some(*sum)
                })
                .collect();
            Sampler { cumulative }
        }

        fn draw(&self, rng: &mut StdRng) -> u64 {
            let total = *self.cumulative.last().expect("k + 1 entries");
            let u = rng.random::<f64>() * total;
            self.cumulative
                .partition_point(|&c| c <= u)
                .min(self.cumulative.len() - 1) as u64
        }
    }

    /// Runs the stopping rule on simulated requests: (look, canary count, decision).
    fn run(plan: &SequentialPlan, sampler: &Sampler, rng: &mut StdRng) -> (usize, u64, Decision) {
        let mut canary = 0;
        for j in 0..plan.looks.len() {
            canary += sampler.draw(rng);
            let decision = plan.decide(j, canary);
            if decision != Decision::Continue {
                return (j, canary, decision);
            }
        }
        unreachable!("the last look decides")
    }

    #[rstest]
    #[case(0.1, 21)]
    #[case(0.6, 22)]
    fn simulated_requests_per_verdict_match_the_exact_expectation(
        #[case] p0: f64,
        #[case] seed: u64,
    ) {
        let plan = tutorial(p0);
        let runs = 1_000;
        let mut rng = StdRng::seed_from_u64(seed);
        let sampler = Sampler::new(plan.look_every, p0);
        let requests: Vec<f64> = (0..runs)
            .map(|_| plan.looks[run(&plan, &sampler, &mut rng).0].n as f64)
            .collect();
        let mean = requests.iter().sum::<f64>() / runs as f64;
        assert!(mean <= 0.4 * plan.fixed_requests as f64, "mean {mean}");
        let exact = naive(&plan, p0);
        let sd = (exact.second_moment - exact.expected.powi(2)).sqrt();
        let margin = 4.0 * sd / (runs as f64).sqrt();
        let expected = plan.expected_requests.at_p0;
        assert!(
            (mean - expected).abs() <= margin,
            "{mean} vs {expected} ± {margin}"
        );
    }

    /// With a loose budget the error rates are large enough to measure.
    #[rstest]
    #[case(0.3, 31)]
    #[case(0.5, 32)]
    fn simulated_error_rates_match_the_exact_figures(#[case] p0: f64, #[case] seed: u64) {
        let budget = loose();
        let plan = plan_sequential(p0, &budget, budget.alpha, 10).expect("plans");
        let runs = 20_000;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut fail_rate = |p: f64| {
            let sampler = Sampler::new(plan.look_every, p);
            let fails = (0..runs)
                .filter(|_| run(&plan, &sampler, &mut rng).2 == Decision::Fail)
                .count();
            fails as f64 / runs as f64
        };
        let margin =
            |rate: f64| 4.0 * (rate * (1.0 - rate) / runs as f64).sqrt() + 1.0 / runs as f64;
        let false_failures = fail_rate(p0);
        assert!(
            (false_failures - plan.false_failure).abs() <= margin(plan.false_failure),
            "{false_failures} vs {}",
            plan.false_failure
        );
        assert!(false_failures <= budget.alpha + margin(budget.alpha));
        for (p, power) in [
            (p0 - budget.delta, plan.power_low),
            (p0 + budget.delta, plan.power_high),
        ] {
            let exact_miss = 1.0 - power.expect("both alternatives");
            let misses = 1.0 - fail_rate(p);
            assert!(
                (misses - exact_miss).abs() <= margin(exact_miss),
                "{misses} vs {exact_miss}"
            );
            assert!(misses <= budget.beta + margin(budget.beta));
        }
    }

    /// The hardest budgets the brief names plan, and within the work bound (a deterministic
    /// count, not a time).
    #[rstest]
    #[case(0.01)]
    #[case(0.5)]
    #[case(0.99)]
    fn extreme_budgets_plan_within_the_work_bound(#[case] p0: f64) {
        let budget = budget(1e-4, 1e-3, 0.01);
        let plan = plan_sequential(p0, &budget, 1.25e-5, DEFAULT_LOOK_EVERY).expect("plans");
        assert!(plan.planning_work <= MAX_WORK, "{}", plan.planning_work);
        assert!(plan.looks.len() as u64 <= MAX_LOOKS);
        assert_eq!(plan.look_every % DEFAULT_LOOK_EVERY, 0);
        assert!(plan.max_requests <= stats::MAX_REQUESTS_PER_TEST);
        assert!(plan.false_failure <= 1.25e-5 && plan.power >= 1.0 - budget.beta);
        assert!(plan.expected_requests.at_p0 < 0.5 * plan.fixed_requests as f64);
    }

    #[test]
    fn refuses_beyond_the_caps_with_the_figures() {
        let tiny = budget(1e-4, 1e-3, 1e-4);
        let err = plan_sequential(0.5, &tiny, 1.25e-5, 50).unwrap_err();
        assert!(
            matches!(err, PlanError::TooManyRequests { cap, .. } if cap == stats::MAX_REQUESTS_PER_TEST),
            "{err:?}"
        );

        let limits = Limits {
            work: 1_000_000,
            ..Limits::default()
        };
        let err = plan_with_limits(0.6, &Budget::default(), 2.5e-5, 50, &limits).unwrap_err();
        let PlanError::TooMuchWork {
            work_needed,
            work_bound,
            max_requests,
            looks,
            ref fix,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(work_bound, 1_000_000);
        assert!(work_needed > work_bound);
        assert_eq!(max_requests, looks * 50);
        assert!(fix.contains("larger delta"), "{fix}");
        assert!(err.to_string().contains("bound of 1000000"), "{err}");

        // Looking at every request would mean thousands of looks: it looks less often.
        let few = Limits {
            looks: 20,
            ..Limits::default()
        };
        let plan = plan_with_limits(0.1, &Budget::default(), 2.5e-5, 1, &few).expect("plans");
        assert!(plan.looks.len() <= 20 && plan.look_every > 1);

        for (p0, alpha_test, look_every) in [
            (0.0, 2.5e-5, 50),
            (1.0, 2.5e-5, 50),
            (0.3, 0.0, 50),
            (0.3, 2.5e-5, 0),
        ] {
            let result = plan_sequential(p0, &Budget::default(), alpha_test, look_every);
            assert!(
                matches!(result, Err(PlanError::InvalidBudget { .. })),
                "{result:?}"
            );
        }
    }

    /// At every stopping outcome of a few looks: a fail is exactly p <= the design's size, and
    /// the interval holds the observed share; judge agrees with the ordering.
    #[rstest]
    #[case(tutorial(0.1))]
    #[case(plan_sequential(0.3, &loose(), 0.05, 10).expect("plans"))]
    #[case(plan_sequential(0.03, &loose(), 0.05, 10).expect("plans"))]
    fn fails_are_exactly_the_outcomes_with_p_at_most_the_size(#[case] plan: SequentialPlan) {
        let order = StagewiseOrder::new(&plan);
        let last = plan.looks.len() - 1;
        for j in [0, 1, last / 3, last / 2, last] {
            let n = plan.looks[j].n;
            for x in 0..=n {
                let decision = plan.decide(j, x);
                let p = order.two_sided(j, x);
                assert!((0.0..=1.0).contains(&p));
                match decision {
                    Decision::Continue => assert_eq!(p, 1.0),
                    Decision::Fail => {
                        assert!(
                            p <= plan.false_failure * (1.0 + 1e-9),
                            "look {j}, x = {x}: p = {p}"
                        );
                        assert!(p <= plan.alpha_test);
                    }
                    Decision::Pass => assert!(p > plan.false_failure, "look {j}, x = {x}: p = {p}"),
                }
            }
            for x in [0, n / 7, n / 3, n / 2, n] {
                let judgement = judge(&plan, j, x);
                assert_eq!(judgement.p_value, order.two_sided(j, x));
                assert_eq!(judgement.decision, plan.decide(j, x));
                let (lower, upper) = judgement.interval;
                assert!(lower <= judgement.observed_share && judgement.observed_share <= upper);
            }
        }
    }

    #[rstest]
    #[case(tutorial(0.1))]
    #[case(tutorial(0.6))]
    fn final_look_p_value_is_small_exactly_far_from_the_expectation(#[case] plan: SequentialPlan) {
        let order = StagewiseOrder::new(&plan);
        let j = plan.looks.len() - 1;
        let look = plan.looks[j];
        let (from, to) = (
            look.pass_from.expect("region"),
            look.pass_to.expect("region"),
        );
        let ps: Vec<f64> = (0..=look.n).map(|x| order.two_sided(j, x)).collect();
        let centre = (look.n as f64 * plan.expected_share).round() as usize;
        assert!(ps[centre] > 0.5, "p = {} at the expected count", ps[centre]);
        // Falls on both sides of the centre, and is small exactly outside the region.
        // Rises to one peak and falls after it; the peak is where the weighted tails meet, near
        // but not exactly at the expected count.
        let peak = (0..ps.len())
            .max_by(|&a, &b| ps[a].total_cmp(&ps[b]))
            .expect("counts");
        assert!(ps[..=peak].windows(2).all(|w| w[0] <= w[1]));
        assert!(ps[peak..].windows(2).all(|w| w[0] >= w[1]));
        assert!((from..=to).contains(&(peak as u64)));
        for (x, &p) in ps.iter().enumerate() {
            let inside = (from..=to).contains(&(x as u64));
            assert_eq!(
                p <= plan.false_failure * (1.0 + 1e-9),
                !inside,
                "x = {x}, p = {p}"
            );
        }
        // Stagewise: a fail at an earlier look is more extreme than any count at the last one.
        let first_low = plan
            .looks
            .iter()
            .position(|l| l.fail_below.is_some())
            .expect("low");
        let low = plan.looks[first_low].fail_below.expect("boundary");
        assert!(order.two_sided(first_low, low) < ps[0]);
        let first_high = plan
            .looks
            .iter()
            .position(|l| l.fail_above.is_some())
            .expect("high");
        let high = plan.looks[first_high].fail_above.expect("boundary");
        assert!(order.two_sided(first_high, high) < ps[look.n as usize]);
    }

    /// The p-value is valid: under p0, P(p <= u) <= u, computed exactly from the independent
    /// walk's stopping distribution.
    #[rstest]
    #[case(plan_sequential(0.3, &loose(), 0.05, 10).expect("plans"))]
    #[case(plan_sequential(0.5, &budget(0.2, 0.2, 0.15), 0.2, 5).expect("plans"))]
    #[case(plan_sequential(0.03, &loose(), 0.05, 10).expect("plans"))]
    fn p_value_is_valid_exactly(#[case] plan: SequentialPlan) {
        let order = StagewiseOrder::new(&plan);
        let stops = naive(&plan, plan.expected_share).stops;
        for u in [1e-3, 0.01, 0.05, 0.1, 0.3, 0.6, 0.99] {
            let reached: f64 = stops
                .iter()
                .filter(|&&(j, x, _)| order.two_sided(j, x) <= u)
                .map(|s| s.2)
                .sum();
            assert!(reached <= u + 1e-12, "P(p <= {u}) = {reached}");
        }
    }

    /// The repeated interval covers the true share at the stopping look, whatever the share.
    #[rstest]
    #[case(0.3, 41)]
    #[case(0.5, 42)]
    fn repeated_interval_covers_at_the_stopping_look(#[case] p0: f64, #[case] seed: u64) {
        let budget = loose();
        let plan = plan_sequential(p0, &budget, budget.alpha, 10).expect("plans");
        let confidence = plan.interval_confidence();
        let mut rng = StdRng::seed_from_u64(seed);
        let runs = 4_000;
        for p in [
            p0 - budget.delta,
            p0 - budget.delta / 2.0,
            p0,
            p0 + budget.delta / 3.0,
            p0 + budget.delta,
        ] {
            let sampler = Sampler::new(plan.look_every, p);
            let misses = (0..runs)
                .filter(|_| {
                    let (j, canary, _) = run(&plan, &sampler, &mut rng);
                    let (lower, upper) =
                        stats::clopper_pearson(canary, plan.looks[j].n, confidence);
                    !(lower <= p && p <= upper)
                })
                .count() as f64
                / runs as f64;
            let alpha = plan.alpha_test;
            let margin = 4.0 * (alpha * (1.0 - alpha) / runs as f64).sqrt();
            assert!(misses <= alpha + margin, "non-coverage {misses} at p = {p}");
        }
    }

    #[test]
    fn judge_reasons_carry_the_figures() {
        let plan = tutorial(0.1);
        let looks = plan.looks.len();
        let (j, look) = plan
            .looks
            .iter()
            .enumerate()
            .find(|(_, l)| l.pass_from.is_some())
            .expect("a pass band");
        let x = look.pass_from.expect("a pass band");
        let pass = judge(&plan, j, x);
        assert!(pass.passed, "{}", pass.reason);
        for part in [
            "consistent with the expected 10 %",
            &format!(
                "passed at look {} of {looks} after {} requests",
                j + 1,
                look.n
            ),
            "repeated CI",
            "within the pass band",
        ] {
            assert!(pass.reason.contains(part), "{part}: {}", pass.reason);
        }

        let high = plan.looks[3].fail_above.expect("an upper boundary");
        let fail = judge(&plan, 3, high);
        assert!(!fail.passed && fail.decision == Decision::Fail);
        assert!(
            fail.reason
                .contains(&format!("at or above the fail boundary {high}")),
            "{}",
            fail.reason
        );
        assert!(
            fail.reason.contains("differs from the expected 10 %"),
            "{}",
            fail.reason
        );

        let last = plan.looks[looks - 1];
        let outside = last.pass_to.expect("region") + 1;
        let late = judge(&plan, looks - 1, outside);
        assert!(!late.passed);
        assert!(
            late.reason.contains("outside the final acceptance region"),
            "{}",
            late.reason
        );

        let early = plan.looks[0];
        let undecided = (early.n as f64 * 0.1) as u64;
        let none = judge(&plan, 0, undecided);
        assert!(!none.passed && none.decision == Decision::Continue && none.p_value == 1.0);
        assert!(
            none.reason.starts_with("no verdict yet at look 1"),
            "{}",
            none.reason
        );

        assert!(judge(&plan, looks, 0).reason.starts_with("invalid look"));
        assert!(
            judge(&plan, 0, early.n + 1)
                .reason
                .starts_with("invalid tally")
        );
    }

    #[test]
    fn plan_and_judgement_round_trip_through_json() {
        let plan = plan_sequential(0.3, &loose(), 0.05, 10).expect("plans");
        let json = serde_json::to_string(&plan).expect("serializes");
        let back: SequentialPlan = serde_json::from_str(&json).expect("parses");
        // Floats may come back an ulp apart; counts and boundaries exactly.
        assert_eq!(back.looks, plan.looks);
        assert_eq!(back.fixed_requests, plan.fixed_requests);
        assert!(close(back.false_failure, plan.false_failure, 1e-15));
        assert!(close(back.power, plan.power, 1e-15));
        assert!(json.contains("\"fail_above\"") && json.contains("\"expected_requests\""));
        let judgement = judge(&plan, 2, 9);
        let json = serde_json::to_string(&judgement).expect("serializes");
        let back: SequentialJudgement = serde_json::from_str(&json).expect("parses");
        assert_eq!(
            (back.decision, back.look, back.canary),
            (judgement.decision, 2, 9)
        );
        assert!(close(back.p_value, judgement.p_value, 1e-15));
        assert_eq!(back.reason, judgement.reason);
        assert_eq!(
            serde_json::to_string(&Decision::Pass).expect("serializes"),
            "\"pass\""
        );
    }
}
