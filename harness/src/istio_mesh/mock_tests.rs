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
use super::*;
use crate::manifests::Manifests;
use crate::scenario::Scenario;

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

fn tutorial_routing() -> Routing {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
    let scenario = Scenario::load(&path).unwrap();
    let manifests = Manifests::load(&scenario.manifests).unwrap();
    Routing::resolve(&scenario, manifests).unwrap()
}

fn quick() -> Bounds {
    Bounds {
        timeout: Duration::from_millis(300),
        interval: Duration::from_millis(10),
    }
}

#[tokio::test]
async fn manifests_are_server_side_applied_in_order_to_the_right_urls() {
    let routing = tutorial_routing();
    let (client, log) = mock_client(api_server);
    let objects: Vec<Value> = routing
        .manifests
        .objects
        .iter()
        .map(|o| o.value.clone())
        .collect();
    apply::apply_manifests(&client, &objects, quick(), &WaitLog::default())
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();
    let patches: Vec<&Recorded> = log.iter().filter(|r| r.method == "PATCH").collect();
    let paths: Vec<&str> = patches
        .iter()
        .map(|r| r.uri.split('?').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/test",
            "/apis/apps/v1/namespaces/test/deployments/podinfo-canary",
            "/apis/apps/v1/namespaces/test/deployments/podinfo-ga",
            "/api/v1/namespaces/test/services/podinfo",
            "/apis/networking.istio.io/v1/namespaces/test/destinationrules/podinfo",
            "/apis/networking.istio.io/v1/namespaces/test/gateways/podinfo-gateway",
            "/apis/networking.istio.io/v1/namespaces/test/virtualservices/podinfo",
        ]
    );
    for p in &patches {
        assert_eq!(p.content_type, "application/apply-patch+yaml", "{p:?}");
        assert!(p.uri.contains("fieldManager=canary-harness"), "{}", p.uri);
        assert!(p.uri.contains("force=true"), "{}", p.uri);
    }
    // The CRDs were checked before the first Istio object.
    let first_crd = log
        .iter()
        .position(|r| r.uri.contains("customresourcedefinitions"))
        .unwrap();
    let first_istio = log
        .iter()
        .position(|r| r.method == "PATCH" && r.uri.contains("istio.io"))
        .unwrap();
    assert!(first_crd < first_istio);
    // The Deployment body is the manifest as it is.
    let ga = patches
        .iter()
        .find(|r| r.uri.contains("podinfo-ga"))
        .unwrap();
    assert_eq!(
        ga.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/stefanprodan/podinfo:6.14.0"
    );
}

#[tokio::test]
async fn a_stage_patches_the_virtual_service_weights() {
    let routing = tutorial_routing();
    let (client, log) = mock_client(api_server);
    let weights: Weights = [("ga".to_string(), 90), ("canary".to_string(), 10)].into();
    let vs = routing.with_weights(&weights);
    apply::apply_virtual_service(&client, &vs).await.unwrap();
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

#[tokio::test]
async fn cacerts_go_into_istio_system() {
    let ca = CaBundle::generate().unwrap();
    let (client, log) = mock_client(api_server);
    install_cacerts(&client, &ca).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert!(
        log[0].uri.starts_with("/api/v1/namespaces/istio-system?"),
        "{}",
        log[0].uri
    );
    assert!(
        log[1]
            .uri
            .starts_with("/api/v1/namespaces/istio-system/secrets/cacerts?"),
        "{}",
        log[1].uri
    );
    let data = &log[1].body["data"];
    let decode = |k: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data[k].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode("root-cert.pem"), ca.root_cert_pem);
    assert_eq!(decode("cert-chain.pem"), ca.cert_chain_pem);
    assert_eq!(decode("ca-key.pem"), ca.ca_key_pem);
    assert_eq!(decode("ca-cert.pem"), ca.ca_cert_pem);
}

fn deployment_json(generation: i64, observed: i64, available: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "podinfo-ga", "namespace": "test", "generation": generation},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "podinfo"}},
                    "template": {"metadata": {"labels": {"app": "podinfo"}}, "spec": {"containers": [{"name": "podinfo", "image": "x"}]}}},
           "status": {"observedGeneration": observed, "replicas": 1, "updatedReplicas": 1, "availableReplicas": available}})
}

#[tokio::test]
async fn a_deployment_wait_ends_when_the_new_generation_is_available() {
    let calls = Arc::new(Mutex::new(0));
    let n = calls.clone();
    let (client, _log) = mock_client(move |_| {
        let mut n = n.lock().unwrap();
        *n += 1;
        // Stale status first, then rolled out.
        (
            200,
            if *n < 3 {
                deployment_json(2, 1, 1)
            } else {
                deployment_json(2, 2, 1)
            },
        )
    });
    await_deployment(&client, "test", "podinfo-ga", quick(), &WaitLog::default())
        .await
        .unwrap();
    assert_eq!(*calls.lock().unwrap(), 3);
}

#[tokio::test]
async fn a_deployment_wait_that_times_out_names_it_and_what_it_saw() {
    let (client, log) = mock_client(|_| (200, deployment_json(2, 2, 0)));
    let err = await_deployment(&client, "test", "podinfo-ga", quick(), &WaitLog::default())
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("Deployment test/podinfo-ga"), "{text}");
    assert!(text.contains("0/1 available"), "{text}");
    assert!(
        log.lock().unwrap()[0]
            .uri
            .starts_with("/apis/apps/v1/namespaces/test/deployments/podinfo-ga")
    );
}

fn webhook(bundle: Option<&str>) -> Value {
    let mut hook = json!({"name": "rev.namespace.sidecar-injector.istio.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "istiod", "namespace": "istio-system", "path": "/inject"}}});
    if let Some(b) = bundle {
        hook["clientConfig"]["caBundle"] =
            json!(base64::engine::general_purpose::STANDARD.encode(b));
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
           "metadata": {"name": "istio-sidecar-injector"}, "webhooks": [hook]})
}

#[tokio::test]
async fn the_webhook_wait_waits_for_the_bundle_then_compares_it() {
    let ca = CaBundle::generate().unwrap();
    // Empty first, then the plugged-in root: ok.
    let calls = Arc::new(Mutex::new(0));
    let n = calls.clone();
    let root = ca.root_cert_pem.clone();
    let (client, log) = mock_client(move |_| {
        let mut n = n.lock().unwrap();
        *n += 1;
        (200, webhook(if *n < 3 { None } else { Some(&root) }))
    });
    await_webhook_ca_bundle(
        &client,
        Some(&ca.root_cert_pem),
        quick(),
        &WaitLog::default(),
    )
    .await
    .unwrap();
    assert_eq!(*calls.lock().unwrap(), 3);
    assert_eq!(
        log.lock().unwrap()[0].uri,
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio-sidecar-injector"
    );

    // Another CA's root: a clear error at once, naming both fingerprints.
    let other = CaBundle::generate().unwrap();
    let other_root = other.root_cert_pem.clone();
    let (client, _) = mock_client(move |_| (200, webhook(Some(&other_root))));
    let err = await_webhook_ca_bundle(
        &client,
        Some(&ca.root_cert_pem),
        quick(),
        &WaitLog::default(),
    )
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&other.root_fingerprint()), "{text}");
    assert!(text.contains(&ca.root_fingerprint()), "{text}");
    assert!(!text.contains("gave up"), "{text}");

    // Without a CA of the harness (existing mesh): any non-empty bundle will do.
    let (client, _) = mock_client(move |_| (200, webhook(Some(&other.root_cert_pem))));
    await_webhook_ca_bundle(&client, None, quick(), &WaitLog::default())
        .await
        .unwrap();

    // Never patched: gives up saying so.
    let (client, _) = mock_client(|_| (200, webhook(None)));
    let err = await_webhook_ca_bundle(&client, None, quick(), &WaitLog::default())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("has no caBundle yet"),
        "{err:#}"
    );
}

#[tokio::test]
async fn istio_is_present_only_when_istiod_and_the_crd_are_ready() {
    let answer = |ready: bool| {
        move |rec: &Recorded| -> (u16, Value) {
            if rec.uri.contains("/deployments/istiod") {
                let mut d = deployment_json(1, 1, 1);
                d["metadata"]["name"] = json!("istiod");
                (200, d)
            } else if rec.uri.contains("customresourcedefinitions") && ready {
                api_server(rec)
            } else {
                not_found()
            }
        }
    };
    let (client, _) = mock_client(answer(true));
    assert!(istio_present(&client).await.unwrap());
    let (client, _) = mock_client(answer(false));
    assert!(!istio_present(&client).await.unwrap());
    let (client, _) = mock_client(|_| not_found());
    assert!(!istio_present(&client).await.unwrap());
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
    let batch = crate::prober::Batch {
        want: 1,
        max_requests: 1,
        concurrency: 1,
    };
    let samples = target.collect(batch, &|_| {}).await.unwrap();
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
    let batch = crate::prober::Batch {
        want: 5,
        max_requests: 10,
        concurrency: 2,
    };
    assert!(target.collect(batch, &|_| {}).await.is_err());
    let uri = log.lock().unwrap()[0].uri.clone();
    assert!(
        uri.starts_with("/api/v1/namespaces/test/pods/canary-mesh-client/exec?"),
        "{uri}"
    );
    assert!(uri.contains("container=client"), "{uri}");
    assert!(uri.contains("command=sh&command=-c&command="), "{uri}");
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
    let o = config_dump::observed_route(&dump, &routing.port.to_string(), &routing.host).unwrap();
    let weights: Weights = [("ga".to_string(), 100), ("canary".to_string(), 0)].into();
    assert!(config_dump::matches_weights(&o, &weights));
    let chain = proxy::workload_chain(&dump).unwrap();
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(proxy::workload_chain(&json!({"configs": []})).is_none());
}

#[test]
fn the_plan_lists_objects_in_apply_order_and_the_waits() {
    let lines = plan_lines(&tutorial_routing());
    let text = lines.join("\n");
    let pos = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("missing {s} in\n{text}"))
    };
    assert!(pos("apply: Namespace test") < pos("apply: Deployment test/podinfo-ga"));
    assert!(
        pos("apply: Service test/podinfo")
            < pos("wait: CRD virtualservices.networking.istio.io Established")
    );
    assert!(
        pos("wait: CRD destinationrules.networking.istio.io Established")
            < pos("apply: DestinationRule test/podinfo")
    );
    assert!(
        pos("apply: VirtualService test/podinfo")
            < pos("wait: Deployment test/podinfo-ga rolled out")
    );
    assert!(text.contains("field manager canary-harness"));
    assert!(text.contains("Pod test/canary-mesh-client"));
    assert!(text.contains("Gateway port 80 (Host podinfo.example.com)"));
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
