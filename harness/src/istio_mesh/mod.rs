//! The Istio mesh on a Kubernetes cluster (kind, or one the user already has), driven with
//! kube-rs: the executor of the cluster plan's steps ([`crate::cluster::plan`]) and of the
//! stage walk.
//!
//! Set-up steps are bounded, named waits whose failure says what they saw. Per stage, the
//! VirtualService is server-side applied and the weights are read back from the gateway's and
//! the client sidecar's Envoy (`config_dump`) before a single sample counts. Everything the run
//! creates is recorded before it is sent, and the teardown deletes exactly that.

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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::ca::{self, CaBundle};
use crate::cluster::plan::{self as cluster_plan, Teardown};
use crate::config_dump;
use crate::mesh::{Mesh, Rollout};
use crate::prober::Target;
use crate::report::ClusterChanges;
use crate::routing::{EntryPoint, Routing, Staged};
use crate::scenario::Weights;
use crate::steps::{
    Action, Apply, ApplyHow, Condition, FileKind, ObjectRef, Open, Root, Run, Step, Via, Wait,
};

use self::exec_target::ExecCurlTarget;
use self::portforward_target::PortForwardTarget;
use self::proxy::{ConfigDumps, ExecConfigDumps, ProxyRef};
use self::waits::{Bounds, Check, WaitLog, wait_for};

/// The one field manager of every server-side apply of the harness.
pub const FIELD_MANAGER: &str = "canary-harness";
/// The plug-in CA secret istiod reads at start-up.
pub const CACERTS_SECRET: &str = "cacerts";
/// The ConfigMap in which Istio publishes its root to every namespace.
pub const ROOT_CONFIGMAP: &str = "istio-ca-root-cert";
/// Bound of one config_dump exec.
const DUMP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between attempts of a retried run (kind's start-up fails now and then).
const PAUSE_BETWEEN_ATTEMPTS: Duration = if cfg!(test) {
    Duration::from_millis(10)
} else {
    Duration::from_secs(5)
};

/// Where the cluster's credentials are: a kubeconfig file (the harness's own for kind, the
/// user's for `existing`) and an optional context. For kind the file exists only once kind
/// wrote it, so the client is made on first use.
#[derive(Debug, Clone)]
pub struct Access {
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
}

/// A kube::Client from a kubeconfig file and optional context, never touching
/// `~/.kube/config` or `$KUBECONFIG`.
pub async fn client_from_kubeconfig(path: &Path, context: Option<&str>) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    client_from(kubeconfig, context, &path.display().to_string()).await
}

/// A kube::Client from kubeconfig YAML (`kind get kubeconfig` prints one).
pub async fn client_from_yaml(yaml: &str, origin: &str) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::from_yaml(yaml)
        .with_context(|| format!("parsing the kubeconfig of {origin}"))?;
    client_from(kubeconfig, None, origin).await
}

async fn client_from(
    kubeconfig: Kubeconfig,
    context: Option<&str>,
    origin: &str,
) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| {
            format!(
                "loading context {} of {origin}",
                context.unwrap_or("(current)")
            )
        })?;
    Client::try_from(config).context("building the Kubernetes client")
}

/// The `istio-system` Namespace and the `cacerts` Secret the harness creates (never updates).
pub fn cacerts_objects(ca: &CaBundle) -> (serde_json::Value, serde_json::Value) {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": gateway::ISTIO_NAMESPACE},
    });
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": CACERTS_SECRET, "namespace": gateway::ISTIO_NAMESPACE},
        "data": {
            ca::CA_CERT_FILE: b64(&ca.ca_cert_pem),
            ca::CA_KEY_FILE: b64(&ca.ca_key_pem),
            ca::ROOT_CERT_FILE: b64(&ca.root_cert_pem),
            ca::CERT_CHAIN_FILE: b64(&ca.cert_chain_pem),
        },
    });
    (namespace, secret)
}

/// Where the weights of an entry point are read back.
#[derive(Debug, Clone)]
struct ProxyView {
    entry: EntryPoint,
    proxy: ProxyRef,
    route_config: String,
    domain: String,
    /// The split route's name, where it has one.
    split: Option<String>,
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
                    let observed = config_dump::observed_route(
                        &dump,
                        &v.route_config,
                        &v.domain,
                        v.split.as_deref(),
                    );
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

/// The Istio mesh of one run: what it may do was decided by its plan; this executes it.
pub struct IstioMesh {
    mesh_kind: &'static str,
    routing: Routing,
    access: Access,
    client: Option<Client>,
    /// The CA the plan writes and plugs in, when it makes one.
    new_ca: Option<CaBundle>,
    dumps: Option<Arc<dyn ConfigDumps>>,
    log: WaitLog,
    views: Vec<ProxyView>,
    ingress: Option<Arc<PortForwardTarget>>,
    mesh: Option<Arc<ExecCurlTarget>>,
    /// Every step attempted, in order: what the teardown undoes.
    executed: Vec<Step>,
    /// The planned set-up: what a dry run's rollouts start from.
    planned: Vec<Step>,
    teardown: Teardown,
    changes: ClusterChanges,
}

impl IstioMesh {
    /// The set-up this mesh was planned with: a dry run's rollouts start from its objects.
    pub fn set_plan(&mut self, setup: &[Step]) {
        self.planned = setup.to_vec();
    }

    pub fn new(
        mesh_kind: &'static str,
        routing: &Routing,
        access: Access,
        new_ca: Option<CaBundle>,
        teardown: Teardown,
    ) -> Self {
        Self {
            mesh_kind,
            routing: routing.clone(),
            access,
            client: None,
            new_ca,
            dumps: None,
            log: WaitLog::default(),
            views: Vec::new(),
            ingress: None,
            mesh: None,
            executed: Vec::new(),
            planned: Vec::new(),
            teardown,
            changes: ClusterChanges::default(),
        }
    }

    /// Uses a client the plan already made (the user's cluster was read to plan the run).
    pub fn set_client(&mut self, client: Client) {
        self.client = Some(client);
    }

    /// Reads the proxies' config_dumps from `dumps` instead of exec (tests: a mocked API
    /// server cannot complete exec's websocket upgrade).
    pub fn with_config_dumps(mut self, dumps: Arc<dyn ConfigDumps>) -> Self {
        self.dumps = Some(dumps);
        self
    }

    async fn client(&mut self) -> anyhow::Result<Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client =
            client_from_kubeconfig(&self.access.kubeconfig, self.access.context.as_deref()).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn dumps(&mut self) -> anyhow::Result<Arc<dyn ConfigDumps>> {
        if let Some(d) = &self.dumps {
            return Ok(d.clone());
        }
        let dumps: Arc<dyn ConfigDumps> = Arc::new(ExecConfigDumps {
            client: self.client().await?,
            timeout: DUMP_TIMEOUT,
        });
        self.dumps = Some(dumps.clone());
        Ok(dumps)
    }

    async fn run(&mut self, run: &Run) -> anyhow::Result<()> {
        let attempts = run.retry.as_ref().map_or(1, |r| r.attempts.max(1));
        let mut last = None;
        for attempt in 1..=attempts {
            let log = run.log.as_ref().map(|l| numbered(l, attempt, attempts));
            let result = match run.invocation.run(run.timeout, log.as_deref()).await {
                Ok(_) => match &run.retry {
                    Some(retry) => self.wait(&retry.until).await,
                    None => Ok(()),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    if let Some(file) = &run.then_remove {
                        let _ = std::fs::remove_file(file);
                    }
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!("attempt {attempt}/{attempts} failed: {e:#}");
                    last = Some(e);
                    if let Some(retry) = run.retry.as_ref().filter(|_| attempt < attempts) {
                        // A new client for the next attempt's cluster.
                        self.client = None;
                        self.dumps = None;
                        if let Err(e) = retry.cleanup.run(run.timeout, None).await {
                            tracing::warn!("cleaning up after the failed attempt: {e:#}");
                        }
                        tokio::time::sleep(PAUSE_BETWEEN_ATTEMPTS).await;
                    }
                }
            }
        }
        let err = last.expect("at least one attempt");
        let err = if attempts > 1 {
            err.context(format!("failed {attempts} attempts"))
        } else {
            err
        };
        Err(with_fix(err, run.fix.as_deref()))
    }

    fn write(&mut self, path: &Path, file: &FileKind) -> anyhow::Result<()> {
        match file {
            FileKind::Dir => std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display())),
            FileKind::PrivateDir => crate::cluster::kind::create_private_dir(path),
            FileKind::CaBundle => {
                let ca = self
                    .new_ca
                    .as_ref()
                    .context("the plan made no CA to write")?;
                ca.write_to(path).map(|_| ())
            }
            FileKind::OwnershipMarker { cluster } => {
                crate::cluster::kind::write_marker(path, cluster)
            }
            FileKind::IstioOperator => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(path, crate::cluster::istioctl::OPERATOR_YAML)
                    .with_context(|| format!("writing {}", path.display()))
            }
            other => bail!("the cluster mesh writes no {other:?}"),
        }
    }

    async fn apply(&mut self, apply: &Apply) -> anyhow::Result<()> {
        let client = self.client().await?;
        let what = apply.object.to_string();
        if !apply.dry_run && !self.changes.created.contains(&what) {
            if apply.how.creates() {
                self.changes.created.push(what.clone());
            } else {
                self.changes.changed.push(what.clone());
            }
        }
        apply::send(&client, apply).await
    }

    async fn delete(&mut self, object: &ObjectRef) -> anyhow::Result<()> {
        let client = self.client().await?;
        let gone = apply::delete(&client, object).await?;
        let what = object.to_string();
        self.changes.created.retain(|c| c != &what || !gone);
        self.changes.deleted.push(what);
        Ok(())
    }

    async fn wait(&mut self, wait: &Wait) -> anyhow::Result<()> {
        let bounds = Bounds::new(wait.bound);
        let what = wait.condition.to_string();
        let log = self.log.clone();
        let client = self.client().await?;
        match &wait.condition {
            Condition::NodeReady { .. } => {
                let nodes: Api<Node> = Api::all(client);
                wait_for(&what, bounds, &log, || {
                    let nodes = nodes.clone();
                    async move {
                        Ok(waits::nodes_ready(
                            &nodes.list(&ListParams::default()).await?.items,
                        ))
                    }
                })
                .await
            }
            Condition::DeploymentRolledOut { namespace, name } => {
                let api: Api<Deployment> = Api::namespaced(client, namespace);
                wait_for(&what, bounds, &log, || {
                    let api = api.clone();
                    async move {
                        Ok(match api.get_opt(name).await? {
                            None => Check::Pending("the Deployment does not exist".into()),
                            Some(d) => waits::deployment_rolled_out(&d),
                        })
                    }
                })
                .await
            }
            Condition::InjectorCaBundle { revision, root } => {
                let api: Api<MutatingWebhookConfiguration> = Api::all(client);
                let selector = format!("{}={revision}", crate::cluster::facts::REVISION_LABEL);
                let root = match root {
                    Some(Root::Pem { pem, .. }) => Some(pem.clone()),
                    _ => None,
                };
                wait_for(&what, bounds, &log, || {
                    let api = api.clone();
                    let params = ListParams::default().labels(&selector);
                    let root = root.clone();
                    async move {
                        let hooks = api.list(&params).await?.items;
                        Ok(waits::injector_ca_bundles(&hooks, root.as_deref()))
                    }
                })
                .await
            }
            Condition::CrdEstablished { name } => {
                let api: Api<CustomResourceDefinition> = Api::all(client);
                wait_for(&what, bounds, &log, || {
                    let api = api.clone();
                    async move { Ok(apply::crd_established(api.get_opt(name).await?.as_ref())) }
                })
                .await
            }
            Condition::NamespaceInjection { namespace, label } => {
                let api: Api<Namespace> = Api::all(client);
                wait_for(&what, bounds, &log, || {
                    let api = api.clone();
                    async move {
                        Ok(match api.get_opt(namespace).await? {
                            None => Check::Pending("the Namespace does not exist".into()),
                            Some(ns) => injection::namespace_asks(&ns, label),
                        })
                    }
                })
                .await
            }
            Condition::PodsInjected {
                namespace,
                deployment,
                selector,
            } => {
                let pods: Api<Pod> = Api::namespaced(client, namespace);
                let params = ListParams::default().labels(&crate::steps::selector_text(selector));
                let of = format!("Deployment {namespace}/{deployment}");
                wait_for(&what, bounds, &log, || {
                    let pods = pods.clone();
                    let params = params.clone();
                    let of = of.clone();
                    async move {
                        Ok(injection::pods_injected(
                            &pods.list(&params).await?.items,
                            &of,
                        ))
                    }
                })
                .await
            }
            Condition::WorkloadCertificate {
                namespace,
                selector,
                root,
                ..
            } => {
                let root_pem = match root {
                    Root::Pem { pem, .. } => pem.clone(),
                    Root::MeshConfigMap { namespace } => mesh_root(&client, namespace).await?,
                };
                let pods: Api<Pod> = Api::namespaced(client, namespace);
                let dumps = self.dumps().await?;
                let params = ListParams::default().labels(&crate::steps::selector_text(selector));
                let (pod, chain) = wait_for(
                    &what,
                    Bounds {
                        timeout: wait.bound,
                        interval: Duration::from_secs(2),
                    },
                    &log,
                    || {
                        let pods = pods.clone();
                        let params = params.clone();
                        let dumps = dumps.clone();
                        let namespace = namespace.clone();
                        async move {
                            let list = pods.list(&params).await?.items;
                            let Some(pod) = waits::live_ready_pod(&list) else {
                                return Ok(Check::Pending(
                                    "no ready pod that is not being deleted".into(),
                                ));
                            };
                            let proxy = ProxyRef {
                                label: "workload".into(),
                                namespace,
                                pod: pod.clone(),
                            };
                            let dump = dumps.dump(&proxy).await?;
                            Ok(match proxy::workload_chain(&dump) {
                                Some(c) => Check::Ready((pod, c)),
                                None => Check::Pending(format!(
                                    "the proxy of pod {pod} has no `default` secret yet"
                                )),
                            })
                        }
                    },
                )
                .await?;
                ca::verify_chain(&chain, &root_pem).with_context(|| {
                    format!("the workload certificate of pod {namespace}/{pod}")
                })?;
                self.log.note(format!(
                    "workload certificate of {namespace}/{pod} chains to {root}"
                ));
                Ok(())
            }
            Condition::PodReady { namespace, name } => {
                let pods: Api<Pod> = Api::namespaced(client, namespace);
                wait_for(&what, bounds, &log, || {
                    let pods = pods.clone();
                    async move {
                        Ok(match pods.get_opt(name).await? {
                            None => Check::Pending("the pod does not exist".into()),
                            Some(p) => waits::pod_ready_with_proxy(&p),
                        })
                    }
                })
                .await
            }
            other => bail!("the cluster mesh cannot wait for {other}"),
        }
    }

    async fn open(&mut self, open: &Open) -> anyhow::Result<()> {
        let client = self.client().await?;
        match &open.via {
            Via::Exec {
                namespace,
                pod,
                url,
                ..
            } => {
                let pods: Api<Pod> = Api::namespaced(client, namespace);
                self.mesh = Some(Arc::new(ExecCurlTarget::new(pods, pod, url)));
                // The sidecar's outbound route configuration is named after the service port;
                // its virtual host lists the service's FQDN among its domains (Istio's
                // generateVirtualHostDomains, without a port suffix for sidecars).
                self.views.push(ProxyView {
                    entry: EntryPoint::Mesh,
                    proxy: ProxyRef {
                        label: "mesh-client".into(),
                        namespace: namespace.clone(),
                        pod: pod.clone(),
                    },
                    route_config: self.routing.port.to_string(),
                    domain: self.routing.host.clone(),
                    split: self.routing.split_route_name().map(str::to_string),
                });
                Ok(())
            }
            Via::PortForward {
                selector,
                gateway_port,
                host,
            } => {
                let (namespace, pod, port) =
                    gateway::find_gateway(&client, selector, *gateway_port).await?;
                let pods: Api<Pod> = Api::namespaced(client, &namespace);
                let target = PortForwardTarget::start(pods, &pod, port, host).await?;
                self.ingress = Some(Arc::new(target));
                self.views.push(ProxyView {
                    entry: EntryPoint::Ingress,
                    proxy: ProxyRef {
                        label: "gateway".into(),
                        namespace,
                        pod,
                    },
                    route_config: gateway::route_config_name(port),
                    domain: host.clone(),
                    split: self.routing.split_route_name().map(str::to_string),
                });
                Ok(())
            }
            Via::Listener { .. } => bail!("the cluster mesh has no local listeners"),
        }
    }
}

/// The error with the step's fix after it, as input errors show theirs.
pub fn with_fix(err: anyhow::Error, fix: Option<&str>) -> anyhow::Error {
    match fix {
        Some(fix) => anyhow::anyhow!("{err:#}\n  fix: {fix}"),
        None => err,
    }
}

/// `kind-create.log` → `kind-create-2.log` for the second of several attempts.
fn numbered(log: &Path, attempt: u32, attempts: u32) -> PathBuf {
    if attempts == 1 {
        return log.to_path_buf();
    }
    let stem = log.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    let ext = log.extension().and_then(|s| s.to_str()).unwrap_or("log");
    log.with_file_name(format!("{stem}-{attempt}.{ext}"))
}

/// The root Istio publishes in `namespace` (ConfigMap `istio-ca-root-cert`, key
/// `root-cert.pem`).
async fn mesh_root(client: &Client, namespace: &str) -> anyhow::Result<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api
        .get(ROOT_CONFIGMAP)
        .await
        .with_context(|| format!("reading ConfigMap {namespace}/{ROOT_CONFIGMAP}"))?;
    cm.data
        .and_then(|d| d.get(ca::ROOT_CERT_FILE).cloned())
        .with_context(|| format!("ConfigMap {namespace}/{ROOT_CONFIGMAP} has no root-cert.pem"))
}

#[async_trait]
impl Mesh for IstioMesh {
    fn kind(&self) -> &'static str {
        self.mesh_kind
    }

    async fn execute(&mut self, step: &Step) -> anyhow::Result<()> {
        self.executed.push(step.clone());
        match &step.action {
            Action::Use { path, .. } => {
                anyhow::ensure!(
                    crate::tools::executable(path),
                    "{} is not an executable file",
                    path.display()
                );
                Ok(())
            }
            Action::Fetch(fetch) => crate::tools::release::fetch(fetch).await.map(|_| ()),
            Action::Run(run) => self.run(run).await,
            Action::Write(w) => self.write(&w.path, &w.file),
            Action::Apply(a) => self.apply(a).await,
            Action::Wait(w) => self.wait(w).await,
            Action::Open(o) => self.open(o).await,
            Action::Delete(o) => self.delete(o).await,
            Action::Skip(why) => {
                if why.contains("kept") || why.contains("--keep") {
                    self.changes.left.push(why.clone());
                }
                Ok(())
            }
            Action::Start(_) | Action::Stop(_) => {
                bail!("the cluster mesh starts no local processes")
            }
        }
    }

    fn teardown(&self) -> Vec<Step> {
        // Stop the port-forward first: it holds streams to a pod about to go.
        if let Some(pf) = &self.ingress {
            pf.stop();
        }
        let done: Vec<Step> = self
            .executed
            .iter()
            .filter(|s| s.section != crate::steps::Section::Teardown)
            .cloned()
            .collect();
        cluster_plan::teardown(&done, &self.teardown)
    }

    fn entry_points(&self) -> Vec<EntryPoint> {
        let mut out: Vec<EntryPoint> = self.views.iter().map(|v| v.entry).collect();
        out.sort();
        out
    }

    async fn apply(&mut self, staged: &Staged) -> anyhow::Result<()> {
        let client = self.client().await?;
        apply::apply_virtual_service(&client, &staged.body).await
    }

    /// Polls the config_dump of the gateway and of the client's sidecar until both route with
    /// `weights` (see [`await_proxy_weights`]).
    async fn await_weights(&mut self, weights: &Weights, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let bounds = Bounds {
            timeout,
            interval: Duration::from_millis(500),
        };
        let dumps = self.dumps().await?;
        await_proxy_weights(dumps.as_ref(), &self.views, weights, bounds, &self.log).await?;
        tracing::debug!("weights reached the proxies after {:?}", started.elapsed());
        Ok(())
    }

    /// A rolling update of the subset's Deployment: the last body the run applied with the new
    /// image (and environment) on its first container, checked by the API server first, then
    /// applied with the same field manager, then waited for until every replica runs it.
    fn rollout_steps(&mut self, rollout: &Rollout, bound: Duration) -> anyhow::Result<Vec<Step>> {
        let subset = self
            .routing
            .subsets
            .iter()
            .find(|s| s.name == rollout.subset)
            .with_context(|| format!("no subset `{}` to roll out", rollout.subset))?;
        let last = self
            .executed
            .iter()
            .rev()
            .chain(self.planned.iter().rev())
            .find_map(|s| match &s.action {
                Action::Apply(a)
                    if !a.dry_run
                        && a.object.kind == "Deployment"
                        && a.object.name == subset.deployment =>
                {
                    Some(a.clone())
                }
                _ => None,
            })
            .with_context(|| {
                format!(
                    "the run applied no Deployment `{}` (subset `{}`), so it cannot roll it out",
                    subset.deployment, subset.name
                )
            })?;
        let body = apply::with_new_build(&last.body, &rollout.image, &rollout.env)?;
        // The run owns the object now, created or adopted: the same field manager applies it.
        let how = if last.how.creates() {
            ApplyHow::Reapply
        } else {
            last.how
        };
        let apply = |dry_run| {
            Step::new(
                crate::steps::Section::Deployments,
                Action::Apply(Apply {
                    object: last.object.clone(),
                    body: body.clone(),
                    how,
                    dry_run,
                }),
            )
        };
        Ok(vec![
            apply(true),
            apply(false),
            Step::new(
                crate::steps::Section::Deployments,
                Action::Wait(Wait {
                    condition: Condition::DeploymentRolledOut {
                        namespace: last
                            .object
                            .namespace
                            .clone()
                            .unwrap_or_else(|| "default".into()),
                        name: last.object.name.clone(),
                    },
                    bound,
                }),
            ),
        ])
    }

    /// The background load runs through the gateway's port-forward only: inside the mesh each
    /// request would be an exec of curl in the client pod, a load on the API server rather than
    /// on the service.
    fn load_target(
        &self,
        entry: EntryPoint,
    ) -> anyhow::Result<Option<Arc<dyn crate::load::LoadTarget>>> {
        match entry {
            EntryPoint::Ingress => Ok(Some(Arc::new(crate::load::FromTarget(self.target(entry)?)))),
            EntryPoint::Mesh => {
                tracing::info!(
                    "background load: through the ingress only (inside the mesh, a request is an exec in the client pod)"
                );
                Ok(None)
            }
        }
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
        let Some(client) = &self.client else {
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                dir.join("README.txt"),
                "The run failed before it reached the cluster's API server.\n",
            )?;
            return Ok(());
        };
        let proxies: Vec<ProxyRef> = self.views.iter().map(|v| v.proxy.clone()).collect();
        let mut namespaces = vec![self.routing.namespace.clone()];
        for v in &self.views {
            if !namespaces.contains(&v.proxy.namespace) {
                namespaces.push(v.proxy.namespace.clone());
            }
        }
        if !namespaces.iter().any(|n| n == gateway::ISTIO_NAMESPACE) {
            namespaces.push(gateway::ISTIO_NAMESPACE.to_string());
        }
        let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        let exec = ExecConfigDumps {
            client: client.clone(),
            timeout: DUMP_TIMEOUT,
        };
        let dumps: &dyn ConfigDumps = match &self.dumps {
            Some(d) => d.as_ref(),
            None => &exec,
        };
        diagnostics::collect(client, dumps, dir, &namespaces, &proxies, &self.log).await
    }

    fn cluster_changes(&self) -> ClusterChanges {
        let mut changes = self.changes.clone();
        if let Teardown::Kind { cluster, .. } = &self.teardown
            && self
                .executed
                .iter()
                .any(|s| matches!(&s.action, Action::Run(r) if r.then_remove.is_some()))
        {
            changes.deleted.push(format!(
                "kind cluster `{cluster}`, and with it everything the run created there"
            ));
            changes.created.clear();
        }
        changes
    }
}

/// Dropping the mesh stops the port-forward (its task is aborted).
impl Drop for IstioMesh {
    fn drop(&mut self) {
        if let Some(pf) = self.ingress.take() {
            pf.stop();
        }
    }
}
