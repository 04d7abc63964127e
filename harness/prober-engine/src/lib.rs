//! The prober's hot path: workers that send one prepared request again and again, each on a
//! keep-alive HTTP/1.1 connection of its own, and turn every answer into a [`Sample`].
//!
//! This is a crate of its own for one reason: the dev profile (what `cargo xtask` runs)
//! compiles it optimised, like the dependencies, while the harness stays at opt-level 0 for
//! fast rebuilds. Generic code is compiled in the crate that uses it, so hyper's and tokio's
//! connection, task and channel code, used with these types, would otherwise run unoptimised
//! in the harness: through the local mesh that kept the prober at two thirds of wrk's rate
//! (`cargo xtask bench`; the workspace's Cargo.toml says more). What to send, where and how to
//! read an answer are the harness's business (`harness::prober`).

mod client;
mod json;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderName;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

pub use client::{Answer, CONNECTION_ERROR, Client, Request};
pub use json::string_at;

/// One request and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Send order within the batch, from 0: the verdict judges the first requests by it.
    pub seq: u64,
    /// When the answer came, in milliseconds since the batch started.
    pub at_ms: f64,
    pub latency_ms: f64,
    pub status: Option<u16>,
    /// The subset that served it (the harness's subset header); `None` when no route reached
    /// a subset.
    pub subset: Option<String>,
    /// The stage stamp of the route configuration that served it (the harness's stage header).
    pub stamp: Option<String>,
    /// The version the app itself reported, where the scenario says to look.
    pub reported: Option<String>,
    /// Why the request failed (an HTTP error status or a transport error); `None` if it did not.
    pub error: Option<String>,
}

impl Sample {
    /// Request `seq`, before anything came back.
    pub fn sent(seq: u64) -> Self {
        Sample {
            seq,
            at_ms: 0.0,
            latency_ms: 0.0,
            status: None,
            subset: None,
            stamp: None,
            reported: None,
            error: None,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Request `seq` of a batch that began at `started`: what `answer` tells once it comes,
    /// read as `reading` says and timed from now.
    pub async fn timed(
        seq: u64,
        started: Instant,
        reading: &Reading,
        answer: impl Future<Output = Result<Answer, String>>,
    ) -> Self {
        let t0 = Instant::now();
        let mut sample = Sample::sent(seq);
        match answer.await {
            Ok(answer) => sample.record(&answer, reading),
            Err(e) => sample.error = Some(e),
        }
        sample.at_ms = started.elapsed().as_secs_f64() * 1e3;
        sample.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
        sample
    }

    /// What an answer tells: status, subset, stage stamp, the version the app reports, and
    /// the error if any.
    fn record(&mut self, answer: &Answer, reading: &Reading) {
        let header = |name: &HeaderName| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = answer.status.as_u16();
        self.status = Some(status);
        self.subset = header(&reading.subset);
        self.stamp = header(&reading.stamp);
        self.error = failed_status(status);
        match &answer.body {
            Ok(body) => {
                self.reported = match &reading.version {
                    Some(VersionAt::Header(name)) => header(name),
                    Some(VersionAt::Json(pointer)) => string_at(body, pointer),
                    None => None,
                }
            }
            Err(e) => self.error = Some(e.clone()),
        }
    }
}

/// An HTTP status the prober counts as a failed request.
pub fn failed_status(status: u16) -> Option<String> {
    (!(200..400).contains(&status)).then(|| format!("HTTP {status}"))
}

/// Where an answer tells what served it.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The response header naming the subset.
    pub subset: HeaderName,
    /// The response header carrying the stage stamp.
    pub stamp: HeaderName,
    /// Where the app reports its version, if anywhere.
    pub version: Option<VersionAt>,
}

/// Where the app reports its version.
#[derive(Debug, Clone)]
pub enum VersionAt {
    /// A response header.
    Header(HeaderName),
    /// A JSON pointer into the body.
    Json(String),
}

/// A batch: `request` (or why it cannot be sent) to `address` by `concurrency` workers.
pub struct Batch {
    /// `host:port`.
    pub address: String,
    pub request: Result<Request, String>,
    pub reading: Reading,
    pub concurrency: usize,
    /// Requests to send at most.
    pub max_requests: u64,
    /// Bound on each request, from the send (or the connect) to the last byte of the answer.
    pub timeout: Duration,
}

impl Batch {
    /// Sends requests numbered in send order until `stop` is cancelled or `max_requests` were
    /// sent, each worker on its own task with its own connection, delivering each answer to
    /// `sink`; returns once every request sent has answered (or failed). Dropping the future
    /// aborts the workers.
    pub async fn run(self, stop: &CancellationToken, sink: &UnboundedSender<Sample>) {
        let started = Instant::now();
        let batch = Arc::new(self);
        // A worker takes the next number when it sends: numbers follow send order, and which
        // requests a verdict judges is fixed before their answers are known.
        let next = Arc::new(AtomicU64::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..batch.concurrency.max(1) {
            let (batch, next, stop, sink) =
                (batch.clone(), next.clone(), stop.clone(), sink.clone());
            workers.spawn(async move {
                let mut client = Client::new(&batch.address, batch.timeout);
                while !stop.is_cancelled() {
                    let seq = next.fetch_add(1, Ordering::SeqCst);
                    if seq >= batch.max_requests {
                        break;
                    }
                    let answer = async {
                        match &batch.request {
                            Ok(request) => client.send(request).await,
                            Err(e) => Err(format!("cannot send the request: {e}")),
                        }
                    };
                    let sample = Sample::timed(seq, started, &batch.reading, answer).await;
                    if sink.send(sample).is_err() {
                        break;
                    }
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }
}
