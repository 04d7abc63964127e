//! `cargo xtask backend`: one podinfo-compatible backend (or a plain app that
//! reports no version), as the local mesh starts it.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use harness::backend::{self, BackendConfig, Mode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which app to stand for: podinfo (JSON with the version) or plain (agnhost
    /// netexec: plain text, no version anywhere).
    #[arg(long, value_enum, default_value_t = ModeArg::Podinfo)]
    pub mode: ModeArg,
    /// The version podinfo mode reports, as podinfo reports its image tag (required
    /// there); plain mode accepts it and never reports it.
    #[arg(long)]
    pub version: Option<String>,
    /// The git commit podinfo mode reports (`revision` of `/`, `commit` of `/version`).
    #[arg(long, default_value = "unknown")]
    pub commit: String,
    /// Port on 127.0.0.1; 0 picks a free one, printed on stdout once listening.
    #[arg(long, default_value_t = 9898)]
    pub port: u16,
    /// Fixed delay of `/` (and podinfo's `/version`), in milliseconds; 0 adds none.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Probability that `/` answers 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Worker threads of the backend's runtime (several backends share the machine).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
}

/// `--mode`, spelled as [`Mode`] displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Podinfo,
    Plain,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Podinfo => Mode::Podinfo,
            ModeArg::Plain => Mode::Plain,
        }
    }
}

impl Args {
    /// The backend these flags describe, validated.
    pub fn config(&self) -> anyhow::Result<BackendConfig> {
        let mode = Mode::from(self.mode);
        if mode.reports_version() && self.version.is_none() {
            anyhow::bail!("--version is required in {mode} mode");
        }
        let config = BackendConfig {
            mode,
            version: self.version.clone().unwrap_or_default(),
            commit: self.commit.clone(),
            delay: Duration::from_millis(self.delay_ms),
            error_rate: self.error_rate,
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.into())
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Before the ready line: a SIGTERM right after it must already drain, not kill.
        let stop = stop_signal().context("installing the SIGTERM/SIGINT handlers")?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
        let addr = listener.local_addr()?;
        println!("{}", backend::ready_line(addr));
        backend::serve(listener, config, stop).await
    })?;
    Ok(crate::exit::PASSED)
}

/// Resolves on SIGTERM or SIGINT, so the harness can stop the backend cleanly.
/// The handlers are installed when this is called, not when it is first polled.
fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;
    use rstest::rstest;

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        let argv = ["cargo xtask", "backend"].iter().chain(flags);
        match Cli::try_parse_from(argv)?.command {
            Command::Backend(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_are_a_healthy_podinfo() {
        let args = parse(&["--version", "6.14.1"]).unwrap();
        assert_eq!(args.port, 9898);
        assert_eq!(args.workers, 2);
        assert_eq!(args.config().unwrap(), BackendConfig::new("6.14.1"));
    }

    #[test]
    fn the_local_mesh_invocation_parses() {
        let args = parse(&[
            "--version",
            "6.14.1",
            "--port",
            "0",
            "--delay-ms",
            "40",
            "--error-rate",
            "0.3",
        ])
        .unwrap();
        let config = args.config().unwrap();
        assert_eq!(config.mode, Mode::Podinfo);
        assert_eq!(config.delay, Duration::from_millis(40));
        assert_eq!(config.error_rate, 0.3);
    }

    #[rstest]
    #[case::plain_without_version(&["--mode", "plain"], Mode::Plain, "")]
    #[case::plain_ignores_version(&["--mode", "plain", "--version", "1.0"], Mode::Plain, "1.0")]
    #[case::podinfo_explicit(&["--mode", "podinfo", "--version", "2.0"], Mode::Podinfo, "2.0")]
    fn modes_parse(#[case] flags: &[&str], #[case] mode: Mode, #[case] version: &str) {
        let config = parse(flags).unwrap().config().unwrap();
        assert_eq!((config.mode, config.version.as_str()), (mode, version));
    }

    #[rstest]
    #[case::podinfo_needs_a_version(&[])]
    #[case::podinfo_needs_a_real_version(&["--version", " "])]
    #[case::rate_above_one(&["--version", "1", "--error-rate", "1.5"])]
    #[case::plain_rate_negative(&["--mode", "plain", "--error-rate=-0.5"])]
    fn bad_configs_are_rejected(#[case] flags: &[&str]) {
        assert!(parse(flags).unwrap().config().is_err());
    }

    #[rstest]
    #[case::unknown_mode(&["--mode", "agnhost", "--version", "1"])]
    #[case::no_workers(&["--version", "1", "--workers", "0"])]
    #[case::negative_delay(&["--version", "1", "--delay-ms", "-5"])]
    fn bad_flags_are_rejected(#[case] flags: &[&str]) {
        assert!(parse(flags).is_err());
    }

    #[test]
    fn modes_match_the_harness_spelling() {
        use clap::ValueEnum;
        for mode in ModeArg::value_variants() {
            let name = mode.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(Mode::from(*mode).to_string(), name);
        }
    }

    /// Delivers a real SIGTERM to this test process: the handler installed by
    /// [`stop_signal`] must catch it (the default action would end the process).
    #[tokio::test]
    async fn sigterm_resolves_the_stop_signal() {
        let stop = stop_signal().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), stop)
            .await
            .expect("SIGTERM did not resolve the stop signal");
    }
}
