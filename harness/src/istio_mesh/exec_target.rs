//! East-west traffic: curl inside a client pod of the mesh, so every request leaves through
//! that pod's sidecar, which makes the weighted choice the way any workload's sidecar does.
//!
//! The client pod runs podinfo's image (it has curl and a busybox shell) in the test
//! namespace, where it gets a sidecar by injection. A batch runs rounds of parallel execs; each
//! exec is **one** curl process given the URL many times, so it keeps its connection alive and
//! sends those requests one after the other. After each transfer curl writes the body and then
//! a record line (`@@canary-harness@@ <urlnum>|<exit>|<status>|<seconds>|<subset>|<stamp>|
//! <version header>`), streamed back and parsed into [`Sample`]s as they arrive. Requests are
//! numbered by (round, transfer, exec), so which ones a verdict judges is fixed in advance.

use std::time::Instant;

use anyhow::{Context, bail};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::proxy::exec_params;
use crate::prober::{Probe, Sample, Sink, Target, failed_status, reported_version};
use crate::routing::{STAGE_HEADER, SUBSET_HEADER};
use crate::scenario::{Identify, TrafficClass};

/// The client pod's name (a run adds its own id) and the container curl runs in (the app
/// container, whose traffic the sidecar intercepts).
pub const CLIENT_POD: &str = "canary-mesh-client";
pub const CLIENT_CONTAINER: &str = "client";

/// The client pod of one run: `canary-mesh-client-<run id>`, so that runs never share one.
pub fn client_pod_name(run_id: &str) -> String {
    format!("{CLIENT_POD}-{run_id}")
}

/// At most this many execs at once, whatever the scenario's concurrency: each is a websocket
/// through the API server and a curl process in the pod.
pub const MAX_EXECS: usize = 8;

/// Requests per curl process (per exec) in a round: enough to amortise the exec, few enough
/// that a decided verdict stops the batch soon.
pub const PER_EXEC: u64 = 50;

/// Per-request bound inside the pod.
pub const CURL_MAX_TIME_S: u32 = 10;

/// What starts every record line curl writes.
const RECORD: &str = "@@canary-harness@@ ";

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

/// The argv of one curl process sending `count` requests of `class` to `base` (`http://host:port`).
pub fn curl_argv(
    base: &str,
    class: &TrafficClass,
    identify: Option<&Identify>,
    count: u64,
) -> Vec<String> {
    let version_header = match identify {
        Some(Identify::Header(name)) => format!("%header{{{name}}}"),
        _ => String::new(),
    };
    let mut argv: Vec<String> = vec![
        "curl".into(),
        "-s".into(),
        "--max-time".into(),
        CURL_MAX_TIME_S.to_string(),
        "-X".into(),
        class.method.clone(),
    ];
    for (k, v) in &class.headers {
        argv.extend(["-H".into(), format!("{k}: {v}")]);
    }
    if let Some(cookie) = class.cookie_header() {
        argv.extend(["-b".into(), cookie]);
    }
    argv.extend([
        "-w".into(),
        format!(
            "\\n{RECORD}%{{urlnum}}|%{{exitcode}}|%{{http_code}}|%{{time_total}}|%header{{{SUBSET_HEADER}}}|%header{{{STAGE_HEADER}}}|{version_header}\\n"
        ),
    ]);
    let url = format!("{}{}", base.trim_end_matches('/'), class.path);
    argv.extend((0..count).map(|_| url.clone()));
    argv
}

/// One transfer as curl's record line and the body before it tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub urlnum: u64,
    pub exit: i32,
    pub status: u16,
    pub seconds: f64,
    pub subset: Option<String>,
    pub stamp: Option<String>,
    pub version_header: Option<String>,
    pub body: String,
}

/// Parses a record line (after the marker); `None` for anything else.
pub fn parse_record(line: &str, body: String) -> Option<Transfer> {
    let rest = line.strip_prefix(RECORD)?;
    let fields: Vec<&str> = rest.splitn(7, '|').collect();
    if fields.len() < 6 {
        return None;
    }
    let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    Some(Transfer {
        urlnum: fields[0].trim().parse().ok()?,
        exit: fields[1].trim().parse().ok()?,
        status: fields[2].trim().parse().ok()?,
        seconds: fields[3].trim().parse().ok()?,
        subset: text(fields[4]),
        stamp: text(fields[5]),
        version_header: fields.get(6).and_then(|f| text(f)),
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

/// The sample of one transfer, numbered `seq`, arriving `at_ms` after the batch started.
pub fn sample_of(t: &Transfer, seq: u64, at_ms: f64, identify: Option<&Identify>) -> Sample {
    let error = if t.exit != 0 || t.status == 0 {
        Some(curl_error(t.exit))
    } else {
        failed_status(t.status)
    };
    Sample {
        seq,
        at_ms,
        latency_ms: t.seconds * 1e3,
        status: (t.status != 0).then_some(t.status),
        subset: t.subset.clone(),
        stamp: t.stamp.clone(),
        reported: identify
            .and_then(|i| reported_version(i, t.version_header.as_deref(), t.body.as_bytes())),
        error,
    }
}

/// Requests from inside the mesh, by curl in the client pod.
pub struct ExecCurlTarget {
    pods: Api<Pod>,
    pod: String,
    /// `http://host:port`, what the client calls.
    base: String,
}

impl ExecCurlTarget {
    /// `url` is what the client calls, e.g. `http://podinfo.test:9898/`.
    pub fn new(pods: Api<Pod>, pod: &str, url: &str) -> Self {
        Self {
            pods,
            pod: pod.to_string(),
            base: url.trim_end_matches('/').to_string(),
        }
    }

    /// One curl process of `count` requests; request `i` of it is numbered `seq(i)`.
    async fn run_exec(
        &self,
        probe: &Probe,
        count: u64,
        seq: impl Fn(u64) -> u64,
        started: Instant,
        sink: &Sink,
    ) -> anyhow::Result<u64> {
        let argv = curl_argv(&self.base, &probe.class, probe.identify.as_ref(), count);
        let mut process = self
            .pods
            .exec(&self.pod, argv, &exec_params(CLIENT_CONTAINER))
            .await
            .with_context(|| format!("exec of curl in pod {}", self.pod))?;
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
            let mut body = String::new();
            while let Some(line) = lines.next_line().await? {
                let record = if line.starts_with(RECORD) {
                    parse_record(&line, std::mem::take(&mut body))
                } else {
                    None
                };
                match record {
                    Some(t) => {
                        got += 1;
                        let at_ms = started.elapsed().as_secs_f64() * 1e3;
                        let sample = sample_of(&t, seq(t.urlnum), at_ms, probe.identify.as_ref());
                        let _ = sink.send(sample);
                    }
                    None => {
                        if !body.is_empty() {
                            body.push('\n');
                        }
                        body.push_str(&line);
                    }
                }
            }
            anyhow::Ok(got)
        };
        let (got, err) = tokio::join!(read, stderr_task);
        let got = got?;
        let _ = process.join().await;
        if got < count {
            bail!(
                "curl in pod {} ended after {got} of {count} requests; stderr: {}",
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
            "{}/ from pod {} (curl, through its sidecar)",
            self.base, self.pod
        )
    }

    /// Rounds of parallel execs, until `stop` or the request budget: every round is `execs`
    /// curl processes of up to [`PER_EXEC`] requests each, numbered round after round.
    async fn stream(
        &self,
        probe: &Probe,
        stop: &CancellationToken,
        sink: &Sink,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let execs = probe.concurrency.clamp(1, MAX_EXECS) as u64;
        let mut sent = 0u64;
        while !stop.is_cancelled() && sent < probe.max_requests {
            let left = probe.max_requests - sent;
            let per = PER_EXEC.min(left.div_ceil(execs));
            let used = execs.min(left.div_ceil(per));
            let base = sent;
            // Every exec of a round sends `per`: the round numbers exactly `per * used`.
            let runs = (0..used)
                .map(|e| self.run_exec(probe, per, move |i| base + i * used + e, started, sink));
            for result in futures::future::join_all(runs).await {
                result?;
            }
            sent += per * used;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::sync::Arc;

    #[rstest]
    #[case(
        "@@canary-harness@@ 3|0|200|0.004512|canary|2.2|",
        r#"{"version": "6.14.1"}"#,
        Some("6.14.1"),
        Some(200),
        None
    )]
    #[case(
        "@@canary-harness@@ 0|0|500|0.010000|canary|2.2|",
        r#"{"error": "injected", "version": "6.14.1"}"#,
        Some("6.14.1"),
        Some(500),
        Some("HTTP 500")
    )]
    #[case(
        "@@canary-harness@@ 1|0|503|0.002|||",
        "no healthy upstream",
        None,
        Some(503),
        Some("HTTP 503")
    )]
    #[case(
        "@@canary-harness@@ 2|7|000|0.001|||",
        "",
        None,
        None,
        Some("curl exit 7: connection refused")
    )]
    #[case(
        "@@canary-harness@@ 2|28|000|10.000|||",
        "",
        None,
        None,
        Some("curl exit 28: timeout")
    )]
    fn records_become_samples(
        #[case] line: &str,
        #[case] body: &str,
        #[case] version: Option<&str>,
        #[case] status: Option<u16>,
        #[case] error: Option<&str>,
    ) {
        let t = parse_record(line, body.to_string()).unwrap();
        let identify = Identify::Json("/version".into());
        let s = sample_of(&t, 9, 12.0, Some(&identify));
        assert_eq!(s.reported.as_deref(), version);
        assert_eq!(s.status, status);
        assert_eq!(s.error.as_deref(), error);
        assert_eq!((s.seq, s.at_ms), (9, 12.0));
        assert!((s.latency_ms - t.seconds * 1e3).abs() < 1e-9);
    }

    #[rstest]
    #[case("")]
    #[case("sh: warning")]
    #[case("@@canary-harness@@ x|0|200|0.1|||")]
    #[case("@@canary-harness@@ 0|0")]
    fn other_lines_are_not_records(#[case] line: &str) {
        assert_eq!(parse_record(line, String::new()), None);
    }

    /// The argv runs for real under a fake `curl` on PATH that answers the way curl's `-w`
    /// does, so the record format and its parsing are checked together.
    #[test]
    fn one_curl_process_sends_the_class_many_times_and_records_each() {
        let class = TrafficClass {
            name: "insiders".into(),
            path: "/api".into(),
            method: "GET".into(),
            headers: [("x-canary".to_string(), "insider".to_string())].into(),
            cookies: [("canary".to_string(), "always".to_string())].into(),
            expect: None,
        };
        let argv = curl_argv("http://podinfo.test:9898", &class, None, 3);
        assert_eq!(
            argv.iter()
                .filter(|a| *a == "http://podinfo.test:9898/api")
                .count(),
            3
        );
        let h = argv.iter().position(|a| a == "-H").unwrap();
        assert_eq!(argv[h + 1], "x-canary: insider");
        let b = argv.iter().position(|a| a == "-b").unwrap();
        assert_eq!(argv[b + 1], "canary=always");
        let w = argv.iter().position(|a| a == "-w").unwrap();
        assert!(
            argv[w + 1].contains("%{urlnum}|%{exitcode}|%{http_code}"),
            "{}",
            argv[w + 1]
        );
        // What curl would print for three transfers: body, then the record line.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("curl");
        std::fs::write(
            &fake,
            "#!/bin/sh\nn=0\nfor a in \"$@\"; do case \"$a\" in http://*) printf '{\\n  \"version\": \"6.14.1\"\\n}\\n@@canary-harness@@ %s|0|200|0.003|canary|1.1|\\n' $n; n=$((n+1));; esac; done\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&fake)
            .args(&argv[1..])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut body = String::new();
        let mut got = Vec::new();
        for line in text.lines() {
            let record = if line.starts_with(RECORD) {
                parse_record(line, std::mem::take(&mut body))
            } else {
                None
            };
            match record {
                Some(t) => got.push(t),
                None => {
                    if !body.is_empty() {
                        body.push('\n');
                    }
                    body.push_str(line);
                }
            }
        }
        assert_eq!(got.len(), 3, "{text}");
        let identify = Identify::Json("/version".into());
        let s = sample_of(&got[2], 2, 0.0, Some(&identify));
        assert_eq!(s.reported.as_deref(), Some("6.14.1"));
        assert_eq!(
            (s.subset.as_deref(), s.stamp.as_deref()),
            (Some("canary"), Some("1.1"))
        );
        let _ = Arc::new(class);
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
