//! A fake Kubernetes API server on loopback, for tests of the cluster meshes: a store of
//! objects with the verbs the harness uses (discovery, GET, LIST with label selectors, create,
//! server-side apply with field managers and dry runs, DELETE), every request recorded, and a
//! tiny controller that does what the cluster would after a write (Deployments roll out and get
//! pods, pods run and get `istio-proxy` where injection is on, CRDs are Established).
//!
//! It speaks plain HTTP, so a kubeconfig pointing at it works for the harness's own client and
//! for the xtask binary under test alike. Exec and port-forward (websocket upgrades) are
//! refused; tests give the mesh scripted config_dumps instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: Value,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.uri.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    }

    /// Whether the request could change the cluster (dry runs cannot).
    pub fn writes(&self) -> bool {
        self.method != "GET" && self.query("dryRun").is_none()
    }
}

/// How the fake cluster behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Deployments become available; otherwise they stay at 0 available replicas.
    pub rollouts: bool,
    /// Nodes report Ready.
    pub nodes_ready: bool,
    /// Requests whose path contains one of these get 403.
    pub forbid: Vec<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            rollouts: true,
            nodes_ready: true,
            forbid: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Store {
    /// (apiVersion, plural, namespace or "", name) → object.
    objects: BTreeMap<(String, String, String, String), Value>,
    requests: Vec<Recorded>,
    behaviour: Behaviour,
    counter: u64,
    /// The mesh's root, published to each new namespace once Istio is installed.
    root: Option<String>,
}

/// The fake server; stops when dropped.
pub struct FakeApi {
    pub base: String,
    store: Arc<Mutex<Store>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The kinds the fake serves: (apiVersion, plural, kind, namespaced).
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("v1", "namespaces", "Namespace", false),
    ("v1", "nodes", "Node", false),
    ("v1", "pods", "Pod", true),
    ("v1", "services", "Service", true),
    ("v1", "secrets", "Secret", true),
    ("v1", "configmaps", "ConfigMap", true),
    ("v1", "events", "Event", true),
    ("apps/v1", "deployments", "Deployment", true),
    (
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
    ),
    (
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    ),
    (
        "networking.istio.io/v1",
        "virtualservices",
        "VirtualService",
        true,
    ),
    (
        "networking.istio.io/v1",
        "destinationrules",
        "DestinationRule",
        true,
    ),
    ("networking.istio.io/v1", "gateways", "Gateway", true),
];

fn plural_of(api_version: &str, kind: &str) -> Option<&'static str> {
    RESOURCES
        .iter()
        .find(|(v, _, k, _)| *v == api_version && *k == kind)
        .map(|(_, p, _, _)| *p)
}

fn kind_of(api_version: &str, plural: &str) -> Option<(&'static str, bool)> {
    RESOURCES
        .iter()
        .find(|(v, p, _, _)| *v == api_version && *p == plural)
        .map(|(_, _, k, n)| (*k, *n))
}

impl FakeApi {
    /// A cluster with one node and nothing else.
    pub async fn start() -> Self {
        let store = Arc::new(Mutex::new(Store::default()));
        let app = Router::new().fallback(handle).with_state(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake API server");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let api = Self { base, store, task };
        api.insert(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "fake-control-plane"}}),
        );
        api
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.store.lock().expect("store").behaviour = behaviour;
    }

    /// Writes a kubeconfig whose current context is this server.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.base
        );
        std::fs::write(path, text).expect("writing the fake kubeconfig");
    }

    /// Puts an object into the store as the cluster would hold it, as if a controller
    /// made it (no request is recorded).
    pub fn insert(&self, object: Value) {
        let mut store = self.store.lock().expect("store");
        store.put(object, None);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.store.lock().expect("store").requests.clone()
    }

    /// The requests that could change the cluster.
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::writes)
            .collect()
    }

    /// The object of that kind and name, if the store holds it.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let plural = plural_of(api_version, kind)?;
        let key = (
            api_version.to_string(),
            plural.to_string(),
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        );
        self.store.lock().expect("store").objects.get(&key).cloned()
    }

    /// `Kind namespace/name` of every object in the store.
    pub fn names(&self) -> Vec<String> {
        let store = self.store.lock().expect("store");
        store
            .objects
            .values()
            .map(|o| crate::steps::ObjectRef::of(o).to_string())
            .collect()
    }

    /// Istio as istioctl installs it: istiod of `revision` in istio-system, its injector
    /// webhook (and the default tag's) with `root` as caBundle (none in the never-match webhook
    /// of a default install, which the checks must skip), the CRDs, the ingress gateway
    /// pod and its Service, and a `cacerts` Secret holding `root` when `cacerts` is true.
    pub fn install_istio(&self, revision: &str, root: &str, cacerts: bool) {
        install(&self.store, revision, root, cacerts);
    }
}

/// What [`FakeApi::install_istio`] does, on the store (also for `/fake/install-istio`).
fn install(store: &Arc<Mutex<Store>>, revision: &str, root: &str, cacerts: bool) {
    let mut store = store.lock().expect("store");
    let mut insert = |object: Value| store.put(object, None);
    {
        let rev_suffix = if revision == "default" {
            String::new()
        } else {
            format!("-{revision}")
        };
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(s)
        };
        insert(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
        );
        insert(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("istiod{rev_suffix}"), "namespace": "istio-system",
                         "labels": {"app": "istiod", "istio.io/rev": revision, "istio": "pilot"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "istiod"}},
                     "template": {"metadata": {"labels": {"app": "istiod", "istio.io/rev": revision}},
                                  "spec": {"containers": [{"name": "discovery", "image": "istio/pilot"}]}}}
        }));
        let hook = |name: &str, selector: Value| {
            let never_match =
                selector == json!({"matchLabels": {"istio.io/deactivated": "never-match"}});
            // istiod patches the caBundle into the switched-off hook too; here it stays empty,
            // so that the injector check passes only when it skips that hook.
            let bundle = if never_match {
                String::new()
            } else {
                b64(root)
            };
            let mut hook = json!({"name": name, "sideEffects": "None", "admissionReviewVersions": ["v1"],
                   "clientConfig": {"service": {"name": format!("istiod{rev_suffix}"), "namespace": "istio-system", "path": "/inject"},
                                    "caBundle": bundle},
                   "namespaceSelector": selector});
            if never_match {
                hook["objectSelector"] = selector.clone();
            }
            hook
        };
        let never = json!({"matchLabels": {"istio.io/deactivated": "never-match"}});
        let injection = json!({"matchLabels": {"istio-injection": "enabled"}});
        if revision == "default" {
            insert(json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "istio-sidecar-injector", "labels": {"app": "sidecar-injector", "istio.io/rev": "default"}},
                "webhooks": [hook("rev.namespace.sidecar-injector.istio.io", never.clone())]
            }));
            insert(json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "istio-revision-tag-default", "labels": {"app": "sidecar-injector", "istio.io/rev": "default", "istio.io/tag": "default"}},
                "webhooks": [hook("namespace.sidecar-injector.istio.io", injection)]
            }));
        } else {
            insert(json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": format!("istio-sidecar-injector{rev_suffix}"), "labels": {"app": "sidecar-injector", "istio.io/rev": revision}},
                "webhooks": [hook("rev.namespace.sidecar-injector.istio.io", json!({"matchLabels": {"istio.io/rev": revision}}))]
            }));
        }
        for plural in ["virtualservices", "destinationrules", "gateways"] {
            insert(json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.networking.istio.io")},
                "spec": {"group": "networking.istio.io", "names": {"plural": plural, "kind": plural}, "scope": "Namespaced", "versions": []}
            }));
        }
        let gateway_labels = json!({"app": "istio-ingressgateway", "istio": "ingressgateway"});
        insert(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {"type": "ClusterIP", "selector": gateway_labels,
                     "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}
        }));
        insert(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "istio-ingressgateway-7c9d8b6f4-x2k4p", "namespace": "istio-system", "labels": gateway_labels},
            "spec": {"containers": [{"name": "istio-proxy", "image": "istio/proxyv2", "ports": [{"name": "http2", "containerPort": 8080}]}]}
        }));
        if cacerts {
            insert(json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "cacerts", "namespace": "istio-system"},
                "data": {"root-cert.pem": b64(root)}
            }));
        }
    }
    store.root = Some(root.to_string());
}

impl Store {
    fn key_of(object: &Value) -> Option<(String, String, String, String)> {
        let api_version = object["apiVersion"].as_str()?.to_string();
        let plural = plural_of(&api_version, object["kind"].as_str()?)?;
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"].as_str()?.to_string();
        Some((api_version, plural.to_string(), ns, name))
    }

    fn istio_served(&self) -> bool {
        self.objects.keys().any(|(_, plural, _, name)| {
            plural == "customresourcedefinitions" && name.ends_with(".istio.io")
        })
    }

    /// Stores an object (with a manager when a request wrote it) and reacts like the cluster.
    fn put(&mut self, mut object: Value, manager: Option<(&str, &str)>) {
        let Some(key) = Self::key_of(&object) else {
            return;
        };
        self.counter += 1;
        let old = self.objects.get(&key).cloned();
        let meta = object["metadata"].as_object_mut().expect("metadata");
        let generation = old
            .as_ref()
            .and_then(|o| o["metadata"]["generation"].as_i64())
            .unwrap_or(0)
            + 1;
        meta.insert("generation".into(), json!(generation));
        meta.insert("resourceVersion".into(), json!(self.counter.to_string()));
        meta.insert("uid".into(), json!(format!("uid-{}", self.counter)));
        let mut managers: Vec<Value> = old
            .as_ref()
            .and_then(|o| o["metadata"]["managedFields"].as_array().cloned())
            .unwrap_or_default();
        if let Some((manager, operation)) = manager
            && !managers.iter().any(|m| m["manager"] == manager)
        {
            managers.push(json!({"manager": manager, "operation": operation, "apiVersion": key.0, "fieldsType": "FieldsV1", "fieldsV1": {}}));
        }
        if !managers.is_empty() {
            meta.insert("managedFields".into(), json!(managers));
        }
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "Deployment" => self.roll_out(&mut object),
            "Pod" => self.start_pod(&mut object),
            "CustomResourceDefinition" => {
                object["status"] = json!({"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]});
            }
            "Node" => {
                let ready = if self.behaviour.nodes_ready {
                    "True"
                } else {
                    "False"
                };
                object["status"] = json!({"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}]});
            }
            _ => {}
        }
        let namespace_created = kind == "Namespace" && old.is_none();
        let name = key.3.clone();
        self.objects.insert(key, object);
        if namespace_created && let Some(root) = self.root.clone() {
            self.put(
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "istio-ca-root-cert", "namespace": name},
                       "data": {"root-cert.pem": root}}),
                None,
            );
        }
    }

    fn roll_out(&mut self, deployment: &mut Value) {
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
        let generation = deployment["metadata"]["generation"].clone();
        let available = if self.behaviour.rollouts { replicas } else { 0 };
        deployment["status"] = json!({"observedGeneration": generation, "replicas": replicas,
            "updatedReplicas": replicas, "availableReplicas": available, "readyReplicas": available});
        let ns = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = deployment["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let template = deployment["spec"]["template"].clone();
        for i in 0..replicas {
            self.put(
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": format!("{name}-5f7d9c8b4-{i}"), "namespace": ns,
                                    "labels": template["metadata"]["labels"].clone()},
                       "spec": template["spec"].clone()}),
                None,
            );
        }
    }

    /// A pod runs; it gets a native `istio-proxy` sidecar when its namespace asks for one and
    /// an injector webhook serves.
    fn start_pod(&mut self, pod: &mut Value) {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let labels = self
            .objects
            .get(&("v1".into(), "namespaces".into(), String::new(), ns.clone()))
            .map(|n| n["metadata"]["labels"].clone())
            .unwrap_or(Value::Null);
        let asks = labels["istio-injection"] == "enabled" || labels["istio.io/rev"].is_string();
        let injector = self
            .objects
            .keys()
            .any(|(_, plural, _, _)| plural == "mutatingwebhookconfigurations");
        let has_proxy = |p: &Value| {
            ["containers", "initContainers"].iter().any(|k| {
                p["spec"][k]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["name"] == "istio-proxy"))
            })
        };
        if asks && injector && !has_proxy(pod) {
            let init = pod["spec"]["initContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut init = init;
            init.push(
                json!({"name": "istio-proxy", "image": "istio/proxyv2", "restartPolicy": "Always"}),
            );
            pod["spec"]["initContainers"] = json!(init);
        }
        let statuses = |key: &str| -> Vec<Value> {
            pod["spec"][key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "ready": true, "restartCount": 0, "image": "x", "imageID": "",
                                "state": {"running": {"startedAt": "2026-12-02T10:00:00Z"}}}))
                .collect()
        };
        pod["status"] = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": statuses("containers"),
            "initContainerStatuses": statuses("initContainers")});
    }
}

/// Where a request path points: the kind's apiVersion and plural, the namespace, the name
/// and a subresource.
struct Target {
    api_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Result<Target, String>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    if rest.is_empty() {
        return Some(Err(api_version));
    }
    let target = match rest {
        ["namespaces"] => (None, "namespaces", None, None),
        ["namespaces", name] => (None, "namespaces", Some(*name), None),
        ["namespaces", ns, plural, tail @ ..] => (
            Some(*ns),
            *plural,
            tail.first().copied(),
            tail.get(1).copied(),
        ),
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => return None,
    };
    Some(Ok(Target {
        api_version,
        plural: target.1.to_string(),
        namespace: target.0.map(str::to_string),
        name: target.2.map(str::to_string),
        subresource: target.3.map(str::to_string),
    }))
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "reason": reason, "code": code, "message": message});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn decode(text: &str) -> String {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    State(shared): State<Arc<Mutex<Store>>>,
    method: Method,
    uri: Uri,
    request: Request,
) -> Response {
    let body: Bytes = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let body_json: Value = serde_json::from_slice(&body)
        .or_else(|_| serde_saphyr::from_slice(&body))
        .unwrap_or(Value::Null);
    let recorded = Recorded {
        method: method.to_string(),
        uri: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        body: body_json.clone(),
    };
    let mut store = shared.lock().expect("store");
    store.requests.push(recorded.clone());
    if store
        .behaviour
        .forbid
        .iter()
        .any(|f| recorded.uri.contains(f))
    {
        return status(
            403,
            "Forbidden",
            format!("{} is forbidden", recorded.path()),
        );
    }
    // What a fake istioctl calls to "install" Istio: with the root of `cacerts` if there is one.
    if recorded.path() == "/fake/install-istio" {
        let root = store
            .objects
            .get(&(
                "v1".into(),
                "secrets".into(),
                "istio-system".into(),
                "cacerts".into(),
            ))
            .and_then(|s| s["data"]["root-cert.pem"].as_str().map(str::to_string))
            .and_then(|b64| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b64).ok()
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        drop(store);
        install(&shared, "default", &root, false);
        return axum::Json(json!({"installed": true})).into_response();
    }
    let Some(target) = parse_path(recorded.path()) else {
        return status(404, "NotFound", format!("{} not found", recorded.path()));
    };
    let target = match target {
        Ok(t) => t,
        Err(api_version) => {
            if api_version == "networking.istio.io/v1" && !store.istio_served() {
                return status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource".into(),
                );
            }
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|(v, _, _, _)| *v == api_version)
                .map(|(_, p, k, n)| json!({"name": p, "singularName": "", "namespaced": n, "kind": k,
                                           "verbs": ["create", "delete", "get", "list", "patch", "update"]}))
                .collect();
            return axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
                                     "groupVersion": api_version, "resources": resources}))
            .into_response();
        }
    };
    let Some((kind, _namespaced)) = kind_of(&target.api_version, &target.plural) else {
        return status(404, "NotFound", format!("no resource {}", target.plural));
    };
    if target.api_version.starts_with("networking.istio.io") && !store.istio_served() {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    }
    if let Some(sub) = &target.subresource {
        return match sub.as_str() {
            "log" => {
                format!("log of {}\n", target.name.clone().unwrap_or_default()).into_response()
            }
            _ => status(
                400,
                "BadRequest",
                format!("the fake API server does not upgrade {sub}"),
            ),
        };
    }
    let key = |name: &str| {
        (
            target.api_version.clone(),
            target.plural.clone(),
            target.namespace.clone().unwrap_or_default(),
            name.to_string(),
        )
    };
    let dry_run = recorded.query("dryRun").is_some();
    let manager = recorded.query("fieldManager").map(|m| decode(&m));
    match (method.as_str(), &target.name) {
        ("GET", Some(name)) => match store.objects.get(&key(name)) {
            Some(o) => axum::Json(o.clone()).into_response(),
            None => status(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", target.plural),
            ),
        },
        ("GET", None) => {
            let selector = recorded.query("labelSelector").map(|s| decode(&s));
            let items: Vec<Value> = store
                .objects
                .iter()
                .filter(|((v, p, ns, _), o)| {
                    *v == target.api_version
                        && *p == target.plural
                        && target.namespace.as_ref().is_none_or(|t| t == ns)
                        && matches_selector(o, selector.as_deref())
                })
                .map(|(_, o)| o.clone())
                .collect();
            axum::Json(
                json!({"kind": format!("{kind}List"), "apiVersion": target.api_version,
                              "metadata": {"resourceVersion": "1"}, "items": items}),
            )
            .into_response()
        }
        ("POST", None) => {
            let name = body_json["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if store.objects.contains_key(&key(&name)) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", target.plural),
                );
            }
            if !dry_run {
                let manager = manager.unwrap_or_else(|| "unknown".into());
                store.put(body_json.clone(), Some((&manager, "Update")));
            }
            (StatusCode::CREATED, axum::Json(body_json)).into_response()
        }
        ("PATCH", Some(name)) => {
            let force = recorded.query("force").as_deref() == Some("true");
            let manager = manager.unwrap_or_else(|| "unknown".into());
            if let Some(existing) = store.objects.get(&key(name)) {
                let others: Vec<String> = existing["metadata"]["managedFields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["manager"].as_str().map(str::to_string))
                    .filter(|m| *m != manager)
                    .collect();
                if !force && !others.is_empty() {
                    return status(
                        409,
                        "Conflict",
                        format!("Apply failed with conflicts: fields of {others:?}"),
                    );
                }
            }
            if !dry_run {
                store.put(body_json.clone(), Some((&manager, "Apply")));
            }
            axum::Json(store.objects.get(&key(name)).cloned().unwrap_or(body_json)).into_response()
        }
        ("DELETE", Some(name)) => match store.objects.remove(&key(name)) {
            Some(_) => {
                if target.plural == "namespaces" {
                    store.objects.retain(|(_, _, ns, _), _| ns != name);
                }
                axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
                    .into_response()
            }
            None => status(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", target.plural),
            ),
        },
        _ => status(
            405,
            "MethodNotAllowed",
            format!("{method} {}", recorded.path()),
        ),
    }
}
