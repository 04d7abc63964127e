//! Scenario files: which manifests, which split, and the weight stages to walk.
//!
//! A scenario is checked as a whole before anything starts; every problem names the file, the
//! field and the fix. Checks against the manifests (does the subset exist?) live in
//! [`crate::routing`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::input_error::{InputError, InputErrors};
use crate::stats::Budget;

/// Weight in percent per subset name.
pub type Weights = BTreeMap<String, u32>;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    manifests: PathBuf,
    virtual_service: String,
    #[serde(default)]
    route: Option<String>,
    baseline: String,
    canary: String,
    stages: Vec<StageFile>,
    #[serde(default)]
    statistics: Option<StatisticsFile>,
    #[serde(default)]
    max_error_rate: Option<f64>,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    local: Option<LocalFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    name: String,
    weights: Weights,
    #[serde(default)]
    expect: Option<Weights>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatisticsFile {
    alpha: Option<f64>,
    beta: Option<f64>,
    delta: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalFile {
    #[serde(default)]
    backends: BTreeMap<String, BackendTuningFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendTuningFile {
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    error_rate: f64,
}

/// How a local backend of one subset misbehaves, to rehearse latency and error reports.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct BackendTuning {
    pub delay: Duration,
    pub error_rate: f64,
}

/// One weight stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub index: usize,
    pub name: String,
    /// What the stage applies to the VirtualService.
    pub weights: Weights,
    /// What the stage expects to observe; the weights unless the scenario says otherwise.
    pub expect: Weights,
}

impl Stage {
    /// The canary's expected share of answers, in [0, 1].
    pub fn expected_share(&self, canary: &str) -> f64 {
        let total: u32 = self.expect.values().sum();
        if total == 0 {
            return 0.0;
        }
        f64::from(self.expect.get(canary).copied().unwrap_or(0)) / f64::from(total)
    }
}

/// A checked scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub file: PathBuf,
    pub name: String,
    pub description: Option<String>,
    /// Absolute, resolved against the scenario file's folder.
    pub manifests: PathBuf,
    pub virtual_service: String,
    pub route: Option<String>,
    pub baseline: String,
    pub canary: String,
    pub stages: Vec<Stage>,
    pub budget: Budget,
    /// Above this share of failed requests a stage fails, whatever its split.
    pub max_error_rate: f64,
    /// Requests in flight at once per entry point.
    pub concurrency: usize,
    pub backends: BTreeMap<String, BackendTuning>,
}

pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;
pub const DEFAULT_CONCURRENCY: usize = 8;

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, InputErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InputError::new(
                path,
                "",
                format!("cannot read the scenario: {e}"),
                "pass an existing file with --scenario, e.g. scenarios/tutorial.yaml",
            )
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks a scenario; `path` locates errors and relative folders.
    pub fn parse(path: &Path, text: &str) -> Result<Self, InputErrors> {
        let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
            InputError::new(
                path,
                "",
                format!("not valid YAML: {e}"),
                "fix the YAML syntax at the line shown",
            )
        })?;
        let file: ScenarioFile = serde_path_to_error::deserialize(&value).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner().to_string();
            let field = crate::input_error::unknown_field(&at, &inner)
                .map(|(_, full)| full)
                .unwrap_or(at);
            InputError::new(
                path,
                field,
                inner,
                "see scenarios/tutorial.yaml for the fields a scenario has",
            )
        })?;
        check(path, file)
    }

    /// The total number of tests of a run (stages × entry points) shares the error budget.
    pub fn tests_in_run(&self, entry_points: usize) -> usize {
        self.stages.len() * entry_points
    }

    pub fn subsets(&self) -> [&str; 2] {
        [&self.baseline, &self.canary]
    }
}

fn check(path: &Path, file: ScenarioFile) -> Result<Scenario, InputErrors> {
    let mut errors = Vec::new();
    let mut err = |field: String, problem: String, fix: String| {
        errors.push(InputError::new(path, field, problem, fix));
    };
    let subsets = [file.baseline.as_str(), file.canary.as_str()];
    if file.baseline == file.canary {
        err(
            "canary".into(),
            format!(
                "the canary and the baseline are the same subset `{}`",
                file.canary
            ),
            "name two different subsets of the DestinationRule".into(),
        );
    }
    if file.stages.is_empty() {
        err(
            "stages".into(),
            "the scenario has no stages".into(),
            "add at least one stage with `name` and `weights`".into(),
        );
    }
    let mut stages = Vec::new();
    for (index, stage) in file.stages.iter().enumerate() {
        let at = format!("stages[{index}]");
        if stage.name.trim().is_empty() {
            err(
                format!("{at}.name"),
                "the stage has an empty name".into(),
                "give every stage a name, e.g. `canary warm-up`".into(),
            );
        }
        if stages.iter().any(|s: &Stage| s.name == stage.name) {
            err(
                format!("{at}.name"),
                format!("two stages are named `{}`", stage.name),
                "give every stage its own name: reports and JUnit use it".into(),
            );
        }
        let mut weights_ok = true;
        for (what, weights) in [
            ("weights", Some(&stage.weights)),
            ("expect", stage.expect.as_ref()),
        ] {
            let Some(weights) = weights else { continue };
            for name in weights.keys() {
                if !subsets.contains(&name.as_str()) {
                    weights_ok = false;
                    err(
                        format!("{at}.{what}.{name}"),
                        format!("`{name}` is not one of the scenario's subsets"),
                        format!(
                            "use the subsets named by `baseline` and `canary`: `{}` and `{}`",
                            file.baseline, file.canary
                        ),
                    );
                }
            }
            let sum: u64 = weights.values().map(|w| u64::from(*w)).sum();
            if sum != 100 {
                weights_ok = false;
                err(
                    format!("{at}.{what}"),
                    format!(
                        "the weights of stage `{}` sum to {sum}, not 100",
                        stage.name
                    ),
                    format!(
                        "make them add up to 100, e.g. `{{ {}: {}, {}: {} }}`",
                        file.baseline,
                        100u32.saturating_sub(weights.get(&file.canary).copied().unwrap_or(0)),
                        file.canary,
                        weights.get(&file.canary).copied().unwrap_or(0).min(100)
                    ),
                );
            }
        }
        if weights_ok {
            let complete = |w: &Weights| -> Weights {
                subsets
                    .iter()
                    .map(|s| (s.to_string(), w.get(*s).copied().unwrap_or(0)))
                    .collect()
            };
            let weights = complete(&stage.weights);
            let expect = stage
                .expect
                .as_ref()
                .map(complete)
                .unwrap_or_else(|| weights.clone());
            stages.push(Stage {
                index,
                name: stage.name.clone(),
                weights,
                expect,
            });
        }
    }
    let defaults = Budget::default();
    let stats = file.statistics.clone().unwrap_or_default();
    let budget = Budget {
        alpha: stats.alpha.unwrap_or(defaults.alpha),
        beta: stats.beta.unwrap_or(defaults.beta),
        delta: stats.delta.unwrap_or(defaults.delta),
    };
    if let Err(problem) = budget.validate() {
        err(
            "statistics".into(),
            problem,
            "use 0 < alpha < 1, 0 < beta < 1 and 0 < delta < 0.5, or leave `statistics` out for \
             the defaults"
                .into(),
        );
    }
    let max_error_rate = file.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE);
    if !(0.0..=1.0).contains(&max_error_rate) {
        err(
            "max_error_rate".into(),
            format!("{max_error_rate} is not a share between 0 and 1"),
            "write it as a fraction, e.g. 0.01 for 1 %".into(),
        );
    }
    let concurrency = file.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=256).contains(&concurrency) {
        err(
            "concurrency".into(),
            format!("{concurrency} requests in flight is out of range"),
            "use a number from 1 to 256".into(),
        );
    }
    let mut backends = BTreeMap::new();
    for (name, tuning) in file.local.clone().unwrap_or_default().backends {
        if !subsets.contains(&name.as_str()) {
            err(
                format!("local.backends.{name}"),
                format!("`{name}` is not one of the scenario's subsets"),
                format!("use `{}` or `{}`", file.baseline, file.canary),
            );
        }
        if !(0.0..=1.0).contains(&tuning.error_rate) {
            err(
                format!("local.backends.{name}.error_rate"),
                format!("{} is not a probability", tuning.error_rate),
                "use a number from 0 to 1".into(),
            );
        }
        backends.insert(
            name,
            BackendTuning {
                delay: Duration::from_millis(tuning.delay_ms),
                error_rate: tuning.error_rate,
            },
        );
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let manifests = if file.manifests.is_absolute() {
        file.manifests.clone()
    } else {
        base.join(&file.manifests)
    };
    let manifests = std::path::absolute(&manifests).unwrap_or(manifests);
    Ok(Scenario {
        file: path.to_path_buf(),
        name: file.name,
        description: file.description,
        manifests,
        virtual_service: file.virtual_service,
        route: file.route,
        baseline: file.baseline,
        canary: file.canary,
        stages,
        budget,
        max_error_rate,
        concurrency,
        backends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HEAD: &str = "name: t\nmanifests: ../manifests\nvirtual_service: podinfo\nbaseline: ga\ncanary: canary\n";

    fn parse(text: &str) -> Result<Scenario, InputErrors> {
        Scenario::parse(Path::new("scenarios/t.yaml"), text)
    }

    #[test]
    fn the_tutorial_walks_0_10_60_100() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
        let s = Scenario::load(&path).unwrap();
        let shares: Vec<f64> = s
            .stages
            .iter()
            .map(|st| st.expected_share(&s.canary))
            .collect();
        assert_eq!(shares, vec![0.0, 0.1, 0.6, 1.0]);
        assert!(s.manifests.ends_with("manifests"));
        assert!(s.manifests.is_absolute());
        assert_eq!(s.budget, Budget::default());
        assert_eq!(s.stages[1].expect, s.stages[1].weights);
    }

    #[test]
    fn expect_may_differ_from_the_weights() {
        let s = parse(&format!(
            "{HEAD}stages:\n- name: ejected\n  weights: {{ga: 50, canary: 50}}\n  expect: {{ga: 70, canary: 30}}\n"
        ))
        .unwrap();
        assert_eq!(s.stages[0].weights["canary"], 50);
        assert!((s.stages[0].expected_share("canary") - 0.3).abs() < 1e-12);
    }

    #[test]
    fn a_missing_subset_weight_counts_as_zero() {
        let s = parse(&format!(
            "{HEAD}stages:\n- name: all ga\n  weights: {{ga: 100}}\n"
        ))
        .unwrap();
        assert_eq!(s.stages[0].weights["canary"], 0);
    }

    #[rstest]
    #[case::sum(
        "stages:\n- name: a\n  weights: {ga: 80, canary: 10}\n",
        "stages[0].weights",
        "sum to 90"
    )]
    #[case::unknown_subset(
        "stages:\n- name: a\n  weights: {ga: 90, blue: 10}\n",
        "stages[0].weights.blue",
        "not one of"
    )]
    #[case::expect_sum(
        "stages:\n- name: a\n  weights: {ga: 90, canary: 10}\n  expect: {ga: 90}\n",
        "stages[0].expect",
        "sum to 90"
    )]
    #[case::negative(
        "stages:\n- name: a\n  weights: {ga: 110, canary: -10}\n",
        "stages[0].weights.canary",
        "invalid value"
    )]
    #[case::no_stages("stages: []\n", "stages", "no stages")]
    #[case::dup_names(
        "stages:\n- name: a\n  weights: {ga: 100}\n- name: a\n  weights: {canary: 100}\n",
        "stages[1].name",
        "two stages"
    )]
    #[case::alpha(
        "statistics: {alpha: 2}\nstages:\n- name: a\n  weights: {ga: 100}\n",
        "statistics",
        "alpha"
    )]
    #[case::unknown_field(
        "stages:\n- name: a\n  weight: {ga: 100}\n",
        "stages[0].weight",
        "unknown field"
    )]
    #[case::error_rate(
        "max_error_rate: 5\nstages:\n- name: a\n  weights: {ga: 100}\n",
        "max_error_rate",
        "not a share"
    )]
    #[case::backend(
        "local:\n  backends:\n    blue: {delay_ms: 5}\nstages:\n- name: a\n  weights: {ga: 100}\n",
        "local.backends.blue",
        "not one of"
    )]
    fn bad_scenarios_name_the_field(
        #[case] tail: &str,
        #[case] field: &str,
        #[case] problem: &str,
    ) {
        let err = parse(&format!("{HEAD}{tail}")).unwrap_err();
        let hit = err.0.iter().find(|e| e.field == field);
        let hit = hit.unwrap_or_else(|| panic!("no error at {field}: {err}"));
        assert!(hit.problem.contains(problem), "{err}");
        assert_eq!(hit.file, Path::new("scenarios/t.yaml"));
        assert!(!hit.fix.is_empty());
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let err = parse("name: t\nstages: []\n").unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn baseline_and_canary_must_differ() {
        let err = parse("name: t\nmanifests: m\nvirtual_service: v\nbaseline: ga\ncanary: ga\nstages:\n- name: a\n  weights: {ga: 100}\n")
            .unwrap_err();
        assert!(err.0.iter().any(|e| e.field == "canary"), "{err}");
    }
}
