//! The commands of `cargo xtask`, each in its own module. xtask parses flags, prints and picks
//! exit codes; the runs themselves (plans, sessions, meshes) live in the `harness` crate.

pub mod backend;
pub mod bench;
pub mod demo;
pub mod e2e;
pub mod flags;
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
    /// Measure the harness against wrk and oha through the local mesh, the backends alone,
    /// and the tutorial's wall time, requests per verdict and peak RSS.
    Bench(bench::Args),
    /// Fill the tool cache (Envoy) and print where the tools are.
    Tools {
        /// An Envoy binary to use instead of the cached one.
        #[arg(long)]
        envoy: Option<PathBuf>,
    },
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
        Command::Bench(args) => bench::run(args),
        Command::Tools { envoy } => e2e::tools(envoy),
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

impl Command {
    /// The demo narrates; its log would only interleave with the story.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Demo(_) => "warn",
            _ => "info",
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides `default_level`. Colors only on a terminal, and
/// never with `NO_COLOR`.
pub fn init_tracing(default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
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
