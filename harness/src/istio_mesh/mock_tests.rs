//! Request-level tests against a mocked API server (tower-test), in the manner of kube's own
//! `mock_tests.rs`: a task answers every request from a closure and records it, and the test
//! asserts on what the harness sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::await_weights_tests::{ScriptedDumps, gateway_dump};
use super::exec_target::CLIENT_POD;
use super::gateway::ISTIO_NAMESPACE;
use super::*;
use crate::manifests::Manifests;
use crate::scenario::Scenario;
use crate::scenario::Weights;

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    uri: String,
    content_type: String,
    body: Value,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

/// A client whose requests are answered by `respond` (status, JSON body; a JSON string goes out
/// as plain text, as pod logs do) and recorded.
fn mock_client<F>(respond: F) -> (Client, Log)
where
    F: Fn(&Recorded) -> (u16, Value) + Send + 'static,
{
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let rec = Recorded {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, answer) = respond(&rec);
            seen.lock().unwrap().push(rec);
            let body = match answer {
                Value::String(text) => text.into_bytes(),
                json => serde_json::to_vec(&json).unwrap(),
            };
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(body))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), log)
}

fn not_found() -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

fn resource_list(group_version: &str, resources: &[(&str, &str, bool)]) -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": resources.iter().map(|(name, kind, namespaced)| json!({
            "name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
            "verbs": ["get", "list", "patch", "create"]
        })).collect::<Vec<_>>()
    })
}

/// Discovery answers and applies that echo their body, like an API server would.
fn api_server(rec: &Recorded) -> (u16, Value) {
    let path = rec.uri.split('?').next().unwrap_or_default();
    match (rec.method.as_str(), path) {
        ("GET", "/api/v1") => (
            200,
            resource_list(
                "v1",
                &[
                    ("namespaces", "Namespace", false),
                    ("services", "Service", true),
                    ("pods", "Pod", true),
                ],
            ),
        ),
        ("GET", "/apis/apps/v1") => (
            200,
            resource_list("apps/v1", &[("deployments", "Deployment", true)]),
        ),
        ("GET", "/apis/networking.istio.io/v1") => (
            200,
            resource_list(
                "networking.istio.io/v1",
                &[
                    ("virtualservices", "VirtualService", true),
                    ("destinationrules", "DestinationRule", true),
                    ("gateways", "Gateway", true),
                ],
            ),
        ),
        ("GET", p) if p.starts_with("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/") => {
            (
                200,
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": p.rsplit('/').next().unwrap()},
                   "spec": {"group": "networking.istio.io", "names": {"plural": "x", "kind": "X"}, "scope": "Namespaced", "versions": []},
                   "status": {"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]}}),
            )
        }
        ("PATCH", _) => (200, rec.body.clone()),
        _ => not_found(),
    }
}

fn test_probe(max: u64, concurrency: usize) -> crate::prober::Probe {
    crate::prober::Probe {
        class: std::sync::Arc::new(crate::scenario::TrafficClass::default_class()),
        identify: None,
        concurrency,
        max_requests: max,
    }
}

/// An Istio mesh on a cluster the harness did not create (nothing of it is deleted but what the
/// run created), talking to the mock API through `client`.
fn mesh_on_a_cluster_of_the_user(
    name: &'static str,
    routing: &Routing,
    client: Client,
) -> IstioMesh {
    let mut mesh = IstioMesh::new(
        name,
        routing,
        Access {
            kubeconfig: PathBuf::from("/nonexistent/kubeconfig"),
            context: None,
        },
        None,
        Teardown::Existing {
            keep: false,
            uninstall: crate::invocation::Invocation::new("istioctl", Vec::new()),
        },
    );
    mesh.client = Some(client);
    mesh
}

fn tutorial_routing() -> Routing {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
    let scenario = Scenario::load(&path).unwrap();
    let manifests = Manifests::load_all(&scenario.manifests).unwrap();
    Routing::resolve(&scenario, manifests).unwrap()
}

#[tokio::test]
async fn a_stage_patches_the_virtual_service_weights() {
    let routing = tutorial_routing();
    let (client, log) = mock_client(api_server);
    let weights: Weights = [("ga".to_string(), 90), ("canary".to_string(), 10)].into();
    let staged = routing.staged(&weights, "2.2");
    apply::apply_virtual_service(&client, &staged.body)
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(r.method, "PATCH");
    assert!(
        r.uri
            .starts_with("/apis/networking.istio.io/v1/namespaces/test/virtualservices/podinfo?"),
        "{}",
        r.uri
    );
    assert!(r.uri.contains("fieldManager=canary-harness") && r.uri.contains("force=true"));
    assert_eq!(r.content_type, "application/apply-patch+yaml");
    let route = &r.body["spec"]["http"][0]["route"];
    assert_eq!(route[0]["destination"]["subset"], "ga");
    assert_eq!(route[0]["weight"], 90);
    assert_eq!(route[1]["destination"]["subset"], "canary");
    assert_eq!(route[1]["weight"], 10);
    assert_eq!(r.body["kind"], "VirtualService");
}

/// Exec is a websocket upgrade, which the mock cannot complete; the request it starts with is
/// what matters: the pod, the container and the command.
#[tokio::test]
async fn config_dump_execs_pilot_agent_in_the_istio_proxy_container() {
    let (client, log) = mock_client(|_| {
        (
            400,
            json!({"kind": "Status", "code": 400, "message": "upgrade required"}),
        )
    });
    let pods: Api<Pod> = Api::namespaced(client, "istio-system");
    let err = proxy::config_dump(&pods, "istio-ingressgateway-abc", Duration::from_secs(5)).await;
    assert!(err.is_err());
    let uri = log.lock().unwrap()[0].uri.clone();
    assert!(
        uri.starts_with("/api/v1/namespaces/istio-system/pods/istio-ingressgateway-abc/exec?"),
        "{uri}"
    );
    assert!(uri.contains("container=istio-proxy"), "{uri}");
    assert!(
        uri.contains("command=pilot-agent&command=request&command=GET&command=config_dump"),
        "{uri}"
    );
    assert!(
        uri.contains("stdout=true") && uri.contains("stderr=true") && !uri.contains("stdin=true"),
        "{uri}"
    );
}

#[tokio::test]
async fn the_port_forward_target_forwards_each_connection_to_the_gateway_pod() {
    let (client, log) = mock_client(|_| (400, json!({"kind": "Status", "code": 400})));
    let pods: Api<Pod> = Api::namespaced(client, "istio-system");
    let target = PortForwardTarget::start(
        pods,
        "istio-ingressgateway-abc",
        8080,
        "podinfo.example.com",
    )
    .await
    .unwrap();
    assert!(target.local_addr().ip().is_loopback());
    assert!(target.describe().contains("istio-ingressgateway-abc:8080"));
    // A connection makes the listener open a port-forward, which the mock refuses.
    let probe = test_probe(1, 1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    target
        .stream(&probe, &tokio_util::sync::CancellationToken::new(), &tx)
        .await
        .unwrap();
    drop(tx);
    let mut samples = Vec::new();
    while let Some(s) = rx.recv().await {
        samples.push(s);
    }
    assert_eq!(samples.len(), 1);
    assert!(!samples[0].is_ok());
    let uri = log.lock().unwrap()[0].uri.clone();
    assert_eq!(
        uri,
        "/api/v1/namespaces/istio-system/pods/istio-ingressgateway-abc/portforward?&ports=8080"
    );
    target.stop();
}

#[tokio::test]
async fn the_mesh_target_execs_a_curl_loop_in_the_client_container() {
    let (client, log) = mock_client(|_| (400, json!({"kind": "Status", "code": 400})));
    let pods: Api<Pod> = Api::namespaced(client, "test");
    let target = ExecCurlTarget::new(pods, CLIENT_POD, "http://podinfo.test:9898/");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = target
        .stream(
            &test_probe(10, 2),
            &tokio_util::sync::CancellationToken::new(),
            &tx,
        )
        .await;
    assert!(stream.is_err());
    let uri = log.lock().unwrap()[0].uri.clone();
    assert!(
        uri.starts_with("/api/v1/namespaces/test/pods/canary-mesh-client/exec?"),
        "{uri}"
    );
    assert!(uri.contains("container=client"), "{uri}");
    // One curl process, the URL as many times as requests.
    assert!(uri.contains("command=curl&command=-s"), "{uri}");
    assert_eq!(uri.matches("command=http").count(), 5, "{uri}");
}

/// A config_dump of a sidecar as Istio 1.30 renders it: route `9898`, the service's FQDN among
/// the domains (no port suffix), weight-0 destinations dropped; and its SDS secrets.
fn sidecar_dump(chain_pem: &str) -> Value {
    json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": [{
            "version_info": "2026-11-27T10:00:05Z/14",
            "route_config": {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "9898",
                "virtual_hosts": [
                    {"name": "podinfo.test.svc.cluster.local:9898",
                     "domains": ["podinfo.test.svc.cluster.local", "podinfo", "podinfo.test.svc", "podinfo.test", "10.96.12.34"],
                     "routes": [{"name": "canary-split", "match": {"prefix": "/"},
                                 "route": {"weighted_clusters": {"clusters": [{"name": "outbound|9898|ga|podinfo.test.svc.cluster.local", "weight": 100}]}}}]},
                    {"name": "allow_any", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]}
                ], "validate_clusters": false, "ignore_port_in_host_matching": true}
        }]},
        {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump", "dynamic_active_secrets": [
            {"name": "default", "version_info": "2026-11-27 10:00:01", "secret": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", "name": "default",
                "tls_certificate": {"certificate_chain": {"inline_bytes": base64::engine::general_purpose::STANDARD.encode(chain_pem)},
                                    "private_key": {"inline_bytes": "W3JlZGFjdGVkXQ=="}}}},
            {"name": "ROOTCA", "secret": {"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_bytes": ""}}}}
        ]}
    ]})
}

#[test]
fn a_sidecar_dump_yields_the_weights_and_the_workload_chain() {
    let dump = sidecar_dump("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n");
    let routing = tutorial_routing();
    let o =
        config_dump::observed_route(&dump, &routing.port.to_string(), &routing.host, None).unwrap();
    let weights: Weights = [("ga".to_string(), 100), ("canary".to_string(), 0)].into();
    assert!(config_dump::matches_weights(&o, &weights));
    let chain = proxy::workload_chain(&dump).unwrap();
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(proxy::workload_chain(&json!({"configs": []})).is_none());
}

const GA_POD: &str = "podinfo-ga-5f7d9c8b4-q8w2n";
const ISTIOD_POD: &str = "istiod-6d8f9b7c5-kq2zt";
const GATEWAY_POD: &str = super::await_weights_tests::GATEWAY_POD;

fn forbidden(what: &str) -> (u16, Value) {
    (
        403,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
               "message": format!("{what} is forbidden: User \"system:serviceaccount:ci:harness\" cannot get it")}),
    )
}

fn event(ns: &str, at: &str, type_: &str, object: &str, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": format!("{object}.18a1"), "namespace": ns},
           "involvedObject": {"kind": "Pod", "name": object, "namespace": ns},
           "type": type_, "reason": reason, "message": message, "lastTimestamp": at, "count": 1,
           "source": {"component": "kubelet"}})
}

/// A pod with native sidecars as Istio 1.30 injects them (init containers, `restartPolicy:
/// Always`) or plain containers.
fn pod(ns: &str, name: &str, init: &[&str], containers: &[&str]) -> Value {
    let specs = |names: &[&str]| {
        names
            .iter()
            .map(|n| json!({"name": n, "image": "x"}))
            .collect::<Vec<_>>()
    };
    let statuses = |names: &[&str]| {
        names
            .iter()
            .map(|n| {
                json!({"name": n, "ready": true, "restartCount": 0, "image": "x", "imageID": "",
        "state": {"running": {"startedAt": "2026-11-27T09:58:00Z"}}})
            })
            .collect::<Vec<_>>()
    };
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
           "spec": {"initContainers": specs(init), "containers": specs(containers)},
           "status": {"phase": "Running", "initContainerStatuses": statuses(init), "containerStatuses": statuses(containers)}})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "4711"}, "items": items})
}

/// The two namespaces of a run; every request whose URI contains `refuse` gets a 403.
fn cluster(refuse: &'static str) -> impl Fn(&Recorded) -> (u16, Value) {
    move |rec| {
        if !refuse.is_empty() && rec.uri.contains(refuse) {
            return forbidden(rec.uri.split('?').next().unwrap());
        }
        let path = rec.uri.split('?').next().unwrap_or_default();
        let query = rec.uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
        match path {
            "/api/v1/namespaces/test/events" => (
                200,
                list(
                    "EventList",
                    vec![
                        event(
                            "test",
                            "2026-11-27T10:02:00Z",
                            "Warning",
                            GA_POD,
                            "Unhealthy",
                            "Readiness probe failed: HTTP probe failed with statuscode: 503",
                        ),
                        event(
                            "test",
                            "2026-11-27T10:01:00Z",
                            "Normal",
                            GA_POD,
                            "Started",
                            "Started container podinfo",
                        ),
                    ],
                ),
            ),
            "/api/v1/namespaces/istio-system/events" => (200, list("EventList", vec![])),
            "/api/v1/namespaces/test/pods" => (
                200,
                list(
                    "PodList",
                    vec![pod(
                        "test",
                        GA_POD,
                        &["istio-init", "istio-proxy"],
                        &["podinfo"],
                    )],
                ),
            ),
            "/api/v1/namespaces/istio-system/pods" => (
                200,
                list(
                    "PodList",
                    vec![
                        pod("istio-system", ISTIOD_POD, &[], &["discovery"]),
                        pod("istio-system", GATEWAY_POD, &[], &["istio-proxy"]),
                    ],
                ),
            ),
            p if p.ends_with("/log") => {
                let pod = p.rsplit('/').nth(1).unwrap();
                let container = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("container="))
                    .unwrap();
                (200, json!(format!("log of {pod}/{container}\n")))
            }
            _ => not_found(),
        }
    }
}

fn diagnostics_dumps() -> ScriptedDumps {
    ScriptedDumps::default()
        .with(GATEWAY_POD, vec![Ok(gateway_dump("2026-11-27T10:00:05Z/14", &[("ga", 90), ("canary", 10)]))])
        .with(CLIENT_POD, vec![Err("exec `pilot-agent request GET config_dump` in pod canary-mesh-client container istio-proxy: container not found".into())])
}

/// Collects the bundle of the tutorial's proxies into a fresh dir; returns the dir, the
/// requests and README.txt.
async fn collect_bundle(refuse: &'static str) -> (tempfile::TempDir, Vec<Recorded>, String) {
    let (client, log) = mock_client(cluster(refuse));
    let dir = tempfile::tempdir().unwrap();
    let waits = WaitLog::default();
    waits.note("waiting (at most 300s) for Deployment test/podinfo-ga rolled out and available");
    waits.note("GAVE UP after 300s: Deployment test/podinfo-ga rolled out and available; last seen: 0/1 available");
    let proxies: Vec<ProxyRef> = super::await_weights_tests::views()
        .into_iter()
        .map(|v| v.proxy)
        .collect();
    diagnostics::collect(
        &client,
        &diagnostics_dumps(),
        dir.path(),
        &["test", ISTIO_NAMESPACE],
        &proxies,
        &waits,
    )
    .await
    .unwrap();
    let readme = std::fs::read_to_string(dir.path().join("README.txt")).unwrap();
    let requests = log.lock().unwrap().clone();
    (dir, requests, readme)
}

#[tokio::test]
async fn diagnostics_read_events_pods_and_every_containers_log_of_both_namespaces() {
    let (dir, requests, readme) = collect_bundle("").await;
    let uris: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert_eq!(
        uris,
        [
            "GET /api/v1/namespaces/test/events?".to_string(),
            "GET /api/v1/namespaces/test/pods?".to_string(),
            format!(
                "GET /api/v1/namespaces/test/pods/{GA_POD}/log?&container=istio-init&tailLines=300"
            ),
            format!(
                "GET /api/v1/namespaces/test/pods/{GA_POD}/log?&container=istio-proxy&tailLines=300"
            ),
            format!(
                "GET /api/v1/namespaces/test/pods/{GA_POD}/log?&container=podinfo&tailLines=300"
            ),
            "GET /api/v1/namespaces/istio-system/events?".to_string(),
            "GET /api/v1/namespaces/istio-system/pods?".to_string(),
            format!(
                "GET /api/v1/namespaces/istio-system/pods/{ISTIOD_POD}/log?&container=discovery&tailLines=300"
            ),
            format!(
                "GET /api/v1/namespaces/istio-system/pods/{GATEWAY_POD}/log?&container=istio-proxy&tailLines=300"
            ),
        ]
    );

    let read = |f: &str| {
        std::fs::read_to_string(dir.path().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    assert!(read("waits.txt").contains("GAVE UP after 300s: Deployment test/podinfo-ga"));
    // Events oldest first, with type, object, reason and message.
    assert_eq!(
        read("test/events.txt"),
        format!(
            "2026-11-27T10:01:00Z Normal Pod/{GA_POD}: Started Started container podinfo\n\
             2026-11-27T10:02:00Z Warning Pod/{GA_POD}: Unhealthy Readiness probe failed: HTTP probe failed with statuscode: 503\n"
        )
    );
    assert_eq!(read("istio-system/events.txt"), "");
    let pods = read("test/pods.txt");
    assert!(
        pods.starts_with(&format!(
            "{GA_POD}: phase Running\n  istio-init ready=true restarts=0 state="
        )),
        "{pods}"
    );
    assert!(
        pods.contains("  podinfo ready=true restarts=0 state={\"running\""),
        "{pods}"
    );
    assert_eq!(
        read(&format!("test/logs/{GA_POD}.podinfo.log")),
        format!("log of {GA_POD}/podinfo\n")
    );
    assert_eq!(
        read(&format!("test/logs/{GA_POD}.istio-proxy.log")),
        format!("log of {GA_POD}/istio-proxy\n")
    );
    assert_eq!(
        read(&format!("istio-system/logs/{GATEWAY_POD}.istio-proxy.log")),
        format!("log of {GATEWAY_POD}/istio-proxy\n")
    );
    // The gateway's config_dump as it was read; the client's exec failure is noted instead.
    let dump: Value = serde_json::from_str(&read("gateway-config_dump.json")).unwrap();
    assert_eq!(
        dump["configs"][1]["dynamic_route_configs"][0]["route_config"]["name"],
        "http.8080"
    );
    assert!(!dir.path().join("mesh-client-config_dump.json").exists());
    // After the header's two paragraphs, one line per part that failed.
    let notes: Vec<&str> = readme.splitn(3, "\n\n").nth(2).unwrap().lines().collect();
    assert_eq!(
        notes,
        [
            "mesh-client test/canary-mesh-client config_dump: exec `pilot-agent request GET config_dump` in pod canary-mesh-client container istio-proxy: container not found"
        ],
        "{readme}"
    );
}

/// A refused request costs only its own part of the bundle, and README.txt says which.
#[rstest::rstest]
#[case::events_of_istio_system(
    "/namespaces/istio-system/events",
    "istio-system: events not listed: ApiError: /api/v1/namespaces/istio-system/events is forbidden",
    &["istio-system/pods.txt", "istio-system/logs/istiod-6d8f9b7c5-kq2zt.discovery.log"],
    &["istio-system/events.txt"]
)]
#[case::the_log_of_istiod(
    "/istiod-6d8f9b7c5-kq2zt/log",
    "istio-system: no log of istiod-6d8f9b7c5-kq2zt/discovery: ApiError: /api/v1/namespaces/istio-system/pods/istiod-6d8f9b7c5-kq2zt/log is forbidden",
    &["istio-system/pods.txt", "istio-system/logs/istio-ingressgateway-7c9d8b6f4-x2k4p.istio-proxy.log"],
    &[]
)]
#[case::the_pods_of_test(
    "/namespaces/test/pods",
    "test: pods not listed: ApiError: /api/v1/namespaces/test/pods is forbidden",
    &["test/events.txt", "istio-system/pods.txt", "istio-system/logs/istiod-6d8f9b7c5-kq2zt.discovery.log"],
    &["test/pods.txt"]
)]
#[tokio::test]
async fn a_refused_request_is_noted_and_the_rest_is_collected(
    #[case] refuse: &'static str,
    #[case] note: &str,
    #[case] present: &[&str],
    #[case] absent: &[&str],
) {
    let (dir, _, readme) = collect_bundle(refuse).await;
    assert!(
        readme.lines().any(|l| l.starts_with(note)),
        "missing {note:?} in\n{readme}"
    );
    for f in present
        .iter()
        .chain(&["waits.txt", "test/events.txt", "gateway-config_dump.json"])
    {
        let file = dir.path().join(f);
        assert!(file.exists(), "{f} missing; README:\n{readme}");
    }
    for f in absent {
        assert!(!dir.path().join(f).exists(), "{f} written");
    }
}

/// A stage's new canary build on a cluster: the Deployment the run applied, with the new image
/// and environment on its container and nothing else changed, checked by a server-side dry run
/// and then applied with the same field manager; the wait is for that Deployment's rollout.
#[tokio::test]
async fn a_rollout_reapplies_the_deployment_with_the_new_build_after_a_dry_run() {
    let routing = tutorial_routing();
    let (client, log) = mock_client(api_server);
    let mut mesh = mesh_on_a_cluster_of_the_user("kind", &routing, client);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo-canary", "namespace": "test"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{
            "name": "podinfo",
            "image": "ghcr.io/stefanprodan/podinfo:6.11.1",
            "args": ["--port=9898"],
            "env": [
                {"name": "PODINFO_RANDOM_DELAY", "value": "true"},
                {"name": "PODINFO_RANDOM_DELAY_UNIT", "value": "ms"}
            ]
        }]}}}
    });
    let created = Step::new(
        crate::steps::Section::Deployments,
        Action::Apply(Apply {
            object: ObjectRef::of(&deployment),
            body: deployment.clone(),
            how: ApplyHow::Apply,
            dry_run: false,
        }),
    );
    mesh.execute(&created).await.unwrap();
    let rollout = Rollout {
        subset: "canary".into(),
        image: "ghcr.io/stefanprodan/podinfo:6.11.2".into(),
        env: [("PODINFO_RANDOM_DELAY".to_string(), "false".to_string())].into(),
        tuning: None,
    };
    let steps = mesh
        .rollout_steps(&rollout, Duration::from_secs(90))
        .unwrap();
    assert_eq!(steps.len(), 3, "{steps:#?}");
    match &steps[2].action {
        Action::Wait(w) => {
            assert_eq!(
                w.condition,
                Condition::DeploymentRolledOut {
                    namespace: "test".into(),
                    name: "podinfo-canary".into()
                }
            );
            assert_eq!(w.bound, Duration::from_secs(90));
        }
        other => panic!("expected the rollout wait, got {other:?}"),
    }
    for step in &steps[..2] {
        mesh.execute(step).await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    let patches: Vec<&Recorded> = log.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 3, "{log:#?}");
    let (dry, real) = (patches[1], patches[2]);
    assert!(dry.uri.contains("dryRun=All"), "{}", dry.uri);
    assert!(!real.uri.contains("dryRun"), "{}", real.uri);
    for r in [dry, real] {
        assert!(
            r.uri
                .starts_with("/apis/apps/v1/namespaces/test/deployments/podinfo-canary?")
        );
        assert!(r.uri.contains("fieldManager=canary-harness"), "{}", r.uri);
        // Only the image and the one variable changed; the rest is as the run applied it.
        let mut want = deployment.clone();
        let container = &mut want["spec"]["template"]["spec"]["containers"][0];
        container["image"] = json!("ghcr.io/stefanprodan/podinfo:6.11.2");
        container["env"] = json!([
            {"name": "PODINFO_RANDOM_DELAY_UNIT", "value": "ms"},
            {"name": "PODINFO_RANDOM_DELAY", "value": "false"}
        ]);
        assert_eq!(r.body, want);
    }
    // Created by the run, so still deleted at the end, and listed once.
    assert_eq!(
        mesh.changes.created,
        vec!["Deployment test/podinfo-canary".to_string()]
    );
    assert!(mesh.changes.changed.is_empty(), "{:?}", mesh.changes);
    assert!(
        mesh.teardown().iter().any(|s| matches!(
            &s.action,
            Action::Delete(o) if o.name == "podinfo-canary"
        )),
        "the rolled-out Deployment is still the run's to delete"
    );
}

/// How each kind of apply of the plan goes out: a new object (`Apply`) as a server-side apply
/// without `force`, so that an object someone made in the meantime conflicts instead of being
/// taken over; an object the harness manages (`Reapply`) or may adopt (`Adopt`) forced; one
/// that must not exist (`Create`) as a POST. Every write carries the field manager and strict
/// field validation; a dry run only adds `dryRun=All` and is not recorded as a change.
#[rstest::rstest]
#[case::new_object(ApplyHow::Apply, false, "PATCH", false, Some(true))]
#[case::new_object_dry_run(ApplyHow::Apply, true, "PATCH", false, None)]
#[case::managed_by_the_harness(ApplyHow::Reapply, false, "PATCH", true, Some(false))]
#[case::adopted(ApplyHow::Adopt, false, "PATCH", true, Some(false))]
#[case::adopted_dry_run(ApplyHow::Adopt, true, "PATCH", true, None)]
#[case::must_not_exist(ApplyHow::Create, false, "POST", false, Some(true))]
#[tokio::test]
async fn only_objects_the_run_may_take_over_are_applied_with_force(
    #[case] how: ApplyHow,
    #[case] dry_run: bool,
    #[case] method: &str,
    #[case] forced: bool,
    #[case] created: Option<bool>,
) {
    let routing = tutorial_routing();
    let (client, log) = mock_client(|rec| match rec.method.as_str() {
        "POST" => (201, rec.body.clone()),
        _ => api_server(rec),
    });
    let mut mesh = mesh_on_a_cluster_of_the_user("existing", &routing, client);
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 9898}]}
    });
    let step = Step::new(
        crate::steps::Section::Deployments,
        Action::Apply(Apply {
            object: ObjectRef::of(&service),
            body: service.clone(),
            how,
            dry_run,
        }),
    );
    mesh.execute(&step).await.unwrap();
    let log = log.lock().unwrap().clone();
    let writes: Vec<&Recorded> = log.iter().filter(|r| r.method != "GET").collect();
    assert_eq!(writes.len(), 1, "{log:#?}");
    let r = writes[0];
    assert_eq!(r.method, method);
    let path = r.uri.split('?').next().unwrap();
    let query: Vec<&str> = r
        .uri
        .split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .collect();
    match method {
        "POST" => assert_eq!(path, "/api/v1/namespaces/test/services"),
        _ => {
            assert_eq!(path, "/api/v1/namespaces/test/services/podinfo");
            assert_eq!(r.content_type, "application/apply-patch+yaml");
            assert!(query.contains(&"fieldValidation=Strict"), "{}", r.uri);
        }
    }
    assert!(query.contains(&"fieldManager=canary-harness"), "{}", r.uri);
    assert_eq!(query.contains(&"force=true"), forced, "{}", r.uri);
    if !forced {
        assert!(!r.uri.contains("force"), "{}", r.uri);
    }
    assert_eq!(query.contains(&"dryRun=All"), dry_run, "{}", r.uri);
    assert_eq!(r.body, service);
    let what = vec!["Service test/podinfo".to_string()];
    let none: Vec<String> = Vec::new();
    match created {
        Some(true) => assert_eq!(
            (&mesh.changes.created, &mesh.changes.changed),
            (&what, &none)
        ),
        Some(false) => assert_eq!(
            (&mesh.changes.created, &mesh.changes.changed),
            (&none, &what)
        ),
        None => assert_eq!(
            (&mesh.changes.created, &mesh.changes.changed),
            (&none, &none)
        ),
    }
}

/// Proxies whose workload certificates chain to `root_of` each pod's CA; the pods whose
/// proxies were asked are noted.
struct CertsOf {
    chains: Vec<(String, String)>,
    asked: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl proxy::ConfigDumps for CertsOf {
    async fn dump(&self, proxy: &proxy::ProxyRef) -> anyhow::Result<Value> {
        self.asked.lock().unwrap().push(proxy.pod.clone());
        let chain = self
            .chains
            .iter()
            .find(|(pod, _)| *pod == proxy.pod)
            .map(|(_, chain)| chain.clone())
            .ok_or_else(|| anyhow::anyhow!("no proxy in pod {}", proxy.pod))?;
        Ok(sidecar_dump(&chain))
    }
}

/// The workload-certificate check reads the proxy of a Ready pod that is not being deleted,
/// whatever comes first by name: a terminating pod (still Ready in its grace period) whose
/// certificate is of another root, and a pod that is not Ready yet, are passed over.
#[tokio::test]
async fn the_workload_certificate_is_read_from_a_live_ready_pod() {
    let routing = tutorial_routing();
    let ours = CaBundle::generate().unwrap();
    let old = CaBundle::generate().unwrap();
    let workload = |name: &str, ready: bool, deleting: bool| {
        let status = if ready { "True" } else { "False" };
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "test", "labels": {"app": "podinfo", "version": "canary"}},
            "spec": {"containers": [{"name": "podinfo", "image": "x"}],
                     "initContainers": [{"name": "istio-proxy", "image": "x", "restartPolicy": "Always"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": status}],
                       "containerStatuses": [{"name": "podinfo", "ready": ready, "restartCount": 0, "image": "x", "imageID": "",
                                              "state": {"running": {"startedAt": "2026-12-02T10:00:00Z"}}}]}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:05:00Z");
        }
        p
    };
    let pods = list(
        "PodList",
        vec![
            workload("podinfo-canary-5f7d9c8b4-aaaaa", true, true),
            workload("podinfo-canary-5f7d9c8b4-bbbbb", false, false),
            workload("podinfo-canary-5f7d9c8b4-ccccc", true, false),
        ],
    );
    let (client, log) = mock_client(move |rec| {
        if rec.method == "GET" && rec.uri.starts_with("/api/v1/namespaces/test/pods?") {
            (200, pods.clone())
        } else {
            not_found()
        }
    });
    let mut mesh = mesh_on_a_cluster_of_the_user("existing", &routing, client);
    let certs = Arc::new(CertsOf {
        chains: vec![
            (
                "podinfo-canary-5f7d9c8b4-aaaaa".into(),
                ca::workload_chain(&old),
            ),
            (
                "podinfo-canary-5f7d9c8b4-bbbbb".into(),
                ca::workload_chain(&old),
            ),
            (
                "podinfo-canary-5f7d9c8b4-ccccc".into(),
                ca::workload_chain(&ours),
            ),
        ],
        asked: Mutex::default(),
    });
    mesh.dumps = Some(certs.clone());
    let step = Step::new(
        crate::steps::Section::Deployments,
        Action::Wait(crate::steps::Wait {
            condition: Condition::WorkloadCertificate {
                namespace: "test".into(),
                deployment: "podinfo-canary".into(),
                selector: [
                    ("app".to_string(), "podinfo".to_string()),
                    ("version".to_string(), "canary".to_string()),
                ]
                .into(),
                root: crate::steps::Root::Pem {
                    pem: ours.root_cert_pem.clone(),
                    what: "the harness's CA".into(),
                },
            },
            bound: Duration::from_secs(5),
        }),
    );
    mesh.execute(&step).await.unwrap();
    assert_eq!(
        *certs.asked.lock().unwrap(),
        ["podinfo-canary-5f7d9c8b4-ccccc"]
    );
    let log = log.lock().unwrap().clone();
    assert!(
        log[0]
            .uri
            .contains("labelSelector=app%3Dpodinfo%2Cversion%3Dcanary"),
        "{}",
        log[0].uri
    );
}
