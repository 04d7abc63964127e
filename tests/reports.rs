//! The reports people read (JUnit, Markdown, HTML) checked against the data of a run, and
//! `cargo xtask demo` driven through the CLI.
//!
//! The real-run tests start the local mesh (a real Envoy and two backends on loopback) through
//! the xtask binary, as a user would; the rest render hand-built reports, so that failures and
//! aborted runs are covered without provoking them.

use std::collections::BTreeMap;
use std::path::Path;

use canary_e2e::xtask;
use harness::render::{self, CHART_IDS};
use harness::report::{EntryReport, Latency, Report, StageReport, TimeBucket};
use harness::routing::EntryPoint;
use harness::stats::{self, Budget};
use harness::verdict::TestPlan;

/// Test cases of a JUnit document: (name, child element of a non-passing case, its message).
fn junit_cases(xml: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let doc = roxmltree::Document::parse(xml).expect("junit.xml is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "testsuites");
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|case| {
            let outcome = case
                .children()
                .find(|c| c.has_tag_name("failure") || c.has_tag_name("error"));
            (
                case.attribute("name").unwrap_or_default().to_string(),
                outcome.map(|o| o.tag_name().name().to_string()),
                outcome.and_then(|o| o.attribute("message").map(str::to_string)),
            )
        })
        .collect()
}

/// The body rows of the first Markdown table.
fn markdown_rows(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .filter(|l| l.starts_with("| "))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// Fails if the page would fetch anything: scripts, styles, fonts, images or links.
fn assert_self_contained(page: &str) {
    let lower = page.to_lowercase();
    for bad in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "<script",
        "<link",
        "<img",
        "<iframe",
        "url(",
        "@import",
    ] {
        assert!(!lower.contains(bad), "report.html holds `{bad}`");
    }
}

fn assert_charts(page: &str) {
    assert_eq!(
        page.matches("<svg").count(),
        CHART_IDS.len(),
        "one SVG per chart"
    );
    for id in CHART_IDS {
        assert_eq!(
            page.matches(&format!(" id=\"{id}\"")).count(),
            1,
            "chart {id}"
        );
        assert!(page.contains(&format!("<title id=\"{id}-title\">")), "{id}");
    }
}

fn entries(report: &Report) -> impl Iterator<Item = &EntryReport> {
    report.stages.iter().flat_map(|s| &s.entries)
}

/// The three files against the report they were rendered from.
fn check_reports(dir: &Path, report: &Report) {
    let cells = report.stages.len() * report.entry_points.len();

    let xml = std::fs::read_to_string(dir.join(render::JUNIT_XML)).expect("junit.xml");
    let cases = junit_cases(&xml);
    let findings = render::findings(report);
    let failed = entries(report).filter(|e| !e.passed).count()
        + findings.iter().filter(|f| !f.passed).count();
    assert_eq!(
        cases.len(),
        cells + usize::from(report.aborted.is_some()) + findings.len(),
        "{xml}"
    );
    for f in &findings {
        let name = format!("{}: {}", f.topic.title(), f.title);
        assert!(cases.iter().any(|c| c.0 == name), "no case {name} in {xml}");
    }
    assert_eq!(
        cases
            .iter()
            .filter(|c| c.1.as_deref() == Some("failure"))
            .count(),
        failed,
        "{xml}"
    );
    for e in entries(report) {
        let name = format!("{} / {}", e.stage_name, e.entry);
        let case = cases
            .iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("no case {name}"));
        if !e.passed {
            assert_eq!(case.2.as_deref(), Some(e.reason.as_str()), "{name}");
        }
    }

    let md = std::fs::read_to_string(dir.join(render::SUMMARY_MD)).expect("summary.md");
    let headline = md.lines().next().unwrap_or_default();
    assert!(headline.contains(&render::headline(report)), "{md}");
    let rows = markdown_rows(&md);
    assert_eq!(rows.len(), cells, "{md}");
    for (row, e) in rows.iter().zip(entries(report)) {
        assert!(row[0].ends_with(&e.stage_name), "{row:?}");
        assert_eq!(row[1], e.entry.to_string());
        assert_eq!(row[4], format!("{:.1} %", e.observed_share * 100.0));
        assert_eq!(row[7], e.requests.to_string());
        assert!(
            row.last()
                .unwrap()
                .contains(if e.passed { "pass" } else { "FAIL" })
        );
    }

    let page = std::fs::read_to_string(dir.join(render::REPORT_HTML)).expect("report.html");
    assert_charts(&page);
    assert_self_contained(&page);
    assert_eq!(page.matches("<tr class=").count(), cells);
    for e in entries(report) {
        assert!(page.contains(&render_escape(&e.reason)), "{}", e.reason);
    }
}

fn render_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[test]
fn the_reports_of_a_real_run_say_what_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    let step_summary = dir.path().join("step-summary.md");
    let out = xtask()
        .args(["e2e", "--mesh", "local", "--report-dir"])
        .arg(dir.path())
        .env("GITHUB_STEP_SUMMARY", &step_summary)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let stdout = String::from_utf8_lossy(&out);
    for name in [render::JUNIT_XML, render::SUMMARY_MD, render::REPORT_HTML] {
        assert!(
            stdout.contains(&dir.path().join(name).display().to_string()),
            "{name} not listed:\n{stdout}"
        );
    }
    let report = Report::read(&dir.path().join("report.json")).unwrap();
    assert!(report.passed);
    check_reports(dir.path(), &report);
    let appended = std::fs::read_to_string(&step_summary).expect("GITHUB_STEP_SUMMARY written");
    assert_eq!(
        appended.trim_end(),
        std::fs::read_to_string(dir.path().join(render::SUMMARY_MD))
            .unwrap()
            .trim_end()
    );
}

/// A tutorial-shaped report: `failing` names the stages whose mesh entry fails.
fn report(failing: &[&str], aborted_after: Option<usize>) -> Report {
    let budget = Budget {
        alpha: 1e-4,
        beta: 1e-3,
        delta: 0.05,
    };
    let entry_points = vec![EntryPoint::Ingress, EntryPoint::Mesh];
    let mut stages = Vec::new();
    let mut t = 0.3;
    let all = [
        ("initial state", 0u32),
        ("canary warm-up", 10),
        ("canary promotion", 60),
        ("full promotion", 100),
    ];
    let walked = aborted_after.unwrap_or(all.len());
    for (index, (name, canary)) in all.into_iter().enumerate().take(walked) {
        let weights: BTreeMap<String, u32> =
            [("ga".into(), 100 - canary), ("canary".into(), canary)].into();
        let share = f64::from(canary) / 100.0;
        let mut results = Vec::new();
        for entry in &entry_points {
            let plan = stats::plan(share, &budget, 8);
            let broken = failing.contains(&name) && *entry == EntryPoint::Mesh;
            let observed = if broken {
                (share + 0.3).min(1.0)
            } else {
                share
            };
            let n = plan.requests;
            let k = (n as f64 * observed).round() as u64;
            let verdict = stats::judge(&plan, k, n);
            let counts: BTreeMap<String, u64> = [("ga".into(), n - k), ("canary".into(), k)].into();
            let latency = counts
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(|(s, c)| {
                    let l = Latency {
                        count: *c,
                        mean_ms: 5.0,
                        p50_ms: 4.0,
                        p90_ms: 8.0,
                        p99_ms: 12.0,
                        max_ms: 15.0,
                    };
                    (s.clone(), l)
                })
                .collect();
            let wall = n as f64 / 1000.0;
            results.push(EntryReport {
                stage: index,
                stage_name: name.into(),
                entry: *entry,
                target: "http://127.0.0.1:1/".into(),
                weights: weights.clone(),
                expected_share: share,
                plan: if plan.kind == stats::CheckKind::ZeroLeak {
                    TestPlan::ZeroLeak(plan)
                } else {
                    TestPlan::Fixed(plan)
                },
                class: "default".into(),
                requests: n,
                trials: n,
                counts: counts.clone(),
                unexpected: BTreeMap::new(),
                stale: 0,
                unroutable: 0,
                after_verdict: 0,
                wrong_build: BTreeMap::new(),
                look: None,
                errors: 0,
                error_kinds: BTreeMap::new(),
                errors_by_subset: BTreeMap::new(),
                error_rate: 0.0,
                observed_share: verdict.observed_share,
                interval: verdict.interval,
                p_value: verdict.p_value,
                leak_bound: verdict.leak_bound,
                passed: verdict.passed,
                reason: verdict.reason,
                latency,
                started_s: t,
                wall_time_s: wall,
                timeline: vec![TimeBucket {
                    t_s: t,
                    counts,
                    errors: 0,
                }],
            });
            t += wall;
        }
        stages.push(StageReport {
            index,
            name: name.into(),
            weights: weights.clone(),
            expect: weights,
            expected_share: share,
            stamp: format!("{}.{}", index + 1, index + 1),
            converge_s: 0.01,
            passed: results.iter().all(|r| r.passed),
            entries: results,
            gates: Vec::new(),
            rollouts: Vec::new(),
            rollout_steps: Vec::new(),
            versions: Default::default(),
        });
    }
    let aborted = aborted_after.map(|_| "stage `canary promotion`: Envoy exited <signal 9>".into());
    Report {
        scenario: "tutorial".into(),
        scenario_file: "scenarios/tutorial.yaml".into(),
        description: None,
        mesh: "local".into(),
        started_at: "2026-11-27T10:00:00Z".into(),
        passed: aborted.is_none() && stages.iter().all(|s| s.passed),
        aborted,
        budget,
        design: Default::default(),
        tests_in_run: 8,
        entry_points,
        subsets: vec!["ga".into(), "canary".into()],
        versions: [
            ("ga".into(), "6.14.0".into()),
            ("canary".into(), "6.14.1".into()),
        ]
        .into(),
        setup: Vec::new(),
        cluster_changes: Default::default(),
        stages,
        rollbacks: Vec::new(),
        skipped_stages: Vec::new(),
        expected_rollback: None,
        problems: Vec::new(),
        background_load: Vec::new(),
        wall_time_s: t,
    }
}

#[test]
fn failed_stages_are_failed_test_cases_with_their_reason() {
    let report = report(&["canary warm-up", "canary promotion"], None);
    assert_eq!(
        report.failed_entries().count(),
        2,
        "the fixture fails two entries"
    );
    let dir = tempfile::tempdir().unwrap();
    let written = render::write_all(&report, dir.path()).unwrap();
    assert_eq!(written.len(), 3);
    check_reports(dir.path(), &report);
    let md = std::fs::read_to_string(dir.path().join(render::SUMMARY_MD)).unwrap();
    assert!(md.starts_with("### ❌ FAILED"), "{md}");
}

#[test]
fn an_aborted_run_adds_an_errored_test_case_saying_why() {
    let report = report(&[], Some(2));
    let xml = render::junit(&report);
    let cases = junit_cases(&xml);
    assert_eq!(cases.len(), 2 * 2 + 1, "{xml}");
    let errored: Vec<_> = cases
        .iter()
        .filter(|c| c.1.as_deref() == Some("error"))
        .collect();
    assert_eq!(errored.len(), 1, "{xml}");
    assert!(
        errored[0]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("Envoy exited <signal 9>"),
        "{xml}"
    );
    let page = render::html(&report).unwrap();
    assert!(page.contains("The run stopped early"));
    assert!(page.contains("Envoy exited &lt;signal 9&gt;"));
    assert_charts(&page);
    assert!(render::markdown(&report).contains("**The run stopped early:**"));
}

#[test]
fn demo_tells_the_tutorial_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let assert = xtask()
        .args(["demo", "--mesh", "local", "--step", "--report-dir"])
        .arg(dir.path())
        .write_stdin("")
        .timeout(std::time::Duration::from_secs(240))
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    // The tutorial's sections in its order, each told from the steps the run executes.
    let sections = [
        "get the tools",
        "set up a cluster",
        "install Istio",
        "enable sidecar injection and certificates",
        "create the namespace",
        "deploy the GA and canary versions",
        "create the routing resources",
        "open the entry points",
        "initial state",
        "canary warm-up",
        "canary promotion",
        "full promotion",
        "clean up",
        "measure request latency for each deployment",
        "observe the traffic shift",
        // The second half: the slow canary caught, reverted, patched and promoted.
        "The tutorial goes on",
        "canary warm-up",
        "FAIL gate `latency`",
        "responds slower than the ga",
        "revert: roll back after `canary warm-up`",
        "Rolled back and proven",
        "ship a patched canary build",
        "6.11.2",
        "patched canary warm-up",
        "full promotion",
        "measure request latency for each deployment",
    ];
    let mut at = 0;
    for title in sections {
        let found = stdout[at..]
            .find(title)
            .unwrap_or_else(|| panic!("section `{title}` missing or out of order:\n{stdout}"));
        at += found;
    }
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    for (sign, weight) in [('-', 100), ('+', 90), ('-', 90), ('+', 40), ('+', 100)] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(sign) && l[1..].trim_start() == format!("weight: {weight}")),
            "no diff line `{sign} weight: {weight}`:\n{stdout}"
        );
    }
    assert!(stdout.contains("running straight through"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "no colors without a terminal");
    for name in [
        "report.json",
        render::JUNIT_XML,
        render::SUMMARY_MD,
        render::REPORT_HTML,
    ] {
        assert!(dir.path().join(name).is_file(), "{name} missing");
    }
    assert!(stdout.contains(&dir.path().join(render::REPORT_HTML).display().to_string()));
    let report = Report::read(&dir.path().join("report.json")).unwrap();
    check_reports(dir.path(), &report);
    let second = dir.path().join("second-half");
    let report = Report::read(&second.join("report.json")).unwrap();
    assert!(report.passed, "{:?}", report.problems);
    assert_eq!(report.rollbacks.len(), 1);
    check_reports(&second, &report);
}
