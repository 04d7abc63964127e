//! East-west traffic: curl inside a client pod of the mesh, so every request leaves through
//! that pod's sidecar, which makes the weighted choice the way any workload's sidecar does.
//!
//! The client pod runs podinfo's image (it has curl and a busybox shell) in the test
//! namespace, where it gets a sidecar by injection. A batch runs a few shell loops in parallel
//! through exec; each loop prints one line per request (`R <curl exit> <status> <seconds>
//! <body on one line>`), streamed back and parsed into [`Sample`]s as they arrive.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::proxy::exec_params;
use crate::prober::{Batch, OnSample, Sample, Target, classify};

/// The client pod's name (a run adds its own id) and the container curl runs in (the app
/// container, whose traffic the sidecar intercepts).
pub const CLIENT_POD: &str = "canary-mesh-client";
pub const CLIENT_CONTAINER: &str = "client";

/// The client pod of one run: `canary-mesh-client-<run id>`, so that runs never share one.
pub fn client_pod_name(run_id: &str) -> String {
    format!("{CLIENT_POD}-{run_id}")
}

/// At most this many exec loops at once, whatever the scenario's concurrency: each is a
/// websocket through the API server and a shell in the pod.
pub const MAX_LOOPS: usize = 8;

/// Per-request bound inside the pod.
pub const CURL_MAX_TIME_S: u32 = 10;

/// The client pod: podinfo's image running podinfo (so the pod stays up and is a normal
/// workload), labelled so that no Service of the split selects it.
pub fn client_pod_manifest(namespace: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": CLIENT_POD, "app.kubernetes.io/managed-by": super::FIELD_MANAGER},
        },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": CLIENT_CONTAINER,
                "image": image,
                "command": ["./podinfo", "--port=9899", "--level=warn"],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }],
        },
    })
}

/// A POSIX shell loop that makes `count` requests to `url` and prints one line per request.
/// The body is folded onto the line (newlines removed), so the version can be read from it.
pub fn curl_loop_script(url: &str, count: u64) -> String {
    format!(
        "b=$(mktemp); i=0; while [ \"$i\" -lt {count} ]; do i=$((i+1)); \
         m=$(curl -s -o \"$b\" --max-time {CURL_MAX_TIME_S} -w '%{{http_code}} %{{time_total}}' '{url}'); rc=$?; \
         [ -n \"$m\" ] || m='000 0'; \
         echo \"R $rc $m $(tr -d '\\r\\n' < \"$b\")\"; : > \"$b\"; done; rm -f \"$b\""
    )
}

/// One parsed output line of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct CurlLine {
    pub exit: i32,
    pub status: u16,
    pub seconds: f64,
    pub body: String,
}

/// Parses `R <exit> <status> <seconds> <body…>`; other lines (shell noise) are `None`.
pub fn parse_curl_line(line: &str) -> Option<CurlLine> {
    let rest = line.strip_prefix("R ")?;
    let mut parts = rest.splitn(4, ' ');
    let exit = parts.next()?.parse().ok()?;
    let status = parts.next()?.parse().ok()?;
    let seconds = parts.next()?.parse().ok()?;
    let body = parts.next().unwrap_or("").to_string();
    Some(CurlLine {
        exit,
        status,
        seconds,
        body,
    })
}

/// What curl's exit code means, for the sample's error.
pub fn curl_error(exit: i32) -> String {
    let what = match exit {
        6 => "could not resolve the host",
        7 => "connection refused",
        28 => "timeout",
        52 => "empty reply",
        56 => "connection reset while receiving",
        _ => "transport error",
    };
    format!("curl exit {exit}: {what}")
}

/// The sample of one line, arriving `at_ms` after the batch started.
pub fn sample_of(line: &CurlLine, at_ms: f64) -> Sample {
    let latency_ms = line.seconds * 1e3;
    if line.exit != 0 || line.status == 0 {
        return Sample {
            at_ms,
            latency_ms,
            version: None,
            status: (line.status != 0).then_some(line.status),
            error: Some(curl_error(line.exit)),
        };
    }
    let (version, error) = classify(line.status, line.body.as_bytes());
    Sample {
        at_ms,
        latency_ms,
        version,
        status: Some(line.status),
        error,
    }
}

/// Splits `requests` over at most `loops` loops, as evenly as possible.
pub fn split(requests: u64, loops: usize) -> Vec<u64> {
    let loops = (loops.max(1) as u64).min(requests.max(1));
    let base = requests / loops;
    let extra = requests % loops;
    (0..loops)
        .map(|i| base + u64::from(i < extra))
        .filter(|n| *n > 0)
        .collect()
}

/// Requests from inside the mesh, by curl in the client pod.
pub struct ExecCurlTarget {
    pods: Api<Pod>,
    pod: String,
    url: String,
}

impl ExecCurlTarget {
    /// `url` is what the client calls, e.g. `http://podinfo.test:9898/`.
    pub fn new(pods: Api<Pod>, pod: &str, url: &str) -> Self {
        Self {
            pods,
            pod: pod.to_string(),
            url: url.to_string(),
        }
    }

    /// Runs one loop of `count` requests and hands each sample over as it arrives.
    async fn run_loop(
        &self,
        count: u64,
        started: Instant,
        deliver: &(dyn Fn(Sample) + Send + Sync),
    ) -> anyhow::Result<u64> {
        let script = curl_loop_script(&self.url, count);
        let mut process = self
            .pods
            .exec(
                &self.pod,
                vec!["sh".to_string(), "-c".to_string(), script],
                &exec_params(CLIENT_CONTAINER),
            )
            .await
            .with_context(|| format!("exec of the curl loop in pod {}", self.pod))?;
        let stdout = process.stdout().context("no stdout of exec")?;
        let mut stderr = process.stderr().context("no stderr of exec")?;
        let stderr_task = async move {
            let mut err = Vec::new();
            let _ = stderr.read_to_end(&mut err).await;
            err
        };
        let read = async {
            let mut lines = BufReader::new(stdout).lines();
            let mut got = 0u64;
            while let Some(line) = lines.next_line().await? {
                if let Some(parsed) = parse_curl_line(&line) {
                    got += 1;
                    deliver(sample_of(&parsed, started.elapsed().as_secs_f64() * 1e3));
                }
            }
            anyhow::Ok(got)
        };
        let (got, err) = tokio::join!(read, stderr_task);
        let got = got?;
        let _ = process.join().await;
        if got < count {
            bail!(
                "the curl loop in pod {} ended after {got} of {count} requests; stderr: {}",
                self.pod,
                String::from_utf8_lossy(&err).trim()
            );
        }
        Ok(got)
    }
}

#[async_trait]
impl Target for ExecCurlTarget {
    fn describe(&self) -> String {
        format!(
            "{} from pod {} (curl, through its sidecar)",
            self.url, self.pod
        )
    }

    /// Rounds of parallel loops: each round asks for exactly the good answers still missing
    /// (never more than the request budget left), so a batch ends with `want` good answers
    /// unless the budget runs out, as with the HTTP target.
    async fn collect(&self, batch: Batch, on_sample: OnSample<'_>) -> anyhow::Result<Vec<Sample>> {
        let started = Instant::now();
        let samples = Mutex::new(Vec::with_capacity(batch.want as usize));
        let good = AtomicU64::new(0);
        let mut sent = 0u64;
        let deliver = |s: Sample| {
            if s.is_ok() {
                good.fetch_add(1, Ordering::SeqCst);
            }
            on_sample(&s);
            samples.lock().expect("samples").push(s);
        };
        loop {
            let missing = batch.want.saturating_sub(good.load(Ordering::SeqCst));
            let budget = batch.max_requests.saturating_sub(sent);
            let round = missing.min(budget);
            if round == 0 {
                break;
            }
            let loops = split(round, batch.concurrency.clamp(1, MAX_LOOPS));
            let runs = loops.iter().map(|n| self.run_loop(*n, started, &deliver));
            for result in futures::future::join_all(runs).await {
                result?;
            }
            sent += round;
        }
        let mut samples = samples.into_inner().expect("samples");
        samples.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        Ok(samples)
    }
}

/// Counts answers per version, for logs.
pub fn versions(samples: &[Sample]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.is_ok()) {
        *out.entry(s.version.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        r#"R 0 200 0.004512 {  "hostname": "podinfo-ga-7d9f",  "version": "6.14.0",  "revision": "abc"}"#,
        Some("6.14.0"),
        Some(200),
        None
    )]
    #[case(
        r#"R 0 500 0.010000 {  "code": 500,  "message": "injected", "version": "6.14.1"}"#,
        Some("6.14.1"),
        Some(500),
        Some("HTTP 500")
    )]
    #[case("R 0 503 0.002 no healthy upstream", None, Some(503), Some("HTTP 503"))]
    #[case(
        "R 7 000 0.001000 ",
        None,
        None,
        Some("curl exit 7: connection refused")
    )]
    #[case("R 28 000 10.000 ", None, None, Some("curl exit 28: timeout"))]
    fn lines_become_samples(
        #[case] line: &str,
        #[case] version: Option<&str>,
        #[case] status: Option<u16>,
        #[case] error: Option<&str>,
    ) {
        let parsed = parse_curl_line(line).unwrap();
        let s = sample_of(&parsed, 12.0);
        assert_eq!(s.version.as_deref(), version);
        assert_eq!(s.status, status);
        assert_eq!(s.error.as_deref(), error);
        assert_eq!(s.at_ms, 12.0);
        assert!((s.latency_ms - parsed.seconds * 1e3).abs() < 1e-9);
    }

    #[rstest]
    #[case("")]
    #[case("sh: warning")]
    #[case("R x 200 0.1 {}")]
    #[case("R 0 200")]
    fn other_lines_are_ignored(#[case] line: &str) {
        assert_eq!(parse_curl_line(line), None);
    }

    #[rstest]
    #[case(10, 3, vec![4, 3, 3])]
    #[case(2, 8, vec![1, 1])]
    #[case(0, 4, vec![])]
    #[case(7, 1, vec![7])]
    fn requests_are_split_over_loops(#[case] n: u64, #[case] loops: usize, #[case] want: Vec<u64>) {
        let got = split(n, loops);
        assert_eq!(got, want);
        assert_eq!(got.iter().sum::<u64>(), n);
    }

    /// The script itself runs under a local POSIX shell with a fake `curl` on PATH, so the
    /// quoting and the line format are checked for real.
    #[test]
    fn the_loop_script_prints_one_parsable_line_per_request() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("curl");
        std::fs::write(
            &fake,
            "#!/bin/sh\n# fake curl: -o FILE and -w FORMAT\nout=''\nwhile [ $# -gt 0 ]; do case \"$1\" in -o) out=$2; shift;; esac; shift; done\nprintf '{\\n  \"version\": \"6.14.1\"\\n}\\n' > \"$out\"\nprintf '200 0.003'\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = curl_loop_script("http://podinfo.test:9898/", 3);
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap()
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<CurlLine> = text.lines().filter_map(parse_curl_line).collect();
        assert_eq!(lines.len(), 3, "{text}");
        let s = sample_of(&lines[0], 0.0);
        assert_eq!(s.version.as_deref(), Some("6.14.1"));
        assert!(s.is_ok());
    }

    #[test]
    fn the_client_pod_is_not_selected_by_the_split() {
        let pod = client_pod_manifest(
            "test",
            "canary-mesh-client-ab12",
            "ghcr.io/stefanprodan/podinfo:6.14.0",
        );
        assert_eq!(pod["metadata"]["name"], "canary-mesh-client-ab12");
        assert_eq!(pod["metadata"]["labels"]["app"], CLIENT_POD);
        assert_eq!(pod["spec"]["containers"][0]["name"], CLIENT_CONTAINER);
    }
}
