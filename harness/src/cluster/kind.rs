//! kind: the argv of each call the harness makes, and the mark of a cluster it created.
//!
//! The cluster gets a kubeconfig file of its own (`--kubeconfig` on every call, `KUBECONFIG`
//! only in kind's environment), so the user's `~/.kube/config` and current context are never
//! touched. A cluster is deleted at the end of a run only if the harness created it (its mark
//! is in the state folder) and `--keep-cluster` was not given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::invocation::Invocation;

/// The cluster's name unless `--cluster-name` says otherwise.
pub const DEFAULT_CLUSTER_NAME: &str = "canary-harness";
/// What `kind create cluster --wait` is given: the control plane's readiness.
pub const CREATE_WAIT: &str = "180s";
/// kind's start-up fails now and then on loaded machines; Istio's own kind CI retries too.
pub const CREATE_ATTEMPTS: u32 = 3;
/// Bound on one `kind create cluster`: pulling the node image, then `--wait`.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(900);
/// Bound on `kind get clusters`, `kind get kubeconfig` and `kind export kubeconfig`.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

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

    pub fn get_kubeconfig(&self) -> Invocation {
        self.invocation(get_kubeconfig_args(&self.name))
    }
}

/// The file that marks a kind cluster as made by the harness: only such a cluster is reused
/// or deleted by a run.
pub fn marker_path(state: &Path, name: &str) -> PathBuf {
    state.join(format!("kind-{name}.created-by-canary-harness"))
}

/// Writes the ownership mark (before `kind create`, so that a half-made cluster is ours too).
pub fn write_marker(path: &Path, cluster: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let text = format!(
        "kind cluster `{cluster}` was created by canary-harness (process {}, {}).\nA run deletes it unless --keep-cluster; delete this file and the cluster by hand with `kind delete cluster --name {cluster}`.\n",
        std::process::id(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `kind get kubeconfig --name <name>`: prints the cluster's kubeconfig, writes nothing.
pub fn get_kubeconfig_args(name: &str) -> Vec<String> {
    args(&["get", "kubeconfig", "--name", name])
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
}
