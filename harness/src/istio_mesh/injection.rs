//! Proof that sidecar injection works: the namespace asks for it and every pod got a proxy.
//!
//! A pod created before its namespace was labelled, or while the injector's webhook was not
//! serving yet, runs without a sidecar and silently bypasses the VirtualService's weights from
//! the mesh side. Checking every pod turns that into an error that names the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};

use super::proxy::PROXY_CONTAINER;
use super::waits::container_names;

/// The label that turns injection on for a namespace.
pub const INJECTION_LABEL: (&str, &str) = ("istio-injection", "enabled");

/// Whether the namespace carries `istio-injection=enabled`; the error says what it carries.
pub fn check_namespace(ns: &Namespace) -> anyhow::Result<()> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    if labels.get(INJECTION_LABEL.0).map(String::as_str) == Some(INJECTION_LABEL.1) {
        return Ok(());
    }
    anyhow::bail!(
        "namespace {name} lacks the label {}={} (its labels: {}): Istio will not inject sidecars there; add the label to the Namespace manifest",
        INJECTION_LABEL.0,
        INJECTION_LABEL.1,
        describe_labels(&labels)
    )
}

fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "none".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the pod runs an `istio-proxy` container (a regular one or a native sidecar).
pub fn has_proxy(pod: &Pod) -> bool {
    let (containers, init) = container_names(pod);
    containers
        .iter()
        .chain(init.iter())
        .any(|c| c == PROXY_CONTAINER)
}

/// Every pod that is not being deleted runs a proxy; the error names each pod without one and
/// the containers it has.
pub fn check_pods(pods: &[Pod], what: &str) -> anyhow::Result<()> {
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    if live.is_empty() {
        anyhow::bail!("no running pods of {what} to check for an {PROXY_CONTAINER} container");
    }
    let missing: Vec<String> = live
        .iter()
        .filter(|p| !has_proxy(p))
        .map(|p| {
            let (containers, init) = container_names(p);
            format!(
                "pod {}/{} has containers [{}] and init containers [{}]",
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
                containers.join(", "),
                init.join(", ")
            )
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "no {PROXY_CONTAINER} container was injected into {} of {} pods of {what}:\n  {}\n(pods created before the namespace was labelled or before istiod's webhook served keep running without a sidecar: restart them, e.g. delete the pods)",
        missing.len(),
        live.len(),
        missing.join("\n  ")
    )
}

/// Whether the namespace carries `label` (and, for a revision label, not the
/// `istio-injection` label that would win over it).
pub fn namespace_asks(ns: &Namespace, label: &(String, String)) -> super::waits::Check<()> {
    use super::waits::Check;
    let name = ns.metadata.name.clone().unwrap_or_default();
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    let has = labels.get(&label.0) == Some(&label.1);
    let overridden = label.0 != INJECTION_LABEL.0 && labels.contains_key(INJECTION_LABEL.0);
    if has && !overridden {
        return Check::Ready(());
    }
    Check::Failed(anyhow::anyhow!(
        "namespace {name} lacks the label {}={}{} (its labels: {}): Istio will not inject the sidecars the run needs there; fix the Namespace in the manifests",
        label.0,
        label.1,
        if overridden {
            format!(", or carries {} which wins over it", INJECTION_LABEL.0)
        } else {
            String::new()
        },
        describe_labels(&labels)
    ))
}

/// Every live pod of a Deployment runs a proxy; pending while there are none.
pub fn pods_injected(pods: &[Pod], what: &str) -> super::waits::Check<()> {
    use super::waits::Check;
    if pods.iter().all(|p| p.metadata.deletion_timestamp.is_some()) {
        return Check::Pending(format!("no live pods of {what} yet"));
    }
    match check_pods(pods, what) {
        Ok(()) => Check::Ready(()),
        Err(e) => Check::Failed(e),
    }
}

/// The label selector `k=v,k=v` that finds a Deployment's pods from its pod template labels.
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, containers: &[&str], init: &[(&str, Option<&str>)]) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "test"},
            "spec": {
                "containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
                "initContainers": init.iter().map(|(c, rp)| json!({"name": c, "restartPolicy": rp})).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_without_a_proxy_is_named_with_its_containers() {
        let pods = vec![
            pod(
                "podinfo-ga-1",
                &["podinfo", "istio-proxy"],
                &[("istio-init", None)],
            ),
            pod("podinfo-ga-2", &["podinfo"], &[]),
        ];
        let err = check_pods(&pods, "Deployment test/podinfo-ga").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pod test/podinfo-ga-2 has containers [podinfo]"),
            "{text}"
        );
        assert!(text.contains("1 of 2 pods"), "{text}");
        assert!(!text.contains("podinfo-ga-1"), "{text}");
    }

    #[test]
    fn native_sidecars_count() {
        let pods = vec![pod(
            "podinfo-ga-1",
            &["podinfo"],
            &[("istio-init", None), ("istio-proxy", Some("Always"))],
        )];
        check_pods(&pods, "x").unwrap();
    }

    #[test]
    fn no_pods_is_an_error() {
        assert!(check_pods(&[], "Deployment test/x").is_err());
    }

    #[test]
    fn the_namespace_label_is_checked() {
        let ok: Namespace = serde_json::from_value(
            json!({"metadata": {"name": "test", "labels": {"istio-injection": "enabled"}}}),
        )
        .unwrap();
        check_namespace(&ok).unwrap();
        let off: Namespace = serde_json::from_value(
            json!({"metadata": {"name": "test", "labels": {"istio-injection": "disabled"}}}),
        )
        .unwrap();
        let text = check_namespace(&off).unwrap_err().to_string();
        assert!(text.contains("istio-injection=disabled"), "{text}");
    }
}
