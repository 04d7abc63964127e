//! Sends real requests to an entry point and streams, for each, who answered and how.
//!
//! A [`Target`] is anything that can deliver requests: an HTTP address (the local mesh, or a
//! port-forward to Istio's gateway) or, on a cluster, a client pod inside the mesh. It numbers
//! requests in send order (`seq`) and hands every answer over as it arrives, until told to stop:
//! the verdict reads them in that order and stops the batch as soon as it is decided.
//!
//! Which subset served an answer is read from the harness's own response header
//! ([`SUBSET_HEADER`], which every destination of the staged VirtualService sets, on failed
//! answers too), which route configuration served it from [`STAGE_HEADER`], and the version the
//! app reports (if the scenario says where: a header or a JSON pointer) from the answer itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::routing::{STAGE_HEADER, SUBSET_HEADER};
use crate::scenario::{Identify, TrafficClass};

/// One request and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Send order within the batch, from 0: the verdict judges the first requests by it.
    pub seq: u64,
    /// When the answer came, in milliseconds since the batch started.
    pub at_ms: f64,
    pub latency_ms: f64,
    pub status: Option<u16>,
    /// The subset that served it ([`SUBSET_HEADER`]); `None` when no route reached a subset.
    pub subset: Option<String>,
    /// The stage stamp of the route configuration that served it ([`STAGE_HEADER`]).
    pub stamp: Option<String>,
    /// The version the app itself reported, where the scenario says to look.
    pub reported: Option<String>,
    /// Why the request failed (an HTTP error status or a transport error); `None` if it did not.
    pub error: Option<String>,
}

impl Sample {
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// What to send and how much.
#[derive(Debug, Clone)]
pub struct Probe {
    pub class: Arc<TrafficClass>,
    pub identify: Option<Identify>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests to send at most.
    pub max_requests: u64,
}

/// Where each answer goes, as it arrives.
pub type Sink = UnboundedSender<Sample>;

#[async_trait]
pub trait Target: Send + Sync {
    /// Where requests go, for logs and reports.
    fn describe(&self) -> String;
    /// Sends requests numbered in send order until `stop` is cancelled or `probe.max_requests`
    /// were sent, delivering each answer to `sink`; returns once every request sent has
    /// answered (or failed).
    async fn stream(
        &self,
        probe: &Probe,
        stop: &CancellationToken,
        sink: &Sink,
    ) -> anyhow::Result<()>;
}

/// The version an answer reports, from a header value or the body, as `identify` says.
pub fn reported_version(identify: &Identify, header: Option<&str>, body: &[u8]) -> Option<String> {
    match identify {
        Identify::Header(_) => header.map(str::to_string),
        Identify::Json(pointer) => {
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            match value.pointer(pointer)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        }
    }
}

/// An HTTP status the prober counts as a failed request.
pub fn failed_status(status: u16) -> Option<String> {
    (!(200..400).contains(&status)).then(|| format!("HTTP {status}"))
}

/// Requests over HTTP to an address, with the Host header a client of the entry point sends.
/// Clones share the connection pool.
#[derive(Clone)]
pub struct HttpTarget {
    client: reqwest::Client,
    base: String,
    authority: String,
}

impl HttpTarget {
    /// `base` is like `http://127.0.0.1:10000`; `authority` is the Host header.
    pub fn new(base: &str, authority: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            authority: authority.to_string(),
        })
    }

    /// The request of a class: method, URL and headers, built once for all its requests.
    fn prepare(&self, class: &TrafficClass) -> Result<Prepared, String> {
        use reqwest::header::{COOKIE, HOST, HeaderName, HeaderValue};
        let method =
            reqwest::Method::from_bytes(class.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let url = reqwest::Url::parse(&format!("{}{}", self.base, class.path))
            .map_err(|e| format!("the URL {}{}: {e}", self.base, class.path))?;
        let value =
            |v: &str| HeaderValue::from_str(v).map_err(|e| format!("header value {v:?}: {e}"));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(HOST, value(&self.authority)?);
        for (k, v) in &class.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("header name {k:?}: {e}"))?;
            headers.append(name, value(v)?);
        }
        if let Some(cookie) = class.cookie_header() {
            headers.insert(COOKIE, value(&cookie)?);
        }
        Ok(Prepared {
            method,
            url,
            headers,
        })
    }

    /// One request of the probe's class, numbered `seq`.
    pub async fn one(&self, probe: &Probe, seq: u64, started: Instant) -> Sample {
        let prepared = self.prepare(&probe.class);
        self.send(&prepared, probe, seq, started).await
    }

    /// One request as `prepared` (or the reason it could not be), numbered `seq`.
    async fn send(
        &self,
        prepared: &Result<Prepared, String>,
        probe: &Probe,
        seq: u64,
        started: Instant,
    ) -> Sample {
        let t0 = Instant::now();
        let mut sample = Sample {
            seq,
            at_ms: 0.0,
            latency_ms: 0.0,
            status: None,
            subset: None,
            stamp: None,
            reported: None,
            error: None,
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                sample.error = Some(format!("cannot send the request: {e}"));
                sample.at_ms = started.elapsed().as_secs_f64() * 1e3;
                return sample;
            }
        };
        let request = self
            .client
            .request(prepared.method.clone(), prepared.url.clone())
            .headers(prepared.headers.clone());
        match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                sample.status = Some(status);
                sample.subset = header(SUBSET_HEADER);
                sample.stamp = header(STAGE_HEADER);
                let identify_header = match &probe.identify {
                    Some(Identify::Header(name)) => header(name),
                    _ => None,
                };
                sample.error = failed_status(status);
                match resp.bytes().await {
                    Ok(body) => {
                        sample.reported = probe
                            .identify
                            .as_ref()
                            .and_then(|i| reported_version(i, identify_header.as_deref(), &body));
                    }
                    Err(e) => sample.error = Some(format!("reading the body: {e}")),
                }
            }
            Err(e) => sample.error = Some(transport_error(&e)),
        }
        sample.at_ms = started.elapsed().as_secs_f64() * 1e3;
        sample.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
        sample
    }
}

/// A class's request, ready to send again and again.
struct Prepared {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection refused or reset".into()
    } else {
        format!("transport: {e}")
    }
}

#[async_trait]
impl Target for HttpTarget {
    fn describe(&self) -> String {
        format!("{}/ (Host: {})", self.base, self.authority)
    }

    async fn stream(
        &self,
        probe: &Probe,
        stop: &CancellationToken,
        sink: &Sink,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        // A worker takes the next number when it sends: numbers follow send order, and which
        // requests a verdict judges is fixed before their answers are known.
        let next = Arc::new(AtomicU64::new(0));
        let prepared = Arc::new(self.prepare(&probe.class));
        // Each worker is its own task, so the workers spread over the runtime's threads; the
        // set aborts them all if this future is dropped.
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..probe.concurrency.max(1) {
            let (target, probe, stop, sink, next, prepared) = (
                self.clone(),
                probe.clone(),
                stop.clone(),
                sink.clone(),
                next.clone(),
                prepared.clone(),
            );
            workers.spawn(async move {
                loop {
                    if stop.is_cancelled() {
                        break;
                    }
                    let seq = next.fetch_add(1, Ordering::SeqCst);
                    if seq >= probe.max_requests {
                        break;
                    }
                    let sample = target.send(&prepared, &probe, seq, started).await;
                    if sink.send(sample).is_err() {
                        break;
                    }
                }
            });
        }
        while let Some(done) = workers.join_next().await {
            done.context("a prober worker failed")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{self, BackendConfig};
    use rstest::rstest;

    #[rstest]
    #[case(Identify::Json("/version".into()), None, br#"{"version":"6.14.1"}"#.as_slice(), Some("6.14.1"))]
    #[case(Identify::Json("/build/tag".into()), None, br#"{"build":{"tag":7}}"#.as_slice(), Some("7"))]
    #[case(Identify::Json("/version".into()), None, b"<html>".as_slice(), None)]
    #[case(Identify::Header("x-version".into()), Some("2.0"), b"".as_slice(), Some("2.0"))]
    #[case(Identify::Header("x-version".into()), None, br#"{"version":"1"}"#.as_slice(), None)]
    fn versions_are_read_where_the_scenario_says(
        #[case] identify: Identify,
        #[case] header: Option<&str>,
        #[case] body: &[u8],
        #[case] want: Option<&str>,
    ) {
        assert_eq!(reported_version(&identify, header, body).as_deref(), want);
    }

    #[rstest]
    #[case(200, None)]
    #[case(302, None)]
    #[case(404, Some("HTTP 404"))]
    #[case(503, Some("HTTP 503"))]
    fn statuses(#[case] status: u16, #[case] want: Option<&str>) {
        assert_eq!(failed_status(status).as_deref(), want);
    }

    async fn start(config: BackendConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(backend::serve(listener, config, async {
            let _ = rx.await;
        }));
        (format!("http://{addr}"), tx)
    }

    fn probe(max: u64, concurrency: usize) -> Probe {
        Probe {
            class: Arc::new(TrafficClass::default_class()),
            identify: Some(Identify::Json("/version".into())),
            concurrency,
            max_requests: max,
        }
    }

    async fn collect(target: &HttpTarget, probe: &Probe, stop: &CancellationToken) -> Vec<Sample> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        target.stream(probe, stop, &tx).await.unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Some(s) = rx.recv().await {
            out.push(s);
        }
        out
    }

    #[tokio::test]
    async fn streams_numbered_answers_up_to_the_maximum() {
        let (url, _stop) = start(BackendConfig::new("1.2.3")).await;
        let target = HttpTarget::new(&url, "podinfo.test:9898").unwrap();
        let mut samples = collect(&target, &probe(57, 5), &CancellationToken::new()).await;
        samples.sort_by_key(|s| s.seq);
        let seqs: Vec<u64> = samples.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..57).collect::<Vec<_>>());
        assert!(
            samples
                .iter()
                .all(|s| s.reported.as_deref() == Some("1.2.3") && s.is_ok())
        );
        // Straight to a backend: no mesh added the harness's headers.
        assert!(
            samples
                .iter()
                .all(|s| s.subset.is_none() && s.stamp.is_none())
        );
    }

    #[tokio::test]
    async fn a_stop_ends_the_stream_early() {
        let (url, _stop) = start(BackendConfig::new("1.2.3")).await;
        let target = HttpTarget::new(&url, "x").unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(collect(&target, &probe(1000, 4), &stop).await.is_empty());
    }

    #[tokio::test]
    async fn failed_answers_keep_what_they_tell() {
        let mut config = BackendConfig::new("9.9.9");
        config.error_rate = 1.0;
        let (url, _stop) = start(config).await;
        let target = HttpTarget::new(&url, "x").unwrap();
        let samples = collect(&target, &probe(10, 3), &CancellationToken::new()).await;
        assert_eq!(samples.len(), 10);
        assert!(
            samples
                .iter()
                .all(|s| s.error.as_deref() == Some("HTTP 500"))
        );
        assert!(
            samples
                .iter()
                .all(|s| s.reported.as_deref() == Some("9.9.9"))
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let target = HttpTarget::new(&format!("http://{addr}"), "x").unwrap();
        let samples = collect(&target, &probe(2, 1), &CancellationToken::new()).await;
        assert_eq!(samples.len(), 2);
        assert!(samples.iter().all(|s| s.status.is_none() && !s.is_ok()));
    }
}
