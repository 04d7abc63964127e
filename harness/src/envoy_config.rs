//! Renders Envoy configuration from the routing resources, the way istiod would.
//!
//! One cluster per subset, named as Istio names them (`outbound|9898|ga|<host>`); one route
//! configuration per entry point (`http.<gateway port>` for the ingress gateway, `<port>` for
//! the sidecar), delivered by file-based RDS so that weights change without a restart. Like
//! istiod, a route with several destinations becomes `weighted_clusters` without the weight-0
//! ones, and a route with one destination becomes a plain `cluster`.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::input_error::InputError;
use crate::istio::{self, HeaderOperations, Headers, HttpRoute, MatchType, VirtualService};
use crate::routing::{EntryPoint, Routing};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const ROUTE_CONFIGURATION: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// Istio's name for the cluster of one subset.
pub fn cluster_name(port: u32, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// The subset part of an Istio cluster name (`outbound|9898|ga|host` → `ga`).
pub fn subset_of_cluster(name: &str) -> Option<&str> {
    let mut parts = name.split('|');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("outbound"), Some(_), Some(subset), Some(_)) => Some(subset),
        _ => None,
    }
}

/// The name of the route configuration an entry point's listener asks for.
pub fn route_config_name(routing: &Routing, entry: EntryPoint) -> String {
    match entry {
        EntryPoint::Ingress => format!(
            "http.{}",
            routing.gateway.as_ref().map(|g| g.port).unwrap_or(80)
        ),
        EntryPoint::Mesh => routing.port.to_string(),
    }
}

/// The Host header a client of this entry point sends.
pub fn authority(routing: &Routing, entry: EntryPoint) -> String {
    match entry {
        EntryPoint::Ingress => routing
            .gateway
            .as_ref()
            .map(|g| g.host.clone())
            .unwrap_or_else(|| routing.host.clone()),
        EntryPoint::Mesh => {
            let short = routing.host.split('.').next().unwrap_or(&routing.host);
            format!("{short}.{}:{}", routing.namespace, routing.port)
        }
    }
}

/// Where each entry point's route file lives under the mesh's folder.
pub fn route_dir(root: &Path, entry: EntryPoint) -> std::path::PathBuf {
    root.join("routes").join(entry.as_str())
}

pub const ROUTE_FILE: &str = "routes.json";

/// Where the clusters file (file-based CDS) lives under the mesh's folder.
pub fn cluster_dir(root: &Path) -> std::path::PathBuf {
    root.join("clusters")
}

pub const CLUSTER_FILE: &str = "clusters.json";

const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// A file-based config source: the file and the folder whose renames Envoy watches.
fn file_source(dir: &Path, file: &str) -> Value {
    json!({
        "resource_api_version": "V3",
        "path_config_source": {
            "path": dir.join(file),
            "watched_directory": {"path": dir},
        },
    })
}

/// The bootstrap: admin and listeners on loopback port 0; the routes of each listener (RDS)
/// and the clusters of the subsets (CDS) come from files, as istiod would push them, so Envoy
/// starts before the backends and learns their addresses like a sidecar learns endpoints.
pub fn bootstrap(routing: &Routing, entries: &[EntryPoint], root: &Path) -> Value {
    let listeners: Vec<Value> = entries
        .iter()
        .map(|entry| {
            json!({
                "name": entry.as_str(),
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM,
                        "stat_prefix": entry.as_str(),
                        "rds": {
                            "route_config_name": route_config_name(routing, *entry),
                            "config_source": file_source(&route_dir(root, *entry), ROUTE_FILE),
                        },
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
                    },
                }]}],
            })
        })
        .collect();
    json!({
        "node": {"id": "canary-harness-local-mesh", "cluster": "canary-harness"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {"cds_config": file_source(&cluster_dir(root), CLUSTER_FILE)},
        "static_resources": {"listeners": listeners},
    })
}

/// The CDS file: one cluster per subset at its backend's address (none before the backends
/// run), named as Istio names them.
pub fn clusters_discovery_response(
    routing: &Routing,
    backends: &[(String, SocketAddr)],
    version: &str,
) -> Value {
    let clusters: Vec<Value> = backends
        .iter()
        .map(|(subset, addr)| {
            let name = cluster_name(routing.port, subset, &routing.host);
            json!({
                "@type": CLUSTER,
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                        "address": addr.ip().to_string(), "port_value": addr.port(),
                    }}}}]}],
                },
            })
        })
        .collect();
    json!({"version_info": version, "resources": clusters})
}

/// The RDS file of an entry point before the routing resources exist: a route configuration
/// with no virtual hosts (Envoy needs the file to start).
pub fn empty_route_discovery_response(routing: &Routing, entry: EntryPoint) -> Value {
    json!({
        "version_info": "0",
        "resources": [{
            "@type": ROUTE_CONFIGURATION,
            "name": route_config_name(routing, entry),
            "virtual_hosts": [],
        }],
    })
}

/// The RDS file of one entry point: a DiscoveryResponse holding its RouteConfiguration.
pub fn route_discovery_response(
    routing: &Routing,
    vs: &VirtualService,
    entry: EntryPoint,
    version: &str,
) -> Result<Value, InputError> {
    let domains = domains(routing, vs, entry);
    let mut routes = Vec::new();
    for (i, http) in vs.spec.http().iter().enumerate() {
        routes.extend(envoy_routes(
            routing,
            http,
            i,
            &routing.virtual_service.file,
        )?);
    }
    Ok(json!({
        "version_info": version,
        "resources": [{
            "@type": ROUTE_CONFIGURATION,
            "name": route_config_name(routing, entry),
            "virtual_hosts": [{
                "name": format!("{}:{}", domains[0], match entry {
                    EntryPoint::Ingress => routing.gateway.as_ref().map(|g| g.port).unwrap_or(80),
                    EntryPoint::Mesh => routing.port,
                }),
                "domains": domains,
                "routes": routes,
            }],
        }],
    }))
}

/// The domains a virtual host answers, as istiod lists them (with and without the port).
fn domains(routing: &Routing, vs: &VirtualService, entry: EntryPoint) -> Vec<String> {
    let mut names = Vec::new();
    match entry {
        EntryPoint::Ingress => {
            if let Some(gw) = &routing.gateway {
                names.push(gw.host.clone());
            }
        }
        EntryPoint::Mesh => {
            let ns = &routing.namespace;
            for host in vs.spec.hosts() {
                let fq = istio::qualify_host(host, ns);
                if let Some(short) = fq.strip_suffix(&format!(".{ns}.svc.cluster.local")) {
                    names.push(fq.clone());
                    names.push(format!("{short}.{ns}.svc"));
                    names.push(format!("{short}.{ns}"));
                    names.push(short.to_string());
                }
            }
        }
    }
    let port = match entry {
        EntryPoint::Ingress => routing.gateway.as_ref().map(|g| g.port).unwrap_or(80),
        EntryPoint::Mesh => routing.port,
    };
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(format!("{n}:{port}"));
            out.push(n);
        }
    }
    out.sort_by_key(|d| d.contains(':'));
    out
}

fn envoy_routes(
    routing: &Routing,
    http: &HttpRoute,
    index: usize,
    file: &Path,
) -> Result<Vec<Value>, InputError> {
    let mut clusters = Vec::new();
    for (j, dest) in http.route().iter().enumerate() {
        let host = istio::qualify_host(&dest.destination.host, &routing.namespace);
        let subset = dest.destination.subset.as_deref().unwrap_or_default();
        if host != routing.host || !routing.subsets.iter().any(|s| s.name == subset) {
            return Err(InputError::new(
                file,
                format!("spec.http[{index}].route[{j}].destination"),
                format!(
                    "the local mesh only routes to the subsets of `{}`",
                    routing.host
                ),
                "point every destination at a subset of the split, or run on the kind mesh",
            ));
        }
        clusters.push((
            cluster_name(routing.port, subset, &host),
            dest.weight.unwrap_or(0).max(0),
            dest.headers.as_ref(),
        ));
    }
    let mut route_headers = HeaderLists::default();
    route_headers.extend(http.headers.as_ref());
    let mut action = if clusters.len() == 1 {
        // Like istiod: a lone destination's headers go to the route.
        route_headers.extend(clusters[0].2);
        json!({"cluster": clusters[0].0})
    } else {
        let weighted: Vec<Value> = clusters
            .iter()
            .filter(|(_, w, _)| *w > 0)
            .map(|(name, w, headers)| {
                let mut cluster = json!({"name": name, "weight": w});
                let mut lists = HeaderLists::default();
                lists.extend(*headers);
                lists.write(&mut cluster);
                cluster
            })
            .collect();
        json!({"weighted_clusters": {"clusters": weighted}})
    };
    action["timeout"] = json!(
        http.timeout
            .as_ref()
            .map(|t| t.as_str().to_string())
            .unwrap_or_else(|| "0s".into())
    );
    // Istio's retry policy when the VirtualService sets none: 2 attempts on connection failures.
    const RETRY_ON: &str =
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
    let (attempts, per_try, retry_on) = match &http.retries {
        Some(r) => (
            r.attempts.unwrap_or(2),
            r.per_try_timeout.as_ref().map(|t| t.as_str().to_string()),
            r.retry_on.clone().unwrap_or_else(|| RETRY_ON.into()),
        ),
        None => (2, None, RETRY_ON.into()),
    };
    if attempts > 0 {
        let mut policy = json!({"retry_on": retry_on, "num_retries": attempts});
        if let Some(t) = per_try {
            policy["per_try_timeout"] = json!(t);
        }
        action["retry_policy"] = policy;
    }
    let name = http
        .name
        .clone()
        .unwrap_or_else(|| format!("route-{index}"));
    let matches: Vec<Value> = if http.matches().is_empty() {
        vec![json!({"prefix": "/"})]
    } else {
        http.matches().iter().map(route_match).collect()
    };
    Ok(matches
        .into_iter()
        .map(|m| {
            let mut route = json!({"name": name, "match": m, "route": action});
            route_headers.write(&mut route);
            route
        })
        .collect())
}

/// Envoy's header lists of a route or a weighted cluster, from Istio's `Headers`: `set`
/// overwrites, `add` appends, `remove` removes (request and response alike).
#[derive(Default)]
struct HeaderLists {
    request_add: Vec<Value>,
    request_remove: Vec<String>,
    response_add: Vec<Value>,
    response_remove: Vec<String>,
}

impl HeaderLists {
    fn extend(&mut self, headers: Option<&Headers>) {
        let Some(headers) = headers else { return };
        let ops = |ops: &Option<HeaderOperations>,
                   add: &mut Vec<Value>,
                   remove: &mut Vec<String>| {
            let Some(ops) = ops else { return };
            for (k, v) in ops.set() {
                add.push(json!({"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}));
            }
            for (k, v) in ops.add() {
                add.push(json!({"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}));
            }
            remove.extend(ops.remove().iter().cloned());
        };
        ops(
            &headers.request,
            &mut self.request_add,
            &mut self.request_remove,
        );
        ops(
            &headers.response,
            &mut self.response_add,
            &mut self.response_remove,
        );
    }

    fn write(&self, target: &mut Value) {
        for (key, list) in [
            ("request_headers_to_add", &self.request_add),
            ("response_headers_to_add", &self.response_add),
        ] {
            if !list.is_empty() {
                target[key] = json!(list);
            }
        }
        for (key, list) in [
            ("request_headers_to_remove", &self.request_remove),
            ("response_headers_to_remove", &self.response_remove),
        ] {
            if !list.is_empty() {
                target[key] = json!(list);
            }
        }
    }
}

fn string_matcher(m: &istio::StringMatch) -> Value {
    match m.match_type() {
        Some(MatchType::Exact(v)) => json!({"exact": v}),
        Some(MatchType::Prefix(v)) => json!({"prefix": v}),
        Some(MatchType::Regex(v)) => json!({"safe_regex": {"regex": v}}),
        None => json!({"prefix": ""}),
    }
}

fn route_match(m: &istio::HttpMatchRequest) -> Value {
    let mut out = match m.uri.as_ref().and_then(|u| u.match_type()) {
        Some(MatchType::Exact(p)) => json!({"path": p}),
        Some(MatchType::Prefix(p)) => json!({"prefix": p}),
        Some(MatchType::Regex(r)) => json!({"safe_regex": {"regex": r}}),
        None => json!({"prefix": "/"}),
    };
    let headers: Vec<Value> = m
        .headers()
        .map(|(name, sm)| json!({"name": name, "string_match": string_matcher(sm)}))
        .collect();
    if !headers.is_empty() {
        out["headers"] = json!(headers);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::Manifests;
    use crate::scenario::{Scenario, Weights};
    use rstest::rstest;

    fn routing() -> Routing {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
        let scenario = Scenario::load(&path).unwrap();
        let manifests = Manifests::load_all(&scenario.manifests).unwrap();
        Routing::resolve(&scenario, manifests).unwrap()
    }

    fn weights(ga: u32, canary: u32) -> Weights {
        [("ga".to_string(), ga), ("canary".to_string(), canary)].into()
    }

    #[rstest]
    #[case(90, 10, json!({"weighted_clusters": {"clusters": [
        {"name": "outbound|9898|ga|podinfo.test.svc.cluster.local", "weight": 90},
        {"name": "outbound|9898|canary|podinfo.test.svc.cluster.local", "weight": 10}]}}))]
    #[case(100, 0, json!({"weighted_clusters": {"clusters": [
        {"name": "outbound|9898|ga|podinfo.test.svc.cluster.local", "weight": 100}]}}))]
    #[case(0, 100, json!({"weighted_clusters": {"clusters": [
        {"name": "outbound|9898|canary|podinfo.test.svc.cluster.local", "weight": 100}]}}))]
    fn weights_become_weighted_clusters_without_zeros(
        #[case] ga: u32,
        #[case] canary: u32,
        #[case] want: Value,
    ) {
        let r = routing();
        let vs = r.staged(&weights(ga, canary), "s1").virtual_service;
        for entry in [EntryPoint::Ingress, EntryPoint::Mesh] {
            let dr = route_discovery_response(&r, &vs, entry, "7").unwrap();
            assert_eq!(dr["version_info"], "7");
            let rc = &dr["resources"][0];
            assert_eq!(rc["name"], route_config_name(&r, entry));
            let route = &rc["virtual_hosts"][0]["routes"][0];
            let clusters: Vec<Value> = route["route"]["weighted_clusters"]["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| json!({"name": c["name"], "weight": c["weight"]}))
                .collect();
            assert_eq!(json!(clusters), want["weighted_clusters"]["clusters"]);
            // Each weighted cluster names its subset in the answer, as istiod renders the
            // destination's `headers.response.set`; the route stamps the stage.
            for c in route["route"]["weighted_clusters"]["clusters"]
                .as_array()
                .unwrap()
            {
                let subset = subset_of_cluster(c["name"].as_str().unwrap()).unwrap();
                assert_eq!(
                    c["response_headers_to_add"],
                    json!([{"header": {"key": crate::routing::SUBSET_HEADER, "value": subset},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}])
                );
            }
            assert_eq!(
                route["response_headers_to_add"],
                json!([{"header": {"key": crate::routing::STAGE_HEADER, "value": "s1"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}])
            );
        }
    }

    #[test]
    fn ingress_and_mesh_answer_their_own_hosts() {
        let r = routing();
        let vs = r.staged(&weights(50, 50), "s1").virtual_service;
        let ingress = route_discovery_response(&r, &vs, EntryPoint::Ingress, "1").unwrap();
        let domains = &ingress["resources"][0]["virtual_hosts"][0]["domains"];
        assert_eq!(
            domains,
            &json!(["podinfo.example.com", "podinfo.example.com:80"])
        );
        assert_eq!(route_config_name(&r, EntryPoint::Ingress), "http.80");
        let mesh = route_discovery_response(&r, &vs, EntryPoint::Mesh, "1").unwrap();
        let domains: Vec<String> =
            serde_json::from_value(mesh["resources"][0]["virtual_hosts"][0]["domains"].clone())
                .unwrap();
        for d in [
            "podinfo",
            "podinfo.test:9898",
            "podinfo.test.svc.cluster.local",
        ] {
            assert!(domains.contains(&d.to_string()), "{d} not in {domains:?}");
        }
        assert!(!domains.contains(&"podinfo.example.com".to_string()));
        assert!(domains.contains(&authority(&r, EntryPoint::Mesh)));
    }

    #[test]
    fn bootstrap_reads_routes_and_clusters_from_watched_files() {
        let r = routing();
        let b = bootstrap(&r, &r.entry_points(), Path::new("/m"));
        let listeners = b["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 2);
        let rds = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]["rds"];
        assert_eq!(
            rds["config_source"]["path_config_source"]["path"],
            "/m/routes/ingress/routes.json"
        );
        assert_eq!(
            rds["config_source"]["path_config_source"]["watched_directory"]["path"],
            "/m/routes/ingress"
        );
        let cds = &b["dynamic_resources"]["cds_config"]["path_config_source"];
        assert_eq!(cds["path"], "/m/clusters/clusters.json");
        assert_eq!(cds["watched_directory"]["path"], "/m/clusters");
        let backends = vec![
            ("ga".to_string(), "127.0.0.1:1001".parse().unwrap()),
            ("canary".to_string(), "127.0.0.1:1002".parse().unwrap()),
        ];
        let cds = clusters_discovery_response(&r, &backends, "1");
        let clusters = cds["resources"].as_array().unwrap();
        assert_eq!(
            clusters[1]["name"],
            "outbound|9898|canary|podinfo.test.svc.cluster.local"
        );
        let ep = &clusters[1]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"];
        assert_eq!(ep["port_value"], 1002);
        assert!(
            clusters_discovery_response(&r, &[], "0")["resources"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[rstest]
    #[case("outbound|9898|ga|podinfo.test.svc.cluster.local", Some("ga"))]
    #[case("outbound|9898||podinfo.test.svc.cluster.local", Some(""))]
    #[case("inbound|9898||", None)]
    #[case("BlackHoleCluster", None)]
    fn cluster_names_parse(#[case] name: &str, #[case] want: Option<&str>) {
        assert_eq!(subset_of_cluster(name), want);
    }
}
