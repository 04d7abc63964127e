//! The cluster meshes (`--mesh kind`, `--mesh existing`): tools, cluster lifecycle, Istio.

use harness::input_error::{InputError, InputErrors};
use harness::mesh::Mesh;
use harness::run::RunOptions;

use crate::e2e::{MeshKind, MeshSetup, Prepared, ToolArgs, mesh_name};

/// Flags of the cluster meshes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Keep the kind cluster after the run (it is deleted otherwise, also on failure).
    #[arg(long)]
    pub keep_cluster: bool,
}

/// Brings up (or connects to) the cluster and returns its mesh.
pub async fn open(
    _prepared: &Prepared,
    setup: &MeshSetup,
    _options: &RunOptions,
) -> anyhow::Result<Box<dyn Mesh>> {
    Err(InputErrors::from(InputError::new(
        "--mesh",
        "",
        format!(
            "the {} mesh is not available in this version of the harness",
            mesh_name(setup.kind)
        ),
        "run `cargo xtask e2e --mesh local` (real Envoy on loopback, no cluster)",
    ))
    .into())
}

/// Prints what a run would do, in order, without doing it.
pub fn dry_run(
    _prepared: &Prepared,
    mesh: MeshKind,
    _tools: &ToolArgs,
    _cluster: &ClusterArgs,
) -> anyhow::Result<u8> {
    Err(InputErrors::from(InputError::new(
        "--dry-run",
        "",
        format!("no dry run for the {} mesh yet", mesh_name(mesh)),
        "run without --dry-run",
    ))
    .into())
}
