//! Turns serde's refusal of a resource into a [`Problem`]: the full field path, what is wrong, and
//! a fix that fits it.
//!
//! It knows the resources through [`MESSAGES`], a table written by hand from the protos: every
//! message of the three kinds and every field of each, with its JSON name and type. The coverage
//! test holds the table, the serde model and the fixtures to each other, so a field missing from
//! any of them fails it.

use serde_path_to_error::Segment;

use super::Problem;
use super::common::DURATION_EXPECTED;

/// The Istio release the model follows, for messages.
pub(crate) const ISTIO_RELEASE: &str = "Istio 1.31";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Bool,
    Int32,
    UInt32,
    UInt64,
    Double,
    Duration,
    /// Base64 text.
    Bytes,
    Enum(&'static [&'static str]),
    Msg(&'static str),
    /// Anything (`status`, or metadata the harness does not type).
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    One,
    List,
    /// A JSON object of string keys to values of the field's type.
    Map,
}

#[derive(Debug)]
pub(crate) struct FieldSchema {
    pub(crate) json: &'static str,
    pub(crate) ty: Ty,
    pub(crate) card: Card,
}

#[derive(Debug)]
pub(crate) struct MessageSchema {
    pub(crate) name: &'static str,
    /// Extra fields are allowed (Kubernetes metadata).
    pub(crate) lenient: bool,
    pub(crate) fields: &'static [FieldSchema],
}

impl MessageSchema {
    pub(crate) fn field(&self, json: &str) -> Option<&'static FieldSchema> {
        self.fields.iter().find(|f| f.json == json)
    }
}

const fn one(json: &'static str, ty: Ty) -> FieldSchema {
    FieldSchema {
        json,
        ty,
        card: Card::One,
    }
}

const fn list(json: &'static str, ty: Ty) -> FieldSchema {
    FieldSchema {
        json,
        ty,
        card: Card::List,
    }
}

const fn map(json: &'static str, ty: Ty) -> FieldSchema {
    FieldSchema {
        json,
        ty,
        card: Card::Map,
    }
}

const fn msg(name: &'static str, fields: &'static [FieldSchema]) -> MessageSchema {
    MessageSchema {
        name,
        lenient: false,
        fields,
    }
}

use Ty::{Any, Bool, Bytes, Double, Duration, Enum, Int32, Msg, Str, UInt32, UInt64};

pub(crate) const REDIRECT_PORT_SELECTION: &[&str] = &["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"];
pub(crate) const UNMATCHED_PREFLIGHTS: &[&str] = &["UNSPECIFIED", "FORWARD", "IGNORE"];
pub(crate) const PROXY_PROTOCOL_VERSION: &[&str] = &["V1", "V2"];
pub(crate) const SIMPLE_LB: &[&str] = &[
    "UNSPECIFIED",
    "LEAST_CONN",
    "RANDOM",
    "PASSTHROUGH",
    "ROUND_ROBIN",
    "LEAST_REQUEST",
];
pub(crate) const H2_UPGRADE_POLICY: &[&str] = &["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"];
pub(crate) const CLIENT_TLS_MODE: &[&str] = &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];
pub(crate) const SERVER_TLS_MODE: &[&str] = &[
    "PASSTHROUGH",
    "SIMPLE",
    "MUTUAL",
    "AUTO_PASSTHROUGH",
    "ISTIO_MUTUAL",
    "OPTIONAL_MUTUAL",
];
pub(crate) const TLS_PROTOCOL: &[&str] = &["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"];

/// Every message of `virtual_service.proto`, `destination_rule.proto` and `gateway.proto` at
/// Istio 1.31 (nested ones as `Outer.Inner`), plus the Kubernetes objects around them.
pub(crate) static MESSAGES: &[MessageSchema] = &[
    // The Kubernetes objects.
    msg(
        "VirtualService",
        &[
            one("apiVersion", Str),
            one("kind", Str),
            one("metadata", Msg("ObjectMeta")),
            one("spec", Msg("VirtualService.spec")),
            one("status", Any),
        ],
    ),
    msg(
        "DestinationRule",
        &[
            one("apiVersion", Str),
            one("kind", Str),
            one("metadata", Msg("ObjectMeta")),
            one("spec", Msg("DestinationRule.spec")),
            one("status", Any),
        ],
    ),
    msg(
        "Gateway",
        &[
            one("apiVersion", Str),
            one("kind", Str),
            one("metadata", Msg("ObjectMeta")),
            one("spec", Msg("Gateway.spec")),
            one("status", Any),
        ],
    ),
    MessageSchema {
        name: "ObjectMeta",
        lenient: true,
        fields: &[
            one("name", Str),
            one("namespace", Str),
            map("labels", Str),
            map("annotations", Str),
        ],
    },
    // virtual_service.proto
    msg(
        "VirtualService.spec",
        &[
            list("hosts", Str),
            list("gateways", Str),
            list("http", Msg("HTTPRoute")),
            list("tls", Msg("TLSRoute")),
            list("tcp", Msg("TCPRoute")),
            list("exportTo", Str),
        ],
    ),
    msg(
        "Destination",
        &[
            one("host", Str),
            one("subset", Str),
            one("port", Msg("PortSelector")),
        ],
    ),
    msg(
        "HTTPRoute",
        &[
            one("name", Str),
            list("match", Msg("HTTPMatchRequest")),
            list("route", Msg("HTTPRouteDestination")),
            one("redirect", Msg("HTTPRedirect")),
            one("directResponse", Msg("HTTPDirectResponse")),
            one("delegate", Msg("Delegate")),
            one("rewrite", Msg("HTTPRewrite")),
            one("timeout", Duration),
            one("retries", Msg("HTTPRetry")),
            one("fault", Msg("HTTPFaultInjection")),
            one("mirror", Msg("Destination")),
            list("mirrors", Msg("HTTPMirrorPolicy")),
            one("mirrorPercent", UInt32),
            one("mirror_percent", UInt32),
            one("mirrorPercentage", Msg("Percent")),
            one("corsPolicy", Msg("CorsPolicy")),
            one("headers", Msg("Headers")),
        ],
    ),
    msg("Delegate", &[one("name", Str), one("namespace", Str)]),
    msg(
        "Headers",
        &[
            one("request", Msg("Headers.HeaderOperations")),
            one("response", Msg("Headers.HeaderOperations")),
        ],
    ),
    msg(
        "Headers.HeaderOperations",
        &[map("set", Str), map("add", Str), list("remove", Str)],
    ),
    msg(
        "TLSRoute",
        &[
            list("match", Msg("TLSMatchAttributes")),
            list("route", Msg("RouteDestination")),
        ],
    ),
    msg(
        "TCPRoute",
        &[
            list("match", Msg("L4MatchAttributes")),
            list("route", Msg("RouteDestination")),
        ],
    ),
    msg(
        "HTTPMatchRequest",
        &[
            one("name", Str),
            one("uri", Msg("StringMatch")),
            one("scheme", Msg("StringMatch")),
            one("method", Msg("StringMatch")),
            one("authority", Msg("StringMatch")),
            map("headers", Msg("StringMatch")),
            one("port", UInt32),
            map("sourceLabels", Str),
            list("gateways", Str),
            map("queryParams", Msg("StringMatch")),
            one("ignoreUriCase", Bool),
            map("withoutHeaders", Msg("StringMatch")),
            one("sourceNamespace", Str),
            one("statPrefix", Str),
        ],
    ),
    msg(
        "HTTPRouteDestination",
        &[
            one("destination", Msg("Destination")),
            one("weight", Int32),
            one("headers", Msg("Headers")),
        ],
    ),
    msg(
        "RouteDestination",
        &[one("destination", Msg("Destination")), one("weight", Int32)],
    ),
    msg(
        "L4MatchAttributes",
        &[
            list("destinationSubnets", Str),
            one("port", UInt32),
            one("sourceSubnet", Str),
            map("sourceLabels", Str),
            list("gateways", Str),
            one("sourceNamespace", Str),
        ],
    ),
    msg(
        "TLSMatchAttributes",
        &[
            list("sniHosts", Str),
            list("destinationSubnets", Str),
            one("port", UInt32),
            map("sourceLabels", Str),
            list("gateways", Str),
            one("sourceNamespace", Str),
        ],
    ),
    msg(
        "HTTPRedirect",
        &[
            one("uri", Str),
            one("authority", Str),
            one("port", UInt32),
            one("derivePort", Enum(REDIRECT_PORT_SELECTION)),
            one("scheme", Str),
            one("redirectCode", UInt32),
            one("prefixRewrite", Str),
        ],
    ),
    msg(
        "HTTPDirectResponse",
        &[one("status", UInt32), one("body", Msg("HTTPBody"))],
    ),
    msg("HTTPBody", &[one("string", Str), one("bytes", Bytes)]),
    msg(
        "HTTPRewrite",
        &[
            one("uri", Str),
            one("authority", Str),
            one("uriRegexRewrite", Msg("RegexRewrite")),
        ],
    ),
    msg("RegexRewrite", &[one("match", Str), one("rewrite", Str)]),
    msg(
        "StringMatch",
        &[one("exact", Str), one("prefix", Str), one("regex", Str)],
    ),
    msg(
        "HTTPRetry",
        &[
            one("attempts", Int32),
            one("perTryTimeout", Duration),
            one("retryOn", Str),
            one("retryRemoteLocalities", Bool),
            one("retryIgnorePreviousHosts", Bool),
            one("backoff", Duration),
        ],
    ),
    msg(
        "CorsPolicy",
        &[
            list("allowOrigin", Str),
            list("allowOrigins", Msg("StringMatch")),
            list("allowMethods", Str),
            list("allowHeaders", Str),
            list("exposeHeaders", Str),
            one("maxAge", Duration),
            one("allowCredentials", Bool),
            one("unmatchedPreflights", Enum(UNMATCHED_PREFLIGHTS)),
        ],
    ),
    msg(
        "HTTPFaultInjection",
        &[
            one("delay", Msg("HTTPFaultInjection.Delay")),
            one("abort", Msg("HTTPFaultInjection.Abort")),
        ],
    ),
    msg(
        "HTTPFaultInjection.Delay",
        &[
            one("percent", Int32),
            one("fixedDelay", Duration),
            one("exponentialDelay", Duration),
            one("percentage", Msg("Percent")),
        ],
    ),
    msg(
        "HTTPFaultInjection.Abort",
        &[
            one("httpStatus", Int32),
            one("grpcStatus", Str),
            one("http2Error", Str),
            one("percentage", Msg("Percent")),
        ],
    ),
    msg(
        "HTTPMirrorPolicy",
        &[
            one("destination", Msg("Destination")),
            one("percentage", Msg("Percent")),
        ],
    ),
    msg("PortSelector", &[one("number", UInt32)]),
    msg("Percent", &[one("value", Double)]),
    // destination_rule.proto
    msg(
        "DestinationRule.spec",
        &[
            one("host", Str),
            one("trafficPolicy", Msg("TrafficPolicy")),
            list("subsets", Msg("Subset")),
            list("exportTo", Str),
            one("workloadSelector", Msg("WorkloadSelector")),
        ],
    ),
    msg("WorkloadSelector", &[map("matchLabels", Str)]),
    msg(
        "TrafficPolicy",
        &[
            one("loadBalancer", Msg("LoadBalancerSettings")),
            one("connectionPool", Msg("ConnectionPoolSettings")),
            one("outlierDetection", Msg("OutlierDetection")),
            one("tls", Msg("ClientTLSSettings")),
            list("portLevelSettings", Msg("TrafficPolicy.PortTrafficPolicy")),
            one("tunnel", Msg("TrafficPolicy.TunnelSettings")),
            one("proxyProtocol", Msg("TrafficPolicy.ProxyProtocol")),
            one("retryBudget", Msg("TrafficPolicy.RetryBudget")),
        ],
    ),
    msg(
        "TrafficPolicy.PortTrafficPolicy",
        &[
            one("port", Msg("PortSelector")),
            one("loadBalancer", Msg("LoadBalancerSettings")),
            one("connectionPool", Msg("ConnectionPoolSettings")),
            one("outlierDetection", Msg("OutlierDetection")),
            one("tls", Msg("ClientTLSSettings")),
        ],
    ),
    msg(
        "TrafficPolicy.TunnelSettings",
        &[
            one("protocol", Str),
            one("targetHost", Str),
            one("targetPort", UInt32),
        ],
    ),
    msg(
        "TrafficPolicy.ProxyProtocol",
        &[one("version", Enum(PROXY_PROTOCOL_VERSION))],
    ),
    msg(
        "TrafficPolicy.RetryBudget",
        &[
            one("percent", Double),
            one("minRetryConcurrency", UInt32),
            one("budgetInterval", Duration),
        ],
    ),
    msg(
        "Subset",
        &[
            one("name", Str),
            map("labels", Str),
            one("trafficPolicy", Msg("TrafficPolicy")),
        ],
    ),
    msg(
        "LoadBalancerSettings",
        &[
            one("simple", Enum(SIMPLE_LB)),
            one(
                "consistentHash",
                Msg("LoadBalancerSettings.ConsistentHashLB"),
            ),
            one("localityLbSetting", Msg("LocalityLoadBalancerSetting")),
            one("zoneAwareLbSetting", Msg("ZoneAwareLoadBalancerSetting")),
            one("warmupDurationSecs", Duration),
            one("warmup", Msg("WarmupConfiguration")),
        ],
    ),
    msg(
        "LoadBalancerSettings.ConsistentHashLB",
        &[
            one("httpHeaderName", Str),
            one(
                "httpCookie",
                Msg("LoadBalancerSettings.ConsistentHashLB.HTTPCookie"),
            ),
            one("useSourceIp", Bool),
            one("httpQueryParameterName", Str),
            one(
                "ringHash",
                Msg("LoadBalancerSettings.ConsistentHashLB.RingHash"),
            ),
            one(
                "maglev",
                Msg("LoadBalancerSettings.ConsistentHashLB.MagLev"),
            ),
            one("minimumRingSize", UInt64),
        ],
    ),
    msg(
        "LoadBalancerSettings.ConsistentHashLB.RingHash",
        &[one("minimumRingSize", UInt64)],
    ),
    msg(
        "LoadBalancerSettings.ConsistentHashLB.MagLev",
        &[one("tableSize", UInt64)],
    ),
    msg(
        "LoadBalancerSettings.ConsistentHashLB.HTTPCookie",
        &[
            one("name", Str),
            one("path", Str),
            one("ttl", Duration),
            list(
                "attributes",
                Msg("LoadBalancerSettings.ConsistentHashLB.HTTPCookie.Attribute"),
            ),
        ],
    ),
    msg(
        "LoadBalancerSettings.ConsistentHashLB.HTTPCookie.Attribute",
        &[one("name", Str), one("value", Str)],
    ),
    msg(
        "WarmupConfiguration",
        &[
            one("duration", Duration),
            one("minimumPercent", Double),
            one("aggression", Double),
        ],
    ),
    msg(
        "ConnectionPoolSettings",
        &[
            one("tcp", Msg("ConnectionPoolSettings.TCPSettings")),
            one("http", Msg("ConnectionPoolSettings.HTTPSettings")),
        ],
    ),
    msg(
        "ConnectionPoolSettings.TCPSettings",
        &[
            one("maxConnections", Int32),
            one("connectTimeout", Duration),
            one(
                "tcpKeepalive",
                Msg("ConnectionPoolSettings.TCPSettings.TcpKeepalive"),
            ),
            one("maxConnectionDuration", Duration),
            one("idleTimeout", Duration),
        ],
    ),
    msg(
        "ConnectionPoolSettings.TCPSettings.TcpKeepalive",
        &[
            one("probes", UInt32),
            one("time", Duration),
            one("interval", Duration),
        ],
    ),
    msg(
        "ConnectionPoolSettings.HTTPSettings",
        &[
            one("http1MaxPendingRequests", Int32),
            one("http2MaxRequests", Int32),
            one("maxRequestsPerConnection", Int32),
            one("maxRetries", Int32),
            one("idleTimeout", Duration),
            one("h2UpgradePolicy", Enum(H2_UPGRADE_POLICY)),
            one("useClientProtocol", Bool),
            one("maxConcurrentStreams", Int32),
            one(
                "http2KeepAlive",
                Msg("ConnectionPoolSettings.HTTPSettings.ConnectionKeepalive"),
            ),
        ],
    ),
    msg(
        "ConnectionPoolSettings.HTTPSettings.ConnectionKeepalive",
        &[one("interval", Duration), one("timeout", Duration)],
    ),
    msg(
        "OutlierDetection",
        &[
            one("consecutiveErrors", Int32),
            one("splitExternalLocalOriginErrors", Bool),
            one("consecutiveLocalOriginFailures", UInt32),
            one("consecutiveGatewayErrors", UInt32),
            one("consecutive5xxErrors", UInt32),
            one("interval", Duration),
            one("baseEjectionTime", Duration),
            one("maxEjectionPercent", Int32),
            one("minHealthPercent", Int32),
            list("outlierDetectionHttpErrorCodes", UInt32),
        ],
    ),
    msg(
        "ClientTLSSettings",
        &[
            one("mode", Enum(CLIENT_TLS_MODE)),
            one("clientCertificate", Str),
            one("privateKey", Str),
            one("caCertificates", Str),
            one("credentialName", Str),
            list("subjectAltNames", Str),
            one("sni", Str),
            one("insecureSkipVerify", Bool),
            one("caCrl", Str),
        ],
    ),
    msg(
        "LocalityLoadBalancerSetting",
        &[
            list("distribute", Msg("LocalityLoadBalancerSetting.Distribute")),
            list("failover", Msg("LocalityLoadBalancerSetting.Failover")),
            list("failoverPriority", Str),
            one("enabled", Bool),
        ],
    ),
    msg(
        "LocalityLoadBalancerSetting.Distribute",
        &[one("from", Str), map("to", UInt32)],
    ),
    msg(
        "LocalityLoadBalancerSetting.Failover",
        &[one("from", Str), one("to", Str)],
    ),
    msg(
        "ZoneAwareLoadBalancerSetting",
        &[
            one("enabled", Bool),
            list("failover", Msg("ZoneAwareLoadBalancerSetting.Failover")),
            list("failoverPriority", Str),
            one("minClusterSize", UInt64),
        ],
    ),
    msg(
        "ZoneAwareLoadBalancerSetting.Failover",
        &[one("from", Str), one("to", Str)],
    ),
    // gateway.proto
    msg(
        "Gateway.spec",
        &[list("servers", Msg("Server")), map("selector", Str)],
    ),
    msg(
        "Server",
        &[
            one("port", Msg("Port")),
            one("bind", Str),
            list("hosts", Str),
            one("tls", Msg("ServerTLSSettings")),
            one("defaultEndpoint", Str),
            one("name", Str),
        ],
    ),
    msg(
        "Port",
        &[
            one("number", UInt32),
            one("protocol", Str),
            one("name", Str),
            one("targetPort", UInt32),
        ],
    ),
    msg(
        "ServerTLSSettings",
        &[
            one("httpsRedirect", Bool),
            one("mode", Enum(SERVER_TLS_MODE)),
            one("serverCertificate", Str),
            one("privateKey", Str),
            one("caCertificates", Str),
            one("caCrl", Str),
            one("credentialName", Str),
            list("credentialNames", Str),
            one("caCertCredentialName", Str),
            list("tlsCertificates", Msg("ServerTLSSettings.TLSCertificate")),
            list("subjectAltNames", Str),
            list("verifyCertificateSpki", Str),
            list("verifyCertificateHash", Str),
            one("minProtocolVersion", Enum(TLS_PROTOCOL)),
            one("maxProtocolVersion", Enum(TLS_PROTOCOL)),
            list("cipherSuites", Str),
            one("insecureSkipVerify", Bool),
        ],
    ),
    msg(
        "ServerTLSSettings.TLSCertificate",
        &[
            one("serverCertificate", Str),
            one("privateKey", Str),
            one("caCertificates", Str),
        ],
    ),
];

/// Fields the protos reserve (removed) but people still write, and what replaced them.
const REMOVED_FIELDS: &[(&str, &str, &str)] = &[
    (
        "HTTPRoute",
        "websocketUpgrade",
        "remove it: Istio removed `websocketUpgrade`, WebSocket upgrades need no setting",
    ),
    (
        "HTTPRoute",
        "appendHeaders",
        "move the headers to `headers.request.add` (Istio removed `appendHeaders`)",
    ),
    (
        "HTTPRoute",
        "appendRequestHeaders",
        "move the headers to `headers.request.add` (Istio removed `appendRequestHeaders`)",
    ),
    (
        "HTTPRoute",
        "removeRequestHeaders",
        "move the names to `headers.request.remove` (Istio removed `removeRequestHeaders`)",
    ),
    (
        "HTTPRoute",
        "appendResponseHeaders",
        "move the headers to `headers.response.add` (Istio removed `appendResponseHeaders`)",
    ),
    (
        "HTTPRoute",
        "removeResponseHeaders",
        "move the names to `headers.response.remove` (Istio removed `removeResponseHeaders`)",
    ),
    (
        "HTTPRouteDestination",
        "appendRequestHeaders",
        "move the headers to `headers.request.add` (Istio removed `appendRequestHeaders`)",
    ),
    (
        "HTTPRouteDestination",
        "removeRequestHeaders",
        "move the names to `headers.request.remove` (Istio removed `removeRequestHeaders`)",
    ),
    (
        "HTTPRouteDestination",
        "appendResponseHeaders",
        "move the headers to `headers.response.add` (Istio removed `appendResponseHeaders`)",
    ),
    (
        "HTTPRouteDestination",
        "removeResponseHeaders",
        "move the names to `headers.response.remove` (Istio removed `removeResponseHeaders`)",
    ),
    (
        "HTTPFaultInjection.Abort",
        "percent",
        "replace `percent: N` with `percentage: {value: N}`: Istio removed the integer `percent` \
         of aborts",
    ),
    (
        "PortSelector",
        "name",
        "select the port by `number`: Istio removed `name` from PortSelector",
    ),
    (
        "TLSMatchAttributes",
        "sourceSubnet",
        "remove it: Istio removed `sourceSubnet` from TLS matches",
    ),
];

pub(crate) fn message_schema(name: &str) -> Option<&'static MessageSchema> {
    MESSAGES.iter().find(|m| m.name == name)
}

/// One step of a field path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index,
}

/// Where a field path leads in the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Position {
    Message(&'static MessageSchema),
    Value(Ty, Card),
}

fn position_of(ty: Ty) -> Option<Position> {
    match ty {
        Msg(name) => message_schema(name).map(Position::Message),
        other => Some(Position::Value(other, Card::One)),
    }
}

pub(crate) fn step(from: Position, step: Step<'_>) -> Option<Position> {
    match (from, step) {
        (Position::Message(m), Step::Key(key)) => match m.field(key) {
            Some(f) if f.card == Card::One => position_of(f.ty),
            Some(f) => Some(Position::Value(f.ty, f.card)),
            None if m.lenient => Some(Position::Value(Any, Card::One)),
            None => None,
        },
        (Position::Value(ty, Card::List), Step::Index)
        | (Position::Value(ty, Card::Map), Step::Key(_)) => position_of(ty),
        (Position::Value(Any, _), _) => Some(Position::Value(Any, Card::One)),
        _ => None,
    }
}

fn walk(root: &str, steps: &[Step<'_>]) -> Option<Position> {
    steps
        .iter()
        .try_fold(Position::Message(message_schema(root)?), |at, s| {
            step(at, *s)
        })
}

fn describe_one(ty: Ty) -> String {
    match ty {
        Str => "a string".into(),
        Bool => "`true` or `false`".into(),
        Int32 => "a whole number (int32)".into(),
        UInt32 => "a whole number from 0 to 4294967295".into(),
        UInt64 => "a whole number of 0 or more".into(),
        Double => "a number".into(),
        Duration => DURATION_EXPECTED.into(),
        Bytes => "a base64 string".into(),
        Enum(values) => format!("one of {}", backticked(values)),
        Msg(name) => format!("a {name} object"),
        Any => "any value".into(),
    }
}

fn describe(position: Position) -> String {
    match position {
        Position::Message(m) => format!("a {} object", m.name),
        Position::Value(ty, Card::One) => describe_one(ty),
        Position::Value(ty, Card::List) => format!("a list (each item {})", describe_one(ty)),
        Position::Value(ty, Card::Map) => {
            format!(
                "an object of names to values (each value {})",
                describe_one(ty)
            )
        }
    }
}

fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A serde refusal of a `kind` resource as a problem with its full path and a fix.
pub(crate) fn serde_problem(
    kind: &str,
    error: &serde_path_to_error::Error<serde_json::Error>,
) -> Problem {
    let path = error.path().to_string();
    let message = error.inner().to_string();
    let steps: Vec<Step<'_>> = error
        .path()
        .iter()
        .map(|s| match s {
            Segment::Seq { .. } => Step::Index,
            Segment::Map { key } | Segment::Enum { variant: key } => Step::Key(key),
            Segment::Unknown => Step::Key("?"),
        })
        .collect();
    let problem = format!("{kind}: {message}");

    if let Some((name, field)) = crate::input_error::unknown_field(&path, &message) {
        // The path ends at the refusing message or at the refused field: try both.
        let at = match walk(kind, &steps) {
            Some(Position::Message(m)) if m.field(&name).is_none() => Some(m),
            _ => match walk(kind, &steps[..steps.len().saturating_sub(1)]) {
                Some(Position::Message(m)) => Some(m),
                _ => None,
            },
        };
        let fix = unknown_field_fix(at, &name, &message);
        return Problem::new(field, problem, fix);
    }

    let display_path = if path == "." { String::new() } else { path };
    if let Some(missing) = backticked_after(&message, "missing field ") {
        let mut with_missing = steps.clone();
        with_missing.push(Step::Key(&missing));
        let field = join(&display_path, &missing);
        let owner = match walk(kind, &steps) {
            Some(Position::Message(m)) => m.name,
            _ => kind,
        };
        let what =
            walk(kind, &with_missing).map_or_else(String::new, |p| format!(" ({})", describe(p)));
        let fix = format!("add `{missing}`{what}: {owner} requires it");
        return Problem::new(field, problem, fix);
    }

    if let Some(given) = backticked_after(&message, "unknown variant ") {
        let allowed = backticked_list(&message);
        let fix = enum_fix(&given, &allowed);
        return Problem::new(display_path, problem, fix);
    }

    let fix = match walk(kind, &steps) {
        _ if display_path.is_empty() => {
            format!("give a {kind} object with `apiVersion`, `kind`, `metadata` and `spec`")
        }
        Some(position) => format!("make `{display_path}` {}", describe(position)),
        None => format!(
            "give `{display_path}` a value of the type the {kind} schema of {ISTIO_RELEASE} expects"
        ),
    };
    Problem::new(display_path, problem, fix)
}

fn unknown_field_fix(at: Option<&'static MessageSchema>, name: &str, message: &str) -> String {
    let (message_name, fields): (&str, Vec<String>) = match at {
        Some(m) => (
            m.name,
            m.fields.iter().map(|f| f.json.to_string()).collect(),
        ),
        // Off the table (it should not happen): serde's own list of the expected fields.
        None => ("this message", backticked_list(message)),
    };
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    if message_name == "Destination" && name == "name" {
        return "rename `name` to `host` (Istio renamed it before 0.8), e.g. \
                `host: reviews.default.svc.cluster.local`"
            .to_string();
    }
    let camel = to_lower_camel(name);
    if let Some((_, _, fix)) = REMOVED_FIELDS
        .iter()
        .find(|(m, f, _)| *m == message_name && (*f == name || *f == camel))
    {
        return (*fix).to_string();
    }
    if camel != name && fields.contains(&camel.as_str()) {
        return format!("rename `{name}` to `{camel}`: the CRD's field names are lowerCamelCase");
    }
    if let Some(close) = closest(name, &fields) {
        return format!("did you mean `{close}`?");
    }
    format!(
        "remove `{name}`: it is not a field of {message_name} in networking.istio.io/v1 at \
         {ISTIO_RELEASE} (its fields: {})",
        backticked(&fields)
    )
}

fn enum_fix(given: &str, allowed: &[String]) -> String {
    let normalised = given.to_ascii_uppercase().replace('-', "_");
    if let Some(exact) = allowed.iter().find(|a| **a == normalised) {
        return format!("write `{exact}`: enum values are their upper-case proto names");
    }
    let names: Vec<&str> = allowed.iter().map(String::as_str).collect();
    match closest(given, &names) {
        Some(close) => format!("did you mean `{close}`?"),
        None => format!("use one of {}", backticked(&names)),
    }
}

/// The text between the first pair of backticks after `prefix`, if the message starts so.
fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    Some(rest.split('`').next()?.to_string())
}

/// The names serde lists as expected: "…, expected one of `a`, `b`" or "…, expected `a`".
fn backticked_list(message: &str) -> Vec<String> {
    let Some((_, expected)) = message.split_once("expected ") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// `per_try_timeout` → `perTryTimeout`, `consecutive_5xx_errors` → `consecutive5xxErrors`.
pub(crate) fn to_lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' || c == '-' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The candidate within edit distance 2 of `name` (ignoring case), the closest first.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let name = name.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&name, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= 2 && *d < name.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("per_try_timeout", "perTryTimeout")]
    #[case("consecutive_5xx_errors", "consecutive5xxErrors")]
    #[case("http1_max_pending_requests", "http1MaxPendingRequests")]
    #[case("host", "host")]
    fn snake_case_becomes_lower_camel(#[case] snake: &str, #[case] camel: &str) {
        assert_eq!(to_lower_camel(snake), camel);
    }

    #[rstest]
    #[case("subset", &["subsets", "host"], Some("subsets"))]
    #[case("Weigth", &["destination", "weight"], Some("weight"))]
    #[case("HOSTS", &["hosts", "http"], Some("hosts"))]
    #[case("bananas", &["hosts", "http"], None)]
    #[case("ab", &["xy"], None)]
    fn close_misspellings_are_found(
        #[case] name: &str,
        #[case] candidates: &[&str],
        #[case] want: Option<&str>,
    ) {
        assert_eq!(closest(name, candidates), want);
    }

    #[test]
    fn every_message_a_field_refers_to_is_in_the_table() {
        for m in MESSAGES {
            for f in m.fields {
                if let Msg(name) = f.ty {
                    assert!(
                        message_schema(name).is_some(),
                        "{}.{} → {name}",
                        m.name,
                        f.json
                    );
                }
            }
        }
    }
}
