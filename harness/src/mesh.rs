//! The boundary between the stage walk and whatever carries the traffic.
//!
//! The walk is the same for every mesh: apply a stage's VirtualService, wait until every proxy
//! routes with its weights, then sample each entry point. Only what sits behind this trait
//! differs: a local Envoy with podinfo-compatible backends, or Istio on a cluster.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::istio::VirtualService;
use crate::prober::Target;
use crate::routing::EntryPoint;
use crate::scenario::Weights;

#[async_trait]
pub trait Mesh: Send {
    /// `local`, `kind` or `existing`, for reports.
    fn kind(&self) -> &'static str;

    /// The entry points this mesh can sample, north-south first.
    fn entry_points(&self) -> Vec<EntryPoint>;

    /// Applies the VirtualService of a stage.
    async fn apply(&mut self, virtual_service: &VirtualService) -> anyhow::Result<()>;

    /// Waits, at most `timeout`, until every entry point's proxy routes with `weights`; on
    /// giving up, the error says what the proxies last reported.
    async fn await_weights(&mut self, weights: &Weights, timeout: Duration) -> anyhow::Result<()>;

    /// Where the prober sends the requests of an entry point.
    fn target(&self, entry: EntryPoint) -> anyhow::Result<Arc<dyn Target>>;

    /// Writes what helps explain a failure (logs, proxy configuration) into `dir`.
    async fn diagnostics(&self, dir: &Path) -> anyhow::Result<()>;

    /// Stops everything the mesh started. Dropping the mesh must do the same, so that a
    /// failure or Ctrl-C leaks nothing; this is the orderly path.
    async fn shutdown(self: Box<Self>) -> anyhow::Result<()>;
}
