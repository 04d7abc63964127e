//! Background load: an open-loop, constant-rate stream of requests on one entry point, from
//! before the first stage to after the last, alongside the stage sampling (the tutorial's
//! `hey -c 2 -q 5`), so that every request a transition drops is seen and named.
//!
//! **Schedule.** Request `i` is *intended* at `t0 + i / rate`, whatever happened to the requests
//! before it: the scheduler computes each deadline from `t0` (no accumulated drift), sleeps until
//! it and spawns the request as its own task. A scheduler that wakes late (a busy machine) sends
//! every request whose time has passed at once, like tokio's `MissedTickBehavior::Burst`, so the
//! number of requests only depends on the rate and how long the load ran. Deadlines are computed
//! rather than taken from a `tokio::time::Interval` so that the intended time of each request is
//! known exactly (it tags the request's window and corrects its latency) and a bounded schedule
//! ([`LoadSpec::duration`]) has an exact count.
//!
//! **No coordinated omission.** A slow answer never delays the next request: each is its own
//! task, and at most [`LoadSpec::max_in_flight`] are in flight. A request whose time comes while
//! the cap is reached is *not delayed* but counted as failed, `not sent: N in flight`. Latency is
//! measured from the intended send time to the answer ("corrected" latency, as HdrHistogram's
//! `wrk2` does), so a stall shows in the latency of every request scheduled during it, even if
//! the client queued them behind the stalled one; the service time, from the actual send as the
//! target measured it ([`Sample::latency_ms`]), is kept beside it.
//!
//! **Windows.** The walk marks each transition on a [`Transitions`] handle as it starts
//! ([`Transitions::mark`]) and again when it has converged ([`Transitions::settled`]). The
//! timeline is cut into windows: before the first transition, each transition (mark → settled),
//! and each settled stretch after it (settled → next mark). A request belongs to the window its
//! *intended* send time falls in, whenever it is answered; [`judge_transitions`] fails every
//! window that dropped more than the allowed number of requests and says how.
//!
//! **Bounds.** [`LoadHandle::stop`] schedules every request due before the call, waits at most
//! the request timeout for those in flight and reports what is left as failed, `cut at stop`.
//! Dropping the handle (or the future of `stop`) cancels the scheduler and aborts every request.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use async_trait::async_trait;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::prober::{HttpTarget, Probe, Sample, Target};
use crate::scenario::TrafficClass;

/// The tutorial's `hey -q 5`: five requests a second.
pub const DEFAULT_RATE_PER_S: f64 = 5.0;
/// Requests in flight at most; one more due is counted as not sent.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Bound on one request, and on waiting for those in flight at stop.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests a window may drop: none.
pub const DEFAULT_MAX_ERRORS: u64 = 0;
/// Failed requests listed one by one at most; past that they are only counted
/// ([`LoadReport::failures_omitted`]), so a long outage cannot grow the report without bound.
pub const MAX_FAILURES_LISTED: usize = 10_000;
/// The key of [`LoadReport::subsets`] for answers that named no subset (and timeouts).
pub const UNATTRIBUTED: &str = "(no subset)";

/// What the background load sends, how often and how patiently.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Requests per second, scheduled at fixed intended times.
    pub rate_per_s: f64,
    /// What each request is.
    pub class: Arc<TrafficClass>,
    /// Requests in flight at most; a request due beyond it is counted failed, not delayed.
    pub max_in_flight: usize,
    /// Bound on each request; also how long [`LoadHandle::stop`] waits for those in flight.
    pub timeout: Duration,
    /// Where the schedule ends (requests intended in `[0, duration)`); `None`: until stopped.
    pub duration: Option<Duration>,
}

impl LoadSpec {
    /// [`DEFAULT_RATE_PER_S`] requests a second of `class`, until stopped.
    pub fn new(class: Arc<TrafficClass>) -> Self {
        Self {
            rate_per_s: DEFAULT_RATE_PER_S,
            class,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            timeout: DEFAULT_TIMEOUT,
            duration: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            bail!(
                "the background load's rate must be a positive number of requests per second, got {}",
                self.rate_per_s
            );
        }
        if self.max_in_flight == 0 {
            bail!("the background load needs room for at least one request in flight");
        }
        if self.timeout.is_zero() {
            bail!("the background load's request timeout must not be zero");
        }
        Ok(())
    }
}

/// Delivers one request of the background load.
///
/// One call per request, at its intended time: the scheduler owns the timing, a target only
/// sends. On a cluster the in-mesh client is an exec'd curl ([`crate::istio_mesh`]); an exec
/// per request is too dear, so such a target would batch behind this trait: `one` queues the
/// request and awaits its record, while a batcher runs one exec a second whose script starts
/// each request's curl in the background at its offset within the second (`sleep` then `curl
/// &`, never one curl after the other, which would coordinate omission inside the pod), and
/// resolves each `one` from its record line, with curl's `time_total` as the service time. The
/// corrected latency is then measured up to when the record came back, so it also holds the
/// exec's streaming delay (tens of milliseconds): compare it with the service time.
#[async_trait]
pub trait LoadTarget: Send + Sync {
    /// Where requests go, for logs and reports.
    fn describe(&self) -> String;
    /// Sends request `seq` of `class` now and returns its outcome, with the service time (from
    /// the actual send) as [`Sample::latency_ms`]. The load bounds it by its own timeout.
    async fn one(&self, class: &Arc<TrafficClass>, seq: u64) -> Sample;
}

#[async_trait]
impl LoadTarget for HttpTarget {
    fn describe(&self) -> String {
        Target::describe(self)
    }

    async fn one(&self, class: &Arc<TrafficClass>, seq: u64) -> Sample {
        let probe = Probe {
            class: class.clone(),
            identify: None,
            concurrency: 1,
            max_requests: 1,
        };
        HttpTarget::one(self, &probe, seq, Instant::now()).await
    }
}

/// Any prober [`Target`] (what [`crate::mesh::Mesh::target`] hands out) as a load target: each
/// request is a stream of one request. Right for HTTP targets; on a cluster's exec'd curl it
/// costs an exec per request (see [`LoadTarget`] for the batching a cluster target would do).
pub struct FromTarget(pub Arc<dyn Target>);

#[async_trait]
impl LoadTarget for FromTarget {
    fn describe(&self) -> String {
        self.0.describe()
    }

    async fn one(&self, class: &Arc<TrafficClass>, seq: u64) -> Sample {
        let probe = Probe {
            class: class.clone(),
            identify: None,
            concurrency: 1,
            max_requests: 1,
        };
        let sent = Instant::now();
        let (sink, mut answers) = tokio::sync::mpsc::unbounded_channel();
        let streamed = self
            .0
            .stream(&probe, &CancellationToken::new(), &sink)
            .await;
        drop(sink);
        match (answers.recv().await, streamed) {
            (Some(sample), _) => Sample { seq, ..sample },
            (None, result) => Sample {
                seq,
                at_ms: 0.0,
                latency_ms: millis(sent.elapsed()),
                status: None,
                subset: None,
                stamp: None,
                reported: None,
                error: Some(match result {
                    Err(e) => format!("target: {e:#}"),
                    Ok(()) => "target: no answer".into(),
                }),
            },
        }
    }
}

/// What a window of the timeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Before the first transition.
    Initial,
    /// From a transition's mark until it settled (or the next mark).
    Transition,
    /// From a transition's settling until the next mark.
    Settled,
}

#[derive(Debug, Clone)]
struct Boundary {
    at: Instant,
    kind: WindowKind,
    label: String,
}

/// The walk's marks of its transitions, shared with the background load (clone it freely).
#[derive(Debug, Clone, Default)]
pub struct Transitions {
    boundaries: Arc<Mutex<Vec<Boundary>>>,
}

impl Transitions {
    pub fn new() -> Self {
        Self::default()
    }

    /// A transition starts now, e.g. `weights → stage 2 (canary warm-up)`, `rollout canary
    /// 6.14.2`, `rollback`; it ends the window before it.
    pub fn mark(&self, label: &str) {
        tracing::debug!("background load: transition `{label}` starts");
        self.push(WindowKind::Transition, label.to_string());
    }

    /// The transition marked last has converged: what follows is its settled window. Nothing
    /// happens if no transition is open (never marked, or already settled).
    pub fn settled(&self) {
        let mut boundaries = self.lock();
        match boundaries.last() {
            Some(last) if last.kind == WindowKind::Transition => {
                let label = last.label.clone();
                tracing::debug!("background load: transition `{label}` settled");
                // Taken under the lock: boundaries stay in time order.
                boundaries.push(Boundary {
                    at: Instant::now(),
                    kind: WindowKind::Settled,
                    label,
                });
            }
            _ => tracing::debug!("background load: settled() with no transition open"),
        }
    }

    fn push(&self, kind: WindowKind, label: String) {
        let mut boundaries = self.lock();
        boundaries.push(Boundary {
            at: Instant::now(),
            kind,
            label,
        });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Boundary>> {
        self.boundaries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index of the window `at` falls in: 0 before the first mark, `k` after the
    /// `k`-th boundary. Exact for any `at` not in the future: boundaries are only appended, at
    /// the time they are taken.
    fn window_at(&self, at: Instant) -> usize {
        self.lock().partition_point(|b| b.at <= at)
    }

    /// Every window so far, times in milliseconds since `t0`, the last one open.
    fn windows(&self, t0: Instant) -> Vec<Window> {
        let boundaries = self.lock();
        let ms = |at: Instant| millis(at.saturating_duration_since(t0));
        let mut windows = vec![Window::new(
            0,
            WindowKind::Initial,
            "before the first transition".into(),
            0.0,
        )];
        for (i, b) in boundaries.iter().enumerate() {
            windows[i].to_ms = Some(ms(b.at));
            let name = match b.kind {
                WindowKind::Settled => format!("after {}", b.label),
                _ => b.label.clone(),
            };
            windows.push(Window::new(i + 1, b.kind, name, ms(b.at)));
        }
        windows
    }
}

/// Latency percentiles of a set of requests, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1e3;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1e3,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// A histogram of latencies in microseconds, three significant digits, growing as needed.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("three significant digits are a valid precision")
}

/// The answers one subset gave (or [`UNATTRIBUTED`] ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsetLoad {
    pub answered: u64,
    pub ok: u64,
    pub failed: u64,
    /// From the intended send time to the answer: corrected for coordinated omission.
    pub latency: Percentiles,
    /// From the actual send to the answer, as the target measured it.
    pub service: Percentiles,
    /// The corrected latencies, in microseconds (not serialized: the percentiles are).
    #[serde(skip, default = "latency_histogram")]
    pub latency_us: Histogram<u64>,
    /// The service times, in microseconds (not serialized).
    #[serde(skip, default = "latency_histogram")]
    pub service_us: Histogram<u64>,
}

impl SubsetLoad {
    fn new() -> Self {
        Self {
            answered: 0,
            ok: 0,
            failed: 0,
            latency: Percentiles::default(),
            service: Percentiles::default(),
            latency_us: latency_histogram(),
            service_us: latency_histogram(),
        }
    }
}

/// One request that failed, whatever the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRequest {
    pub seq: u64,
    /// When it was scheduled, in milliseconds since the load started.
    pub intended_ms: f64,
    /// From the intended send time to the failure; for a request cut at stop, how long it had
    /// waited when cut; `None` if it was never sent.
    pub latency_ms: Option<f64>,
    /// From the actual send to the failure; `None` if it was never sent or was cut.
    pub service_ms: Option<f64>,
    pub status: Option<u16>,
    pub subset: Option<String>,
    /// The stage stamp of the route configuration that answered, if any.
    pub stamp: Option<String>,
    pub error: String,
    /// The index of its window in [`LoadReport::windows`].
    pub window: usize,
}

/// One window of the timeline and the requests scheduled in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub index: usize,
    pub kind: WindowKind,
    /// The transition's label; `after <label>` for its settled window.
    pub name: String,
    /// Milliseconds since the load started (0 for a mark made before it).
    pub from_ms: f64,
    /// `None` for the window still open at stop.
    pub to_ms: Option<f64>,
    pub requests: u64,
    pub failed: u64,
    /// Failed requests by error.
    pub errors: BTreeMap<String, u64>,
}

impl Window {
    fn new(index: usize, kind: WindowKind, name: String, from_ms: f64) -> Self {
        Self {
            index,
            kind,
            name,
            from_ms,
            to_ms: None,
            requests: 0,
            failed: 0,
            errors: BTreeMap::new(),
        }
    }
}

/// What the background load saw, from start to stop.
///
/// `scheduled == sent + not_sent` and `scheduled == ok + failed`; `failed` counts the requests
/// not sent and those cut at stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// When the load started (RFC 3339, milliseconds): every `*_ms` time counts from it.
    pub started_at: String,
    pub target: String,
    pub class: String,
    pub rate_per_s: f64,
    pub max_in_flight: usize,
    pub timeout_ms: f64,
    /// From start to stop (or the schedule's end, if it came first).
    pub duration_ms: f64,
    pub scheduled: u64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Not sent because [`LoadSpec::max_in_flight`] were in flight.
    pub not_sent: u64,
    /// Still in flight when stop stopped waiting.
    pub cut_at_stop: u64,
    /// Longest delay between a request's intended time and its actual send: how well the
    /// harness itself kept to the schedule.
    pub max_send_lag_ms: f64,
    /// Every answered request (and timeout), corrected latency.
    pub latency: Percentiles,
    /// Every answered request (and timeout), service time.
    pub service: Percentiles,
    /// Per subset that answered ([`UNATTRIBUTED`] for answers without one, and timeouts).
    pub subsets: BTreeMap<String, SubsetLoad>,
    pub windows: Vec<Window>,
    /// Every failed request in schedule order (up to [`MAX_FAILURES_LISTED`]).
    pub failures: Vec<FailedRequest>,
    pub failures_omitted: u64,
}

impl LoadReport {
    /// One line for logs.
    pub fn summary(&self) -> String {
        format!(
            "background load {}/s on {}: {} scheduled, {} ok, {} failed ({} not sent, {} cut at stop); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.rate_per_s,
            self.target,
            self.scheduled,
            self.ok,
            self.failed,
            self.not_sent,
            self.cut_at_stop,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.max_ms
        )
    }
}

/// Whether one window kept its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionVerdict {
    pub window: usize,
    pub kind: WindowKind,
    pub name: String,
    pub requests: u64,
    pub failed: u64,
    pub passed: bool,
    /// `weights → stage 2 (canary warm-up) dropped 3 requests: HTTP 503 ×2, connection refused ×1`.
    pub message: String,
}

/// Judges every window of the report: one that dropped more than `max_errors` requests
/// ([`DEFAULT_MAX_ERRORS`]: none) fails, naming the window and its errors, most frequent first.
pub fn judge_transitions(report: &LoadReport, max_errors: u64) -> Vec<TransitionVerdict> {
    report
        .windows
        .iter()
        .map(|w| {
            let passed = w.failed <= max_errors;
            let message = if w.failed == 0 {
                format!("{}: {} requests, none dropped", w.name, w.requests)
            } else {
                let mut errors: Vec<(&String, &u64)> = w.errors.iter().collect();
                errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let mut message = format!(
                    "{} dropped {} request{}: ",
                    w.name,
                    w.failed,
                    if w.failed == 1 { "" } else { "s" }
                );
                for (i, (error, n)) in errors.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    let _ = write!(message, "{sep}{error} ×{n}");
                }
                if passed {
                    let _ = write!(
                        message,
                        " (of {}; at most {max_errors} allowed)",
                        w.requests
                    );
                }
                message
            };
            TransitionVerdict {
                window: w.index,
                kind: w.kind,
                name: w.name.clone(),
                requests: w.requests,
                failed: w.failed,
                passed,
                message,
            }
        })
        .collect()
}

/// The intended time of request `seq`, from the start.
fn intended_offset(seq: u64, rate_per_s: f64) -> Duration {
    Duration::from_secs_f64(seq as f64 / rate_per_s)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Records `d` in microseconds, growing the histogram as needed (its `saturating_record`
/// would clamp to the current, initially tiny, range instead).
fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Starts the background load on `target` now. Must be called inside a tokio runtime.
pub fn start(
    target: Arc<dyn LoadTarget>,
    spec: LoadSpec,
    transitions: Transitions,
) -> anyhow::Result<LoadHandle> {
    spec.validate()?;
    let runtime = tokio::runtime::Handle::try_current()
        .context("the background load needs a tokio runtime")?;
    tracing::info!(
        "background load: {} requests/s of class {} on {} (at most {} in flight)",
        spec.rate_per_s,
        spec.class.name,
        target.describe(),
        spec.max_in_flight
    );
    let cancel = CancellationToken::new();
    let (stop_tx, stop_rx) = oneshot::channel();
    let timeout = spec.timeout;
    let scheduler = Scheduler::new(target, spec, transitions);
    let task = runtime.spawn(scheduler.run(cancel.clone(), stop_rx));
    Ok(LoadHandle {
        cancel,
        stop_tx: Some(stop_tx),
        task: Some(task),
        timeout,
    })
}

/// The running background load. Dropping it cancels the load and every request in flight.
pub struct LoadHandle {
    cancel: CancellationToken,
    stop_tx: Option<oneshot::Sender<Stop>>,
    task: Option<JoinHandle<Option<LoadReport>>>,
    timeout: Duration,
}

struct Stop {
    wait: Duration,
}

impl LoadHandle {
    /// Stops the schedule now (every request due before now is still sent), waits at most the
    /// request timeout for the requests in flight and reports.
    pub async fn stop(self) -> anyhow::Result<LoadReport> {
        let wait = self.timeout;
        self.stop_within(wait).await
    }

    /// Like [`stop`](Self::stop), waiting at most `wait` for the requests in flight: those
    /// still in flight then are reported failed, `cut at stop`.
    pub async fn stop_within(mut self, wait: Duration) -> anyhow::Result<LoadReport> {
        let (Some(stop_tx), Some(task)) = (self.stop_tx.take(), self.task.take()) else {
            bail!("the background load was already stopped");
        };
        // If the scheduler is gone, awaiting it says why.
        let _ = stop_tx.send(Stop { wait });
        let report = task
            .await
            .context("the background load's scheduler failed")?
            .context("the background load was cancelled before it could report")?;
        tracing::info!("{}", report.summary());
        Ok(report)
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A request spawned and not yet reaped.
struct Pending {
    seq: u64,
    intended: Instant,
    window: usize,
}

/// What a request task returns.
struct Done {
    sent: Instant,
    done: Instant,
    /// `None`: the load's timeout.
    sample: Option<Sample>,
}

struct Scheduler {
    target: Arc<dyn LoadTarget>,
    spec: LoadSpec,
    transitions: Transitions,
    t0: Instant,
    started_at: SystemTime,
    tasks: JoinSet<Done>,
    pending: HashMap<Id, Pending>,
    tally: Tally,
}

impl Scheduler {
    fn new(target: Arc<dyn LoadTarget>, spec: LoadSpec, transitions: Transitions) -> Self {
        Self {
            target,
            spec,
            transitions,
            t0: Instant::now(),
            started_at: SystemTime::now(),
            tasks: JoinSet::new(),
            pending: HashMap::new(),
            tally: Tally::default(),
        }
    }

    /// Runs the schedule until stopped, then drains; `None` if cancelled.
    async fn run(
        mut self,
        cancel: CancellationToken,
        mut stop_rx: oneshot::Receiver<Stop>,
    ) -> Option<LoadReport> {
        self.t0 = Instant::now();
        self.started_at = SystemTime::now();
        let t0 = tokio::time::Instant::from_std(self.t0);
        let rate = self.spec.rate_per_s;
        let end = self.spec.duration;
        let due = |seq: u64| end.is_none_or(|end| intended_offset(seq, rate) < end);
        let mut seq = 0;
        let stop = loop {
            let intended = t0 + intended_offset(seq, rate);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                stop = &mut stop_rx => match stop {
                    Ok(stop) => break stop,
                    Err(_) => return None,
                },
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.reap(joined);
                }
                _ = tokio::time::sleep_until(intended), if due(seq) => {
                    self.dispatch(seq, intended.into_std());
                    seq += 1;
                }
            }
        };
        // Every request due before the stop came is sent, late if need be: the count only
        // depends on when the load stopped (and none intended after it was sent).
        let stop_offset = self.t0.elapsed();
        let stop_offset = end.map_or(stop_offset, |end| stop_offset.min(end));
        while due(seq) && intended_offset(seq, rate) < stop_offset {
            self.dispatch(seq, (t0 + intended_offset(seq, rate)).into_std());
            seq += 1;
        }
        let deadline = tokio::time::sleep(stop.wait);
        tokio::pin!(deadline);
        while !self.tasks.is_empty() {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                _ = &mut deadline => break,
                Some(joined) = self.tasks.join_next_with_id() => self.reap(joined),
            }
        }
        self.tasks.abort_all();
        let cut_at = Instant::now();
        let mut cut: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        cut.sort_by_key(|p| p.seq);
        if !cut.is_empty() {
            tracing::warn!(
                "background load: {} requests still in flight {:?} after stop, cut",
                cut.len(),
                stop.wait
            );
        }
        for p in cut {
            self.tally.cut(self.t0, p, cut_at);
        }
        Some(self.report(stop_offset))
    }

    /// Sends request `seq`, intended at `intended` (now or just past), unless the cap is reached.
    fn dispatch(&mut self, seq: u64, intended: Instant) {
        // Requests that have ended are not in flight, even if not reaped yet.
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            self.reap(joined);
        }
        let window = self.transitions.window_at(intended);
        let pending = Pending {
            seq,
            intended,
            window,
        };
        self.tally.scheduled += 1;
        self.tally.window(window).requests += 1;
        if self.tasks.len() >= self.spec.max_in_flight {
            let error = format!("not sent: {} in flight", self.tasks.len());
            tracing::debug!("background load: request {seq} {error}");
            self.tally.not_sent(self.t0, pending, error);
            return;
        }
        let target = self.target.clone();
        let class = self.spec.class.clone();
        let timeout = self.spec.timeout;
        let handle = self.tasks.spawn(async move {
            let sent = Instant::now();
            let sample = tokio::time::timeout(timeout, target.one(&class, seq))
                .await
                .ok();
            Done {
                sent,
                done: Instant::now(),
                sample,
            }
        });
        self.pending.insert(handle.id(), pending);
    }

    fn reap(&mut self, joined: Result<(Id, Done), JoinError>) {
        match joined {
            Ok((id, done)) => {
                if let Some(p) = self.pending.remove(&id) {
                    self.tally.answered(self.t0, p, done);
                }
            }
            Err(e) => {
                if let Some(p) = self.pending.remove(&e.id()) {
                    self.tally.sent += 1;
                    let error = if e.is_panic() {
                        "the request's task panicked"
                    } else {
                        "the request's task was cancelled"
                    };
                    self.tally.not_answered(self.t0, p, error.into());
                }
            }
        }
    }

    fn report(mut self, duration: Duration) -> LoadReport {
        let mut windows = self.transitions.windows(self.t0);
        for (index, counts) in std::mem::take(&mut self.tally.windows) {
            // A window is only counted once its boundary exists, so it is always listed.
            if let Some(w) = windows.get_mut(index) {
                w.requests = counts.requests;
                w.failed = counts.failed;
                w.errors = counts.errors;
            }
        }
        let mut subsets = std::mem::take(&mut self.tally.subsets);
        for s in subsets.values_mut() {
            s.latency = Percentiles::of(&s.latency_us);
            s.service = Percentiles::of(&s.service_us);
        }
        let mut failures = std::mem::take(&mut self.tally.failures);
        failures.sort_by_key(|f| f.seq);
        let t = &self.tally;
        LoadReport {
            started_at: humantime::format_rfc3339_millis(self.started_at).to_string(),
            target: self.target.describe(),
            class: self.spec.class.name.clone(),
            rate_per_s: self.spec.rate_per_s,
            max_in_flight: self.spec.max_in_flight,
            timeout_ms: millis(self.spec.timeout),
            duration_ms: millis(duration),
            scheduled: t.scheduled,
            sent: t.sent,
            ok: t.ok,
            failed: t.failed,
            not_sent: t.not_sent,
            cut_at_stop: t.cut,
            max_send_lag_ms: millis(t.max_send_lag),
            latency: Percentiles::of(&t.latency_us),
            service: Percentiles::of(&t.service_us),
            subsets,
            windows,
            failures,
            failures_omitted: t.failures_omitted,
        }
    }
}

#[derive(Default)]
struct WindowCounts {
    requests: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
}

/// The counts as requests end.
struct Tally {
    scheduled: u64,
    sent: u64,
    ok: u64,
    failed: u64,
    not_sent: u64,
    cut: u64,
    max_send_lag: Duration,
    latency_us: Histogram<u64>,
    service_us: Histogram<u64>,
    subsets: BTreeMap<String, SubsetLoad>,
    windows: BTreeMap<usize, WindowCounts>,
    failures: Vec<FailedRequest>,
    failures_omitted: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            scheduled: 0,
            sent: 0,
            ok: 0,
            failed: 0,
            not_sent: 0,
            cut: 0,
            max_send_lag: Duration::ZERO,
            latency_us: latency_histogram(),
            service_us: latency_histogram(),
            subsets: BTreeMap::new(),
            windows: BTreeMap::new(),
            failures: Vec::new(),
            failures_omitted: 0,
        }
    }
}

impl Tally {
    fn window(&mut self, index: usize) -> &mut WindowCounts {
        self.windows.entry(index).or_default()
    }

    fn answered(&mut self, t0: Instant, p: Pending, done: Done) {
        self.sent += 1;
        self.max_send_lag = self
            .max_send_lag
            .max(done.sent.saturating_duration_since(p.intended));
        let latency = done.done.saturating_duration_since(p.intended);
        let (service, status, subset, stamp, error) = match done.sample {
            Some(s) => (
                Duration::from_secs_f64(s.latency_ms.max(0.0) / 1e3),
                s.status,
                s.subset,
                s.stamp,
                s.error,
            ),
            None => (
                done.done.saturating_duration_since(done.sent),
                None,
                None,
                None,
                Some("timeout".to_string()),
            ),
        };
        record(&mut self.latency_us, latency);
        record(&mut self.service_us, service);
        let key = subset.clone().unwrap_or_else(|| UNATTRIBUTED.to_string());
        let s = self.subsets.entry(key).or_insert_with(SubsetLoad::new);
        s.answered += 1;
        record(&mut s.latency_us, latency);
        record(&mut s.service_us, service);
        match error {
            None => {
                s.ok += 1;
                self.ok += 1;
            }
            Some(error) => {
                s.failed += 1;
                self.fail(FailedRequest {
                    seq: p.seq,
                    intended_ms: millis(p.intended.saturating_duration_since(t0)),
                    latency_ms: Some(millis(latency)),
                    service_ms: Some(millis(service)),
                    status,
                    subset,
                    stamp,
                    error,
                    window: p.window,
                });
            }
        }
    }

    fn not_sent(&mut self, t0: Instant, p: Pending, error: String) {
        self.not_sent += 1;
        self.not_answered(t0, p, error);
    }

    fn cut(&mut self, t0: Instant, p: Pending, at: Instant) {
        self.sent += 1;
        self.cut += 1;
        let waited = at.saturating_duration_since(p.intended);
        let mut failure = self.failure(t0, &p, "cut at stop".into());
        failure.latency_ms = Some(millis(waited));
        self.fail(failure);
    }

    /// A request that got no answer and no latency (not sent, or its task died).
    fn not_answered(&mut self, t0: Instant, p: Pending, error: String) {
        let failure = self.failure(t0, &p, error);
        self.fail(failure);
    }

    fn failure(&self, t0: Instant, p: &Pending, error: String) -> FailedRequest {
        FailedRequest {
            seq: p.seq,
            intended_ms: millis(p.intended.saturating_duration_since(t0)),
            latency_ms: None,
            service_ms: None,
            status: None,
            subset: None,
            stamp: None,
            error,
            window: p.window,
        }
    }

    fn fail(&mut self, failure: FailedRequest) {
        self.failed += 1;
        let w = self.window(failure.window);
        w.failed += 1;
        *w.errors.entry(failure.error.clone()).or_default() += 1;
        if self.failures.len() < MAX_FAILURES_LISTED {
            self.failures.push(failure);
        } else {
            self.failures_omitted += 1;
        }
    }
}

#[cfg(test)]
mod tests;
