//! The flags of the commands that walk a scenario (`e2e`, `demo`), and their checks: every
//! flag problem is found before anything starts, with the flag and the fix.

use std::path::PathBuf;
use std::time::Duration;

use harness::cluster::kind;
use harness::input_error::{InputError, InputErrors};
use harness::run::RunOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MeshKind {
    /// A kind cluster with Istio (needs Docker).
    Kind,
    /// A cluster you already have (kubeconfig and context).
    Existing,
    /// Envoy and podinfo-compatible backends on loopback; no cluster.
    Local,
}

impl MeshKind {
    pub fn name(self) -> &'static str {
        match self {
            MeshKind::Kind => "kind",
            MeshKind::Existing => "existing",
            MeshKind::Local => "local",
        }
    }
}

/// What to walk, on which mesh, and where the reports go.
#[derive(Debug, Clone, clap::Args)]
pub struct WalkArgs {
    /// The scenario to walk.
    #[arg(long, default_value = "scenarios/tutorial.yaml")]
    pub scenario: PathBuf,
    /// Where the mesh runs.
    #[arg(long, value_enum, default_value_t = MeshKind::Kind)]
    pub mesh: MeshKind,
    /// Where reports go (default: target/canary/<scenario>-<mesh>, `-demo` added for the demo).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Bound on waiting for the proxies to route with a stage's weights, in seconds.
    #[arg(long, default_value_t = 60)]
    pub converge_timeout: u64,
    /// An Envoy binary for the local mesh (else $ENVOY_BIN, PATH, the tool cache).
    #[arg(long)]
    pub envoy: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl WalkArgs {
    pub fn options(&self, report_dir: PathBuf) -> RunOptions {
        RunOptions {
            converge_timeout: Duration::from_secs(self.converge_timeout),
            ..RunOptions::new(report_dir)
        }
    }
}

/// Flags of the cluster meshes.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Keep the kind cluster after the run (it is deleted otherwise, also on failure and
    /// Ctrl-C). The next run reuses it.
    #[arg(long)]
    pub keep_cluster: bool,
    /// Name of the kind cluster; one of that name that the harness created is reused.
    #[arg(long, default_value = kind::DEFAULT_CLUSTER_NAME)]
    pub cluster_name: String,
    /// With --mesh existing: the kubeconfig file of your cluster (read, never written).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// With --mesh existing: the context to use (default: the file's current context).
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
    /// With --mesh existing: install Istio (istioctl, a plug-in CA created only if the cluster
    /// has none) when the cluster has no Istio at all.
    #[arg(long)]
    pub install_istio: bool,
    /// With --mesh existing: take over objects of the manifests that exist and that someone
    /// else manages (server-side apply, forced). They stay after the run.
    #[arg(long)]
    pub adopt: bool,
    /// With --mesh existing: leave what the run created (it is deleted otherwise).
    #[arg(long)]
    pub keep: bool,
    /// Bound on each wait of the cluster set-up (istiod, the injector, rollouts, pods), in
    /// seconds.
    #[arg(long, default_value_t = 300)]
    pub setup_timeout: u64,
    /// A kind binary to use as it is (else the pinned one from PATH, the cache or a download).
    #[arg(long)]
    pub kind: Option<PathBuf>,
    /// An istioctl binary to use as it is (else the pinned one from PATH, the cache or a
    /// download).
    #[arg(long)]
    pub istioctl: Option<PathBuf>,
}

impl Default for ClusterArgs {
    fn default() -> Self {
        Self {
            keep_cluster: false,
            cluster_name: kind::DEFAULT_CLUSTER_NAME.to_string(),
            kubeconfig: None,
            context: None,
            install_istio: false,
            adopt: false,
            keep: false,
            setup_timeout: 300,
            kind: None,
            istioctl: None,
        }
    }
}

impl ClusterArgs {
    /// Every flag problem for this mesh, before anything starts.
    pub fn check(&self, mesh: MeshKind) -> Result<(), InputErrors> {
        let mut errors = Vec::new();
        let mut flag = |name: &str, problem: String, fix: &str| {
            errors.push(InputError::new(name, "", problem, fix));
        };
        let for_existing = [
            (self.kubeconfig.is_some(), "--kubeconfig"),
            (self.context.is_some(), "--context"),
            (self.install_istio, "--install-istio"),
            (self.adopt, "--adopt"),
            (self.keep, "--keep"),
        ];
        if mesh != MeshKind::Kind && self.kind.is_some() {
            flag(
                "--kind",
                "--kind is for --mesh kind".into(),
                "drop the flag",
            );
        }
        match mesh {
            MeshKind::Kind => {
                if !kind::valid_cluster_name(&self.cluster_name) {
                    flag(
                        "--cluster-name",
                        format!("`{}` is not a valid kind cluster name", self.cluster_name),
                        "use lower-case letters, digits, `-` and `.` (at most 50), starting with a letter or digit",
                    );
                }
                for (set, f) in for_existing {
                    if set {
                        flag(
                            f,
                            format!(
                                "{f} is for --mesh existing; on the kind mesh the harness owns the cluster (its own kubeconfig under target/canary/state/, Istio installed, everything deleted with the cluster)"
                            ),
                            "drop the flag, or use --mesh existing to run against your cluster",
                        );
                    }
                }
            }
            MeshKind::Existing => {
                match &self.kubeconfig {
                    None => flag(
                        "--kubeconfig",
                        "--mesh existing needs the kubeconfig file of your cluster".into(),
                        "pass --kubeconfig PATH (and --context NAME unless its current context is the cluster)",
                    ),
                    Some(path) if !path.is_file() => flag(
                        "--kubeconfig",
                        format!("{} is not a file", path.display()),
                        "point --kubeconfig at your cluster's kubeconfig file",
                    ),
                    Some(_) => {}
                }
                if self.keep_cluster {
                    flag(
                        "--keep-cluster",
                        "--keep-cluster is for --mesh kind; the harness never deletes a cluster it did not create".into(),
                        "drop the flag (--keep leaves the objects the run created)",
                    );
                }
            }
            MeshKind::Local => {
                for (set, f) in for_existing.into_iter().chain([
                    (self.keep_cluster, "--keep-cluster"),
                    (self.istioctl.is_some(), "--istioctl"),
                ]) {
                    if set {
                        flag(
                            f,
                            format!("{f} has no meaning for the local mesh, which has no cluster"),
                            "drop the flag, or pick --mesh kind or --mesh existing",
                        );
                    }
                }
            }
        }
        if self.setup_timeout == 0 {
            flag(
                "--setup-timeout",
                "a bound of 0 seconds lets no wait succeed".into(),
                "give a number of seconds, e.g. 300",
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(InputErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rstest::rstest;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    #[rstest]
    #[case::kind_with_kubeconfig(MeshKind::Kind, &["--kubeconfig", "/x"], "--kubeconfig is for --mesh existing")]
    #[case::kind_with_adopt(MeshKind::Kind, &["--adopt"], "--adopt is for --mesh existing")]
    #[case::bad_name(MeshKind::Kind, &["--cluster-name", "Bad Name"], "not a valid kind cluster name")]
    #[case::existing_without_kubeconfig(MeshKind::Existing, &[], "needs the kubeconfig file")]
    #[case::existing_missing_file(MeshKind::Existing, &["--kubeconfig", "/nonexistent/config"], "is not a file")]
    #[case::existing_keep_cluster(MeshKind::Existing, &["--kubeconfig", "/nonexistent/config", "--keep-cluster"], "never deletes a cluster it did not create")]
    #[case::local_keep(MeshKind::Local, &["--keep-cluster"], "no meaning for the local mesh")]
    #[case::local_install(MeshKind::Local, &["--install-istio"], "no meaning for the local mesh")]
    #[case::zero_timeout(MeshKind::Kind, &["--setup-timeout", "0"], "0 seconds")]
    fn flag_problems_are_input_errors(
        #[case] mesh: MeshKind,
        #[case] flags: &[&str],
        #[case] problem: &str,
    ) {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(flags.iter().copied())).unwrap();
        let err = cli.cluster.check(mesh).unwrap_err().to_string();
        assert!(err.contains(problem), "{err}");
    }

    #[test]
    fn the_defaults_match_the_flags() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().cluster;
        let default = ClusterArgs::default();
        assert_eq!(parsed.cluster_name, default.cluster_name);
        assert_eq!(parsed.setup_timeout, default.setup_timeout);
        default.check(MeshKind::Kind).unwrap();
        default.check(MeshKind::Local).unwrap();
    }
}
