//! A release, not just a split, through the CLI on the local mesh: SLO gates, the rollback they
//! trigger and its proof, a new canary build rolled out mid-walk, and the background load that
//! names every request a transition drops.

use std::time::{Duration, Instant};

use canary_e2e::{
    e2e_local, processes_matching, project_scenario_in, read_report, root, scenario_in, xtask,
};
use predicates::str::contains;
use serde_json::Value;

fn windows(load: &Value) -> Vec<String> {
    load["load"]["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_slow_canary_is_caught_rolled_back_patched_and_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let scenario = root().join("scenarios/tutorial-sla.yaml");
    let dry = xtask()
        .args(["e2e", "--mesh", "local", "--dry-run", "--scenario"])
        .arg(&scenario)
        .arg("--report-dir")
        .arg(&reports)
        .assert()
        .code(0);
    let planned = String::from_utf8_lossy(&dry.get_output().stdout).to_string();
    e2e_local(&scenario, &reports)
        .code(0)
        .stdout(contains("PASSED: scenario `tutorial-sla`"))
        .stdout(contains("rolled back at stage 2"));
    let report = read_report(&reports);
    assert_eq!(report["passed"], true, "{:#}", report["problems"]);
    // The run's α is shared by the tests that can fail a correct mesh: each split stage on each
    // entry point, and each gate at each stage where both subsets answer (the README's 6 + 6).
    let split_stages = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| (0.001..0.999).contains(&s["expected_share"].as_f64().unwrap()))
        .count();
    let gate_verdicts: usize = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["gates"].as_array().unwrap().len())
        .sum();
    assert_eq!((split_stages, gate_verdicts), (3, 6));
    assert_eq!(report["tests_in_run"], split_stages * 2 + gate_verdicts);
    let alpha = report["stages"][1]["gates"][0]["judgement"]["alpha"]
        .as_f64()
        .unwrap();
    assert!((alpha - 1e-4 / 12.0).abs() < 1e-15, "{alpha}");

    // Stage 2 failed its latency gate only: the split itself was right.
    let warm_up = &report["stages"][1];
    assert_eq!(warm_up["passed"], false);
    for e in warm_up["entries"].as_array().unwrap() {
        assert_eq!(e["passed"], true, "{e}");
    }
    let latency = warm_up["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "latency")
        .unwrap();
    assert_eq!(latency["passed"], false, "{latency}");
    // The backend waits 40 ms; through Envoy the GA answers in a few: far beyond 1.5 ×.
    let ratio = latency["judgement"]["measured"].as_f64().unwrap();
    assert!(ratio > 1.5, "{latency}");

    // The rollback: applied, measured, and the canary got none of the traffic.
    let rollbacks = report["rollbacks"].as_array().unwrap();
    assert_eq!(rollbacks.len(), 1);
    let rollback = &rollbacks[0];
    assert_eq!(rollback["after_stage"], 1);
    assert_eq!(rollback["verified"], true);
    assert_eq!(rollback["failed_gates"], serde_json::json!(["latency"]));
    assert_eq!(rollback["resumed_at"], 2);
    let checks = rollback["entries"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "a zero-leak check on each entry point");
    for e in checks {
        assert_eq!(e["counts"]["canary"].as_u64().unwrap_or(0), 0, "{e}");
        assert!(e["trials"].as_u64().unwrap() > 0);
    }

    // The patched build was rolled out, with exactly the steps the dry run listed, and only it
    // answered for the canary afterwards.
    let patched = &report["stages"][2];
    let executed: Vec<&str> = patched["rollout_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let listed: Vec<&str> = planned
        .lines()
        .skip_while(|l| !l.starts_with("during the walk, before stage 3"))
        .skip(1)
        .take_while(|l| !l.starts_with("at the end"))
        .map(|l| l.split_once(". ").unwrap().1)
        .collect();
    assert_eq!(executed.len(), 5, "{executed:#?}");
    assert_eq!(executed, listed, "{planned}");
    assert_eq!(
        patched["rollouts"],
        serde_json::json!(["rollout canary → ghcr.io/stefanprodan/podinfo:6.11.2"])
    );
    for stage in &report["stages"].as_array().unwrap()[2..] {
        assert_eq!(stage["passed"], true, "{stage}");
        for e in stage["entries"].as_array().unwrap() {
            assert!(e["wrong_build"].as_object().unwrap().is_empty(), "{e}");
        }
    }
    assert_eq!(report["stages"].as_array().unwrap().len(), 5);

    // The background load ran through all of it and lost nothing.
    let loads = report["background_load"].as_array().unwrap();
    assert_eq!(loads.len(), 2, "one per entry point");
    for load in loads {
        assert_eq!(load["load"]["failed"], 0, "{}", load["load"]);
        assert!(load["load"]["scheduled"].as_u64().unwrap() > 0);
        let names = windows(load);
        for want in [
            "weights → stage 2 (canary warm-up)",
            "rollback after stage 2 (canary warm-up)",
            "rollout canary → ghcr.io/stefanprodan/podinfo:6.11.2",
            "weights → stage 5 (full promotion)",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
    }
}

#[test]
fn without_expect_rollback_the_caught_canary_fails_with_the_latency_gate() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = project_scenario_in(dir.path(), "tutorial-sla");
    let text = std::fs::read_to_string(&scenario).unwrap();
    let line = "expect_rollback: { stage: 2, gate: latency }\n";
    assert!(text.contains(line));
    std::fs::write(&scenario, text.replace(line, "")).unwrap();
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports)
        .code(1)
        .stdout(contains("FAILED"))
        .stdout(contains("gate `latency`"));
    let report = read_report(&reports);
    assert_eq!(report["passed"], false);
    // It still rolled back and proved it: a failure, handled.
    assert_eq!(report["rollbacks"][0]["verified"], true);
    assert_eq!(report["stages"][1]["gates"][0]["gate"], "latency");
    assert_eq!(report["stages"][1]["gates"][0]["passed"], false);
}

#[test]
fn a_canary_that_slips_through_an_expected_rollback_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = project_scenario_in(dir.path(), "tutorial-sla");
    let text = std::fs::read_to_string(&scenario).unwrap();
    // The canary is as fast as the GA: nothing for the gate to catch.
    let slow = "    canary: { delay_ms: 40 }\n";
    assert!(text.contains(slow));
    std::fs::write(
        &scenario,
        text.replace(slow, "    canary: { delay_ms: 0 }\n"),
    )
    .unwrap();
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports).code(1);
    let report = read_report(&reports);
    assert!(report["rollbacks"].as_array().unwrap().is_empty());
    let problems = report["problems"].to_string();
    assert!(problems.contains("slipped through"), "{problems}");
}

/// A walk whose canary backend is killed while it runs: the background load's requests routed
/// to it fail, and the run fails naming the window they fell into.
#[test]
fn a_backend_killed_mid_walk_fails_the_run_naming_the_transition() {
    let dir = tempfile::tempdir().unwrap();
    // Slow answers keep the first stage (all on the GA) going; the test kills the canary once
    // the first stage's result is written, as the second stage (everything to the canary)
    // starts. That stage gives up within tens of milliseconds, so the load's margin after the
    // last stage is what surely sends background requests to the dead canary.
    let scenario = [
        "name: killed",
        "manifests: manifests",
        "virtual_service: podinfo",
        "baseline: ga",
        "canary: canary",
        "identify: { json: /version }",
        "local: { backends: { ga: { delay_ms: 100 } } }",
        "load: { rate: 10, margin_s: 1 }",
        "stages:",
        "  - { name: on the GA, weights: { ga: 100, canary: 0 } }",
        "  - { name: on the canary, weights: { ga: 0, canary: 100 } }",
    ]
    .join("\n");
    let scenario = scenario_in(dir.path(), &scenario);
    let marker = "6.14.1-killed";
    let canary = dir.path().join("manifests/podinfo-canary.yaml");
    let text = std::fs::read_to_string(&canary).unwrap();
    std::fs::write(&canary, text.replace("6.14.1", marker)).unwrap();
    let reports = dir.path().join("reports");
    let mut run = std::process::Command::new(canary_e2e::xtask_bin())
        .current_dir(root())
        .args(["e2e", "--mesh", "local", "--scenario"])
        .arg(&scenario)
        .arg("--report-dir")
        .arg(&reports)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first stage sends nothing to the canary; kill its backend once that stage is done.
    let results = reports.join("results.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&results).map_or(true, |t| t.trim().is_empty()) {
        assert!(Instant::now() < deadline, "the walk did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids: Vec<i32> = pids_matching(marker);
    assert!(!pids.is_empty(), "the canary backend runs");
    for pid in pids {
        // SAFETY: killing a backend process this test's run started, by its pid.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let report = read_report(&reports);
    assert_eq!(report["passed"], false);
    let problems: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let dropped: Vec<&String> = problems
        .iter()
        .filter(|p| p.starts_with("background load on ") && p.contains("dropped"))
        .collect();
    assert!(!dropped.is_empty(), "{problems:#?}");
    // Each failed request names its window, and the window is a stage that routes to the
    // canary (stage 1 sends it nothing).
    for load in report["background_load"].as_array().unwrap() {
        let names = windows(load);
        for failure in load["load"]["failures"].as_array().unwrap() {
            let window = &names[failure["window"].as_u64().unwrap() as usize];
            assert!(
                window.contains("stage 2 (on the canary)"),
                "{window}: {failure}"
            );
            // Envoy's own 503 may carry the subset's header or none; never the GA's.
            assert_ne!(failure["subset"].as_str(), Some("ga"), "{failure}");
        }
    }
    assert!(processes_matching(marker).is_empty());
}

fn pids_matching(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&bytes).contains(needle)
        {
            out.push(pid);
        }
    }
    out
}
