//! The tools of the cluster meshes, kind and istioctl, at pinned versions: taken from `PATH`
//! when their version is the pinned one, else from the harness's tool cache, else downloaded
//! into it from the project's GitHub release (a `Fetch` step) and checked against the pinned
//! sha256 and against the checksum file published beside the release asset. Also the Docker
//! check that `--mesh kind` runs before anything else.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};

use crate::invocation::Invocation;
use crate::steps::{Action, Fetch, Run, Section, Step};

/// kind release: the current one (kubernetes-sigs/kind, tag v0.32.0, 2026-06-02).
pub const KIND_VERSION: &str = "v0.32.0";
/// The node image kind v0.32.0 is built and released with (its `defaults.Image`), pinned by
/// digest as kind's release notes ask: a tag alone may name an image built for another kind.
pub const KIND_NODE_IMAGE: &str =
    "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5";
/// sha256 of `kind-linux-amd64` v0.32.0, as its `kind-linux-amd64.sha256sum` publishes it.
pub const KIND_LINUX_AMD64_SHA256: &str =
    "50030de23cf40a18505f20426f6a8506bedf13c6e509244bd1fa9463721b0f54";

/// Istio release: the current stable one (istio/istio tag 1.31.1, 2026-09-21); it supports
/// Kubernetes 1.32 to 1.37, so the node image's 1.36.
pub const ISTIO_VERSION: &str = "1.31.1";
/// sha256 of `istioctl-1.31.1-linux-amd64.tar.gz`, as its `.sha256` file publishes it.
pub const ISTIOCTL_LINUX_AMD64_SHA256: &str =
    "a44563904f22f2a8bf6ac4fff1b0bad9f718587c2be6aa807b83fe9049910639";

/// Bound on asking a tool its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// How a release asset holds the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packaging {
    /// The asset is the executable itself.
    Binary,
    /// A gzipped tarball; the tool is the member with this file name.
    TarGz { member: &'static str },
}

/// A release asset the harness downloads, and the checksums it must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub url: String,
    /// The checksum file published beside the asset (`<sha256>  <name>`).
    pub checksum_url: String,
    /// The pinned sha256, hex.
    pub sha256: String,
    pub packaging: Packaging,
}

/// A tool the harness runs, at the version it pins.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    /// As the tool prints it: `v0.32.0` for kind, `1.31.1` for istioctl.
    pub version: &'static str,
    pub version_args: &'static [&'static str],
    pub parse_version: fn(&str) -> Option<String>,
    /// The download for this platform; `None` where the harness pins none.
    pub release: Option<Release>,
    /// Where a user gets the tool by hand.
    pub install_hint: &'static str,
}

fn linux_amd64() -> bool {
    std::env::consts::OS == "linux" && std::env::consts::ARCH == "x86_64"
}

/// kind, as the harness pins it.
pub fn kind() -> ToolSpec {
    let base = format!("https://github.com/kubernetes-sigs/kind/releases/download/{KIND_VERSION}");
    ToolSpec {
        name: "kind",
        version: KIND_VERSION,
        version_args: &["version"],
        parse_version: crate::cluster::kind::parse_version,
        release: linux_amd64().then(|| Release {
            url: format!("{base}/kind-linux-amd64"),
            checksum_url: format!("{base}/kind-linux-amd64.sha256sum"),
            sha256: KIND_LINUX_AMD64_SHA256.into(),
            packaging: Packaging::Binary,
        }),
        install_hint: "https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    }
}

/// istioctl, as the harness pins it.
pub fn istioctl() -> ToolSpec {
    let asset = format!("istioctl-{ISTIO_VERSION}-linux-amd64.tar.gz");
    let base = format!("https://github.com/istio/istio/releases/download/{ISTIO_VERSION}");
    ToolSpec {
        name: "istioctl",
        version: ISTIO_VERSION,
        version_args: &["version", "--remote=false"],
        parse_version: crate::cluster::istioctl::parse_version,
        release: linux_amd64().then(|| Release {
            url: format!("{base}/{asset}"),
            checksum_url: format!("{base}/{asset}.sha256"),
            sha256: ISTIOCTL_LINUX_AMD64_SHA256.into(),
            packaging: Packaging::TarGz { member: "istioctl" },
        }),
        install_hint: "https://istio.io/latest/docs/setup/additional-setup/download-istio-release/",
    }
}

/// Where the tool lives in the cache: `<cache>/<name>-<version>/<name>`.
pub fn cached_path(spec: &ToolSpec, cache: &Path) -> PathBuf {
    cache
        .join(format!("{}-{}", spec.name, spec.version))
        .join(spec.name)
}

/// How the run gets the tool at its pinned version: a `Use` step for one on `PATH` (that
/// reports the pinned version) or in the cache, else a `Fetch` of the pinned release.
pub async fn source(spec: &ToolSpec, cache: &Path) -> anyhow::Result<(PathBuf, Step)> {
    let path = std::env::var_os("PATH");
    let found = match find_on_path(spec, path.as_deref()).await {
        Some(found) => Some((found, format!("PATH, where it reports {}", spec.version))),
        None => {
            let cached = cached_path(spec, cache);
            crate::tools::executable(&cached).then(|| (cached, "the tool cache".to_string()))
        }
    };
    if let Some((path, from)) = found {
        let step = Step::new(
            Section::Tools,
            Action::Use {
                tool: format!("{} {}", spec.name, spec.version),
                path: path.clone(),
                from,
            },
        );
        return Ok((path, step));
    }
    let Some(release) = &spec.release else {
        return Err(crate::input_error::InputError::new(
            "PATH",
            spec.name,
            format!(
                "the harness pins no {} download for {}/{}, and no {} {} is on PATH",
                spec.name,
                std::env::consts::OS,
                std::env::consts::ARCH,
                spec.name,
                spec.version
            ),
            format!(
                "install {} {} on PATH ({})",
                spec.name, spec.version, spec.install_hint
            ),
        )
        .into());
    };
    let dest = cached_path(spec, cache);
    let fetch = Fetch {
        tool: spec.name.to_string(),
        version: spec.version.to_string(),
        url: release.url.clone(),
        checksum_url: release.checksum_url.clone(),
        sha256: release.sha256.clone(),
        member: match release.packaging {
            Packaging::Binary => None,
            Packaging::TarGz { member } => Some(member.to_string()),
        },
        dest: dest.clone(),
        install_hint: spec.install_hint.to_string(),
    };
    Ok((dest, Step::new(Section::Tools, Action::Fetch(fetch))))
}

/// Executes a `Fetch` step: downloads, checks and installs the tool at its `dest`.
pub async fn fetch(fetch: &Fetch) -> anyhow::Result<PathBuf> {
    download(&http_client()?, fetch).await
}

/// The first `spec.name` on `path` if it reports the pinned version.
pub async fn find_on_path(spec: &ToolSpec, path: Option<&OsStr>) -> Option<PathBuf> {
    let candidate = std::env::split_paths(path?)
        .map(|dir| dir.join(spec.name))
        .find(|p| crate::tools::executable(p))?;
    let args = spec.version_args.iter().map(|a| a.to_string()).collect();
    let run = Invocation::new(&candidate, args);
    match run.run(VERSION_TIMEOUT, None).await {
        Ok(out) => match (spec.parse_version)(&out) {
            Some(v) if v == spec.version => Some(candidate),
            Some(v) => {
                tracing::info!(
                    "{} is {} {v}; the harness pins {}: using its own copy",
                    candidate.display(),
                    spec.name,
                    spec.version
                );
                None
            }
            None => {
                tracing::warn!(
                    "`{}` printed no version the harness can read: using its own copy",
                    run.display()
                );
                None
            }
        },
        Err(e) => {
            tracing::warn!("{e:#}: using the harness's own copy");
            None
        }
    }
}

/// A client for release downloads: bounded connect and transfer.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("canary-harness-xtask/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client for tool downloads")
}

/// Downloads `release` into the cache and checks it. Everything is written in a staging folder
/// inside the cache and moved into place only once checked, so a failure leaves nothing behind.
pub async fn download(client: &reqwest::Client, release: &Fetch) -> anyhow::Result<PathBuf> {
    let what = format!("{} {}", release.tool, release.version);
    let dest = release.dest.clone();
    let dir = dest.parent().context("a cached tool has a folder")?;
    let cache = dir
        .parent()
        .context("a cached tool's folder is in the cache")?;
    let fix = format!(
        "fix: check this machine's internet access (or its HTTPS_PROXY), or install {what} on PATH ({}), or put the binary at {}",
        release.install_hint,
        dest.display()
    );
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let staging =
        Staging::create(cache.join(format!(".download-{}-{}", release.tool, std::process::id())))?;
    tracing::info!("downloading {what} from {}", release.url);

    let published = fetch_text(client, &release.checksum_url)
        .await
        .map_err(|e| anyhow!("downloading the checksum of {what}: {e:#}\n  {fix}"))?;
    let published = parse_checksum(&published).ok_or_else(|| {
        anyhow!(
            "{} holds no sha256 (64 hex digits) to check {what} against",
            release.checksum_url
        )
    })?;
    if published != release.sha256 {
        bail!(
            "the published sha256 of {what} is {published} ({}), but the harness pins {}: the release was changed, or the pin is wrong; nothing was installed",
            release.checksum_url,
            release.sha256
        );
    }

    let file_name = release.url.rsplit('/').next().unwrap_or(&release.tool);
    let asset = staging.0.as_path().join(file_name);
    let got = fetch_to_file(client, &release.url, &asset)
        .await
        .map_err(|e| anyhow!("downloading {what}: {e:#}\n  {fix}"))?;
    if got != release.sha256 {
        bail!(
            "checksum mismatch for {}: its sha256 is {got}, expected {} (pinned and published); the download is corrupt or not the pinned release, and nothing was installed",
            release.url,
            release.sha256
        );
    }

    let binary = staging.0.as_path().join(format!("{}.bin", release.tool));
    match &release.member {
        None => std::fs::rename(&asset, &binary)?,
        Some(member) => extract_tar_member(&asset, member, &binary)?,
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::rename(&binary, &dest).with_context(|| format!("installing {}", dest.display()))?;
    tracing::info!("{what}: {} (downloaded, sha256 checked)", dest.display());
    Ok(dest)
}

/// A folder for one download inside the cache, removed when dropped (also on failure), so
/// that only a checked tool ever lands in the cache.
struct Staging(PathBuf);

impl Staging {
    fn create(path: PathBuf) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating a staging folder {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn fetch_text(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = get(client, url).await?;
    response
        .text()
        .await
        .with_context(|| format!("reading {url}"))
}

/// Streams `url` into `dest` and returns its sha256, hex.
async fn fetch_to_file(client: &reqwest::Client, url: &str, dest: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    let mut response = get(client, url).await?;
    let mut file =
        std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", dest.display()))?;
    }
    file.flush()?;
    Ok(format!("{:x}", hasher.finalize()))
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<reqwest::Response> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}");
    }
    Ok(response)
}

/// The sha256 of a checksum file: its first word, if that is 64 hex digits.
pub fn parse_checksum(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    (word.len() == 64 && word.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| word.to_ascii_lowercase())
}

/// Writes the tarball member whose file name is `member` to `dest`.
pub fn extract_tar_member(archive: &Path, member: &str, dest: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar
        .entries()
        .with_context(|| format!("reading {}", archive.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", archive.display()))?;
        let is_member = entry.header().entry_type().is_file()
            && entry.path()?.file_name() == Some(OsStr::new(member));
        if is_member {
            let mut out = std::fs::File::create(dest)
                .with_context(|| format!("creating {}", dest.display()))?;
            std::io::copy(&mut entry, &mut out)
                .with_context(|| format!("unpacking {member} from {}", archive.display()))?;
            return Ok(());
        }
    }
    bail!("{} has no {member}", archive.display())
}

/// Bound on `docker info`.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);

/// The Docker check, the first step of a kind run: a clear stop (and the way out) when no
/// engine answers.
pub fn docker_check(docker: impl Into<PathBuf>) -> Step {
    let mut run = Run::new(
        Invocation::new(
            docker,
            vec![
                "info".into(),
                "--format".into(),
                "{{.ServerVersion}}".into(),
            ],
        ),
        DOCKER_TIMEOUT,
    )
    .note("kind runs the cluster's nodes as Docker containers");
    run.fix = Some(
        "--mesh kind needs Docker: start a Docker engine, or run `cargo xtask e2e --mesh local` (real Envoy on loopback, no cluster), or `--mesh existing --kubeconfig PATH` for a cluster you have".into(),
    );
    Step::new(Section::Tools, Action::Run(run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::net::TcpListener;
    use std::os::unix::fs::PermissionsExt;

    /// A loopback HTTP server answering GETs from a fixed table; anything else is a 404.
    struct Server {
        base: String,
        _task: tokio::task::JoinHandle<()>,
    }

    impl Server {
        async fn start(routes: Vec<(&str, Vec<u8>)>) -> Self {
            let mut app = axum::Router::new();
            for (path, body) in routes {
                app = app.route(path, axum::routing::get(move || async move { body }));
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self { base, _task: task }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    fn spec(release: Release) -> ToolSpec {
        ToolSpec {
            name: "kind",
            version: "v9.9.9",
            version_args: &["version"],
            parse_version: crate::cluster::kind::parse_version,
            release: Some(release),
            install_hint: "https://example.invalid/install",
        }
    }

    /// The Fetch step the plan makes for `spec` with the cache in `cache`.
    async fn fetch_step(spec: &ToolSpec, cache: &Path) -> Fetch {
        match source(spec, cache).await.unwrap().1.action {
            Action::Fetch(f) => f,
            other => panic!("not a fetch: {other}"),
        }
    }

    fn release(server: &Server, sha256: &str) -> Release {
        Release {
            url: server.url("/dl/kind-linux-amd64"),
            checksum_url: server.url("/dl/kind-linux-amd64.sha256sum"),
            sha256: sha256.into(),
            packaging: Packaging::Binary,
        }
    }

    /// What the cache holds, as sorted relative paths.
    /// Runs a download that must fail, checks it left nothing in the cache, returns the error.
    async fn failed_download(spec: &ToolSpec, cache: &Path) -> String {
        let fetch = fetch_step(spec, cache).await;
        let err = download(&client(), &fetch)
            .await
            .expect_err("the download must fail")
            .to_string();
        assert!(listing(cache).is_empty(), "{:?}", listing(cache));
        err
    }

    fn listing(cache: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(root).unwrap().display().to_string());
                if p.is_dir() {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(cache, cache, &mut out);
        out.sort();
        out
    }

    const BINARY: &[u8] = b"#!/bin/sh\necho kind v9.9.9 go1.26 linux/amd64\n";

    #[tokio::test]
    async fn a_good_download_lands_in_the_cache_executable() {
        let sum = sha256_hex(BINARY);
        let server = Server::start(vec![
            ("/dl/kind-linux-amd64", BINARY.to_vec()),
            (
                "/dl/kind-linux-amd64.sha256sum",
                format!("{sum}  kind-linux-amd64\n").into_bytes(),
            ),
        ])
        .await;
        let cache = tempfile::tempdir().unwrap();
        let spec = spec(release(&server, &sum));
        let fetch = fetch_step(&spec, cache.path()).await;
        let path = download(&client(), &fetch).await.unwrap();
        assert_eq!(path, cached_path(&spec, cache.path()));
        assert_eq!(std::fs::read(&path).unwrap(), BINARY);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(listing(cache.path()), ["kind-v9.9.9", "kind-v9.9.9/kind"]);
        // The cached copy is what the next plan uses, with no network.
        let (found, step) = source(&spec, cache.path()).await.unwrap();
        assert_eq!(found, path);
        assert!(step.to_string().contains("(from the tool cache)"), "{step}");
    }

    #[tokio::test]
    async fn a_bad_checksum_names_both_sums_and_leaves_nothing() {
        let pinned = sha256_hex(BINARY);
        let tampered = b"#!/bin/sh\necho evil\n";
        let server = Server::start(vec![
            ("/dl/kind-linux-amd64", tampered.to_vec()),
            (
                "/dl/kind-linux-amd64.sha256sum",
                format!("{pinned}  kind-linux-amd64\n").into_bytes(),
            ),
        ])
        .await;
        let cache = tempfile::tempdir().unwrap();
        let spec = spec(release(&server, &pinned));
        let err = failed_download(&spec, cache.path()).await;
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(err.contains(&pinned), "{err}");
        assert!(err.contains(&sha256_hex(tampered)), "{err}");
    }

    #[tokio::test]
    async fn a_published_checksum_other_than_the_pin_is_refused() {
        let pinned = sha256_hex(BINARY);
        let other = "f".repeat(64);
        let server = Server::start(vec![
            ("/dl/kind-linux-amd64", BINARY.to_vec()),
            (
                "/dl/kind-linux-amd64.sha256sum",
                format!("{other}  kind-linux-amd64\n").into_bytes(),
            ),
        ])
        .await;
        let cache = tempfile::tempdir().unwrap();
        let spec = spec(release(&server, &pinned));
        let err = failed_download(&spec, cache.path()).await;
        assert!(err.contains(&pinned) && err.contains(&other), "{err}");
    }

    #[rstest]
    #[case::asset_missing(true)]
    #[case::checksum_missing(false)]
    #[tokio::test]
    async fn a_404_is_an_error_naming_the_url(#[case] serve_checksum: bool) {
        let sum = sha256_hex(BINARY);
        let mut routes = vec![];
        if serve_checksum {
            routes.push((
                "/dl/kind-linux-amd64.sha256sum",
                format!("{sum}  kind-linux-amd64\n").into_bytes(),
            ));
        } else {
            routes.push(("/dl/kind-linux-amd64", BINARY.to_vec()));
        }
        let server = Server::start(routes).await;
        let cache = tempfile::tempdir().unwrap();
        let spec = spec(release(&server, &sum));
        let err = failed_download(&spec, cache.path()).await;
        assert!(err.contains("404"), "{err}");
        assert!(err.contains(&server.url("/dl/kind-linux-amd64")), "{err}");
        assert!(err.contains("install kind v9.9.9 on PATH"), "{err}");
    }

    #[tokio::test]
    async fn no_network_is_a_clear_error() {
        // A port that was free a moment ago: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cache = tempfile::tempdir().unwrap();
        let spec = spec(Release {
            url: format!("http://127.0.0.1:{port}/kind"),
            checksum_url: format!("http://127.0.0.1:{port}/kind.sha256sum"),
            sha256: "0".repeat(64),
            packaging: Packaging::Binary,
        });
        let err = failed_download(&spec, cache.path()).await;
        assert!(err.contains("internet access"), "{err}");
    }

    fn tarball(member: &str, bytes: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append_data(&mut header, member, bytes).unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[tokio::test]
    async fn istioctl_is_unpacked_from_its_tarball() {
        let program = b"#!/bin/sh\necho 'client version: 9.9.9'\n";
        let archive = tarball("istioctl", program);
        let sum = sha256_hex(&archive);
        let server = Server::start(vec![
            ("/istioctl.tar.gz", archive),
            (
                "/istioctl.tar.gz.sha256",
                format!("{sum}  istioctl.tar.gz\n").into_bytes(),
            ),
        ])
        .await;
        let cache = tempfile::tempdir().unwrap();
        let spec = ToolSpec {
            name: "istioctl",
            version: "9.9.9",
            version_args: &["version", "--remote=false"],
            parse_version: crate::cluster::istioctl::parse_version,
            release: Some(Release {
                url: server.url("/istioctl.tar.gz"),
                checksum_url: server.url("/istioctl.tar.gz.sha256"),
                sha256: sum,
                packaging: Packaging::TarGz { member: "istioctl" },
            }),
            install_hint: "https://example.invalid",
        };
        let fetch = fetch_step(&spec, cache.path()).await;
        assert_eq!(fetch.member.as_deref(), Some("istioctl"));
        let path = download(&client(), &fetch).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), program);
        assert_eq!(
            listing(cache.path()),
            ["istioctl-9.9.9", "istioctl-9.9.9/istioctl"]
        );
        // And it is found again by its version.
        let dir = path.parent().unwrap().as_os_str().to_owned();
        assert_eq!(find_on_path(&spec, Some(&dir)).await, Some(path));
    }

    #[test]
    fn a_tarball_without_the_member_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        std::fs::write(&archive, tarball("istio-1/README", b"x")).unwrap();
        let err = extract_tar_member(&archive, "istioctl", &dir.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("has no istioctl"), "{err}");
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[rstest]
    #[case::pinned("echo 'kind v9.9.9 go1.26.7 linux/amd64'", true)]
    #[case::older("echo 'kind v0.29.0 go1.24.2 linux/amd64'", false)]
    #[case::unreadable("echo 'something else'", false)]
    #[case::broken("exit 1", false)]
    #[tokio::test]
    async fn a_tool_on_path_is_used_only_at_the_pinned_version(
        #[case] body: &str,
        #[case] used: bool,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let kind = script(dir.path(), "kind", body);
        let spec = spec(Release {
            url: String::new(),
            checksum_url: String::new(),
            sha256: String::new(),
            packaging: Packaging::Binary,
        });
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        let found = find_on_path(&spec, Some(&path)).await;
        assert_eq!(found, used.then_some(kind));
    }

    #[rstest]
    #[case(
        "50030de23cf40a18505f20426f6a8506bedf13c6e509244bd1fa9463721b0f54  kind-linux-amd64\n",
        Some("50030de23cf40a18505f20426f6a8506bedf13c6e509244bd1fa9463721b0f54")
    )]
    #[case(
        "A44563904F22F2A8BF6AC4FFF1B0BAD9F718587C2BE6AA807B83FE9049910639",
        Some("a44563904f22f2a8bf6ac4fff1b0bad9f718587c2be6aa807b83fe9049910639")
    )]
    #[case("<html>Not Found</html>", None)]
    #[case("", None)]
    fn checksum_files_are_parsed(#[case] text: &str, #[case] sum: Option<&str>) {
        assert_eq!(parse_checksum(text).as_deref(), sum);
    }

    #[rstest]
    #[case::engine_up("echo 28.1.1", None)]
    #[case::engine_down(
        "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1",
        Some("Cannot connect to the Docker daemon")
    )]
    #[tokio::test]
    async fn docker_must_answer(#[case] body: &str, #[case] problem: Option<&str>) {
        let dir = tempfile::tempdir().unwrap();
        let docker = script(dir.path(), "docker", body);
        let step = docker_check(docker);
        let Action::Run(run) = &step.action else {
            panic!("the docker check is a run")
        };
        let result = run.invocation.run(run.timeout, None).await;
        match problem {
            None => {
                result.unwrap();
            }
            Some(problem) => {
                let err = crate::istio_mesh::with_fix(result.unwrap_err(), run.fix.as_deref());
                let err = err.to_string();
                assert!(err.contains(problem), "{err}");
                assert!(err.contains("--mesh local"), "{err}");
            }
        }
    }

    #[test]
    fn the_pins_are_well_formed() {
        for sum in [KIND_LINUX_AMD64_SHA256, ISTIOCTL_LINUX_AMD64_SHA256] {
            assert_eq!(parse_checksum(sum).as_deref(), Some(sum));
        }
        let (image, digest) = KIND_NODE_IMAGE.split_once("@sha256:").unwrap();
        assert!(image.starts_with("kindest/node:v1."), "{image}");
        assert!(parse_checksum(digest).is_some(), "{digest}");
        assert!(cached_path(&kind(), Path::new("/c")).ends_with("kind-v0.32.0/kind"));
        assert!(cached_path(&istioctl(), Path::new("/c")).ends_with("istioctl-1.31.1/istioctl"));
    }
}
