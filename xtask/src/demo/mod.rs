//! `cargo xtask demo`: the classic Istio canary tutorial, section by section, narrated over a
//! real run.
//!
//! It is the `e2e` run with a narrator: the same plan and session, with an observer that tells
//! each set-up step under its tutorial section and each stage as it goes (the VirtualService
//! change as a YAML diff, the split filling up as answers arrive, the verdict). Latency and the
//! traffic shift are then read back from the run's report.

mod narrator;
mod release;
mod setup;
mod stages;
mod text;

use std::path::{Path, PathBuf};

use harness::render;
use harness::report::{self, Report};

use self::narrator::Narrator;
use self::text::{display, table, traffic_text};
use crate::e2e;
use crate::exit;
use crate::flags::WalkArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Wait for Enter between sections (when stdin is a terminal; otherwise run straight through).
    #[arg(long)]
    pub step: bool,
}

/// The tutorial's first half, the split.
pub const FIRST_HALF: &str = "scenarios/tutorial.yaml";
/// Its second half: the slow canary, the rollback, the patched build.
pub const SECOND_HALF: &str = "scenarios/tutorial-sla.yaml";

/// Tells the given scenario; the default, the tutorial, is told in both halves, each its own
/// run with its own reports. The exit code is the first half's unless it passed.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let code = half(&args.walk, args.step)?;
    if code == exit::INTERRUPTED || args.walk.scenario != Path::new(FIRST_HALF) {
        return Ok(code);
    }
    let mut second = args.walk.clone();
    second.scenario = PathBuf::from(SECOND_HALF);
    second.report_dir = args.walk.report_dir.as_ref().map(|d| d.join("second-half"));
    println!();
    println!(
        "The tutorial goes on: a new canary answers slower than the GA. The harness measures \
         latency per deployment, its gate catches the slow canary, the weights are reverted \
         and the revert is proven, then a patched build is shipped and promoted until the SLA \
         is on a par with the GA release."
    );
    let second_code = half(&second, args.step)?;
    Ok(if code == exit::PASSED {
        second_code
    } else {
        code
    })
}

fn half(walk: &WalkArgs, step: bool) -> anyhow::Result<u8> {
    let mut prepared = e2e::prepare(walk, walk.report_dir.as_deref())?;
    if walk.report_dir.is_none() {
        prepared.report_dir = demo_dir(&prepared.report_dir);
    }
    let narrator = Narrator::new(&prepared, walk.mesh, step);
    narrator.introduction(&prepared, walk);
    let code = e2e::drive(&prepared, walk, &narrator, false)?;
    if code == exit::INTERRUPTED {
        return Ok(code);
    }
    let Ok(report) = Report::read(&prepared.report_dir.join(report::REPORT_JSON)) else {
        return Ok(code);
    };
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

impl Narrator {
    fn introduction(&self, prepared: &e2e::Prepared, walk: &WalkArgs) {
        let s = &prepared.scenario;
        println!(
            "{}",
            self.palette.title.apply_to(format!(
                "Canary deployments with Istio: the tutorial, on the {} mesh",
                walk.mesh.name()
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
            "{} stages measured on {}; each stage is judged with exact binomial statistics (α = {} for the run, β = {}, δ = {} points)",
            s.stages.len(),
            Narrator::entry_text(prepared),
            s.budget.alpha,
            s.budget.beta,
            s.budget.delta * 100.0
        ));
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
                        e.label(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{ClusterArgs, MeshKind};
    use text::{Palette, yaml_diff};

    fn prepared() -> e2e::Prepared {
        let walk = WalkArgs {
            scenario: "scenarios/tutorial.yaml".into(),
            mesh: MeshKind::Local,
            report_dir: None,
            converge_timeout: 60,
            envoy: None,
            cluster: ClusterArgs::default(),
        };
        e2e::prepare(&walk, None).unwrap()
    }

    #[test]
    fn the_warm_up_diff_changes_the_weights_only() {
        let p = prepared();
        let stages = &p.scenario.stages;
        let before = p.routing.staged(&stages[0].weights, "1.1").body;
        let after = p.routing.staged(&stages[1].weights, "2.2").body;
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
        // The two weights, and the stage's stamp.
        assert_eq!(changed.len(), 6, "{diff}");
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
