//! Seeded simulations of whole walks: the tutorial's stages on a fake mesh that routes every
//! request on its own and fails some, through the same prober interface, tally and verdicts
//! as a real run, with the production budget. They check the figures the plans state: the
//! false-failure rate of a correct mesh, the requests a verdict takes, and the power against a
//! share off by δ in either direction.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::fake_mesh::{self, Faults};
use crate::manifests::Manifests;
use crate::report::{EntryReport, ResultsLog};
use crate::routing::Routing;
use crate::run::{Observer, RunOptions, TestPlans, Walk};
use crate::scenario::Scenario;
use crate::verdict::TestPlan;

struct Quiet;
impl Observer for Quiet {}

const RUNS: u64 = 200;

/// The tutorial with a looser error allowance: these tests are about the split, and a 1 %
/// allowance is crossed by chance at a zero-leak stage's 135 requests when 0.5 % fail.
fn scenario() -> (Scenario, Routing, TestPlans) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let text = std::fs::read_to_string(dir.join("tutorial.yaml")).unwrap();
    let scenario = Scenario::parse(
        &dir.join("tutorial.yaml"),
        // No background load: these walks are about the verdicts, each answer drawn from the
        // seeded fake mesh.
        &format!("{text}\nmax_error_rate: 0.05\nload: {{ rate: 0 }}\n"),
    )
    .unwrap();
    let routing =
        Routing::resolve(&scenario, Manifests::load_all(&scenario.manifests).unwrap()).unwrap();
    let plans = crate::run::plan_tests(&scenario, routing.entry_points().len()).unwrap();
    (scenario, routing, plans)
}

/// Walks the whole scenario once on a fake mesh with `faults`; every test's report.
fn walk(
    scenario: &Scenario,
    routing: &Routing,
    plans: &TestPlans,
    dir: &Path,
    seed: u64,
    faults: &Faults,
) -> Vec<EntryReport> {
    let options = RunOptions::new(dir.to_path_buf());
    let planned = fake_mesh::plan_with(routing, Duration::ZERO, seed, faults.clone());
    let mut mesh = planned.mesh;
    let mut report = crate::run::new_report(scenario, routing, "local");
    let mut log = ResultsLog::create(dir).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(
            Walk {
                scenario,
                routing,
                plans,
                options: &options,
                observer: &Quiet,
                started: Instant::now(),
            }
            .run(mesh.as_mut(), &mut report, &mut log),
        )
        .unwrap();
    report.stages.into_iter().flat_map(|s| s.entries).collect()
}

fn split_plan(plans: &TestPlans, stage: usize) -> Option<&crate::sequential::SequentialPlan> {
    match &plans.plans[stage][0] {
        TestPlan::Sequential(p) => Some(p),
        _ => None,
    }
}

#[test]
fn a_correct_mesh_with_failing_requests_passes_and_verdicts_come_early() {
    let (scenario, routing, plans) = scenario();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        canary_shift: 0.0,
        error_rates: [("canary".to_string(), 0.005), ("ga".to_string(), 0.001)].into(),
    };
    // Per split stage and entry point: the requests each verdict took.
    let mut requests: std::collections::BTreeMap<(usize, String), Vec<f64>> = Default::default();
    let mut failed_runs = 0;
    let mut errors = 0;
    for seed in 0..RUNS {
        let entries = walk(&scenario, &routing, &plans, dir.path(), seed, &faults);
        assert_eq!(entries.len(), 8);
        if entries.iter().any(|e| !e.passed) {
            failed_runs += 1;
        }
        for e in &entries {
            errors += e.errors;
            if split_plan(&plans, e.stage).is_some() {
                requests
                    .entry((e.stage, e.entry.to_string()))
                    .or_default()
                    .push(e.trials as f64);
            }
        }
    }
    // The exact per-run false-failure probability is at most α = 1e-4: over 200 runs a
    // single failure would already be a 2 %-probability event.
    assert_eq!(
        failed_runs, 0,
        "a correct mesh failed {failed_runs} of {RUNS} runs"
    );
    assert!(errors > 0, "the simulation failed requests");
    assert_eq!(requests.len(), 4, "two split stages on two entry points");
    for ((stage, entry), n) in &requests {
        let plan = split_plan(&plans, *stage).unwrap();
        let mean = n.iter().sum::<f64>() / n.len() as f64;
        let var = n.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.len() - 1) as f64;
        let margin = 4.0 * (var / n.len() as f64).sqrt();
        let expected = plan.expected_requests.at_p0;
        assert!(
            (mean - expected).abs() <= margin,
            "stage {stage} on {entry}: {mean} requests per verdict vs the plan's {expected} ± {margin}"
        );
        assert!(
            mean <= 0.4 * plan.fixed_requests as f64,
            "stage {stage} on {entry}: {mean} vs the fixed design's {}",
            plan.fixed_requests
        );
    }
}

#[rstest::rstest]
#[case::five_points_more_canary(0.05)]
#[case::five_points_less_canary(-0.05)]
fn a_share_off_by_delta_fails_the_split_stages(#[case] shift: f64) {
    let (scenario, routing, plans) = scenario();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        canary_shift: shift,
        ..Faults::default()
    };
    let mut misses = 0u64;
    let mut split_tests = 0u64;
    for seed in 0..RUNS {
        for e in walk(
            &scenario,
            &routing,
            &plans,
            dir.path(),
            1000 + seed,
            &faults,
        ) {
            if split_plan(&plans, e.stage).is_some() {
                split_tests += 1;
                if e.passed {
                    misses += 1;
                }
            }
        }
    }
    // The plans' exact power is at least 1 − β = 0.999 per test: of 800 split tests, ~0.8 are
    // expected to miss; more than 6 would be a 1e-4-probability event.
    assert_eq!(split_tests, 4 * RUNS);
    let power = plans
        .plans
        .iter()
        .filter_map(|row| match &row[0] {
            TestPlan::Sequential(p) => Some(if shift > 0.0 {
                p.power_high
            } else {
                p.power_low
            }),
            _ => None,
        })
        .map(|p| p.expect("both alternatives exist at 10 % and 60 %"))
        .fold(1.0, f64::min);
    assert!(power >= 1.0 - scenario.budget.beta);
    assert!(
        misses <= 6,
        "{misses} of {split_tests} split tests missed a {shift} shift"
    );
}
