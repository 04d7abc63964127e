//! Bounded, named waits and the readiness checks they poll.
//!
//! kube's `await_condition` has no timeout and returns nothing about the object while it
//! waits, so a wait that gives up could not say what it saw. These waits poll instead: each
//! check returns what it saw, the last of which goes into the error when the bound passes, and
//! every wait is written to the [`WaitLog`] that diagnostics print.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

use crate::ca;

/// The outcome of one look at the cluster.
#[derive(Debug)]
pub enum Check<T> {
    /// Done, with what the wait was for.
    Ready(T),
    /// Not yet; says what was seen.
    Pending(String),
    /// Will not get better by waiting: ends the wait at once.
    Failed(anyhow::Error),
}

/// How long a wait may take and how often it looks.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub timeout: Duration,
    pub interval: Duration,
}

impl Bounds {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            interval: Duration::from_secs(1),
        }
    }
}

/// What the harness waited for, in order, with the outcome: printed by diagnostics so that a
/// failure report says what was pending.
#[derive(Debug, Clone, Default)]
pub struct WaitLog(Arc<Mutex<Vec<String>>>);

impl WaitLog {
    pub fn note(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::debug!("{line}");
        self.0.lock().expect("wait log").push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("wait log").clone()
    }
}

/// Polls `check` until it is ready, fails, or `bounds.timeout` passes. Errors of `check`
/// itself (an API call that failed) count as "not yet" and are reported if they are the last
/// thing seen; a single call that hangs is cut off at the deadline too.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    bounds: Bounds,
    log: &WaitLog,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<T>>>,
{
    let started = Instant::now();
    let deadline = started + bounds.timeout;
    log.note(format!("waiting (at most {:?}) for {what}", bounds.timeout));
    let mut last = "nothing yet".to_string();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left.max(Duration::from_millis(1)), check()).await {
            Ok(Ok(Check::Ready(value))) => {
                log.note(format!(
                    "done after {:.1} s: {what}",
                    started.elapsed().as_secs_f64()
                ));
                return Ok(value);
            }
            Ok(Ok(Check::Pending(seen))) => {
                if seen != last {
                    tracing::info!("{what}: {seen}");
                }
                last = seen;
            }
            Ok(Ok(Check::Failed(e))) => {
                log.note(format!("FAILED: {what}: {e:#}"));
                return Err(e.context(format!("while waiting for {what}")));
            }
            Ok(Err(e)) => last = format!("the last look failed: {e:#}"),
            Err(_) => last = format!("the last look did not answer in time ({last})"),
        }
        if Instant::now() >= deadline {
            log.note(format!(
                "GAVE UP after {:?}: {what}; last seen: {last}",
                bounds.timeout
            ));
            bail!(
                "gave up waiting for {what} after {:?}; last seen: {last}",
                bounds.timeout
            );
        }
        tokio::time::sleep(
            bounds
                .interval
                .min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

/// The conditions of a status as `type=status (reason)`, read through JSON so the code does not
/// depend on which Kubernetes version k8s-openapi was built for (the field types differ).
pub fn conditions(status: &serde_json::Value) -> Vec<(String, String, String)> {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("type"), s("status"), s("reason"))
        })
        .collect()
}

fn describe_conditions(conds: &[(String, String, String)]) -> String {
    if conds.is_empty() {
        return "no conditions".into();
    }
    conds
        .iter()
        .map(|(t, s, r)| {
            if r.is_empty() {
                format!("{t}={s}")
            } else {
                format!("{t}={s} ({r})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a Deployment has rolled out its current spec: the controller has seen this
/// generation (`observedGeneration`), every replica runs the new template and is available,
/// and no old replica remains. `Progressing=False (ProgressDeadlineExceeded)` fails at once.
pub fn deployment_rolled_out(deployment: &Deployment) -> Check<()> {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let want = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else {
        return Check::Pending(format!("generation {generation}, no status yet"));
    };
    let observed = status.observed_generation.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let json = serde_json::to_value(status).unwrap_or_default();
    let conds = conditions(&json);
    let seen = format!(
        "generation {generation}, observedGeneration {observed}, {updated}/{want} updated, {available}/{want} available, {replicas} in total; {}",
        describe_conditions(&conds)
    );
    if conds
        .iter()
        .any(|(t, s, r)| t == "Progressing" && s == "False" && r == "ProgressDeadlineExceeded")
    {
        return Check::Failed(anyhow::anyhow!(
            "the rollout exceeded its progress deadline: {seen}"
        ));
    }
    if observed >= generation && updated == want && available >= want && replicas == want {
        Check::Ready(())
    } else {
        Check::Pending(seen)
    }
}

/// Every container of the pod, init containers included (Istio's native sidecars are init
/// containers with `restartPolicy: Always`).
pub fn container_names(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let spec = pod.spec.as_ref();
    let names = |cs: Option<Vec<String>>| cs.unwrap_or_default();
    (
        names(spec.map(|s| s.containers.iter().map(|c| c.name.clone()).collect())),
        names(spec.and_then(|s| {
            s.init_containers
                .as_ref()
                .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
        })),
    )
}

/// Whether a pod is running with every container (and every native sidecar) ready.
pub fn pod_ready(pod: &Pod) -> Check<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(status) = pod.status.as_ref() else {
        return Check::Pending(format!("pod {name} has no status yet"));
    };
    let phase = status.phase.clone().unwrap_or_default();
    if phase == "Failed" || phase == "Succeeded" {
        return Check::Failed(anyhow::anyhow!("pod {name} ended with phase {phase}"));
    }
    let mut not_ready = Vec::new();
    for cs in status.container_statuses.iter().flatten() {
        if !cs.ready {
            let why = serde_json::to_value(&cs.state).unwrap_or_default();
            let reason = why["waiting"]["reason"]
                .as_str()
                .or(why["terminated"]["reason"].as_str())
                .unwrap_or("not ready");
            not_ready.push(format!(
                "{} ({reason}, {} restarts)",
                cs.name, cs.restart_count
            ));
        }
    }
    let json = serde_json::to_value(status).unwrap_or_default();
    let ready_cond = conditions(&json)
        .into_iter()
        .any(|(t, s, _)| t == "Ready" && s == "True");
    if phase == "Running" && ready_cond && not_ready.is_empty() {
        Check::Ready(())
    } else {
        Check::Pending(format!(
            "pod {name} is {phase}{}",
            if not_ready.is_empty() {
                String::new()
            } else {
                format!("; not ready: {}", not_ready.join(", "))
            }
        ))
    }
}

/// Whether the sidecar injector's webhook carries the CA bundle istiod patches in.
///
/// An empty caBundle means istiod has not patched it yet: keep waiting. When the harness
/// plugged in its own CA (`expected_root`), the bundle must hold that root; a different one
/// will not change by waiting and fails at once, naming both fingerprints.
pub fn webhook_ca_bundle(
    webhook: &MutatingWebhookConfiguration,
    expected_root: Option<&str>,
) -> Check<()> {
    let name = webhook.metadata.name.clone().unwrap_or_default();
    let hooks = webhook.webhooks.clone().unwrap_or_default();
    if hooks.is_empty() {
        return Check::Pending(format!(
            "MutatingWebhookConfiguration {name} has no webhooks"
        ));
    }
    let expected = match expected_root.map(ca::certificates).transpose() {
        Ok(e) => e,
        Err(e) => return Check::Failed(e.context("reading the plugged-in root certificate")),
    };
    for hook in &hooks {
        let bundle = hook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        if bundle.is_empty() {
            return Check::Pending(format!(
                "webhook `{}` of {name} has no caBundle yet (istiod patches it in once it runs)",
                hook.name
            ));
        }
        let Some(expected) = &expected else { continue };
        let text = String::from_utf8_lossy(&bundle);
        let have = match ca::certificates(&text) {
            Ok(h) => h,
            Err(e) => {
                return Check::Failed(anyhow::anyhow!(
                    "the caBundle of webhook `{}` of {name} is not PEM: {e:#}",
                    hook.name
                ));
            }
        };
        if !have.iter().any(|c| c == &expected[0]) {
            let have: Vec<String> = have.iter().map(|c| ca::fingerprint_der(c)).collect();
            return Check::Failed(anyhow::anyhow!(
                "the caBundle of webhook `{}` of {name} holds {} but the plugged-in root is {}: istiod does not use the harness's CA (was the `cacerts` secret in place before istiod started?)",
                hook.name,
                have.join(", "),
                ca::fingerprint_der(&expected[0])
            ));
        }
    }
    Check::Ready(())
}

/// Whether every node reports `Ready=True` (kind's `--wait` does not guarantee it).
pub fn nodes_ready(nodes: &[k8s_openapi::api::core::v1::Node]) -> Check<()> {
    if nodes.is_empty() {
        return Check::Pending("no nodes registered yet".into());
    }
    let mut seen = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = serde_json::to_value(&node.status).unwrap_or_default();
        let conds = conditions(&status);
        if !conds.iter().any(|(t, s, _)| t == "Ready" && s == "True") {
            seen.push(format!("node {name}: {}", describe_conditions(&conds)));
        }
    }
    if seen.is_empty() {
        Check::Ready(())
    } else {
        Check::Pending(seen.join("; "))
    }
}

/// The label istioctl puts in both selectors of a webhook it switches off.
pub const DEACTIVATED_LABEL: (&str, &str) = ("istio.io/deactivated", "never-match");

/// Whether a webhook of a configuration has been switched off (istioctl's never-match
/// selectors, as it writes them when a revision tag takes over).
pub fn never_matches(hook: &k8s_openapi::api::admissionregistration::v1::MutatingWebhook) -> bool {
    let deactivated =
        |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            s.as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .and_then(|l| l.get(DEACTIVATED_LABEL.0))
                .is_some_and(|v| v == DEACTIVATED_LABEL.1)
        };
    deactivated(&hook.namespace_selector) || deactivated(&hook.object_selector)
}

/// Whether every active sidecar-injector webhook of the configurations (those of one
/// revision) has a caBundle, holding `expected_root` when given. Configurations whose webhooks
/// all never match are not the ones that inject, and are skipped.
pub fn injector_ca_bundles(
    configs: &[MutatingWebhookConfiguration],
    expected_root: Option<&str>,
) -> Check<()> {
    let mut active = Vec::new();
    let mut skipped = Vec::new();
    for config in configs {
        let name = config.metadata.name.clone().unwrap_or_default();
        let hooks: Vec<_> = config
            .webhooks
            .iter()
            .flatten()
            .filter(|h| h.name.ends_with("sidecar-injector.istio.io") && !never_matches(h))
            .cloned()
            .collect();
        if hooks.is_empty() {
            skipped.push(name);
            continue;
        }
        let mut only_active = config.clone();
        only_active.webhooks = Some(hooks);
        active.push(only_active);
    }
    if active.is_empty() {
        return Check::Pending(if configs.is_empty() {
            "no MutatingWebhookConfiguration of the revision yet".into()
        } else {
            format!(
                "no active sidecar-injector webhook yet (switched off: {})",
                skipped.join(", ")
            )
        });
    }
    for config in &active {
        match webhook_ca_bundle(config, expected_root) {
            Check::Ready(()) => {}
            other => return other,
        }
    }
    Check::Ready(())
}

/// The name of a ready pod that is not being deleted, the first by name (so that every look
/// picks the same one while it stays ready).
pub fn live_ready_pod(pods: &[Pod]) -> Option<String> {
    let mut ready: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| matches!(pod_ready(p), Check::Ready(())))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    ready.sort();
    ready.into_iter().next()
}

/// A ready pod that is not being deleted and runs `istio-proxy` (the mesh client).
pub fn pod_ready_with_proxy(pod: &Pod) -> Check<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return Check::Failed(anyhow::anyhow!("pod {name} is being deleted"));
    }
    match pod_ready(pod) {
        Check::Ready(()) if super::injection::has_proxy(pod) => Check::Ready(()),
        Check::Ready(()) => {
            let (containers, init) = container_names(pod);
            Check::Failed(anyhow::anyhow!(
                "pod {name} runs without an istio-proxy container (containers [{}], init containers [{}]): its namespace does not get sidecars injected",
                containers.join(", "),
                init.join(", ")
            ))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "podinfo-ga", "namespace": "test", "generation": generation},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "podinfo"}},
                     "template": {"metadata": {"labels": {"app": "podinfo"}}, "spec": {"containers": [{"name": "podinfo", "image": "x"}]}}},
            "status": status
        }))
        .unwrap()
    }

    #[rstest]
    #[case::rolled_out(2, json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}), "ready")]
    #[case::old_generation(3, json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}), "observedGeneration 2")]
    #[case::not_available(2, json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}), "1/2 available")]
    #[case::old_replica_left(2, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}), "3 in total")]
    #[case::deadline(2, json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}), "failed")]
    #[case::no_status(1, serde_json::Value::Null, "no status")]
    fn deployment_rollouts(
        #[case] generation: i64,
        #[case] status: serde_json::Value,
        #[case] want: &str,
    ) {
        match (deployment_rolled_out(&deployment(generation, status)), want) {
            (Check::Ready(()), "ready") => {}
            (Check::Failed(e), "failed") => {
                assert!(e.to_string().contains("progress deadline"), "{e}")
            }
            (Check::Pending(seen), w) => assert!(seen.contains(w), "{seen}"),
            (other, w) => panic!("want {w}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_wait_that_gives_up_names_what_and_the_last_thing_seen() {
        let log = WaitLog::default();
        let bounds = Bounds {
            timeout: Duration::from_millis(60),
            interval: Duration::from_millis(5),
        };
        let mut n = 0;
        let err = wait_for::<(), _, _>("Deployment test/podinfo-ga", bounds, &log, || {
            n += 1;
            let seen = format!("look {n}");
            async move { Ok(Check::Pending(seen)) }
        })
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Deployment test/podinfo-ga"), "{text}");
        assert!(text.contains(&format!("look {n}")), "{text}");
        assert!(log.lines().iter().any(|l| l.starts_with("GAVE UP")));
    }

    /// A MutatingWebhookConfiguration of revision `default` with one webhook per
    /// `(name, caBundle, never-match)`; an active hook selects `istio-injection=enabled`.
    fn config(name: &str, hooks: &[(&str, &str, bool)]) -> MutatingWebhookConfiguration {
        use base64::Engine;
        let never = json!({"matchLabels": {"istio.io/deactivated": "never-match"}});
        let hooks: Vec<serde_json::Value> = hooks
            .iter()
            .map(|(hook, bundle, off)| {
                let mut client = json!({"service": {"name": "istiod", "namespace": "istio-system", "path": "/inject"}});
                if !bundle.is_empty() {
                    client["caBundle"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(bundle));
                }
                let mut h = json!({"name": hook, "sideEffects": "None",
                                   "admissionReviewVersions": ["v1"], "clientConfig": client});
                if *off {
                    // istioctl writes the never-match selector into both selectors.
                    h["namespaceSelector"] = never.clone();
                    h["objectSelector"] = never.clone();
                } else {
                    h["namespaceSelector"] = json!({"matchLabels": {"istio-injection": "enabled"}});
                }
                h
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app": "sidecar-injector", "istio.io/rev": "default"}},
            "webhooks": hooks
        }))
        .unwrap()
    }

    fn hook(
        selectors: serde_json::Value,
    ) -> k8s_openapi::api::admissionregistration::v1::MutatingWebhook {
        let mut h = json!({"name": "rev.namespace.sidecar-injector.istio.io", "sideEffects": "None",
                           "admissionReviewVersions": ["v1"], "clientConfig": {}});
        for (k, v) in selectors.as_object().unwrap() {
            h[k] = v.clone();
        }
        serde_json::from_value(h).unwrap()
    }

    #[rstest]
    #[case::both_selectors(json!({
        "namespaceSelector": {"matchLabels": {"istio.io/deactivated": "never-match"}},
        "objectSelector": {"matchLabels": {"istio.io/deactivated": "never-match"}}}), true)]
    #[case::namespace_selector_only(json!({
        "namespaceSelector": {"matchLabels": {"istio.io/deactivated": "never-match"}}}), true)]
    #[case::object_selector_only(json!({
        "objectSelector": {"matchLabels": {"istio.io/deactivated": "never-match"}}}), true)]
    #[case::among_other_labels(json!({
        "namespaceSelector": {"matchLabels": {"istio.io/deactivated": "never-match", "x": "y"}}}), true)]
    #[case::injection_label(json!({
        "namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}}}), false)]
    #[case::revision_label(json!({
        "namespaceSelector": {"matchLabels": {"istio.io/rev": "1-31"}},
        "objectSelector": {"matchLabels": {"sidecar.istio.io/inject": "true"}}}), false)]
    #[case::other_value(json!({
        "namespaceSelector": {"matchLabels": {"istio.io/deactivated": "no"}}}), false)]
    #[case::no_selectors(json!({}), false)]
    fn never_match_is_istioctls_deactivated_label(
        #[case] selectors: serde_json::Value,
        #[case] want: bool,
    ) {
        assert_eq!(never_matches(&hook(selectors)), want);
    }

    /// The webhooks of istioctl's default revision after it made the default tag: the old
    /// `istio-sidecar-injector` switched off, `istio-revision-tag-default` doing the injection.
    const OFF: &str = "istio-sidecar-injector";
    const TAG: &str = "istio-revision-tag-default";
    const OFF_HOOKS: [&str; 4] = [
        "rev.namespace.sidecar-injector.istio.io",
        "rev.object.sidecar-injector.istio.io",
        "namespace.sidecar-injector.istio.io",
        "object.sidecar-injector.istio.io",
    ];

    fn switched_off(bundle: &str) -> MutatingWebhookConfiguration {
        let hooks: Vec<(&str, &str, bool)> = OFF_HOOKS.iter().map(|h| (*h, bundle, true)).collect();
        config(OFF, &hooks)
    }

    fn tag(bundle: &str) -> MutatingWebhookConfiguration {
        config(
            TAG,
            &[
                ("namespace.sidecar-injector.istio.io", bundle, false),
                ("object.sidecar-injector.istio.io", bundle, false),
            ],
        )
    }

    /// Which bundle each configuration carries: the mesh's root, another root, or none.
    #[derive(Debug, Clone, Copy)]
    enum Bundle {
        Ours,
        Other,
        Empty,
    }

    #[rstest]
    #[case::off_hook_empty(Bundle::Empty, Bundle::Ours, true, "ready")]
    #[case::off_hook_other_root(Bundle::Other, Bundle::Ours, true, "ready")]
    #[case::off_hook_empty_no_root_to_check(Bundle::Empty, Bundle::Other, false, "ready")]
    #[case::active_hook_empty(Bundle::Ours, Bundle::Empty, true, "pending")]
    #[case::active_hook_empty_no_root_to_check(Bundle::Ours, Bundle::Empty, false, "pending")]
    #[case::active_hook_other_root(Bundle::Ours, Bundle::Other, true, "failed")]
    fn only_the_active_injector_webhooks_are_checked(
        #[case] off: Bundle,
        #[case] active: Bundle,
        #[case] check_root: bool,
        #[case] want: &str,
    ) {
        let ours = ca::CaBundle::generate().unwrap();
        let other = ca::CaBundle::generate().unwrap();
        let pem = |b: Bundle| match b {
            Bundle::Ours => ours.root_cert_pem.clone(),
            Bundle::Other => other.root_cert_pem.clone(),
            Bundle::Empty => String::new(),
        };
        let configs = [switched_off(&pem(off)), tag(&pem(active))];
        let expected = check_root.then_some(ours.root_cert_pem.as_str());
        match (injector_ca_bundles(&configs, expected), want) {
            (Check::Ready(()), "ready") => {}
            (Check::Pending(seen), "pending") => {
                assert!(seen.contains(TAG), "{seen}");
                assert!(seen.contains("no caBundle"), "{seen}");
                assert!(!seen.contains(&format!("{OFF} ")), "{seen}");
            }
            (Check::Failed(e), "failed") => {
                let text = format!("{e:#}");
                assert!(text.contains(TAG), "{text}");
                assert!(text.contains(&ours.root_fingerprint()), "{text}");
                assert!(
                    text.contains(&ca::fingerprint(&other.root_cert_pem).unwrap()),
                    "{text}"
                );
            }
            (other, w) => panic!("want {w}, got {other:?}"),
        }
        // The same configurations with the switched-off one's hooks active: its bundle counts.
        if matches!(off, Bundle::Empty) && want == "ready" {
            let hooks: Vec<(&str, &str, bool)> =
                OFF_HOOKS.iter().map(|h| (*h, "", false)).collect();
            let configs = [config(OFF, &hooks), tag(&pem(active))];
            match injector_ca_bundles(&configs, expected) {
                Check::Pending(seen) => assert!(seen.contains(OFF), "{seen}"),
                other => panic!(
                    "an active hook without a caBundle must keep the wait pending, got {other:?}"
                ),
            }
        }
    }

    #[test]
    fn only_switched_off_webhooks_is_not_yet_an_injector() {
        let root = ca::CaBundle::generate().unwrap().root_cert_pem;
        match injector_ca_bundles(&[switched_off(&root)], Some(&root)) {
            Check::Pending(seen) => {
                assert!(
                    seen.contains("no active sidecar-injector webhook"),
                    "{seen}"
                );
                assert!(seen.contains(OFF), "{seen}");
            }
            other => panic!("want pending, got {other:?}"),
        }
        match injector_ca_bundles(&[], Some(&root)) {
            Check::Pending(seen) => {
                assert!(seen.contains("no MutatingWebhookConfiguration"), "{seen}")
            }
            other => panic!("want pending, got {other:?}"),
        }
    }

    #[test]
    fn webhooks_that_are_not_the_injectors_are_not_checked() {
        let root = ca::CaBundle::generate().unwrap().root_cert_pem;
        // A webhook of another name in a configuration of the revision, without a caBundle.
        let mut configs = vec![tag(&root)];
        configs.push(config(
            "istio-extra",
            &[("validation.example.com", "", false)],
        ));
        assert!(matches!(
            injector_ca_bundles(&configs, Some(&root)),
            Check::Ready(())
        ));
        let mut mixed = tag(&root);
        mixed.webhooks.as_mut().unwrap().extend(
            config("x", &[("other.example.com", "", false)])
                .webhooks
                .unwrap(),
        );
        assert!(matches!(
            injector_ca_bundles(&[mixed], Some(&root)),
            Check::Ready(())
        ));
    }

    /// A pod of the tutorial's workload as the kubelet reports it: `ready` sets the Ready
    /// condition and every container's readiness, `deleting` sets `deletionTimestamp` (a pod in
    /// its grace period still runs and may still be Ready), `proxy` adds the native sidecar.
    fn pod(name: &str, ready: bool, deleting: bool, proxy: bool) -> Pod {
        let mut init = Vec::new();
        let mut init_status = Vec::new();
        if proxy {
            init.push(
                json!({"name": "istio-proxy", "image": "istio/proxyv2", "restartPolicy": "Always"}),
            );
            init_status.push(json!({"name": "istio-proxy", "ready": ready, "restartCount": 0, "image": "x", "imageID": "",
                                    "state": {"running": {"startedAt": "2026-12-02T10:00:00Z"}}}));
        }
        let state = if ready {
            json!({"running": {"startedAt": "2026-12-02T10:00:00Z"}})
        } else {
            json!({"waiting": {"reason": "ContainersNotReady"}})
        };
        let mut metadata = json!({"name": name, "namespace": "test", "labels": {"app": "podinfo"}});
        if deleting {
            metadata["deletionTimestamp"] = json!("2026-12-02T10:05:00Z");
            metadata["deletionGracePeriodSeconds"] = json!(30);
        }
        serde_json::from_value(json!({
            "metadata": metadata,
            "spec": {"containers": [{"name": "client", "image": "curl"}], "initContainers": init},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                       "containerStatuses": [{"name": "client", "ready": ready, "restartCount": 0, "image": "x",
                                              "imageID": "", "state": state}],
                       "initContainerStatuses": init_status}
        }))
        .unwrap()
    }

    /// (name, ready, being deleted) of each pod, and the pod the certificate check should read.
    #[rstest]
    #[case::terminating_first_by_name_is_skipped(&[("podinfo-a", true, true), ("podinfo-b", true, false)], Some("podinfo-b"))]
    #[case::not_ready_first_by_name_is_skipped(&[("podinfo-a", false, false), ("podinfo-b", true, false)], Some("podinfo-b"))]
    #[case::first_by_name_whatever_the_list_order(&[("podinfo-c", true, false), ("podinfo-b", true, false)], Some("podinfo-b"))]
    #[case::only_terminating(&[("podinfo-a", true, true)], None)]
    #[case::only_not_ready(&[("podinfo-a", false, false)], None)]
    #[case::terminating_and_not_ready(&[("podinfo-a", true, true), ("podinfo-b", false, false)], None)]
    #[case::none(&[], None)]
    fn the_certificate_check_reads_a_ready_pod_not_being_deleted(
        #[case] pods: &[(&str, bool, bool)],
        #[case] want: Option<&str>,
    ) {
        let pods: Vec<Pod> = pods
            .iter()
            .map(|(name, ready, deleting)| pod(name, *ready, *deleting, true))
            .collect();
        assert_eq!(live_ready_pod(&pods).as_deref(), want);
    }

    #[rstest]
    #[case::ready_with_proxy(true, false, true, "ready")]
    #[case::terminating_but_ready(
        true,
        true,
        true,
        "failed: pod canary-mesh-client-ab12cd is being deleted"
    )]
    #[case::terminating_and_not_ready(
        false,
        true,
        true,
        "failed: pod canary-mesh-client-ab12cd is being deleted"
    )]
    #[case::not_ready(
        false,
        false,
        true,
        "pending: pod canary-mesh-client-ab12cd is Running; not ready: client (ContainersNotReady"
    )]
    #[case::ready_without_proxy(
        true,
        false,
        false,
        "failed: runs without an istio-proxy container"
    )]
    fn the_client_pod_must_be_ready_with_a_proxy_and_not_being_deleted(
        #[case] ready: bool,
        #[case] deleting: bool,
        #[case] proxy: bool,
        #[case] want: &str,
    ) {
        let pod = pod("canary-mesh-client-ab12cd", ready, deleting, proxy);
        match pod_ready_with_proxy(&pod) {
            Check::Ready(()) => assert_eq!(want, "ready"),
            Check::Pending(seen) => {
                let w = want
                    .strip_prefix("pending: ")
                    .unwrap_or_else(|| panic!("want {want}, pending: {seen}"));
                assert!(seen.contains(w), "{seen}");
            }
            Check::Failed(e) => {
                let w = want
                    .strip_prefix("failed: ")
                    .unwrap_or_else(|| panic!("want {want}, failed: {e:#}"));
                assert!(format!("{e:#}").contains(w), "{e:#}");
            }
        }
    }
}
