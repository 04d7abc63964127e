//! The background load against a tiny in-test server that can fail or stall on demand, and
//! against targets that never answer. No assertion rests on how fast the machine is: counts
//! follow from the schedule, and latencies are only bounded from below (noise only adds).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use rstest::rstest;

use super::*;
use crate::routing::{STAGE_HEADER, SUBSET_HEADER};

const STALL: Duration = Duration::from_millis(500);
const TRANSITION: &str = "weights → stage 2 (canary warm-up)";

/// How the test server behaves, switched by the test as the load runs.
#[derive(Default)]
struct Behaviour {
    /// Answer 503.
    fail: AtomicBool,
    /// Stall the next request for [`STALL`].
    stall_next: AtomicBool,
    /// Stall every request for [`STALL`].
    stall_all: AtomicBool,
    received: AtomicU64,
}

/// Answers as a mesh would: every other request from `ga`, the others from `canary`, named in
/// the harness's subset header, with the stamp of stage 2.
async fn answer(
    State(b): State<Arc<Behaviour>>,
) -> (StatusCode, [(&'static str, &'static str); 2], &'static str) {
    let n = b.received.fetch_add(1, SeqCst);
    if b.stall_all.load(SeqCst) || b.stall_next.swap(false, SeqCst) {
        tokio::time::sleep(STALL).await;
    }
    let subset = if n % 2 == 0 { "ga" } else { "canary" };
    let status = if b.fail.load(SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        [(SUBSET_HEADER, subset), (STAGE_HEADER, "2.2")],
        "ok",
    )
}

/// The server's base URL; it lives as long as the test's runtime.
async fn serve(behaviour: Arc<Behaviour>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(answer)).with_state(behaviour);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn http(url: &str) -> Arc<dyn LoadTarget> {
    Arc::new(HttpTarget::new(url, "podinfo.test:9898").unwrap())
}

fn spec(rate_per_s: f64, duration_ms: Option<u64>) -> LoadSpec {
    LoadSpec {
        rate_per_s,
        duration: duration_ms.map(Duration::from_millis),
        ..LoadSpec::new(Arc::new(TrafficClass::default_class()))
    }
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Runs a bounded load to its end (and a little past it), then stops it.
async fn run_to_end(target: Arc<dyn LoadTarget>, spec: LoadSpec) -> LoadReport {
    let duration = spec.duration.expect("a bounded schedule");
    let handle = start(target, spec, Transitions::new()).unwrap();
    tokio::time::sleep(duration + Duration::from_millis(50)).await;
    handle.stop().await.unwrap()
}

/// Whether `cond` holds within `within` (checked every 10 ms).
async fn eventually(cond: impl Fn() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        sleep_ms(10).await;
    }
    cond()
}

/// Requests with a corrected (or service) latency of at least `ms`, over every subset.
fn at_least(report: &LoadReport, ms: u64, service: bool) -> u64 {
    report
        .subsets
        .values()
        .map(|s| {
            let h = if service {
                &s.service_us
            } else {
                &s.latency_us
            };
            h.count_between(ms * 1000, u64::MAX)
        })
        .sum()
}

fn invariants(report: &LoadReport) {
    assert_eq!(report.scheduled, report.sent + report.not_sent);
    assert_eq!(report.scheduled, report.ok + report.failed);
    assert_eq!(report.failures.len() as u64, report.failed);
    let windows: u64 = report.windows.iter().map(|w| w.requests).sum();
    assert_eq!(windows, report.scheduled);
    for w in &report.windows {
        assert_eq!(w.errors.values().sum::<u64>(), w.failed, "{w:?}");
    }
    assert!(report.failures.windows(2).all(|f| f[0].seq < f[1].seq));
}

#[rstest]
#[case(50.0, 1000, 50)]
#[case(20.0, 500, 10)]
#[case(7.5, 2000, 15)]
#[case(3.0, 1000, 3)]
#[case(1000.0, 1, 1)]
fn the_schedule_is_fixed_by_the_rate(#[case] rate: f64, #[case] ms: u64, #[case] want: u64) {
    let end = Duration::from_millis(ms);
    let scheduled = (0..10 * want + 10)
        .filter(|&i| intended_offset(i, rate) < end)
        .count() as u64;
    assert_eq!(scheduled, want);
    // Computed from the start, not accumulated: no drift after many requests.
    assert_eq!(intended_offset(1000, 5.0), Duration::from_secs(200));
}

#[test]
fn windows_follow_the_marks_and_their_settling() {
    let tick = || std::thread::sleep(Duration::from_millis(2));
    let t = Transitions::new();
    let before = Instant::now();
    tick();
    t.settled(); // nothing open: no window
    t.mark(TRANSITION);
    tick();
    let during = Instant::now();
    tick();
    t.settled();
    t.settled(); // already settled: no window
    tick();
    let after = Instant::now();
    tick();
    t.mark("rollback");
    tick();
    assert_eq!(t.window_at(before), 0);
    assert_eq!(t.window_at(during), 1);
    assert_eq!(t.window_at(after), 2);
    assert_eq!(t.window_at(Instant::now()), 3);
    let windows = t.windows(before);
    let names: Vec<_> = windows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "before the first transition",
            TRANSITION,
            &format!("after {TRANSITION}"),
            "rollback"
        ]
    );
    let kinds: Vec<_> = windows.iter().map(|w| w.kind).collect();
    use WindowKind::*;
    assert_eq!(kinds, [Initial, Transition, Settled, Transition]);
    for pair in windows.windows(2) {
        assert_eq!(pair[0].to_ms, Some(pair[1].from_ms));
        assert!(pair[0].from_ms <= pair[1].from_ms);
    }
    assert_eq!(windows[3].to_ms, None);
}

fn judged(errors: &[(&str, u64)]) -> LoadReport {
    let mut initial = Window::new(0, WindowKind::Initial, "before".into(), 0.0);
    initial.requests = 10;
    let mut w = Window::new(1, WindowKind::Transition, TRANSITION.into(), 100.0);
    w.requests = 50;
    for (error, n) in errors {
        w.errors.insert(error.to_string(), *n);
        w.failed += n;
    }
    LoadReport {
        windows: vec![initial, w],
        ..Default::default()
    }
}

#[rstest]
#[case(&[], DEFAULT_MAX_ERRORS, true, "weights → stage 2 (canary warm-up): 50 requests, none dropped")]
#[case(
    &[("connection refused", 1), ("HTTP 503", 2)],
    DEFAULT_MAX_ERRORS,
    false,
    "weights → stage 2 (canary warm-up) dropped 3 requests: HTTP 503 ×2, connection refused ×1"
)]
#[case(
    &[("connection refused", 1)],
    0,
    false,
    "weights → stage 2 (canary warm-up) dropped 1 request: connection refused ×1"
)]
#[case(
    &[("b", 1), ("a", 1)],
    1,
    false,
    "weights → stage 2 (canary warm-up) dropped 2 requests: a ×1, b ×1"
)]
#[case(
    &[("HTTP 503", 2), ("connection refused", 1)],
    3,
    true,
    "weights → stage 2 (canary warm-up) dropped 3 requests: HTTP 503 ×2, connection refused ×1 (of 50; at most 3 allowed)"
)]
fn judging_names_the_transition_and_its_errors(
    #[case] errors: &[(&str, u64)],
    #[case] max_errors: u64,
    #[case] passed: bool,
    #[case] message: &str,
) {
    let verdicts = judge_transitions(&judged(errors), max_errors);
    assert_eq!(verdicts.len(), 2);
    assert!(verdicts[0].passed, "{:?}", verdicts[0]);
    let v = &verdicts[1];
    assert_eq!(
        (v.window, v.kind, v.name.as_str()),
        (1, WindowKind::Transition, TRANSITION)
    );
    assert_eq!(v.requests, 50);
    assert_eq!(v.failed, errors.iter().map(|e| e.1).sum::<u64>());
    assert_eq!(v.passed, passed);
    assert_eq!(v.message, message);
}

#[rstest]
#[case(0.0, 64, 10)]
#[case(-1.0, 64, 10)]
#[case(f64::NAN, 64, 10)]
#[case(f64::INFINITY, 64, 10)]
#[case(5.0, 0, 10)]
#[case(5.0, 64, 0)]
fn nonsense_specs_are_refused(#[case] rate: f64, #[case] cap: usize, #[case] timeout_ms: u64) {
    let spec = LoadSpec {
        max_in_flight: cap,
        timeout: Duration::from_millis(timeout_ms),
        ..spec(rate, None)
    };
    assert!(start(Arc::new(Hanging::default()), spec, Transitions::new()).is_err());
}

#[test]
fn starting_needs_a_runtime() {
    let e = start(
        Arc::new(Hanging::default()),
        spec(5.0, None),
        Transitions::new(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("tokio runtime"), "{e}");
}

#[rstest]
#[case(50.0, 1000)]
#[case(20.0, 500)]
#[tokio::test]
async fn the_rate_is_honoured_in_count(#[case] rate: f64, #[case] ms: u64) {
    let url = serve(Arc::default()).await;
    let report = run_to_end(http(&url), spec(rate, Some(ms))).await;
    invariants(&report);
    let n = (rate * ms as f64 / 1e3).round() as u64;
    assert_eq!(report.scheduled, n, "{}", report.summary());
    assert_eq!((report.sent, report.ok, report.failed), (n, n, 0));
    let subsets: Vec<_> = report.subsets.keys().map(String::as_str).collect();
    assert_eq!(subsets, ["canary", "ga"]);
    assert_eq!(report.subsets.values().map(|s| s.answered).sum::<u64>(), n);
    for s in report.subsets.values() {
        assert_eq!(s.latency_us.len(), s.answered);
        assert_eq!(s.latency.count, s.answered);
        assert_eq!(s.service.count, s.answered);
        let p = s.latency;
        assert!(p.p50_ms <= p.p90_ms && p.p90_ms <= p.p99_ms && p.p99_ms <= p.max_ms);
        // Measured from the intended time, the corrected latency holds the service time.
        assert!(s.latency.max_ms >= s.service.max_ms);
    }
    assert_eq!(report.windows.len(), 1);
    assert!(judge_transitions(&report, 0).iter().all(|v| v.passed));
    // Into report.json and back (the histograms stay behind, their percentiles do not).
    let json = serde_json::to_string(&report).unwrap();
    let back: LoadReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.scheduled, n);
    let (a, b) = (back.subsets["ga"].latency, report.subsets["ga"].latency);
    assert_eq!(a.count, b.count);
    assert!((a.p99_ms - b.p99_ms).abs() < 1e-9 && (a.mean_ms - b.mean_ms).abs() < 1e-9);
    assert_eq!(back.windows.len(), report.windows.len());
    assert_eq!(back.windows[0].requests, n);
}

/// A client on one connection, one request after the other (as a curl given many URLs, or a
/// closed-loop load generator): a stalled answer holds up every request queued behind it.
struct OneConnection {
    inner: HttpTarget,
    line: tokio::sync::Mutex<()>,
}

#[async_trait]
impl LoadTarget for OneConnection {
    fn describe(&self) -> String {
        LoadTarget::describe(&self.inner)
    }

    async fn one(&self, class: &Arc<TrafficClass>, seq: u64) -> Sample {
        let _line = self.line.lock().await;
        LoadTarget::one(&self.inner, class, seq).await
    }
}

#[tokio::test]
async fn a_stall_neither_thins_the_schedule_nor_hides_in_the_latency() {
    let behaviour = Arc::new(Behaviour::default());
    let url = serve(behaviour.clone()).await;
    let target = Arc::new(OneConnection {
        inner: HttpTarget::new(&url, "x").unwrap(),
        line: Default::default(),
    });
    let handle = start(target, spec(50.0, Some(2000)), Transitions::new()).unwrap();
    sleep_ms(500).await;
    behaviour.stall_next.store(true, SeqCst);
    sleep_ms(1550).await;
    let report = handle.stop().await.unwrap();
    invariants(&report);
    // Every request was sent at its time, none delayed into a thinner schedule.
    assert_eq!(report.scheduled, 100, "{}", report.summary());
    assert_eq!((report.sent, report.not_sent, report.ok), (100, 0, 100));
    // The ~25 requests scheduled during the stall waited for it: those in its first half
    // waited at least a quarter of a second, counted from their intended time ...
    let corrected = at_least(&report, 250, false);
    assert!(corrected >= 10, "{corrected} slow requests");
    assert!(report.latency.max_ms >= STALL.as_millis() as f64);
    // ... while each one's own service time, once its turn came, was short: measuring from the
    // actual send would have hidden the stall in one slow request.
    let service = at_least(&report, 250, true);
    assert!(service * 2 < corrected, "{service} vs {corrected}");
}

#[rstest]
#[case::capped(4)]
#[case::roomy(64)]
#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_failed_not_delayed(#[case] cap: usize) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.stall_all.store(true, SeqCst);
    let url = serve(behaviour).await;
    let spec = LoadSpec {
        max_in_flight: cap,
        ..spec(50.0, Some(1000))
    };
    let report = run_to_end(http(&url), spec).await;
    invariants(&report);
    assert_eq!(report.scheduled, 50, "{}", report.summary());
    // Every request sent was answered (after the stall): only unsent ones failed.
    assert_eq!(report.ok, report.sent);
    assert_eq!(report.failed, report.not_sent);
    let want = format!("not sent: {cap} in flight");
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.error == want && f.latency_ms.is_none() && f.status.is_none())
    );
    if cap == 4 {
        // 4 at 0 s, 4 more as they answer at ~0.5 s: most of the second's 50 could not go.
        assert!(report.sent >= 4);
        assert!(report.not_sent >= 25, "{}", report.summary());
    } else {
        // Each in flight for the stall: at most ~25 at once, never the cap.
        assert_eq!(report.not_sent, 0);
        assert!(report.latency.p50_ms >= STALL.as_millis() as f64);
    }
}

#[tokio::test]
async fn failures_belong_to_the_window_they_were_scheduled_in() {
    let behaviour = Arc::new(Behaviour::default());
    let url = serve(behaviour.clone()).await;
    let transitions = Transitions::new();
    let handle = start(http(&url), spec(50.0, None), transitions.clone()).unwrap();
    sleep_ms(300).await;
    transitions.mark(TRANSITION);
    // Margins on both sides: a request scheduled before the mark is answered well before.
    sleep_ms(200).await;
    behaviour.fail.store(true, SeqCst);
    sleep_ms(300).await;
    behaviour.fail.store(false, SeqCst);
    sleep_ms(200).await;
    transitions.settled();
    sleep_ms(300).await;
    let report = handle.stop().await.unwrap();
    invariants(&report);
    let w = &report.windows;
    assert_eq!(w.len(), 3, "{w:?}");
    assert_eq!((w[0].failed, w[2].failed), (0, 0), "{w:?}");
    let dropped = w[1].failed;
    assert!(dropped >= 5, "{w:?}");
    assert_eq!(
        w[1].errors,
        BTreeMap::from([("HTTP 503".to_string(), dropped)])
    );
    assert_eq!(report.failed, dropped);
    for f in &report.failures {
        assert_eq!(f.window, 1);
        assert_eq!(f.status, Some(503));
        assert!(f.subset.is_some() && f.latency_ms.is_some() && f.service_ms.is_some());
        assert_eq!(f.stamp.as_deref(), Some("2.2"));
        let (from, to) = (w[1].from_ms, w[1].to_ms.unwrap());
        assert!(
            from <= f.intended_ms && f.intended_ms < to,
            "{f:?} in {w:?}"
        );
    }
    let verdicts = judge_transitions(&report, DEFAULT_MAX_ERRORS);
    let passed: Vec<_> = verdicts.iter().map(|v| v.passed).collect();
    assert_eq!(passed, [true, false, true]);
    assert_eq!(
        verdicts[1].message,
        format!("{TRANSITION} dropped {dropped} requests: HTTP 503 ×{dropped}")
    );
    assert!(judge_transitions(&report, dropped).iter().all(|v| v.passed));
}

/// Never answers; counts calls and the request futures still alive.
#[derive(Default)]
struct Hanging {
    calls: AtomicU64,
    live: Arc<AtomicUsize>,
}

struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

#[async_trait]
impl LoadTarget for Hanging {
    fn describe(&self) -> String {
        "nowhere".into()
    }

    async fn one(&self, _class: &Arc<TrafficClass>, _seq: u64) -> Sample {
        self.calls.fetch_add(1, SeqCst);
        self.live.fetch_add(1, SeqCst);
        let _live = Live(self.live.clone());
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_request_that_never_answers_times_out() {
    let target = Arc::new(Hanging::default());
    let spec = LoadSpec {
        timeout: Duration::from_millis(100),
        ..spec(20.0, Some(500))
    };
    let handle = start(target.clone(), spec, Transitions::new()).unwrap();
    sleep_ms(700).await;
    let report = handle.stop().await.unwrap();
    invariants(&report);
    assert_eq!((report.scheduled, report.failed), (10, 10));
    assert_eq!(report.subsets[UNATTRIBUTED].answered, 10);
    for f in &report.failures {
        assert_eq!(f.error, "timeout");
        assert!(f.latency_ms.unwrap() >= 100.0 && f.service_ms.unwrap() >= 100.0);
    }
    assert_eq!(target.live.load(SeqCst), 0);
}

#[tokio::test]
async fn stop_waits_a_bounded_time_and_cuts_what_is_still_in_flight() {
    let target = Arc::new(Hanging::default());
    let spec = LoadSpec {
        timeout: Duration::from_secs(30),
        ..spec(20.0, None)
    };
    let handle = start(target.clone(), spec, Transitions::new()).unwrap();
    sleep_ms(300).await;
    let stopping = Instant::now();
    let report = handle
        .stop_within(Duration::from_millis(100))
        .await
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(5));
    invariants(&report);
    assert!(report.sent > 0);
    assert_eq!(report.cut_at_stop, report.sent);
    assert_eq!(report.failed, report.sent);
    for f in &report.failures {
        assert_eq!(f.error, "cut at stop");
        assert!(f.latency_ms.unwrap() >= 100.0 && f.service_ms.is_none());
    }
    let live = target.live.clone();
    assert!(eventually(|| live.load(SeqCst) == 0, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_schedule_and_every_request() {
    let target = Arc::new(Hanging::default());
    let handle = start(target.clone(), spec(50.0, None), Transitions::new()).unwrap();
    sleep_ms(200).await;
    assert!(target.calls.load(SeqCst) > 0);
    drop(handle);
    let live = target.live.clone();
    assert!(eventually(|| live.load(SeqCst) == 0, Duration::from_secs(5)).await);
    let calls = target.calls.load(SeqCst);
    sleep_ms(200).await;
    assert_eq!(target.calls.load(SeqCst), calls);
}

/// A prober target whose stream fails before any request (as an exec the API server refuses).
struct Broken;

#[async_trait]
impl Target for Broken {
    fn describe(&self) -> String {
        "broken".into()
    }

    async fn stream(
        &self,
        _probe: &Probe,
        _stop: &CancellationToken,
        _sink: &crate::prober::Sink,
    ) -> anyhow::Result<()> {
        bail!("exec refused")
    }
}

#[tokio::test]
async fn any_prober_target_can_carry_the_load() {
    let url = serve(Arc::default()).await;
    let target: Arc<dyn Target> = Arc::new(HttpTarget::new(&url, "x").unwrap());
    let report = run_to_end(Arc::new(FromTarget(target)), spec(20.0, Some(300))).await;
    invariants(&report);
    assert_eq!(
        (report.scheduled, report.ok),
        (6, 6),
        "{}",
        report.summary()
    );
    assert_eq!(report.subsets.len(), 2);

    let class = Arc::new(TrafficClass::default_class());
    let sample = FromTarget(Arc::new(Broken)).one(&class, 7).await;
    assert_eq!(sample.seq, 7);
    assert_eq!(sample.error.as_deref(), Some("target: exec refused"));
}
