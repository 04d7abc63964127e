//! The Istio mesh on a Kubernetes cluster (kind or one the user already has), driven with
//! kube-rs.
//!
//! Before the walk: istiod runs and its injector webhook trusts the plugged-in root, the
//! manifests are server-side applied, the Deployments are rolled out, every podinfo pod runs a
//! sidecar whose workload certificate chains to the harness's root, a client pod inside the
//! mesh is up, and a port-forward reaches the ingress gateway. Each step is a named, bounded
//! wait whose failure says what it saw. Per stage: the VirtualService is server-side applied
//! and the weights are read back from the gateway's and the client sidecar's Envoy
//! (`config_dump`) before a single sample counts.
//!
//! The xtask side installs Istio (istioctl) and creates/deletes kind clusters; this module
//! never deletes a cluster and, for `existing`, installs nothing it finds healthy.

pub mod apply;
pub mod diagnostics;
pub mod exec_target;
pub mod gateway;
pub mod injection;
pub mod portforward_target;
pub mod proxy;
pub mod waits;

#[cfg(test)]
mod await_weights_tests;
#[cfg(test)]
mod mock_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::ca::{self, CaBundle};
use crate::config_dump;
use crate::istio::VirtualService;
use crate::mesh::Mesh;
use crate::prober::Target;
use crate::routing::{EntryPoint, Routing};
use crate::scenario::Weights;

use self::exec_target::{CLIENT_POD, ExecCurlTarget};
use self::gateway::ISTIO_NAMESPACE;
use self::portforward_target::PortForwardTarget;
use self::proxy::{ConfigDumps, ExecConfigDumps, ProxyRef};
use self::waits::{Bounds, Check, WaitLog, wait_for};

/// The one field manager of every server-side apply of the harness.
pub const FIELD_MANAGER: &str = "canary-harness";
/// The plug-in CA secret istiod reads at start-up.
pub const CACERTS_SECRET: &str = "cacerts";
/// istiod's Deployment.
pub const ISTIOD: &str = "istiod";
/// The sidecar injector's webhook configuration (default revision).
pub const INJECTOR_WEBHOOK: &str = "istio-sidecar-injector";
/// The CRD whose presence says Istio's APIs are served.
pub const VIRTUAL_SERVICE_CRD: &str = "virtualservices.networking.istio.io";
/// Bound of one config_dump exec.
const DUMP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to drive the mesh.
#[derive(Debug, Clone)]
pub struct IstioOptions {
    /// `kind` or `existing`, for reports.
    pub mesh_kind: &'static str,
    /// The plugged-in CA the webhook's caBundle and the workload certificates are checked
    /// against; `None` when the user's Istio has its own CA (only a non-empty caBundle is
    /// required then).
    pub ca: Option<CaBundle>,
    /// Bound of each readiness wait.
    pub wait: Duration,
    /// Where the harness may write (diagnostics of a failed start go to `work_dir/diagnostics`).
    pub work_dir: PathBuf,
}

impl IstioOptions {
    /// Default bound of 300 s, as istioctl's `--readiness-timeout`.
    pub fn new(mesh_kind: &'static str, ca: Option<CaBundle>, work_dir: PathBuf) -> Self {
        Self {
            mesh_kind,
            ca,
            wait: Duration::from_secs(300),
            work_dir,
        }
    }
}

/// A kube::Client from a kubeconfig file and optional context, never touching
/// `~/.kube/config` or `$KUBECONFIG`.
pub async fn client_from_kubeconfig(path: &Path, context: Option<&str>) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| {
            format!(
                "loading context {} of {}",
                context.unwrap_or("(current)"),
                path.display()
            )
        })?;
    Client::try_from(config).context("building the Kubernetes client")
}

/// The `istio-system` Namespace and the `cacerts` Secret, as server-side applied.
pub fn cacerts_objects(ca: &CaBundle) -> (serde_json::Value, serde_json::Value) {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ISTIO_NAMESPACE},
    });
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": CACERTS_SECRET, "namespace": ISTIO_NAMESPACE},
        "data": {
            ca::CA_CERT_FILE: b64(&ca.ca_cert_pem),
            ca::CA_KEY_FILE: b64(&ca.ca_key_pem),
            ca::ROOT_CERT_FILE: b64(&ca.root_cert_pem),
            ca::CERT_CHAIN_FILE: b64(&ca.cert_chain_pem),
        },
    });
    (namespace, secret)
}

/// Creates/updates the `istio-system` namespace and the `cacerts` secret (server-side apply).
/// istiod reads the secret when it starts: call this before `istioctl install`.
pub async fn install_cacerts(client: &Client, ca: &CaBundle) -> anyhow::Result<()> {
    let (namespace, secret) = cacerts_objects(ca);
    let params = apply::apply_params();
    Api::<Namespace>::all(client.clone())
        .patch(ISTIO_NAMESPACE, &params, &Patch::Apply(&namespace))
        .await
        .context("server-side apply of Namespace istio-system")?;
    Api::<Secret>::namespaced(client.clone(), ISTIO_NAMESPACE)
        .patch(CACERTS_SECRET, &params, &Patch::Apply(&secret))
        .await
        .context("server-side apply of Secret istio-system/cacerts")?;
    tracing::info!(
        "plugged in the harness's CA (root {}) as istio-system/cacerts",
        ca.root_fingerprint()
    );
    Ok(())
}

/// Whether a healthy Istio is present: istiod's Deployment rolled out and available in
/// istio-system, and the VirtualService CRD Established.
pub async fn istio_present(client: &Client) -> anyhow::Result<bool> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ISTIO_NAMESPACE);
    let Some(istiod) = deployments
        .get_opt(ISTIOD)
        .await
        .context("looking for Deployment istio-system/istiod")?
    else {
        return Ok(false);
    };
    if !matches!(waits::deployment_rolled_out(&istiod), Check::Ready(())) {
        return Ok(false);
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get_opt(VIRTUAL_SERVICE_CRD)
        .await
        .context("looking for the VirtualService CRD")?;
    Ok(matches!(
        apply::crd_established(crd.as_ref()),
        Check::Ready(())
    ))
}

/// Waits until Deployment `namespace/name` has rolled out (see
/// [`waits::deployment_rolled_out`]).
pub async fn await_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
    bounds: Bounds,
    log: &WaitLog,
) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("Deployment {namespace}/{name} rolled out and available"),
        bounds,
        log,
        || {
            let api = api.clone();
            async move {
                Ok(match api.get_opt(name).await? {
                    None => Check::Pending("the Deployment does not exist".into()),
                    Some(d) => waits::deployment_rolled_out(&d),
                })
            }
        },
    )
    .await
}

/// Waits until the injector webhook has a caBundle, equal to the plugged-in root if any.
pub async fn await_webhook_ca_bundle(
    client: &Client,
    expected_root: Option<&str>,
    bounds: Bounds,
    log: &WaitLog,
) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    wait_for(
        &format!("a caBundle in MutatingWebhookConfiguration {INJECTOR_WEBHOOK}"),
        bounds,
        log,
        || {
            let api = api.clone();
            async move {
                Ok(match api.get_opt(INJECTOR_WEBHOOK).await? {
                    None => Check::Pending("the webhook configuration does not exist".into()),
                    Some(w) => waits::webhook_ca_bundle(&w, expected_root),
                })
            }
        },
    )
    .await
}

/// Waits until a pod matching `selector` in `namespace` is ready; returns its name.
pub async fn await_ready_pod(
    client: &Client,
    namespace: &str,
    selector: &str,
    bounds: Bounds,
    log: &WaitLog,
) -> anyhow::Result<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("a ready pod `{selector}` in {namespace}"),
        bounds,
        log,
        || {
            let api = api.clone();
            async move {
                let pods = api.list(&ListParams::default().labels(selector)).await?;
                let mut seen = Vec::new();
                for pod in pods
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    match waits::pod_ready(pod) {
                        Check::Ready(()) => {
                            return Ok(Check::Ready(pod.metadata.name.clone().unwrap_or_default()));
                        }
                        Check::Pending(s) => seen.push(s),
                        Check::Failed(e) => seen.push(e.to_string()),
                    }
                }
                if seen.is_empty() {
                    seen.push("no pods".into());
                }
                Ok(Check::Pending(seen.join("; ")))
            }
        },
    )
    .await
}

/// Where the weights of an entry point are read back.
#[derive(Debug, Clone)]
struct ProxyView {
    entry: EntryPoint,
    proxy: ProxyRef,
    route_config: String,
    domain: String,
}

/// Polls the config_dump of every proxy until each routes with `weights` (weight-0
/// destinations are absent there: Istio drops them). A config_dump that cannot be read counts
/// as "not yet" for that proxy; on giving up, the error names each proxy and what it last
/// reported.
async fn await_proxy_weights(
    dumps: &dyn ConfigDumps,
    views: &[ProxyView],
    weights: &Weights,
    bounds: Bounds,
    log: &WaitLog,
) -> anyhow::Result<()> {
    let what = format!(
        "the proxies ({}) to route with {weights:?}",
        views
            .iter()
            .map(|v| format!("{} route `{}`", v.proxy, v.route_config))
            .collect::<Vec<_>>()
            .join("; ")
    );
    wait_for(&what, bounds, log, move || async move {
        let mut seen = Vec::new();
        let mut all_match = true;
        for v in views {
            let state = match dumps.dump(&v.proxy).await {
                Ok(dump) => {
                    let observed = config_dump::observed_route(&dump, &v.route_config, &v.domain);
                    let matches = observed
                        .as_ref()
                        .is_some_and(|o| config_dump::matches_weights(o, weights));
                    all_match &= matches;
                    let state = config_dump::describe(observed.as_ref());
                    if matches {
                        format!("{state} (as wanted)")
                    } else {
                        state
                    }
                }
                Err(e) => {
                    all_match = false;
                    format!("config_dump failed: {e:#}")
                }
            };
            seen.push(format!("{}: {state}", v.proxy));
        }
        Ok(if all_match {
            Check::Ready(())
        } else {
            Check::Pending(seen.join("; "))
        })
    })
    .await
}

pub struct IstioMesh {
    client: Client,
    routing: Routing,
    options: IstioOptions,
    log: WaitLog,
    views: Vec<ProxyView>,
    ingress: Option<Arc<PortForwardTarget>>,
    mesh: Option<Arc<ExecCurlTarget>>,
    client_pod: Option<String>,
}

impl IstioMesh {
    /// Checks istiod + webhook caBundle, applies the manifests (SSA), waits for the
    /// Deployments, checks injection (namespace label, istio-proxy in every podinfo pod) and
    /// the workload certificate chain, starts the mesh client pod and the gateway
    /// port-forward. On failure, a diagnostics bundle goes to `work_dir/diagnostics` and the
    /// error names it.
    pub async fn start(
        client: Client,
        routing: &Routing,
        options: IstioOptions,
    ) -> anyhow::Result<Self> {
        let mut mesh = IstioMesh {
            client,
            routing: routing.clone(),
            options,
            log: WaitLog::default(),
            views: Vec::new(),
            ingress: None,
            mesh: None,
            client_pod: None,
        };
        match mesh.start_steps().await {
            Ok(()) => Ok(mesh),
            Err(e) => {
                let dir = mesh.options.work_dir.join("diagnostics");
                match mesh.diagnostics(&dir).await {
                    Ok(()) => Err(e.context(format!("diagnostics in {}", dir.display()))),
                    Err(d) => Err(e.context(format!("(writing diagnostics failed too: {d:#})"))),
                }
            }
        }
    }

    fn bounds(&self) -> Bounds {
        Bounds::new(self.options.wait)
    }

    async fn start_steps(&mut self) -> anyhow::Result<()> {
        let client = self.client.clone();
        let bounds = self.bounds();
        let log = self.log.clone();
        let root = self.options.ca.as_ref().map(|c| c.root_cert_pem.clone());

        await_deployment(&client, ISTIO_NAMESPACE, ISTIOD, bounds, &log).await?;
        await_webhook_ca_bundle(&client, root.as_deref(), bounds, &log).await?;

        let objects: Vec<serde_json::Value> = self
            .routing
            .manifests
            .objects
            .iter()
            .map(|o| o.value.clone())
            .collect();
        apply::apply_manifests(&client, &objects, bounds, &log).await?;
        for d in &self.routing.manifests.deployments {
            let ns = d
                .value
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| self.routing.namespace.clone());
            await_deployment(&client, &ns, &d.value.metadata.name, bounds, &log).await?;
        }

        // Injection: the namespace asks for it and every pod of every Deployment got it.
        let ns_name = self.routing.namespace.clone();
        let ns = Api::<Namespace>::all(client.clone())
            .get(&ns_name)
            .await
            .with_context(|| format!("reading Namespace {ns_name}"))?;
        injection::check_namespace(&ns)?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns_name);
        let mut first_workload = None;
        for d in &self.routing.manifests.deployments {
            let selector = injection::selector(&d.value.spec.template.metadata.labels);
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .with_context(|| {
                    format!("listing the pods of Deployment {}", d.value.metadata.name)
                })?;
            injection::check_pods(
                &list.items,
                &format!("Deployment {ns_name}/{}", d.value.metadata.name),
            )?;
            if first_workload.is_none() {
                first_workload = list.items.first().and_then(|p| p.metadata.name.clone());
            }
        }
        log.note("injection: the namespace is labelled and every podinfo pod runs istio-proxy");

        if let Some(pod) = first_workload {
            self.check_workload_certificate(&pods, &pod).await?;
        }

        let entries = self.routing.entry_points();
        if entries.contains(&EntryPoint::Mesh) {
            self.start_client(&pods).await?;
        }
        if entries.contains(&EntryPoint::Ingress) {
            self.start_gateway().await?;
        }
        Ok(())
    }

    /// The certificate the workload's proxy serves chains to the plugged-in root.
    async fn check_workload_certificate(&self, pods: &Api<Pod>, pod: &str) -> anyhow::Result<()> {
        let Some(ca) = &self.options.ca else {
            self.log
                .note("workload certificate: not checked (the cluster's Istio has its own CA)");
            return Ok(());
        };
        let chain = wait_for(
            &format!(
                "the workload certificate of pod {pod} (SDS secret `default` in its config_dump)"
            ),
            Bounds {
                timeout: self.options.wait,
                interval: Duration::from_secs(2),
            },
            &self.log,
            || async move {
                let dump = proxy::config_dump(pods, pod, DUMP_TIMEOUT).await?;
                Ok(match proxy::workload_chain(&dump) {
                    Some(c) => Check::Ready(c),
                    None => Check::Pending("the proxy has no `default` secret yet".into()),
                })
            },
        )
        .await?;
        ca::verify_chain(&chain, &ca.root_cert_pem)
            .with_context(|| format!("the workload certificate of pod {pod}"))?;
        self.log.note(format!(
            "workload certificate of {pod} chains to the harness's root {}",
            ca.root_fingerprint()
        ));
        Ok(())
    }

    async fn start_client(&mut self, pods: &Api<Pod>) -> anyhow::Result<()> {
        let ns = self.routing.namespace.clone();
        let manifest = exec_target::client_pod_manifest(&ns, &self.routing.subsets[0].image);
        let mut resolver = apply::Resolver::default();
        apply::apply_object(&self.client, &mut resolver, &manifest).await?;
        self.client_pod = Some(CLIENT_POD.to_string());
        let pod = await_ready_pod(
            &self.client,
            &ns,
            &format!("app={CLIENT_POD}"),
            self.bounds(),
            &self.log,
        )
        .await?;
        let got = pods.get(&pod).await?;
        injection::check_pods(&[got], &format!("the mesh client pod {ns}/{pod}"))?;
        let short = self
            .routing
            .host
            .split('.')
            .next()
            .unwrap_or(&self.routing.host);
        let url = format!("http://{short}.{ns}:{}/", self.routing.port);
        self.mesh = Some(Arc::new(ExecCurlTarget::new(pods.clone(), &pod, &url)));
        // The sidecar's outbound route configuration is named after the service port; its
        // virtual host lists the service's FQDN among its domains (Istio's
        // generateVirtualHostDomains, without a port suffix for sidecars).
        self.views.push(ProxyView {
            entry: EntryPoint::Mesh,
            proxy: ProxyRef {
                label: "mesh-client".into(),
                namespace: ns,
                pod,
            },
            route_config: self.routing.port.to_string(),
            domain: self.routing.host.clone(),
        });
        Ok(())
    }

    async fn start_gateway(&mut self) -> anyhow::Result<()> {
        let binding = self
            .routing
            .gateway
            .clone()
            .context("the VirtualService is bound to no Gateway")?;
        let labels = gateway::gateway_selector(&self.routing);
        let selector = injection::selector(&labels);
        let pod = await_ready_pod(
            &self.client,
            ISTIO_NAMESPACE,
            &selector,
            self.bounds(),
            &self.log,
        )
        .await?;
        let services: Api<Service> = Api::namespaced(self.client.clone(), ISTIO_NAMESPACE);
        let list = services
            .list(&ListParams::default())
            .await
            .context("listing the Services of istio-system")?;
        let pod_obj: Pod = Api::<Pod>::namespaced(self.client.clone(), ISTIO_NAMESPACE)
            .get(&pod)
            .await?;
        let pod_labels: BTreeMap<String, String> = pod_obj.metadata.labels.unwrap_or_default();
        let port = gateway::target_port(&list.items, &pod_labels, binding.port);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ISTIO_NAMESPACE);
        let target = PortForwardTarget::start(pods, &pod, port, &binding.host).await?;
        self.ingress = Some(Arc::new(target));
        self.views.push(ProxyView {
            entry: EntryPoint::Ingress,
            proxy: ProxyRef {
                label: "gateway".into(),
                namespace: ISTIO_NAMESPACE.to_string(),
                pod,
            },
            route_config: gateway::route_config_name(port),
            domain: binding.host.clone(),
        });
        Ok(())
    }

    /// The proxies' config_dumps, read through exec.
    fn dumps(&self) -> ExecConfigDumps {
        ExecConfigDumps {
            client: self.client.clone(),
            timeout: DUMP_TIMEOUT,
        }
    }
}

#[async_trait]
impl Mesh for IstioMesh {
    fn kind(&self) -> &'static str {
        self.options.mesh_kind
    }

    fn entry_points(&self) -> Vec<EntryPoint> {
        let mut out: Vec<EntryPoint> = self.views.iter().map(|v| v.entry).collect();
        out.sort();
        out
    }

    async fn apply(&mut self, virtual_service: &VirtualService) -> anyhow::Result<()> {
        apply::apply_virtual_service(&self.client, virtual_service).await
    }

    /// Polls the config_dump of the gateway and of the client's sidecar until both route with
    /// `weights` (see [`await_proxy_weights`]).
    async fn await_weights(&mut self, weights: &Weights, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let bounds = Bounds {
            timeout,
            interval: Duration::from_millis(500),
        };
        await_proxy_weights(&self.dumps(), &self.views, weights, bounds, &self.log).await?;
        tracing::debug!("weights reached the proxies after {:?}", started.elapsed());
        Ok(())
    }

    fn target(&self, entry: EntryPoint) -> anyhow::Result<Arc<dyn Target>> {
        match entry {
            EntryPoint::Ingress => Ok(self
                .ingress
                .clone()
                .context("no port-forward to the ingress gateway")?),
            EntryPoint::Mesh => Ok(self.mesh.clone().context("no mesh client pod")?),
        }
    }

    async fn diagnostics(&self, dir: &Path) -> anyhow::Result<()> {
        let proxies: Vec<ProxyRef> = self.views.iter().map(|v| v.proxy.clone()).collect();
        let namespaces = [self.routing.namespace.as_str(), ISTIO_NAMESPACE];
        let dumps = self.dumps();
        diagnostics::collect(&self.client, &dumps, dir, &namespaces, &proxies, &self.log).await
    }

    async fn shutdown(mut self: Box<Self>) -> anyhow::Result<()> {
        if let Some(pf) = self.ingress.take() {
            pf.stop();
        }
        self.mesh = None;
        if let Some(pod) = self.client_pod.take() {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.routing.namespace);
            let deleted = tokio::time::timeout(
                Duration::from_secs(30),
                pods.delete(&pod, &DeleteParams::default().grace_period(1)),
            )
            .await;
            match deleted {
                Ok(Ok(_)) => {}
                Ok(Err(kube::Error::Api(e))) if e.code == 404 => {}
                Ok(Err(e)) => bail!("deleting the mesh client pod {pod}: {e}"),
                Err(_) => bail!("deleting the mesh client pod {pod} took longer than 30 s"),
            }
        }
        Ok(())
    }
}

/// Dropping the mesh stops the port-forward (its task is aborted) and asks the API server to
/// delete the client pod in the background, when a runtime is still there to do it.
impl Drop for IstioMesh {
    fn drop(&mut self) {
        if let Some(pf) = self.ingress.take() {
            pf.stop();
        }
        if let Some(pod) = self.client_pod.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.routing.namespace);
            handle.spawn(async move {
                let _ = pods
                    .delete(&pod, &DeleteParams::default().grace_period(1))
                    .await;
            });
        }
    }
}

/// For --dry-run: the Kubernetes objects the run applies, in order, and the waits it makes.
pub fn plan_lines(routing: &Routing) -> Vec<String> {
    let mut out = vec![
        format!("wait: Deployment {ISTIO_NAMESPACE}/{ISTIOD} rolled out and available"),
        format!(
            "wait: MutatingWebhookConfiguration {INJECTOR_WEBHOOK} has a caBundle (the plugged-in root when the harness's CA is used)"
        ),
    ];
    let objects: Vec<serde_json::Value> = routing
        .manifests
        .objects
        .iter()
        .map(|o| o.value.clone())
        .collect();
    let ordered = apply::ordered(&objects);
    let ssa = format!("server-side apply (field manager {FIELD_MANAGER}, force)");
    for o in ordered.iter().filter(|o| !apply::is_istio(o)) {
        out.push(format!("apply: {} — {ssa}", apply::describe(o)));
    }
    for crd in apply::needed_crds(&objects) {
        out.push(format!("wait: CRD {crd} Established"));
    }
    for o in ordered.iter().filter(|o| apply::is_istio(o)) {
        out.push(format!("apply: {} — {ssa}", apply::describe(o)));
    }
    for d in &routing.manifests.deployments {
        let ns = d
            .value
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(&routing.namespace);
        out.push(format!(
            "wait: Deployment {ns}/{} rolled out (observedGeneration, available replicas)",
            d.value.metadata.name
        ));
    }
    out.push(format!(
        "check: Namespace {} has istio-injection=enabled; every pod of the Deployments runs istio-proxy",
        routing.namespace
    ));
    out.push(
        "check: the workload certificate a podinfo proxy serves chains to the harness's root"
            .into(),
    );
    let entries = routing.entry_points();
    if entries.contains(&EntryPoint::Mesh) {
        out.push(format!(
            "apply: Pod {}/{CLIENT_POD} (podinfo's image, gets a sidecar) — {ssa}",
            routing.namespace
        ));
        out.push(format!(
            "wait: Pod {}/{CLIENT_POD} ready",
            routing.namespace
        ));
    }
    if let Some(g) = &routing.gateway
        && entries.contains(&EntryPoint::Ingress)
    {
        out.push(format!(
            "wait: a ready ingress gateway pod in {ISTIO_NAMESPACE} ({}); port-forward 127.0.0.1:<free> → its container port for Gateway port {} (Host {})",
            injection::selector(&gateway::gateway_selector(routing)),
            g.port,
            g.host
        ));
    }
    let vs = &routing.virtual_service.value;
    out.push(format!(
        "per stage: apply VirtualService {}/{} with the stage's weights — {ssa}",
        vs.metadata
            .namespace
            .as_deref()
            .unwrap_or(&routing.namespace),
        vs.metadata.name
    ));
    out.push(
        "per stage: wait until the gateway's and the client sidecar's Envoy report the weights (pilot-agent request GET config_dump)".into(),
    );
    out.push(format!(
        "end: delete Pod {}/{CLIENT_POD}; stop the port-forward (the cluster stays)",
        routing.namespace
    ));
    out
}
