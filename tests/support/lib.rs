//! Shared helpers of the integration tests in `tests/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `xtask` binary the CLI tests drive: `$CANARY_XTASK_BIN` (set by `cargo xtask test`),
/// else built once with cargo, so that `cargo test` alone works too.
pub fn xtask_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CANARY_XTASK_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--package", "xtask"])
            .current_dir(root())
            .status()
            .expect("running cargo build -p xtask");
        assert!(status.success(), "cargo build -p xtask failed");
        target_dir().join("debug").join("xtask")
    })
    .clone()
}

/// Cargo's target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// A command running `xtask` from the workspace root.
pub fn xtask() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(xtask_bin());
    cmd.current_dir(root())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    cmd
}

/// `xtask e2e --mesh local` of a scenario, with its reports in `reports`.
pub fn e2e_local(scenario: &Path, reports: &Path) -> assert_cmd::assert::Assert {
    xtask()
        .args(["e2e", "--mesh", "local", "--scenario"])
        .arg(scenario)
        .arg("--report-dir")
        .arg(reports)
        .assert()
}

/// Writes a scenario next to a copy of the project's manifests (subfolders included), so tests
/// can change either.
pub fn scenario_in(dir: &Path, scenario: &str) -> PathBuf {
    copy_tree(&root().join("manifests"), &dir.join("manifests"));
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, scenario).expect("writing the scenario");
    path
}

/// A project scenario written into `dir` next to its manifests' copy: `scenarios/<name>.yaml`
/// with its `../manifests` paths pointing at the copy.
pub fn project_scenario_in(dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("scenarios").join(format!("{name}.yaml")))
        .expect("reading a project scenario");
    scenario_in(dir, &text.replace("../manifests", "manifests"))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a manifests copy");
    for entry in std::fs::read_dir(from).expect("reading manifests") {
        let path = entry.expect("manifest entry").path();
        let target = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copying a manifest");
        }
    }
}

/// Reads `report.json` of a run.
pub fn read_report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("reading report.json");
    serde_json::from_str(&text).expect("parsing report.json")
}

/// Processes whose command line contains `needle`, except this test process's own tools.
pub fn processes_matching(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let cmdline = entry.path().join("cmdline");
        if let Ok(bytes) = std::fs::read(&cmdline) {
            let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if line.contains(needle) {
                out.push(line);
            }
        }
    }
    out
}
