//! `cargo xtask bench`: brings up the local mesh and measures, in one run, the harness's
//! sampling rate through it, wrk's and oha's at the same concurrency through the same Envoy,
//! each backend alone, then the tutorial's wall time, requests per verdict and peak RSS over N
//! runs. The figures and their rendering are in [`harness::bench`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use harness::bench::{self, Bench, Machine, MeshAddresses, Rate, Tutorial, TutorialRun};
use harness::prober::{HttpTarget, Probe};
use harness::report::Report;
use harness::routing::EntryPoint;

use crate::e2e;
use crate::flags::{ClusterArgs, MeshKind, WalkArgs};
use crate::{exit, project_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tutorial runs for the wall time, requests per verdict and peak RSS (their median).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Requests in flight for every rate (the scenario's concurrency per entry point, 8).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds per rate.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Rounds through the mesh: in each, the harness's prober then the load generators; the
    /// ratio to wrk is the median of the rounds'.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// One second per rate and one round (with `--runs 1`: a smoke run).
    #[arg(long)]
    pub quick: bool,
    /// Never install wrk (else it is installed with apt-get when missing and running as root).
    #[arg(long)]
    pub no_install: bool,
    /// The scenario of the tutorial runs, whose mesh is measured.
    #[arg(long, default_value = "scenarios/tutorial.yaml")]
    pub scenario: PathBuf,
    /// Where bench.json, bench.md and the runs' reports go.
    #[arg(long, default_value = "target/canary/bench")]
    pub report_dir: PathBuf,
    /// An Envoy binary (else $ENVOY_BIN, PATH, the tool cache).
    #[arg(long)]
    pub envoy: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let root = project_root();
    let dir = if args.report_dir.is_absolute() {
        args.report_dir.clone()
    } else {
        root.join(&args.report_dir)
    };
    let duration = Duration::from_secs(if args.quick { 1 } else { args.duration.max(1) });
    let walk = WalkArgs {
        scenario: args.scenario.clone(),
        mesh: MeshKind::Local,
        report_dir: Some(dir.join("mesh")),
        converge_timeout: 60,
        envoy: args.envoy.clone(),
        cluster: ClusterArgs::default(),
    };
    let prepared = e2e::prepare(&walk, walk.report_dir.as_deref())?;
    let mut notes = Vec::new();
    let wrk = bench::find_wrk(!args.no_install, &mut notes);
    let oha = bench::which("oha");
    if oha.is_none() {
        notes.push("oha is not on PATH: its rate is skipped (`cargo install oha` adds it)".into());
    }

    println!("bench: bringing up the local mesh in {}", dir.display());
    let (through_mesh, backends) = measure_mesh(&prepared, &walk, &args, duration, &wrk, &oha)?;

    let mut runs = Vec::new();
    let mut reports = Vec::new();
    for i in 1..=args.runs {
        let report_dir = dir.join(format!("tutorial-{i}"));
        let run = tutorial_run(&args, &report_dir)?;
        println!(
            "bench: tutorial run {i}/{}: {:.2} s, exit {:?}",
            args.runs, run.wall_s, run.exit_code
        );
        if let Ok(report) = Report::read(&report_dir.join(harness::report::REPORT_JSON)) {
            reports.push(report);
        }
        runs.push(run);
    }
    let names: Vec<String> = prepared
        .scenario
        .stages
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let verdicts = bench::verdict_rows(&prepared.plans, &names, &reports);
    let runs: Vec<TutorialRun> = runs
        .into_iter()
        .zip(0..)
        .map(|(mut run, i)| {
            run.session_s = reports.get(i).map(|r| r.wall_time_s);
            run
        })
        .collect();
    let result = Bench {
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        machine: Machine::this(),
        concurrency: args.concurrency,
        duration_s: duration.as_secs_f64(),
        through_mesh,
        harness_vs_wrk_rounds: Vec::new(),
        harness_vs_wrk: None,
        backends,
        tutorial: Tutorial::from_runs(runs),
        verdicts,
        notes,
    }
    .finish();
    let files = result.write(&dir)?;
    print!("\n{}", result.markdown());
    println!("\nwritten:");
    for f in files {
        println!("  {}", f.display());
    }
    Ok(exit::PASSED)
}

/// Sets up the local mesh (the same steps as a run), measures through it and straight to its
/// backends, and tears it down.
fn measure_mesh(
    prepared: &e2e::Prepared,
    walk: &WalkArgs,
    args: &Args,
    duration: Duration,
    wrk: &Option<PathBuf>,
    oha: &Option<PathBuf>,
) -> anyhow::Result<(Vec<Rate>, Vec<Rate>)> {
    let runtime = harness::session::runtime()?;
    runtime.block_on(async {
        let planned = e2e::plan(prepared, walk).await?;
        let mut mesh = planned.mesh;
        let mut result = Ok(());
        for step in &planned.setup {
            if let Err(e) = mesh.execute(step).await {
                result = Err(e.context(format!("set-up step `{}`", step.to_string().trim())));
                break;
            }
        }
        let measured = match result {
            Ok(()) => {
                let work = prepared.report_dir.join("local-mesh");
                let addrs = MeshAddresses::read(&prepared.routing, &work).await?;
                let target = mesh.target(EntryPoint::Ingress)?;
                rates(prepared, args, duration, target, &addrs, wrk, oha).await
            }
            Err(e) => Err(e),
        };
        for step in mesh.teardown() {
            if let Err(e) = mesh.execute(&step).await {
                eprintln!("warning: teardown step `{step}`: {e:#}");
            }
        }
        measured
    })
}

async fn rates(
    prepared: &e2e::Prepared,
    args: &Args,
    duration: Duration,
    target: Arc<dyn harness::prober::Target>,
    addrs: &MeshAddresses,
    wrk: &Option<PathBuf>,
    oha: &Option<PathBuf>,
) -> anyhow::Result<(Vec<Rate>, Vec<Rate>)> {
    let c = args.concurrency;
    let class = prepared
        .scenario
        .classes
        .first()
        .cloned()
        .unwrap_or_else(harness::scenario::TrafficClass::default_class);
    let probe = Probe {
        class: Arc::new(class),
        identify: prepared.scenario.identify.clone(),
        concurrency: c,
        max_requests: u64::MAX,
    };
    let (addr, host) = addrs
        .entries
        .get(&EntryPoint::Ingress)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("envoy reports no ingress listener"))?;
    let url = format!("http://{addr}{}", probe.class.path);
    let label = "ingress";
    println!(
        "bench: {} through {url} (Host {host}), c = {c}",
        bench::HARNESS
    );
    let rounds = if args.quick { 1 } else { args.rounds.max(1) };
    let mut through = Vec::new();
    for round in 1..=rounds {
        println!("bench: round {round} of {rounds}");
        let harness = bench::prober_rate(target.clone(), &probe, duration, label).await?;
        through.push(harness.in_round(round));
        for (name, program, tool_args) in [
            ("wrk", wrk, bench::wrk_args(&url, &host, c, duration)),
            ("oha", oha, bench::oha_args(&url, &host, c, duration)),
        ] {
            match program {
                Some(p) => {
                    println!("bench: {name} {}", tool_args.join(" "));
                    let rate = bench::load_tool_rate(name, p, &tool_args, label, duration);
                    through.push(rate.in_round(round));
                }
                None if round == 1 => through.push(Rate::skipped(name, label, "not installed")),
                None => {}
            }
        }
    }

    let mut backends = Vec::new();
    for (subset, addr) in &addrs.backends {
        let label = format!("backend `{subset}`");
        let url = format!("http://{addr}{}", probe.class.path);
        let host = addr.to_string();
        backends.push(match wrk {
            Some(p) => {
                let wrk_args = bench::wrk_args(&url, &host, c, duration);
                println!("bench: wrk {}", wrk_args.join(" "));
                bench::load_tool_rate("wrk", p, &wrk_args, &label, duration)
            }
            None => {
                println!("bench: {} straight to {url}", bench::HARNESS);
                let target = Arc::new(HttpTarget::new(&format!("http://{addr}"), &host)?);
                bench::prober_rate(target, &probe, duration, &label).await?
            }
        });
    }
    Ok((through, backends))
}

/// One tutorial run as its own process, as a user runs it (without cargo in front).
fn tutorial_run(args: &Args, report_dir: &Path) -> anyhow::Result<TutorialRun> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .current_dir(project_root())
        .args(["e2e", "--mesh", "local", "--scenario"])
        .arg(&args.scenario)
        .arg("--report-dir")
        .arg(report_dir)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(envoy) = &args.envoy {
        command.arg("--envoy").arg(envoy);
    }
    let (exit_code, wall_s, peak_rss_kib) = bench::run_measured(command)?;
    Ok(TutorialRun {
        wall_s,
        exit_code,
        peak_rss_kib,
        report_dir: report_dir.to_path_buf(),
        session_s: None,
    })
}
