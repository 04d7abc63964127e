//! SLO gates of a stage: what a scenario asks of the canary besides its share of the traffic,
//! judged on the per-version answers the stage's sampling already has.
//!
//! Absolute gates (Flagger style) bound the canary alone: its error rate, a latency quantile.
//! Relative gates compare it with the baseline (Kayenta style): error rate not worse by more
//! than a margin, latency not slower by more than a factor (Mann–Whitney / Hodges–Lehmann on the
//! whole distribution, or order statistics at a quantile). Each gate is a one-sided test of
//! [`crate::gate_stats`] that fails only on evidence, at the run's per-test α: every judged gate
//! is one more test in the run's false-failure budget.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gate_stats::{self, ErrorCount, GateJudgement, quantile_name};
use crate::input_error::InputError;
use crate::tally::PerSubset;

/// One gate as a scenario writes it: a name and exactly one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GateFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    error_rate: Option<MaxRate>,
    #[serde(default)]
    latency: Option<LatencyBound>,
    #[serde(default)]
    error_rate_vs_baseline: Option<MaxIncrease>,
    #[serde(default)]
    latency_vs_baseline: Option<RelativeLatency>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxRate {
    max: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyBound {
    #[serde(default = "p99")]
    quantile: f64,
    max_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxIncrease {
    max_increase: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelativeLatency {
    max_increase: f64,
    #[serde(default)]
    quantile: Option<f64>,
}

fn p99() -> f64 {
    0.99
}

/// A checked gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// Unique in the scenario; `expect_rollback` and reports name it.
    pub name: String,
    pub kind: GateKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "test", rename_all = "snake_case")]
pub enum GateKind {
    /// The canary's error rate is at most `max`.
    ErrorRate { max: f64 },
    /// The canary's `quantile` latency is at most `max_ms`.
    Latency { quantile: f64, max_ms: f64 },
    /// The canary's error rate exceeds the baseline's by at most `max_increase` (a share).
    ErrorRateVsBaseline { max_increase: f64 },
    /// The canary is slower than the baseline by at most the factor `1 + max_increase`: over
    /// the whole distribution (Mann–Whitney), or at `quantile`.
    LatencyVsBaseline {
        max_increase: f64,
        quantile: Option<f64>,
    },
}

impl Gate {
    /// Whether the gate compares the canary with the baseline (both need answers).
    pub fn relative(&self) -> bool {
        matches!(
            self.kind,
            GateKind::ErrorRateVsBaseline { .. } | GateKind::LatencyVsBaseline { .. }
        )
    }

    /// Whether a stage whose canary expects `share` of the answers judges this gate.
    pub fn applies(&self, share: f64) -> bool {
        if self.relative() {
            share > 0.0 && share < 1.0
        } else {
            share > 0.0
        }
    }

    /// What the gate asks, in a few words: `p99 ≤ 250 ms`, `latency ≤ 1.20 × ga`.
    pub fn describe(&self, baseline: &str) -> String {
        match &self.kind {
            GateKind::ErrorRate { max } => format!("error rate ≤ {:.2} %", max * 100.0),
            GateKind::Latency { quantile, max_ms } => {
                format!("{} ≤ {max_ms} ms", quantile_name(*quantile))
            }
            GateKind::ErrorRateVsBaseline { max_increase } => format!(
                "error rate ≤ {baseline}'s + {:.2} points",
                max_increase * 100.0
            ),
            GateKind::LatencyVsBaseline {
                max_increase,
                quantile: None,
            } => format!("latency ≤ {:.2} × {baseline}'s", 1.0 + max_increase),
            GateKind::LatencyVsBaseline {
                max_increase,
                quantile: Some(q),
            } => format!(
                "{} ≤ {:.2} × {baseline}'s",
                quantile_name(*q),
                1.0 + max_increase
            ),
        }
    }

    /// Judges the gate on a stage's answers per subset, at `alpha`.
    pub fn judge(&self, canary: &PerSubset, baseline: &PerSubset, alpha: f64) -> GateJudgement {
        let count = |p: &PerSubset| ErrorCount {
            errors: p.failed,
            requests: p.trials,
        };
        match &self.kind {
            GateKind::ErrorRate { max } => gate_stats::error_rate_gate(count(canary), *max, alpha),
            GateKind::Latency { quantile, max_ms } => {
                gate_stats::latency_quantile_gate(&canary.latency_ms, *quantile, *max_ms, alpha)
            }
            GateKind::ErrorRateVsBaseline { max_increase } => gate_stats::relative_error_rate_gate(
                count(canary),
                count(baseline),
                *max_increase,
                alpha,
            ),
            GateKind::LatencyVsBaseline {
                max_increase,
                quantile: None,
            } => gate_stats::latency_shift_gate(
                &canary.latency_ms,
                &baseline.latency_ms,
                *max_increase,
                alpha,
            ),
            GateKind::LatencyVsBaseline {
                max_increase,
                quantile: Some(q),
            } => gate_stats::relative_latency_quantile_gate(
                &canary.latency_ms,
                &baseline.latency_ms,
                *q,
                *max_increase,
                alpha,
            ),
        }
    }
}

/// The verdict of one gate at one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub gate: String,
    /// What it asks (`p99 ≤ 250 ms`).
    pub asks: String,
    pub passed: bool,
    pub judgement: GateJudgement,
}

/// Judges every gate that applies at a stage whose canary expects `share`, on the answers of
/// all its tests pooled per subset.
pub fn judge_stage(
    gates: &[Gate],
    share: f64,
    per_subset: &BTreeMap<String, PerSubset>,
    subsets: [&str; 2],
    alpha: f64,
) -> Vec<GateReport> {
    let empty = PerSubset::default();
    let baseline = per_subset.get(subsets[0]).unwrap_or(&empty);
    let canary = per_subset.get(subsets[1]).unwrap_or(&empty);
    gates
        .iter()
        .filter(|g| g.applies(share))
        .map(|g| {
            let judgement = g.judge(canary, baseline, alpha);
            GateReport {
                gate: g.name.clone(),
                asks: g.describe(subsets[0]),
                passed: judgement.passed,
                judgement,
            }
        })
        .collect()
}

/// Checks the scenario's `gates`; problems go to `err(field, problem, fix)`.
pub(crate) fn check(
    file: &std::path::Path,
    list: &[GateFile],
    errors: &mut Vec<InputError>,
) -> Vec<Gate> {
    let mut err = |field: String, problem: String, fix: &str| {
        errors.push(InputError::new(file, field, problem, fix));
    };
    let mut gates: Vec<Gate> = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let at = format!("gates[{i}]");
        let mut kinds = Vec::new();
        if let Some(m) = &g.error_rate {
            kinds.push(("error_rate", GateKind::ErrorRate { max: m.max }));
        }
        if let Some(l) = &g.latency {
            kinds.push((
                "latency",
                GateKind::Latency {
                    quantile: l.quantile,
                    max_ms: l.max_ms,
                },
            ));
        }
        if let Some(m) = &g.error_rate_vs_baseline {
            kinds.push((
                "error_rate_vs_baseline",
                GateKind::ErrorRateVsBaseline {
                    max_increase: m.max_increase,
                },
            ));
        }
        if let Some(l) = &g.latency_vs_baseline {
            kinds.push((
                "latency_vs_baseline",
                GateKind::LatencyVsBaseline {
                    max_increase: l.max_increase,
                    quantile: l.quantile,
                },
            ));
        }
        if kinds.len() != 1 {
            err(
                at,
                format!(
                    "a gate needs exactly one kind, this one has {}",
                    kinds.len()
                ),
                "write one of `error_rate: {max}`, `latency: {quantile, max_ms}`, \
                 `error_rate_vs_baseline: {max_increase}`, `latency_vs_baseline: {max_increase}` per gate",
            );
            continue;
        }
        let (key, kind) = kinds.pop().expect("one kind");
        let share_ok = |x: f64| (0.0..1.0).contains(&x);
        match &kind {
            GateKind::ErrorRate { max } if !share_ok(*max) => err(
                format!("{at}.error_rate.max"),
                format!("{max} is not an error rate below 1"),
                "write it as a fraction, e.g. 0.01 for 1 %",
            ),
            GateKind::Latency { quantile, max_ms } => {
                if !(*quantile > 0.0 && *quantile < 1.0) {
                    err(
                        format!("{at}.latency.quantile"),
                        format!("{quantile} is not a quantile strictly between 0 and 1"),
                        "e.g. 0.99 for p99",
                    );
                }
                if !(max_ms.is_finite() && *max_ms > 0.0) {
                    err(
                        format!("{at}.latency.max_ms"),
                        format!("{max_ms} ms is not a positive latency"),
                        "e.g. `max_ms: 250`",
                    );
                }
            }
            GateKind::ErrorRateVsBaseline { max_increase } if !share_ok(*max_increase) => err(
                format!("{at}.error_rate_vs_baseline.max_increase"),
                format!("{max_increase} is not a share from 0 to 1"),
                "write the margin as a fraction, e.g. 0.01 for 1 point",
            ),
            GateKind::LatencyVsBaseline {
                max_increase,
                quantile,
            } => {
                if !(max_increase.is_finite() && *max_increase >= 0.0) {
                    err(
                        format!("{at}.latency_vs_baseline.max_increase"),
                        format!("{max_increase} is not a relative increase of 0 or more"),
                        "e.g. 0.2 for at most 20 % slower",
                    );
                }
                if let Some(q) = quantile
                    && !(*q > 0.0 && *q < 1.0)
                {
                    err(
                        format!("{at}.latency_vs_baseline.quantile"),
                        format!("{q} is not a quantile strictly between 0 and 1"),
                        "e.g. 0.99 for p99, or leave it out to compare whole distributions",
                    );
                }
            }
            _ => {}
        }
        let name = g.name.clone().unwrap_or_else(|| key.to_string());
        if gates.iter().any(|o| o.name == name) {
            err(
                format!("{at}.name"),
                format!("two gates are named `{name}`"),
                "give each gate its own `name`: reports and `expect_rollback` use it",
            );
        }
        gates.push(Gate { name, kind });
    }
    gates
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rstest::rstest;

    fn gate(kind: GateKind) -> Gate {
        Gate {
            name: "g".into(),
            kind,
        }
    }

    /// Log-normal latencies around `median_ms`, `n` of them, and `errors` failed requests.
    fn answers(rng: &mut StdRng, n: u64, median_ms: f64, error_rate: f64) -> PerSubset {
        let mut p = PerSubset::default();
        for _ in 0..n {
            p.trials += 1;
            if rng.random::<f64>() < error_rate {
                p.failed += 1;
            } else {
                // Box–Muller: a standard normal from two uniforms.
                let (u, v) = (rng.random::<f64>().max(1e-12), rng.random::<f64>());
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                p.latency_ms.push(median_ms * (0.3 * z).exp());
            }
        }
        p
    }

    #[rstest]
    #[case::relative_only_where_both_answer(GateKind::LatencyVsBaseline { max_increase: 0.2, quantile: None }, &[(0.0, false), (0.1, true), (1.0, false)])]
    #[case::absolute_wherever_the_canary_answers(GateKind::ErrorRate { max: 0.01 }, &[(0.0, false), (0.1, true), (1.0, true)])]
    fn gates_apply_where_they_can_be_judged(#[case] kind: GateKind, #[case] at: &[(f64, bool)]) {
        let g = gate(kind);
        for (share, applies) in at {
            assert_eq!(g.applies(*share), *applies, "share {share}");
        }
    }

    /// A canary 3× slower than the GA (the tutorial's slow canary) fails a 20 % latency gate,
    /// and one equal to the GA passes it: each 200 times with seeded samples, at α = 1e-3
    /// (the false failures expected: 0.2; more than 3 would be a 1e-4-probability event).
    #[test]
    fn a_slow_canary_fails_the_latency_gate_and_an_equal_one_passes() {
        let g = gate(GateKind::LatencyVsBaseline {
            max_increase: 0.2,
            quantile: None,
        });
        let mut rng = StdRng::seed_from_u64(9);
        let mut caught = 0;
        let mut false_failures = 0;
        for _ in 0..200 {
            let ga = answers(&mut rng, 900, 5.0, 0.0);
            let slow = answers(&mut rng, 100, 15.0, 0.0);
            let same = answers(&mut rng, 100, 5.0, 0.0);
            let subsets = |c: &PerSubset| -> BTreeMap<String, PerSubset> {
                [
                    ("ga".to_string(), ga.clone()),
                    ("canary".to_string(), c.clone()),
                ]
                .into()
            };
            let slow_report = judge_stage(
                std::slice::from_ref(&g),
                0.1,
                &subsets(&slow),
                ["ga", "canary"],
                1e-3,
            );
            if !slow_report[0].passed {
                caught += 1;
            }
            let same_report = judge_stage(
                std::slice::from_ref(&g),
                0.1,
                &subsets(&same),
                ["ga", "canary"],
                1e-3,
            );
            if !same_report[0].passed {
                false_failures += 1;
            }
        }
        assert_eq!(caught, 200);
        assert!(false_failures <= 3, "{false_failures} false failures");
    }

    #[test]
    fn a_report_says_what_was_asked_measured_and_how_sure() {
        let mut rng = StdRng::seed_from_u64(3);
        let per: BTreeMap<String, PerSubset> = [
            ("ga".to_string(), answers(&mut rng, 500, 5.0, 0.0)),
            ("canary".to_string(), answers(&mut rng, 500, 5.0, 0.2)),
        ]
        .into();
        let reports = judge_stage(
            &[gate(GateKind::ErrorRate { max: 0.01 })],
            0.5,
            &per,
            ["ga", "canary"],
            1e-4,
        );
        let r = &reports[0];
        assert!(!r.passed);
        assert_eq!(r.asks, "error rate ≤ 1.00 %");
        assert!(r.judgement.p_value <= 1e-4);
        assert!(r.judgement.interval.0 > 0.01);
    }

    #[rstest]
    #[case::two_kinds(
        "- error_rate: {max: 0.01}\n  latency: {max_ms: 5}\n",
        "gates[0]",
        "exactly one kind"
    )]
    #[case::no_kind("- name: x\n", "gates[0]", "exactly one kind")]
    #[case::bad_rate(
        "- error_rate: {max: 2}\n",
        "gates[0].error_rate.max",
        "not an error rate"
    )]
    #[case::bad_quantile(
        "- latency: {quantile: 99, max_ms: 5}\n",
        "gates[0].latency.quantile",
        "strictly between"
    )]
    #[case::same_name(
        "- error_rate: {max: 0.01}\n- error_rate: {max: 0.02}\n",
        "gates[1].name",
        "two gates"
    )]
    fn bad_gates_are_refused_with_their_field(
        #[case] yaml: &str,
        #[case] field: &str,
        #[case] says: &str,
    ) {
        let list: Vec<GateFile> = serde_saphyr::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        check(std::path::Path::new("s.yaml"), &list, &mut errors);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            errors
                .iter()
                .any(|e| e.field == field && e.to_string().contains(says)),
            "{text:?}"
        );
    }

    #[test]
    fn gates_default_their_name_to_their_kind() {
        let list: Vec<GateFile> = serde_saphyr::from_str(
            "- latency_vs_baseline: {max_increase: 0.2}\n- name: tail\n  latency: {max_ms: 250}\n",
        )
        .unwrap();
        let mut errors = Vec::new();
        let gates = check(std::path::Path::new("s.yaml"), &list, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(gates[0].name, "latency_vs_baseline");
        assert_eq!(gates[1].name, "tail");
        assert_eq!(gates[1].describe("ga"), "p99 ≤ 250 ms");
        assert_eq!(gates[0].describe("ga"), "latency ≤ 1.20 × ga's");
    }
}
