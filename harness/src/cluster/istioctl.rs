//! istioctl: the argv of each call the harness makes.
//!
//! Every call names the cluster's kubeconfig (and context) explicitly; the harness never relies
//! on the user's current context.

use std::path::Path;
use std::time::Duration;

use crate::invocation::Invocation;

/// What `--readiness-timeout` gets: istioctl waits this long for the installed components.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(300);

/// The install the harness makes, as an IstioOperator file: the default profile (istiod and an
/// ingress gateway) with requests small enough for a kind node on a CI runner, in the lasting
/// `components.*.k8s.resources` form (`values.*.resources` is deprecated in 1.31), and the
/// gateway's Service as ClusterIP: the harness reaches the gateway by port-forward, and the
/// profile's LoadBalancer would be a real load balancer on a cloud cluster. The gateway is
/// named in the file because a component list replaces the profile's list.
pub const OPERATOR_YAML: &str = "\
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  profile: default
  components:
    pilot:
      k8s:
        resources:
          requests: {cpu: 100m, memory: 100Mi}
    ingressGateways:
    - name: istio-ingressgateway
      enabled: true
      k8s:
        resources:
          requests: {cpu: 50m, memory: 64Mi}
  values:
    gateways:
      istio-ingressgateway:
        type: ClusterIP
";

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

/// `istioctl install -f <operator file>` against the cluster of `kubeconfig` (and `context`).
pub fn install_args(kubeconfig: &Path, context: Option<&str>, operator: &Path) -> Vec<String> {
    let mut args = cluster_args("install", kubeconfig, context);
    args.extend([
        "-f".into(),
        operator.display().to_string(),
        "--readiness-timeout".into(),
        format!("{}s", READINESS_TIMEOUT.as_secs()),
    ]);
    args
}

/// `istioctl uninstall --purge`: removes an Istio that the run installed on a user's cluster.
pub fn uninstall_args(kubeconfig: &Path, context: Option<&str>) -> Vec<String> {
    let mut args = cluster_args("uninstall", kubeconfig, context);
    args.push("--purge".into());
    args
}

fn cluster_args(verb: &str, kubeconfig: &Path, context: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        verb.into(),
        "-y".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
    ];
    if let Some(context) = context {
        args.extend(["--context".into(), context.to_string()]);
    }
    args
}

/// An istioctl call as the harness runs it; `KUBECONFIG` is set in istioctl's environment only.
pub fn invocation(istioctl: &Path, kubeconfig: &Path, args: Vec<String>) -> Invocation {
    Invocation::new(istioctl, args).env("KUBECONFIG", kubeconfig.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::kind(
        None,
        "install -y --kubeconfig /s/kind-c.kubeconfig -f /r/istio-operator.yaml --readiness-timeout 300s"
    )]
    #[case::existing(
        Some("prod-eu"),
        "install -y --kubeconfig /s/kind-c.kubeconfig --context prod-eu -f /r/istio-operator.yaml --readiness-timeout 300s"
    )]
    fn install_argv(#[case] context: Option<&str>, #[case] expected: &str) {
        let args = install_args(
            Path::new("/s/kind-c.kubeconfig"),
            context,
            Path::new("/r/istio-operator.yaml"),
        );
        assert_eq!(args.join(" "), expected);
        let uninstall = uninstall_args(Path::new("/k"), context).join(" ");
        assert!(
            uninstall.starts_with("uninstall -y --kubeconfig /k") && uninstall.ends_with("--purge")
        );
    }

    #[test]
    fn the_operator_file_asks_for_a_cluster_ip_gateway_and_small_requests() {
        let iop: serde_json::Value = serde_saphyr::from_str(OPERATOR_YAML).unwrap();
        assert_eq!(iop["kind"], "IstioOperator");
        assert_eq!(iop["spec"]["profile"], "default");
        let gateway = &iop["spec"]["components"]["ingressGateways"][0];
        assert_eq!(gateway["name"], "istio-ingressgateway");
        assert_eq!(gateway["enabled"], true);
        assert_eq!(gateway["k8s"]["resources"]["requests"]["cpu"], "50m");
        assert_eq!(
            iop["spec"]["components"]["pilot"]["k8s"]["resources"]["requests"]["memory"],
            "100Mi"
        );
        assert_eq!(
            iop["spec"]["values"]["gateways"]["istio-ingressgateway"]["type"],
            "ClusterIP"
        );
        // No deprecated `values.*.resources`.
        assert!(!OPERATOR_YAML.contains("values.pilot"));
        assert!(iop["spec"]["values"]["pilot"].is_null());
    }

    #[test]
    fn the_install_sets_kubeconfig_for_istioctl_only() {
        let run = invocation(
            Path::new("/t/istioctl"),
            Path::new("/s/k"),
            install_args(Path::new("/s/k"), None, Path::new("/f")),
        );
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
