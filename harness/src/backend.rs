//! A podinfo-compatible HTTP backend ("podinfo-lite").
//!
//! The classic Istio canary tutorial routes traffic between two versions of
//! stefanprodan/podinfo. The harness runs one process of this clone per subset
//! (GA, canary) behind a real Envoy on loopback and tells the versions apart by
//! the `version` field of the JSON body of `GET /`. Only the endpoints the
//! harness and the tutorial use are implemented, with podinfo's shapes.
//!
//! Podinfo's `--random-delay`/`--random-error` flags are replaced by explicit,
//! reproducible knobs: a fixed [`BackendConfig::delay`] and an
//! [`BackendConfig::error_rate`], so a scenario can make the canary measurably
//! slower or flakier than the GA version.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Longest wait `/delay/{seconds}` honours, so a typo cannot park a
/// connection (and a graceful shutdown) for minutes.
pub const MAX_DELAY_SECONDS: u64 = 10;

/// What one backend process impersonates and how badly it behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Reported as `version` by `/` and `/version`; this is how the harness
    /// attributes a response to a subset.
    pub version: String,
    /// Reported as `revision` by `/` and `commit` by `/version`.
    pub commit: String,
    /// Added before answering `/` and `/version` (podinfo's `--random-delay`, made fixed).
    pub delay: Duration,
    /// Probability in [0, 1] that `/` answers 500 (podinfo's `--random-error`, made explicit).
    pub error_rate: f64,
}

impl BackendConfig {
    /// A well-behaved backend of the given version: no delay, no errors.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            commit: "unknown".to_owned(),
            delay: Duration::ZERO,
            error_rate: 0.0,
        }
    }

    /// Rejects configurations that would make responses unattributable
    /// (empty version) or the error rate meaningless.
    pub fn validate(&self) -> Result<(), String> {
        if self.version.trim().is_empty() {
            return Err("backend version must not be empty".to_owned());
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "backend error rate must be a probability in [0, 1], got {}",
                self.error_rate
            ));
        }
        Ok(())
    }
}

/// The JSON body of `GET /`, field for field as podinfo sends it, so the
/// prober parses the clone and the real thing alike.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Info {
    pub hostname: String,
    pub version: String,
    pub revision: String,
    pub color: String,
    pub logo: String,
    pub message: String,
    pub goos: String,
    pub goarch: String,
    pub runtime: String,
    pub num_goroutine: u64,
    pub num_cpu: u64,
}

impl Info {
    fn new(config: &BackendConfig) -> Self {
        Self {
            hostname: hostname(),
            version: config.version.clone(),
            revision: config.commit.clone(),
            // Podinfo's defaults, so the tutorial's UI expectations hold.
            color: "#34577c".to_owned(),
            logo: "https://raw.githubusercontent.com/stefanprodan/podinfo/gh-pages/cuddle_clap.gif"
                .to_owned(),
            message: format!("greetings from podinfo v{}", config.version),
            goos: std::env::consts::OS.to_owned(),
            goarch: go_arch().to_owned(),
            runtime: "rust".to_owned(),
            // The closest analogue of goroutines: the runtime's worker threads.
            num_goroutine: tokio::runtime::Handle::try_current()
                .map(|h| h.metrics().num_workers() as u64)
                .unwrap_or(1),
            num_cpu: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        }
    }
}

/// The machine's hostname, as podinfo reports its pod name; "podinfo-lite" if unknown.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "podinfo-lite".to_owned())
}

/// Rust's architecture name spelled the way Go's `GOARCH` spells it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        other => other,
    }
}

type Shared = Arc<BackendConfig>;

/// All podinfo endpoints the harness uses; anything else is a JSON 404.
///
/// The config is taken as given; call [`BackendConfig::validate`] first
/// ([`serve`] does). An out-of-range error rate behaves as clamped to [0, 1].
pub fn router(config: BackendConfig) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/version", get(version))
        .route("/healthz", get(status_ok))
        .route("/readyz", get(status_ok))
        .route("/delay/{seconds}", get(delay))
        .route("/status/{code}", get(status))
        .fallback(not_found)
        .with_state(Arc::new(config))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
///
/// The caller prints [`ready_line`] after binding `listener`: connections made
/// before this future is polled wait in the kernel's backlog, so that is safe.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: BackendConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    tracing::info!(addr = ?listener.local_addr().ok(), version = %config.version, "podinfo-lite serving");
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

const READY_PREFIX: &str = "listening on ";

/// The line the backend prints on stdout once it listens, which the harness
/// waits for (and learns the port from, since backends bind port 0):
/// `listening on 127.0.0.1:PORT`.
pub fn ready_line(addr: SocketAddr) -> String {
    format!("{READY_PREFIX}{addr}")
}

/// Parses a [`ready_line`] back; `None` if `line` is not one.
pub fn parse_ready_line(line: &str) -> Option<SocketAddr> {
    line.trim().strip_prefix(READY_PREFIX)?.trim().parse().ok()
}

async fn index(State(config): State<Shared>) -> Response {
    tokio::time::sleep(config.delay).await;
    // `random::<f64>()` is in [0, 1), so rate 0 never fails and rate 1 always does.
    if rand::random::<f64>() < config.error_rate {
        let body = json!({"error": "injected error", "version": config.version});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    }
    axum::Json(Info::new(&config)).into_response()
}

async fn version(State(config): State<Shared>) -> Response {
    tokio::time::sleep(config.delay).await;
    axum::Json(json!({"version": config.version, "commit": config.commit})).into_response()
}

async fn status_ok() -> Response {
    axum::Json(json!({"status": "OK"})).into_response()
}

/// Path segments are parsed by hand so bad input gets a JSON 400 like everything else.
async fn delay(Path(seconds): Path<String>) -> Response {
    let Ok(seconds) = seconds.parse::<u64>() else {
        return bad_request(format!("invalid delay {seconds:?}"));
    };
    // Answer with the delay actually waited, so a capped request is visible.
    let seconds = seconds.min(MAX_DELAY_SECONDS);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    axum::Json(json!({"delay": seconds})).into_response()
}

/// Note that hyper cannot send a 1xx as a final response (it sends 500
/// instead) and drops the body of 204/304; podinfo has the same limits.
async fn status(Path(code): Path<String>) -> Response {
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok());
    match status {
        Some(status) => (status, axum::Json(json!({"status": status.as_u16()}))).into_response(),
        None => bad_request(format!("invalid status code {code:?}")),
    }
}

async fn not_found() -> Response {
    let body = json!({"error": "not found", "status": 404});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn bad_request(message: String) -> Response {
    let body = json!({"error": message, "status": 400});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::Value;
    use std::time::Instant;
    use tokio::sync::oneshot;

    /// A backend on an ephemeral loopback port; shut down on drop.
    struct Running {
        base: String,
        client: reqwest::Client,
        _stop: oneshot::Sender<()>,
    }

    impl Running {
        async fn start(config: BackendConfig) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(serve(listener, config, async {
                let _ = stopped.await;
            }));
            // No proxy: an inherited HTTP_PROXY must not intercept loopback calls.
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            Self {
                base: format!("http://{addr}"),
                client,
                _stop: stop,
            }
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            let resp = self
                .client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let body = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            };
            (status, body)
        }
    }

    fn config() -> BackendConfig {
        BackendConfig {
            commit: "abc123".to_owned(),
            ..BackendConfig::new("6.0.1")
        }
    }

    #[tokio::test]
    async fn index_reports_info_with_version() {
        let server = Running::start(config()).await;
        let (status, body) = server.get("/").await;
        assert_eq!(status, 200);
        let info: Info = serde_json::from_value(body).unwrap();
        assert_eq!(info.version, "6.0.1");
        assert_eq!(info.revision, "abc123");
        assert_eq!(info.message, "greetings from podinfo v6.0.1");
        assert_eq!(info.runtime, "rust");
        assert!(!info.hostname.is_empty());
        assert!(info.num_cpu >= 1);
    }

    #[rstest]
    #[case::version("/version", 200, json!({"version": "6.0.1", "commit": "abc123"}))]
    #[case::healthz("/healthz", 200, json!({"status": "OK"}))]
    #[case::readyz("/readyz", 200, json!({"status": "OK"}))]
    #[case::delay_zero("/delay/0", 200, json!({"delay": 0}))]
    #[case::status_200("/status/200", 200, json!({"status": 200}))]
    #[case::status_404("/status/404", 404, json!({"status": 404}))]
    #[case::status_503("/status/503", 503, json!({"status": 503}))]
    #[case::status_599("/status/599", 599, json!({"status": 599}))]
    #[tokio::test]
    async fn endpoint_answers(#[case] path: &str, #[case] status: u16, #[case] body: Value) {
        let server = Running::start(config()).await;
        assert_eq!(server.get(path).await, (status, body));
    }

    #[rstest]
    #[case::status_too_high("/status/600")]
    #[case::status_too_low("/status/99")]
    #[case::status_not_a_number("/status/abc")]
    #[case::delay_negative("/delay/-1")]
    #[case::delay_not_a_number("/delay/soon")]
    #[tokio::test]
    async fn bad_parameters_are_400(#[case] path: &str) {
        let server = Running::start(config()).await;
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400);
        assert_eq!(body["status"], 400);
    }

    #[rstest]
    #[case("/nope")]
    #[case("/version/extra")]
    #[tokio::test]
    async fn unknown_paths_are_404(#[case] path: &str) {
        let server = Running::start(config()).await;
        assert_eq!(server.get(path).await.0, 404);
    }

    #[tokio::test]
    async fn delay_endpoint_waits() {
        let server = Running::start(config()).await;
        let start = Instant::now();
        assert_eq!(server.get("/delay/1").await, (200, json!({"delay": 1})));
        assert!(start.elapsed() >= Duration::from_secs(1));
    }

    #[rstest]
    #[case("/")]
    #[case("/version")]
    #[tokio::test]
    async fn configured_delay_applies(#[case] path: &str) {
        let delay = Duration::from_millis(300);
        let server = Running::start(BackendConfig { delay, ..config() }).await;
        let start = Instant::now();
        assert_eq!(server.get(path).await.0, 200);
        assert!(start.elapsed() >= delay);
    }

    #[rstest]
    #[case::never(0.0, 200)]
    #[case::always(1.0, 500)]
    #[tokio::test]
    async fn error_rate_extremes(#[case] error_rate: f64, #[case] expected: u16) {
        let server = Running::start(BackendConfig {
            error_rate,
            ..config()
        })
        .await;
        for _ in 0..50 {
            let (status, body) = server.get("/").await;
            assert_eq!(status, expected);
            // Successes and failures alike must be attributable to a version.
            assert_eq!(body["version"], "6.0.1");
            if expected == 500 {
                assert!(body["error"].is_string());
            }
        }
    }

    #[rstest]
    #[case::valid(config(), true)]
    #[case::empty_version(BackendConfig::new(" "), false)]
    #[case::rate_above_one(BackendConfig { error_rate: 1.5, ..config() }, false)]
    #[case::rate_negative(BackendConfig { error_rate: -0.1, ..config() }, false)]
    #[case::rate_nan(BackendConfig { error_rate: f64::NAN, ..config() }, false)]
    fn validate(#[case] config: BackendConfig, #[case] ok: bool) {
        assert_eq!(config.validate().is_ok(), ok);
    }

    #[tokio::test]
    async fn serve_rejects_invalid_config() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bad = BackendConfig {
            error_rate: 2.0,
            ..config()
        };
        assert!(serve(listener, bad, async {}).await.is_err());
    }

    #[rstest]
    #[case("127.0.0.1:9898")]
    #[case("127.0.0.1:0")]
    #[case("[::1]:8080")]
    fn ready_line_round_trips(#[case] addr: SocketAddr) {
        let line = ready_line(addr);
        assert_eq!(line, format!("listening on {addr}"));
        assert_eq!(parse_ready_line(&line), Some(addr));
        assert_eq!(parse_ready_line(&format!("{line}\n")), Some(addr));
    }

    #[rstest]
    #[case("")]
    #[case("listening on")]
    #[case("listening on nowhere")]
    #[case("serving on 127.0.0.1:9898")]
    fn ready_line_rejects_other_lines(#[case] line: &str) {
        assert_eq!(parse_ready_line(line), None);
    }
}
