//! Istio's routing resources — VirtualService, DestinationRule, Gateway — with every field istio/api
//! defines for them at Istio 1.31 (`networking/v1alpha3/*.proto`, served as
//! `networking.istio.io/v1`), in the JSON shape of their CRDs: what `kubectl apply` sends.
//!
//! Parsing is strict: every message refuses unknown fields, since a silently ignored field is a
//! route that does not do what its author meant.
//!
//! Round trips are faithful: `serialize(parse(x)) == x` for every valid `x`, down to empty lists,
//! explicit zeros and `null` in the wrapper fields the CRD marks nullable. A `null` anywhere else
//! reads as absent, as the API server prunes it.

mod common;
mod destination_rule;
mod gateway;
mod virtual_service;

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
