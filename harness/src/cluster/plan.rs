//! The cluster part of a run as steps: a pure function of the [`ClusterFacts`] and of what the
//! user allowed. It decides, before anything is written, whether Istio is installed (never over
//! an Istio that is there), whether a plug-in CA is created (never over an existing `cacerts`),
//! and how each object of the manifests is written (created, re-applied because an earlier run
//! made it, or taken over only with `--adopt`); and it refuses, naming each object and the flag
//! that would allow it, whatever the user did not allow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::facts::{ClusterFacts, DEFAULT_REVISION, REVISION_LABEL};
use crate::ca::CaBundle;
use crate::input_error::{InputError, InputErrors};
use crate::istio_mesh::apply::{self, is_istio};
use crate::istio_mesh::exec_target;
use crate::istio_mesh::injection::INJECTION_LABEL;
use crate::istio_mesh::{CACERTS_SECRET, gateway};
use crate::routing::{EntryPoint, Routing};
use crate::steps::{
    Action, Apply, ApplyHow, Condition, FileKind, ObjectRef, Open, Root, Run, Section, Step, Via,
    Wait, Write,
};

/// Istio's namespace when the harness installs it.
pub const ISTIO_NAMESPACE: &str = gateway::ISTIO_NAMESPACE;
/// Bound on the whole `istioctl install`: image pulls, then its readiness wait.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// What an install of Istio by the harness needs.
#[derive(Debug, Clone)]
pub struct Install {
    /// How istioctl is provided (found, or fetched).
    pub tool_steps: Vec<Step>,
    /// `istioctl install -f <operator>` against the run's kubeconfig.
    pub run: crate::invocation::Invocation,
    /// The IstioOperator file it reads.
    pub operator: PathBuf,
    pub log: PathBuf,
    /// The state folder the CA goes in, when the plan has not made it already.
    pub state_dir: Option<PathBuf>,
    pub ca_dir: PathBuf,
    /// The CA the harness plugs in when the cluster has none.
    pub ca: CaBundle,
}

/// What the Istio part of a run may do, and where it does it.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub routing: &'a Routing,
    pub facts: &'a ClusterFacts,
    /// `Some` when the run may install Istio (kind; `--install-istio` on an existing cluster).
    pub install: Option<Install>,
    /// `--adopt`: objects of the manifests that someone else manages may be taken over.
    pub adopt: bool,
    /// The mesh client pod's name, unique per run.
    pub client_pod: String,
    /// Bound of every wait.
    pub bound: Duration,
    /// Names the cluster in refusals (the kubeconfig and context, or the kind cluster).
    pub cluster: String,
    /// The file refusals about the cluster point at (the kubeconfig).
    pub cluster_file: PathBuf,
}

/// The Istio part of the plan.
#[derive(Debug, Clone)]
pub struct IstioPlan {
    pub steps: Vec<Step>,
    /// The CA the run writes and plugs in, when it makes one.
    pub new_ca: Option<CaBundle>,
    /// Whether the run installs Istio.
    pub installs: bool,
}

fn step(section: Section, action: Action) -> Step {
    Step::new(section, action)
}

fn wait(section: Section, condition: Condition, bound: Duration) -> Step {
    step(section, Action::Wait(Wait { condition, bound }))
}

/// The steps from Istio to the entry points, or every refusal.
pub fn plan_istio(input: &Input<'_>) -> Result<IstioPlan, InputErrors> {
    let mut errors = Vec::new();
    let mut steps = Vec::new();
    let facts = input.facts;
    let bound = input.bound;
    let mut new_ca = None;
    let mut installs = false;
    let (revision, default_injection, istiod, root) = match (&facts.istio, &input.install) {
        (Some(found), _) => {
            steps.push(step(
                Section::Istio,
                Action::Skip(format!(
                    "installing Istio: it is installed ({}); the run uses revision `{}` and leaves Secret {CACERTS_SECRET} and Istio's configuration as they are",
                    found.evidence.join("; "),
                    found.revision
                )),
            ));
            match &found.istiod {
                Some(istiod) => (
                    found.revision.clone(),
                    found.default_injection,
                    istiod.clone(),
                    None,
                ),
                None => {
                    errors.push(InputError::new(
                        &input.cluster_file,
                        "",
                        format!(
                            "{} has Istio's remains ({}) but no istiod Deployment (label app=istiod): the harness needs a running control plane and never installs one over another Istio",
                            input.cluster,
                            found.evidence.join("; ")
                        ),
                        "repair or finish that Istio install (its istiod must run), or remove its leftovers and pass --install-istio",
                    ));
                    return Err(InputErrors(errors));
                }
            }
        }
        (None, None) => {
            errors.push(InputError::new(
                &input.cluster_file,
                "",
                format!(
                    "no Istio on {}: no Deployment labelled app=istiod, no MutatingWebhookConfiguration labelled app=sidecar-injector and no *.istio.io CRD",
                    input.cluster
                ),
                "install Istio there yourself, or pass --install-istio to let the harness install it with istioctl (its own plug-in CA, created only if no cacerts exists; a ClusterIP gateway, no load balancer)",
            ));
            return Err(InputErrors(errors));
        }
        (None, Some(install)) => {
            installs = true;
            steps.extend(install.tool_steps.iter().cloned());
            let root = match &facts.cacerts {
                Some(existing) => {
                    steps.push(step(
                        Section::Istio,
                        Action::Skip(format!(
                            "creating a plug-in CA: Secret {}/{CACERTS_SECRET} exists and Istio will use it as it is; the harness never replaces one",
                            existing.namespace
                        )),
                    ));
                    Root::Pem {
                        pem: existing.root_pem.clone(),
                        what: format!(
                            "the root of Secret {}/{CACERTS_SECRET} ({})",
                            existing.namespace,
                            crate::ca::fingerprint(&existing.root_pem)
                                .unwrap_or_else(|_| "unreadable".into())
                        ),
                    }
                }
                None => {
                    if let Some(state) = &install.state_dir {
                        steps.push(step(
                            Section::Istio,
                            Action::Write(Write {
                                path: state.clone(),
                                file: FileKind::PrivateDir,
                            }),
                        ));
                    }
                    steps.push(step(
                        Section::Istio,
                        Action::Write(Write {
                            path: install.ca_dir.clone(),
                            file: FileKind::CaBundle,
                        }),
                    ));
                    let (namespace, secret) = crate::istio_mesh::cacerts_objects(&install.ca);
                    if !facts.istio_namespace {
                        steps.push(apply_step(Section::Istio, &namespace, ApplyHow::Create));
                    }
                    steps.push(apply_step(Section::Istio, &secret, ApplyHow::Create));
                    new_ca = Some(install.ca.clone());
                    Root::Pem {
                        pem: install.ca.root_cert_pem.clone(),
                        what: "the harness's new root".into(),
                    }
                }
            };
            steps.push(step(
                Section::Istio,
                Action::Write(Write {
                    path: install.operator.clone(),
                    file: FileKind::IstioOperator,
                }),
            ));
            steps.push(step(
                Section::Istio,
                Action::Run(
                    Run::new(install.run.clone(), INSTALL_TIMEOUT)
                        .log(install.log.clone())
                        .note("installs istiod and the ingress gateway (Service type ClusterIP)"),
                ),
            ));
            (
                DEFAULT_REVISION.to_string(),
                true,
                (ISTIO_NAMESPACE.to_string(), "istiod".to_string()),
                Some(root),
            )
        }
    };
    steps.push(wait(
        Section::Istio,
        Condition::DeploymentRolledOut {
            namespace: istiod.0.clone(),
            name: istiod.1.clone(),
        },
        bound,
    ));
    steps.push(wait(
        Section::Istio,
        Condition::InjectorCaBundle {
            revision: revision.clone(),
            root: root.clone(),
        },
        bound,
    ));

    let routing = input.routing;
    let label = if default_injection {
        (INJECTION_LABEL.0.to_string(), INJECTION_LABEL.1.to_string())
    } else {
        (REVISION_LABEL.to_string(), revision.clone())
    };
    let objects = objects_for_revision(routing, &label);
    let mut hows = BTreeMap::new();
    for (object, file) in &objects {
        let what = ObjectRef::of(object);
        let how = match facts.objects.get(&what) {
            None => ApplyHow::Apply,
            Some(e) if e.managed_by_harness => ApplyHow::Reapply,
            Some(_) if input.adopt => ApplyHow::Adopt,
            Some(e) => {
                errors.push(InputError::new(
                    file,
                    what.to_string(),
                    format!(
                        "{what} exists on {} and the harness does not manage it (its field managers: {})",
                        input.cluster,
                        if e.managers.is_empty() {
                            "none".to_string()
                        } else {
                            e.managers.join(", ")
                        }
                    ),
                    "pass --adopt to let the harness take it over (server-side apply, forced; it stays after the run), or delete it, or give the manifest another name or namespace",
                ));
                continue;
            }
        };
        hows.insert(what, how);
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    steps.extend(workload_steps(&objects, &hows, facts, bound));

    let ns = &routing.namespace;
    steps.push(wait(
        Section::Injection,
        Condition::NamespaceInjection {
            namespace: ns.clone(),
            label,
        },
        bound,
    ));
    for d in &routing.manifests.deployments {
        steps.push(wait(
            Section::Injection,
            Condition::PodsInjected {
                namespace: d
                    .value
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| ns.clone()),
                deployment: d.value.metadata.name.clone(),
                selector: d.value.spec.template.metadata.labels.clone(),
            },
            bound,
        ));
    }
    if let Some(d) = routing.manifests.deployments.first() {
        steps.push(wait(
            Section::Injection,
            Condition::WorkloadCertificate {
                namespace: d
                    .value
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| ns.clone()),
                deployment: d.value.metadata.name.clone(),
                selector: d.value.spec.template.metadata.labels.clone(),
                root: root.unwrap_or_else(|| Root::MeshConfigMap {
                    namespace: ns.clone(),
                }),
            },
            bound,
        ));
    }
    steps.extend(entry_steps(routing, &input.client_pod, bound));
    Ok(IstioPlan {
        steps,
        new_ca,
        installs,
    })
}

/// The manifests' objects with their files; a Namespace that asks for injection with
/// `istio-injection=enabled` gets `istio.io/rev=<revision>` instead when only that label
/// reaches the installed revision.
fn objects_for_revision(routing: &Routing, label: &(String, String)) -> Vec<(Value, PathBuf)> {
    routing
        .manifests
        .objects
        .iter()
        .map(|o| {
            let mut value = o.value.clone();
            let asks = value["kind"] == "Namespace"
                && value["metadata"]["labels"][INJECTION_LABEL.0] == INJECTION_LABEL.1;
            if asks && label.0 == REVISION_LABEL {
                let labels = value["metadata"]["labels"]
                    .as_object_mut()
                    .expect("labels are an object");
                labels.remove(INJECTION_LABEL.0);
                labels.insert(label.0.clone(), json!(label.1));
            }
            (value, o.file.clone())
        })
        .collect()
}

fn apply_step(section: Section, object: &Value, how: ApplyHow) -> Step {
    step(
        section,
        Action::Apply(Apply {
            object: ObjectRef::of(object),
            body: object.clone(),
            how,
            dry_run: false,
        }),
    )
}

fn dry_run_step(object: &Value, how: ApplyHow) -> Step {
    step(
        Section::of_object(&ObjectRef::of(object)),
        Action::Apply(Apply {
            object: ObjectRef::of(object),
            body: object.clone(),
            how,
            dry_run: true,
        }),
    )
}

/// The API server checks every object before anything of the workloads changes (a
/// server-side dry run with strict field validation); objects in a namespace the run creates
/// can only be checked once it exists, so they come right after the namespaces. Then the
/// objects in order, the Istio ones once their CRDs are Established, and the rollouts.
fn workload_steps(
    objects: &[(Value, PathBuf)],
    hows: &BTreeMap<ObjectRef, ApplyHow>,
    facts: &ClusterFacts,
    bound: Duration,
) -> Vec<Step> {
    let values: Vec<Value> = objects.iter().map(|(v, _)| v.clone()).collect();
    let ordered = apply::ordered(&values);
    let how = |o: &Value| hows[&ObjectRef::of(o)];
    let new_namespaces: Vec<String> = ordered
        .iter()
        .filter(|o| o["kind"] == "Namespace" && how(o).creates())
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let in_new_namespace = |o: &Value| {
        o["metadata"]["namespace"]
            .as_str()
            .is_some_and(|ns| new_namespaces.iter().any(|n| n == ns))
    };
    let mut steps = Vec::new();
    for o in ordered.iter().filter(|o| !in_new_namespace(o)) {
        steps.push(dry_run_step(o, how(o)));
    }
    for o in ordered.iter().filter(|o| o["kind"] == "Namespace") {
        steps.push(apply_step(Section::Namespace, o, how(o)));
    }
    for o in ordered.iter().filter(|o| in_new_namespace(o)) {
        steps.push(dry_run_step(o, how(o)));
    }
    for o in ordered
        .iter()
        .filter(|o| o["kind"] != "Namespace" && !is_istio(o))
    {
        steps.push(apply_step(Section::Deployments, o, how(o)));
    }
    let _ = facts;
    for crd in apply::needed_crds(&values) {
        steps.push(wait(
            Section::Routing,
            Condition::CrdEstablished { name: crd },
            bound,
        ));
    }
    for o in ordered.iter().filter(|o| is_istio(o)) {
        steps.push(apply_step(Section::Routing, o, how(o)));
    }
    for o in ordered.iter().filter(|o| o["kind"] == "Deployment") {
        steps.push(wait(
            Section::Deployments,
            Condition::DeploymentRolledOut {
                namespace: o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string(),
                name: o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            },
            bound,
        ));
    }
    steps
}

/// The mesh client pod (for the east-west entry point) and the gateway's port-forward.
fn entry_steps(routing: &Routing, client_pod: &str, bound: Duration) -> Vec<Step> {
    let mut steps = Vec::new();
    let entries = routing.entry_points();
    let ns = &routing.namespace;
    if entries.contains(&EntryPoint::Mesh) {
        let pod = exec_target::client_pod_manifest(ns, client_pod, &routing.subsets[0].image);
        steps.push(apply_step(Section::EntryPoints, &pod, ApplyHow::Create));
        steps.push(wait(
            Section::EntryPoints,
            Condition::PodReady {
                namespace: ns.clone(),
                name: client_pod.to_string(),
            },
            bound,
        ));
        let short = routing.host.split('.').next().unwrap_or(&routing.host);
        steps.push(step(
            Section::EntryPoints,
            Action::Open(Open {
                entry: EntryPoint::Mesh,
                via: Via::Exec {
                    namespace: ns.clone(),
                    pod: client_pod.to_string(),
                    container: exec_target::CLIENT_CONTAINER.to_string(),
                    url: format!("http://{short}.{ns}:{}/", routing.port),
                },
            }),
        ));
    }
    if let Some(binding) = &routing.gateway
        && entries.contains(&EntryPoint::Ingress)
    {
        steps.push(step(
            Section::EntryPoints,
            Action::Open(Open {
                entry: EntryPoint::Ingress,
                via: Via::PortForward {
                    selector: gateway::gateway_selector(routing),
                    gateway_port: binding.port,
                    host: binding.host.clone(),
                },
            }),
        ));
    }
    steps
}

/// What the end of a run undoes on a cluster, from the steps it executed.
#[derive(Debug, Clone)]
pub enum Teardown {
    /// A kind cluster: deleted with `delete` if the harness created it and it is not kept
    /// (`marker` goes with it); kept clusters keep everything but the client pod.
    Kind {
        cluster: String,
        delete: crate::invocation::Invocation,
        marker: PathBuf,
        owned: bool,
        keep: bool,
        kubeconfig: PathBuf,
    },
    /// A cluster of the user's: delete exactly what the run created, unless `--keep`.
    Existing {
        keep: bool,
        uninstall: crate::invocation::Invocation,
    },
}

/// Bound on `kind delete cluster`.
pub const DELETE_CLUSTER_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on `istioctl uninstall`.
pub const UNINSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The teardown of `executed` (the set-up steps that ran, or the whole plan for the dry run).
pub fn teardown(executed: &[Step], how: &Teardown) -> Vec<Step> {
    let created: Vec<ObjectRef> = executed
        .iter()
        .filter_map(|s| match &s.action {
            Action::Apply(a) if !a.dry_run && a.how.creates() => Some(a.object.clone()),
            _ => None,
        })
        .collect();
    let installed = executed.iter().any(
        |s| matches!(&s.action, Action::Run(r) if r.log.as_deref().is_some_and(is_install_log)),
    );
    let marked = executed.iter().any(|s| {
        matches!(&s.action, Action::Write(w) if matches!(w.file, FileKind::OwnershipMarker { .. }))
    });
    let section = Section::Teardown;
    let mut steps = Vec::new();
    match how {
        Teardown::Kind {
            cluster,
            delete,
            marker,
            owned,
            keep,
            kubeconfig,
        } => {
            if *keep {
                for o in created.iter().rev().filter(|o| o.kind == "Pod") {
                    steps.push(step(section, Action::Delete(o.clone())));
                }
                if *owned || marked {
                    steps.push(step(
                        section,
                        Action::Skip(format!(
                            "deleting kind cluster `{cluster}`: kept (--keep-cluster); reach it with KUBECONFIG={}, delete it with `{}`",
                            kubeconfig.display(),
                            delete.display()
                        )),
                    ));
                }
            } else if *owned || marked {
                let mut run = Run::new(delete.clone(), DELETE_CLUSTER_TIMEOUT)
                    .note("the harness created this cluster");
                run.then_remove = Some(marker.clone());
                steps.push(step(section, Action::Run(run)));
            }
        }
        Teardown::Existing { keep, uninstall } => {
            if *keep {
                if !created.is_empty() {
                    steps.push(step(
                        section,
                        Action::Skip(format!(
                            "deleting what the run created (--keep): {}",
                            created
                                .iter()
                                .map(|o| o.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ));
                }
            } else {
                let (istio, workloads): (Vec<&ObjectRef>, Vec<&ObjectRef>) =
                    created.iter().partition(|o| {
                        o.namespace.as_deref() == Some(ISTIO_NAMESPACE)
                            || o.name == ISTIO_NAMESPACE && o.kind == "Namespace"
                    });
                for o in workloads.iter().rev() {
                    steps.push(step(section, Action::Delete((*o).clone())));
                }
                if installed {
                    steps.push(step(
                        section,
                        Action::Run(
                            Run::new(uninstall.clone(), UNINSTALL_TIMEOUT)
                                .note("the run installed Istio, so it removes it"),
                        ),
                    ));
                }
                for o in istio.iter().rev() {
                    steps.push(step(section, Action::Delete((*o).clone())));
                }
            }
        }
    }
    steps
}

/// The install's log names the step that installs Istio.
pub const INSTALL_LOG: &str = "istioctl-install.log";

fn is_install_log(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()) == Some(INSTALL_LOG)
}
