//! The canary harness: scenarios and manifests in, measured traffic splits and verdicts out.
//!
//! Data flows one way: scenario → routing state → mesh → prober → tallies → verdict → reports.
//! Pure parts (scenario checks, routing model, statistics, Envoy configuration, plans, reports)
//! do no I/O; the meshes sit behind [`mesh::Mesh`], and a [`session::Session`] runs one of them
//! from its planned set-up to its teardown.
pub mod backend;
pub mod bench;
pub mod ca;
pub mod cluster;
pub mod config_dump;
pub mod envoy_config;
#[cfg(any(test, feature = "fake-api"))]
pub mod fake_api;
#[cfg(test)]
mod fake_mesh;
pub mod gate_stats;
pub mod gates;
pub mod input_error;
pub mod invocation;
pub mod istio;
pub mod istio_mesh;
pub mod load;
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
pub mod sequential;
pub mod session;
#[cfg(test)]
mod simulation_tests;
pub mod stats;
pub mod steps;
pub mod tally;
pub mod tools;
pub mod verdict;
