//! The diagnostics bundle written when a cluster run fails: what the harness waited for,
//! events, pod states and logs of the test and istio-system namespaces, and the proxies'
//! config_dumps. Every part is bounded and best effort: a part that fails (a list, a log, a
//! config_dump) is noted in `README.txt` instead of hiding the others.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, ListParams, LogParams};

use super::proxy::{ConfigDumps, ProxyRef};
use super::waits::{WaitLog, container_names};

/// Bound of each part of the bundle.
const PART_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines kept per container.
const LOG_TAIL: i64 = 300;

/// Writes the bundle into `dir`; the proxies' config_dumps come from `dumps`.
pub async fn collect(
    client: &Client,
    dumps: &dyn ConfigDumps,
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
            Ok(Ok(notes)) => {
                for note in notes {
                    writeln!(readme, "{ns}: {note}")?;
                }
            }
            Ok(Err(e)) => writeln!(readme, "{ns}: {e:#}")?,
            Err(_) => writeln!(readme, "{ns}: not collected within {PART_TIMEOUT:?}")?,
        }
    }
    for p in proxies {
        let file = dir.join(format!("{}-config_dump.json", p.label));
        match tokio::time::timeout(PART_TIMEOUT, dumps.dump(p)).await {
            Ok(Ok(dump)) => std::fs::write(&file, serde_json::to_vec_pretty(&dump)?)?,
            Ok(Err(e)) => writeln!(readme, "{p} config_dump: {e:#}")?,
            Err(_) => writeln!(readme, "{p} config_dump: not read within {PART_TIMEOUT:?}")?,
        }
    }
    std::fs::write(dir.join("README.txt"), readme)?;
    Ok(())
}

/// Events, pod states and container logs of `ns` into `dir`. Returns what could not be read
/// (the events, a container's log), so that one refused request does not hide the rest;
/// fails only when the pods cannot be listed.
async fn namespace_state(client: &Client, ns: &str, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    match events_text(client, ns).await {
        Ok(text) => std::fs::write(dir.join("events.txt"), text)?,
        Err(e) => notes.push(format!("events not listed: {e}")),
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default())
        .await
        .context("pods not listed")?
        .items;
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
                Err(e) => {
                    notes.push(format!("no log of {name}/{container}: {e}"));
                    format!("(no log: {e})")
                }
            };
            std::fs::write(
                dir.join("logs").join(format!("{name}.{container}.log")),
                log,
            )?;
        }
    }
    std::fs::write(dir.join("pods.txt"), text)?;
    Ok(notes)
}

/// The namespace's events, oldest first, one a line.
async fn events_text(client: &Client, ns: &str) -> anyhow::Result<String> {
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
    Ok(text)
}
