//! The cluster meshes: a kind cluster the harness creates (`--mesh kind`) or a cluster the
//! user has (`--mesh existing`), both with Istio, planned as steps.
//!
//! Planning only reads: the tools' versions, `kind get clusters` and `kind get kubeconfig`,
//! and GET/LIST requests to the API server (see [`facts`]). From what it finds, [`plan`]
//! decides every write of the run, so that `--dry-run` prints exactly what will happen.
//!
//! - kind: a cluster of that name that the harness did not create (no mark in the state folder)
//!   is refused; one it created is reused; otherwise it is created (the mark first), and the
//!   run waits for the node's `Ready` condition itself, retrying the create when it never comes
//!   (kind's `--wait` exits 0 either way). Only a cluster the harness created is deleted at the
//!   end, and not with `--keep-cluster`.
//! - existing: read-mostly. Istio found in any form → never installed, `cacerts` never touched;
//!   none → refused unless `--install-istio`. Objects of the manifests that exist and that the
//!   harness does not manage → refused unless `--adopt`. What the run creates is deleted at the
//!   end unless `--keep`.

pub mod facts;
pub mod istioctl;
pub mod kind;
pub mod plan;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::ca::CaBundle;
use crate::istio_mesh::proxy::ConfigDumps;
use crate::istio_mesh::{self, Access, IstioMesh, exec_target};
use crate::mesh::Planned;
use crate::routing::Routing;
use crate::steps::{Action, Condition, FileKind, Retry, Run, Section, Step, Wait, Write};
use crate::tools::release;

use self::facts::ClusterFacts;
use self::plan::{Install, Teardown};

/// What a kind run is told.
#[derive(Debug, Clone)]
pub struct KindConfig {
    pub name: String,
    /// `--keep-cluster`.
    pub keep: bool,
    /// Credentials and keys (`target/canary/state`, mode 0700).
    pub state: PathBuf,
    /// The tool cache.
    pub cache: PathBuf,
    /// Output of kind and istioctl, beside the reports.
    pub logs: PathBuf,
    /// Bound of each wait of the set-up.
    pub wait: Duration,
    /// Names the run's own objects (the mesh client pod).
    pub run_id: String,
    /// The docker command the check runs.
    pub docker: PathBuf,
    /// kind and istioctl given by the user (`--kind`, `--istioctl`), used as they are.
    pub tools: ToolPaths,
}

/// Tools the user names instead of the pinned ones the harness finds or fetches.
#[derive(Debug, Clone, Default)]
pub struct ToolPaths {
    pub kind: Option<PathBuf>,
    pub istioctl: Option<PathBuf>,
}

/// `--kind PATH` / `--istioctl PATH`, or the pinned tool from PATH, the cache or a download.
async fn tool(
    given: Option<&Path>,
    spec: &release::ToolSpec,
    cache: &Path,
) -> anyhow::Result<(PathBuf, Step)> {
    match given {
        Some(path) => {
            anyhow::ensure!(
                crate::tools::executable(path),
                crate::input_error::InputError::new(
                    path,
                    "",
                    format!("the {} given is not an executable file", spec.name),
                    format!(
                        "point --{} at a {} binary, or leave it out to use the pinned {}",
                        spec.name, spec.name, spec.version
                    ),
                )
            );
            let step = Step::new(
                Section::Tools,
                Action::Use {
                    tool: spec.name.to_string(),
                    path: path.to_path_buf(),
                    from: format!("--{}", spec.name),
                },
            );
            Ok((path.to_path_buf(), step))
        }
        None => release::source(spec, cache).await,
    }
}

/// What a run on the user's cluster is told.
#[derive(Debug, Clone)]
pub struct ExistingConfig {
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
    /// `--install-istio`: install Istio if the cluster has none.
    pub install_istio: bool,
    /// `--adopt`: take over objects of the manifests that someone else manages.
    pub adopt: bool,
    /// `--keep`: leave what the run created.
    pub keep: bool,
    pub state: PathBuf,
    pub cache: PathBuf,
    pub logs: PathBuf,
    pub wait: Duration,
    pub run_id: String,
    pub tools: ToolPaths,
}

/// Bound on the node's `Ready` after `kind create cluster`.
pub const NODE_READY_BOUND: Duration = Duration::from_secs(180);

/// Plans a kind run.
pub async fn plan_kind(config: &KindConfig, routing: &Routing) -> anyhow::Result<Planned> {
    plan_kind_with(config, routing, None).await
}

/// [`plan_kind`], reading the proxies' config_dumps from `dumps` (tests) instead of exec.
pub async fn plan_kind_with(
    config: &KindConfig,
    routing: &Routing,
    dumps: Option<Arc<dyn ConfigDumps>>,
) -> anyhow::Result<Planned> {
    let kubeconfig = config
        .state
        .join(format!("kind-{}.kubeconfig", config.name));
    let mut setup = vec![release::docker_check(&config.docker)];
    let (kind_path, kind_step) = tool(
        config.tools.kind.as_deref(),
        &release::kind(),
        &config.cache,
    )
    .await?;
    setup.push(kind_step);
    let cluster = kind::Cluster {
        kind: kind_path.clone(),
        name: config.name.clone(),
        kubeconfig: kubeconfig.clone(),
    };
    let marker = kind::marker_path(&config.state, &config.name);
    let owned = marker.is_file();
    let existing = existing_kind_clusters(&cluster).await;
    let exists = existing
        .as_ref()
        .is_some_and(|names| names.contains(&config.name));
    let facts = if exists {
        if !owned {
            return Err(crate::input_error::InputError::new(
                "--cluster-name",
                &config.name,
                format!(
                    "a kind cluster `{}` exists, and the harness did not create it (no mark {}): a run never uses or deletes a cluster that is not its own",
                    config.name,
                    marker.display()
                ),
                format!(
                    "pick another name with --cluster-name, or run on it as a cluster of yours: `kind get kubeconfig --name {} > kc` then --mesh existing --kubeconfig kc",
                    config.name
                ),
            )
            .into());
        }
        setup.push(Step::new(
            Section::Cluster,
            Action::Run(
                Run::new(cluster.export_kubeconfig(), kind::QUERY_TIMEOUT).note(
                    "reuses the cluster an earlier run created and kept; writes its kubeconfig",
                ),
            ),
        ));
        let yaml = cluster
            .get_kubeconfig()
            .run(kind::QUERY_TIMEOUT, None)
            .await
            .context("reading the kept cluster's kubeconfig")?;
        let client =
            istio_mesh::client_from_yaml(&yaml, &format!("kind cluster `{}`", config.name)).await?;
        probe(&client, routing).await?
    } else {
        setup.push(Step::new(
            Section::Cluster,
            Action::Write(Write {
                path: config.state.clone(),
                file: FileKind::PrivateDir,
            }),
        ));
        setup.push(Step::new(
            Section::Cluster,
            Action::Write(Write {
                path: marker.clone(),
                file: FileKind::OwnershipMarker {
                    cluster: config.name.clone(),
                },
            }),
        ));
        let mut create = Run::new(
            cluster.create(release::KIND_NODE_IMAGE),
            kind::CREATE_TIMEOUT,
        )
        .log(config.logs.join("kind-create.log"));
        create.retry = Some(Box::new(Retry {
            attempts: kind::CREATE_ATTEMPTS,
            until: Wait {
                condition: Condition::NodeReady {
                    cluster: config.name.clone(),
                },
                bound: NODE_READY_BOUND,
            },
            cleanup: cluster.delete(),
        }));
        if existing.is_none() {
            create.note = Some(
                "kind could not be asked for its clusters while planning; planned as a new cluster"
                    .into(),
            );
        }
        setup.push(Step::new(Section::Cluster, Action::Run(create)));
        ClusterFacts::fresh()
    };
    let (istioctl_path, istioctl_step) = tool(
        config.tools.istioctl.as_deref(),
        &release::istioctl(),
        &config.cache,
    )
    .await?;
    let install = install(
        istioctl_path,
        istioctl_step,
        &kubeconfig,
        None,
        &config.state.join(format!("ca-kind-{}", config.name)),
        None,
        &config.logs,
    )?;
    let input = plan::Input {
        routing,
        facts: &facts,
        install: Some(install),
        adopt: false,
        client_pod: exec_target::client_pod_name(&config.run_id),
        bound: config.wait,
        cluster: format!("kind cluster `{}`", config.name),
        cluster_file: kubeconfig.clone(),
    };
    let istio = plan::plan_istio(&input)?;
    setup.extend(istio.steps);
    let teardown_how = Teardown::Kind {
        cluster: config.name.clone(),
        delete: cluster.delete(),
        marker,
        owned,
        keep: config.keep,
        kubeconfig: kubeconfig.clone(),
    };
    let teardown = plan::teardown(&setup, &teardown_how);
    let mut mesh = IstioMesh::new(
        "kind",
        routing,
        Access {
            kubeconfig,
            context: None,
        },
        istio.new_ca,
        teardown_how,
    );
    mesh.set_plan(&setup);
    if let Some(dumps) = dumps {
        mesh = mesh.with_config_dumps(dumps);
    }
    Ok(Planned {
        mesh: Box::new(mesh),
        setup,
        teardown,
        locks: vec![config.state.join(format!("kind-{}.lock", config.name))],
    })
}

/// Plans a run on the user's cluster.
pub async fn plan_existing(config: &ExistingConfig, routing: &Routing) -> anyhow::Result<Planned> {
    plan_existing_with(config, routing, None).await
}

/// [`plan_existing`], reading the proxies' config_dumps from `dumps` (tests) instead of exec.
pub async fn plan_existing_with(
    config: &ExistingConfig,
    routing: &Routing,
    dumps: Option<Arc<dyn ConfigDumps>>,
) -> anyhow::Result<Planned> {
    let client =
        istio_mesh::client_from_kubeconfig(&config.kubeconfig, config.context.as_deref()).await?;
    let facts = probe(&client, routing).await?;
    let mut setup = vec![Step::new(
        Section::Cluster,
        Action::Skip(format!(
            "creating a cluster: the run uses {} as it is",
            cluster_name(config)
        )),
    )];
    let install = if config.install_istio && facts.istio.is_none() {
        let (path, step) = tool(
            config.tools.istioctl.as_deref(),
            &release::istioctl(),
            &config.cache,
        )
        .await?;
        let ca_dir = config.state.join(format!(
            "ca-existing-{}",
            file_safe(config.context.as_deref().unwrap_or("current-context"))
        ));
        Some(install(
            path,
            step,
            &config.kubeconfig,
            config.context.as_deref(),
            &ca_dir,
            Some(&config.state),
            &config.logs,
        )?)
    } else {
        None
    };
    // The Istio a run installs is removed by the same istioctl.
    let istioctl_path = install
        .as_ref()
        .map(|i| i.run.program.clone())
        .unwrap_or_else(|| release::cached_path(&release::istioctl(), &config.cache));
    let input = plan::Input {
        routing,
        facts: &facts,
        install,
        adopt: config.adopt,
        client_pod: exec_target::client_pod_name(&config.run_id),
        bound: config.wait,
        cluster: cluster_name(config),
        cluster_file: config.kubeconfig.clone(),
    };
    let istio = plan::plan_istio(&input)?;
    setup.extend(istio.steps);
    let teardown_how = Teardown::Existing {
        keep: config.keep,
        uninstall: istioctl::invocation(
            &istioctl_path,
            &config.kubeconfig,
            istioctl::uninstall_args(&config.kubeconfig, config.context.as_deref()),
        ),
    };
    let teardown = plan::teardown(&setup, &teardown_how);
    let mut mesh = IstioMesh::new(
        "existing",
        routing,
        Access {
            kubeconfig: config.kubeconfig.clone(),
            context: config.context.clone(),
        },
        istio.new_ca,
        teardown_how,
    );
    mesh.set_plan(&setup);
    mesh.set_client(client);
    if let Some(dumps) = dumps {
        mesh = mesh.with_config_dumps(dumps);
    }
    Ok(Planned {
        mesh: Box::new(mesh),
        setup,
        teardown,
        locks: Vec::new(),
    })
}

fn cluster_name(config: &ExistingConfig) -> String {
    format!(
        "the cluster of {} (context {})",
        config.kubeconfig.display(),
        config.context.as_deref().unwrap_or("its current context")
    )
}

/// The facts of a cluster for the routing's objects.
async fn probe(client: &kube::Client, routing: &Routing) -> anyhow::Result<ClusterFacts> {
    let objects: Vec<serde_json::Value> = routing
        .manifests
        .objects
        .iter()
        .map(|o| o.value.clone())
        .collect();
    facts::probe(client, &objects, plan::ISTIO_NAMESPACE)
        .await
        .context("reading what the cluster holds (Istio, cacerts, the manifests' objects)")
}

/// What `kind get clusters` lists, or `None` when kind cannot tell (not installed yet, no
/// Docker engine): the plan then counts on a new cluster, and says so.
async fn existing_kind_clusters(cluster: &kind::Cluster) -> Option<Vec<String>> {
    if !crate::tools::executable(&cluster.kind) {
        return None;
    }
    match cluster.get_clusters().run(kind::QUERY_TIMEOUT, None).await {
        Ok(out) => Some(kind::parse_clusters(&out)),
        Err(e) => {
            tracing::info!("kind cannot list its clusters now ({e:#}); planning a new one");
            None
        }
    }
}

/// What an install by the harness needs, with a fresh CA (used only if the cluster has none).
fn install(
    istioctl: PathBuf,
    tool_step: Step,
    kubeconfig: &Path,
    context: Option<&str>,
    ca_dir: &Path,
    state: Option<&Path>,
    logs: &Path,
) -> anyhow::Result<Install> {
    let operator = logs.join("istio-operator.yaml");
    Ok(Install {
        tool_steps: vec![tool_step],
        run: istioctl::invocation(
            &istioctl,
            kubeconfig,
            istioctl::install_args(kubeconfig, context, &operator),
        ),
        operator,
        log: logs.join(plan::INSTALL_LOG),
        state_dir: state.map(Path::to_path_buf),
        ca_dir: ca_dir.to_path_buf(),
        ca: CaBundle::generate()?,
    })
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
