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
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use http::header::{COOKIE, HOST, HeaderMap, HeaderName, HeaderValue};
use prober_engine::{Answer, Batch, CONNECTION_ERROR, Reading, VersionAt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::routing::{STAGE_HEADER, SUBSET_HEADER};
use crate::scenario::{Identify, TrafficClass};

pub use prober_engine::{Sample, failed_status};

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
        Identify::Json(pointer) => prober_engine::string_at(body, pointer),
    }
}

/// Bound on one request, from the send to the last byte of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Requests over HTTP/1.1 to an address, with the Host header a client of the entry point
/// sends.
///
/// In a batch ([`Target::stream`]) each worker has its own keep-alive connection, driven in the
/// worker's own task ([`prober_engine::Batch`]): a request and its answer never cross tasks,
/// which keeps the prober close to a C load generator's rate (`cargo xtask bench`). Single
/// requests ([`HttpTarget::one`], the background load) share a pooled client instead; clones
/// share that pool.
#[derive(Clone)]
pub struct HttpTarget {
    pool: reqwest::Client,
    base: String,
    /// `host:port` of `base`, where the workers connect.
    address: String,
    authority: String,
}

/// A class's request, ready to send again and again.
struct Prepared {
    /// The whole URL, for the pooled client.
    url: reqwest::Url,
    request: prober_engine::Request,
}

impl HttpTarget {
    /// `base` is like `http://127.0.0.1:10000`; `authority` is the Host header.
    pub fn new(base: &str, authority: &str) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        let address = base
            .strip_prefix("http://")
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .with_context(|| format!("{base}: expected http://host:port"))?
            .to_string();
        let pool = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            pool,
            base,
            address,
            authority: authority.to_string(),
        })
    }

    /// The request of a class: method, path and headers, built once for all its requests.
    fn prepare(&self, class: &TrafficClass) -> Result<Prepared, String> {
        let method = http::Method::from_bytes(class.method.as_bytes()).unwrap_or(http::Method::GET);
        let url = reqwest::Url::parse(&format!("{}{}", self.base, class.path))
            .map_err(|e| format!("the URL {}{}: {e}", self.base, class.path))?;
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let path = path
            .parse::<http::Uri>()
            .map_err(|e| format!("the path {path}: {e}"))?;
        let value =
            |v: &str| HeaderValue::from_str(v).map_err(|e| format!("header value {v:?}: {e}"));
        let mut headers = HeaderMap::new();
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
            url,
            request: prober_engine::Request {
                method,
                path,
                headers,
            },
        })
    }

    /// One request of the probe's class, numbered `seq`, through the shared pool.
    pub async fn one(&self, probe: &Probe, seq: u64, started: Instant) -> Sample {
        let answer = async {
            let prepared = self
                .prepare(&probe.class)
                .map_err(|e| format!("cannot send the request: {e}"))?;
            let Prepared { url, request } = prepared;
            let response = self
                .pool
                .request(request.method, url)
                .headers(request.headers)
                .send()
                .await
                .map_err(|e| reqwest_error(&e))?;
            let (status, headers) = (response.status(), response.headers().clone());
            let body = response
                .bytes()
                .await
                .map_err(|e| format!("reading the body: {e}"));
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        match reading(probe.identify.as_ref()) {
            Ok(reading) => Sample::timed(seq, started, &reading, answer).await,
            Err(e) => Sample {
                error: Some(format!("cannot send the request: {e}")),
                ..Sample::sent(seq)
            },
        }
    }
}

/// Where an answer tells what served it: the harness's headers, and the version where the
/// scenario says (a header name the scenario checked, so the error is for hand-made probes).
fn reading(identify: Option<&Identify>) -> Result<Reading, String> {
    let version = match identify {
        None => None,
        Some(Identify::Header(name)) => Some(VersionAt::Header(
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("the version header {name:?}: {e}"))?,
        )),
        Some(Identify::Json(pointer)) => Some(VersionAt::Json(pointer.clone())),
    };
    Ok(Reading {
        version,
        ..reading_without_version()
    })
}

fn reading_without_version() -> Reading {
    Reading {
        subset: HeaderName::from_static(SUBSET_HEADER),
        stamp: HeaderName::from_static(STAGE_HEADER),
        version: None,
    }
}

fn reqwest_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        CONNECTION_ERROR.into()
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
        let reading = reading(probe.identify.as_ref());
        // A request that cannot be sent or read still goes through the batch: each of its
        // requests is then a failed sample that says why.
        let (request, reading) = match (self.prepare(&probe.class), reading) {
            (Ok(prepared), Ok(reading)) => (Ok(prepared.request), reading),
            (Err(e), _) | (_, Err(e)) => (Err(e), reading_without_version()),
        };
        let batch = Batch {
            address: self.address.clone(),
            request,
            reading,
            concurrency: probe.concurrency,
            max_requests: probe.max_requests,
            timeout: REQUEST_TIMEOUT,
        };
        batch.run(stop, sink).await;
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
