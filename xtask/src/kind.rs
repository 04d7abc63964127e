//! kind: the argv of each call the harness makes, and the cluster's lifecycle.
//!
//! The cluster gets a kubeconfig file of its own (`--kubeconfig` on every call, `KUBECONFIG`
//! only in kind's environment), so the user's `~/.kube/config` and current context are never
//! touched. A [`ClusterGuard`] deletes the cluster when it drops: after a failure, on Ctrl-C,
//! and at the end of a run, unless `--keep-cluster` asks to keep it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::invocation::Invocation;

/// The cluster's name unless `--cluster-name` says otherwise.
pub const DEFAULT_CLUSTER_NAME: &str = "canary-harness";
/// What `kind create cluster --wait` is given: the control plane's readiness.
pub const CREATE_WAIT: &str = "180s";
/// kind's start-up fails now and then on loaded machines; Istio's own kind CI retries too.
pub const CREATE_ATTEMPTS: u32 = 3;
/// Bound on one `kind create cluster`: pulling the node image, then `--wait`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(900);
const PAUSE_BETWEEN_ATTEMPTS: Duration = if cfg!(test) {
    Duration::from_millis(10)
} else {
    Duration::from_secs(5)
};
/// Bound on `kind get clusters` and `kind export kubeconfig`.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on `kind delete cluster`.
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);

/// The version in `kind version`'s output (`kind v0.32.0 go1.26.7 linux/amd64`).
pub fn parse_version(output: &str) -> Option<String> {
    let mut words = output.split_whitespace();
    while let Some(word) = words.next() {
        if word == "kind" {
            return words
                .next()
                .filter(|v| v.starts_with('v') && v[1..].starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_string);
        }
    }
    None
}

/// Whether `name` is a valid kind cluster name (it becomes part of container and DNS names).
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
}

pub fn get_clusters_args() -> Vec<String> {
    args(&["get", "clusters"])
}

pub fn create_cluster_args(name: &str, kubeconfig: &Path, image: &str) -> Vec<String> {
    let kubeconfig = kubeconfig.display().to_string();
    args(&[
        "create",
        "cluster",
        "--name",
        name,
        "--kubeconfig",
        &kubeconfig,
        "--image",
        image,
        "--wait",
        CREATE_WAIT,
    ])
}

/// Writes an existing cluster's credentials into the harness's kubeconfig file.
pub fn export_kubeconfig_args(name: &str, kubeconfig: &Path) -> Vec<String> {
    let kubeconfig = kubeconfig.display().to_string();
    args(&[
        "export",
        "kubeconfig",
        "--name",
        name,
        "--kubeconfig",
        &kubeconfig,
    ])
}

/// Copies the nodes' logs (kubelet, containerd, pods) into `dir`, for a failed run.
pub fn export_logs_args(name: &str, dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    args(&["export", "logs", &dir, "--name", name])
}

pub fn delete_cluster_args(name: &str, kubeconfig: &Path) -> Vec<String> {
    let kubeconfig = kubeconfig.display().to_string();
    args(&[
        "delete",
        "cluster",
        "--name",
        name,
        "--kubeconfig",
        &kubeconfig,
    ])
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// The cluster names in `kind get clusters`'s output.
pub fn parse_clusters(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("No kind clusters"))
        .map(str::to_string)
        .collect()
}

/// One kind cluster, reached through the harness's own kubeconfig file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub kind: PathBuf,
    pub name: String,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// kind with `args`; `KUBECONFIG` points at the cluster's file in kind's environment only.
    pub fn invocation(&self, args: Vec<String>) -> Invocation {
        Invocation::new(&self.kind, args).env("KUBECONFIG", self.kubeconfig.display().to_string())
    }

    pub fn get_clusters(&self) -> Invocation {
        self.invocation(get_clusters_args())
    }

    pub fn create(&self, image: &str) -> Invocation {
        self.invocation(create_cluster_args(&self.name, &self.kubeconfig, image))
    }

    pub fn export_kubeconfig(&self) -> Invocation {
        self.invocation(export_kubeconfig_args(&self.name, &self.kubeconfig))
    }

    pub fn export_logs(&self, dir: &Path) -> Invocation {
        self.invocation(export_logs_args(&self.name, dir))
    }

    pub fn delete(&self) -> Invocation {
        self.invocation(delete_cluster_args(&self.name, &self.kubeconfig))
    }

    /// `kind delete cluster`, blocking, bounded; for `Drop`, where nothing can be awaited.
    fn delete_blocking(&self) -> anyhow::Result<()> {
        let run = self.delete();
        let mut child = std::process::Command::new(&run.program)
            .args(&run.args)
            .envs(run.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting `{}`", run.display()))?;
        let deadline = Instant::now() + DELETE_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::ensure!(status.success(), "`{}` failed ({status})", run.display());
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "`{}` did not finish within {}",
                    run.display(),
                    humantime::format_duration(DELETE_TIMEOUT)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether the run made the cluster or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Created,
    Reused,
}

/// Deletes the cluster when dropped, unless told to keep it.
#[derive(Debug)]
pub struct ClusterGuard {
    cluster: Cluster,
    keep: bool,
    /// False once the cluster is deleted (or handed over to the user).
    armed: bool,
}

impl ClusterGuard {
    pub fn new(cluster: Cluster, keep: bool) -> Self {
        Self {
            cluster,
            keep,
            armed: true,
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The orderly end: deletes the cluster (or says how to, when it is kept).
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.armed = false;
        if self.keep {
            self.say_kept();
            return Ok(());
        }
        tracing::info!("deleting kind cluster `{}`", self.cluster.name);
        self.cluster
            .delete()
            .run(DELETE_TIMEOUT, None)
            .await
            .with_context(|| format!("deleting kind cluster `{}`", self.cluster.name))?;
        Ok(())
    }

    /// Copies the nodes' logs into `dir` (diagnostics of a failure).
    pub async fn export_logs(&self, dir: &Path) -> anyhow::Result<()> {
        self.cluster
            .export_logs(dir)
            .run(QUERY_TIMEOUT * 3, None)
            .await
            .map(|_| tracing::info!("kind cluster logs: {}", dir.display()))
    }

    fn say_kept(&self) {
        tracing::info!(
            "kept kind cluster `{}` (--keep-cluster); reach it with KUBECONFIG={}; delete it with `{}`",
            self.cluster.name,
            self.cluster.kubeconfig.display(),
            self.cluster.delete().display()
        );
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        if self.keep {
            self.say_kept();
            return;
        }
        tracing::info!("deleting kind cluster `{}`", self.cluster.name);
        if let Err(e) = self.cluster.delete_blocking() {
            tracing::error!(
                "{e:#}; delete the cluster by hand: `{}`",
                self.cluster.delete().display()
            );
        }
    }
}

/// Reuses the cluster if kind has one of that name, else creates it (retrying a failed
/// start); either way its credentials end up in `cluster.kubeconfig`. The guard is armed
/// before the first attempt, so a half-made cluster is deleted too.
pub async fn provision(
    cluster: Cluster,
    image: &str,
    keep: bool,
    logs: &Path,
) -> anyhow::Result<(ClusterGuard, Origin)> {
    if let Some(dir) = cluster.kubeconfig.parent() {
        create_private_dir(dir)?;
    }
    let existing = parse_clusters(&cluster.get_clusters().run(QUERY_TIMEOUT, None).await?);
    let guard = ClusterGuard::new(cluster, keep);
    let cluster = guard.cluster().clone();
    if existing.contains(&cluster.name) {
        tracing::info!(
            "kind cluster `{}` exists: reusing it ({} after the run)",
            cluster.name,
            if keep { "kept" } else { "deleted" }
        );
        cluster
            .export_kubeconfig()
            .run(QUERY_TIMEOUT, None)
            .await
            .context("writing the existing cluster's kubeconfig")?;
        return Ok((guard, Origin::Reused));
    }
    let mut last = None;
    for attempt in 1..=CREATE_ATTEMPTS {
        tracing::info!(
            "creating kind cluster `{}` ({}; attempt {attempt}/{CREATE_ATTEMPTS}, up to {CREATE_WAIT} for the control plane)",
            cluster.name,
            image
        );
        let log = logs.join(format!("kind-create-{attempt}.log"));
        match cluster.create(image).run(CREATE_TIMEOUT, Some(&log)).await {
            Ok(_) => return Ok((guard, Origin::Created)),
            Err(e) => {
                tracing::warn!(
                    "kind create cluster failed (attempt {attempt}/{CREATE_ATTEMPTS}): {e:#}"
                );
                last = Some(e);
                if attempt < CREATE_ATTEMPTS {
                    if let Err(e) = cluster.delete().run(DELETE_TIMEOUT, None).await {
                        tracing::warn!("cleaning up after the failed attempt: {e:#}");
                    }
                    tokio::time::sleep(PAUSE_BETWEEN_ATTEMPTS).await;
                }
            }
        }
    }
    Err(last.expect("at least one attempt").context(format!(
        "kind could not create cluster `{}` in {CREATE_ATTEMPTS} attempts (logs in {})",
        cluster.name,
        logs.display()
    )))
}

/// Creates `dir` (and parents) readable by the user only: it holds credentials.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::os::unix::fs::PermissionsExt;

    #[rstest]
    #[case::get(get_clusters_args(), "get clusters")]
    #[case::create(
        create_cluster_args(
            "canary-harness",
            Path::new("/s/kind-canary-harness.kubeconfig"),
            "kindest/node:v1.36.1@sha256:ab"
        ),
        "create cluster --name canary-harness --kubeconfig /s/kind-canary-harness.kubeconfig --image kindest/node:v1.36.1@sha256:ab --wait 180s"
    )]
    #[case::export(
        export_kubeconfig_args("c1", Path::new("/s/k")),
        "export kubeconfig --name c1 --kubeconfig /s/k"
    )]
    #[case::export_logs(
        export_logs_args("c1", Path::new("/r/cluster/kind-logs")),
        "export logs /r/cluster/kind-logs --name c1"
    )]
    #[case::delete(
        delete_cluster_args("c1", Path::new("/s/k")),
        "delete cluster --name c1 --kubeconfig /s/k"
    )]
    fn argv(#[case] args: Vec<String>, #[case] expected: &str) {
        assert_eq!(args.join(" "), expected);
    }

    #[test]
    fn every_call_carries_the_kubeconfig_in_its_own_environment() {
        let cluster = Cluster {
            kind: "/t/kind".into(),
            name: "c1".into(),
            kubeconfig: "/s/k".into(),
        };
        for run in [
            cluster.get_clusters(),
            cluster.create("img"),
            cluster.export_kubeconfig(),
            cluster.delete(),
        ] {
            assert_eq!(run.env, [("KUBECONFIG".to_string(), "/s/k".to_string())]);
            assert_eq!(run.program, Path::new("/t/kind"));
        }
    }

    #[rstest]
    #[case("kind v0.32.0 go1.26.7 linux/amd64", Some("v0.32.0"))]
    #[case(
        "kind v0.33.0-alpha+fed268827e21ca go1.26.7 linux/amd64\n",
        Some("v0.33.0-alpha+fed268827e21ca")
    )]
    #[case("kind version", None)]
    #[case("", None)]
    fn versions(#[case] output: &str, #[case] version: Option<&str>) {
        assert_eq!(parse_version(output).as_deref(), version);
    }

    #[rstest]
    #[case("canary-harness", true)]
    #[case("ci.2", true)]
    #[case("", false)]
    #[case("Canary", false)]
    #[case("-x", false)]
    #[case("a b", false)]
    fn cluster_names(#[case] name: &str, #[case] valid: bool) {
        assert_eq!(valid_cluster_name(name), valid);
    }

    #[test]
    fn cluster_listing() {
        assert_eq!(parse_clusters("a\nkind\n\n"), ["a", "kind"]);
        assert!(parse_clusters("No kind clusters found.\n").is_empty());
    }

    /// A fake kind that logs its argv (one call a line) and knows the clusters in `$CLUSTERS`.
    fn fake_kind(dir: &Path, clusters: &str, create_fails: bool) -> (PathBuf, PathBuf) {
        let calls = dir.join("calls");
        let kind = dir.join("kind");
        let create = if create_fails { "exit 1" } else { "exit 0" };
        std::fs::write(
            &kind,
            format!(
                "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1 $2\" in\n  'get clusters') printf '{clusters}' ;;\n  'create cluster') echo 'ERROR: failed to create cluster' >&2; {create} ;;\nesac\n",
                calls = calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
        (kind, calls)
    }

    fn calls(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(" --kubeconfig").next().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_new_cluster_is_created_and_deleted_when_the_guard_drops() {
        let dir = tempfile::tempdir().unwrap();
        let (kind, log) = fake_kind(dir.path(), "other\\n", false);
        let cluster = Cluster {
            kind,
            name: "c1".into(),
            kubeconfig: dir.path().join("state/kind-c1.kubeconfig"),
        };
        let (guard, origin) = provision(cluster, "img", false, &dir.path().join("logs"))
            .await
            .unwrap();
        assert_eq!(origin, Origin::Created);
        let mode = std::fs::metadata(dir.path().join("state"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(guard);
        assert_eq!(
            calls(&log),
            [
                "get clusters",
                "create cluster --name c1",
                "delete cluster --name c1"
            ]
        );
    }

    #[tokio::test]
    async fn an_existing_cluster_is_reused_and_kept_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let (kind, log) = fake_kind(dir.path(), "c1\\n", false);
        let cluster = Cluster {
            kind,
            name: "c1".into(),
            kubeconfig: dir.path().join("k"),
        };
        let (guard, origin) = provision(cluster, "img", true, dir.path()).await.unwrap();
        assert_eq!(origin, Origin::Reused);
        guard.finish().await.unwrap();
        assert_eq!(calls(&log), ["get clusters", "export kubeconfig --name c1"]);
    }

    #[tokio::test]
    async fn a_failing_create_is_retried_then_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let (kind, log) = fake_kind(dir.path(), "", true);
        let cluster = Cluster {
            kind,
            name: "c1".into(),
            kubeconfig: dir.path().join("k"),
        };
        let err = provision(cluster, "img", false, &dir.path().join("logs"))
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("in 3 attempts"), "{msg}");
        assert!(msg.contains("failed to create cluster"), "{msg}");
        let calls = calls(&log);
        assert_eq!(calls.iter().filter(|c| c.starts_with("create")).count(), 3);
        // Two clean-ups between attempts, and the guard's after the last.
        assert_eq!(calls.iter().filter(|c| c.starts_with("delete")).count(), 3);
        assert_eq!(calls.last().unwrap(), "delete cluster --name c1");
        assert!(dir.path().join("logs/kind-create-3.log").exists());
    }

    #[tokio::test]
    async fn finish_deletes_once() {
        let dir = tempfile::tempdir().unwrap();
        let (kind, log) = fake_kind(dir.path(), "", false);
        let guard = ClusterGuard::new(
            Cluster {
                kind,
                name: "c1".into(),
                kubeconfig: dir.path().join("k"),
            },
            false,
        );
        guard.finish().await.unwrap();
        assert_eq!(calls(&log), ["delete cluster --name c1"]);
    }
}
