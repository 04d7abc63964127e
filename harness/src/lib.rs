//! The canary harness: scenarios and manifests in, measured traffic splits and verdicts out.
//!
//! Data flows one way: scenario → routing state → mesh → prober → tallies → verdict → reports.
//! Pure parts (scenario checks, routing model, statistics, Envoy configuration, reports) do no
//! I/O; the meshes sit behind [`mesh::Mesh`] so the stage walk is the same for all of them.
pub mod backend;
pub mod ca;
pub mod config_dump;
pub mod envoy_config;
pub mod input_error;
pub mod istio;
pub mod istio_api;
pub mod istio_mesh;
pub mod local_mesh;
pub mod manifests;
pub mod mesh;
pub mod prober;
pub mod process;
pub mod progress;
pub mod render;
pub mod report;
pub mod routing;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod tally;
pub mod tools;
