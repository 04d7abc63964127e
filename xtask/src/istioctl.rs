//! istioctl: the argv of each call the harness makes.
//!
//! Every call names the cluster's kubeconfig (and context) explicitly; the harness never relies
//! on the user's current context.

use std::path::Path;
use std::time::Duration;

use crate::invocation::Invocation;

/// What `--readiness-timeout` gets: istioctl waits this long for the installed components.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on the whole `istioctl install`: image pulls, then the readiness wait.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// The settings of the install: the default profile (istiod and an ingress gateway), with
/// requests small enough for a kind node on a CI runner.
pub const INSTALL_SETTINGS: &[&str] = &[
    "profile=default",
    "values.pilot.resources.requests.cpu=100m",
    "values.pilot.resources.requests.memory=100Mi",
    "values.gateways.istio-ingressgateway.resources.requests.cpu=50m",
    "values.gateways.istio-ingressgateway.resources.requests.memory=64Mi",
];

/// The client version in `istioctl version --remote=false`'s output (`client version: 1.31.1`,
/// or the bare version with `--short`).
pub fn parse_version(output: &str) -> Option<String> {
    let is_version = |v: &str| {
        let parts: Vec<&str> = v.split('.').collect();
        parts.len() >= 3 && parts[..2].iter().all(|p| p.parse::<u32>().is_ok())
    };
    output.lines().map(str::trim).find_map(|line| {
        let v = line
            .strip_prefix("client version:")
            .map(str::trim)
            .unwrap_or(line);
        is_version(v).then(|| v.to_string())
    })
}

pub fn version_args() -> Vec<String> {
    vec!["version".into(), "--remote=false".into()]
}

/// `istioctl install` against the cluster of `kubeconfig` (and `context`).
pub fn install_args(kubeconfig: &Path, context: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "install".into(),
        "-y".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
    ];
    if let Some(context) = context {
        args.extend(["--context".into(), context.to_string()]);
    }
    for setting in INSTALL_SETTINGS {
        args.extend(["--set".into(), setting.to_string()]);
    }
    args.extend([
        "--readiness-timeout".into(),
        format!("{}s", READINESS_TIMEOUT.as_secs()),
    ]);
    args
}

/// The install as the harness runs it; `KUBECONFIG` is set in istioctl's environment only.
pub fn install(istioctl: &Path, kubeconfig: &Path, context: Option<&str>) -> Invocation {
    Invocation::new(istioctl, install_args(kubeconfig, context))
        .env("KUBECONFIG", kubeconfig.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const SETS: &str = "--set profile=default \
        --set values.pilot.resources.requests.cpu=100m \
        --set values.pilot.resources.requests.memory=100Mi \
        --set values.gateways.istio-ingressgateway.resources.requests.cpu=50m \
        --set values.gateways.istio-ingressgateway.resources.requests.memory=64Mi";

    #[rstest]
    #[case::kind(None, format!("install -y --kubeconfig /s/kind-c.kubeconfig {SETS} --readiness-timeout 300s"))]
    #[case::existing(Some("prod-eu"), format!("install -y --kubeconfig /s/kind-c.kubeconfig --context prod-eu {SETS} --readiness-timeout 300s"))]
    fn install_argv(#[case] context: Option<&str>, #[case] expected: String) {
        let args = install_args(Path::new("/s/kind-c.kubeconfig"), context);
        assert_eq!(args.join(" "), expected);
    }

    #[test]
    fn the_install_sets_kubeconfig_for_istioctl_only() {
        let run = install(Path::new("/t/istioctl"), Path::new("/s/k"), None);
        assert_eq!(run.env, [("KUBECONFIG".to_string(), "/s/k".to_string())]);
        assert_eq!(run.argv()[..2], ["/t/istioctl", "install"]);
        assert_eq!(version_args().join(" "), "version --remote=false");
    }

    #[rstest]
    #[case("client version: 1.31.1\n", Some("1.31.1"))]
    #[case("1.31.1\n", Some("1.31.1"))]
    #[case("client version: 1.32.0-alpha.0\n", Some("1.32.0-alpha.0"))]
    #[case(
        "2026-11-27T10:00:00Z info something\nclient version: 1.30.3\n",
        Some("1.30.3")
    )]
    #[case("no running Istio pods in \"istio-system\"", None)]
    #[case("", None)]
    fn versions(#[case] output: &str, #[case] version: Option<&str>) {
        assert_eq!(parse_version(output).as_deref(), version);
    }
}
