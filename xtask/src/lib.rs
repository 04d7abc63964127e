//! The commands of `cargo xtask`, each in its own module.

pub mod backend;
pub mod cluster;
pub mod cluster_tools;
pub mod demo;
pub mod e2e;
pub mod envoy_tool;
pub mod invocation;
pub mod istioctl;
pub mod kind;
pub mod test;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// Exit codes of the harness.
pub mod exit {
    pub const PASSED: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "End-to-end harness for service-mesh canary releases"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk a scenario's weight stages on a mesh and check the observed split.
    E2e(e2e::Args),
    /// The classic Istio canary tutorial, section by section, narrated over a real run.
    Demo(demo::Args),
    /// Run the project's tests, installing what they need first.
    Test(test::Args),
    /// Fill the tool cache (Envoy) and print where the tools are.
    Tools(e2e::ToolArgs),
    /// A podinfo-compatible backend; the local mesh runs one per subset.
    #[command(hide = true)]
    Backend(backend::Args),
}

/// Runs a command and returns its exit code.
pub fn run(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::E2e(args) => e2e::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Test(args) => test::run(args),
        Command::Tools(args) => e2e::tools(args),
        Command::Backend(args) => backend::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if harness::input_error::is_input_error(&err) {
                eprintln!("error: bad input\n{err}");
            } else {
                eprintln!("error: {err:#}");
            }
            exit::BAD_INPUT
        }
    }
}

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The workspace root, where scenarios/, manifests/ and target/ live.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
