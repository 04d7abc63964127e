//! Turns the samples of one stage on one entry point into counts, latencies and a verdict.

use std::collections::BTreeMap;

use crate::prober::Sample;
use crate::report::{EntryReport, Latency, TimeBucket};
use crate::routing::{EntryPoint, Routing};
use crate::scenario::Stage;
use crate::stats::{self, Plan};

/// What one stage on one entry point measured, before it is judged.
pub struct Measurement<'a> {
    pub routing: &'a Routing,
    pub stage: &'a Stage,
    pub entry: EntryPoint,
    pub target: String,
    pub plan: Plan,
    pub samples: &'a [Sample],
    /// Seconds since the start of the run when sampling began.
    pub started_s: f64,
    pub wall_time_s: f64,
    pub max_error_rate: f64,
}

/// Counts the answers per subset and judges the split.
pub fn judge(m: Measurement<'_>) -> EntryReport {
    let mut counts: BTreeMap<String, u64> = m
        .routing
        .subsets
        .iter()
        .map(|s| (s.name.clone(), 0))
        .collect();
    let mut unexpected = BTreeMap::new();
    let mut error_kinds = BTreeMap::new();
    let mut errors_by_subset = BTreeMap::new();
    let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut errors = 0u64;
    for s in m.samples {
        if let Some(error) = &s.error {
            errors += 1;
            *error_kinds.entry(error.clone()).or_insert(0) += 1;
            if let Some(subset) = s
                .version
                .as_deref()
                .and_then(|v| m.routing.subset_of_version(v))
            {
                *errors_by_subset.entry(subset.name.clone()).or_insert(0) += 1;
            }
            continue;
        }
        let version = s.version.as_deref().unwrap_or_default();
        match m.routing.subset_of_version(version) {
            Some(subset) => {
                *counts.entry(subset.name.clone()).or_insert(0) += 1;
                latencies
                    .entry(subset.name.clone())
                    .or_default()
                    .push(s.latency_ms);
            }
            None => *unexpected.entry(version.to_string()).or_insert(0) += 1,
        }
    }
    let canary_name = &m.routing.subsets[1].name;
    let canary = counts.get(canary_name).copied().unwrap_or(0);
    let total: u64 = counts.values().sum();
    let requests = m.samples.len() as u64;
    let error_rate = if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    };
    let judgement = stats::judge(&m.plan, canary, total);
    let unexpected_total: u64 = unexpected.values().sum();
    let (passed, reason) = if unexpected_total > 0 {
        let list: Vec<String> = unexpected
            .iter()
            .map(|(v, n)| format!("{n} from `{v}`"))
            .collect();
        (
            false,
            format!(
                "{unexpected_total} answers came from versions that are neither subset ({}); {}",
                list.join(", "),
                judgement.reason
            ),
        )
    } else if error_rate > m.max_error_rate {
        (
            false,
            format!(
                "{errors} of {requests} requests failed ({:.2} % > the allowed {:.2} %: {}); {}",
                error_rate * 100.0,
                m.max_error_rate * 100.0,
                kinds(&error_kinds),
                judgement.reason
            ),
        )
    } else if total < m.plan.requests {
        (
            false,
            format!(
                "only {total} of the {} planned answers arrived in {requests} requests; {}",
                m.plan.requests, judgement.reason
            ),
        )
    } else {
        (judgement.passed, judgement.reason.clone())
    };
    EntryReport {
        stage: m.stage.index,
        stage_name: m.stage.name.clone(),
        entry: m.entry,
        target: m.target,
        weights: m.stage.weights.clone(),
        expected_share: m.plan.expected_share,
        plan: m.plan.clone(),
        requests,
        counts,
        unexpected,
        errors,
        error_kinds,
        errors_by_subset,
        error_rate,
        observed_share: judgement.observed_share,
        interval: judgement.interval,
        p_value: judgement.p_value,
        leak_bound: judgement.leak_bound,
        passed,
        reason,
        latency: latencies
            .into_iter()
            .map(|(k, v)| (k, latency(v)))
            .collect(),
        started_s: m.started_s,
        wall_time_s: m.wall_time_s,
        timeline: timeline(m.routing, m.samples, m.started_s),
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

/// Buckets answers per subset over time; about 20 buckets per stage.
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
        } else if let Some(subset) = s
            .version
            .as_deref()
            .and_then(|v| routing.subset_of_version(v))
        {
            *b.counts.entry(subset.name.clone()).or_insert(0) += 1;
        }
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::Manifests;
    use crate::scenario::Scenario;
    use crate::stats::{Budget, plan};
    use rstest::rstest;
    use std::path::Path;

    fn routing() -> (Scenario, Routing) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
        let scenario = Scenario::load(&path).unwrap();
        let manifests = Manifests::load(&scenario.manifests).unwrap();
        let routing = Routing::resolve(&scenario, manifests).unwrap();
        (scenario, routing)
    }

    fn sample(version: &str, error: Option<&str>, at_ms: f64) -> Sample {
        Sample {
            at_ms,
            latency_ms: at_ms / 10.0,
            version: Some(version.to_string()),
            status: Some(if error.is_some() { 500 } else { 200 }),
            error: error.map(str::to_string),
        }
    }

    /// `ga` good answers, `canary` good answers, then `errors` failures.
    fn samples(r: &Routing, ga: usize, canary: usize, errors: usize, other: usize) -> Vec<Sample> {
        let mut out = Vec::new();
        for i in 0..ga {
            out.push(sample(&r.subsets[0].version, None, i as f64));
        }
        for i in 0..canary {
            out.push(sample(&r.subsets[1].version, None, i as f64));
        }
        for i in 0..errors {
            out.push(sample(&r.subsets[1].version, Some("HTTP 500"), i as f64));
        }
        for i in 0..other {
            out.push(sample("0.0.1", None, i as f64));
        }
        out
    }

    fn measure(stage: usize, ga: usize, canary: usize, errors: usize, other: usize) -> EntryReport {
        let (scenario, r) = routing();
        let st = &scenario.stages[stage];
        let p = plan(st.expected_share("canary"), &Budget::default(), 8);
        let s = samples(&r, ga, canary, errors, other);
        judge(Measurement {
            routing: &r,
            stage: st,
            entry: EntryPoint::Ingress,
            target: "t".into(),
            plan: p,
            samples: &s,
            started_s: 1.0,
            wall_time_s: 0.5,
            max_error_rate: 0.01,
        })
    }

    #[test]
    fn a_clean_zero_stage_passes_and_states_the_leak_bound() {
        let (scenario, _) = routing();
        let n = plan(0.0, &scenario.budget, 8).requests as usize;
        let e = measure(0, n, 0, 0, 0);
        assert!(e.passed, "{}", e.reason);
        assert!(e.leak_bound.is_some());
        assert_eq!(e.counts["ga"], n as u64);
        assert_eq!(e.requests, n as u64);
    }

    #[rstest]
    #[case::leak(0, 1, 0, 0, "")]
    #[case::unexpected(0, 0, 0, 1, "neither subset")]
    #[case::errors(0, 0, 50, 0, "failed")]
    fn zero_stage_failures(
        #[case] stage: usize,
        #[case] canary: usize,
        #[case] errors: usize,
        #[case] other: usize,
        #[case] says: &str,
    ) {
        let (scenario, _) = routing();
        let n = plan(0.0, &scenario.budget, 8).requests as usize;
        let e = measure(stage, n - canary, canary, errors, other);
        assert!(!e.passed);
        assert!(e.reason.contains(says), "{}", e.reason);
    }

    #[test]
    fn errors_never_count_for_a_version() {
        let e = measure(1, 900, 100, 5, 0);
        assert_eq!(e.counts["ga"], 900);
        assert_eq!(e.counts["canary"], 100);
        assert_eq!(e.errors, 5);
        assert_eq!(e.error_kinds["HTTP 500"], 5);
        // The failed answers named the canary's version: attributed, but not counted as answers.
        assert_eq!(e.errors_by_subset["canary"], 5);
        assert!((e.observed_share - 0.1).abs() < 1e-12);
    }

    #[test]
    fn too_few_answers_fail() {
        let e = measure(1, 90, 10, 0, 0);
        assert!(!e.passed);
        assert!(e.reason.contains("planned answers"), "{}", e.reason);
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

    #[test]
    fn the_timeline_holds_every_good_answer() {
        let e = measure(2, 400, 600, 3, 0);
        let total: u64 = e.timeline.iter().flat_map(|b| b.counts.values()).sum();
        let errors: u64 = e.timeline.iter().map(|b| b.errors).sum();
        assert_eq!((total, errors), (1000, 3));
        assert!(e.timeline[0].t_s >= 1.0);
    }
}
