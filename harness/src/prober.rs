//! Sends real requests to an entry point and records, for each, who answered and how.
//!
//! A [`Target`] is anything that can deliver a batch of requests: an HTTP address (the local
//! mesh, or a port-forward to Istio's gateway) or, on a cluster, a client pod inside the mesh.
//! Failed requests are recorded as errors and never counted for either version.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One request and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the answer came, in milliseconds since the batch started.
    pub at_ms: f64,
    pub latency_ms: f64,
    /// The version the answer reports, also on error answers that carry one.
    pub version: Option<String>,
    pub status: Option<u16>,
    /// Why the request counts as failed; `None` for a good answer.
    pub error: Option<String>,
}

impl Sample {
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Reports each sample as it arrives (progress bars, live charts).
pub type OnSample<'a> = &'a (dyn Fn(&Sample) + Send + Sync);

/// How many requests a batch makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Good answers to collect.
    pub want: u64,
    /// Requests to send at most, failures included.
    pub max_requests: u64,
    pub concurrency: usize,
}

#[async_trait]
pub trait Target: Send + Sync {
    /// Where requests go, for logs and reports.
    fn describe(&self) -> String;
    /// Sends requests until `batch.want` good answers or `batch.max_requests` requests.
    async fn collect(&self, batch: Batch, on_sample: OnSample<'_>) -> anyhow::Result<Vec<Sample>>;
}

/// Classifies one HTTP answer of podinfo's `/`.
pub fn classify(status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    let version = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_string));
    let error = if !(200..300).contains(&status) {
        Some(format!("HTTP {status}"))
    } else if version.is_none() {
        Some("answer without a version".to_string())
    } else {
        None
    };
    (version, error)
}

/// Requests over HTTP to an address, with the Host header a client of the entry point sends.
pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
    authority: String,
}

impl HttpTarget {
    /// `base` is like `http://127.0.0.1:10000`; `authority` is the Host header.
    pub fn new(base: &str, authority: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            client,
            url: format!("{}/", base.trim_end_matches('/')),
            authority: authority.to_string(),
        })
    }

    async fn one(&self, started: Instant) -> Sample {
        let t0 = Instant::now();
        let result = self
            .client
            .get(&self.url)
            .header(reqwest::header::HOST, &self.authority)
            .send()
            .await;
        let (status, version, error) = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(body) => {
                        let (version, error) = classify(status, &body);
                        (Some(status), version, error)
                    }
                    Err(e) => (Some(status), None, Some(format!("reading the body: {e}"))),
                }
            }
            Err(e) => (None, None, Some(transport_error(&e))),
        };
        Sample {
            at_ms: started.elapsed().as_secs_f64() * 1e3,
            latency_ms: t0.elapsed().as_secs_f64() * 1e3,
            version,
            status,
            error,
        }
    }
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
        format!("{} (Host: {})", self.url, self.authority)
    }

    async fn collect(&self, batch: Batch, on_sample: OnSample<'_>) -> anyhow::Result<Vec<Sample>> {
        let started = Instant::now();
        // Tickets: a worker takes one per request; a failed request gives its ticket back,
        // so the batch ends with exactly `want` good answers unless it runs out of requests.
        let tickets = AtomicU64::new(batch.want);
        let sent = AtomicU64::new(0);
        let samples = std::sync::Mutex::new(Vec::with_capacity(batch.want as usize));
        let worker = || async {
            loop {
                if tickets
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                if sent.fetch_add(1, Ordering::SeqCst) >= batch.max_requests {
                    break;
                }
                let sample = self.one(started).await;
                if !sample.is_ok() {
                    tickets.fetch_add(1, Ordering::SeqCst);
                }
                on_sample(&sample);
                samples.lock().expect("samples lock").push(sample);
            }
        };
        let workers: Vec<_> = (0..batch.concurrency.max(1)).map(|_| worker()).collect();
        futures::future::join_all(workers).await;
        let mut samples = samples.into_inner().expect("samples lock");
        samples.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{self, BackendConfig};
    use rstest::rstest;

    #[rstest]
    #[case(200, br#"{"version":"6.14.1"}"#.as_slice(), Some("6.14.1"), false)]
    #[case(500, br#"{"error":"injected","version":"6.14.1"}"#.as_slice(), Some("6.14.1"), true)]
    #[case(200, b"<html>".as_slice(), None, true)]
    #[case(503, b"no healthy upstream".as_slice(), None, true)]
    fn classifies_answers(
        #[case] status: u16,
        #[case] body: &[u8],
        #[case] version: Option<&str>,
        #[case] is_error: bool,
    ) {
        let (v, e) = classify(status, body);
        assert_eq!(v.as_deref(), version);
        assert_eq!(e.is_some(), is_error);
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

    #[tokio::test]
    async fn collects_exactly_the_wanted_good_answers() {
        let (url, _stop) = start(BackendConfig::new("1.2.3")).await;
        let target = HttpTarget::new(&url, "podinfo.test:9898").unwrap();
        let seen = AtomicU64::new(0);
        let batch = Batch {
            want: 57,
            max_requests: 100,
            concurrency: 5,
        };
        let samples = target
            .collect(batch, &|_| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .await
            .unwrap();
        assert_eq!(samples.len(), 57);
        assert_eq!(seen.load(Ordering::SeqCst), 57);
        assert!(
            samples
                .iter()
                .all(|s| s.version.as_deref() == Some("1.2.3") && s.is_ok())
        );
        assert!(samples.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[tokio::test]
    async fn failures_are_retried_within_the_request_budget() {
        let mut config = BackendConfig::new("9.9.9");
        config.error_rate = 1.0;
        let (url, _stop) = start(config).await;
        let target = HttpTarget::new(&url, "x").unwrap();
        let batch = Batch {
            want: 10,
            max_requests: 30,
            concurrency: 3,
        };
        let samples = target.collect(batch, &|_| {}).await.unwrap();
        assert_eq!(samples.len(), 30);
        assert!(
            samples
                .iter()
                .all(|s| s.error.as_deref() == Some("HTTP 500"))
        );
        assert!(
            samples
                .iter()
                .all(|s| s.version.as_deref() == Some("9.9.9"))
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let target = HttpTarget::new(&format!("http://{addr}"), "x").unwrap();
        let batch = Batch {
            want: 2,
            max_requests: 2,
            concurrency: 1,
        };
        let samples = target.collect(batch, &|_| {}).await.unwrap();
        assert_eq!(samples.len(), 2);
        assert!(samples.iter().all(|s| s.status.is_none() && !s.is_ok()));
    }
}
