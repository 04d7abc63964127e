//! The routing state under test: a scenario resolved against its manifests.
//!
//! Resolving checks everything a run relies on (the VirtualService and its route, the
//! DestinationRule's subsets, the Deployments behind them, the Gateway) before anything starts.
//! Setting a stage's weights is a pure function on the typed VirtualService.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::input_error::{InputError, InputErrors};
use crate::istio::{self, Destination, HttpRouteDestination, PortSelector, VirtualService};
use crate::manifests::{Located, Manifests};
use crate::scenario::{Scenario, Weights};

/// The name Istio gives the sidecars' implicit gateway.
pub const MESH_GATEWAY: &str = "mesh";

/// Where traffic enters the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryPoint {
    /// North-south, through the ingress gateway.
    Ingress,
    /// East-west, from a sidecar inside the mesh.
    Mesh,
}

impl EntryPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryPoint::Ingress => "ingress",
            EntryPoint::Mesh => "mesh",
        }
    }
}

impl std::fmt::Display for EntryPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One subset and the workload behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubsetInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub deployment: String,
    pub image: String,
    /// What podinfo reports in its answers: the image tag.
    pub version: String,
}

/// The VirtualService's binding to the ingress Gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayBinding {
    pub name: String,
    pub port: u32,
    /// The host the prober asks for through the gateway.
    pub host: String,
}

#[derive(Debug, Clone)]
pub struct Routing {
    pub manifests: Manifests,
    pub virtual_service: Located<VirtualService>,
    /// Index of the HTTP route whose weights the stages set.
    pub route_index: usize,
    pub namespace: String,
    /// Fully qualified service host, e.g. `podinfo.test.svc.cluster.local`.
    pub host: String,
    pub port: u32,
    /// Baseline first, canary second.
    pub subsets: [SubsetInfo; 2],
    pub gateway: Option<GatewayBinding>,
    pub mesh_bound: bool,
}

impl Routing {
    /// Checks the scenario against the manifests and gathers what the meshes need.
    pub fn resolve(scenario: &Scenario, manifests: Manifests) -> Result<Self, InputErrors> {
        let sfile = scenario.file.clone();
        let err = |field: &str, problem: String, fix: String| {
            InputErrors::from(InputError::new(&sfile, field, problem, fix))
        };
        let names = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let vs = manifests
            .virtual_service(&scenario.virtual_service)
            .cloned()
            .ok_or_else(|| {
                let have = manifests
                    .virtual_services
                    .iter()
                    .map(|v| v.value.metadata.name.clone());
                err(
                    "virtual_service",
                    format!(
                        "no VirtualService `{}` in {}",
                        scenario.virtual_service,
                        manifests.dir.display()
                    ),
                    format!(
                        "name one of the VirtualServices there: {}",
                        names(have.collect())
                    ),
                )
            })?;
        let vs_file = vs.file.clone();
        let vs_err = |field: &str, problem: String, fix: String| {
            InputErrors::from(InputError::new(&vs_file, field, problem, fix))
        };
        let namespace = vs
            .value
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let http = &vs.value.spec.http;
        let route_index = match &scenario.route {
            Some(name) => http
                .iter()
                .position(|r| r.name.as_deref() == Some(name))
                .ok_or_else(|| {
                    err(
                        "route",
                        format!(
                            "VirtualService `{}` has no HTTP route named `{name}`",
                            scenario.virtual_service
                        ),
                        format!(
                            "name one of its routes: {}",
                            names(http.iter().filter_map(|r| r.name.clone()).collect())
                        ),
                    )
                })?,
            None if http.len() == 1 => 0,
            None => {
                return Err(err(
                    "route",
                    format!(
                        "VirtualService `{}` has {} HTTP routes and the scenario does not say which one to split",
                        scenario.virtual_service,
                        http.len()
                    ),
                    "add `route: <name of the http route>` to the scenario".into(),
                ));
            }
        };
        let route = &http[route_index];
        let Some(first) = route.route.first() else {
            return Err(vs_err(
                &format!("spec.http[{route_index}].route"),
                "the route has no destinations".into(),
                "add the destinations of the two subsets".into(),
            ));
        };
        let host = istio::qualify_host(&first.destination.host, &namespace);
        if let Some((i, other)) = route
            .route
            .iter()
            .enumerate()
            .find(|(_, d)| istio::qualify_host(&d.destination.host, &namespace) != host)
        {
            return Err(vs_err(
                &format!("spec.http[{route_index}].route[{i}].destination.host"),
                format!(
                    "the split goes to two hosts, `{host}` and `{}`",
                    other.destination.host
                ),
                "split between subsets of one host".into(),
            ));
        }
        let port = route
            .route
            .iter()
            .find_map(|d| d.destination.port.map(|p| p.number))
            .or_else(|| service_port(&manifests, &host))
            .ok_or_else(|| {
                vs_err(
                    &format!("spec.http[{route_index}].route[0].destination.port"),
                    format!(
                        "no port for `{host}`: no destination names one and no Service defines one"
                    ),
                    "add `port: {number: 9898}` to the destinations".into(),
                )
            })?;
        let dr = manifests
            .destination_rules
            .iter()
            .find(|d| {
                let ns = d
                    .value
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.clone());
                istio::qualify_host(&d.value.spec.host, &ns) == host
            })
            .ok_or_else(|| {
                err(
                    "virtual_service",
                    format!(
                        "no DestinationRule for host `{host}` in {}",
                        manifests.dir.display()
                    ),
                    "add a DestinationRule with `host` and the subsets of the split".into(),
                )
            })?;
        let mut subsets = Vec::new();
        for (field, name) in [
            ("baseline", &scenario.baseline),
            ("canary", &scenario.canary),
        ] {
            let subset = dr
                .value
                .spec
                .subsets
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| {
                    err(
                        field,
                        format!(
                            "unknown subset `{name}`: DestinationRule `{}` ({}) defines {}",
                            dr.value.metadata.name,
                            dr.file.display(),
                            names(
                                dr.value
                                    .spec
                                    .subsets
                                    .iter()
                                    .map(|s| s.name.clone())
                                    .collect()
                            )
                        ),
                        "name a subset of the DestinationRule, or add the subset there".into(),
                    )
                })?;
            let deployment = manifests
                .deployments
                .iter()
                .find(|d| {
                    let labels = &d.value.spec.template.metadata.labels;
                    !subset.labels.is_empty()
                        && subset.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
                .ok_or_else(|| {
                    InputErrors::from(InputError::new(
                        &dr.file,
                        format!("spec.subsets[{name}].labels"),
                        format!(
                            "no Deployment's pods carry the labels of subset `{name}`: {:?}",
                            subset.labels
                        ),
                        "label the pod template of the subset's Deployment with these labels",
                    ))
                })?;
            let container = &deployment.value.spec.template.spec.containers[..];
            let Some(container) = container.first() else {
                return Err(InputErrors::from(InputError::new(
                    &deployment.file,
                    "spec.template.spec.containers",
                    "the Deployment has no containers",
                    "add the podinfo container",
                )));
            };
            let version = image_tag(&container.image).ok_or_else(|| {
                InputErrors::from(InputError::new(
                    &deployment.file,
                    "spec.template.spec.containers[0].image",
                    format!(
                        "`{}` has no tag, so the version it reports is unknown",
                        container.image
                    ),
                    "pin a released tag, e.g. ghcr.io/stefanprodan/podinfo:6.14.1",
                ))
            })?;
            subsets.push(SubsetInfo {
                name: name.clone(),
                labels: subset.labels.clone(),
                deployment: deployment.value.metadata.name.clone(),
                image: container.image.clone(),
                version,
            });
        }
        if subsets[0].version == subsets[1].version {
            return Err(err(
                "canary",
                format!(
                    "both subsets run version {}, so answers cannot tell them apart",
                    subsets[0].version
                ),
                "give the canary's Deployment another podinfo release".into(),
            ));
        }
        let gateways = &vs.value.spec.gateways;
        let mesh_bound = gateways.is_empty() || gateways.iter().any(|g| g == MESH_GATEWAY);
        let gateway = match gateways.iter().find(|g| *g != MESH_GATEWAY) {
            None => None,
            Some(name) => Some(bind_gateway(&manifests, &vs, name, &namespace)?),
        };
        let [baseline, canary]: [SubsetInfo; 2] = subsets.try_into().expect("two subsets");
        Ok(Routing {
            manifests,
            virtual_service: vs,
            route_index,
            namespace,
            host,
            port,
            subsets: [baseline, canary],
            gateway,
            mesh_bound,
        })
    }

    /// The entry points this VirtualService is bound to, north-south first.
    pub fn entry_points(&self) -> Vec<EntryPoint> {
        let mut out = Vec::new();
        if self.gateway.is_some() {
            out.push(EntryPoint::Ingress);
        }
        if self.mesh_bound {
            out.push(EntryPoint::Mesh);
        }
        out
    }

    /// The VirtualService with a stage's weights on the split route (pure).
    pub fn with_weights(&self, weights: &Weights) -> VirtualService {
        let mut vs = self.virtual_service.value.clone();
        let route = &mut vs.spec.http[self.route_index];
        let host = route.route[0].destination.host.clone();
        route.route = self
            .subsets
            .iter()
            .map(|s| HttpRouteDestination {
                destination: Destination {
                    host: host.clone(),
                    subset: Some(s.name.clone()),
                    port: Some(PortSelector { number: self.port }),
                },
                weight: Some(weights.get(&s.name).copied().unwrap_or(0)),
            })
            .collect();
        vs
    }

    /// The weights of the split route as the manifests have it, per subset (a destination
    /// without a weight is the whole route, as Istio reads a single destination).
    pub fn manifest_weights(&self) -> Weights {
        let route = &self.virtual_service.value.spec.http[self.route_index].route;
        let single = route.len() == 1;
        self.subsets
            .iter()
            .map(|s| {
                let weight = route
                    .iter()
                    .filter(|d| d.destination.subset.as_deref() == Some(s.name.as_str()))
                    .map(|d| d.weight.unwrap_or(if single { 100 } else { 0 }))
                    .sum();
                (s.name.clone(), weight)
            })
            .collect()
    }

    /// The subset whose workload reports `version`.
    pub fn subset_of_version(&self, version: &str) -> Option<&SubsetInfo> {
        self.subsets.iter().find(|s| s.version == version)
    }

    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .manifests
            .objects
            .iter()
            .map(|o| o.file.clone())
            .collect();
        files.dedup();
        files
    }
}

fn service_port(manifests: &Manifests, host: &str) -> Option<u32> {
    let short = host.split('.').next()?;
    let svc = manifests
        .services
        .iter()
        .find(|s| s.value.metadata.name == short)?;
    let ports = &svc.value.spec.ports;
    ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .or(ports.first())
        .map(|p| p.port)
}

/// The image tag, which podinfo reports as its version (`…/podinfo:6.14.1` → `6.14.1`).
pub fn image_tag(image: &str) -> Option<String> {
    let name = image.split('@').next()?;
    let last = name.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    (!tag.is_empty()).then(|| tag.to_string())
}

fn bind_gateway(
    manifests: &Manifests,
    vs: &Located<VirtualService>,
    reference: &str,
    namespace: &str,
) -> Result<GatewayBinding, InputErrors> {
    let (ns, name) = reference.split_once('/').unwrap_or((namespace, reference));
    let gw = manifests
        .gateways
        .iter()
        .find(|g| {
            g.value.metadata.name == name
                && g.value.metadata.namespace.as_deref().unwrap_or(namespace) == ns
        })
        .ok_or_else(|| {
            InputErrors::from(InputError::new(
                &vs.file,
                "spec.gateways",
                format!(
                    "the VirtualService names gateway `{reference}`, which is not in the manifests"
                ),
                "add the Gateway to the manifests folder or remove it from `gateways`".to_string(),
            ))
        })?;
    let server = gw
        .value
        .spec
        .servers
        .iter()
        .find(|s| s.port.protocol.eq_ignore_ascii_case("HTTP"))
        .ok_or_else(|| {
            InputErrors::from(InputError::new(
                &gw.file,
                "spec.servers",
                "the Gateway has no HTTP server".to_string(),
                "add a server with `protocol: HTTP`".to_string(),
            ))
        })?;
    let host = vs
        .value
        .spec
        .hosts
        .iter()
        .find(|h| server.hosts.iter().any(|pattern| host_matches(pattern, h)))
        .cloned()
        .ok_or_else(|| {
            InputErrors::from(InputError::new(
                &vs.file,
                "spec.hosts",
                format!(
                    "none of the VirtualService's hosts {:?} is served by Gateway `{}` (hosts {:?})",
                    vs.value.spec.hosts, gw.value.metadata.name, server.hosts
                ),
                "add a host that the Gateway serves to the VirtualService".to_string(),
            ))
        })?;
    Ok(GatewayBinding {
        name: gw.value.metadata.name.clone(),
        port: server.port.number,
        host,
    })
}

/// Gateway host matching: `*` matches all, `*.example.com` a suffix; an optional `ns/` prefix.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.rsplit('/').next().unwrap_or(pattern);
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

    fn tutorial() -> (Scenario, Manifests) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
        let scenario = Scenario::load(&path).unwrap();
        let manifests = Manifests::load(&scenario.manifests).unwrap();
        (scenario, manifests)
    }

    #[test]
    fn the_tutorial_resolves() {
        let (scenario, manifests) = tutorial();
        let r = Routing::resolve(&scenario, manifests).unwrap();
        assert_eq!(r.host, "podinfo.test.svc.cluster.local");
        assert_eq!(r.port, 9898);
        assert_eq!(r.subsets[0].name, "ga");
        assert_eq!(r.subsets[1].deployment, "podinfo-canary");
        assert_ne!(r.subsets[0].version, r.subsets[1].version);
        let gw = r.gateway.as_ref().unwrap();
        assert_eq!((gw.port, gw.host.as_str()), (80, "podinfo.example.com"));
        assert_eq!(
            r.entry_points(),
            vec![EntryPoint::Ingress, EntryPoint::Mesh]
        );
        assert_eq!(
            r.subset_of_version(&r.subsets[1].version).unwrap().name,
            "canary"
        );
    }

    #[rstest]
    #[case(&[("ga", 100), ("canary", 0)])]
    #[case(&[("ga", 90), ("canary", 10)])]
    #[case(&[("ga", 0), ("canary", 100)])]
    fn with_weights_sets_only_the_split(#[case] w: &[(&str, u32)]) {
        let (scenario, manifests) = tutorial();
        let r = Routing::resolve(&scenario, manifests).unwrap();
        let weights: Weights = w.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let vs = r.with_weights(&weights);
        let got: Vec<(String, u32)> = vs.spec.http[0]
            .route
            .iter()
            .map(|d| (d.destination.subset.clone().unwrap(), d.weight.unwrap()))
            .collect();
        let want: Vec<(String, u32)> = vec![
            ("ga".into(), weights["ga"]),
            ("canary".into(), weights["canary"]),
        ];
        assert_eq!(got, want);
        // Everything else stays as the manifest has it.
        let mut before = r.virtual_service.value.clone();
        let mut after = vs.clone();
        before.spec.http[0].route.clear();
        after.spec.http[0].route.clear();
        assert_eq!(before, after);
    }

    #[rstest]
    #[case("ghcr.io/stefanprodan/podinfo:6.14.1", Some("6.14.1"))]
    #[case("localhost:5000/podinfo:1.0", Some("1.0"))]
    #[case("podinfo", None)]
    #[case("localhost:5000/podinfo", None)]
    #[case("ghcr.io/x/podinfo:6.1@sha256:abc", Some("6.1"))]
    fn image_tags(#[case] image: &str, #[case] want: Option<&str>) {
        assert_eq!(image_tag(image).as_deref(), want);
    }

    #[rstest]
    #[case("*", "a.b", true)]
    #[case("*.example.com", "podinfo.example.com", true)]
    #[case("*.example.com", "example.com", false)]
    #[case("test/podinfo.example.com", "podinfo.example.com", true)]
    #[case("other.example.com", "podinfo.example.com", false)]
    fn gateway_hosts(#[case] pattern: &str, #[case] host: &str, #[case] want: bool) {
        assert_eq!(host_matches(pattern, host), want);
    }

    #[rstest]
    #[case::vs("virtual_service: podinfo", "virtual_service: nope", "virtual_service")]
    #[case::subset("canary: canary", "canary: blue", "canary")]
    #[case::route("baseline: ga", "baseline: ga\nroute: nope", "route")]
    fn scenario_mismatches_name_the_field(
        #[case] from: &str,
        #[case] to: &str,
        #[case] field: &str,
    ) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
        let text = std::fs::read_to_string(&path).unwrap().replace(from, to);
        let text = text.replace("{ ga: 100, canary: 0 }", "{ ga: 100 }");
        let text = text.replace("{ ga: 0, canary: 100 }", "{ ga: 100 }");
        let text = text.replace("{ ga: 90, canary: 10 }", "{ ga: 100 }");
        let text = text.replace("{ ga: 40, canary: 60 }", "{ ga: 100 }");
        let scenario = match Scenario::parse(&path, &text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let manifests = Manifests::load(&scenario.manifests).unwrap();
        let err = Routing::resolve(&scenario, manifests).unwrap_err();
        assert_eq!(err.0[0].field, field, "{err}");
        assert_eq!(err.0[0].file, path);
    }
}
