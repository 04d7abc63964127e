//! The cluster meshes through the CLI, as a user meets them: the dry run (against a fake API
//! server for `--mesh existing`), the refusals, and a machine without a Docker engine. None of
//! these needs Docker or a network.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use harness::ca::CaBundle;
use harness::fake_api::FakeApi;
use serde_json::json;

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
    let docker = index(&lines, "run     docker info");
    let marker = index(&lines, "kind-canary-harness.created-by-canary-harness");
    let create = index(&lines, "create cluster --name canary-harness --kubeconfig ");
    let secret = index(&lines, "apply   Secret istio-system/cacerts — create");
    let install = index(&lines, " install -y --kubeconfig ");
    let namespace = index(&lines, "apply   Namespace test");
    let virtual_service = index(&lines, "apply   VirtualService test/podinfo");
    let gateway = index(&lines, "open    ingress entry point: port-forward");
    let end = index(&lines, "at the end");
    let delete = end
        + index(
            &lines[end..],
            "delete cluster --name canary-harness --kubeconfig ",
        );
    let order = [
        docker,
        marker,
        create,
        secret,
        install,
        namespace,
        virtual_service,
        gateway,
        end,
        delete,
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{text}");
    assert!(
        lines[create].contains("--image kindest/node:v1.36.1@sha256:"),
        "{text}"
    );
    assert!(
        lines[create].contains("wait at most 3m for the node of kind cluster `canary-harness` to be Ready; up to 3 attempts"),
        "{text}"
    );
    assert!(
        lines[install].contains("--readiness-timeout 300s"),
        "{text}"
    );
    // Every tool call names the harness's kubeconfig; none reaches for ~/.kube/config.
    for line in lines
        .iter()
        .filter(|l| l.contains("/kind ") || l.contains("/istioctl "))
    {
        if line.contains(". run ") {
            assert!(
                line.contains("KUBECONFIG=") && !line.contains(".kube/"),
                "{line}"
            );
        }
    }
}

#[test]
fn keep_cluster_says_the_cluster_stays() {
    let text = stdout(xtask().args(["e2e", "--dry-run", "--mesh", "kind", "--keep-cluster"]));
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("skip    deleting kind cluster `canary-harness`: kept (--keep-cluster)"),
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

/// A user's cluster on a fake API server, served from this test's runtime while the CLI runs.
struct UserCluster {
    runtime: tokio::runtime::Runtime,
    api: FakeApi,
    dir: tempfile::TempDir,
}

impl UserCluster {
    fn new(istio: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let api = runtime.block_on(FakeApi::start());
        if istio {
            let ca = CaBundle::generate().unwrap();
            api.install_istio("default", &ca.root_cert_pem, true);
        }
        let dir = tempfile::tempdir().unwrap();
        api.write_kubeconfig(&dir.path().join("kubeconfig"));
        Self { runtime, api, dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn dry_run(&self, extra: &[&str]) -> assert_cmd::assert::Assert {
        let _guard = self.runtime.enter();
        xtask()
            .args(["e2e", "--dry-run", "--mesh", "existing", "--kubeconfig"])
            .arg(self.kubeconfig())
            .args(extra)
            .assert()
    }
}

#[test]
fn the_existing_dry_run_writes_nothing_and_shows_every_write_it_would_make() {
    let cluster = UserCluster::new(true);
    let out = cluster.dry_run(&[]).code(0).get_output().clone();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("skip    installing Istio: it is installed"),
        "{text}"
    );
    assert!(!text.contains("cacerts —"), "{text}");
    assert!(
        text.contains("apply   Deployment test/podinfo-ga — server-side apply, new object"),
        "{text}"
    );
    assert!(text.contains("delete  Namespace test"), "{text}");
    // Planning only read.
    let writes = cluster.api.writes();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(!cluster.api.requests().is_empty());
}

#[rstest::rstest]
#[case::no_istio(false, None, &["no Istio on the cluster", "--install-istio"])]
#[case::unmanaged_object(true, Some("podinfo-canary"), &["Deployment test/podinfo-canary exists", "kubectl", "--adopt"])]
fn the_existing_dry_run_refuses_what_the_user_did_not_allow(
    #[case] istio: bool,
    #[case] unmanaged: Option<&str>,
    #[case] says: &[&str],
) {
    let cluster = UserCluster::new(istio);
    if let Some(name) = unmanaged {
        cluster.api.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "test", "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "x"}]}}}}));
    }
    let out = cluster.dry_run(&[]).code(2).get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr);
    for s in says {
        assert!(err.contains(s), "stderr lacks {s:?}:\n{err}");
    }
    assert!(cluster.api.writes().is_empty());
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
    assert!(text.contains("stop    envoy"), "{text}");
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
    let kind = script(&bin, "kind", "echo \"$*\" >> calls; exit 0");
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let reports = dir.path().join("reports");
    let out = xtask()
        .env("PATH", path)
        .current_dir(dir.path())
        .args(["e2e", "--mesh", "kind", "--kind"])
        .arg(&kind)
        .arg("--istioctl")
        .arg(&kind)
        .arg("--report-dir")
        .arg(&reports)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs Docker"), "{err}");
    assert!(err.contains("Cannot connect to the Docker daemon"), "{err}");
    assert!(err.contains("--mesh local"), "{err}");
    // The Docker check comes first: kind was asked for its clusters while planning, and
    // nothing else.
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["get clusters"],
        "{calls}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap())
            .unwrap();
    assert!(report["aborted"].as_str().unwrap().contains("docker info"));
}
