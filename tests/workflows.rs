//! Checks of the GitHub Actions workflows that a typo would silently break.

use canary_e2e::root;
use serde_json::Value;

fn workflow(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join(".github/workflows").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
}

fn steps(workflow: &Value, job: &str) -> Vec<Value> {
    workflow["jobs"][job]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("job {job} has no steps"))
        .clone()
}

/// The kind job uploads its reports, never the state folder with the cluster's kubeconfig and
/// the plug-in CA's private key.
#[test]
fn the_kind_artifact_leaves_out_every_credential() {
    let wf = workflow("e2e-kind.yml");
    let upload = steps(&wf, "e2e-kind")
        .into_iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .expect("an upload step");
    let paths: Vec<String> = upload["with"]["path"]
        .as_str()
        .expect("a path list")
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(paths, ["target/canary/", "!target/canary/state/**"]);
    assert_eq!(upload["if"], "always()");
}

/// CI runs what the README promises: formatting, lints, then the test command.
#[test]
fn ci_checks_formatting_and_lints_before_the_tests() {
    let wf = workflow("ci.yml");
    let runs: Vec<String> = steps(&wf, "test")
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_string))
        .collect();
    let position = |needle: &str| {
        runs.iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no step runs {needle:?}: {runs:#?}"))
    };
    let fmt = position("cargo fmt --all -- --check");
    let clippy = position("cargo clippy --workspace --all-targets -- -D warnings");
    let test = position("cargo xtask test");
    assert!(fmt < test && clippy < test);
    let ci_run = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    for needle in [
        "cargo fmt --all -- --check",
        "cargo clippy --workspace --all-targets -- -D warnings",
        "cargo xtask test",
    ] {
        assert!(ci_run.contains(needle), ".ci/run lacks {needle:?}");
    }
}
