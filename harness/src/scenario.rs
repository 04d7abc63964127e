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
    manifests: ManifestsFile,
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
    identify: Option<IdentifyFile>,
    #[serde(default)]
    classes: Option<Vec<ClassFile>>,
    #[serde(default)]
    local: Option<LocalFile>,
    #[serde(default)]
    gates: Option<Vec<crate::gates::GateFile>>,
    #[serde(default)]
    on_failure: Option<OnFailure>,
    #[serde(default)]
    rollback: Option<RollbackFile>,
    #[serde(default)]
    expect_rollback: Option<ExpectRollbackFile>,
    #[serde(default)]
    load: Option<LoadFile>,
    #[serde(default)]
    transitions: Option<TransitionsFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackFile {
    weights: Weights,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectRollbackFile {
    stage: StageRef,
    gate: String,
}

/// A stage by its 1-based number or its name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StageRef {
    Number(usize),
    Name(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadFile {
    #[serde(default = "default_load_rate")]
    rate: f64,
    #[serde(default)]
    margin_s: f64,
}

fn default_load_rate() -> f64 {
    DEFAULT_LOAD_RATE
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionsFile {
    max_errors: u64,
}

/// One folder or file of manifests, or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ManifestsFile {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentifyFile {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    json: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassFile {
    name: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    cookies: BTreeMap<String, String>,
    #[serde(default)]
    expect: Option<Weights>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    name: String,
    weights: Weights,
    #[serde(default)]
    expect: Option<Weights>,
    /// What each traffic class expects at this stage, where it differs from the class's own.
    #[serde(default)]
    classes: BTreeMap<String, Weights>,
    /// A new build of a subset, rolled out before the stage's weights apply.
    #[serde(default)]
    image: BTreeMap<String, String>,
    /// Environment variables of the new build's container (cluster meshes).
    #[serde(default)]
    env: BTreeMap<String, BTreeMap<String, String>>,
    /// How the local mesh's backend of a new build behaves.
    #[serde(default)]
    local: Option<LocalFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatisticsFile {
    alpha: Option<f64>,
    beta: Option<f64>,
    delta: Option<f64>,
    #[serde(default)]
    design: Option<Design>,
    #[serde(default)]
    look_every: Option<u64>,
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
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    mode: Option<BackendMode>,
}

/// How a local backend of one subset behaves, to rehearse latency, error and wrong-build
/// reports, or to stand for an app that is not podinfo.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct BackendTuning {
    pub delay: Duration,
    pub error_rate: f64,
    /// The version the backend reports instead of its image's tag (a wrong build).
    pub version: Option<String>,
    pub mode: BackendMode,
}

/// What app a local backend stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendMode {
    /// podinfo: JSON bodies that carry the version.
    #[default]
    Podinfo,
    /// An app that reports no version anywhere (agnhost netexec's plain text).
    Plain,
}

impl BackendMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendMode::Podinfo => "podinfo",
            BackendMode::Plain => "plain",
        }
    }
}

/// What a failed stage leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Walk on and report every stage (the default).
    #[default]
    Continue,
    /// Apply the rollback weights, prove the canary gets no traffic, and resume at the next
    /// stage that ships a new canary build (or stop).
    Rollback,
}

/// A rollback the scenario expects: its gates must catch the canary at this stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectRollback {
    /// Index of the stage, from 0.
    pub stage: usize,
    pub gate: String,
}

/// The open-loop load that runs through the whole walk, per entry point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Requests per second; 0 turns the load off.
    pub rate: f64,
    /// How long the load runs before the first stage and after the last, in seconds.
    pub margin_s: f64,
}

/// The default background load: like the tutorial's `hey -c 2 -q 5`.
pub const DEFAULT_LOAD_RATE: f64 = 10.0;

/// How a split is decided: looking as answers arrive, or once at a fixed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Design {
    #[default]
    Sequential,
    Fixed,
}

/// Where an answer says which version of the app gave it, besides the harness's own header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identify {
    /// A response header holding the version.
    Header(String),
    /// A JSON pointer into the body (`/version` for podinfo).
    Json(String),
}

/// One kind of request the prober sends, measured as its own test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficClass {
    pub name: String,
    pub path: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub cookies: BTreeMap<String, String>,
    /// What this class expects at every stage that does not say otherwise; `None` follows the
    /// stage's weights.
    pub expect: Option<Weights>,
}

impl TrafficClass {
    /// `GET /`, following the stage's weights: the only class of a scenario that declares none.
    pub fn default_class() -> Self {
        Self {
            name: DEFAULT_CLASS.to_string(),
            path: "/".into(),
            method: "GET".into(),
            headers: BTreeMap::new(),
            cookies: BTreeMap::new(),
            expect: None,
        }
    }

    /// The `Cookie` header of the class, if it has cookies.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// The name of the class of a scenario that declares none.
pub const DEFAULT_CLASS: &str = "default";

/// One weight stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub index: usize,
    pub name: String,
    /// What the stage applies to the VirtualService.
    pub weights: Weights,
    /// What the stage expects to observe; the weights unless the scenario says otherwise.
    pub expect: Weights,
    /// What each traffic class expects at this stage (every class of the scenario is here).
    pub class_expect: BTreeMap<String, Weights>,
    /// New builds rolled out before the weights apply: image per subset.
    pub images: BTreeMap<String, String>,
    /// Their containers' environment, per subset (cluster meshes).
    pub env: BTreeMap<String, BTreeMap<String, String>>,
    /// How the local backends of the new builds behave, per subset.
    pub backends: BTreeMap<String, BackendTuning>,
}

impl Stage {
    /// The canary's expected share of answers, in [0, 1].
    pub fn expected_share(&self, canary: &str) -> f64 {
        share(&self.expect, canary)
    }

    /// The canary's expected share of a traffic class's answers, in [0, 1].
    pub fn class_share(&self, class: &str, canary: &str) -> f64 {
        share(self.class_expect.get(class).unwrap_or(&self.expect), canary)
    }
}

fn share(weights: &Weights, canary: &str) -> f64 {
    let total: u32 = weights.values().sum();
    if total == 0 {
        return 0.0;
    }
    f64::from(weights.get(canary).copied().unwrap_or(0)) / f64::from(total)
}

/// A checked scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub file: PathBuf,
    pub name: String,
    pub description: Option<String>,
    /// Folders (every `.yaml` file in them) and files of manifests, in order; absolute,
    /// resolved against the scenario file's folder.
    pub manifests: Vec<PathBuf>,
    pub virtual_service: String,
    pub route: Option<String>,
    pub baseline: String,
    pub canary: String,
    pub stages: Vec<Stage>,
    pub budget: Budget,
    /// Sequential (the default) or fixed-n split verdicts.
    pub design: Design,
    /// Requests between two looks of a sequential verdict.
    pub look_every: u64,
    /// Above this share of failed requests a stage fails, whatever its split.
    pub max_error_rate: f64,
    /// Requests in flight at once per entry point.
    pub concurrency: usize,
    /// Where answers also say their version (checked against the subset's image tag).
    pub identify: Option<Identify>,
    /// The kinds of request each stage sends; one `default` class (`GET /`) if none declared.
    pub classes: Vec<TrafficClass>,
    pub backends: BTreeMap<String, BackendTuning>,
    /// SLO gates judged at every stage where they apply.
    pub gates: Vec<crate::gates::Gate>,
    pub on_failure: OnFailure,
    /// What a rollback applies (the baseline takes everything unless the scenario says).
    pub rollback_weights: Weights,
    pub expect_rollback: Option<ExpectRollback>,
    /// The background load through the whole walk.
    pub load: Load,
    /// Failed background requests a transition may drop (weight change, rollout, rollback).
    pub max_transition_errors: u64,
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

    /// The tests that can fail a correct mesh, which share the run's α (Bonferroni): every
    /// split test (a stage's class whose canary share is strictly between 0 and 1) on every
    /// entry point, and every gate judgement. Zero-leak tests cannot fail a correct mesh and
    /// take none of it.
    pub fn tests_in_run(&self, entry_points: usize) -> usize {
        (self.split_tests() * entry_points + self.gate_tests()).max(1)
    }

    /// Split tests per entry point: a stage's class whose canary share is strictly between 0
    /// and 1.
    fn split_tests(&self) -> usize {
        self.stages
            .iter()
            .map(|stage| {
                self.classes
                    .iter()
                    .filter(|c| {
                        let p = stage.class_share(&c.name, &self.canary);
                        p > 0.0 && p < 1.0
                    })
                    .count()
            })
            .sum()
    }

    /// Gate judgements: each gate at each stage where it applies (judged on the stage's
    /// answers pooled over entry points and classes).
    pub fn gate_tests(&self) -> usize {
        self.stages
            .iter()
            .map(|stage| {
                let share = stage.expected_share(&self.canary);
                self.gates.iter().filter(|g| g.applies(share)).count()
            })
            .sum()
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
    let classes = match &file.classes {
        None => vec![TrafficClass::default_class()],
        Some(list) => {
            if list.is_empty() {
                err(
                    "classes".into(),
                    "`classes` is empty".into(),
                    "declare at least one class, or leave `classes` out to send `GET /`".into(),
                );
            }
            let mut out: Vec<TrafficClass> = Vec::new();
            for (i, c) in list.iter().enumerate() {
                let at = format!("classes[{i}]");
                if c.name.trim().is_empty() || out.iter().any(|o| o.name == c.name) {
                    err(
                        format!("{at}.name"),
                        format!("class name `{}` is empty or not unique", c.name),
                        "give every class its own name: reports use it".into(),
                    );
                }
                let path = c.path.clone().unwrap_or_else(|| "/".into());
                if !path.starts_with('/') {
                    err(
                        format!("{at}.path"),
                        format!("`{path}` is not a path"),
                        "start the path with `/`, e.g. `/api/info`".into(),
                    );
                }
                let method = c
                    .method
                    .clone()
                    .unwrap_or_else(|| "GET".into())
                    .to_uppercase();
                if !["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
                    .contains(&method.as_str())
                {
                    err(
                        format!("{at}.method"),
                        format!("`{method}` is not an HTTP method the prober sends"),
                        "use GET, HEAD, POST, PUT, DELETE, PATCH or OPTIONS".into(),
                    );
                }
                for name in c.headers.keys() {
                    if name.eq_ignore_ascii_case("host") || name.starts_with("x-canary-harness") {
                        err(
                            format!("{at}.headers.{name}"),
                            format!("`{name}` is set by the harness"),
                            "remove it: the harness sends each entry point's Host, and its own headers".into(),
                        );
                    }
                }
                out.push(TrafficClass {
                    name: c.name.clone(),
                    path,
                    method,
                    headers: c.headers.clone(),
                    cookies: c.cookies.clone(),
                    expect: c.expect.clone(),
                });
            }
            out
        }
    };
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
        let class_weights: Vec<(String, &Weights)> = stage
            .classes
            .iter()
            .map(|(name, w)| (format!("classes.{name}"), w))
            .collect();
        for name in stage.classes.keys() {
            if !classes.iter().any(|c| &c.name == name) {
                weights_ok = false;
                err(
                    format!("{at}.classes.{name}"),
                    format!("`{name}` is not a traffic class of the scenario"),
                    format!(
                        "name one of its classes: {}",
                        classes
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        let scenario_classes: Vec<(String, &Weights)> = classes
            .iter()
            .filter_map(|c| {
                c.expect
                    .as_ref()
                    .map(|w| (format!("classes.{}", c.name), w))
            })
            .collect();
        let checks = [
            ("weights".to_string(), Some(&stage.weights)),
            ("expect".to_string(), stage.expect.as_ref()),
        ]
        .into_iter()
        .chain(class_weights.iter().map(|(k, w)| (k.clone(), Some(*w))))
        .chain(
            // A class's own expectation is checked once, at the first stage.
            scenario_classes
                .iter()
                .filter(|_| index == 0)
                .map(|(k, w)| (k.clone(), Some(*w))),
        );
        for (what, weights) in checks {
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
            let class_expect = classes
                .iter()
                .map(|c| {
                    let w = stage
                        .classes
                        .get(&c.name)
                        .or(c.expect.as_ref())
                        .map(complete)
                        .unwrap_or_else(|| expect.clone());
                    (c.name.clone(), w)
                })
                .collect();
            stages.push(Stage {
                index,
                name: stage.name.clone(),
                weights,
                expect,
                class_expect,
                images: stage.image.clone(),
                env: stage.env.clone(),
                backends: BTreeMap::new(),
            });
        }
    }
    for (index, stage) in file.stages.iter().enumerate() {
        let at = format!("stages[{index}]");
        for (what, names) in [
            ("image", stage.image.keys().collect::<Vec<_>>()),
            ("env", stage.env.keys().collect()),
            (
                "local.backends",
                stage
                    .local
                    .as_ref()
                    .map(|l| l.backends.keys().collect())
                    .unwrap_or_default(),
            ),
        ] {
            for name in names {
                if !subsets.contains(&name.as_str()) {
                    err(
                        format!("{at}.{what}.{name}"),
                        format!("`{name}` is not one of the scenario's subsets"),
                        format!("use `{}` or `{}`", file.baseline, file.canary),
                    );
                }
            }
        }
        for (subset, image) in &stage.image {
            if crate::routing::image_tag(image).is_none() {
                err(
                    format!("{at}.image.{subset}"),
                    format!("`{image}` has no tag, so the version of the new build is unknown"),
                    "pin a released tag, e.g. ghcr.io/stefanprodan/podinfo:6.14.2".into(),
                );
            }
        }
        let tuned: Vec<&String> = stage
            .local
            .as_ref()
            .map(|l| l.backends.keys().collect())
            .unwrap_or_default();
        for subset in tuned
            .iter()
            .chain(stage.env.keys().collect::<Vec<_>>().iter())
        {
            if !stage.image.contains_key(*subset) {
                err(
                    format!("{at}.image"),
                    format!("the stage tunes `{subset}` but ships no new build of it"),
                    format!(
                        "add `image: {{ {subset}: <image:tag> }}`: a new build is what changes how it runs"
                    ),
                );
            }
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
    let look_every = stats
        .look_every
        .unwrap_or(crate::sequential::DEFAULT_LOOK_EVERY);
    if look_every == 0 {
        err(
            "statistics.look_every".into(),
            "a look every 0 requests never decides".into(),
            format!(
                "use a positive number of requests, e.g. {}",
                crate::sequential::DEFAULT_LOOK_EVERY
            ),
        );
    }
    let identify = match &file.identify {
        None => None,
        Some(IdentifyFile {
            header: Some(h),
            json: None,
        }) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
            Some(Identify::Header(h.to_ascii_lowercase()))
        }
        Some(IdentifyFile {
            header: None,
            json: Some(p),
        }) if p.starts_with('/') => Some(Identify::Json(p.clone())),
        Some(_) => {
            err(
                "identify".into(),
                "`identify` needs exactly one of `header` (a valid response header name) and `json` (a JSON pointer such as `/version`)".into(),
                "write e.g. `identify: { json: /version }` for podinfo, or leave it out to attribute answers by the harness's header alone".into(),
            );
            None
        }
    };
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
        backends.insert(name, tuning);
    }
    let mut stage_backends = Vec::new();
    for (index, stage) in file.stages.iter().enumerate() {
        for (name, tuning) in stage.local.clone().unwrap_or_default().backends {
            stage_backends.push((index, name, tuning));
        }
    }
    for (at, tuning) in backends
        .iter()
        .map(|(name, t)| (format!("local.backends.{name}"), t))
        .chain(
            stage_backends
                .iter()
                .map(|(i, name, t)| (format!("stages[{i}].local.backends.{name}"), t)),
        )
    {
        if !(0.0..=1.0).contains(&tuning.error_rate) {
            err(
                format!("{at}.error_rate"),
                format!("{} is not a probability", tuning.error_rate),
                "use a number from 0 to 1".into(),
            );
        }
    }
    let backends: BTreeMap<String, BackendTuning> = backends
        .into_iter()
        .map(|(name, t)| (name, t.into()))
        .collect();
    for (index, name, tuning) in stage_backends {
        if let Some(stage) = stages.iter_mut().find(|s| s.index == index) {
            stage.backends.insert(name, tuning.into());
        }
    }
    let on_failure = file.on_failure.unwrap_or_default();
    let rollback_weights: Weights = match &file.rollback {
        None => subsets
            .iter()
            .map(|s| (s.to_string(), if *s == file.baseline { 100 } else { 0 }))
            .collect(),
        Some(r) => {
            let sum: u32 = r.weights.values().sum();
            if sum != 100 || r.weights.keys().any(|k| !subsets.contains(&k.as_str())) {
                err(
                    "rollback.weights".into(),
                    "the rollback weights must name the two subsets and sum to 100".into(),
                    format!("e.g. `{{ {}: 100, {}: 0 }}`", file.baseline, file.canary),
                );
            }
            if r.weights.get(&file.canary).copied().unwrap_or(0) != 0 {
                err(
                    "rollback.weights".into(),
                    format!("a rollback gives the canary `{}` no traffic", file.canary),
                    format!("set `{}: 0`", file.canary),
                );
            }
            subsets
                .iter()
                .map(|s| (s.to_string(), r.weights.get(*s).copied().unwrap_or(0)))
                .collect()
        }
    };
    if file.rollback.is_some() && on_failure != OnFailure::Rollback {
        err(
            "rollback".into(),
            "`rollback` is set but a failure does not roll back".into(),
            "add `on_failure: rollback`, or drop `rollback`".into(),
        );
    }
    let load = Load {
        rate: file
            .load
            .as_ref()
            .map(|l| l.rate)
            .unwrap_or(DEFAULT_LOAD_RATE),
        margin_s: file.load.as_ref().map(|l| l.margin_s).unwrap_or(0.0),
    };
    if !(load.margin_s.is_finite() && (0.0..=600.0).contains(&load.margin_s)) {
        err(
            "load.margin_s".into(),
            format!("{} s is out of range", load.margin_s),
            "use 0 to 600 seconds of load before the first stage and after the last".into(),
        );
    }
    if !(load.rate.is_finite() && (0.0..=1000.0).contains(&load.rate)) {
        err(
            "load.rate".into(),
            format!("{} requests per second is out of range", load.rate),
            "use 0 (no background load) to 1000".into(),
        );
    }
    let max_transition_errors = file.transitions.as_ref().map(|t| t.max_errors).unwrap_or(0);
    let mut gate_errors = Vec::new();
    let gates = crate::gates::check(path, file.gates.as_deref().unwrap_or(&[]), &mut gate_errors);
    let expect_rollback = match &file.expect_rollback {
        None => None,
        Some(x) => {
            if on_failure != OnFailure::Rollback {
                err(
                    "expect_rollback".into(),
                    "a rollback is expected but a failure does not roll back".into(),
                    "add `on_failure: rollback`".into(),
                );
            }
            if !gates.iter().any(|g| g.name == x.gate) {
                err(
                    "expect_rollback.gate".into(),
                    format!("`{}` is not one of the scenario's gates", x.gate),
                    format!(
                        "name one of: {}",
                        if gates.is_empty() {
                            "(none: declare `gates`)".to_string()
                        } else {
                            gates
                                .iter()
                                .map(|g| g.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                );
            }
            let index = match &x.stage {
                StageRef::Number(n) if *n >= 1 && *n <= file.stages.len() => Some(n - 1),
                StageRef::Name(name) => file.stages.iter().position(|s| &s.name == name),
                StageRef::Number(_) => None,
            };
            if index.is_none() {
                err(
                    "expect_rollback.stage".into(),
                    "no such stage".into(),
                    format!(
                        "give a stage's name or its number from 1 to {}",
                        file.stages.len()
                    ),
                );
            }
            index.map(|stage| ExpectRollback {
                stage,
                gate: x.gate.clone(),
            })
        }
    };
    errors.extend(gate_errors);
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let listed = match file.manifests {
        ManifestsFile::One(p) => vec![p],
        ManifestsFile::Many(list) => list,
    };
    if listed.is_empty() {
        return Err(InputError::new(
            path,
            "manifests",
            "`manifests` lists nothing",
            "name the folder of the manifests, e.g. `manifests: ../manifests`, or a list of folders and files",
        )
        .into());
    }
    let manifests = listed
        .iter()
        .map(|m| {
            let joined = if m.is_absolute() {
                m.clone()
            } else {
                base.join(m)
            };
            std::path::absolute(&joined).unwrap_or(joined)
        })
        .collect();
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
        design: stats.design.unwrap_or_default(),
        look_every,
        max_error_rate,
        concurrency,
        identify,
        classes,
        backends,
        gates,
        on_failure,
        rollback_weights,
        expect_rollback,
        load,
        max_transition_errors,
    })
}

impl From<BackendTuningFile> for BackendTuning {
    fn from(t: BackendTuningFile) -> Self {
        BackendTuning {
            delay: Duration::from_millis(t.delay_ms),
            error_rate: t.error_rate,
            version: t.version,
            mode: t.mode.unwrap_or_default(),
        }
    }
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
        assert_eq!(s.manifests.len(), 1);
        assert!(s.manifests[0].ends_with("manifests"));
        assert!(s.manifests[0].is_absolute());
        assert_eq!(s.budget, Budget::default());
        assert_eq!(s.stages[1].expect, s.stages[1].weights);
    }

    #[rstest]
    #[case::one_folder("manifests: ../manifests\n", 1)]
    #[case::a_list("manifests: [../manifests/service.yaml, ../manifests/ab-header]\n", 2)]
    fn manifests_are_a_folder_or_a_list(#[case] line: &str, #[case] n: usize) {
        let text = format!(
            "name: t\n{line}virtual_service: podinfo\nbaseline: ga\ncanary: canary\nstages:\n  - name: a\n    weights: {{ ga: 100 }}\n"
        );
        let s = parse(&text).unwrap();
        assert_eq!(s.manifests.len(), n);
        assert!(s.manifests.iter().all(|m| m.is_absolute()));
    }

    #[test]
    fn an_empty_manifests_list_is_refused() {
        let text = "name: t\nmanifests: []\nvirtual_service: podinfo\nbaseline: ga\ncanary: canary\nstages:\n  - name: a\n    weights: { ga: 100 }\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.contains("manifests") && err.contains("lists nothing"),
            "{err}"
        );
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
    #[case::identify_header(
        "identify: {header: \"x version\"}\nstages:\n- name: a\n  weights: {ga: 100}\n",
        "identify",
        "a valid response header name"
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
