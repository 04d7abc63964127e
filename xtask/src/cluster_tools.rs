//! The tools of the cluster meshes, kind and istioctl, at pinned versions: taken from `PATH`
//! when their version is the pinned one, else from the harness's tool cache, else downloaded
//! into it from the project's GitHub release and checked against the pinned sha256 (and
//! against the checksum file published beside the release asset). Also the Docker check that
//! `--mesh kind` does before anything else.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};

use crate::invocation::Invocation;

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
/// Bound on `docker info`.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);

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
        parse_version: crate::kind::parse_version,
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
        parse_version: crate::istioctl::parse_version,
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

/// The tool at its pinned version: from `PATH`, the cache, or a checked download.
pub async fn ensure(spec: &ToolSpec, cache: &Path) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH");
    if let Some(found) = find_on_path(spec, path.as_deref()).await {
        tracing::info!(
            "{} {}: {} (from PATH)",
            spec.name,
            spec.version,
            found.display()
        );
        return Ok(found);
    }
    let cached = cached_path(spec, cache);
    if harness::tools::executable(&cached) {
        tracing::info!(
            "{} {}: {} (from the tool cache)",
            spec.name,
            spec.version,
            cached.display()
        );
        return Ok(cached);
    }
    let Some(release) = &spec.release else {
        bail!(
            "the harness pins no {} download for {}/{}\n  fix: install {} {} on PATH ({})",
            spec.name,
            std::env::consts::OS,
            std::env::consts::ARCH,
            spec.name,
            spec.version,
            spec.install_hint
        );
    };
    download(&http_client()?, spec, release, cache).await
}

/// The first `spec.name` on `path` if it reports the pinned version.
pub async fn find_on_path(spec: &ToolSpec, path: Option<&OsStr>) -> Option<PathBuf> {
    let candidate = std::env::split_paths(path?)
        .map(|dir| dir.join(spec.name))
        .find(|p| harness::tools::executable(p))?;
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
pub async fn download(
    client: &reqwest::Client,
    spec: &ToolSpec,
    release: &Release,
    cache: &Path,
) -> anyhow::Result<PathBuf> {
    let what = format!("{} {}", spec.name, spec.version);
    let fix = format!(
        "fix: check this machine's internet access (or its HTTPS_PROXY), or install {what} on PATH ({}), or put the binary at {}",
        spec.install_hint,
        cached_path(spec, cache).display()
    );
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(cache)
        .with_context(|| format!("creating a staging folder in {}", cache.display()))?;
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

    let file_name = release.url.rsplit('/').next().unwrap_or(spec.name);
    let asset = staging.path().join(file_name);
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

    let binary = staging.path().join(format!("{}.bin", spec.name));
    match release.packaging {
        Packaging::Binary => std::fs::rename(&asset, &binary)?,
        Packaging::TarGz { member } => extract_tar_member(&asset, member, &binary)?,
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    let dest = cached_path(spec, cache);
    let dir = dest.parent().expect("a cached tool has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::rename(&binary, &dest).with_context(|| format!("installing {}", dest.display()))?;
    tracing::info!("{what}: {} (downloaded, sha256 checked)", dest.display());
    Ok(dest)
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

/// The argv of the Docker check.
pub fn docker_info(docker: impl Into<PathBuf>) -> Invocation {
    Invocation::new(
        docker,
        vec![
            "info".into(),
            "--format".into(),
            "{{.ServerVersion}}".into(),
        ],
    )
}

/// Fails with a clear message (exit 2) unless a Docker engine answers `check`
/// (normally [`docker_info`]).
pub async fn check_docker(check: &Invocation) -> anyhow::Result<()> {
    let fix = "fix: start a Docker engine (kind runs the cluster's nodes as containers), or run `cargo xtask e2e --mesh local` (real Envoy on loopback, no cluster), or `--mesh existing --kubeconfig PATH` for a cluster you have";
    match check.run(DOCKER_TIMEOUT, None).await {
        Ok(version) => {
            tracing::info!("docker engine {}", version.trim());
            Ok(())
        }
        Err(e) => {
            let why = format!("{e:#}");
            let problem = if why.contains("is not installed") {
                "there is no `docker` command on PATH".to_string()
            } else {
                format!("no Docker engine answers: {why}")
            };
            bail!("--mesh kind needs Docker, and {problem}\n  {fix}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    /// A loopback HTTP server answering GETs from a fixed table; anything else is a 404.
    struct Server {
        base: String,
    }

    impl Server {
        fn start(routes: Vec<(&str, Vec<u8>)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let routes: Arc<HashMap<String, Vec<u8>>> = Arc::new(
                routes
                    .into_iter()
                    .map(|(p, b)| (p.to_string(), b))
                    .collect(),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        continue;
                    }
                    // Skip the headers.
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, body) = match routes.get(&path) {
                        Some(body) => ("200 OK", body.clone()),
                        None => ("404 Not Found", b"Not Found".to_vec()),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                }
            });
            Self { base }
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
            parse_version: crate::kind::parse_version,
            release: Some(release),
            install_hint: "https://example.invalid/install",
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
        let release = spec.release.as_ref().expect("a release to download");
        let err = download(&client(), spec, release, cache)
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
        ]);
        let cache = tempfile::tempdir().unwrap();
        let spec = spec(release(&server, &sum));
        let path = download(
            &client(),
            &spec,
            spec.release.as_ref().unwrap(),
            cache.path(),
        )
        .await
        .unwrap();
        assert_eq!(path, cached_path(&spec, cache.path()));
        assert_eq!(std::fs::read(&path).unwrap(), BINARY);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(listing(cache.path()), ["kind-v9.9.9", "kind-v9.9.9/kind"]);
        // The cached copy is what `ensure` finds next time, with no network.
        assert_eq!(ensure(&spec, cache.path()).await.unwrap(), path);
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
        ]);
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
        ]);
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
        let server = Server::start(routes);
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
        ]);
        let cache = tempfile::tempdir().unwrap();
        let spec = ToolSpec {
            name: "istioctl",
            version: "9.9.9",
            version_args: &["version", "--remote=false"],
            parse_version: crate::istioctl::parse_version,
            release: Some(Release {
                url: server.url("/istioctl.tar.gz"),
                checksum_url: server.url("/istioctl.tar.gz.sha256"),
                sha256: sum,
                packaging: Packaging::TarGz { member: "istioctl" },
            }),
            install_hint: "https://example.invalid",
        };
        let path = download(
            &client(),
            &spec,
            spec.release.as_ref().unwrap(),
            cache.path(),
        )
        .await
        .unwrap();
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
        let result = check_docker(&docker_info(docker)).await;
        match problem {
            None => result.unwrap(),
            Some(problem) => {
                let err = result.unwrap_err().to_string();
                assert!(err.contains(problem), "{err}");
                assert!(err.contains("--mesh local"), "{err}");
            }
        }
    }

    #[tokio::test]
    async fn no_docker_command_is_a_clear_error() {
        let err = check_docker(&docker_info("/nonexistent/docker"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `docker` command"), "{err}");
        assert!(err.contains("--mesh local"), "{err}");
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
