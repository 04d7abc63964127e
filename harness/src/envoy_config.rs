//! Renders Envoy configuration from the routing resources, the way istiod would.
//!
//! One cluster per subset, named as Istio names them (`outbound|9898|ga|<host>`); one route
//! configuration per entry point (`http.<gateway port>` for the ingress gateway, `<port>` for
//! the sidecar), delivered by file-based RDS so that weights change without a restart. Like
//! istiod, a route with several destinations becomes `weighted_clusters` without the weight-0
//! ones, and a route with one destination becomes a plain `cluster`. Matches, header
//! operations, rewrites, redirects, direct responses, timeouts, retries, faults and mirrors are
//! rendered as istiod's `pilot/pkg/networking/core/route` renders them; [`unrendered_fields`]
//! names what is left out.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::input_error::InputError;
use crate::istio::{self, HeaderOperations, Headers, HttpRoute, MatchType, VirtualService};
use crate::routing::{EntryPoint, Routing};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
/// The fault filter's name, under which a route carries its own fault configuration.
const FAULT_FILTER: &str = "envoy.filters.http.fault";
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
                        // As istiod's listener builder: the fault filter (empty, so it acts only
                        // where a route configures it) before the router.
                        "http_filters": [
                            {"name": FAULT_FILTER, "typed_config": {"@type": FAULT}},
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
                        ],
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
            vs,
            http,
            i,
            entry,
            &routing.virtual_service.file,
        )?);
    }
    Ok(json!({
        "version_info": version,
        "resources": [{
            "@type": ROUTE_CONFIGURATION,
            "name": route_config_name(routing, entry),
            "virtual_hosts": [{
                "name": format!("{}:{}", domains[0], listener_port(routing, entry)),
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

/// The port of the listener an entry point stands for: the Gateway's server port for the
/// ingress, the Service's port for a sidecar's outbound path.
fn listener_port(routing: &Routing, entry: EntryPoint) -> u32 {
    match entry {
        EntryPoint::Ingress => routing.gateway.as_ref().map(|g| g.port).unwrap_or(80),
        EntryPoint::Mesh => routing.port,
    }
}

/// Whether a match condition applies to the proxy of this entry point, as istiod decides when
/// it renders for one proxy (`TranslateRoute`'s port check and `sourceMatchHTTP`'s gateway
/// check): a match for another port or for gateways this proxy is not is left out. Source
/// labels and namespaces cannot be judged for the local listeners (see [`unrendered_fields`]).
fn match_applies(
    routing: &Routing,
    vs: &VirtualService,
    m: &istio::HttpMatchRequest,
    entry: EntryPoint,
) -> bool {
    if let Some(port) = m.port
        && port != 0
        && port != listener_port(routing, entry)
    {
        return false;
    }
    if m.gateways().is_empty() {
        return true;
    }
    let namespace = vs
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| routing.namespace.clone());
    let this = match entry {
        EntryPoint::Ingress => match &routing.gateway {
            Some(g) => g.reference.clone(),
            None => return false,
        },
        EntryPoint::Mesh => "mesh".to_string(),
    };
    m.gateways().iter().any(|g| {
        let full = if g == "mesh" || g.contains('/') {
            g.clone()
        } else {
            format!("{namespace}/{g}")
        };
        full == this
    })
}

fn envoy_routes(
    routing: &Routing,
    vs: &VirtualService,
    http: &HttpRoute,
    index: usize,
    entry: EntryPoint,
    file: &Path,
) -> Result<Vec<Value>, InputError> {
    // Like istiod, one Envoy route per match condition that applies to this proxy; none at all
    // matches every request.
    let matches: Vec<Option<&istio::HttpMatchRequest>> = if http.matches().is_empty() {
        vec![None]
    } else {
        http.matches()
            .iter()
            .filter(|m| match_applies(routing, vs, m, entry))
            .map(Some)
            .collect()
    };
    if matches.is_empty() {
        return Ok(Vec::new());
    }
    let mut route_headers = HeaderLists::default();
    let header_authority = route_headers.extend(http.headers.as_ref());
    // The route's action, under its key in the Envoy route.
    let (key, action) = if let Some(redirect) = &http.redirect {
        match redirect_action(redirect, listener_port(routing, entry)) {
            Some(action) => ("redirect", action),
            // istiod leaves such a route without an action, which Envoy refuses.
            None => return Ok(Vec::new()),
        }
    } else if let Some(direct) = &http.direct_response {
        ("direct_response", direct_response_action(direct))
    } else if http.route().is_empty() {
        // A delegating route: istiod merges the delegate's routes in, which the local mesh does
        // not (listed by `unrendered_fields`).
        return Ok(Vec::new());
    } else {
        (
            "route",
            forward_action(
                routing,
                http,
                index,
                file,
                &mut route_headers,
                header_authority,
            )?,
        )
    };
    let name = http
        .name
        .clone()
        .unwrap_or_else(|| format!("route-{index}"));
    Ok(matches
        .into_iter()
        .map(|m| {
            // istiod's route name: the HTTPRoute's, then `.<match name>` for a named match.
            let name = match m.and_then(|m| m.name.as_deref()) {
                Some(match_name) if !match_name.is_empty() => format!("{name}.{match_name}"),
                _ => name.clone(),
            };
            let matcher = m.map(route_match).unwrap_or_else(|| json!({"prefix": "/"}));
            let mut route = json!({"name": name, "match": matcher});
            route[key] = action.clone();
            if let Some(prefix) = m.and_then(|m| m.stat_prefix.as_deref())
                && !prefix.is_empty()
            {
                route["stat_prefix"] = json!(prefix);
            }
            route_headers.write(&mut route);
            // istiod's TranslateRoute: the fault goes to the route's per-filter configuration
            // of the fault filter, which the listener's filter chain holds (see `bootstrap`).
            if let Some(fault) = &http.fault {
                route["typed_per_filter_config"] = json!({FAULT_FILTER: fault_config(fault)});
            }
            route
        })
        .collect())
}

/// The action of a route that forwards to its destinations, as istiod's
/// `applyHTTPRouteDestination` renders it: the cluster or weighted clusters, rewrites, the
/// timeout and the retry policy. A lone destination's header operations join the route's.
fn forward_action(
    routing: &Routing,
    http: &HttpRoute,
    index: usize,
    file: &Path,
    route_headers: &mut HeaderLists,
    header_authority: Option<String>,
) -> Result<Value, InputError> {
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
    let mut action = json!({});
    // The authority: `rewrite.authority` wins over the route's `:authority`/`host` header.
    let mut authority = header_authority;
    if let Some(rewrite) = &http.rewrite {
        if let Some(regex) = &rewrite.uri_regex_rewrite {
            action["regex_rewrite"] = json!({
                "pattern": {"regex": regex.pattern.clone().unwrap_or_default()},
                "substitution": regex.rewrite.clone().unwrap_or_default(),
            });
        } else if let Some(uri) = rewrite.uri.as_deref().filter(|u| !u.is_empty()) {
            action["prefix_rewrite"] = json!(uri);
        }
        if let Some(a) = rewrite.authority.as_deref().filter(|a| !a.is_empty()) {
            authority = Some(a.to_string());
        }
    }
    if let Some(a) = &authority {
        action["host_rewrite_literal"] = json!(a);
    }
    if clusters.len() == 1 {
        // Like istiod: a lone destination's headers go to the route, and its authority applies
        // only when the route sets none.
        action["cluster"] = json!(clusters[0].0);
        let dest_authority = route_headers.extend(clusters[0].2);
        if let (None, Some(a)) = (&authority, dest_authority) {
            action["host_rewrite_literal"] = json!(a);
        }
    } else {
        let weighted: Vec<Value> = clusters
            .iter()
            .filter(|(_, w, _)| *w > 0)
            .map(|(name, w, headers)| {
                let mut cluster = json!({"name": name, "weight": w});
                let mut lists = HeaderLists::default();
                if let Some(a) = lists.extend(*headers) {
                    cluster["host_rewrite_literal"] = json!(a);
                }
                lists.write(&mut cluster);
                cluster
            })
            .collect();
        action["weighted_clusters"] = json!({"clusters": weighted});
    }
    let mirrors = mirror_policies(routing, http);
    if !mirrors.is_empty() {
        action["request_mirror_policies"] = json!(mirrors);
    }
    // istiod's `setTimeout`: no timeout unless the route sets one, and gRPC's own
    // `grpc-timeout` header bounded by the same.
    let timeout = http
        .timeout
        .as_ref()
        .map(proto_duration)
        .unwrap_or_else(|| "0s".into());
    action["timeout"] = json!(timeout);
    action["max_grpc_timeout"] = json!(timeout);
    if let Some(policy) = retry_policy(http.retries.as_ref()) {
        action["retry_policy"] = policy;
    }
    Ok(action)
}

/// Istio's retry `retryOn` when the VirtualService sets none.
const RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// HTTP status codes with a name (Go's `http.StatusText`): the numbers istiod takes out of
/// `retryOn` as retriable status codes.
fn is_named_status(code: u32) -> bool {
    matches!(code, 100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426
        | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

/// The retry policy istiod's `retry.ConvertPolicy` renders: with no `retries`, 2 attempts on
/// connection failures, avoiding the previous host (up to 5 host picks); `attempts` of 0 (or
/// unset) disables retries; the numbers in `retryOn` become retriable status codes;
/// `retryIgnorePreviousHosts` keeps or drops the host predicate; `retryRemoteLocalities` adds
/// the previous-priorities retry priority; `backoff` is the base interval of the back-off.
fn retry_policy(retries: Option<&istio::HttpRetry>) -> Option<Value> {
    let previous_hosts = json!([{
        "name": "envoy.retry_host_predicates.previous_hosts",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
    }]);
    let mut policy = json!({
        "retry_on": RETRY_ON,
        "num_retries": 2,
        "host_selection_retry_max_attempts": 5,
        "retry_host_predicate": previous_hosts,
    });
    let Some(r) = retries else {
        return Some(policy);
    };
    let attempts = r.attempts.unwrap_or(0);
    if attempts <= 0 {
        return None;
    }
    policy["num_retries"] = json!(attempts);
    if let Some(on) = r.retry_on.as_deref().filter(|o| !o.is_empty()) {
        let mut words = Vec::new();
        let mut codes = Vec::new();
        for part in on.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u32>() {
                Ok(code) if is_named_status(code) => codes.push(code),
                _ => words.push(part),
            }
        }
        let mut retry_on = words.join(",");
        if !codes.is_empty() {
            if !retry_on.contains("retriable-status-codes") {
                retry_on.push_str(",retriable-status-codes");
            }
            policy["retriable_status_codes"] = json!(codes);
        }
        policy["retry_on"] = json!(retry_on);
    }
    if let Some(t) = &r.per_try_timeout {
        policy["per_try_timeout"] = json!(proto_duration(t));
    }
    if r.retry_ignore_previous_hosts == Some(Some(false)) {
        policy.as_object_mut()?.remove("retry_host_predicate");
    }
    if r.retry_remote_localities == Some(Some(true)) {
        policy["retry_priority"] = json!({
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 2,
            },
        });
    }
    if let Some(t) = &r.backoff {
        policy["retry_back_off"] = json!({"base_interval": proto_duration(t)});
    }
    Some(policy)
}

/// The cluster of a mirror's destination, if it is a subset of the split (the only clusters the
/// local Envoy has).
fn mirror_cluster(routing: &Routing, dest: &istio::Destination) -> Option<String> {
    let host = istio::qualify_host(&dest.host, &routing.namespace);
    let subset = dest.subset.as_deref().unwrap_or_default();
    (host == routing.host && routing.subsets.iter().any(|s| s.name == subset))
        .then(|| cluster_name(routing.port, subset, &host))
}

/// `mirror` and `mirrors` as istiod's `MirrorPercent`, `MirrorPercentByPolicy` and
/// `TranslateRequestMirrorPolicy` render them: a share in millionths from `mirrorPercentage`
/// (or a mirror's `percentage`), in hundredths from the deprecated `mirrorPercent`, else all
/// requests; an explicit 0 mirrors nothing. Mirrors to other hosts are left out (and listed by
/// [`unrendered_fields`]).
fn mirror_policies(routing: &Routing, http: &HttpRoute) -> Vec<Value> {
    let policy = |cluster: String, fraction: Value| json!({"cluster": cluster, "runtime_fraction": {"default_value": fraction}, "trace_sampled": false});
    let mut out = Vec::new();
    if let Some(mirror) = &http.mirror {
        let fraction = match (&http.mirror_percentage, http.deprecated_mirror_percent()) {
            (Some(p), _) => (p.value() > 0.0).then(|| percent_in_millionths(p)),
            (None, Some(n)) => (n > 0).then(|| fractional_percent(n, "HUNDRED")),
            (None, None) => Some(fractional_percent(100, "HUNDRED")),
        };
        if let (Some(fraction), Some(cluster)) = (fraction, mirror_cluster(routing, mirror)) {
            out.push(policy(cluster, fraction));
        }
    }
    for m in http.mirrors() {
        let fraction = match &m.percentage {
            Some(p) => (p.value() > 0.0).then(|| percent_in_millionths(p)),
            None => Some(fractional_percent(100, "HUNDRED")),
        };
        if let (Some(fraction), Some(cluster)) = (fraction, mirror_cluster(routing, &m.destination))
        {
            out.push(policy(cluster, fraction));
        }
    }
    out
}

/// A duration as proto-JSON writes a `google.protobuf.Duration`: seconds with 0, 3, 6 or 9
/// fractional digits and an `s` (`"5s"`, `"0.250s"`). The VirtualService carries Go's syntax
/// (`250ms`), which istiod parses into the proto; Envoy's JSON loader accepts only this one.
fn proto_duration(d: &istio::Duration) -> String {
    let Some(nanos) = d.nanos() else {
        // Validation refuses such text before anything is rendered.
        return d.as_str().to_string();
    };
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.unsigned_abs();
    let (secs, frac) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    if frac == 0 {
        format!("{sign}{secs}s")
    } else if frac % 1_000_000 == 0 {
        format!("{sign}{secs}.{:03}s", frac / 1_000_000)
    } else if frac % 1_000 == 0 {
        format!("{sign}{secs}.{:06}s", frac / 1_000)
    } else {
        format!("{sign}{secs}.{frac:09}s")
    }
}

/// `HTTPRedirect` as istiod's `ApplyRedirect` renders it; `None` for a redirect code Envoy has
/// no name for. Fields at their proto defaults are left out, as Envoy's config dump shows them.
fn redirect_action(redirect: &istio::HttpRedirect, listener_port: u32) -> Option<Value> {
    let mut out = json!({});
    if let Some(a) = redirect.authority.as_deref().filter(|a| !a.is_empty()) {
        out["host_redirect"] = json!(a);
    }
    match (
        redirect.prefix_rewrite.as_deref().filter(|p| !p.is_empty()),
        redirect.uri.as_deref().filter(|u| !u.is_empty()),
    ) {
        (Some(prefix), _) => out["prefix_rewrite"] = json!(prefix),
        (None, Some(uri)) => out["path_redirect"] = json!(uri),
        (None, None) => {}
    }
    let scheme = redirect.scheme.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = scheme {
        out["scheme_redirect"] = json!(s);
    }
    let port = match (redirect.port, redirect.derive_port) {
        (Some(p), _) => Some(p),
        (None, Some(istio::RedirectPortSelection::FromRequestPort)) => Some(listener_port),
        (None, Some(istio::RedirectPortSelection::FromProtocolDefault)) => Some(0),
        (None, None) => None,
    };
    if let Some(port) = port {
        // The scheme's default port is left implicit. The local listeners are plain HTTP.
        let default = match scheme.unwrap_or("http") {
            "http" => 80,
            "https" => 443,
            _ => 0,
        };
        if port != 0 && port != default {
            out["port_redirect"] = json!(port);
        }
    }
    let code = match redirect.redirect_code.unwrap_or(0) {
        0 | 301 => None,
        302 => Some("FOUND"),
        303 => Some("SEE_OTHER"),
        307 => Some("TEMPORARY_REDIRECT"),
        308 => Some("PERMANENT_REDIRECT"),
        _ => return None,
    };
    if let Some(code) = code {
        out["response_code"] = json!(code);
    }
    Some(out)
}

/// `HTTPDirectResponse` as istiod's `ApplyDirectResponse` renders it (bytes stay base64, as
/// both proto-JSONs carry them).
fn direct_response_action(direct: &istio::HttpDirectResponse) -> Value {
    let mut out = json!({"status": direct.status});
    if let Some(body) = &direct.body {
        if let Some(s) = &body.string {
            out["body"] = json!({"inline_string": s});
        } else if let Some(b) = &body.bytes {
            out["body"] = json!({"inline_bytes": b});
        }
    }
    out
}

/// An Envoy `FractionalPercent`, with the proto defaults (numerator 0, denominator HUNDRED)
/// left out as Envoy's config dump leaves them out.
fn fractional_percent(numerator: u32, denominator: &str) -> Value {
    let mut out = json!({});
    if numerator != 0 {
        out["numerator"] = json!(numerator);
    }
    if denominator != "HUNDRED" {
        out["denominator"] = json!(denominator);
    }
    out
}

/// istiod's `translatePercentToFractionalPercent`: a `Percent` in millionths, truncated.
fn percent_in_millionths(p: &istio::Percent) -> Value {
    fractional_percent((p.value() * 10_000.0) as u32, "MILLION")
}

/// The numeric code of a gRPC status name, as istiod's `grpc.SupportedGRPCStatus` maps it.
fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// The fault filter's per-route configuration, as istiod's `TranslateFault` renders an
/// `HTTPFaultInjection`: a fixed delay (an exponential one is dropped, as istiod drops it) and
/// an HTTP or gRPC abort (an HTTP/2 error is dropped), each with its percentage. The deprecated
/// integer `delay.percent` is a percentage in hundredths; an abort without a percentage has none.
fn fault_config(fault: &istio::HttpFaultInjection) -> Value {
    let mut out = json!({"@type": FAULT});
    if let Some(delay) = &fault.delay
        && let Some(fixed) = &delay.fixed_delay
    {
        let percentage = match &delay.percentage {
            Some(p) => percent_in_millionths(p),
            None => fractional_percent(delay.percent.unwrap_or(0).max(0) as u32, "HUNDRED"),
        };
        out["delay"] = json!({"fixed_delay": proto_duration(fixed), "percentage": percentage});
    }
    if let Some(abort) = &fault.abort {
        let error = if let Some(status) = abort.http_status {
            Some(("http_status", status.max(0) as u32))
        } else {
            abort
                .grpc_status
                .as_deref()
                .and_then(grpc_code)
                .map(|c| ("grpc_status", c))
        };
        if let Some((key, code)) = error {
            let mut a = json!({key: code});
            if let Some(p) = &abort.percentage {
                a["percentage"] = percent_in_millionths(p);
            }
            out["abort"] = a;
        }
    }
    out
}

/// What istiod treats as internal: pseudo-headers and `host`, which header operations cannot
/// touch (`isInternalHeader`); `:authority` and `host` become the route's host rewrite instead.
fn is_internal_header(key: &str) -> bool {
    key.starts_with(':') || key.eq_ignore_ascii_case("host")
}

fn is_authority_header(key: &str) -> bool {
    key.eq_ignore_ascii_case(":authority") || key.eq_ignore_ascii_case("host")
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
    /// Adds the operations of `headers`, without internal headers (as istiod's
    /// `TranslateHeadersOperations`), and returns the authority a request `set` (else `add`) of
    /// `:authority` or `host` asks for.
    fn extend(&mut self, headers: Option<&Headers>) -> Option<String> {
        let headers = headers?;
        let ops = |ops: &Option<HeaderOperations>,
                   add: &mut Vec<Value>,
                   remove: &mut Vec<String>|
         -> (Option<String>, Option<String>) {
            let Some(ops) = ops else { return (None, None) };
            let (mut set_authority, mut add_authority) = (None, None);
            for (k, v) in ops.set() {
                if is_authority_header(k) {
                    set_authority = Some(v.clone());
                }
                if !is_internal_header(k) {
                    add.push(json!({"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}));
                }
            }
            for (k, v) in ops.add() {
                if is_authority_header(k) {
                    add_authority = Some(v.clone());
                }
                if !is_internal_header(k) {
                    add.push(json!({"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}));
                }
            }
            remove.extend(
                ops.remove()
                    .iter()
                    .filter(|k| !is_internal_header(k))
                    .cloned(),
            );
            (set_authority, add_authority)
        };
        let (set_authority, add_authority) = ops(
            &headers.request,
            &mut self.request_add,
            &mut self.request_remove,
        );
        ops(
            &headers.response,
            &mut self.response_add,
            &mut self.response_remove,
        );
        set_authority.or(add_authority)
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

/// istiod's `canBeConvertedToPresentMatch`: an empty match, or the regex `*` (a wildcard, not
/// RE2), only asks that the header or parameter be present.
fn is_present_match(m: &istio::StringMatch) -> bool {
    match m.match_type() {
        None => true,
        Some(MatchType::Regex(r)) => r == "*",
        Some(_) => false,
    }
}

/// Envoy's `StringMatcher` of an Istio `StringMatch` (istiod's `ConvertToEnvoyMatch`).
fn string_matcher(m: &istio::StringMatch) -> Option<Value> {
    Some(match m.match_type()? {
        MatchType::Exact(v) => json!({"exact": v}),
        MatchType::Prefix(v) => json!({"prefix": v}),
        MatchType::Regex(v) => json!({"safe_regex": {"regex": v}}),
    })
}

/// A `HeaderMatcher` (istiod's `translateHeaderMatch`): presence, or a string match.
fn header_matcher(name: &str, m: &istio::StringMatch) -> Value {
    let mut out = json!({"name": name});
    if is_present_match(m) {
        out["present_match"] = json!(true);
    } else if let Some(sm) = string_matcher(m) {
        out["string_match"] = sm;
    }
    out
}

/// A `QueryParameterMatcher` (istiod's `translateQueryParamMatch`).
fn query_parameter_matcher(name: &str, m: &istio::StringMatch) -> Value {
    // The same two shapes as a header matcher's.
    header_matcher(name, m)
}

/// A `RouteMatch`, as istiod's `TranslateRouteMatch` renders an `HTTPMatchRequest`: the path;
/// header matches and inverted `withoutHeaders` ones sorted by name; case sensitivity from
/// `ignoreUriCase`; `method`, `authority` and `scheme` as matches on their pseudo-headers; and
/// the query parameters.
fn route_match(m: &istio::HttpMatchRequest) -> Value {
    let mut out = match m.uri.as_ref().and_then(|u| u.match_type()) {
        Some(MatchType::Exact(p)) => json!({"path": p}),
        Some(MatchType::Prefix(p)) => json!({"prefix": p}),
        Some(MatchType::Regex(r)) => json!({"safe_regex": {"regex": r}}),
        None => json!({"prefix": "/"}),
    };
    let mut headers: Vec<Value> = m
        .headers()
        .map(|(name, sm)| header_matcher(name, sm))
        .collect();
    for (name, sm) in m.without_headers() {
        let mut h = header_matcher(name, sm);
        h["invert_match"] = json!(true);
        // Envoy refuses `treat_missing_header_as_empty` next to `present_match`.
        if !is_present_match(sm) {
            h["treat_missing_header_as_empty"] = json!(true);
        }
        headers.push(h);
    }
    headers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    out["case_sensitive"] = json!(!m.ignore_uri_case.unwrap_or(false));
    for (pseudo, sm) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(sm) = sm {
            headers.push(header_matcher(pseudo, sm));
        }
    }
    if !headers.is_empty() {
        out["headers"] = json!(headers);
    }
    let params: Vec<Value> = m
        .query_params()
        .map(|(name, sm)| query_parameter_matcher(name, sm))
        .collect();
    if !params.is_empty() {
        out["query_parameters"] = json!(params);
    }
    out
}

/// A header match istiod turns into a match on the request's JWT claims (dynamic metadata
/// that Istio's authentication filter writes), which the local Envoy has no filter for.
fn is_jwt_claim_header(name: &str) -> bool {
    name.starts_with("@request.auth.claims")
}

/// The fields of `vs` that the local Envoy does not render as istiod would, by path
/// (`spec.http[0].corsPolicy`). The kind mesh applies them as written. Fields that only decide
/// where a VirtualService is visible (`exportTo`) or that istiod itself ignores (an exponential
/// fault delay, an HTTP/2 abort) are not listed.
pub fn unrendered_fields(routing: &Routing, vs: &VirtualService) -> Vec<String> {
    let mut out = Vec::new();
    if !vs.spec.tls().is_empty() {
        out.push("spec.tls".to_string());
    }
    if !vs.spec.tcp().is_empty() {
        out.push("spec.tcp".to_string());
    }
    for (i, http) in vs.spec.http().iter().enumerate() {
        let at = format!("spec.http[{i}]");
        let mut field = |name: &str, set: bool| {
            if set {
                out.push(format!("{at}.{name}"));
            }
        };
        field("delegate", http.delegate.is_some());
        field(
            "mirror",
            http.mirror
                .as_ref()
                .is_some_and(|m| mirror_cluster(routing, m).is_none()),
        );
        for (k, m) in http.mirrors().iter().enumerate() {
            field(
                &format!("mirrors[{k}]"),
                mirror_cluster(routing, &m.destination).is_none(),
            );
        }
        field("corsPolicy", http.cors_policy.is_some());
        for (j, m) in http.matches().iter().enumerate() {
            let at = format!("{at}.match[{j}]");
            if m.gateways().is_empty() {
                // istiod only looks at the source when the match names no gateways.
                if m.source_labels().next().is_some() {
                    out.push(format!("{at}.sourceLabels"));
                }
                if m.source_namespace.as_deref().is_some_and(|n| !n.is_empty()) {
                    out.push(format!("{at}.sourceNamespace"));
                }
            }
            for (kind, names) in [
                ("headers", m.headers().map(|(n, _)| n).collect::<Vec<_>>()),
                (
                    "withoutHeaders",
                    m.without_headers().map(|(n, _)| n).collect(),
                ),
            ] {
                for name in names.into_iter().filter(|n| is_jwt_claim_header(n)) {
                    out.push(format!("{at}.{kind}.{name}"));
                }
            }
        }
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

    /// The tutorial's routing with its VirtualService's HTTP routes replaced by `http`.
    fn with_http(http: Value) -> (Routing, VirtualService) {
        let r = routing();
        let mut vs = serde_json::to_value(&r.virtual_service.value).unwrap();
        vs["spec"]["http"] = http;
        let vs: VirtualService = serde_json::from_value(vs).unwrap();
        (r, vs)
    }

    /// The Envoy routes an entry point gets for `http`.
    fn routes_of(http: Value, entry: EntryPoint) -> Vec<Value> {
        let (r, vs) = with_http(http);
        let dr = route_discovery_response(&r, &vs, entry, "1").unwrap();
        dr["resources"][0]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// One HTTP route to the GA subset with `extra` fields, rendered for the ingress.
    fn one_route(extra: Value) -> Value {
        let mut http = json!({
            "name": "r",
            "route": [{"destination": {"host": "podinfo", "subset": "ga"}}],
        });
        for (k, v) in extra.as_object().unwrap() {
            http[k] = v.clone();
        }
        let routes = routes_of(json!([http]), EntryPoint::Ingress);
        assert_eq!(routes.len(), 1, "{routes:?}");
        routes[0].clone()
    }

    // The shapes of istiod's `TranslateRouteMatch` (pilot/pkg/networking/core/route/route.go):
    // header and `withoutHeaders` matchers sorted by name, then `:method`, `:authority` and
    // `:scheme`; `translateHeaderMatch` / `translateQueryParamMatch` turn an empty match or the
    // regex `*` into `present_match`; `withoutHeaders` is inverted and, unless it is a presence
    // test, treats a missing header as empty; `case_sensitive` is `!ignoreUriCase`.
    #[rstest]
    #[case::method(json!({"method": {"exact": "POST"}}),
        json!({"prefix": "/", "case_sensitive": true,
               "headers": [{"name": ":method", "string_match": {"exact": "POST"}}]}))]
    #[case::authority(json!({"authority": {"prefix": "podinfo."}}),
        json!({"prefix": "/", "case_sensitive": true,
               "headers": [{"name": ":authority", "string_match": {"prefix": "podinfo."}}]}))]
    #[case::scheme(json!({"scheme": {"exact": "https"}}),
        json!({"prefix": "/", "case_sensitive": true,
               "headers": [{"name": ":scheme", "string_match": {"exact": "https"}}]}))]
    #[case::query_params(json!({"queryParams": {"canary": {"exact": "1"}, "debug": {}, "v": {"regex": "^[0-9]+$"}, "w": {"regex": "*"}}}),
        json!({"prefix": "/", "case_sensitive": true, "query_parameters": [
            {"name": "canary", "string_match": {"exact": "1"}},
            {"name": "debug", "present_match": true},
            {"name": "v", "string_match": {"safe_regex": {"regex": "^[0-9]+$"}}},
            {"name": "w", "present_match": true}]}))]
    #[case::without_headers(json!({"withoutHeaders": {"x-a": {"exact": "v"}, "x-b": {}}}),
        json!({"prefix": "/", "case_sensitive": true, "headers": [
            {"name": "x-a", "string_match": {"exact": "v"}, "invert_match": true, "treat_missing_header_as_empty": true},
            {"name": "x-b", "present_match": true, "invert_match": true}]}))]
    #[case::present_header(json!({"headers": {"x-p": {}, "x-q": {"regex": "*"}}}),
        json!({"prefix": "/", "case_sensitive": true, "headers": [
            {"name": "x-p", "present_match": true},
            {"name": "x-q", "present_match": true}]}))]
    #[case::sorted_then_pseudo(json!({"headers": {"x-z": {"prefix": "a"}}, "withoutHeaders": {"x-m": {}},
                                      "authority": {"exact": "h"}, "method": {"regex": "GET|HEAD"}}),
        json!({"prefix": "/", "case_sensitive": true, "headers": [
            {"name": "x-m", "present_match": true, "invert_match": true},
            {"name": "x-z", "string_match": {"prefix": "a"}},
            {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}},
            {"name": ":authority", "string_match": {"exact": "h"}}]}))]
    #[case::ignore_uri_case(json!({"uri": {"prefix": "/API"}, "ignoreUriCase": true}),
        json!({"prefix": "/API", "case_sensitive": false}))]
    #[case::exact_uri(json!({"uri": {"exact": "/version"}}),
        json!({"path": "/version", "case_sensitive": true}))]
    fn matches_render_as_istiod_renders_them(#[case] m: Value, #[case] want: Value) {
        let route = one_route(json!({"match": [m]}));
        assert_eq!(route["match"], want);
    }

    #[test]
    fn a_route_without_matches_matches_every_path() {
        assert_eq!(one_route(json!({}))["match"], json!({"prefix": "/"}));
    }

    // istiod's `TranslateFault`: the route's `typed_per_filter_config` of
    // `envoy.filters.http.fault`; `translatePercentToFractionalPercent` (millionths, truncated)
    // and, for the deprecated integer `percent`, hundredths; an exponential delay and an HTTP/2
    // abort are dropped. Proto defaults (numerator 0, HUNDRED) are left out.
    #[rstest]
    #[case::abort_http(json!({"abort": {"httpStatus": 503, "percentage": {"value": 100}}}),
        json!({"abort": {"http_status": 503, "percentage": {"numerator": 1_000_000, "denominator": "MILLION"}}}))]
    #[case::abort_grpc(json!({"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 12.5}}}),
        json!({"abort": {"grpc_status": 14, "percentage": {"numerator": 125_000, "denominator": "MILLION"}}}))]
    #[case::abort_without_percentage(json!({"abort": {"httpStatus": 418}}),
        json!({"abort": {"http_status": 418}}))]
    #[case::delay_fixed(json!({"delay": {"fixedDelay": "5s", "percentage": {"value": 0.1}}}),
        json!({"delay": {"fixed_delay": "5s", "percentage": {"numerator": 1000, "denominator": "MILLION"}}}))]
    #[case::delay_deprecated_percent(json!({"delay": {"fixedDelay": "1s", "percent": 30}}),
        json!({"delay": {"fixed_delay": "1s", "percentage": {"numerator": 30}}}))]
    #[case::both(json!({"delay": {"fixedDelay": "200ms", "percentage": {"value": 50}}, "abort": {"httpStatus": 500, "percentage": {"value": 1}}}),
        json!({"delay": {"fixed_delay": "0.200s", "percentage": {"numerator": 500_000, "denominator": "MILLION"}},
               "abort": {"http_status": 500, "percentage": {"numerator": 10_000, "denominator": "MILLION"}}}))]
    #[case::exponential_delay_dropped(json!({"delay": {"exponentialDelay": "1s", "percentage": {"value": 5}}}), json!({}))]
    #[case::http2_error_dropped(json!({"abort": {"http2Error": "CANCEL", "percentage": {"value": 5}}}), json!({}))]
    fn faults_become_the_fault_filters_per_route_config(#[case] fault: Value, #[case] want: Value) {
        let route = one_route(json!({"fault": fault}));
        let mut want = want;
        want["@type"] = json!(FAULT);
        assert_eq!(
            route["typed_per_filter_config"],
            json!({"envoy.filters.http.fault": want})
        );
        // Forwarding is unchanged by the fault.
        assert_eq!(
            route["route"]["cluster"],
            "outbound|9898|ga|podinfo.test.svc.cluster.local"
        );
    }

    #[test]
    fn every_listener_has_the_fault_filter_before_the_router() {
        let r = routing();
        let b = bootstrap(&r, &r.entry_points(), Path::new("/m"));
        for l in b["static_resources"]["listeners"].as_array().unwrap() {
            let filters = &l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
            let names: Vec<&str> = filters
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                ["envoy.filters.http.fault", "envoy.filters.http.router"]
            );
            // Empty, as istiod's `xdsfilters.Fault`: it acts only where a route configures it.
            assert_eq!(filters[0]["typed_config"], json!({"@type": FAULT}));
        }
        assert!(
            one_route(json!({}))
                .get("typed_per_filter_config")
                .is_none()
        );
    }

    // istiod's `applyHTTPRouteDestination` and `TranslateHeadersOperations`: `rewrite.uri` is a
    // prefix rewrite, `uriRegexRewrite` a regex rewrite, `rewrite.authority` (else a request
    // header operation on `:authority`/`host`, `set` before `add`) the host rewrite; internal
    // headers never reach Envoy's header lists.
    #[rstest]
    #[case::prefix(json!({"rewrite": {"uri": "/v2/"}}), json!({"prefix_rewrite": "/v2/"}))]
    #[case::regex(json!({"rewrite": {"uriRegexRewrite": {"match": "^/a/(.*)", "rewrite": "/b/\\1"}}}),
        json!({"regex_rewrite": {"pattern": {"regex": "^/a/(.*)"}, "substitution": "/b/\\1"}}))]
    #[case::authority(json!({"rewrite": {"authority": "backend.internal"}}),
        json!({"host_rewrite_literal": "backend.internal"}))]
    #[case::authority_header(json!({"headers": {"request": {"set": {":authority": "set.example"}, "add": {"host": "add.example"}}}}),
        json!({"host_rewrite_literal": "set.example"}))]
    #[case::rewrite_wins(json!({"rewrite": {"authority": "rw.example"}, "headers": {"request": {"set": {"host": "hdr.example"}}}}),
        json!({"host_rewrite_literal": "rw.example"}))]
    #[case::go_durations(json!({"timeout": "1m30s"}), json!({"timeout": "90s", "max_grpc_timeout": "90s"}))]
    #[case::default_timeout(json!({}), json!({"timeout": "0s", "max_grpc_timeout": "0s"}))]
    fn route_actions_render_as_istiod_renders_them(#[case] extra: Value, #[case] want: Value) {
        let route = one_route(extra);
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&route["route"][k], v, "{k} in {route}");
        }
        assert!(route.get("request_headers_to_add").is_none(), "{route}");
    }

    // istiod's `retry.ConvertPolicy` (pilot/pkg/networking/core/route/retry/retry.go), from its
    // default policy (`newRetryPolicy`); `parseRetryOn` takes named HTTP status codes out.
    #[rstest]
    #[case::none(Value::Null, json!({"retry_on": RETRY_ON, "num_retries": 2}), true)]
    #[case::attempts_unset_disables(json!({"perTryTimeout": "1s"}), Value::Null, false)]
    #[case::zero_disables(json!({"attempts": 0}), Value::Null, false)]
    #[case::codes(json!({"attempts": 3, "retryOn": "gateway-error, 503,429,999"}),
        json!({"retry_on": "gateway-error,999,retriable-status-codes", "num_retries": 3,
               "retriable_status_codes": [503, 429]}), true)]
    #[case::codes_already_named(json!({"attempts": 1, "retryOn": "retriable-status-codes,503"}),
        json!({"retry_on": "retriable-status-codes", "num_retries": 1, "retriable_status_codes": [503]}), true)]
    #[case::durations(json!({"attempts": 1, "perTryTimeout": "1.5us", "backoff": "25ms"}),
        json!({"retry_on": RETRY_ON, "num_retries": 1, "per_try_timeout": "0.000001500s",
               "retry_back_off": {"base_interval": "0.025s"}}), true)]
    #[case::keep_previous_hosts(json!({"attempts": 2, "retryIgnorePreviousHosts": false}),
        json!({"retry_on": RETRY_ON, "num_retries": 2}), false)]
    #[case::remote_localities(json!({"attempts": 2, "retryRemoteLocalities": true, "retryIgnorePreviousHosts": true}),
        json!({"retry_on": RETRY_ON, "num_retries": 2, "retry_priority": {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                             "update_frequency": 2}}}), true)]
    fn retries_render_as_istiod_renders_them(
        #[case] retries: Value,
        #[case] want: Value,
        #[case] other_hosts: bool,
    ) {
        let extra = if retries.is_null() {
            json!({})
        } else {
            json!({"retries": retries})
        };
        let policy = one_route(extra)["route"]["retry_policy"].clone();
        if want.is_null() {
            assert!(policy.is_null(), "{policy}");
            return;
        }
        let mut want = want;
        want["host_selection_retry_max_attempts"] = json!(5);
        if other_hosts {
            want["retry_host_predicate"] = json!([{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
            }]);
        }
        assert_eq!(policy, want);
    }

    // istiod's `MirrorPercent`, `MirrorPercentByPolicy` and `TranslateRequestMirrorPolicy`.
    #[rstest]
    #[case::all(json!({"mirror": {"host": "podinfo", "subset": "canary"}}),
        json!([{"cluster": "outbound|9898|canary|podinfo.test.svc.cluster.local",
                "runtime_fraction": {"default_value": {"numerator": 100}}, "trace_sampled": false}]))]
    #[case::percentage(json!({"mirror": {"host": "podinfo", "subset": "canary"}, "mirrorPercentage": {"value": 2.5}}),
        json!([{"cluster": "outbound|9898|canary|podinfo.test.svc.cluster.local",
                "runtime_fraction": {"default_value": {"numerator": 25_000, "denominator": "MILLION"}}, "trace_sampled": false}]))]
    #[case::deprecated_percent(json!({"mirror": {"host": "podinfo", "subset": "canary"}, "mirror_percent": 7}),
        json!([{"cluster": "outbound|9898|canary|podinfo.test.svc.cluster.local",
                "runtime_fraction": {"default_value": {"numerator": 7}}, "trace_sampled": false}]))]
    #[case::zero_mirrors_nothing(json!({"mirror": {"host": "podinfo", "subset": "canary"}, "mirrorPercentage": {"value": 0}}), Value::Null)]
    #[case::mirrors(json!({"mirrors": [{"destination": {"host": "podinfo", "subset": "canary"}, "percentage": {"value": 50}},
                                       {"destination": {"host": "elsewhere"}}]}),
        json!([{"cluster": "outbound|9898|canary|podinfo.test.svc.cluster.local",
                "runtime_fraction": {"default_value": {"numerator": 500_000, "denominator": "MILLION"}}, "trace_sampled": false}]))]
    fn mirrors_to_a_subset_render_as_mirror_policies(#[case] extra: Value, #[case] want: Value) {
        assert_eq!(one_route(extra)["route"]["request_mirror_policies"], want);
    }

    #[test]
    fn a_weighted_destinations_authority_is_its_clusters_host_rewrite() {
        let routes = routes_of(
            json!([{"name": "split", "route": [
                {"destination": {"host": "podinfo", "subset": "ga"}, "weight": 50,
                 "headers": {"request": {"set": {"host": "ga.example", "x-keep": "1"}, "remove": ["host", "x-drop"]}}},
                {"destination": {"host": "podinfo", "subset": "canary"}, "weight": 50},
            ]}]),
            EntryPoint::Mesh,
        );
        let clusters = &routes[0]["route"]["weighted_clusters"]["clusters"];
        assert_eq!(clusters[0]["host_rewrite_literal"], "ga.example");
        assert_eq!(
            clusters[0]["request_headers_to_add"],
            json!([{"header": {"key": "x-keep", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}])
        );
        assert_eq!(clusters[0]["request_headers_to_remove"], json!(["x-drop"]));
        assert!(clusters[1].get("host_rewrite_literal").is_none());
    }

    // istiod's `ApplyRedirect` and `ApplyDirectResponse`.
    #[rstest]
    #[case::redirect(json!({"redirect": {"uri": "/new", "authority": "other.example", "redirectCode": 302}}),
        "redirect", json!({"path_redirect": "/new", "host_redirect": "other.example", "response_code": "FOUND"}))]
    #[case::redirect_prefix_and_port(json!({"redirect": {"prefixRewrite": "/v2", "scheme": "https", "port": 8443}}),
        "redirect", json!({"prefix_rewrite": "/v2", "scheme_redirect": "https", "port_redirect": 8443}))]
    #[case::redirect_default_port(json!({"redirect": {"uri": "/x", "port": 80}}),
        "redirect", json!({"path_redirect": "/x"}))]
    #[case::redirect_request_port(json!({"redirect": {"uri": "/x", "derivePort": "FROM_REQUEST_PORT"}}),
        "redirect", json!({"path_redirect": "/x"}))]
    #[case::direct_string(json!({"directResponse": {"status": 418, "body": {"string": "teapot"}}}),
        "direct_response", json!({"status": 418, "body": {"inline_string": "teapot"}}))]
    #[case::direct_bytes(json!({"directResponse": {"status": 200, "body": {"bytes": "aGk="}}}),
        "direct_response", json!({"status": 200, "body": {"inline_bytes": "aGk="}}))]
    fn redirects_and_direct_responses_replace_forwarding(
        #[case] http: Value,
        #[case] key: &str,
        #[case] want: Value,
    ) {
        let mut http = http;
        http["name"] = json!("r");
        let routes = routes_of(json!([http]), EntryPoint::Ingress);
        assert_eq!(routes[0][key], want);
        assert!(routes[0].get("route").is_none());
    }

    // istiod's `TranslateRoute` (port) and `sourceMatchHTTP` (gateways) render a match only
    // for the proxies it applies to; a named match names the route `<route>.<match>`.
    #[rstest]
    #[case::port_of_the_gateway(json!({"port": 80}), &["r"], &[])]
    #[case::port_of_the_service(json!({"port": 9898}), &[], &["r"])]
    #[case::the_gateway_only(json!({"gateways": ["podinfo-gateway"]}), &["r"], &[])]
    #[case::the_gateway_by_namespace(json!({"gateways": ["test/podinfo-gateway"]}), &["r"], &[])]
    #[case::the_mesh_only(json!({"gateways": ["mesh"]}), &[], &["r"])]
    #[case::named(json!({"name": "first", "statPrefix": "p"}), &["r.first"], &["r.first"])]
    fn matches_apply_to_their_own_proxies(
        #[case] m: Value,
        #[case] ingress: &[&str],
        #[case] mesh: &[&str],
    ) {
        let http = json!([{"name": "r", "match": [m.clone()],
                           "route": [{"destination": {"host": "podinfo", "subset": "ga"}}]}]);
        for (entry, want) in [(EntryPoint::Ingress, ingress), (EntryPoint::Mesh, mesh)] {
            let routes = routes_of(http.clone(), entry);
            let names: Vec<&str> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
            assert_eq!(names, want, "{entry:?}");
            if m.get("statPrefix").is_some() {
                assert_eq!(routes[0]["stat_prefix"], "p");
            }
        }
    }

    #[test]
    fn unrendered_fields_are_listed_by_path() {
        let (r, vs) = with_http(json!([
            {"name": "a", "match": [{"sourceLabels": {"app": "x"}}, {"gateways": ["mesh"], "sourceLabels": {"app": "y"}},
                                    {"headers": {"@request.auth.claims.group": {"exact": "beta"}}}],
             "mirror": {"host": "shadow.other.svc.cluster.local"}, "mirrorPercentage": {"value": 5},
             "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}]},
             "route": [{"destination": {"host": "podinfo", "subset": "ga"}}]},
            {"name": "b", "mirrors": [{"destination": {"host": "podinfo", "subset": "canary"}},
                                      {"destination": {"host": "podinfo", "subset": "nightly"}}],
             "retries": {"attempts": 2, "retryRemoteLocalities": true},
             "match": [{"sourceNamespace": "other"}],
             "route": [{"destination": {"host": "podinfo", "subset": "ga"}}]},
            {"name": "c", "delegate": {"name": "child"}},
        ]));
        assert_eq!(
            unrendered_fields(&r, &vs),
            [
                "spec.http[0].mirror",
                "spec.http[0].corsPolicy",
                "spec.http[0].match[0].sourceLabels",
                "spec.http[0].match[2].headers.@request.auth.claims.group",
                "spec.http[1].mirrors[1]",
                "spec.http[1].match[0].sourceNamespace",
                "spec.http[2].delegate",
            ]
        );
        // A delegating route renders nothing rather than a route with no cluster.
        let dr = route_discovery_response(&r, &vs, EntryPoint::Ingress, "1").unwrap();
        let names: Vec<&str> = dr["resources"][0]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        // `a`'s second match is for the mesh only.
        assert_eq!(names, ["a", "a", "b"]);
        let tutorial = routing();
        assert!(unrendered_fields(&tutorial, &tutorial.virtual_service.value).is_empty());
    }
}
