//! The whole flow on the local mesh, through the CLI: a real Envoy, real backends, real
//! requests, and the exit codes a user and CI rely on.

use std::path::Path;
use std::time::{Duration, Instant};

use canary_e2e::{
    e2e_local, processes_matching, project_scenario_in, read_report, root, scenario_in, xtask,
};
use predicates::str::contains;

#[test]
fn the_tutorial_passes_on_both_entry_points() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask()
        .args(["e2e", "--mesh", "local", "--report-dir"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(contains("PASSED: scenario `tutorial` on the local mesh"));
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    for stage in [
        "initial state",
        "canary warm-up",
        "canary promotion",
        "full promotion",
    ] {
        assert_eq!(
            stdout.matches(stage).count(),
            2,
            "{stage} on both entry points:\n{stdout}"
        );
    }

    let report = read_report(dir.path());
    assert_eq!(report["passed"], true);
    assert_eq!(report["mesh"], "local");
    // The background load ran on both entry points through every weight change, lost nothing,
    // and the terminal says so.
    let loads = report["background_load"].as_array().unwrap();
    assert_eq!(loads.len(), 2);
    for load in loads {
        assert_eq!(load["load"]["failed"], 0, "{load}");
        let scheduled = load["load"]["scheduled"].as_u64().unwrap();
        assert_eq!(scheduled, load["load"]["ok"].as_u64().unwrap());
        let windows: u64 = load["load"]["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(windows, scheduled, "every request in one window");
        let transitions: Vec<&str> = load["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"] == "transition")
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(transitions.len(), 4, "{transitions:?}");
        assert!(
            transitions[1].starts_with("weights → stage 2"),
            "{transitions:?}"
        );
    }
    assert!(
        stdout.contains("pass background load on ingress"),
        "{stdout}"
    );
    let stages = report["stages"].as_array().unwrap();
    let shares: Vec<f64> = stages
        .iter()
        .map(|s| s["expected_share"].as_f64().unwrap())
        .collect();
    assert_eq!(shares, vec![0.0, 0.1, 0.6, 1.0]);
    for stage in stages {
        let entries = stage["entries"].as_array().unwrap();
        let names: Vec<&str> = entries
            .iter()
            .map(|e| e["entry"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["ingress", "mesh"]);
        for e in entries {
            let trials = e["trials"].as_u64().unwrap();
            let counted: u64 = e["counts"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum();
            assert_eq!(
                counted, trials,
                "every judged answer was counted for its subset"
            );
            // Answers are attributed by the harness's header, and all come from the stage's
            // own route configuration here: none stale, none unroutable.
            assert_eq!(
                e["requests"].as_u64().unwrap(),
                trials + e["stale"].as_u64().unwrap() + e["unroutable"].as_u64().unwrap()
            );
            assert_eq!(e["unroutable"], 0);
            assert_eq!(e["errors"], 0);
            let share = e["expected_share"].as_f64().unwrap();
            match e["plan"]["design"].as_str().unwrap() {
                "zero-leak" | "zero_leak" => {
                    assert!(share == 0.0 || share == 1.0);
                    assert_eq!(trials, e["plan"]["requests"].as_u64().unwrap());
                }
                "sequential" => {
                    // Decided at a look, before the most the plan allows.
                    let look = e["look"][0].as_u64().unwrap() as usize;
                    let n = e["plan"]["looks"][look - 1]["n"].as_u64().unwrap();
                    assert_eq!(trials, n);
                    assert!(trials <= e["plan"]["max_requests"].as_u64().unwrap());
                }
                other => panic!("unexpected design {other}"),
            }
            let observed = e["observed_share"].as_f64().unwrap();
            let (lo, hi) = (
                e["interval"][0].as_f64().unwrap(),
                e["interval"][1].as_f64().unwrap(),
            );
            assert!(lo <= observed && observed <= hi);
            assert!(e["latency"]["ga"].is_object() || e["latency"]["canary"].is_object());
        }
    }
    // Zero-leak stages saw no request to the wrong subset.
    assert_eq!(stages[0]["entries"][0]["counts"]["canary"], 0);
    assert_eq!(stages[3]["entries"][1]["counts"]["ga"], 0);
    assert!(stages[0]["entries"][0]["leak_bound"].as_f64().unwrap() < 0.1);

    let lines = std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        8,
        "one result line per stage and entry point"
    );

    let dir_text = dir.path().to_string_lossy().to_string();
    assert!(
        processes_matching(&dir_text).is_empty(),
        "envoy outlived the run"
    );

    // The dry run printed exactly the steps the run executed, set-up and teardown.
    let dry = xtask()
        .args(["e2e", "--mesh", "local", "--dry-run", "--report-dir"])
        .arg(dir.path())
        .assert()
        .code(0);
    let printed: Vec<String> = String::from_utf8_lossy(&dry.get_output().stdout)
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_once(". ").map(|(_, step)| step.to_string()))
        .collect();
    let executed: Vec<String> = report["setup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(executed, printed);
    assert!(
        report["setup"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["error"].is_null())
    );
}

#[test]
fn a_stage_expecting_20_points_less_canary_fails_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        "name: off-by-20\nmanifests: manifests\nvirtual_service: podinfo\nbaseline: ga\ncanary: canary\n\
         stages:\n  - name: ejected canary\n    weights: { ga: 50, canary: 50 }\n    expect: { ga: 70, canary: 30 }\n",
    );
    let reports = dir.path().join("reports");
    let out = e2e_local(&scenario, &reports)
        .code(1)
        .stdout(contains("FAILED: scenario `off-by-20`"));
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("FAIL ejected canary / ingress"), "{stdout}");
    let report = read_report(&reports);
    assert_eq!(report["passed"], false);
    for e in report["stages"][0]["entries"].as_array().unwrap() {
        assert_eq!(e["passed"], false);
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains("expected 30 %"), "{reason}");
        // A sequential verdict may stop after a few dozen answers, so the observed share is
        // only near 0.5; its (repeated) confidence interval holds the true 50 % and not 30 %.
        let interval = &e["interval"];
        let (low, high) = (interval[0].as_f64().unwrap(), interval[1].as_f64().unwrap());
        assert!(low <= 0.5 && 0.5 <= high, "the mesh routed 50/50: {e}");
        assert!(low > 0.3, "30 % is ruled out: {e}");
        let alpha = e["plan"]["alpha_test"].as_f64().unwrap();
        assert!(e["p_value"].as_f64().unwrap() <= alpha, "{e}");
    }
    assert!(
        reports
            .join("diagnostics")
            .join("envoy-config_dump.json")
            .exists()
    );
}

/// A 5-point misroute (δ, the smallest the budget promises to catch) in either direction,
/// with the production budget. Each entry point catches it with probability ≥ 1 − β = 0.999,
/// and the run fails if either does: it passes with probability ≤ 1e-6.
#[rstest::rstest]
#[case::canary_gets_5_points_less(55)]
#[case::canary_gets_5_points_more(45)]
fn a_5_point_misroute_fails_the_run(#[case] expected_canary: u32) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        &format!(
            "name: off-by-5\nmanifests: manifests\nvirtual_service: podinfo\nbaseline: ga\ncanary: canary\n\
             stages:\n  - name: half\n    weights: {{ ga: 50, canary: 50 }}\n    expect: {{ ga: {}, canary: {expected_canary} }}\n",
            100 - expected_canary
        ),
    );
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports)
        .code(1)
        .stdout(contains("FAILED: scenario `off-by-5`"));
    let report = read_report(&reports);
    let entries = report["stages"][0]["entries"].as_array().unwrap();
    let failed: Vec<&serde_json::Value> = entries.iter().filter(|e| e["passed"] == false).collect();
    assert!(!failed.is_empty());
    for e in failed {
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("expected {expected_canary} %")),
            "{reason}"
        );
    }
}

#[test]
fn failed_requests_count_for_no_version_and_slow_backends_show_in_latency() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        "name: flaky-canary\nmanifests: manifests\nvirtual_service: podinfo\nbaseline: ga\ncanary: canary\n\
         statistics: { alpha: 0.01, beta: 0.1, delta: 0.1 }\n\
         local:\n  backends:\n    canary: { delay_ms: 40, error_rate: 0.3 }\n\
         stages:\n  - name: half\n    weights: { ga: 50, canary: 50 }\n",
    );
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports).code(1);
    let report = read_report(&reports);
    for e in report["stages"][0]["entries"].as_array().unwrap() {
        let errors = e["errors"].as_u64().unwrap();
        assert!(errors > 0, "the canary fails 30 % of its requests");
        assert_eq!(e["error_kinds"]["HTTP 500"].as_u64().unwrap(), errors);
        // Envoy adds the subset's header to failed answers too: each failure is the canary's.
        assert_eq!(e["errors_by_subset"]["canary"].as_u64().unwrap(), errors);
        assert!(e["errors_by_subset"].get("ga").is_none());
        let trials: u64 = e["counts"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(trials, e["trials"].as_u64().unwrap());
        // A failed answer is a trial of its subset: the failing canary does not look smaller.
        assert_eq!(
            e["requests"].as_u64().unwrap(),
            trials + e["stale"].as_u64().unwrap() + e["unroutable"].as_u64().unwrap(),
        );
        assert!(e["counts"]["canary"].as_u64().unwrap() >= errors);
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains("requests failed"), "{reason}");
        // The fixed delay is a floor on the canary's latency; no upper bound is asserted.
        assert!(e["latency"]["canary"]["p50_ms"].as_f64().unwrap() >= 40.0);
    }
}

/// The entries of every stage of a report, flattened.
fn entries(report: &serde_json::Value) -> Vec<&serde_json::Value> {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["entries"].as_array().unwrap())
        .collect()
}

#[test]
fn insiders_reach_only_the_canary_while_everyone_follows_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    e2e_local(&root().join("scenarios/ab-header.yaml"), &reports)
        .code(0)
        .stdout(contains("PASSED: scenario `ab-header`"));
    let report = read_report(&reports);
    let all = entries(&report);
    // Three classes on two entry points at each of the four stages.
    assert_eq!(all.len(), 4 * 3 * 2);
    for e in &all {
        let class = e["class"].as_str().unwrap();
        let ga = e["counts"]["ga"].as_u64().unwrap_or(0);
        let canary = e["counts"]["canary"].as_u64().unwrap_or(0);
        match class {
            "insiders" | "beta cookie" => {
                assert_eq!(ga, 0, "{class} never reach the GA: {e}");
                assert!(canary > 0);
                assert_eq!(e["plan"]["design"], "zero_leak");
            }
            "everyone" => {
                let share = e["expected_share"].as_f64().unwrap();
                let weights = &e["weights"];
                assert_eq!(share * 100.0, weights["canary"].as_f64().unwrap());
            }
            other => panic!("unexpected class {other}"),
        }
    }
    // Only the classes that follow a split stage share α: "everyone" at 10 % and 50 %.
    assert_eq!(report["tests_in_run"], 2 * 2);
}

#[test]
fn without_the_insiders_route_the_insider_class_fails_as_a_leak() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = project_scenario_in(dir.path(), "ab-header");
    let vs = dir.path().join("manifests/ab-header/virtual-service.yaml");
    let text = std::fs::read_to_string(&vs).unwrap();
    let start = text.find("    - name: insiders").unwrap();
    let end = text.find("    - name: canary-split").unwrap();
    std::fs::write(&vs, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports).code(1);
    let report = read_report(&reports);
    let first = &report["stages"][0]["entries"];
    for e in first.as_array().unwrap() {
        let class = e["class"].as_str().unwrap();
        if class == "everyone" {
            assert_eq!(e["passed"], true, "everyone still follows the weights: {e}");
        } else {
            assert_eq!(e["passed"], false, "{class} must fail: {e}");
            let reason = e["reason"].as_str().unwrap();
            assert!(reason.contains("leak"), "{reason}");
            assert!(e["counts"]["ga"].as_u64().unwrap() > 0);
        }
    }
}

#[test]
fn an_app_that_reports_no_version_is_measured_by_the_harness_header() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    e2e_local(&root().join("scenarios/echo.yaml"), &reports)
        .code(0)
        .stdout(contains("PASSED: scenario `echo`"));
    let report = read_report(&reports);
    for e in entries(&report) {
        let trials = e["trials"].as_u64().unwrap();
        let counted: u64 = ["ga", "canary"]
            .iter()
            .map(|s| e["counts"][s].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(
            counted, trials,
            "every answer attributed by the header: {e}"
        );
    }
    // The backends ran as plain-text apps, whose answers name no version.
    let setup = report["setup"].as_array().unwrap();
    for subset in ["ga", "canary"] {
        let start = setup
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .find(|s| s.starts_with(&format!("start   backend `{subset}`")))
            .unwrap();
        assert!(start.contains("--mode plain"), "{start}");
    }
}

#[test]
fn a_subset_running_the_wrong_build_fails_its_stage_with_its_own_reason() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        "name: wrong-build\nmanifests: manifests\nvirtual_service: podinfo\nbaseline: ga\ncanary: canary\n\
         identify: { json: /version }\n\
         local:\n  backends:\n    canary: { version: 6.14.0 }\n\
         stages:\n  - name: half\n    weights: { ga: 50, canary: 50 }\n",
    );
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports).code(1);
    let report = read_report(&reports);
    for e in report["stages"][0]["entries"].as_array().unwrap() {
        assert_eq!(e["passed"], false);
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.contains("subset canary answered as 6.14.0"),
            "{reason}"
        );
    }
}

/// Bad input: exit 2, the file, the field and the fix, and nothing started or written.
#[rstest::rstest]
#[case::weights_sum(
    "stages:\n  - name: a\n    weights: { ga: 80, canary: 10 }\n",
    &["scenario.yaml", "stages[0].weights", "sum to 90", "fix:"]
)]
#[case::unknown_subset(
    "stages:\n  - name: a\n    weights: { ga: 90, blue: 10 }\n",
    &["stages[0].weights.blue", "not one of the scenario's subsets", "fix:"]
)]
#[case::malformed_yaml("stages:\n  - name: [a\n", &["scenario.yaml", "not valid YAML"])]
#[case::unknown_field(
    "stages:\n  - name: a\n    weight: { ga: 100 }\n",
    &["stages[0].weight", "unknown field"]
)]
fn bad_scenarios_exit_2_naming_file_field_and_fix(#[case] tail: &str, #[case] says: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let head =
        "name: bad\nmanifests: manifests\nvirtual_service: podinfo\nbaseline: ga\ncanary: canary\n";
    let scenario = scenario_in(dir.path(), &format!("{head}{tail}"));
    let reports = dir.path().join("reports");
    let out = e2e_local(&scenario, &reports).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for s in says {
        assert!(stderr.contains(s), "stderr lacks {s:?}:\n{stderr}");
    }
    assert!(
        !reports.exists(),
        "nothing is written before the input is good"
    );
}

#[rstest::rstest]
#[case::tutorial_destination_name(
    "virtual-service.yaml",
    "            host: podinfo.test.svc.cluster.local\n            subset: canary",
    "            name: podinfo\n            subset: canary",
    &["virtual-service.yaml", "spec.http[0].route[1].destination.name", "rename `name` to `host`"]
)]
#[case::unknown_subset_in_rule(
    "destination-rule.yaml",
    "    - name: canary\n",
    "    - name: blue\n",
    &["unknown subset `canary`", "defines ga, blue"]
)]
fn bad_manifests_exit_2_naming_file_field_and_fix(
    #[case] file: &str,
    #[case] from: &str,
    #[case] to: &str,
    #[case] says: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let tutorial = std::fs::read_to_string(root().join("scenarios/tutorial.yaml")).unwrap();
    let scenario = scenario_in(dir.path(), &tutorial.replace("../manifests", "manifests"));
    let path = dir.path().join("manifests").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "the fixture still has {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    let out = xtask()
        .args(["e2e", "--mesh", "local", "--scenario"])
        .arg(&scenario)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for s in says {
        assert!(stderr.contains(s), "stderr lacks {s:?}:\n{stderr}");
    }
}

#[test]
fn a_missing_scenario_exits_2() {
    xtask()
        .args([
            "e2e",
            "--mesh",
            "local",
            "--scenario",
            "scenarios/nope.yaml",
        ])
        .assert()
        .code(2)
        .stderr(contains("scenarios/nope.yaml"))
        .stderr(contains("fix:"));
}

/// A run of the tutorial whose backends answer slowly, so that the test can interrupt it
/// mid-sampling; its processes are found by the unique versions `<tag>-<marker>`.
fn slow_run(dir: &Path, marker: &str, reports: &Path) -> std::process::Child {
    let tutorial = std::fs::read_to_string(root().join("scenarios/tutorial.yaml")).unwrap();
    let scenario = tutorial.replace("../manifests", "manifests")
        + "local:\n  backends:\n    ga: { delay_ms: 200 }\n    canary: { delay_ms: 200 }\n";
    let scenario = scenario_in(dir, &scenario);
    for (file, tag) in [
        ("podinfo-ga.yaml", "6.14.0"),
        ("podinfo-canary.yaml", "6.14.1"),
    ] {
        let path = dir.join("manifests").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(tag, &format!("{tag}-{marker}"))).unwrap();
    }
    std::process::Command::new(canary_e2e::xtask_bin())
        .current_dir(root())
        .args(["e2e", "--mesh", "local", "--scenario"])
        .arg(&scenario)
        .arg("--report-dir")
        .arg(reports)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run's Envoy published its admin address (the set-up is under way).
fn await_mesh(reports: &Path) {
    let admin = reports.join("local-mesh").join("envoy-admin-address");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !admin.exists() {
        assert!(
            Instant::now() < deadline,
            "the local mesh did not start within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ctrl-C and SIGTERM (how CI cancels a job) stop the walk, and the run still writes its
/// reports, stops every process it started and exits 130.
#[rstest::rstest]
#[case::ctrl_c_while_sampling(libc::SIGINT, "sigint", 1500)]
#[case::sigterm_while_sampling(libc::SIGTERM, "sigterm", 1500)]
#[case::ctrl_c_during_set_up(libc::SIGINT, "setup", 0)]
fn an_interrupt_stops_everything_and_keeps_the_reports(
    #[case] signal: libc::c_int,
    #[case] marker: &str,
    #[case] after_ms: u64,
) {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let mut child = slow_run(dir.path(), marker, &reports);
    await_mesh(&reports);
    if after_ms > 0 {
        std::thread::sleep(Duration::from_millis(after_ms));
        assert!(
            !processes_matching(&format!("6.14.0-{marker}")).is_empty(),
            "the backends run"
        );
    }
    // SAFETY: signalling the child this test spawned, by its pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<String> = processes_matching(&format!("-{marker}"))
        .into_iter()
        .chain(processes_matching(&reports.to_string_lossy()))
        .collect();
    assert!(left.is_empty(), "processes outlived the harness: {left:?}");
    let report = read_report(&reports);
    assert_eq!(report["aborted"], "interrupted");
    assert_eq!(report["passed"], false);
    for file in ["junit.xml", "summary.md", "report.html"] {
        assert!(reports.join(file).exists(), "{file} was written");
    }
    let steps: Vec<&str> = report["setup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let started = steps.iter().filter(|s| s.starts_with("start ")).count();
    let stopped = steps.iter().filter(|s| s.starts_with("stop ")).count();
    assert!(started >= 1, "{steps:#?}");
    assert_eq!(
        stopped, started,
        "every started process stopped: {steps:#?}"
    );
}

/// A second Ctrl-C does not wait for the reports and the teardown: the run exits at once with
/// 130, and its child processes die with it.
#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let marker = "twice";
    let mut child = slow_run(dir.path(), marker, &reports);
    await_mesh(&reports);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!processes_matching(&format!("6.14.0-{marker}")).is_empty());
    // The second comes while the first one's clean-up runs: the backends still answer the
    // requests in flight (200 ms each) before they stop.
    for _ in 0..2 {
        // SAFETY: signalling the child this test spawned, by its pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("interrupted twice: exiting now"),
        "{stderr}"
    );
    // The kernel ends the children with their parent (PR_SET_PDEATHSIG); give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = processes_matching(&format!("-{marker}"))
            .into_iter()
            .chain(processes_matching(&reports.to_string_lossy()))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes outlived the harness: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two runs never share a report folder: the second one stops at once, naming the first.
#[test]
fn a_second_run_on_the_same_report_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let mut first = slow_run(dir.path(), "lock", &reports);
    await_mesh(&reports);
    let out = xtask()
        .args(["e2e", "--mesh", "local", "--report-dir"])
        .arg(&reports)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains(&format!("is in use by the run of process {}", first.id())),
        "{stderr}"
    );
    assert!(stderr.contains("--report-dir"), "{stderr}");
    // SAFETY: signalling the child this test spawned, by its pid.
    unsafe {
        libc::kill(first.id() as libc::pid_t, libc::SIGINT);
    }
    assert_eq!(first.wait().unwrap().code(), Some(130));
}
