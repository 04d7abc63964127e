//! A podinfo-compatible HTTP backend ("podinfo-lite"), or an app that reports no version.
//!
//! The classic Istio canary tutorial routes traffic between two versions of
//! stefanprodan/podinfo. The harness runs one process of this clone per subset
//! (GA, canary) behind a real Envoy on loopback and tells the versions apart by
//! the `version` field of the JSON body of `GET /`. Only the endpoints the
//! harness and the tutorial use are implemented, with podinfo's shapes.
//!
//! [`Mode::Plain`] stands for an app that reports no version at all (agnhost's
//! `netexec`): plain-text bodies, `GET /` answers `NOW: <RFC 3339 time>`.
//!
//! Podinfo's `--random-delay`/`--random-error` flags are replaced by explicit,
//! reproducible knobs: a fixed [`BackendConfig::delay`] and an
//! [`BackendConfig::error_rate`], so a scenario can make the canary measurably
//! slower or flakier than the GA version. They apply in both modes.
//!
//! Every constant body is rendered once, when the router is built: the hot
//! path (`GET /` with no delay) touches no timer, no file and no serializer.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Longest wait `/delay/{seconds}` honours, so a typo cannot park a
/// connection (and a graceful shutdown) for minutes.
pub const MAX_DELAY_SECONDS: u64 = 10;

/// Which app the backend stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// stefanprodan/podinfo: JSON bodies that carry the version.
    #[default]
    Podinfo,
    /// agnhost `netexec`: plain-text bodies, no version in any body or header.
    Plain,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Podinfo, Mode::Plain];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Podinfo => "podinfo",
            Mode::Plain => "plain",
        }
    }

    /// Whether responses can be attributed to a version (a subset) at all.
    pub fn reports_version(self) -> bool {
        self == Mode::Podinfo
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown backend mode {s:?} (expected podinfo or plain)"))
    }
}

/// What one backend process impersonates and how badly it behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Which app's endpoints and bodies to serve.
    pub mode: Mode,
    /// Reported as `version` by `/` and `/version` in podinfo mode; this is how
    /// the harness attributes a response to a subset. Never reported in plain mode.
    pub version: String,
    /// Reported as `revision` by `/` and `commit` by `/version` in podinfo mode.
    pub commit: String,
    /// Added before answering `/` (both modes) and `/version` (podinfo's
    /// `--random-delay`, made fixed). Zero means no timer at all.
    pub delay: Duration,
    /// Probability in [0, 1] that `/` answers 500 (podinfo's `--random-error`, made explicit).
    pub error_rate: f64,
}

impl BackendConfig {
    /// A well-behaved podinfo of the given version: no delay, no errors.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            mode: Mode::Podinfo,
            version: version.into(),
            commit: "unknown".to_owned(),
            delay: Duration::ZERO,
            error_rate: 0.0,
        }
    }

    /// A well-behaved app that reports no version (agnhost `netexec`).
    pub fn plain() -> Self {
        Self {
            mode: Mode::Plain,
            ..Self::new("")
        }
    }

    /// Rejects configurations that would make responses unattributable
    /// (a podinfo with an empty version) or the error rate meaningless.
    pub fn validate(&self) -> Result<(), String> {
        if self.mode.reports_version() && self.version.trim().is_empty() {
            return Err("backend version must not be empty in podinfo mode".to_owned());
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "backend error rate must be a probability in [0, 1], got {}",
                self.error_rate
            ));
        }
        Ok(())
    }

    /// The wait before answering, or `None` when there is none: the handlers
    /// then never create a timer (even a zero sleep waits for the timer wheel).
    pub fn injected_delay(&self) -> Option<Duration> {
        (!self.delay.is_zero()).then_some(self.delay)
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
    fn new(config: &BackendConfig, hostname: &str) -> Self {
        Self {
            hostname: hostname.to_owned(),
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

/// The injected-error draw: SplitMix64 over an atomic counter, which is
/// lock-free, allocation-free and plenty random for a failure ratio.
#[derive(Debug)]
struct ErrorDraw {
    rate: f64,
    state: AtomicU64,
}

impl ErrorDraw {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// `None` for a zero rate, so a healthy backend never draws.
    fn new(rate: f64) -> Option<Self> {
        (rate > 0.0).then(|| Self {
            rate,
            state: AtomicU64::new(rand::random()),
        })
    }

    /// A uniform draw in [0, 1): rate 1 always fails, rate 0 never would.
    fn next_unit(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(Self::GAMMA, Ordering::Relaxed)
            .wrapping_add(Self::GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn fails(&self) -> bool {
        self.next_unit() < self.rate
    }
}

/// Everything a handler needs, computed once per server.
#[derive(Debug)]
struct App {
    delay: Option<Duration>,
    errors: Option<ErrorDraw>,
    version: String,
    commit: String,
    hostname: Bytes,
    /// `GET /` when it succeeds (podinfo mode; plain mode renders the time per request).
    index: Bytes,
    /// `GET /` when an error is injected.
    error: Bytes,
    /// `GET /version` (podinfo mode).
    version_body: Bytes,
    /// `GET /healthz` and `GET /readyz`.
    ok: Bytes,
    not_found: Bytes,
}

impl App {
    fn new(config: &BackendConfig) -> Self {
        let hostname = hostname();
        let to_bytes = |v: &serde_json::Value| Bytes::from(v.to_string());
        let (index, error, version_body, ok, not_found) = match config.mode {
            Mode::Podinfo => (
                Bytes::from(
                    serde_json::to_vec(&Info::new(config, &hostname)).expect("Info serializes"),
                ),
                to_bytes(&json!({"error": "injected error", "version": config.version})),
                to_bytes(&json!({"version": config.version, "commit": config.commit})),
                to_bytes(&json!({"status": "OK"})),
                to_bytes(&json!({"error": "not found", "status": 404})),
            ),
            Mode::Plain => (
                Bytes::new(),
                Bytes::from_static(b"injected error\n"),
                Bytes::new(),
                Bytes::from_static(b"ok"),
                // Go's net/http wording, as agnhost (a Go program) answers.
                Bytes::from_static(b"404 page not found\n"),
            ),
        };
        Self {
            delay: config.injected_delay(),
            errors: ErrorDraw::new(config.error_rate),
            version: config.version.clone(),
            commit: config.commit.clone(),
            hostname: Bytes::from(hostname),
            index,
            error,
            version_body,
            ok,
            not_found,
        }
    }

    /// The configured wait, if any, then whether this request gets the injected error.
    async fn misbehave(&self) -> bool {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        self.errors.as_ref().is_some_and(ErrorDraw::fails)
    }
}

type Shared = Arc<App>;

/// The endpoints of the configured [`Mode`]; anything else is a 404 in that mode's style.
///
/// Podinfo mode: `/`, `/version`, `/headers`, `/healthz`, `/readyz`,
/// `/delay/{seconds}`, `/status/{code}`. Plain mode: `/`, `/hostname`,
/// `/healthz`, `/readyz`.
///
/// The config is taken as given; call [`BackendConfig::validate`] first
/// ([`serve`] does). An out-of-range error rate behaves as clamped to [0, 1].
pub fn router(config: BackendConfig) -> Router {
    let app = Arc::new(App::new(&config));
    match config.mode {
        Mode::Podinfo => Router::new()
            .route("/", get(podinfo_index))
            .route("/version", get(podinfo_version))
            .route("/headers", get(podinfo_headers))
            .route("/healthz", get(json_ok))
            .route("/readyz", get(json_ok))
            .route("/delay/{seconds}", get(podinfo_delay))
            .route("/status/{code}", get(podinfo_status))
            .fallback(json_not_found)
            .with_state(app),
        Mode::Plain => Router::new()
            .route("/", get(plain_index))
            .route("/hostname", get(plain_hostname))
            .route("/healthz", get(plain_ok))
            .route("/readyz", get(plain_ok))
            .fallback(plain_not_found)
            .with_state(app),
    }
}

/// Serves until `shutdown` resolves, then stops accepting and lets every
/// in-flight request finish (keep-alive connections are closed after their
/// current response) before returning.
///
/// The caller prints [`ready_line`] after binding `listener`: connections made
/// before this future is polled wait in the kernel's backlog, so that is safe.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: BackendConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        mode = %config.mode,
        // Not even the log of a plain app names a version.
        version = config.mode.reports_version().then_some(config.version.as_str()),
        "podinfo-lite serving"
    );
    serve_router(listener, router(config), shutdown).await
}

async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, app)
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

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// A response of pre-rendered bytes: no serializer on the hot path.
fn respond(status: StatusCode, content_type: &HeaderValue, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.clone());
    response
}

async fn podinfo_index(State(app): State<Shared>) -> Response {
    if app.misbehave().await {
        return respond(StatusCode::INTERNAL_SERVER_ERROR, &JSON, app.error.clone());
    }
    respond(StatusCode::OK, &JSON, app.index.clone())
}

async fn podinfo_version(State(app): State<Shared>) -> Response {
    if let Some(delay) = app.delay {
        tokio::time::sleep(delay).await;
    }
    respond(StatusCode::OK, &JSON, app.version_body.clone())
}

/// Podinfo echoes `r.Header` as JSON: Go's canonical names, values as arrays,
/// no `Host` (Go moves it out of the map), plus the `X-Api-Version` and
/// `X-Api-Revision` its middleware adds to every request.
async fn podinfo_headers(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let mut echoed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &headers {
        if name == axum::http::header::HOST {
            continue;
        }
        echoed
            .entry(go_canonical(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    echoed.insert("X-Api-Version".to_owned(), vec![app.version.clone()]);
    echoed.insert("X-Api-Revision".to_owned(), vec![app.commit.clone()]);
    axum::Json(echoed).into_response()
}

/// Go's `CanonicalMIMEHeaderKey`: upper case after each `-`, lower case elsewhere.
fn go_canonical(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

async fn json_ok(State(app): State<Shared>) -> Response {
    respond(StatusCode::OK, &JSON, app.ok.clone())
}

/// Path segments are parsed by hand so bad input gets a JSON 400 like everything else.
async fn podinfo_delay(Path(seconds): Path<String>) -> Response {
    let Ok(seconds) = seconds.parse::<u64>() else {
        return bad_request(format!("invalid delay {seconds:?}"));
    };
    // Answer with the delay actually waited, so a capped request is visible.
    let seconds = seconds.min(MAX_DELAY_SECONDS);
    if seconds > 0 {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    axum::Json(json!({"delay": seconds})).into_response()
}

/// Note that hyper cannot send a 1xx as a final response (it sends 500
/// instead) and drops the body of 204/304; podinfo has the same limits.
async fn podinfo_status(Path(code): Path<String>) -> Response {
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

async fn json_not_found(State(app): State<Shared>) -> Response {
    respond(StatusCode::NOT_FOUND, &JSON, app.not_found.clone())
}

fn bad_request(message: String) -> Response {
    let body = json!({"error": message, "status": 400});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// Agnhost's `NOW: <time>`, the time in RFC 3339 (UTC, nanoseconds).
async fn plain_index(State(app): State<Shared>) -> Response {
    if app.misbehave().await {
        return respond(StatusCode::INTERNAL_SERVER_ERROR, &TEXT, app.error.clone());
    }
    let now = chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    respond(StatusCode::OK, &TEXT, Bytes::from(format!("NOW: {now}")))
}

async fn plain_hostname(State(app): State<Shared>) -> Response {
    respond(StatusCode::OK, &TEXT, app.hostname.clone())
}

async fn plain_ok(State(app): State<Shared>) -> Response {
    respond(StatusCode::OK, &TEXT, app.ok.clone())
}

async fn plain_not_found(State(app): State<Shared>) -> Response {
    respond(StatusCode::NOT_FOUND, &TEXT, app.not_found.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Request;
    use axum::middleware::Next;
    use reqwest::header::HeaderMap as ReqHeaders;
    use rstest::rstest;
    use serde_json::Value;
    use std::io::{Read, Write};
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;
    use tokio::sync::{oneshot, watch};

    /// Contains a version the tests can look for; no date or hostname contains it.
    const VERSION: &str = "6.0.1";

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
            Self {
                base: format!("http://{addr}"),
                client: client(),
                _stop: stop,
            }
        }

        async fn get_raw(&self, path: &str) -> (u16, ReqHeaders, String) {
            let resp = self
                .client
                .get(format!("{}{path}", self.base))
                .header("X-Test", "one")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, headers, resp.text().await.unwrap())
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            let (status, _, text) = self.get_raw(path).await;
            let body = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            };
            (status, body)
        }
    }

    /// No proxy: an inherited HTTP_PROXY must not intercept loopback calls.
    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    fn config() -> BackendConfig {
        BackendConfig {
            commit: "abc123".to_owned(),
            ..BackendConfig::new(VERSION)
        }
    }

    fn plain() -> BackendConfig {
        // The local mesh passes `--version` in every mode; plain mode must not leak it.
        BackendConfig {
            mode: Mode::Plain,
            ..config()
        }
    }

    #[tokio::test]
    async fn index_reports_info_with_version() {
        let server = Running::start(config()).await;
        let (status, headers, text) = server.get_raw("/").await;
        assert_eq!(status, 200);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        let info: Info = serde_json::from_str(&text).unwrap();
        assert_eq!(info.version, VERSION);
        assert_eq!(info.revision, "abc123");
        assert_eq!(info.message, "greetings from podinfo v6.0.1");
        assert_eq!(info.runtime, "rust");
        assert_eq!(info.hostname, hostname());
        assert!(info.num_cpu >= 1);
        // Exactly podinfo's fields, no more.
        let fields = serde_json::from_str::<serde_json::Map<String, Value>>(&text).unwrap();
        assert_eq!(fields.len(), 11, "{text}");
    }

    #[tokio::test]
    async fn index_body_is_the_same_every_time() {
        let server = Running::start(config()).await;
        let (_, _, first) = server.get_raw("/").await;
        for _ in 0..5 {
            assert_eq!(server.get_raw("/").await.2, first);
        }
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
    #[case::unknown("/nope", 404, json!({"error": "not found", "status": 404}))]
    #[tokio::test]
    async fn endpoint_answers(#[case] path: &str, #[case] status: u16, #[case] body: Value) {
        let server = Running::start(config()).await;
        assert_eq!(server.get(path).await, (status, body));
    }

    #[tokio::test]
    async fn headers_echoes_the_request_headers_as_podinfo() {
        let server = Running::start(config()).await;
        let (status, body) = server.get("/headers").await;
        assert_eq!(status, 200);
        assert_eq!(body["X-Test"], json!(["one"]));
        assert_eq!(body["Accept"], json!(["*/*"]));
        assert_eq!(body["X-Api-Version"], json!([VERSION]));
        assert_eq!(body["X-Api-Revision"], json!(["abc123"]));
        assert!(body.get("Host").is_none(), "{body}");
    }

    #[rstest]
    #[case("x-test", "X-Test")]
    #[case("accept", "Accept")]
    #[case("x-forwarded-for", "X-Forwarded-For")]
    #[case("x-b3-traceid", "X-B3-Traceid")]
    fn header_names_are_canonical_as_in_go(#[case] name: &str, #[case] canonical: &str) {
        assert_eq!(go_canonical(name), canonical);
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
    #[case(config(), "/")]
    #[case(config(), "/version")]
    #[case(plain(), "/")]
    #[tokio::test]
    async fn configured_delay_applies(#[case] config: BackendConfig, #[case] path: &str) {
        let delay = Duration::from_millis(300);
        let server = Running::start(BackendConfig { delay, ..config }).await;
        let start = Instant::now();
        assert_eq!(server.get_raw(path).await.0, 200);
        assert!(start.elapsed() >= delay);
    }

    /// Plain mode: nothing anywhere says which version answered.
    fn assert_no_version(path: &str, headers: &ReqHeaders, text: &str) {
        assert!(!text.contains(VERSION), "{path}: {text}");
        assert!(!text.contains("version"), "{path}: {text}");
        for (name, value) in headers {
            assert!(!name.as_str().contains("version"), "{path}: header {name}");
            let value = value.to_str().unwrap();
            assert!(!value.contains(VERSION), "{path}: {name}: {value}");
        }
    }

    #[tokio::test]
    async fn plain_index_tells_the_time_and_no_version() {
        let server = Running::start(plain()).await;
        let (status, headers, text) = server.get_raw("/").await;
        assert_eq!(status, 200);
        assert_eq!(headers[CONTENT_TYPE], "text/plain; charset=utf-8");
        let now = text.strip_prefix("NOW: ").expect(&text);
        let at = chrono::DateTime::parse_from_rfc3339(now).expect(now);
        let age =
            chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).signed_duration_since(at);
        assert!(age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(5));
        assert_no_version("/", &headers, &text);
    }

    #[rstest]
    #[case::hostname("/hostname", 200, hostname())]
    #[case::healthz("/healthz", 200, "ok".to_owned())]
    #[case::readyz("/readyz", 200, "ok".to_owned())]
    #[case::no_version_endpoint("/version", 404, "404 page not found\n".to_owned())]
    #[case::no_headers_endpoint("/headers", 404, "404 page not found\n".to_owned())]
    #[case::no_podinfo_status("/status/200", 404, "404 page not found\n".to_owned())]
    #[tokio::test]
    async fn plain_endpoint_answers_without_version(
        #[case] path: &str,
        #[case] status: u16,
        #[case] body: String,
    ) {
        let server = Running::start(plain()).await;
        let (got, headers, text) = server.get_raw(path).await;
        assert_eq!((got, text.as_str()), (status, body.as_str()));
        assert_eq!(headers[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_no_version(path, &headers, &text);
    }

    #[rstest]
    #[case::podinfo_never(config(), 0.0, 200)]
    #[case::podinfo_always(config(), 1.0, 500)]
    #[case::plain_never(plain(), 0.0, 200)]
    #[case::plain_always(plain(), 1.0, 500)]
    #[tokio::test]
    async fn error_rate_extremes(
        #[case] config: BackendConfig,
        #[case] error_rate: f64,
        #[case] expected: u16,
    ) {
        let mode = config.mode;
        let server = Running::start(BackendConfig {
            error_rate,
            ..config
        })
        .await;
        for _ in 0..50 {
            let (status, headers, text) = server.get_raw("/").await;
            assert_eq!(status, expected);
            match (mode, expected) {
                // Successes and failures alike must be attributable to a version.
                (Mode::Podinfo, _) => {
                    let body: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(body["version"], VERSION);
                    assert_eq!(body["error"].is_string(), expected == 500);
                }
                (Mode::Plain, 500) => {
                    assert_eq!(text, "injected error\n");
                    assert_no_version("/", &headers, &text);
                }
                (Mode::Plain, _) => assert!(text.starts_with("NOW: "), "{text}"),
            }
        }
    }

    #[rstest]
    #[case::podinfo(config())]
    #[case::plain(plain())]
    #[tokio::test]
    async fn error_rate_fails_a_share_of_requests(#[case] config: BackendConfig) {
        let server = Running::start(BackendConfig {
            error_rate: 0.5,
            ..config
        })
        .await;
        let mut failed = 0;
        for _ in 0..200 {
            let (status, _, _) = server.get_raw("/").await;
            assert!(status == 200 || status == 500, "{status}");
            failed += usize::from(status == 500);
        }
        // Binomial(200, 0.5): outside [50, 150] is a >7-sigma event.
        assert!((50..=150).contains(&failed), "{failed} of 200 failed");
    }

    #[rstest]
    #[case(0.1)]
    #[case(0.3)]
    #[case(0.9)]
    fn error_draw_matches_its_rate(#[case] rate: f64) {
        let draw = ErrorDraw::new(rate).unwrap();
        let n = 100_000;
        let failed = (0..n).filter(|_| draw.fails()).count();
        let share = failed as f64 / n as f64;
        // The standard error is at most 0.0016: 0.01 is over six of them.
        assert!((share - rate).abs() < 0.01, "rate {rate}: {share}");
    }

    #[test]
    fn error_draw_is_in_the_unit_interval() {
        let draw = ErrorDraw::new(1.0).unwrap();
        assert!((0..10_000).all(|_| (0.0..1.0).contains(&draw.next_unit())));
        assert!((0..100).all(|_| draw.fails()));
    }

    #[rstest]
    #[case::zero(0.0, false)]
    #[case::some(0.01, true)]
    #[case::all(1.0, true)]
    fn only_a_positive_error_rate_draws(#[case] error_rate: f64, #[case] draws: bool) {
        let app = App::new(&BackendConfig {
            error_rate,
            ..config()
        });
        assert_eq!(app.errors.is_some(), draws);
    }

    #[rstest]
    #[case::zero(Duration::ZERO, None)]
    #[case::one_ms(Duration::from_millis(1), Some(Duration::from_millis(1)))]
    #[case::one_ns(Duration::from_nanos(1), Some(Duration::from_nanos(1)))]
    fn only_a_positive_delay_waits(#[case] delay: Duration, #[case] wait: Option<Duration>) {
        let config = BackendConfig { delay, ..config() };
        assert_eq!(config.injected_delay(), wait);
        assert_eq!(App::new(&config).delay, wait);
    }

    /// One `GET` over a blocking socket, so the client needs no runtime timer either;
    /// `None` if the server closed the connection without answering.
    fn blocking_get(addr: SocketAddr, path: &str) -> Option<String> {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer
            .split("\r\n")
            .next()
            .filter(|status| !status.is_empty())
            .map(str::to_owned)
    }

    /// The server runs on a runtime with no time driver, where any
    /// `tokio::time::sleep` (even of zero) panics the handler: with no delay
    /// configured `/` must answer, and with one the handler must hit the timer
    /// (which shows the check can fail).
    #[rstest]
    #[case::podinfo_zero(config(), Duration::ZERO, true)]
    #[case::plain_zero(plain(), Duration::ZERO, true)]
    #[case::podinfo_errors_zero(BackendConfig { error_rate: 0.5, ..config() }, Duration::ZERO, true)]
    #[case::podinfo_1ms(config(), Duration::from_millis(1), false)]
    #[case::plain_1ms(plain(), Duration::from_millis(1), false)]
    fn zero_delay_never_touches_the_timer(
        #[case] config: BackendConfig,
        #[case] delay: Duration,
        #[case] answers: bool,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let status = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, BackendConfig { delay, ..config }, async {
                let _ = stopped.await;
            }));
            let status = tokio::task::spawn_blocking(move || blocking_get(addr, "/"))
                .await
                .unwrap();
            stop.send(()).unwrap();
            server.await.unwrap().unwrap();
            status
        });
        match status {
            Some(line) if answers => assert!(
                line == "HTTP/1.1 200 OK" || line == "HTTP/1.1 500 Internal Server Error",
                "{line}"
            ),
            None if !answers => {}
            other => panic!("expected an answer: {answers}, got {other:?}"),
        }
    }

    /// Holds every request at the door until `open` says so, counting arrivals,
    /// so the test knows they are all in flight when it shuts the server down.
    #[derive(Clone)]
    struct Gate {
        arrived: Arc<AtomicUsize>,
        open: watch::Receiver<bool>,
    }

    async fn gated(State(gate): State<Gate>, request: Request, next: Next) -> Response {
        gate.arrived.fetch_add(1, Ordering::SeqCst);
        let mut open = gate.open.clone();
        open.wait_for(|open| *open).await.unwrap();
        next.run(request).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_lets_in_flight_requests_finish() {
        const IN_FLIGHT: usize = 8;
        let delay = Duration::from_millis(200);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open_gate, open) = watch::channel(false);
        let gate = Gate {
            arrived: Arc::new(AtomicUsize::new(0)),
            open,
        };
        let app = router(BackendConfig { delay, ..config() })
            .layer(axum::middleware::from_fn_with_state(gate.clone(), gated));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_router(listener, app, async {
            let _ = stopped.await;
        }));

        // Slow requests, each on its own connection: `/` waits `delay`, `/delay/1` a second.
        let requests: Vec<_> = (0..IN_FLIGHT)
            .map(|i| {
                let path = if i % 2 == 0 { "/" } else { "/delay/1" };
                let request = client().get(format!("http://{addr}{path}")).send();
                tokio::spawn(async move {
                    let resp = request.await?;
                    let status = resp.status().as_u16();
                    Ok::<_, reqwest::Error>((status, resp.text().await?))
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while gate.arrived.load(Ordering::SeqCst) < IN_FLIGHT {
            assert!(Instant::now() < deadline, "the requests never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        stop.send(()).unwrap();
        // The server has taken the signal once it refuses new connections.
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "the server kept accepting");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            !server.is_finished(),
            "the server quit with requests in flight"
        );
        open_gate.send(true).unwrap();

        for request in requests {
            let (status, text) = request.await.unwrap().expect("an in-flight request failed");
            assert_eq!(status, 200, "{text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            assert!(body["version"] == VERSION || body["delay"] == 1, "{body}");
        }
        server.await.unwrap().unwrap();
    }

    #[rstest]
    #[case::valid(config(), true)]
    #[case::empty_version(BackendConfig::new(" "), false)]
    #[case::plain_without_version(BackendConfig::plain(), true)]
    #[case::plain_with_version(plain(), true)]
    #[case::plain_rate_above_one(BackendConfig { error_rate: 1.5, ..plain() }, false)]
    #[case::rate_above_one(BackendConfig { error_rate: 1.5, ..config() }, false)]
    #[case::rate_negative(BackendConfig { error_rate: -0.1, ..config() }, false)]
    #[case::rate_nan(BackendConfig { error_rate: f64::NAN, ..config() }, false)]
    fn validate(#[case] config: BackendConfig, #[case] ok: bool) {
        assert_eq!(config.validate().is_ok(), ok);
    }

    #[rstest]
    #[case("podinfo", Some(Mode::Podinfo))]
    #[case("plain", Some(Mode::Plain))]
    #[case("agnhost", None)]
    #[case("", None)]
    fn mode_parses(#[case] text: &str, #[case] mode: Option<Mode>) {
        assert_eq!(text.parse::<Mode>().ok(), mode);
        if let Some(mode) = mode {
            assert_eq!(mode.to_string(), text);
        }
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
