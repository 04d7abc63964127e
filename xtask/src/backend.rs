//! `cargo xtask backend`: one podinfo-compatible backend, as the local mesh starts it.

use std::time::Duration;

use anyhow::Context;
use harness::backend::{self, BackendConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The version the backend reports, as podinfo reports its image tag.
    #[arg(long)]
    pub version: String,
    /// Port on 127.0.0.1; 0 picks a free one, printed on stdout once listening.
    #[arg(long, default_value_t = 9898)]
    pub port: u16,
    /// Fixed delay of `/` and `/version`, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Probability that `/` answers 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut config = BackendConfig::new(args.version);
    config.delay = Duration::from_millis(args.delay_ms);
    config.error_rate = args.error_rate;
    config.validate().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
        let addr = listener.local_addr()?;
        println!("{}", backend::ready_line(addr));
        backend::serve(listener, config, stop_signal()).await
    })?;
    Ok(crate::exit::PASSED)
}

/// Resolves on SIGTERM or SIGINT, so the harness can stop the backend cleanly.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
