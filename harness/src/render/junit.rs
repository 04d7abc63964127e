//! `junit.xml`: one test suite per stage, one test case per entry point, so that CI systems
//! list the stages as tests and show a failed split with its reason.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use crate::report::{EntryReport, Report, StageReport};

use super::{pct, weights};

/// The JUnit XML of a run.
pub fn junit(report: &Report) -> String {
    let mut junit = quick_junit::Report::new(format!("canary {}", report.scenario));
    let started = chrono::DateTime::parse_from_rfc3339(&report.started_at).ok();
    if let Some(at) = started {
        junit.set_timestamp(at);
    }
    junit.set_time(seconds(report.wall_time_s));
    for stage in &report.stages {
        junit.add_test_suite(stage_suite(report, stage));
    }
    let found = super::findings(report);
    if !found.is_empty() {
        let mut suite = TestSuite::new(format!("{} · release", report.scenario));
        for f in found {
            let status = if f.passed {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_type(f.topic.title())
                    .set_message(f.detail.clone())
                    .set_description(f.detail.clone());
                status
            };
            let mut case = TestCase::new(format!("{}: {}", f.topic.title(), f.title), status);
            case.set_classname(classname(report))
                .set_assertions(1)
                .set_system_out(f.detail);
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    if let Some(reason) = &report.aborted {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_type("aborted")
            .set_message(format!("the run stopped early: {reason}"))
            .set_description(format!(
                "{} of the scenario's stages were walked before the mesh failed; \
                 the stages after them were not measured.",
                report.stages.len()
            ));
        let mut case = TestCase::new("run aborted", status);
        case.set_classname(classname(report));
        let mut suite = TestSuite::new(format!("{} · aborted", report.scenario));
        suite.add_test_case(case);
        junit.add_test_suite(suite);
    }
    junit
        .to_string()
        // Serializing owned strings into memory cannot fail; keep the message if it ever does.
        .unwrap_or_else(|e| format!("<!-- cannot serialize the JUnit report: {e} -->\n"))
}

fn stage_suite(report: &Report, stage: &StageReport) -> TestSuite {
    let mut suite = TestSuite::new(format!(
        "{} · {}. {}",
        report.scenario,
        stage.index + 1,
        stage.name
    ));
    suite.set_time(seconds(stage.entries.iter().map(|e| e.wall_time_s).sum()));
    suite.add_properties([
        Property::new("mesh", report.mesh.as_str()),
        Property::new("expected_share", format!("{}", stage.expected_share)),
        Property::new("converge_s", format!("{:.3}", stage.converge_s)),
    ]);
    for entry in &stage.entries {
        suite.add_test_case(entry_case(report, entry));
    }
    suite
}

fn entry_case(report: &Report, e: &EntryReport) -> TestCase {
    let status = if e.passed {
        TestCaseStatus::success()
    } else {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status
            .set_type("canary verdict")
            .set_message(e.reason.clone())
            .set_description(details(report, e));
        status
    };
    let mut case = TestCase::new(format!("{} / {}", e.stage_name, e.label()), status);
    case.set_classname(classname(report))
        .set_time(seconds(e.wall_time_s))
        .set_assertions(1)
        .set_system_out(details(report, e));
    case
}

fn classname(report: &Report) -> String {
    format!("canary.{}.{}", report.scenario, report.mesh)
}

/// What was measured, in a few lines for the CI's test view.
fn details(report: &Report, e: &EntryReport) -> String {
    let counts: Vec<String> = report
        .subsets
        .iter()
        .map(|s| format!("{s} {}", e.counts.get(s).copied().unwrap_or(0)))
        .collect();
    format!(
        "target {}\nweights {}; expected canary share {}, observed {} ({}–{}), p = {:.4}\n\
         {} requests: {}; {} errors ({})\n{}\n",
        e.target,
        weights(report, e),
        pct(e.expected_share),
        pct(e.observed_share),
        pct(e.interval.0),
        pct(e.interval.1),
        e.p_value,
        e.requests,
        counts.join(", "),
        e.errors,
        pct(e.error_rate),
        e.reason,
    )
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture;

    #[test]
    fn one_case_per_stage_and_entry_and_failures_carry_their_reason() {
        let report = fixture::report(Some("canary promotion"));
        let xml = junit(&report);
        assert_eq!(xml.matches("<testcase ").count(), 8, "{xml}");
        assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
        assert!(xml.contains("canary promotion / mesh"), "{xml}");
        assert!(xml.contains("timestamp=\"2026-11-27T10:54:35"), "{xml}");
    }

    #[test]
    fn an_aborted_run_has_an_errored_case() {
        let mut report = fixture::report(None);
        report.stages.truncate(2);
        report.aborted = Some("stage `canary promotion`: Envoy <exited>".into());
        let xml = junit(&report);
        assert_eq!(xml.matches("<error ").count(), 1, "{xml}");
        assert!(xml.contains("Envoy &lt;exited&gt;"), "{xml}");
    }
}
