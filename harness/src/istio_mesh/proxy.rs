//! Reading an Istio proxy's state: `pilot-agent request GET config_dump` through exec in the
//! pod's `istio-proxy` container, the same way Istio's own test framework reads it.
//!
//! The full dump holds the route configurations (to see the weights a proxy routes with) and
//! the SDS secrets (to see the workload certificate it serves).

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, AttachParams};
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// The sidecar's and the gateway's container.
pub const PROXY_CONTAINER: &str = "istio-proxy";

/// The command that prints the proxy's whole config_dump.
pub fn config_dump_command() -> Vec<String> {
    ["pilot-agent", "request", "GET", "config_dump"]
        .map(String::from)
        .to_vec()
}

/// Exec parameters that read stdout and stderr (no stdin, no TTY) with a roomy buffer: a
/// config_dump is megabytes.
pub fn exec_params(container: &str) -> AttachParams {
    AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .max_stdout_buf_size(1 << 20)
}

/// Runs `command` in a container and returns its stdout; fails with its stderr and status when
/// it does not succeed, or when it takes longer than `timeout`.
pub async fn exec_capture(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: Vec<String>,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let shown = command.join(" ");
    let run = async {
        let mut process = pods
            .exec(pod, command, &exec_params(container))
            .await
            .with_context(|| format!("exec `{shown}` in pod {pod} container {container}"))?;
        let status = process.take_status();
        let mut stdout = process.stdout().context("no stdout of exec")?;
        let mut stderr = process.stderr().context("no stderr of exec")?;
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        r1.context("reading stdout of exec")?;
        r2.context("reading stderr of exec")?;
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let _ = process.join().await;
        if let Some(status) = status
            && status.status.as_deref() != Some("Success")
        {
            bail!(
                "`{shown}` in {pod}/{container} failed: {} {}; stderr: {}",
                status.reason.unwrap_or_default(),
                status.message.unwrap_or_default(),
                String::from_utf8_lossy(&err).trim()
            );
        }
        anyhow::Ok(out)
    };
    tokio::time::timeout(timeout, run).await.with_context(|| {
        format!("`{shown}` in {pod}/{container} did not finish within {timeout:?}")
    })?
}

/// The proxy's full config_dump as JSON.
pub async fn config_dump(pods: &Api<Pod>, pod: &str, timeout: Duration) -> anyhow::Result<Value> {
    let out = exec_capture(pods, pod, PROXY_CONTAINER, config_dump_command(), timeout).await?;
    serde_json::from_slice(&out).with_context(|| {
        format!(
            "the config_dump of {pod} is not JSON (starts with {:?})",
            String::from_utf8_lossy(&out[..out.len().min(80)])
        )
    })
}

/// A proxy the harness reads: a pod with an `istio-proxy` container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRef {
    /// `gateway` or `mesh-client`: names the proxy in errors and diagnostics files.
    pub label: String,
    pub namespace: String,
    pub pod: String,
}

impl fmt::Display for ProxyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.label, self.namespace, self.pod)
    }
}

/// Where the proxies' config_dumps come from: exec in the cluster ([`ExecConfigDumps`]), or a
/// fake in tests (exec is a websocket upgrade that no mocked API server completes).
#[async_trait]
pub trait ConfigDumps: Send + Sync {
    async fn dump(&self, proxy: &ProxyRef) -> anyhow::Result<Value>;
}

/// `pilot-agent request GET config_dump` through exec ([`config_dump`]), bounded by `timeout`.
pub struct ExecConfigDumps {
    pub client: Client,
    pub timeout: Duration,
}

#[async_trait]
impl ConfigDumps for ExecConfigDumps {
    async fn dump(&self, proxy: &ProxyRef) -> anyhow::Result<Value> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &proxy.namespace);
        config_dump(&pods, &proxy.pod, self.timeout).await
    }
}

/// The workload certificate chain (PEM) the proxy serves: the SDS secret `default` of the
/// config_dump's SecretsConfigDump (`tls_certificate.certificate_chain`, inline bytes in
/// base64 or an inline string). `None` while the proxy has not received it yet.
pub fn workload_chain(dump: &Value) -> Option<String> {
    let mut found = None;
    visit(dump, &mut |v| {
        if found.is_some() {
            return;
        }
        for entry in v["dynamic_active_secrets"].as_array().into_iter().flatten() {
            let secret = &entry["secret"];
            let name = entry["name"].as_str().or(secret["name"].as_str());
            if name != Some("default") {
                continue;
            }
            let chain = &secret["tls_certificate"]["certificate_chain"];
            if let Some(b64) = chain["inline_bytes"].as_str()
                && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64)
            {
                found = Some(String::from_utf8_lossy(&bytes).into_owned());
            } else if let Some(text) = chain["inline_string"].as_str() {
                found = Some(text.to_string());
            }
        }
    });
    found
}

fn visit(v: &Value, f: &mut dyn FnMut(&Value)) {
    f(v);
    match v {
        Value::Object(map) => map.values().for_each(|c| visit(c, f)),
        Value::Array(items) => items.iter().for_each(|c| visit(c, f)),
        _ => {}
    }
}
