//! The routing state under test: a scenario resolved against its manifests.
//!
//! Resolving checks everything a run relies on (the VirtualService and its route, the
//! DestinationRule's subsets, the Deployments behind them, the Gateway) before anything starts.
//! A stage's VirtualService ([`Routing::staged`]) is the manifest's own object, every field
//! kept, with three things changed: the split route's weights, a header on every destination
//! naming its subset (so any app's answer says which subset served it), and a header on every
//! route naming the stage (so an answer from an older route configuration can be told apart).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::input_error::{InputError, InputErrors};
use crate::istio::{self, VirtualService};
use crate::manifests::{Located, Manifests};
use crate::scenario::{Scenario, Weights};

/// The name Istio gives the sidecars' implicit gateway.
pub const MESH_GATEWAY: &str = "mesh";
/// The response header the staged VirtualService adds per destination: the subset.
pub const SUBSET_HEADER: &str = "x-canary-harness-subset";
/// The response header the staged VirtualService adds per route: the stage's stamp.
pub const STAGE_HEADER: &str = "x-canary-harness-stage";

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
    /// The image's tag: the version an app that tells its version should report (`None`
    /// when the image has no tag).
    pub version: Option<String>,
}

impl SubsetInfo {
    /// The version a local backend of this subset reports (its tag, or `untagged`).
    pub fn backend_version(&self) -> &str {
        self.version.as_deref().unwrap_or("untagged")
    }
}

/// The VirtualService's binding to the ingress Gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayBinding {
    pub name: String,
    /// `namespace/name`, as route matches name gateways.
    pub reference: String,
    pub port: u32,
    /// The host the prober asks for through the gateway.
    pub host: String,
}

#[derive(Debug, Clone)]
pub struct Routing {
    pub manifests: Manifests,
    pub virtual_service: Located<VirtualService>,
    /// The VirtualService as its file has it, every field kept: what stages change.
    pub virtual_service_body: Value,
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

/// A stage's VirtualService: the body to apply (the manifest's object, changed only as the
/// module's doc says) and the same, typed, for the local Envoy.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    pub body: Value,
    pub virtual_service: VirtualService,
    pub weights: Weights,
    /// The value of [`STAGE_HEADER`] in answers routed by this configuration.
    pub stamp: String,
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
                        manifests.describe_sources()
                    ),
                    format!(
                        "name one of the VirtualServices there: {}",
                        names(have.collect())
                    ),
                )
            })?;
        let body = manifests
            .raw(&vs)
            .cloned()
            .expect("every typed object is among the objects");
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
        let http = vs.value.spec.http();
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
        let Some(first) = route.route().first() else {
            return Err(vs_err(
                &format!("spec.http[{route_index}].route"),
                "the route has no destinations".into(),
                "add the destinations of the two subsets".into(),
            ));
        };
        let host = istio::qualify_host(&first.destination.host, &namespace);
        if let Some((i, other)) = route
            .route()
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
        for (i, r) in http.iter().enumerate() {
            let sets = |h: &Option<istio::Headers>| {
                h.as_ref()
                    .and_then(|h| h.response.as_ref())
                    .is_some_and(|r| {
                        r.set().chain(r.add()).any(|(k, _)| {
                            k.eq_ignore_ascii_case(SUBSET_HEADER)
                                || k.eq_ignore_ascii_case(STAGE_HEADER)
                        })
                    })
            };
            let mine = sets(&r.headers) || r.route().iter().any(|d| sets(&d.headers));
            if mine {
                return Err(vs_err(
                    &format!("spec.http[{i}]"),
                    format!(
                        "the route sets `{SUBSET_HEADER}` or `{STAGE_HEADER}`, the harness's own headers"
                    ),
                    "remove them from the route: the harness sets them on every stage".into(),
                ));
            }
        }
        let port = route
            .route()
            .iter()
            .find_map(|d| d.destination.port.and_then(|p| p.number))
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
                        manifests.describe_sources()
                    ),
                    "add a DestinationRule with `host` and the subsets of the split".into(),
                )
            })?;
        let mut subsets = Vec::new();
        for (field, name) in [
            ("baseline", &scenario.baseline),
            ("canary", &scenario.canary),
        ] {
            let subset = dr.value.spec.subset(name).ok_or_else(|| {
                err(
                    field,
                    format!(
                        "unknown subset `{name}`: DestinationRule `{}` ({}) defines {}",
                        dr.value.metadata.name,
                        dr.file.display(),
                        names(
                            dr.value
                                .spec
                                .subsets()
                                .iter()
                                .map(|s| s.name.clone())
                                .collect()
                        )
                    ),
                    "name a subset of the DestinationRule, or add the subset there".into(),
                )
            })?;
            let labels = subset.labels.clone().unwrap_or_default();
            let deployment = manifests
                .deployments
                .iter()
                .find(|d| {
                    let pod = &d.value.spec.template.metadata.labels;
                    !labels.is_empty() && labels.iter().all(|(k, v)| pod.get(k) == Some(v))
                })
                .ok_or_else(|| {
                    InputErrors::from(InputError::new(
                        &dr.file,
                        format!("spec.subsets[{name}].labels"),
                        format!(
                            "no Deployment's pods carry the labels of subset `{name}`: {labels:?}"
                        ),
                        "label the pod template of the subset's Deployment with these labels",
                    ))
                })?;
            let Some(container) = deployment.value.spec.template.spec.containers.first() else {
                return Err(InputErrors::from(InputError::new(
                    &deployment.file,
                    "spec.template.spec.containers",
                    "the Deployment has no containers",
                    "add the app's container",
                )));
            };
            let version = image_tag(&container.image);
            if version.is_none() && scenario.identify.is_some() {
                return Err(InputErrors::from(InputError::new(
                    &deployment.file,
                    "spec.template.spec.containers[0].image",
                    format!(
                        "`{}` has no tag, so the version its answers must report is unknown",
                        container.image
                    ),
                    "pin a released tag, e.g. ghcr.io/stefanprodan/podinfo:6.14.1, or drop `identify` from the scenario",
                )));
            }
            subsets.push(SubsetInfo {
                name: name.clone(),
                labels,
                deployment: deployment.value.metadata.name.clone(),
                image: container.image.clone(),
                version,
            });
        }
        if let Some((i, d)) = route.route().iter().enumerate().find(|(_, d)| {
            d.destination
                .subset
                .as_deref()
                .is_none_or(|s| s != scenario.baseline && s != scenario.canary)
        }) {
            return Err(vs_err(
                &format!("spec.http[{route_index}].route[{i}].destination.subset"),
                format!(
                    "the split route sends traffic to {}, which is neither `{}` nor `{}`",
                    d.destination
                        .subset
                        .as_deref()
                        .map(|s| format!("subset `{s}`"))
                        .unwrap_or_else(|| "the whole service (no subset)".into()),
                    scenario.baseline,
                    scenario.canary
                ),
                "split only between the scenario's baseline and canary subsets".into(),
            ));
        }
        if scenario.identify.is_some() && subsets[0].version == subsets[1].version {
            return Err(err(
                "canary",
                format!(
                    "both subsets run version {}, so the versions their answers report cannot tell them apart",
                    subsets[0].backend_version()
                ),
                "give the canary's Deployment another release, or drop `identify` (the harness's own header tells the subsets apart)".into(),
            ));
        }
        let gateways = vs.value.spec.gateways();
        let mesh_bound = gateways.is_empty() || gateways.iter().any(|g| g == MESH_GATEWAY);
        let gateway = match gateways.iter().find(|g| *g != MESH_GATEWAY) {
            None => None,
            Some(name) => Some(bind_gateway(&manifests, &vs, name, &namespace)?),
        };
        let [baseline, canary]: [SubsetInfo; 2] = subsets.try_into().expect("two subsets");
        Ok(Routing {
            manifests,
            virtual_service: vs,
            virtual_service_body: body,
            route_index,
            namespace,
            host,
            port,
            subsets: [baseline, canary],
            gateway,
            mesh_bound,
        })
    }

    /// The name of the HTTP route whose weights the stages set, if it has one.
    pub fn split_route_name(&self) -> Option<&str> {
        self.virtual_service.value.spec.http()[self.route_index]
            .name
            .as_deref()
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

    /// The VirtualService of a stage (pure): see the module's doc.
    pub fn staged(&self, weights: &Weights, stamp: &str) -> Staged {
        let mut body = self.virtual_service_body.clone();
        let namespace = self.namespace.clone();
        let host = self.host.clone();
        let ours = |dest: &Value| -> Option<String> {
            let d = &dest["destination"];
            let h = istio::qualify_host(d["host"].as_str()?, &namespace);
            let subset = d["subset"].as_str()?;
            (h == host && self.subsets.iter().any(|s| s.name == subset)).then(|| subset.to_string())
        };
        if let Some(routes) = body["spec"]["http"].as_array_mut() {
            for (i, route) in routes.iter_mut().enumerate() {
                set_response_header(route, STAGE_HEADER, stamp);
                if i == self.route_index {
                    let dests = route["route"]
                        .as_array_mut()
                        .expect("the split has destinations");
                    // A subset the manifests' split does not name gets a destination of its own.
                    for s in &self.subsets {
                        if !dests
                            .iter()
                            .any(|d| ours(d).as_deref() == Some(s.name.as_str()))
                        {
                            let mut copy = dests[0].clone();
                            copy["destination"]["subset"] = json!(s.name);
                            if let Some(h) = copy.as_object_mut() {
                                h.remove("headers");
                            }
                            dests.push(copy);
                        }
                    }
                    for d in dests.iter_mut() {
                        if let Some(subset) = ours(d) {
                            d["weight"] = json!(weights.get(&subset).copied().unwrap_or(0));
                        }
                    }
                }
                // `get_mut`, not `route["route"]`: indexing would add `route: null` to routes
                // that redirect, answer directly or delegate.
                let dests = route.get_mut("route").and_then(Value::as_array_mut);
                for d in dests.into_iter().flatten() {
                    if let Some(subset) = ours(d) {
                        set_response_header(d, SUBSET_HEADER, &subset);
                    }
                }
            }
        }
        let virtual_service = istio::parse_virtual_service(&body)
            .expect("a staged VirtualService is as valid as the manifest's");
        Staged {
            body,
            virtual_service,
            weights: weights.clone(),
            stamp: stamp.to_string(),
        }
    }

    /// The weights of the split route as the manifests have it, per subset (a destination
    /// without a weight is the whole route, as Istio reads a single destination).
    pub fn manifest_weights(&self) -> Weights {
        let route = self.virtual_service.value.spec.http()[self.route_index].route();
        let single = route.len() == 1;
        self.subsets
            .iter()
            .map(|s| {
                let weight = route
                    .iter()
                    .filter(|d| d.destination.subset.as_deref() == Some(s.name.as_str()))
                    .map(|d| d.weight.unwrap_or(if single { 100 } else { 0 }).max(0) as u32)
                    .sum();
                (s.name.clone(), weight)
            })
            .collect()
    }

    /// The subset of that name.
    pub fn subset(&self, name: &str) -> Option<&SubsetInfo> {
        self.subsets.iter().find(|s| s.name == name)
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

/// Sets `headers.response.set[name]` of a route or destination, keeping whatever else the
/// user's headers say.
fn set_response_header(object: &mut Value, name: &str, value: &str) {
    let headers = object
        .as_object_mut()
        .expect("routes and destinations are objects")
        .entry("headers")
        .or_insert_with(|| json!({}));
    let response = headers
        .as_object_mut()
        .expect("headers is an object")
        .entry("response")
        .or_insert_with(|| json!({}));
    let set = response
        .as_object_mut()
        .expect("response is an object")
        .entry("set")
        .or_insert_with(|| json!({}));
    set[name] = json!(value);
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
        .servers()
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
    let hosts = vs.value.spec.hosts();
    let host = hosts
        .iter()
        .find(|h| server.hosts.iter().any(|pattern| host_matches(pattern, h)))
        .cloned()
        .ok_or_else(|| {
            InputErrors::from(InputError::new(
                &vs.file,
                "spec.hosts",
                format!(
                    "none of the VirtualService's hosts {hosts:?} is served by Gateway `{}` (hosts {:?})",
                    gw.value.metadata.name, server.hosts
                ),
                "add a host that the Gateway serves to the VirtualService".to_string(),
            ))
        })?;
    Ok(GatewayBinding {
        name: gw.value.metadata.name.clone(),
        reference: format!("{ns}/{name}"),
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
mod every_field_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

    fn tutorial() -> (Scenario, Manifests) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
        let scenario = Scenario::load(&path).unwrap();
        let manifests = Manifests::load_all(&scenario.manifests).unwrap();
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
        assert_eq!(r.subsets[1].version.as_deref(), Some("6.14.1"));
        let gw = r.gateway.as_ref().unwrap();
        assert_eq!((gw.port, gw.host.as_str()), (80, "podinfo.example.com"));
        assert_eq!(
            r.entry_points(),
            vec![EntryPoint::Ingress, EntryPoint::Mesh]
        );
        assert_eq!(r.subset("canary").unwrap().deployment, "podinfo-canary");
    }

    #[rstest]
    #[case(&[("ga", 100), ("canary", 0)])]
    #[case(&[("ga", 90), ("canary", 10)])]
    #[case(&[("ga", 0), ("canary", 100)])]
    fn a_stage_sets_the_split_and_the_harness_headers_only(#[case] w: &[(&str, u32)]) {
        let (scenario, manifests) = tutorial();
        let r = Routing::resolve(&scenario, manifests).unwrap();
        let weights: Weights = w.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let staged = r.staged(&weights, "s7");
        let route = &staged.body["spec"]["http"][0];
        let got: Vec<(String, u64, String)> = route["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["destination"]["subset"].as_str().unwrap().to_string(),
                    d["weight"].as_u64().unwrap(),
                    d["headers"]["response"]["set"][SUBSET_HEADER]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("ga".into(), u64::from(weights["ga"]), "ga".into()),
                (
                    "canary".into(),
                    u64::from(weights["canary"]),
                    "canary".into()
                ),
            ]
        );
        assert_eq!(route["headers"]["response"]["set"][STAGE_HEADER], "s7");
        assert_eq!(staged.virtual_service.spec.http()[0].route().len(), 2);
        // Everything else stays as the manifest has it.
        let mut before = r.virtual_service_body.clone();
        let mut after = staged.body.clone();
        for v in [&mut before, &mut after] {
            let route = &mut v["spec"]["http"][0];
            route.as_object_mut().unwrap().remove("headers");
            for d in route["route"].as_array_mut().unwrap() {
                let d = d.as_object_mut().unwrap();
                d.remove("weight");
                d.remove("headers");
            }
        }
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
        let manifests = Manifests::load_all(&scenario.manifests).unwrap();
        let err = Routing::resolve(&scenario, manifests).unwrap_err();
        assert_eq!(err.0[0].field, field, "{err}");
        assert_eq!(err.0[0].file, path);
    }
}
