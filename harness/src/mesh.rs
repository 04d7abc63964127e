//! The boundary between the run and whatever carries the traffic.
//!
//! A mesh is planned before anything happens: [`Planned`] holds the unopened mesh and its
//! set-up as typed [`Step`]s. The session executes those steps one by one through
//! [`Mesh::execute`], walks the stages, and at the end executes [`Mesh::teardown`], the steps
//! that undo what the executed set-up created. Only what sits behind this trait differs between
//! a local Envoy with podinfo-compatible backends and Istio on a cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use std::collections::BTreeMap;

use crate::load::{FromTarget, LoadTarget};
use crate::prober::Target;
use crate::routing::{EntryPoint, Staged};
use crate::scenario::{BackendTuning, Weights};
use crate::steps::Step;

/// A new build of one subset, rolled out by a stage before its weights apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub subset: String,
    /// The new image (cluster meshes); its tag is the version the new build reports.
    pub image: String,
    /// Environment variables set on the subset's containers (cluster meshes).
    pub env: BTreeMap<String, String>,
    /// How the new build's local backend behaves (local mesh); `None`: as the scenario's
    /// backends say.
    pub tuning: Option<BackendTuning>,
}

impl Rollout {
    /// The version the new build's answers must report: the image's tag.
    pub fn version(&self) -> Option<String> {
        crate::routing::image_tag(&self.image)
    }

    /// `rollout canary → ghcr.io/stefanprodan/podinfo:6.11.2`.
    pub fn describe(&self) -> String {
        format!("rollout {} → {}", self.subset, self.image)
    }
}

#[async_trait]
pub trait Mesh: Send {
    /// `local`, `kind` or `existing`, for reports.
    fn kind(&self) -> &'static str;

    /// Executes one step of the set-up or of the teardown. A step that fails leaves the mesh
    /// able to tear down what earlier steps made.
    async fn execute(&mut self, step: &Step) -> anyhow::Result<()>;

    /// The steps that undo what the executed steps created, in order.
    fn teardown(&self) -> Vec<Step>;

    /// The entry points this mesh can sample, north-south first.
    fn entry_points(&self) -> Vec<EntryPoint>;

    /// Applies the VirtualService of a stage.
    async fn apply(&mut self, staged: &Staged) -> anyhow::Result<()>;

    /// Waits, at most `timeout`, until every entry point's proxy routes with `weights`; on
    /// giving up, the error says what the proxies last reported.
    async fn await_weights(&mut self, weights: &Weights, timeout: Duration) -> anyhow::Result<()>;

    /// Where the prober sends the requests of an entry point.
    fn target(&self, entry: EntryPoint) -> anyhow::Result<Arc<dyn Target>>;

    /// Writes what helps explain a failure (logs, proxy configuration) into `dir`.
    async fn diagnostics(&self, dir: &Path) -> anyhow::Result<()>;

    /// The steps that roll a subset out to a new build, each bounded by `bound`; the walk
    /// executes them (through [`Mesh::execute`]) before the stage's weights apply.
    fn rollout_steps(&mut self, rollout: &Rollout, _bound: Duration) -> anyhow::Result<Vec<Step>> {
        anyhow::bail!(
            "the {} mesh cannot roll out new builds (stage image `{}` for `{}`)",
            self.kind(),
            rollout.image,
            rollout.subset
        )
    }

    /// Where the background load of an entry point goes; `None`: this entry point carries no
    /// background load (the reason is logged by the mesh).
    fn load_target(&self, entry: EntryPoint) -> anyhow::Result<Option<Arc<dyn LoadTarget>>> {
        Ok(Some(Arc::new(FromTarget(self.target(entry)?))))
    }

    /// What the run wrote to a cluster, for the report (nothing, without a cluster).
    fn cluster_changes(&self) -> crate::report::ClusterChanges {
        Default::default()
    }
}

/// A mesh before anything ran, and what running it will do.
pub struct Planned {
    pub mesh: Box<dyn Mesh>,
    /// The set-up, in order.
    pub setup: Vec<Step>,
    /// What the end of a run that executed the whole set-up undoes.
    pub teardown: Vec<Step>,
    /// Files the run holds a lock on besides its report folder (a kind cluster's name).
    pub locks: Vec<PathBuf>,
}

impl Planned {
    /// The dry run's text: the set-up, the walk's rollouts of new builds (planned by the mesh
    /// exactly as the walk will, each bounded by `bound`), and the teardown.
    pub fn describe(
        &mut self,
        scenario: &crate::scenario::Scenario,
        bound: Duration,
    ) -> anyhow::Result<String> {
        let mut walk = Vec::new();
        for stage in &scenario.stages {
            for rollout in stage_rollouts(stage) {
                let steps = self.mesh.rollout_steps(&rollout, bound)?;
                walk.push((
                    format!(
                        "before stage {} `{}`, {}:",
                        stage.index + 1,
                        stage.name,
                        rollout.describe()
                    ),
                    steps,
                ));
            }
        }
        Ok(crate::steps::describe_plan(
            &self.setup,
            &walk,
            &self.teardown,
        ))
    }
}

/// The new builds a stage rolls out before its weights apply, in subset order.
pub fn stage_rollouts(stage: &crate::scenario::Stage) -> Vec<Rollout> {
    stage
        .images
        .iter()
        .map(|(subset, image)| Rollout {
            subset: subset.clone(),
            image: image.clone(),
            env: stage.env.get(subset).cloned().unwrap_or_default(),
            tuning: stage.backends.get(subset).cloned(),
        })
        .collect()
}
