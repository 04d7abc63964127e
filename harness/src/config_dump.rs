//! Reads the weights a running Envoy routes with, from its admin `config_dump`.
//!
//! The same parser serves the local Envoy (`/config_dump?resource=dynamic_route_configs`) and
//! Istio's gateway (`pilot-agent request GET config_dump`, the full dump): both hold
//! `DynamicRouteConfig` entries with `version_info` and `route_config`. Sampling before the
//! proxy has the new weights is the classic cause of flaky split tests, so a stage only starts
//! once this parser sees the stage's weights.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::envoy_config::subset_of_cluster;
use crate::scenario::Weights;

/// What one route of one route configuration sends where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRoute {
    pub route_config: String,
    pub version_info: String,
    /// Share in percent per subset, summing to 100; subsets Envoy dropped (weight 0) are absent.
    pub weights: BTreeMap<String, u32>,
}

/// Finds the route configuration `name`, its virtual host answering `domain` and in it the split
/// route, and reads its cluster weights as percentages per subset. The split route is the one
/// istiod names after the HTTPRoute (`<name>`, or `<name>.<match name>` for a named match) when
/// the split has a name, else the first route that forwards.
pub fn observed_route(
    dump: &Value,
    name: &str,
    domain: &str,
    split: Option<&str>,
) -> Option<ObservedRoute> {
    let mut found = Vec::new();
    collect_route_configs(dump, &mut found);
    let entry = found
        .into_iter()
        .find(|e| e["route_config"]["name"].as_str() == Some(name))?;
    let version_info = entry["version_info"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let vhosts = entry["route_config"]["virtual_hosts"].as_array()?;
    let vhost = vhosts.iter().find(|v| {
        v["domains"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d.as_str() == Some(domain)))
    })?;
    let route = vhost["routes"]
        .as_array()?
        .iter()
        .filter(|r| r["route"].is_object())
        .find(|r| match (split, r["name"].as_str()) {
            (None, _) => true,
            (Some(want), Some(have)) => {
                have == want || have.strip_prefix(want).is_some_and(|m| m.starts_with('.'))
            }
            (Some(_), None) => false,
        })?;
    let action = &route["route"];
    let mut raw: Vec<(String, u64)> = Vec::new();
    if let Some(cluster) = action["cluster"].as_str() {
        raw.push((cluster.to_string(), 1));
    } else if let Some(clusters) = action["weighted_clusters"]["clusters"].as_array() {
        for c in clusters {
            let name = c["name"].as_str()?.to_string();
            // Envoy's dump renders a UInt32Value either as a number or as a string.
            let weight = match &c["weight"] {
                Value::Number(n) => n.as_u64()?,
                Value::String(s) => s.parse().ok()?,
                _ => 0,
            };
            raw.push((name, weight));
        }
    } else {
        return None;
    }
    let total: u64 = raw.iter().map(|(_, w)| w).sum();
    let mut weights = BTreeMap::new();
    for (cluster, w) in raw {
        if w == 0 || total == 0 {
            continue;
        }
        let subset = subset_of_cluster(&cluster).unwrap_or(&cluster).to_string();
        // Percent, rounded: weights are relative in Envoy.
        *weights.entry(subset).or_insert(0) += ((w * 100 + total / 2) / total) as u32;
    }
    Some(ObservedRoute {
        route_config: name.to_string(),
        version_info,
        weights,
    })
}

fn collect_route_configs<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            if map.contains_key("route_config") {
                out.push(v);
            }
            for child in map.values() {
                collect_route_configs(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_route_configs(i, out)),
        _ => {}
    }
}

/// Whether the proxy routes as the stage says: the same non-zero weights.
pub fn matches_weights(observed: &ObservedRoute, expected: &Weights) -> bool {
    let want: BTreeMap<&str, u32> = expected
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(k, w)| (k.as_str(), *w))
        .collect();
    let got: BTreeMap<&str, u32> = observed
        .weights
        .iter()
        .map(|(k, w)| (k.as_str(), *w))
        .collect();
    want == got
}

/// A short account of what a proxy routes, for waits that give up.
pub fn describe(observed: Option<&ObservedRoute>) -> String {
    match observed {
        None => "no route configuration with the split yet".to_string(),
        Some(o) => {
            let w: Vec<String> = o.weights.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "route config `{}` version `{}` routes {}",
                o.route_config,
                o.version_info,
                if w.is_empty() {
                    "nowhere".to_string()
                } else {
                    w.join(", ")
                }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    /// Shaped like `pilot-agent request GET config_dump` from an Istio 1.30 ingress gateway.
    fn istio_gateway_dump(clusters: Value) -> Value {
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {"node": {"id": "router~10.244.0.7~istio-ingressgateway-5d8f-abc.istio-system~istio-system.svc.cluster.local"}}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "version_info": "2026-11-27T10:00:00Z/12", "dynamic_active_clusters": []},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
             "static_route_configs": [{"route_config": {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}]}]}, "last_updated": "2026-11-27T09:59:00Z"}],
             "dynamic_route_configs": [{
                "version_info": "2026-11-27T10:00:05Z/14",
                "route_config": {
                    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "name": "http.8080",
                    "virtual_hosts": [
                        {"name": "blackhole:8080", "domains": ["*"], "routes": [{"name": "default", "match": {"prefix": "/"}, "direct_response": {"status": 404}}], "include_request_attempt_count": true},
                        {"name": "podinfo.example.com:80", "domains": ["podinfo.example.com", "podinfo.example.com:*"],
                         "routes": [{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": clusters}, "timeout": "0s", "retry_policy": {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", "num_retries": 2}, "max_grpc_timeout": "0s"},
                                     "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/test/virtual-service/podinfo"}}}, "decorator": {"operation": "podinfo.test.svc.cluster.local:9898/*"}, "name": "canary-split"}],
                         "include_request_attempt_count": true}
                    ],
                    "validate_clusters": false, "max_direct_response_body_size_bytes": 1048576, "ignore_port_in_host_matching": true
                },
                "last_updated": "2026-11-27T10:00:05.120Z"
             }]}
        ]})
    }

    #[rstest]
    #[case(json!([{"name": "outbound|9898|ga|podinfo.test.svc.cluster.local", "weight": 90}, {"name": "outbound|9898|canary|podinfo.test.svc.cluster.local", "weight": 10}]), &[("ga", 90), ("canary", 10)])]
    #[case(json!([{"name": "outbound|9898|ga|podinfo.test.svc.cluster.local", "weight": 100}]), &[("ga", 100)])]
    #[case(json!([{"name": "outbound|9898|ga|podinfo.test.svc.cluster.local", "weight": "40"}, {"name": "outbound|9898|canary|podinfo.test.svc.cluster.local", "weight": "60"}]), &[("ga", 40), ("canary", 60)])]
    #[case(json!([{"name": "outbound|9898|ga|podinfo.test.svc.cluster.local", "weight": 1}, {"name": "outbound|9898|canary|podinfo.test.svc.cluster.local", "weight": 3}]), &[("ga", 25), ("canary", 75)])]
    fn reads_gateway_weights(#[case] clusters: Value, #[case] want: &[(&str, u32)]) {
        let dump = istio_gateway_dump(clusters);
        let o = observed_route(&dump, "http.8080", "podinfo.example.com", None).unwrap();
        assert_eq!(o.version_info, "2026-11-27T10:00:05Z/14");
        let want: BTreeMap<String, u32> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(o.weights, want);
    }

    #[test]
    fn a_single_cluster_route_is_all_of_the_traffic() {
        let dump = json!({"configs": [{"version_info": "3", "route_config": {"name": "9898", "virtual_hosts": [
            {"name": "podinfo:9898", "domains": ["podinfo", "podinfo:9898"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "outbound|9898|canary|podinfo.test.svc.cluster.local"}}]}]}}]});
        let o = observed_route(&dump, "9898", "podinfo:9898", None).unwrap();
        assert_eq!(o.weights, BTreeMap::from([("canary".to_string(), 100)]));
        assert_eq!(o.version_info, "3");
    }

    #[test]
    fn missing_config_or_domain_is_none() {
        let dump = istio_gateway_dump(json!([]));
        assert!(observed_route(&dump, "http.9090", "podinfo.example.com", None).is_none());
        assert!(observed_route(&dump, "http.8080", "other.example.com", None).is_none());
        assert!(observed_route(&json!({}), "http.8080", "x", None).is_none());
    }

    #[rstest]
    #[case(&[("ga", 100)], &[("ga", 100), ("canary", 0)], true)]
    #[case(&[("ga", 90), ("canary", 10)], &[("ga", 90), ("canary", 10)], true)]
    #[case(&[("ga", 100)], &[("ga", 90), ("canary", 10)], false)]
    #[case(&[("ga", 90), ("canary", 10)], &[("ga", 40), ("canary", 60)], false)]
    fn weights_match_ignoring_zeros(
        #[case] got: &[(&str, u32)],
        #[case] want: &[(&str, u32)],
        #[case] same: bool,
    ) {
        let observed = ObservedRoute {
            route_config: "r".into(),
            version_info: "1".into(),
            weights: got.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let expected: Weights = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(matches_weights(&observed, &expected), same);
        assert!(describe(Some(&observed)).contains("version `1`"));
    }

    #[rstest]
    #[case::by_name(Some("canary-split"), &[("ga", 90), ("canary", 10)])]
    #[case::first_forwarding_route_without_a_name(None, &[("canary", 100)])]
    fn the_split_route_is_found_by_its_name(
        #[case] split: Option<&str>,
        #[case] want: &[(&str, u32)],
    ) {
        let cluster = |s: &str| format!("outbound|9898|{s}|podinfo.test.svc.cluster.local");
        let dump = json!({"configs": [{"version_info": "4", "route_config": {"name": "9898", "virtual_hosts": [
        {"name": "podinfo:9898", "domains": ["podinfo"], "routes": [
            {"name": "insiders.canary-header", "match": {"prefix": "/"}, "route": {"cluster": cluster("canary")}},
            {"name": "moved", "match": {"prefix": "/old"}, "redirect": {"path_redirect": "/new"}},
            {"name": "canary-split.api", "match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
                {"name": cluster("ga"), "weight": 90}, {"name": cluster("canary"), "weight": 10}]}}},
        ]}]}}]});
        let o = observed_route(&dump, "9898", "podinfo", split).unwrap();
        let want: BTreeMap<String, u32> = want.iter().map(|(s, w)| (s.to_string(), *w)).collect();
        assert_eq!(o.weights, want);
        assert!(observed_route(&dump, "9898", "podinfo", Some("canary")).is_none());
    }
}
