//! The cluster meshes through the CLI, as a user meets them: the dry run, flag problems, and a
//! machine without a Docker engine. None of these needs Docker or a network.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn xtask() -> Command {
    let mut cmd = Command::cargo_bin("xtask").expect("the xtask binary");
    cmd.env_remove("ENVOY_BIN").env("RUST_LOG", "warn");
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).expect("utf-8")
}

fn index(lines: &[&str], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", lines.join("\n")))
}

#[test]
fn the_kind_dry_run_lists_commands_files_and_objects_in_order() {
    let text = stdout(xtask().args(["e2e", "--dry-run", "--mesh", "kind"]));
    let lines: Vec<&str> = text.lines().collect();
    let docker = index(&lines, "docker info");
    let create = index(
        &lines,
        "kind create cluster --name canary-harness --kubeconfig ",
    );
    let kubeconfig = index(
        &lines,
        "kind-canary-harness.kubeconfig  (the cluster's kubeconfig",
    );
    let secret = index(&lines, "Secret istio-system/cacerts");
    let install = index(&lines, "istioctl install -y --kubeconfig ");
    let namespace = index(&lines, "apply: Namespace test");
    let virtual_service = index(&lines, "apply: VirtualService test/podinfo");
    let delete = index(
        &lines,
        "kind delete cluster --name canary-harness --kubeconfig ",
    );
    let order = [
        docker,
        create,
        kubeconfig,
        secret,
        install,
        namespace,
        virtual_service,
        delete,
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{text}");
    assert!(
        lines[create].contains("--image kindest/node:v1.36.1@sha256:"),
        "{text}"
    );
    assert!(
        lines[install].contains("--readiness-timeout 300s"),
        "{text}"
    );
    // Every tool call names the harness's kubeconfig; none reaches for ~/.kube/config.
    for line in lines.iter().filter(|l| l.contains(". run ")) {
        assert!(
            line.contains("KUBECONFIG=") && !line.contains(".kube/"),
            "{line}"
        );
    }
}

#[test]
fn keep_cluster_says_the_cluster_stays() {
    let text = stdout(xtask().args(["e2e", "--dry-run", "--mesh", "kind", "--keep-cluster"]));
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("kind delete cluster") && last.contains("skipped"),
        "{text}"
    );
}

#[test]
fn the_existing_dry_run_needs_a_kubeconfig() {
    let out = xtask()
        .args(["e2e", "--dry-run", "--mesh", "existing"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--kubeconfig PATH"), "{err}");
}

#[test]
fn the_local_dry_run_names_the_processes() {
    let dir = tempfile::tempdir().unwrap();
    let envoy = script(dir.path(), "envoy", "exit 0");
    let text = stdout(xtask().args([
        "e2e",
        "--dry-run",
        "--mesh",
        "local",
        "--envoy",
        envoy.to_str().unwrap(),
    ]));
    assert!(text.contains(" backend --version "), "{text}");
    assert!(
        text.contains(&format!("{} --config-path ", envoy.display())),
        "{text}"
    );
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn without_a_docker_engine_the_kind_mesh_stops_with_exit_2_and_points_to_local() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    script(
        &bin,
        "docker",
        "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1",
    );
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = xtask()
        .env("PATH", path)
        .args(["e2e", "--mesh", "kind", "--report-dir"])
        .arg(dir.path().join("reports"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs Docker"), "{err}");
    assert!(err.contains("Cannot connect to the Docker daemon"), "{err}");
    assert!(err.contains("--mesh local"), "{err}");
}
