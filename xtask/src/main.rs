//! `cargo xtask`: the driver of the canary harness.
//!
//! `main` only parses flags and turns the outcome into an exit code: 0 when every stage
//! passed, 1 when a stage failed, 2 on bad input or a set-up error, 130 on Ctrl-C.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = xtask::Cli::parse();
    xtask::init_tracing(cli.command.default_log_level());
    let code = xtask::run(cli);
    ExitCode::from(code)
}
