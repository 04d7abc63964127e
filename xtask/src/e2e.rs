//! `cargo xtask e2e`: load and check the scenario, bring up a mesh, walk the stages, report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use harness::local_mesh::{LocalMesh, LocalOptions};
use harness::manifests::Manifests;
use harness::mesh::Mesh;
use harness::progress::TerminalProgress;
use harness::report::{self, Report};
use harness::routing::Routing;
use harness::run::{self, Observer, RunOptions};
use harness::scenario::Scenario;

use crate::{cluster, envoy_tool, exit, project_root};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MeshKind {
    /// A kind cluster with Istio (needs Docker).
    Kind,
    /// A cluster you already have (kubeconfig and context).
    Existing,
    /// Envoy and podinfo-compatible backends on loopback; no cluster.
    Local,
}

/// What to walk, on which mesh, and where the reports go: shared by `e2e` and `demo`.
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
}

impl WalkArgs {
    pub fn options(&self, report_dir: PathBuf) -> RunOptions {
        RunOptions {
            converge_timeout: Duration::from_secs(self.converge_timeout),
            ..RunOptions::new(report_dir)
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Print every tool command, file and Kubernetes object the run would use, and stop.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub tools: ToolArgs,
    #[command(flatten)]
    pub cluster: cluster::ClusterArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ToolArgs {
    /// An Envoy binary for the local mesh (else $ENVOY_BIN, PATH, the tool cache).
    #[arg(long)]
    pub envoy: Option<PathBuf>,
}

/// What a run needs, checked before anything starts.
pub struct Prepared {
    pub scenario: Scenario,
    pub routing: Routing,
    pub report_dir: PathBuf,
}

/// Loads and checks the scenario and its manifests: every input problem, nothing started.
pub fn prepare(
    scenario_path: &Path,
    mesh: MeshKind,
    report_dir: Option<&Path>,
) -> anyhow::Result<Prepared> {
    let root = project_root();
    let path = if scenario_path.is_absolute() || scenario_path.exists() {
        scenario_path.to_path_buf()
    } else {
        root.join(scenario_path)
    };
    let scenario = Scenario::load(&path)?;
    let manifests = Manifests::load(&scenario.manifests)?;
    let routing = Routing::resolve(&scenario, manifests)?;
    let report_dir = match report_dir {
        Some(d) => d.to_path_buf(),
        None => root
            .join("target/canary")
            .join(format!("{}-{}", scenario.name, mesh_name(mesh))),
    };
    Ok(Prepared {
        scenario,
        routing,
        report_dir,
    })
}

pub fn mesh_name(mesh: MeshKind) -> &'static str {
    match mesh {
        MeshKind::Kind => "kind",
        MeshKind::Existing => "existing",
        MeshKind::Local => "local",
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let walk = &args.walk;
    let prepared = prepare(&walk.scenario, walk.mesh, walk.report_dir.as_deref())?;
    if args.dry_run {
        return cluster::dry_run(&prepared, walk.mesh, &args.tools, &args.cluster);
    }
    let options = walk.options(prepared.report_dir.clone());
    let progress = TerminalProgress::new();
    let setup = MeshSetup {
        kind: walk.mesh,
        tools: args.tools.clone(),
        cluster: args.cluster.clone(),
    };
    drive(&prepared, &setup, options, &progress)
}

/// Which mesh to open, and with what.
#[derive(Debug, Clone)]
pub struct MeshSetup {
    pub kind: MeshKind,
    pub tools: ToolArgs,
    pub cluster: cluster::ClusterArgs,
}

/// Opens the mesh, walks the stages with `observer` watching, writes the reports and stops
/// the mesh: on success, failure and Ctrl-C (exit 130) alike. `e2e` and `demo` both use it.
pub fn drive(
    prepared: &Prepared,
    setup: &MeshSetup,
    options: RunOptions,
    observer: &(dyn Observer + Sync),
) -> anyhow::Result<u8> {
    std::fs::create_dir_all(&options.report_dir)
        .with_context(|| format!("creating {}", options.report_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let work = async {
            let name = mesh_name(setup.kind);
            observer.mesh_starting(name);
            let opened = std::time::Instant::now();
            let mesh = open_mesh(prepared, setup, &options).await;
            observer.mesh_ready(name, opened.elapsed());
            let mut mesh = mesh?;
            let report =
                run::walk(&prepared.scenario, &prepared.routing, mesh.as_mut(), &options, observer).await;
            finish(report, mesh, &options.report_dir).await
        };
        tokio::select! {
            outcome = work => outcome,
            _ = tokio::signal::ctrl_c() => {
                // Dropping `work` dropped the mesh, which stopped everything it started.
                eprintln!(
                    "interrupted: everything the harness started is stopped; partial results are in {}",
                    options.report_dir.join(report::RESULTS_JSONL).display()
                );
                Ok(exit::INTERRUPTED)
            }
        }
    })
}

/// Brings up the mesh the user asked for.
pub async fn open_mesh(
    prepared: &Prepared,
    setup: &MeshSetup,
    options: &RunOptions,
) -> anyhow::Result<Box<dyn Mesh>> {
    match setup.kind {
        MeshKind::Local => {
            let cache = harness::tools::cache_dir(&project_root());
            let envoy = tokio::task::block_in_place(|| {
                envoy_tool::ensure(setup.tools.envoy.as_deref(), &cache)
            })?;
            let local = LocalOptions {
                envoy,
                backend_program: std::env::current_exe().context("locating the xtask binary")?,
                backend_args: vec!["backend".into()],
                work_dir: options.report_dir.join("local-mesh"),
                startup_timeout: Duration::from_secs(30),
                backends: prepared.scenario.backends.clone(),
            };
            let mesh = LocalMesh::start(&prepared.routing, &local)
                .await
                .context("starting the local mesh")?;
            tracing::info!(
                "local mesh up: envoy admin http://{}, entry points {:?}",
                mesh.admin(),
                mesh.entry_points()
            );
            Ok(Box::new(mesh))
        }
        MeshKind::Kind | MeshKind::Existing => cluster::open(prepared, setup, options).await,
    }
}

/// Writes the reports, keeps diagnostics of a failure, stops the mesh, prints the table, and
/// picks the exit code.
pub async fn finish(
    report: anyhow::Result<Report>,
    mesh: Box<dyn Mesh>,
    dir: &Path,
) -> anyhow::Result<u8> {
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let _ = mesh.diagnostics(&dir.join("diagnostics")).await;
            mesh.shutdown().await?;
            return Err(e);
        }
    };
    let written = harness::render::write_all(&report, dir);
    if !report.passed {
        if let Err(e) = mesh.diagnostics(&dir.join("diagnostics")).await {
            tracing::warn!("collecting diagnostics failed: {e:#}");
        }
    }
    mesh.shutdown().await?;
    print!("{}", report::terminal_table(&report));
    let written = written.context("writing the reports")?;
    println!("reports:");
    for path in std::iter::once(dir.join(report::REPORT_JSON)).chain(written) {
        println!("  {}", path.display());
    }
    Ok(match (&report.aborted, report.passed) {
        (Some(reason), _) => {
            eprintln!("error: the run stopped early: {reason}");
            exit::BAD_INPUT
        }
        (None, true) => exit::PASSED,
        (None, false) => exit::FAILED,
    })
}

/// `cargo xtask tools`: fills the cache and says where each tool is.
pub fn tools(args: ToolArgs) -> anyhow::Result<u8> {
    let envoy = envoy_tool::ensure(
        args.envoy.as_deref(),
        &harness::tools::cache_dir(&project_root()),
    )?;
    println!("envoy {}", envoy.display());
    Ok(exit::PASSED)
}
