//! `cargo xtask test`: the project's test command. It installs what the tests need (Envoy in
//! the tool cache), then runs every test of the workspace.

use xshell::{Shell, cmd};

use crate::{exit, project_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_args: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let root = project_root();
    let envoy = harness::tools::envoy::ensure(None, &harness::tools::cache_dir(&root))?;
    let xtask = std::env::current_exe()?;
    let sh = Shell::new()?;
    sh.change_dir(&root);
    let _envoy = sh.push_env("ENVOY_BIN", &envoy);
    // The integration tests drive the CLI through this very binary.
    let _xtask = sh.push_env("CANARY_XTASK_BIN", &xtask);
    let extra = &args.cargo_args;
    let status = cmd!(sh, "cargo test --workspace --all-targets {extra...}").run();
    Ok(if status.is_ok() {
        exit::PASSED
    } else {
        exit::FAILED
    })
}
