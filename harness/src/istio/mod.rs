//! Istio's routing resources — VirtualService, DestinationRule, Gateway — with every field istio/api
//! defines for them at Istio 1.31 (`networking/v1alpha3/*.proto`, served as
//! `networking.istio.io/v1`), in the JSON shape of their CRDs: what `kubectl apply` sends.
//!
//! Parsing is strict: an unknown field is an error naming its full path and the likely fix (a
//! typo, a snake_case spelling, a field Istio renamed or removed), since a silently ignored field
//! is a route that does not do what its author meant. What serde cannot check — oneofs, exclusive
//! fields, ranges, duration formats — `validate()` does, reporting every problem at once.
//!
//! Round trips are faithful: `serialize(parse(x)) == x` for every valid `x`, down to empty lists,
//! explicit zeros and `null` in the wrapper fields the CRD marks nullable. A `null` anywhere else
//! reads as absent, as the API server prunes it.

mod common;
mod destination_rule;
mod explain;
mod gateway;
mod validate;
mod virtual_service;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::de::DeserializeOwned;

pub use common::{Double, Duration, ObjectMeta, PortSelector};
pub use destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionKeepalive, ConnectionPoolSettings,
    ConsistentHashLb, DestinationRule, DestinationRuleSpec, Distribute, Failover, H2UpgradePolicy,
    HttpCookie, HttpCookieAttribute, HttpSettings, LoadBalancerSettings,
    LocalityLoadBalancerSetting, MagLev, OutlierDetection, PortTrafficPolicy, ProxyProtocol,
    ProxyProtocolVersion, RetryBudget, RingHash, SimpleLb, Subset, TcpKeepalive, TcpSettings,
    TrafficPolicy, TunnelSettings, WarmupConfiguration, WorkloadSelector,
    ZoneAwareLoadBalancerSetting,
};
pub use gateway::{
    Gateway, GatewaySpec, Port, Server, ServerTlsMode, ServerTlsSettings, TlsCertificate,
    TlsProtocol,
};
pub use virtual_service::{
    CorsPolicy, Delegate, Destination, FaultAbort, FaultDelay, HeaderOperations, Headers, HttpBody,
    HttpDirectResponse, HttpFaultInjection, HttpMatchRequest, HttpMirrorPolicy, HttpRedirect,
    HttpRetry, HttpRewrite, HttpRoute, HttpRouteDestination, L4MatchAttributes, MatchType, Percent,
    RedirectPortSelection, RegexRewrite, RouteDestination, StringMatch, TcpRoute,
    TlsMatchAttributes, TlsRoute, UnmatchedPreflights, VirtualService, VirtualServiceSpec,
};

/// The API group and version the harness writes.
pub const API_VERSION: &str = "networking.istio.io/v1";

/// Versions Istio 1.31 serves with the same schema.
pub const SERVED_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// The fully qualified name of a host as Istio resolves it from a resource's namespace:
/// a short name `podinfo` in namespace `test` is `podinfo.test.svc.cluster.local`.
pub fn qualify_host(host: &str, namespace: &str) -> String {
    if host.contains('.') || host == "*" {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

/// One thing wrong with a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The full path of the field, e.g. `spec.http[0].match[1].uri`; empty for the whole document.
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl Problem {
    pub fn new(
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write!(f, "field `{}`: ", self.field)?;
        }
        write!(f, "{}\n  fix: {}", self.problem, self.fix)
    }
}

/// A VirtualService from its JSON (or YAML read as JSON), checked in full.
pub fn parse_virtual_service(value: &serde_json::Value) -> Result<VirtualService, Vec<Problem>> {
    parse(value, "VirtualService", VirtualService::validate)
}

/// A DestinationRule from its JSON (or YAML read as JSON), checked in full.
pub fn parse_destination_rule(value: &serde_json::Value) -> Result<DestinationRule, Vec<Problem>> {
    parse(value, "DestinationRule", DestinationRule::validate)
}

/// A Gateway from its JSON (or YAML read as JSON), checked in full.
pub fn parse_gateway(value: &serde_json::Value) -> Result<Gateway, Vec<Problem>> {
    parse(value, "Gateway", Gateway::validate)
}

fn parse<T: DeserializeOwned>(
    value: &serde_json::Value,
    kind: &str,
    validate: fn(&T) -> Vec<Problem>,
) -> Result<T, Vec<Problem>> {
    // Another kind or version would only be refused field by field, which explains nothing.
    if let (Some(api_version), Some(found)) = (
        value.get("apiVersion").and_then(serde_json::Value::as_str),
        value.get("kind").and_then(serde_json::Value::as_str),
    ) {
        let problems = validate::type_meta_problems(api_version, found, kind);
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    let parsed: T = serde_path_to_error::deserialize(value)
        .map_err(|e| vec![explain::serde_problem(kind, &e)])?;
    let problems = validate(&parsed);
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}
