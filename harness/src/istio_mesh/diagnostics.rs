//! The diagnostics bundle written when a cluster run fails: what the harness waited for,
//! events, pod states and logs of the test and istio-system namespaces, and the proxies'
//! config_dumps. Every part is bounded and best effort: a part that fails is noted in
//! `README.txt` instead of hiding the others.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, ListParams, LogParams};

use super::proxy;
use super::waits::{WaitLog, container_names};

/// Bound of each part of the bundle.
const PART_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines kept per container.
const LOG_TAIL: i64 = 300;

/// A proxy whose config_dump goes into the bundle.
#[derive(Debug, Clone)]
pub struct ProxyRef {
    pub label: String,
    pub namespace: String,
    pub pod: String,
}

/// Writes the bundle into `dir`.
pub async fn collect(
    client: &Client,
    dir: &Path,
    namespaces: &[&str],
    proxies: &[ProxyRef],
    waits: &WaitLog,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut readme = String::from(
        "Diagnostics of the Istio mesh run.\n\nwaits.txt: what the harness waited for, in order\n<namespace>/events.txt, pods.txt, logs/: the cluster's view\n*-config_dump.json: the proxies' configuration\n\n",
    );
    std::fs::write(dir.join("waits.txt"), waits.lines().join("\n") + "\n")?;
    for ns in namespaces {
        let ns_dir = dir.join(ns);
        std::fs::create_dir_all(ns_dir.join("logs"))?;
        match tokio::time::timeout(PART_TIMEOUT, namespace_state(client, ns, &ns_dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => writeln!(readme, "{ns}: {e:#}")?,
            Err(_) => writeln!(readme, "{ns}: not collected within {PART_TIMEOUT:?}")?,
        }
    }
    for p in proxies {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
        let file = dir.join(format!("{}-config_dump.json", p.label));
        match proxy::config_dump(&pods, &p.pod, PART_TIMEOUT).await {
            Ok(dump) => std::fs::write(&file, serde_json::to_vec_pretty(&dump)?)?,
            Err(e) => writeln!(readme, "{} config_dump ({}): {e:#}", p.label, p.pod)?,
        }
    }
    std::fs::write(dir.join("README.txt"), readme)?;
    Ok(())
}

async fn namespace_state(client: &Client, ns: &str, dir: &Path) -> anyhow::Result<()> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut list = events.list(&ListParams::default()).await?.items;
    list.sort_by_key(|e| {
        serde_json::to_value(&e.last_timestamp)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    });
    let mut text = String::new();
    for e in &list {
        let obj = &e.involved_object;
        writeln!(
            text,
            "{} {} {}/{}: {} {}",
            serde_json::to_value(&e.last_timestamp)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            e.type_.clone().unwrap_or_default(),
            obj.kind.clone().unwrap_or_default(),
            obj.name.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            e.message.clone().unwrap_or_default()
        )?;
    }
    std::fs::write(dir.join("events.txt"), text)?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default()).await?.items;
    let mut text = String::new();
    for pod in &list {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        writeln!(text, "{name}: phase {}", status.phase.unwrap_or_default())?;
        let all = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for cs in all {
            writeln!(
                text,
                "  {} ready={} restarts={} state={}",
                cs.name,
                cs.ready,
                cs.restart_count,
                serde_json::to_string(&cs.state).unwrap_or_default()
            )?;
        }
        let (containers, init) = container_names(pod);
        for container in init.iter().chain(containers.iter()) {
            let params = LogParams {
                container: Some(container.clone()),
                tail_lines: Some(LOG_TAIL),
                ..LogParams::default()
            };
            let log = match pods.logs(&name, &params).await {
                Ok(l) => l,
                Err(e) => format!("(no log: {e})"),
            };
            std::fs::write(
                dir.join("logs").join(format!("{name}.{container}.log")),
                log,
            )?;
        }
    }
    std::fs::write(dir.join("pods.txt"), text)?;
    Ok(())
}
