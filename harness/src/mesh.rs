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

use crate::prober::Target;
use crate::routing::{EntryPoint, Staged};
use crate::scenario::Weights;
use crate::steps::Step;

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
    /// The dry run's text.
    pub fn describe(&self) -> String {
        crate::steps::describe_plan(&self.setup, &self.teardown)
    }
}
