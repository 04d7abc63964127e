//! The local mesh: a real Envoy on loopback in front of one podinfo-compatible backend per
//! subset, configured from the same VirtualService and DestinationRule as the cluster.
//!
//! Envoy reads its routes from files (file-based RDS). A stage's weights are written to a
//! temporary file and renamed into the watched folder, which Envoy picks up without a restart;
//! the admin `config_dump` then confirms the new version and weights before any sample counts.

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
use crate::istio::VirtualService;
use crate::mesh::Mesh;
use crate::prober::{HttpTarget, Target};
use crate::process::{ChildGuard, command_with_log};
use crate::routing::{EntryPoint, Routing};
use crate::scenario::{BackendTuning, Weights};

/// How to run the local mesh.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub envoy: PathBuf,
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

pub struct LocalMesh {
    routing: Routing,
    entries: Vec<EntryPoint>,
    work_dir: PathBuf,
    // Envoy first: it is stopped before the backends behind it.
    envoy: ChildGuard,
    _backends: Vec<ChildGuard>,
    admin: SocketAddr,
    listeners: BTreeMap<EntryPoint, SocketAddr>,
    version: u64,
    client: reqwest::Client,
}

impl LocalMesh {
    /// Starts the backends and Envoy, with the VirtualService as the manifests have it.
    pub async fn start(routing: &Routing, options: &LocalOptions) -> anyhow::Result<Self> {
        let work_dir = &options.work_dir;
        std::fs::create_dir_all(work_dir)
            .with_context(|| format!("creating {}", work_dir.display()))?;
        let entries = routing.entry_points();
        let mut backends = Vec::new();
        let mut addresses = Vec::new();
        for subset in &routing.subsets {
            let tuning = options
                .backends
                .get(&subset.name)
                .copied()
                .unwrap_or_default();
            let log = work_dir.join(format!("backend-{}.log", subset.name));
            let mut command = command_with_log(&options.backend_program, &log)?;
            command.args(&options.backend_args).args([
                "--version",
                &subset.version,
                "--port",
                "0",
                "--delay-ms",
                &tuning.delay.as_millis().to_string(),
                "--error-rate",
                &tuning.error_rate.to_string(),
            ]);
            let name = format!("backend `{}` ({})", subset.name, subset.version);
            let mut child = ChildGuard::spawn(&name, command)?;
            let timeout = options.startup_timeout;
            let addr = tokio::task::block_in_place(|| {
                child.await_stdout_line(timeout, "the address it listens on", |line| {
                    backend::parse_ready_line(line)
                })
            })
            .with_context(|| format!("see {}", log.display()))?;
            tracing::debug!(subset = %subset.name, %addr, "backend listening");
            addresses.push((subset.name.clone(), addr));
            backends.push(child);
        }

        for entry in &entries {
            std::fs::create_dir_all(envoy_config::route_dir(work_dir, *entry))?;
        }
        // Version 0 is the VirtualService as the manifests have it.
        write_routes(
            routing,
            &entries,
            &routing.virtual_service.value,
            work_dir,
            0,
        )?;
        let bootstrap = envoy_config::bootstrap(routing, &entries, &addresses, work_dir);
        let bootstrap_path = work_dir.join("envoy-bootstrap.json");
        std::fs::write(&bootstrap_path, serde_json::to_vec_pretty(&bootstrap)?)?;
        let admin_path = work_dir.join("envoy-admin-address");
        let _ = std::fs::remove_file(&admin_path);
        let log = work_dir.join("envoy.log");
        let mut command = command_with_log(&options.envoy, &log)?;
        command
            .stdout(std::process::Stdio::null())
            .arg("--config-path")
            .arg(&bootstrap_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // Parallel runs must not share hot-restart memory; one worker is plenty here.
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
            ]);
        let envoy = ChildGuard::spawn("envoy", command)?;
        let mut mesh = LocalMesh {
            routing: routing.clone(),
            entries,
            work_dir: work_dir.clone(),
            envoy,
            _backends: backends,
            admin: "127.0.0.1:0".parse()?,
            listeners: BTreeMap::new(),
            version: 0,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        mesh.admin = mesh
            .await_admin(&admin_path, options.startup_timeout)
            .await?;
        mesh.listeners = mesh.await_listeners(options.startup_timeout).await?;
        Ok(mesh)
    }

    /// The address of Envoy's admin interface, for logs and diagnostics.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    async fn await_admin(&mut self, path: &Path, timeout: Duration) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            self.envoy
                .check_running()
                .with_context(|| self.log_tail())?;
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
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn await_listeners(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<EntryPoint, SocketAddr>> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        loop {
            self.envoy
                .check_running()
                .with_context(|| self.log_tail())?;
            let url = format!("http://{}/listeners?format=json", self.admin);
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
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn observed(&self) -> anyhow::Result<BTreeMap<EntryPoint, Option<ObservedRoute>>> {
        let url = format!(
            "http://{}/config_dump?resource=dynamic_route_configs",
            self.admin
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
                (*e, config_dump::observed_route(&dump, &name, &domain))
            })
            .collect())
    }

    fn log_tail(&self) -> String {
        let path = self.work_dir.join("envoy.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("last lines of {}:\n{tail}", path.display())
    }
}

/// Writes each entry point's route file, atomically: Envoy reloads on the rename, never on a
/// half-written file.
fn write_routes(
    routing: &Routing,
    entries: &[EntryPoint],
    vs: &VirtualService,
    work_dir: &Path,
    version: u64,
) -> anyhow::Result<()> {
    let staging = work_dir.join("routes").join(".staging");
    std::fs::create_dir_all(&staging)?;
    for entry in entries {
        let response =
            envoy_config::route_discovery_response(routing, vs, *entry, &version.to_string())?;
        let tmp = staging.join(format!("{entry}.json"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&response)?)?;
        let dest = envoy_config::route_dir(work_dir, *entry).join(ROUTE_FILE);
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("moving {} to {}", tmp.display(), dest.display()))?;
    }
    Ok(())
}

/// Listener name → bound address, from the admin's `/listeners?format=json`.
fn listener_addresses(json: &serde_json::Value) -> BTreeMap<EntryPoint, SocketAddr> {
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

    fn entry_points(&self) -> Vec<EntryPoint> {
        self.entries.clone()
    }

    async fn apply(&mut self, virtual_service: &VirtualService) -> anyhow::Result<()> {
        self.version += 1;
        write_routes(
            &self.routing,
            &self.entries,
            virtual_service,
            &self.work_dir,
            self.version,
        )
    }

    async fn await_weights(&mut self, weights: &Weights, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let want = self.version.to_string();
        loop {
            self.envoy
                .check_running()
                .with_context(|| self.log_tail())?;
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
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn target(&self, entry: EntryPoint) -> anyhow::Result<Arc<dyn Target>> {
        let addr = self
            .listeners
            .get(&entry)
            .with_context(|| format!("the local mesh has no {entry} listener"))?;
        let authority = envoy_config::authority(&self.routing, entry);
        Ok(Arc::new(HttpTarget::new(
            &format!("http://{addr}"),
            &authority,
        )?))
    }

    async fn diagnostics(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let url = format!("http://{}/config_dump", self.admin);
        if let Ok(resp) = self.client.get(&url).send().await
            && let Ok(text) = resp.text().await
        {
            std::fs::write(dir.join("envoy-config_dump.json"), text)?;
        }
        let note = format!(
            "The local mesh's configuration, route files and logs are in {}\n",
            self.work_dir.display()
        );
        std::fs::write(dir.join("README.txt"), note)?;
        Ok(())
    }

    async fn shutdown(mut self: Box<Self>) -> anyhow::Result<()> {
        self.envoy.stop();
        Ok(())
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
