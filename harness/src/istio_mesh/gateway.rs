//! Finding the ingress gateway's pod, the container port a Gateway server binds, and the name
//! of the route configuration Envoy uses there.
//!
//! istiod names a gateway's HTTP route configuration `http.<port the listener binds>`. With
//! istioctl's default gateway, the Gateway's port 80 is the Service port whose target is
//! container port 8080, so the route configuration is `http.8080`. The Service is read to
//! map the port; without it the harness falls back to istioctl's convention.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, ListParams};

use crate::routing::Routing;

/// The namespace of istiod and of the default ingress gateway.
pub const ISTIO_NAMESPACE: &str = "istio-system";

/// The selector of the Gateway the VirtualService binds to (default `istio=ingressgateway`).
pub fn gateway_selector(routing: &Routing) -> BTreeMap<String, String> {
    let name = routing.gateway.as_ref().map(|g| g.name.as_str());
    routing
        .manifests
        .gateways
        .iter()
        .find(|g| Some(g.value.metadata.name.as_str()) == name)
        .and_then(|g| g.value.spec.selector.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]))
}

/// The container port behind Service port `port` of the gateway's Services (those whose
/// selector is part of the gateway pods' labels); istioctl's convention (80 → 8080,
/// 443 → 8443) when no Service says.
pub fn target_port(services: &[Service], selector: &BTreeMap<String, String>, port: u32) -> u16 {
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let sel = spec.selector.clone().unwrap_or_default();
        if sel.is_empty() || !sel.iter().all(|(k, v)| selector.get(k) == Some(v)) {
            continue;
        }
        for p in spec.ports.iter().flatten() {
            if p.port as u32 != port {
                continue;
            }
            match &p.target_port {
                Some(IntOrString::Int(n)) => return *n as u16,
                // A named target port: the Service port itself is the best guess left.
                Some(IntOrString::String(_)) | None => return p.port as u16,
            }
        }
    }
    if port < 1024 {
        (port + 8000) as u16
    } else {
        port as u16
    }
}

/// The gateway pod the Gateway's selector picks, in any namespace (Helm's gateway chart runs
/// it in `istio-ingress`, istioctl's in `istio-system`): a ready pod that is not being
/// deleted, and the container port its own Service maps `gateway_port` to.
pub async fn find_gateway(
    client: &Client,
    selector: &BTreeMap<String, String>,
    gateway_port: u32,
) -> anyhow::Result<(String, String, u16)> {
    let text = crate::steps::selector_text(selector);
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().labels(&text))
        .await
        .with_context(|| format!("listing the gateway pods ({text}) of every namespace"))?
        .items;
    let name = super::waits::live_ready_pod(&pods).with_context(|| {
        format!(
            "no ready gateway pod ({text}) that is not being deleted, in any namespace ({} found)",
            pods.len()
        )
    })?;
    let pod = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        .expect("the chosen pod is in the list");
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let services = Api::<Service>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the Services of {namespace}"))?
        .items;
    let port = target_port_of(&services, pod, &labels, gateway_port);
    Ok((namespace, name, port))
}

/// [`target_port`], resolving a named target port from the pod's own container ports.
fn target_port_of(
    services: &[Service],
    pod: &Pod,
    labels: &BTreeMap<String, String>,
    port: u32,
) -> u16 {
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let sel = spec.selector.clone().unwrap_or_default();
        if sel.is_empty() || !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        for p in spec
            .ports
            .iter()
            .flatten()
            .filter(|p| p.port as u32 == port)
        {
            if let Some(IntOrString::String(name)) = &p.target_port {
                let named = pod
                    .spec
                    .iter()
                    .flat_map(|s| &s.containers)
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()));
                if let Some(cp) = named {
                    return cp.container_port as u16;
                }
            }
        }
    }
    target_port(services, labels, port)
}

/// `http.<container port>`: the route configuration of a gateway's HTTP server.
pub fn route_config_name(container_port: u16) -> String {
    format!("http.{container_port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn istioctl_gateway_service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {"selector": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
                     "ports": [{"name": "status-port", "port": 15021, "targetPort": 15021},
                               {"name": "http2", "port": 80, "targetPort": 8080},
                               {"name": "https", "port": 443, "targetPort": 8443}]}
        }))
        .unwrap()
    }

    #[test]
    fn port_80_of_istioctls_gateway_is_container_port_8080() {
        let labels = BTreeMap::from([
            ("app".to_string(), "istio-ingressgateway".to_string()),
            ("istio".to_string(), "ingressgateway".to_string()),
        ]);
        let services = vec![istioctl_gateway_service()];
        assert_eq!(target_port(&services, &labels, 80), 8080);
        assert_eq!(target_port(&services, &labels, 443), 8443);
        assert_eq!(
            route_config_name(target_port(&services, &labels, 80)),
            "http.8080"
        );
        // Without the Service: istioctl's convention.
        assert_eq!(target_port(&[], &labels, 80), 8080);
        assert_eq!(target_port(&[], &labels, 9000), 9000);
    }
}
