//! `cargo xtask demo`: the classic Istio canary tutorial, section by section, narrated over a
//! real run.
//!
//! It is the `e2e` run with a narrator: the set-up is told from the routing state the run
//! resolved, and the stages are told by an [`Observer`] of the same `e2e::drive` (the
//! VirtualService change as a YAML diff, the split filling up as answers arrive, the verdict).
//! Latency and the traffic shift are then read back from the run's report.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use console::Style;
use harness::envoy_config;
use harness::istio::VirtualService;
use harness::prober::Sample;
use harness::progress::TerminalProgress;
use harness::render;
use harness::report::{self, EntryReport, Report, StageReport};
use harness::routing::EntryPoint;
use harness::run::Observer;
use harness::scenario::Stage;
use harness::stats::Plan;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use similar::{ChangeTag, TextDiff};
use tokio::sync::mpsc;

use crate::e2e::{self, MeshKind, MeshSetup, Prepared, mesh_name};
use crate::{cluster, envoy_tool, exit, project_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub walk: e2e::WalkArgs,
    /// Wait for Enter between sections (when stdin is a terminal; otherwise run straight through).
    #[arg(long)]
    pub step: bool,
    #[command(flatten)]
    pub tools: e2e::ToolArgs,
    #[command(flatten)]
    pub cluster: cluster::ClusterArgs,
}

/// Width of the split bars, in cells.
const BAR: usize = 40;
const BASELINE_CELL: char = '█';
const CANARY_CELL: char = '▒';
const EMPTY_CELL: char = '·';

pub fn run(args: Args) -> anyhow::Result<u8> {
    let walk = &args.walk;
    let mut prepared = e2e::prepare(&walk.scenario, walk.mesh, walk.report_dir.as_deref())?;
    if walk.report_dir.is_none() {
        prepared.report_dir = demo_dir(&prepared.report_dir);
    }
    let setup = MeshSetup {
        kind: walk.mesh,
        tools: args.tools.clone(),
        cluster: args.cluster.clone(),
    };
    let narrator = Narrator::new(&prepared, args.step);
    narrator.introduction(&prepared, walk.mesh);
    narrator.set_up(&prepared, &setup)?;
    let options = walk.options(prepared.report_dir.clone());
    let code = e2e::drive(&prepared, &setup, options, &narrator)?;
    if code == exit::INTERRUPTED {
        return Ok(code);
    }
    let report = Report::read(&prepared.report_dir.join(report::REPORT_JSON))?;
    narrator.latency(&report);
    narrator.traffic_shift(&report, &prepared.report_dir);
    narrator.closing(&report);
    Ok(code)
}

/// `target/canary/tutorial-local` → `target/canary/tutorial-local-demo`.
fn demo_dir(e2e_dir: &Path) -> PathBuf {
    let mut name = e2e_dir.file_name().unwrap_or_default().to_os_string();
    name.push("-demo");
    e2e_dir.with_file_name(name)
}

/// Tells the tutorial as the run goes. Prints to stdout; bars draw only on a terminal.
pub struct Narrator {
    subsets: [String; 2],
    versions: [String; 2],
    canary_name: String,
    stages: usize,
    palette: Palette,
    /// Lines typed on stdin, when stepping through sections on a terminal.
    enter: Option<Mutex<mpsc::UnboundedReceiver<()>>>,
    interrupted: AtomicBool,
    progress: TerminalProgress,
    wait: Mutex<Option<ProgressBar>>,
    live: Mutex<Option<Live>>,
}

/// The split of one entry point while its answers arrive.
struct Live {
    entry: EntryPoint,
    bar: ProgressBar,
    want: u64,
    expected: f64,
    counts: [u64; 2],
    other: u64,
    errors: u64,
}

struct Palette {
    title: Style,
    dim: Style,
    baseline: Style,
    canary: Style,
    pass: Style,
    fail: Style,
    removed: Style,
    added: Style,
    hunk: Style,
}

impl Palette {
    fn new() -> Self {
        Self {
            title: Style::new().bold(),
            dim: Style::new().dim(),
            baseline: Style::new().blue(),
            canary: Style::new().yellow(),
            pass: Style::new().green().bold(),
            fail: Style::new().red().bold(),
            removed: Style::new().red(),
            added: Style::new().green(),
            hunk: Style::new().cyan(),
        }
    }
}

impl Narrator {
    pub fn new(prepared: &Prepared, step: bool) -> Self {
        let subsets = prepared.routing.subsets.clone().map(|s| s.name);
        let versions = prepared.routing.subsets.clone().map(|s| s.version);
        let interactive = std::io::stdin().is_terminal();
        if step && !interactive {
            println!("(--step needs a terminal on stdin; running straight through)");
        }
        let enter = (step && interactive).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            // A plain thread: it dies with the process, whatever it is blocked on.
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if line.is_err() || tx.send(()).is_err() {
                        break;
                    }
                }
            });
            Mutex::new(rx)
        });
        Self {
            subsets,
            versions,
            canary_name: prepared.scenario.canary.clone(),
            stages: prepared.scenario.stages.len(),
            palette: Palette::new(),
            enter,
            interrupted: AtomicBool::new(false),
            progress: TerminalProgress::new(),
            wait: Mutex::new(None),
            live: Mutex::new(None),
        }
    }

    /// Ctrl-C at a prompt: the run stops at its next step, and the story with it.
    fn stopping(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    fn section(&self, number: &str, title: &str) {
        self.pause(title);
        let heading = if number.is_empty() {
            title.to_string()
        } else {
            format!("{number} {title}")
        };
        println!();
        println!("{}", self.palette.title.apply_to(&heading));
        println!(
            "{}",
            self.palette
                .dim
                .apply_to("─".repeat(heading.chars().count()))
        );
    }

    fn say(&self, text: impl AsRef<str>) {
        for line in text.as_ref().lines() {
            println!("  {line}");
        }
    }

    /// With `--step` on a terminal, waits for Enter (or Ctrl-C, which the run then handles).
    fn pause(&self, next: &str) {
        let Some(enter) = &self.enter else { return };
        if self.interrupted.load(Ordering::SeqCst) {
            return;
        }
        print!(
            "\n{}",
            self.palette
                .dim
                .apply_to(format!("⏎  Enter for “{next}” (Ctrl-C stops) "))
        );
        let _ = std::io::stdout().flush();
        let mut rx = enter.lock().expect("stdin lock");
        match tokio::runtime::Handle::try_current() {
            // Inside the walk: Ctrl-C must still reach the run, which stops the mesh.
            Ok(handle) => tokio::task::block_in_place(|| {
                handle.block_on(async {
                    tokio::select! {
                        _ = rx.recv() => {}
                        _ = tokio::signal::ctrl_c() => {
                            self.interrupted.store(true, Ordering::SeqCst);
                        }
                    }
                })
            }),
            // Before the walk nothing runs yet: Ctrl-C may end the process as it is.
            Err(_) => {
                let _ = rx.blocking_recv();
            }
        }
    }

    fn introduction(&self, prepared: &Prepared, mesh: MeshKind) {
        let s = &prepared.scenario;
        println!(
            "{}",
            self.palette.title.apply_to(format!(
                "Canary deployments with Istio: the tutorial, on the {} mesh",
                mesh_name(mesh)
            ))
        );
        self.say(format!(
            "scenario `{}` ({}){}",
            s.name,
            display(&s.file),
            s.description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ));
        self.say(format!(
            "{} stages on {} entry point(s); each stage is judged with exact binomial statistics (α = {} for the run, β = {}, δ = {} points)",
            s.stages.len(),
            prepared.routing.entry_points().len(),
            s.budget.alpha,
            s.budget.beta,
            s.budget.delta * 100.0
        ));
    }

    /// The tutorial's set-up sections, told from the routing state; on the local mesh, what
    /// stands for each piece of the cluster.
    fn set_up(&self, prepared: &Prepared, setup: &MeshSetup) -> anyhow::Result<()> {
        let routing = &prepared.routing;
        let local = setup.kind == MeshKind::Local;
        let ns = &routing.namespace;

        self.section("1.", "set up a cluster");
        match setup.kind {
            MeshKind::Local => self.say(
                "No cluster: everything runs on loopback (127.0.0.1) as child processes of this\n\
                 command, and stops with it, also on failure or Ctrl-C.",
            ),
            MeshKind::Kind => self.say(format!(
                "A kind cluster (Kubernetes in Docker) is created for this run{}.",
                if setup.cluster.keep_cluster {
                    " and kept afterwards (--keep-cluster)"
                } else {
                    " and deleted afterwards"
                }
            )),
            MeshKind::Existing => {
                self.say("The cluster of the current kubeconfig context is used as it is.")
            }
        }

        self.section("2.", "install Istio");
        if local {
            let envoy = self.wait_for(
                "finding Envoy (downloading it into the tool cache if missing)",
                || {
                    envoy_tool::ensure(
                        setup.tools.envoy.as_deref(),
                        &harness::tools::cache_dir(&project_root()),
                    )
                },
            )?;
            self.say(format!(
                "One real Envoy plays Istio's data plane: {}.\n\
                 The harness renders its configuration from the routing resources the way istiod\n\
                 would: one cluster per subset, named as Istio names them\n\
                 (`{}`), one route configuration\n\
                 per entry point, delivered by file-based RDS so that new weights apply without a\n\
                 restart.",
                display(&envoy),
                envoy_config::cluster_name(routing.port, &routing.subsets[0].name, &routing.host),
            ));
        } else {
            self.say(
                "Istio is installed into the cluster (istiod and the ingress gateway), and the run\n\
                 waits until both are ready.",
            );
        }

        self.section("3.", "enable sidecar injection and certificates");
        if local {
            let mut lines = Vec::new();
            for entry in routing.entry_points() {
                let stands_for = match entry {
                    EntryPoint::Ingress => "the ingress gateway",
                    EntryPoint::Mesh => "a client's sidecar inside the mesh",
                };
                lines.push(format!(
                    "an Envoy listener for the {entry} entry point stands for {stands_for} (Host: {}, routes `{}`)",
                    envoy_config::authority(routing, entry),
                    envoy_config::route_config_name(routing, entry)
                ));
            }
            self.say(format!(
                "No sidecars to inject:\n{}\nPlain HTTP on loopback, so no certificates.",
                bullets(&lines)
            ));
        } else {
            self.say(format!(
                "The namespace `{ns}` is labelled istio-injection=enabled, so every pod gets an Envoy\n\
                 sidecar, and the mesh's certificates come from the run's own CA."
            ));
        }

        self.section("4.", "create the namespace");
        self.say(format!(
            "namespace `{ns}`: it qualifies the service host, {}{}",
            routing.host,
            if local {
                "; on the local mesh it is only a name in hosts and routes."
            } else {
                "."
            }
        ));

        self.section("5.", "deploy the GA and canary versions");
        let mut lines = Vec::new();
        for (i, s) in routing.subsets.iter().enumerate() {
            let role = if i == 0 { "baseline" } else { "canary" };
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let stands_for = if local {
                let tuning = prepared
                    .scenario
                    .backends
                    .get(&s.name)
                    .filter(|t| !t.delay.is_zero() || t.error_rate > 0.0)
                    .map(|t| {
                        format!(
                            ", delayed {} ms, failing {:.1} %",
                            t.delay.as_millis(),
                            t.error_rate * 100.0
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "\n    → a backend process that answers as podinfo {} does (`xtask backend --version {}`{tuning})",
                    s.version, s.version
                )
            } else {
                String::new()
            };
            lines.push(format!(
                "{role} `{}`: Deployment {} with {} [{}]{stands_for}",
                s.name,
                s.deployment,
                s.image,
                labels.join(", ")
            ));
        }
        self.say(bullets(&lines));

        self.section("6.", "create the routing resources");
        let files: Vec<String> = routing.files().iter().map(|f| display(f)).collect();
        self.say(format!("manifests loaded:\n{}", bullets(&files)));
        let mut lines = Vec::new();
        if let Some(g) = &routing.gateway {
            lines.push(format!(
                "Gateway {}: port {} for host {}",
                g.name, g.port, g.host
            ));
        }
        lines.push(format!(
            "DestinationRule for {}: subsets {}",
            routing.host,
            routing
                .subsets
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let vs = &routing.virtual_service.value;
        lines.push(format!(
            "VirtualService {} ({}): hosts {}, gateways {}",
            vs.metadata.name,
            display(&routing.virtual_service.file),
            vs.spec.hosts.join(", "),
            vs.spec.gateways.join(", ")
        ));
        self.say(bullets(&lines));
        if local {
            self.say(format!(
                "rendered for Envoy: route configurations {}, one weighted route each",
                routing
                    .entry_points()
                    .into_iter()
                    .map(|e| format!("`{}` ({e})", envoy_config::route_config_name(routing, e)))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        self.say("The VirtualService as the manifests have it:");
        self.say(indent(&yaml(vs), 2));
        println!();
        self.say(
            self.palette
                .dim
                .apply_to("Now the harness starts the mesh and walks the stages.")
                .to_string(),
        );
        Ok(())
    }

    /// Runs a wait that may last, with a spinner on a terminal.
    fn wait_for<T>(&self, what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let spinner = self.progress.spinner(what);
        let out = f();
        spinner.finish_and_clear();
        out
    }

    fn weights_text(&self, weights: &harness::scenario::Weights) -> String {
        self.subsets
            .iter()
            .map(|s| format!("{s} {}", weights.get(s).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// A bar of `BAR` cells: baseline cells, canary cells, then the part still to come.
    fn split_bar(&self, baseline: f64, canary: f64) -> String {
        let b = (baseline * BAR as f64).round() as usize;
        let c = ((baseline + canary) * BAR as f64).round() as usize - b.min(BAR);
        let b = b.min(BAR);
        let c = c.min(BAR - b);
        format!(
            "{}{}{}",
            self.palette
                .baseline
                .apply_to(BASELINE_CELL.to_string().repeat(b)),
            self.palette
                .canary
                .apply_to(CANARY_CELL.to_string().repeat(c)),
            self.palette
                .dim
                .apply_to(EMPTY_CELL.to_string().repeat(BAR - b - c))
        )
    }

    fn live_line(&self, live: &Live) -> String {
        let answers = live.counts[0] + live.counts[1] + live.other;
        let filled = if live.want == 0 {
            1.0
        } else {
            (answers as f64 / live.want as f64).min(1.0)
        };
        let (b, c) = if answers == 0 {
            (0.0, 0.0)
        } else {
            (
                filled * live.counts[0] as f64 / answers as f64,
                filled * (live.counts[1] + live.other) as f64 / answers as f64,
            )
        };
        let share = if answers == 0 {
            0.0
        } else {
            live.counts[1] as f64 / answers as f64
        };
        let errors = if live.errors > 0 {
            format!(", {} errors", live.errors)
        } else {
            String::new()
        };
        format!(
            "{:<9}{}  {answers}/{} answers, {} {:.1} % (expected {:.1} %){errors}",
            live.entry.to_string(),
            self.split_bar(b, c),
            live.want,
            self.canary_name,
            share * 100.0,
            live.expected * 100.0
        )
    }

    fn latency(&self, report: &Report) {
        self.section("", "measure request latency for each deployment");
        let mut rows = vec![[
            "version".to_string(),
            "stage".into(),
            "entry".into(),
            "answers".into(),
            "p50 ms".into(),
            "p90 ms".into(),
            "p99 ms".into(),
            "max ms".into(),
        ]];
        for (k, subset) in report.subsets.iter().enumerate() {
            for stage in &report.stages {
                for e in &stage.entries {
                    let Some(l) = e.latency.get(subset).filter(|l| l.count > 0) else {
                        continue;
                    };
                    rows.push([
                        format!("{subset} ({})", self.versions[k.min(1)]),
                        format!("{}. {}", stage.index + 1, stage.name),
                        e.entry.to_string(),
                        l.count.to_string(),
                        format!("{:.1}", l.p50_ms),
                        format!("{:.1}", l.p90_ms),
                        format!("{:.1}", l.p99_ms),
                        format!("{:.1}", l.max_ms),
                    ]);
                }
            }
        }
        self.say(table(&rows, 3));
        self.say(
            self.palette
                .dim
                .apply_to("Latency of good answers as the prober measured them, through the mesh.")
                .to_string(),
        );
    }

    fn traffic_shift(&self, report: &Report, dir: &Path) {
        self.section("", "observe the traffic shift");
        self.say(traffic_text(report, &self.palette));
        self.say(format!(
            "charts of the split, the traffic shift and the latency: {}",
            display(&dir.join(render::REPORT_HTML))
        ));
    }

    fn closing(&self, report: &Report) {
        println!();
        let style = if report.passed {
            &self.palette.pass
        } else {
            &self.palette.fail
        };
        println!("{}", style.apply_to(render::headline(report)));
    }

    fn verdict(&self, passed: bool) -> String {
        if passed {
            self.palette.pass.apply_to("PASS").to_string()
        } else {
            self.palette.fail.apply_to("FAIL").to_string()
        }
    }
}

impl Observer for Narrator {
    fn mesh_starting(&self, mesh: &str) {
        let spinner = self
            .progress
            .spinner(format!("bringing up the {mesh} mesh"));
        *self.wait.lock().expect("narrator lock") = Some(spinner);
    }

    fn mesh_ready(&self, mesh: &str, elapsed: Duration) {
        if let Some(spinner) = self.wait.lock().expect("narrator lock").take() {
            spinner.finish_and_clear();
        }
        if !self.stopping() {
            self.say(format!(
                "the {mesh} mesh is up after {:.1} s",
                elapsed.as_secs_f64()
            ));
        }
    }

    fn stage_started(&self, stage: &Stage, before: &VirtualService, after: &VirtualService) {
        if self.stopping() {
            return;
        }
        let share = stage.expected_share(&self.canary_name);
        let what = match share {
            s if s <= 0.0 => "all traffic on the baseline".to_string(),
            s if s >= 1.0 => "all traffic on the canary".to_string(),
            s => format!("{:.0} % of the traffic to the canary", s * 100.0),
        };
        self.section(
            &format!("stage {}/{}:", stage.index + 1, self.stages),
            &format!("{} ({what})", stage.name),
        );
        let diff = yaml_diff(before, after, &stage.name, &self.palette);
        if diff.is_empty() {
            self.say(format!(
                "The VirtualService already routes {}: nothing to change.",
                self.weights_text(&stage.weights)
            ));
        } else {
            self.say(format!(
                "The VirtualService change ({}):",
                self.weights_text(&stage.weights)
            ));
            self.say(indent(&diff, 2));
        }
        let spinner = self.progress.spinner(format!(
            "applying it and waiting until every proxy routes with {}",
            self.weights_text(&stage.weights)
        ));
        *self.wait.lock().expect("narrator lock") = Some(spinner);
    }

    fn converged(&self, stage: &Stage, elapsed: Duration) {
        if self.stopping() {
            return;
        }
        if let Some(spinner) = self.wait.lock().expect("narrator lock").take() {
            spinner.finish_and_clear();
        }
        self.say(format!(
            "every proxy routes with {} after {:.2} s",
            self.weights_text(&stage.weights),
            elapsed.as_secs_f64()
        ));
        let share = stage.expected_share(&self.canary_name);
        self.say(format!(
            "{:<9}{}  {} {:.1} %",
            "expected",
            self.split_bar(1.0 - share, share),
            self.canary_name,
            share * 100.0
        ));
    }

    fn sampling_started(&self, stage: &Stage, entry: EntryPoint, plan: &Plan) {
        if self.stopping() {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(plan.requests), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template("  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let live = Live {
            entry,
            bar,
            want: plan.requests,
            expected: stage.expected_share(&self.canary_name),
            counts: [0, 0],
            other: 0,
            errors: 0,
        };
        live.bar.set_message(self.live_line(&live));
        *self.live.lock().expect("narrator lock") = Some(live);
    }

    fn sample(&self, _stage: &Stage, _entry: EntryPoint, sample: &Sample) {
        let mut guard = self.live.lock().expect("narrator lock");
        let Some(live) = guard.as_mut() else { return };
        match (&sample.error, sample.version.as_deref()) {
            (Some(_), _) => live.errors += 1,
            (None, Some(v)) if v == self.versions[0] => live.counts[0] += 1,
            (None, Some(v)) if v == self.versions[1] => live.counts[1] += 1,
            (None, _) => live.other += 1,
        }
        if !live.bar.is_hidden() {
            live.bar
                .set_position(live.counts.iter().sum::<u64>() + live.other);
            live.bar.set_message(self.live_line(live));
        }
    }

    fn entry_done(&self, _stage: &Stage, result: &EntryReport) {
        if self.stopping() {
            return;
        }
        if let Some(live) = self.live.lock().expect("narrator lock").take() {
            live.bar.finish_and_clear();
            self.say(self.live_line(&live));
        }
        self.say(format!(
            "{:<9}{} {}",
            "",
            self.verdict(result.passed),
            result.reason
        ));
    }

    fn stage_done(&self, stage: &StageReport) {
        if self.stopping() {
            return;
        }
        self.say(format!(
            "stage `{}`: {}",
            stage.name,
            self.verdict(stage.passed)
        ));
    }
}

/// The VirtualService as YAML, as `kubectl get -o yaml` would show its spec.
fn yaml(vs: &VirtualService) -> String {
    serde_saphyr::to_string(vs).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

/// A unified diff of the VirtualService's YAML, colored on a terminal; empty when equal.
fn yaml_diff(before: &VirtualService, after: &VirtualService, stage: &str, p: &Palette) -> String {
    let (old, new) = (yaml(before), yaml(after));
    let diff = TextDiff::from_lines(&old, &new);
    let mut out = String::new();
    let name = &after.metadata.name;
    for (i, hunk) in diff
        .unified_diff()
        .context_radius(3)
        .iter_hunks()
        .enumerate()
    {
        if i == 0 {
            out.push_str(&format!(
                "{}\n{}\n",
                p.removed
                    .apply_to(format!("--- VirtualService {name} (before)")),
                p.added
                    .apply_to(format!("+++ VirtualService {name} ({stage})"))
            ));
        }
        out.push_str(&format!("{}\n", p.hunk.apply_to(hunk.header())));
        for change in hunk.iter_changes() {
            let line = format!("{}{}", change.tag(), change.value().trim_end_matches('\n'));
            let styled = match change.tag() {
                ChangeTag::Delete => p.removed.apply_to(line),
                ChangeTag::Insert => p.added.apply_to(line),
                ChangeTag::Equal => p.dim.apply_to(line),
            };
            out.push_str(&format!("{styled}\n"));
        }
    }
    out
}

/// Answers per second of each version over the run, one column per slice of time, drawn
/// with block characters; plus the canary's share and the stages below.
fn traffic_text(report: &Report, p: &Palette) -> String {
    const COLUMNS: usize = 64;
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let spans: Vec<(usize, render::Span)> = report
        .stages
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.entries
                .iter()
                .flat_map(move |e| render::spans(e).into_iter().map(move |span| (i, span)))
        })
        .collect();
    let Some(end) = spans.iter().map(|(_, s)| s.to_s).reduce(f64::max) else {
        return "no answers were recorded".into();
    };
    let slice = end / COLUMNS as f64;
    // Answers per subset, errors, covered seconds, and the stage, per column.
    let mut counts = vec![vec![0.0; report.subsets.len()]; COLUMNS];
    let mut covered = vec![0.0; COLUMNS];
    let mut stage_of = vec![None; COLUMNS];
    for (stage, span) in &spans {
        for (c, column) in counts.iter_mut().enumerate() {
            let (from, to) = (c as f64 * slice, (c + 1) as f64 * slice);
            let overlap = (span.to_s.min(to) - span.from_s.max(from)).max(0.0);
            if overlap <= 0.0 {
                continue;
            }
            let part = overlap / span.seconds();
            for (k, subset) in report.subsets.iter().enumerate() {
                column[k] += part * span.counts.get(subset).copied().unwrap_or(0) as f64;
            }
            covered[c] += overlap;
            stage_of[c].get_or_insert(*stage);
        }
    }
    let rate = |c: usize, k: usize| {
        if covered[c] > 0.0 {
            counts[c][k] / covered[c]
        } else {
            0.0
        }
    };
    let top = (0..COLUMNS)
        .flat_map(|c| (0..report.subsets.len()).map(move |k| (c, k)))
        .map(|(c, k)| rate(c, k))
        .fold(0.0, f64::max)
        .max(1e-9);
    let level = |x: f64| {
        if x <= 0.0 {
            LEVELS[0]
        } else {
            LEVELS[((x * 8.0).ceil() as usize).clamp(1, 8)]
        }
    };
    let labels: Vec<String> = report
        .subsets
        .iter()
        .map(|s| match report.versions.get(s) {
            Some(v) => format!("{s} ({v})"),
            None => s.clone(),
        })
        .chain(["canary share".to_string(), "stage".to_string()])
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 2;
    let mut out = format!(
        "answers per second of each version over {:.1} s (full block = {:.0}/s; a column is {:.2} s):\n",
        end, top, slice
    );
    for (k, _) in report.subsets.iter().enumerate() {
        let line: String = (0..COLUMNS).map(|c| level(rate(c, k) / top)).collect();
        let style = if k == 0 { &p.baseline } else { &p.canary };
        out.push_str(&format!("{:<width$}{}\n", labels[k], style.apply_to(line)));
    }
    let share: String = (0..COLUMNS)
        .map(|c| {
            let total: f64 = counts[c].iter().sum();
            match counts[c].get(1) {
                Some(canary) if total > 0.0 => level(canary / total).to_string(),
                _ => " ".to_string(),
            }
        })
        .collect();
    out.push_str(&format!(
        "{:<width$}{}\n",
        labels[report.subsets.len()],
        p.canary.apply_to(share)
    ));
    let mut stages = String::new();
    let mut last = None;
    for stage in &stage_of {
        stages.push(match (stage, last) {
            (Some(s), l) if l != Some(*s) => {
                char::from_digit((*s as u32 + 1) % 36, 36).unwrap_or('?')
            }
            (Some(_), _) => '─',
            (None, _) => ' ',
        });
        if stage.is_some() {
            last = *stage;
        }
    }
    out.push_str(&format!(
        "{:<width$}{stages}\n",
        labels[report.subsets.len() + 1]
    ));
    let end_label = format!("{end:.1} s");
    out.push_str(&format!(
        "{:<width$}0 s{}{end_label}\n",
        "",
        " ".repeat(COLUMNS.saturating_sub(3 + end_label.len()))
    ));
    let legend: Vec<String> = report
        .stages
        .iter()
        .map(|s| format!("{} {}", s.index + 1, s.name))
        .collect();
    out.push_str(&format!("{:<width$}{}", "", legend.join(" · ")));
    out
}

/// Left-aligned columns; those from `numeric_from` on right-aligned.
fn table<const N: usize>(rows: &[[String; N]], numeric_from: usize) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c >= numeric_from {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("• {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}", " ".repeat(by)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A path relative to the project root where it lies under it, without `..`.
fn display(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let root = std::fs::canonicalize(project_root()).unwrap_or_else(|_| project_root());
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared() -> Prepared {
        e2e::prepare(Path::new("scenarios/tutorial.yaml"), MeshKind::Local, None).unwrap()
    }

    #[test]
    fn the_warm_up_diff_changes_the_weights_only() {
        let p = prepared();
        let stages = &p.scenario.stages;
        let before = p.routing.with_weights(&stages[0].weights);
        let after = p.routing.with_weights(&stages[1].weights);
        console::set_colors_enabled(false);
        let diff = yaml_diff(&before, &after, "canary warm-up", &Palette::new());
        let changed: Vec<&str> = diff
            .lines()
            .filter(|l| {
                (l.starts_with('-') || l.starts_with('+'))
                    && !l.starts_with("---")
                    && !l.starts_with("+++")
            })
            .collect();
        assert_eq!(changed.len(), 4, "{diff}");
        assert!(
            changed
                .iter()
                .any(|l| l.starts_with('-') && l.trim_end().ends_with("weight: 100")),
            "{diff}"
        );
        assert!(
            changed
                .iter()
                .any(|l| l.starts_with('+') && l.trim_end().ends_with("weight: 90")),
            "{diff}"
        );
        assert!(yaml_diff(&before, &before, "same", &Palette::new()).is_empty());
    }

    #[test]
    fn demo_reports_go_beside_the_e2e_ones() {
        assert_eq!(
            demo_dir(Path::new("/x/target/canary/tutorial-local")),
            Path::new("/x/target/canary/tutorial-local-demo")
        );
    }
}
