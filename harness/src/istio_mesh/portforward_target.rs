//! North-south traffic: a local TCP listener whose connections are forwarded to the ingress
//! gateway pod through the API server (kube-rs port-forward), sampled by the ordinary
//! [`HttpTarget`].
//!
//! Each accepted connection gets its own port-forward stream, so the prober's connection pool
//! maps one to one onto forwarded streams, like `kubectl port-forward` does. Every request
//! still goes through the gateway's Envoy, which makes the weighted choice per request.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use tokio_util::sync::CancellationToken;

use crate::prober::{HttpTarget, Probe, Sink, Target};

pub struct PortForwardTarget {
    local: SocketAddr,
    pod: String,
    port: u16,
    http: HttpTarget,
    task: JoinHandle<()>,
}

impl PortForwardTarget {
    /// Listens on 127.0.0.1 (a free port) and forwards each connection to `pod`'s `port`;
    /// requests carry `authority` as their Host header.
    pub async fn start(
        pods: Api<Pod>,
        pod: &str,
        port: u16,
        authority: &str,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a local port for the port-forward")?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(forward_loop(listener, pods, pod.to_string(), port));
        let http = HttpTarget::new(&format!("http://{local}"), authority)?;
        tracing::info!("port-forward 127.0.0.1:{} → pod {pod}:{port}", local.port());
        Ok(Self {
            local,
            pod: pod.to_string(),
            port,
            http,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops listening and closes every forwarded connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for PortForwardTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; the connection tasks live in a JoinSet owned by this
/// task, so aborting it ends them too.
async fn forward_loop(listener: TcpListener, pods: Api<Pod>, pod: String, port: u16) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (mut socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("port-forward listener: {e}");
                continue;
            }
        };
        let pods = pods.clone();
        let pod = pod.clone();
        connections.spawn(async move {
            if let Err(e) = forward_one(&pods, &pod, port, &mut socket).await {
                tracing::debug!("port-forward of {peer} to {pod}:{port}: {e:#}");
            }
        });
    }
}

async fn forward_one(
    pods: &Api<Pod>,
    pod: &str,
    port: u16,
    socket: &mut tokio::net::TcpStream,
) -> anyhow::Result<()> {
    let mut forwarder = pods
        .portforward(pod, &[port])
        .await
        .with_context(|| format!("opening a port-forward to {pod}:{port}"))?;
    let mut upstream = forwarder
        .take_stream(port)
        .context("the port-forward has no stream for the port")?;
    tokio::io::copy_bidirectional(socket, &mut upstream).await?;
    drop(upstream);
    forwarder.join().await?;
    Ok(())
}

#[async_trait]
impl Target for PortForwardTarget {
    fn describe(&self) -> String {
        format!(
            "{} via port-forward to {}:{}",
            self.http.describe(),
            self.pod,
            self.port
        )
    }

    async fn stream(
        &self,
        probe: &Probe,
        stop: &CancellationToken,
        sink: &Sink,
    ) -> anyhow::Result<()> {
        self.http.stream(probe, stop, sink).await
    }
}

/// Keeps the type usable behind `Arc<dyn Target>` while the mesh holds it for shutdown.
pub type SharedPortForward = Arc<PortForwardTarget>;
