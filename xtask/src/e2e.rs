//! `cargo xtask e2e`: check the input, plan the mesh, then either print the plan (`--dry-run`)
//! or run it as a session (set-up, the stages, the reports, the teardown) and print the
//! results. `demo` drives the same functions with a narrating observer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use harness::cluster::{self, ExistingConfig, KindConfig, ToolPaths};
use harness::local_mesh::{self, LocalOptions};
use harness::manifests::Manifests;
use harness::mesh::Planned;
use harness::progress::TerminalProgress;
use harness::report;
use harness::routing::Routing;
use harness::run::{Observer, TestPlans};
use harness::scenario::Scenario;
use harness::session::{self, Outcome, Session};
use harness::tools::envoy::EnvoySource;

use crate::flags::{MeshKind, WalkArgs};
use crate::{exit, project_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Print every step of the run (tools, commands with their argv, files, Kubernetes objects,
    /// waits with their bounds, and the teardown) and stop.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a run needs, checked before anything starts.
pub struct Prepared {
    pub scenario: Scenario,
    pub routing: Routing,
    pub report_dir: PathBuf,
    /// Names what the run makes on a cluster (the mesh client pod).
    pub run_id: String,
    /// The plan of every test, made before anything starts.
    pub plans: TestPlans,
}

/// Loads and checks the scenario and its manifests: every input problem, nothing started.
pub fn prepare(walk: &WalkArgs, report_dir: Option<&Path>) -> anyhow::Result<Prepared> {
    walk.cluster.check(walk.mesh)?;
    let root = project_root();
    let path = if walk.scenario.is_absolute() || walk.scenario.exists() {
        walk.scenario.clone()
    } else {
        root.join(&walk.scenario)
    };
    let scenario = Scenario::load(&path)?;
    let manifests = Manifests::load_all(&scenario.manifests)?;
    let routing = Routing::resolve(&scenario, manifests)?;
    let plans = harness::run::plan_tests(&scenario, routing.entry_points().len())?;
    let report_dir = match report_dir {
        Some(d) => d.to_path_buf(),
        None => root
            .join("target/canary")
            .join(format!("{}-{}", scenario.name, walk.mesh.name())),
    };
    Ok(Prepared {
        scenario,
        routing,
        report_dir,
        run_id: session::new_run_id(),
        plans,
    })
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let prepared = prepare(&args.walk, args.walk.report_dir.as_deref())?;
    drive(
        &prepared,
        &args.walk,
        &TerminalProgress::new(),
        args.dry_run,
    )
}

/// Plans the mesh, then prints the plan (`dry_run`) or runs it with `observer` watching, and
/// prints the results; returns the exit code.
pub fn drive(
    prepared: &Prepared,
    walk: &WalkArgs,
    observer: &dyn Observer,
    dry_run: bool,
) -> anyhow::Result<u8> {
    let runtime = harness::session::runtime()?;
    runtime.block_on(async {
        let mut planned = plan(prepared, walk).await?;
        if dry_run {
            println!(
                "dry run: scenario `{}` on the {} mesh; nothing is run. In order, the run would:",
                prepared.scenario.name,
                walk.mesh.name()
            );
            let bound = walk.options(prepared.report_dir.clone()).converge_timeout;
            print!("{}", planned.describe(&prepared.scenario, bound)?);
            return Ok(exit::PASSED);
        }
        let cancel = session::cancel_on_signals();
        let options = walk.options(prepared.report_dir.clone());
        let finished = Session {
            scenario: &prepared.scenario,
            routing: &prepared.routing,
            plans: &prepared.plans,
            options: &options,
            observer,
        }
        .run(planned, cancel)
        .await?;
        if !finished.report.stages.is_empty() {
            print!("{}", report::terminal_table(&finished.report));
        } else {
            println!("{}", harness::render::headline(&finished.report));
        }
        println!("reports:");
        for path in &finished.files {
            println!("  {}", path.display());
        }
        for e in &finished.teardown_errors {
            eprintln!("warning: the teardown left something behind: {e}");
        }
        Ok(match finished.outcome {
            Outcome::Passed => exit::PASSED,
            Outcome::Failed => exit::FAILED,
            Outcome::Aborted => {
                let reason = finished.report.aborted.as_deref().unwrap_or("unknown");
                eprintln!("error: the run stopped early: {reason}");
                exit::BAD_INPUT
            }
            Outcome::Interrupted => {
                eprintln!(
                    "interrupted: everything the run started is stopped; the finished stages are in {}",
                    options.report_dir.join(report::REPORT_JSON).display()
                );
                exit::INTERRUPTED
            }
        })
    })
}

/// The plan of the mesh the flags name.
pub async fn plan(prepared: &Prepared, walk: &WalkArgs) -> anyhow::Result<Planned> {
    let root = project_root();
    let cache = harness::tools::cache_dir(&root);
    let state = root.join("target/canary/state");
    let logs = prepared.report_dir.join("cluster");
    let args = &walk.cluster;
    let wait = Duration::from_secs(args.setup_timeout);
    let tools = ToolPaths {
        kind: args.kind.clone(),
        istioctl: args.istioctl.clone(),
    };
    match walk.mesh {
        MeshKind::Local => {
            let options = LocalOptions {
                envoy: EnvoySource::resolve(walk.envoy.as_deref(), &cache)?,
                backend_program: std::env::current_exe().context("locating the xtask binary")?,
                backend_args: vec!["backend".into()],
                work_dir: prepared.report_dir.join("local-mesh"),
                startup_timeout: Duration::from_secs(30),
                backends: prepared.scenario.backends.clone(),
            };
            Ok(local_mesh::plan(&prepared.routing, &options))
        }
        MeshKind::Kind => {
            let config = KindConfig {
                name: args.cluster_name.clone(),
                keep: args.keep_cluster,
                state,
                cache,
                logs,
                wait,
                run_id: prepared.run_id.clone(),
                docker: "docker".into(),
                tools,
            };
            cluster::plan_kind(&config, &prepared.routing).await
        }
        MeshKind::Existing => {
            let config = ExistingConfig {
                kubeconfig: args.kubeconfig.clone().context("--kubeconfig is checked")?,
                context: args.context.clone(),
                install_istio: args.install_istio,
                adopt: args.adopt,
                keep: args.keep,
                state,
                cache,
                logs,
                wait,
                run_id: prepared.run_id.clone(),
                tools,
            };
            cluster::plan_existing(&config, &prepared.routing).await
        }
    }
}

/// `cargo xtask tools`: fills the cache and says where each tool is.
pub fn tools(envoy: Option<PathBuf>) -> anyhow::Result<u8> {
    let envoy = harness::tools::envoy::ensure(
        envoy.as_deref(),
        &harness::tools::cache_dir(&project_root()),
    )?;
    println!("envoy {}", envoy.display());
    Ok(exit::PASSED)
}
