//! The per-stage wait for the weights, against scripted config_dumps instead of exec (a
//! websocket upgrade that a mocked API server cannot complete).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rstest::rstest;
use serde_json::{Value, json};

use super::exec_target::CLIENT_POD;
use super::gateway::ISTIO_NAMESPACE;
use super::*;

pub(super) const GATEWAY_POD: &str = "istio-ingressgateway-7c9d8b6f4-x2k4p";

/// Config_dumps from a script per pod: each look takes the next answer, the last one repeats.
/// An `Err` stands for a failed exec.
#[derive(Default)]
pub(super) struct ScriptedDumps {
    scripts: BTreeMap<String, Vec<Result<Value, String>>>,
    looks: Mutex<BTreeMap<String, usize>>,
}

impl ScriptedDumps {
    pub(super) fn with(mut self, pod: &str, script: Vec<Result<Value, String>>) -> Self {
        self.scripts.insert(pod.to_string(), script);
        self
    }

    /// How often the config_dump of `pod` was read.
    pub(super) fn looks(&self, pod: &str) -> usize {
        self.looks.lock().unwrap().get(pod).copied().unwrap_or(0)
    }
}

#[async_trait]
impl ConfigDumps for ScriptedDumps {
    async fn dump(&self, proxy: &ProxyRef) -> anyhow::Result<Value> {
        let script = &self.scripts[&proxy.pod];
        let mut looks = self.looks.lock().unwrap();
        let n = looks.entry(proxy.pod.clone()).or_insert(0);
        let answer = script[(*n).min(script.len() - 1)].clone();
        *n += 1;
        answer.map_err(anyhow::Error::msg)
    }
}

/// A route action as istiod renders it: weight-0 destinations dropped, a single remaining
/// destination as a plain `cluster`.
fn route_action(weights: &[(&str, u32)]) -> Value {
    let cluster = |subset: &str| format!("outbound|9898|{subset}|podinfo.test.svc.cluster.local");
    let kept: Vec<&(&str, u32)> = weights.iter().filter(|(_, w)| *w > 0).collect();
    match kept.as_slice() {
        [(subset, _)] => json!({"cluster": cluster(subset), "timeout": "0s"}),
        _ => {
            json!({"weighted_clusters": {"clusters": kept.iter().map(|(s, w)| json!({"name": cluster(s), "weight": w})).collect::<Vec<_>>()},
                    "timeout": "0s"})
        }
    }
}

/// `pilot-agent request GET config_dump` of an Istio 1.31 ingress gateway: route
/// configuration `http.8080` (Gateway port 80 → container port 8080), virtual host
/// `podinfo.example.com:80`.
pub(super) fn gateway_dump(version: &str, weights: &[(&str, u32)]) -> Value {
    json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {"node": {"id": format!("router~10.244.0.7~{GATEWAY_POD}.istio-system~istio-system.svc.cluster.local")}}},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
         "static_route_configs": [{"route_config": {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}]}]}}],
         "dynamic_route_configs": [{
            "version_info": version,
            "route_config": {
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                "name": "http.8080",
                "virtual_hosts": [
                    {"name": "blackhole:8080", "domains": ["*"], "routes": [{"name": "default", "match": {"prefix": "/"}, "direct_response": {"status": 404}}]},
                    {"name": "podinfo.example.com:80", "domains": ["podinfo.example.com", "podinfo.example.com:*"],
                     "routes": [{"match": {"prefix": "/"}, "route": route_action(weights), "name": "canary-split",
                                 "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/test/virtual-service/podinfo"}}},
                                 "decorator": {"operation": "podinfo.test.svc.cluster.local:9898/*"}}],
                     "include_request_attempt_count": true}
                ],
                "validate_clusters": false, "ignore_port_in_host_matching": true
            },
            "last_updated": "2026-11-27T10:00:05.120Z"
         }]}
    ]})
}

/// The config_dump of the client pod's sidecar (Istio 1.30): outbound route configuration
/// `9898`, the service's names among the domains.
pub(super) fn sidecar_dump(version: &str, weights: &[(&str, u32)]) -> Value {
    json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": [
            {"version_info": version,
             "route_config": {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "9898",
                "virtual_hosts": [
                    {"name": "podinfo.test.svc.cluster.local:9898",
                     "domains": ["podinfo.test.svc.cluster.local", "podinfo", "podinfo.test.svc", "podinfo.test", "10.96.12.34"],
                     "routes": [{"name": "canary-split", "match": {"prefix": "/"}, "route": route_action(weights)}]},
                    {"name": "allow_any", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]}
                ], "validate_clusters": false}},
            {"version_info": version,
             "route_config": {"name": "15010", "virtual_hosts": [{"name": "istiod.istio-system.svc.cluster.local:15010", "domains": ["istiod.istio-system.svc.cluster.local"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "outbound|15010||istiod.istio-system.svc.cluster.local"}}]}]}}
        ]}
    ]})
}

/// A sidecar that has not received the route configuration of port 9898 yet.
fn sidecar_without_route() -> Value {
    json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": []}]})
}

/// The gateway and the mesh client, as `IstioMesh::start` records them for the tutorial.
pub(super) fn views() -> Vec<ProxyView> {
    vec![
        ProxyView {
            entry: EntryPoint::Ingress,
            proxy: ProxyRef {
                label: "gateway".into(),
                namespace: ISTIO_NAMESPACE.into(),
                pod: GATEWAY_POD.into(),
            },
            route_config: gateway::route_config_name(8080),
            domain: "podinfo.example.com".into(),
            split: Some("canary-split".into()),
        },
        ProxyView {
            entry: EntryPoint::Mesh,
            proxy: ProxyRef {
                label: "mesh-client".into(),
                namespace: "test".into(),
                pod: CLIENT_POD.into(),
            },
            route_config: "9898".into(),
            domain: "podinfo.test.svc.cluster.local".into(),
            split: Some("canary-split".into()),
        },
    ]
}

fn weights(w: &[(&str, u32)]) -> Weights {
    w.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn quick() -> Bounds {
    Bounds {
        timeout: Duration::from_millis(300),
        interval: Duration::from_millis(10),
    }
}

const OLD: &str = "2026-11-27T10:00:01Z/13";
const NEW: &str = "2026-11-27T10:00:05Z/14";

/// The wait ends once both proxies route with the stage's weights, and not before: `looks` is
/// how often each proxy was read.
#[rstest]
#[case::both_have_the_split(
    &[("ga", 90), ("canary", 10)],
    vec![Ok(gateway_dump(NEW, &[("ga", 90), ("canary", 10)]))],
    vec![Ok(sidecar_dump(NEW, &[("ga", 90), ("canary", 10)]))],
    1
)]
#[case::a_100_0_stage_shows_one_cluster(
    &[("ga", 100), ("canary", 0)],
    vec![Ok(gateway_dump(NEW, &[("ga", 100)]))],
    vec![Ok(sidecar_dump(NEW, &[("ga", 100)]))],
    1
)]
#[case::a_0_100_stage_shows_one_cluster(
    &[("ga", 0), ("canary", 100)],
    vec![Ok(gateway_dump(NEW, &[("canary", 100)]))],
    vec![Ok(sidecar_dump(NEW, &[("canary", 100)]))],
    1
)]
#[case::the_sidecar_lags_two_looks(
    &[("ga", 40), ("canary", 60)],
    vec![Ok(gateway_dump(NEW, &[("ga", 40), ("canary", 60)]))],
    vec![
        Ok(sidecar_dump(OLD, &[("ga", 90), ("canary", 10)])),
        Ok(sidecar_dump(OLD, &[("ga", 90), ("canary", 10)])),
        Ok(sidecar_dump(NEW, &[("ga", 40), ("canary", 60)])),
    ],
    3
)]
#[case::the_sidecar_has_no_route_yet(
    &[("ga", 90), ("canary", 10)],
    vec![Ok(gateway_dump(NEW, &[("ga", 90), ("canary", 10)]))],
    vec![Ok(sidecar_without_route()), Ok(sidecar_dump(NEW, &[("ga", 90), ("canary", 10)]))],
    2
)]
#[case::a_failed_exec_is_retried(
    &[("ga", 90), ("canary", 10)],
    vec![
        Err("exec `pilot-agent request GET config_dump`: connection reset".into()),
        Ok(gateway_dump(NEW, &[("ga", 90), ("canary", 10)])),
    ],
    vec![Ok(sidecar_dump(NEW, &[("ga", 90), ("canary", 10)]))],
    2
)]
#[tokio::test]
async fn the_wait_ends_when_every_proxy_routes_with_the_weights(
    #[case] want: &[(&str, u32)],
    #[case] gateway: Vec<Result<Value, String>>,
    #[case] sidecar: Vec<Result<Value, String>>,
    #[case] looks: usize,
) {
    let dumps = ScriptedDumps::default()
        .with(GATEWAY_POD, gateway)
        .with(CLIENT_POD, sidecar);
    let log = WaitLog::default();
    await_proxy_weights(&dumps, &views(), &weights(want), quick(), &log)
        .await
        .unwrap();
    assert_eq!(dumps.looks(GATEWAY_POD), looks);
    assert_eq!(dumps.looks(CLIENT_POD), looks);
    assert!(log.lines().last().unwrap().starts_with("done after"));
}

/// Giving up names each proxy and what it last reported (or why it could not be read).
#[rstest]
#[case::the_sidecar_keeps_the_old_weights(
    Ok(gateway_dump(NEW, &[("ga", 90), ("canary", 10)])),
    Ok(sidecar_dump(OLD, &[("ga", 100)])),
    &[
        "gateway istio-system/istio-ingressgateway-7c9d8b6f4-x2k4p: route config `http.8080` version `2026-11-27T10:00:05Z/14` routes canary=10, ga=90 (as wanted)",
        "mesh-client test/canary-mesh-client: route config `9898` version `2026-11-27T10:00:01Z/13` routes ga=100",
    ]
)]
#[case::the_gateway_routes_elsewhere_and_the_sidecar_has_no_route(
    Ok(gateway_dump(NEW, &[("ga", 40), ("canary", 60)])),
    Ok(sidecar_without_route()),
    &[
        "gateway istio-system/istio-ingressgateway-7c9d8b6f4-x2k4p: route config `http.8080` version `2026-11-27T10:00:05Z/14` routes canary=60, ga=40;",
        "mesh-client test/canary-mesh-client: no route configuration with the split yet",
    ]
)]
#[case::the_exec_keeps_failing(
    Err("exec `pilot-agent request GET config_dump` in pod istio-ingressgateway-7c9d8b6f4-x2k4p container istio-proxy: 403 Forbidden".into()),
    Ok(sidecar_dump(NEW, &[("ga", 90), ("canary", 10)])),
    &[
        "gateway istio-system/istio-ingressgateway-7c9d8b6f4-x2k4p: config_dump failed: exec `pilot-agent request GET config_dump` in pod istio-ingressgateway-7c9d8b6f4-x2k4p container istio-proxy: 403 Forbidden",
        "mesh-client test/canary-mesh-client: route config `9898` version `2026-11-27T10:00:05Z/14` routes canary=10, ga=90 (as wanted)",
    ]
)]
#[tokio::test]
async fn a_wait_that_gives_up_says_what_each_proxy_reported(
    #[case] gateway: Result<Value, String>,
    #[case] sidecar: Result<Value, String>,
    #[case] expected: &[&str],
) {
    let dumps = ScriptedDumps::default()
        .with(GATEWAY_POD, vec![gateway])
        .with(CLIENT_POD, vec![sidecar]);
    let log = WaitLog::default();
    let want = weights(&[("ga", 90), ("canary", 10)]);
    let err = await_proxy_weights(&dumps, &views(), &want, quick(), &log)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.starts_with("gave up waiting for the proxies (gateway istio-system/istio-ingressgateway-7c9d8b6f4-x2k4p route `http.8080`; mesh-client test/canary-mesh-client route `9898`) to route with {\"canary\": 10, \"ga\": 90} after 300ms; last seen: "), "{text}");
    for e in expected {
        assert!(text.contains(e), "missing {e:?} in\n{text}");
    }
    // It kept looking until the bound, at both proxies.
    assert!(dumps.looks(GATEWAY_POD) > 2, "{}", dumps.looks(GATEWAY_POD));
    assert!(dumps.looks(CLIENT_POD) > 2, "{}", dumps.looks(CLIENT_POD));
    assert!(log.lines().last().unwrap().starts_with("GAVE UP"));
}
