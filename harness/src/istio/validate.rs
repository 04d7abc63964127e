//! Rules the serde model does not express: the protos' oneofs, fields their comments declare
//! exclusive or required together, and the ranges, formats and CEL rules of the CRD. Each broken
//! rule is one [`Problem`] with the full field path and a fix; all of them are reported at once.

use std::collections::BTreeMap;

use base64::Engine;

use super::common::Duration;
use super::destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule, DestinationRuleSpec,
    LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};
use super::gateway::{Gateway, GatewaySpec, ServerTlsMode, ServerTlsSettings};
use super::virtual_service::{
    Destination, HttpMatchRequest, HttpRoute, Percent, StringMatch, VirtualService,
    VirtualServiceSpec,
};
use super::{API_VERSION, Problem, SERVED_VERSIONS};

impl VirtualService {
    /// Every rule of the VirtualService protos and CRD this resource breaks; empty if none.
    pub fn validate(&self) -> Vec<Problem> {
        let mut c = Checks::default();
        c.type_meta(&self.api_version, &self.kind, "VirtualService");
        virtual_service_spec(&mut c, "spec", &self.spec);
        c.problems
    }
}

impl DestinationRule {
    /// Every rule of the DestinationRule protos and CRD this resource breaks; empty if none.
    pub fn validate(&self) -> Vec<Problem> {
        let mut c = Checks::default();
        c.type_meta(&self.api_version, &self.kind, "DestinationRule");
        destination_rule_spec(&mut c, "spec", &self.spec);
        c.problems
    }
}

impl Gateway {
    /// Every rule of the Gateway protos and CRD this resource breaks; empty if none.
    pub fn validate(&self) -> Vec<Problem> {
        let mut c = Checks::default();
        c.type_meta(&self.api_version, &self.kind, "Gateway");
        gateway_spec(&mut c, "spec", &self.spec);
        c.problems
    }
}

/// The `apiVersion` and `kind` problems of a `kind` resource.
pub(crate) fn type_meta_problems(api_version: &str, kind: &str, expected: &str) -> Vec<Problem> {
    let mut c = Checks::default();
    c.type_meta(api_version, kind, expected);
    c.problems
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shortest {
    /// The CRD checks `duration(self) >= duration('1ms')`.
    OneMillisecond,
    /// The CRD opts out (`+protoc-gen-crd:duration-validation:none`): `0s` has a meaning there.
    Any,
}

#[derive(Default)]
struct Checks {
    problems: Vec<Problem>,
}

fn at(path: &str, field: &str) -> String {
    format!("{path}.{field}")
}

fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

fn names(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names_and(fields: &[&str]) -> String {
    match fields.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and `{last}`", names(rest)),
        _ => names(fields),
    }
}

impl Checks {
    fn add(
        &mut self,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.problems.push(Problem::new(field, problem, fix));
    }

    fn type_meta(&mut self, api_version: &str, kind: &str, expected: &str) {
        if !SERVED_VERSIONS.contains(&api_version) {
            self.add(
                "apiVersion",
                format!("`{api_version}` is not an API version Istio 1.31 serves {expected} in"),
                format!("use `apiVersion: {API_VERSION}`"),
            );
        }
        if kind != expected {
            self.add(
                "kind",
                format!("`{kind}` is read here as a {expected}"),
                format!("use `kind: {expected}`, or read the document as a {kind}"),
            );
        }
    }

    /// At most one of `choices` (field name, is set) may be set: a proto oneof, or fields the
    /// proto comments declare exclusive.
    fn at_most_one(&mut self, path: &str, why: &str, choices: &[(&str, bool)]) {
        let set: Vec<&str> = choices.iter().filter(|c| c.1).map(|c| c.0).collect();
        if set.len() > 1 {
            let all: Vec<&str> = choices.iter().map(|c| c.0).collect();
            self.add(
                path,
                format!("sets {} together, but {why}", names_and(&set)),
                format!("keep only one of {}", names(&all)),
            );
        }
    }

    fn duration(&mut self, path: String, value: Option<&Duration>, shortest: Shortest) {
        let Some(value) = value else { return };
        match value.nanos() {
            None => self.add(
                path,
                format!("`{}` is not a duration", value.as_str()),
                "write a number and a unit (ns, us, ms, s, m, h), e.g. `1.5s`, `100ms` or `1h30m`",
            ),
            Some(nanos) if shortest == Shortest::OneMillisecond && nanos < 1_000_000 => self.add(
                path,
                format!(
                    "`{}` is shorter than 1ms, which the CRD refuses here",
                    value.as_str()
                ),
                "give a duration of at least `1ms`",
            ),
            Some(_) => {}
        }
    }

    fn number_in(&mut self, path: String, value: Option<f64>, low: f64, high: f64) {
        if let Some(v) = value.filter(|v| !(low..=high).contains(v)) {
            self.add(
                path,
                format!("{v} is outside [{low}, {high}]"),
                format!("give a value from {low} to {high}"),
            );
        }
    }

    fn int_in(&mut self, path: String, value: Option<i64>, low: i64, high: i64) {
        if let Some(v) = value.filter(|v| !(low..=high).contains(v)) {
            self.add(
                path,
                format!("{v} is outside [{low}, {high}]"),
                format!("give a whole number from {low} to {high}"),
            );
        }
    }

    fn percent(&mut self, path: String, percent: Option<&Percent>) {
        if let Some(p) = percent {
            self.number_in(at(&path, "value"), Some(p.value()), 0.0, 100.0);
        }
    }

    fn string_match(&mut self, path: &str, m: &StringMatch) {
        self.at_most_one(
            path,
            "StringMatch's `exact`, `prefix` and `regex` are one choice (oneof `match_type`)",
            &[
                ("exact", m.exact.is_some()),
                ("prefix", m.prefix.is_some()),
                ("regex", m.regex.is_some()),
            ],
        );
    }

    fn destination(&mut self, path: &str, d: &Destination) {
        if d.host.is_empty() {
            self.add(
                at(path, "host"),
                "`host` is empty",
                "name the service, e.g. `host: reviews.default.svc.cluster.local`",
            );
        }
    }

    fn required_text(&mut self, path: String, value: Option<&String>, why: &str) {
        if value.is_none_or(|v| v.is_empty()) {
            self.add(
                path.clone(),
                format!("is missing: {why}"),
                format!("set `{path}`"),
            );
        }
    }

    fn must_be_absent(&mut self, path: &str, fields: &[(&str, bool)], why: &str, fix: &str) {
        for (name, set) in fields {
            if *set {
                self.add(at(path, name), why.to_string(), fix.to_string());
            }
        }
    }
}

fn virtual_service_spec(c: &mut Checks, path: &str, spec: &VirtualServiceSpec) {
    for (i, route) in spec.http().iter().enumerate() {
        http_route(c, &item(&at(path, "http"), i), route);
    }
    for (i, route) in spec.tls().iter().enumerate() {
        let path = item(&at(path, "tls"), i);
        if route.matches.is_empty() {
            c.add(
                at(&path, "match"),
                "a TLS route needs at least one match",
                "add a match with the `sniHosts` to route, e.g. `match: [{sniHosts: [login.example.com]}]`",
            );
        }
        for (j, m) in route.matches.iter().enumerate() {
            if m.sni_hosts.is_empty() {
                c.add(
                    at(&item(&at(&path, "match"), j), "sniHosts"),
                    "a TLS match needs at least one SNI host",
                    "list the server names to match, e.g. `sniHosts: [login.example.com]`",
                );
            }
        }
        for (j, d) in route.route().iter().enumerate() {
            let path = item(&at(&path, "route"), j);
            c.destination(&at(&path, "destination"), &d.destination);
            weight(c, &path, d.weight);
        }
    }
    for (i, route) in spec.tcp().iter().enumerate() {
        let path = item(&at(path, "tcp"), i);
        for (j, d) in route.route().iter().enumerate() {
            let path = item(&at(&path, "route"), j);
            c.destination(&at(&path, "destination"), &d.destination);
            weight(c, &path, d.weight);
        }
    }
}

fn weight(c: &mut Checks, path: &str, weight: Option<i32>) {
    if let Some(w) = weight.filter(|w| *w < 0) {
        c.add(
            at(path, "weight"),
            format!("weight {w} is negative"),
            "give a weight of 0 or more (0 sends this destination no traffic)",
        );
    }
}

fn http_route(c: &mut Checks, path: &str, r: &HttpRoute) {
    let forwards = !r.route().is_empty();
    let redirects = r.redirect.is_some();
    let responds = r.direct_response.is_some();
    let delegates = r.delegate.is_some();
    if !(forwards || redirects || responds || delegates) {
        c.add(
            path,
            "the HTTP route has no action",
            "add a `route` (or a `redirect`, `directResponse` or `delegate`)",
        );
    }
    c.at_most_one(
        path,
        "an HTTP route either forwards (`route`), redirects, responds directly or delegates",
        &[
            ("route", forwards),
            ("redirect", redirects),
            ("directResponse", responds),
            ("delegate", delegates),
        ],
    );
    if redirects || responds {
        let instead = if redirects {
            "redirect"
        } else {
            "directResponse"
        };
        c.must_be_absent(
            path,
            &[
                ("rewrite", r.rewrite.is_some()),
                ("fault", r.fault.is_some()),
            ],
            &format!(
                "has no effect on a route that answers with `{instead}`, and Istio refuses it"
            ),
            "remove it, or forward the request with `route`",
        );
    }

    for (i, m) in r.matches().iter().enumerate() {
        http_match(c, &item(&at(path, "match"), i), m);
    }
    for (i, d) in r.route().iter().enumerate() {
        let path = item(&at(path, "route"), i);
        c.destination(&at(&path, "destination"), &d.destination);
        weight(c, &path, d.weight);
    }
    if let Some(redirect) = &r.redirect {
        let path = at(path, "redirect");
        c.at_most_one(
            &path,
            "they are one choice (oneof `redirect_port`)",
            &[
                ("port", redirect.port.is_some()),
                ("derivePort", redirect.derive_port.is_some()),
            ],
        );
        c.at_most_one(
            &path,
            "`uri` replaces the whole path and `prefixRewrite` only its matched prefix",
            &[
                ("uri", redirect.uri.is_some()),
                ("prefixRewrite", redirect.prefix_rewrite.is_some()),
            ],
        );
    }
    if r.redirect
        .as_ref()
        .is_some_and(|d| d.prefix_rewrite.is_some())
    {
        for (i, m) in r.matches().iter().enumerate() {
            if m.uri.as_ref().is_some_and(|u| u.prefix.is_none()) {
                c.add(
                    at(&item(&at(path, "match"), i), "uri"),
                    "`redirect.prefixRewrite` replaces a matched prefix, but this URI match is \
                     not a prefix match",
                    "match the URI with `prefix:`, or redirect with `redirect.uri` instead",
                );
            }
        }
    }
    if let Some(body) = r.direct_response.as_ref().and_then(|d| d.body.as_ref()) {
        let path = at(&at(path, "directResponse"), "body");
        c.at_most_one(
            &path,
            "they are one choice (oneof `specifier`)",
            &[
                ("string", body.string.is_some()),
                ("bytes", body.bytes.is_some()),
            ],
        );
        if let Some(bytes) = &body.bytes
            && base64::engine::general_purpose::STANDARD
                .decode(bytes)
                .is_err()
        {
            c.add(
                at(&path, "bytes"),
                "`bytes` is not base64",
                "encode the body in base64 (`base64 -w0`), or give it as text in `string`",
            );
        }
    }
    if let Some(rewrite) = &r.rewrite {
        c.at_most_one(
            &at(path, "rewrite"),
            "both rewrite the path",
            &[
                ("uri", rewrite.uri.is_some()),
                ("uriRegexRewrite", rewrite.uri_regex_rewrite.is_some()),
            ],
        );
    }
    c.duration(
        at(path, "timeout"),
        r.timeout.as_ref(),
        Shortest::OneMillisecond,
    );
    if let Some(retries) = &r.retries {
        let path = at(path, "retries");
        c.int_in(
            at(&path, "attempts"),
            retries.attempts.map(i64::from),
            0,
            i64::from(i32::MAX),
        );
        c.duration(
            at(&path, "perTryTimeout"),
            retries.per_try_timeout.as_ref(),
            Shortest::OneMillisecond,
        );
        c.duration(
            at(&path, "backoff"),
            retries.backoff.as_ref(),
            Shortest::OneMillisecond,
        );
    }
    if let Some(fault) = &r.fault {
        let path = at(path, "fault");
        if fault.delay.is_none() && fault.abort.is_none() {
            c.add(
                path.clone(),
                "a fault needs a `delay`, an `abort`, or both",
                "add `delay: {fixedDelay: 5s, percentage: {value: 10}}` or \
                 `abort: {httpStatus: 503, percentage: {value: 10}}`, or remove `fault`",
            );
        }
        if let Some(delay) = &fault.delay {
            let path = at(&path, "delay");
            c.at_most_one(
                &path,
                "they are one choice (oneof `http_delay_type`)",
                &[
                    ("fixedDelay", delay.fixed_delay.is_some()),
                    ("exponentialDelay", delay.exponential_delay.is_some()),
                ],
            );
            c.duration(
                at(&path, "fixedDelay"),
                delay.fixed_delay.as_ref(),
                Shortest::OneMillisecond,
            );
            c.duration(
                at(&path, "exponentialDelay"),
                delay.exponential_delay.as_ref(),
                Shortest::OneMillisecond,
            );
            c.int_in(at(&path, "percent"), delay.percent.map(i64::from), 0, 100);
            c.percent(at(&path, "percentage"), delay.percentage.as_ref());
        }
        if let Some(abort) = &fault.abort {
            let path = at(&path, "abort");
            c.at_most_one(
                &path,
                "they are one choice (oneof `error_type`)",
                &[
                    ("httpStatus", abort.http_status.is_some()),
                    ("grpcStatus", abort.grpc_status.is_some()),
                    ("http2Error", abort.http2_error.is_some()),
                ],
            );
            c.percent(at(&path, "percentage"), abort.percentage.as_ref());
        }
    }
    if let Some(mirror) = &r.mirror {
        c.destination(&at(path, "mirror"), mirror);
    }
    for (i, m) in r.mirrors().iter().enumerate() {
        let path = item(&at(path, "mirrors"), i);
        c.destination(&at(&path, "destination"), &m.destination);
        c.percent(at(&path, "percentage"), m.percentage.as_ref());
    }
    c.at_most_one(
        path,
        "they are two names of the same deprecated field",
        &[
            ("mirrorPercent", r.mirror_percent.is_some()),
            ("mirror_percent", r.mirror_percent_proto_name.is_some()),
        ],
    );
    for (name, value) in [
        ("mirrorPercent", r.mirror_percent),
        ("mirror_percent", r.mirror_percent_proto_name),
    ] {
        c.int_in(at(path, name), value.flatten().map(i64::from), 0, 100);
    }
    c.percent(at(path, "mirrorPercentage"), r.mirror_percentage.as_ref());
    if let Some(cors) = &r.cors_policy {
        let path = at(path, "corsPolicy");
        for (i, origin) in cors.allow_origins.iter().flatten().enumerate() {
            c.string_match(&item(&at(&path, "allowOrigins"), i), origin);
        }
        c.duration(
            at(&path, "maxAge"),
            cors.max_age.as_ref(),
            Shortest::OneMillisecond,
        );
    }
}

fn http_match(c: &mut Checks, path: &str, m: &HttpMatchRequest) {
    for (name, value) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(value) = value {
            c.string_match(&at(path, name), value);
        }
    }
    for (name, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (key, value) in map.iter().flatten() {
            c.string_match(&at(&at(path, name), key), value);
        }
    }
}

fn destination_rule_spec(c: &mut Checks, path: &str, spec: &DestinationRuleSpec) {
    if spec.host.is_empty() {
        c.add(
            at(path, "host"),
            "`host` is empty",
            "name the service the rule applies to, e.g. `host: reviews.default.svc.cluster.local`",
        );
    }
    if let Some(policy) = &spec.traffic_policy {
        traffic_policy(c, &at(path, "trafficPolicy"), policy);
    }
    let mut seen = BTreeMap::new();
    for (i, subset) in spec.subsets().iter().enumerate() {
        let path = item(&at(path, "subsets"), i);
        if subset.name.is_empty() {
            c.add(
                at(&path, "name"),
                "the subset's `name` is empty",
                "name the subset, e.g. `name: v1`",
            );
        } else if let Some(first) = seen.insert(subset.name.as_str(), i) {
            c.add(
                at(&path, "name"),
                format!("subset `{}` is also `spec.subsets[{first}]`", subset.name),
                "give every subset its own name",
            );
        }
        if let Some(policy) = &subset.traffic_policy {
            traffic_policy(c, &at(&path, "trafficPolicy"), policy);
        }
    }
    if let Some(labels) = spec
        .workload_selector
        .as_ref()
        .and_then(|w| w.match_labels.as_ref())
    {
        let path = at(&at(path, "workloadSelector"), "matchLabels");
        if labels.len() > 4096 {
            c.add(
                path.clone(),
                "more than 4096 labels",
                "select by fewer labels",
            );
        }
        for (key, value) in labels {
            if key.is_empty() {
                c.add(path.clone(), "a label key is empty", "remove the empty key");
            }
            if key.contains('*') || value.contains('*') {
                c.add(
                    at(&path, key),
                    "wildcards are not allowed in a workload selector",
                    "select by exact label keys and values",
                );
            }
            if value.chars().count() > 63 {
                c.add(
                    at(&path, key),
                    "the label value is longer than 63 characters",
                    "use a label value of at most 63 characters",
                );
            }
        }
    }
}

fn traffic_policy(c: &mut Checks, path: &str, p: &TrafficPolicy) {
    port_policy(
        c,
        path,
        p.load_balancer.as_ref(),
        p.connection_pool.as_ref(),
        p.outlier_detection.as_ref(),
        p.tls.as_ref(),
    );
    if p.port_level_settings().len() > 4096 {
        c.add(
            at(path, "portLevelSettings"),
            "more than 4096 port-level settings",
            "keep at most 4096",
        );
    }
    for (i, port) in p.port_level_settings().iter().enumerate() {
        port_policy(
            c,
            &item(&at(path, "portLevelSettings"), i),
            port.load_balancer.as_ref(),
            port.connection_pool.as_ref(),
            port.outlier_detection.as_ref(),
            port.tls.as_ref(),
        );
    }
    if let Some(tunnel) = &p.tunnel {
        let path = at(path, "tunnel");
        if let Some(protocol) = tunnel
            .protocol
            .as_deref()
            .filter(|p| !matches!(*p, "CONNECT" | "POST"))
        {
            c.add(
                at(&path, "protocol"),
                format!("`{protocol}` is not a tunnel protocol"),
                "use `CONNECT` (the default) or `POST`",
            );
        }
        if tunnel.target_host.is_empty() {
            c.add(
                at(&path, "targetHost"),
                "`targetHost` is empty",
                "give the FQDN or IP address to tunnel to",
            );
        }
    }
    if let Some(budget) = &p.retry_budget {
        let path = at(path, "retryBudget");
        c.number_in(at(&path, "percent"), budget.percent(), 0.0, 100.0);
        c.duration(
            at(&path, "budgetInterval"),
            budget.budget_interval.as_ref(),
            Shortest::Any,
        );
    }
}

fn port_policy(
    c: &mut Checks,
    path: &str,
    load_balancer: Option<&LoadBalancerSettings>,
    connection_pool: Option<&ConnectionPoolSettings>,
    outlier_detection: Option<&OutlierDetection>,
    tls: Option<&ClientTlsSettings>,
) {
    if let Some(lb) = load_balancer {
        load_balancer_settings(c, &at(path, "loadBalancer"), lb);
    }
    if let Some(pool) = connection_pool {
        connection_pool_settings(c, &at(path, "connectionPool"), pool);
    }
    if let Some(outlier) = outlier_detection {
        outlier_detection_settings(c, &at(path, "outlierDetection"), outlier);
    }
    if let Some(tls) = tls {
        client_tls(c, &at(path, "tls"), tls);
    }
}

fn load_balancer_settings(c: &mut Checks, path: &str, lb: &LoadBalancerSettings) {
    c.at_most_one(
        path,
        "they are one choice (oneof `lb_policy`)",
        &[
            ("simple", lb.simple.is_some()),
            ("consistentHash", lb.consistent_hash.is_some()),
        ],
    );
    c.at_most_one(
        path,
        "only one of them can be set",
        &[
            ("localityLbSetting", lb.locality_lb_setting.is_some()),
            ("zoneAwareLbSetting", lb.zone_aware_lb_setting.is_some()),
        ],
    );
    c.at_most_one(
        path,
        "`warmup` replaces the deprecated `warmupDurationSecs`",
        &[
            ("warmupDurationSecs", lb.warmup_duration_secs.is_some()),
            ("warmup", lb.warmup.is_some()),
        ],
    );
    c.duration(
        at(path, "warmupDurationSecs"),
        lb.warmup_duration_secs.as_ref(),
        Shortest::OneMillisecond,
    );
    if let Some(warmup) = &lb.warmup {
        let path = at(path, "warmup");
        c.duration(
            at(&path, "duration"),
            Some(&warmup.duration),
            Shortest::OneMillisecond,
        );
        c.number_in(
            at(&path, "minimumPercent"),
            warmup.minimum_percent(),
            0.0,
            100.0,
        );
        c.number_in(at(&path, "aggression"), warmup.aggression(), 0.0, f64::MAX);
    }
    if let Some(hash) = &lb.consistent_hash {
        let path = at(path, "consistentHash");
        c.at_most_one(
            &path,
            "they are one choice of hash key (oneof `hash_key`)",
            &[
                ("httpHeaderName", hash.http_header_name.is_some()),
                ("httpCookie", hash.http_cookie.is_some()),
                ("useSourceIp", hash.use_source_ip.is_some()),
                (
                    "httpQueryParameterName",
                    hash.http_query_parameter_name.is_some(),
                ),
            ],
        );
        c.at_most_one(
            &path,
            "they are one choice of algorithm (oneof `hash_algorithm`)",
            &[
                ("ringHash", hash.ring_hash.is_some()),
                ("maglev", hash.maglev.is_some()),
            ],
        );
        if let Some(cookie) = &hash.http_cookie {
            c.duration(
                at(&at(&path, "httpCookie"), "ttl"),
                cookie.ttl.as_ref(),
                Shortest::Any,
            );
        }
    }
    if let Some(locality) = &lb.locality_lb_setting {
        let path = at(path, "localityLbSetting");
        let distribute = locality.distribute.as_deref().unwrap_or_default();
        c.at_most_one(
            &path,
            "Istio cannot both distribute and fail over",
            &[
                ("distribute", !distribute.is_empty()),
                (
                    "failover",
                    locality.failover.as_ref().is_some_and(|f| !f.is_empty()),
                ),
            ],
        );
        for (i, d) in distribute.iter().enumerate() {
            let total: u64 = d.to.iter().flatten().map(|(_, w)| u64::from(*w)).sum();
            if total != 100 {
                c.add(
                    at(&item(&at(&path, "distribute"), i), "to"),
                    format!("the weights add up to {total}"),
                    "give weights that add up to 100",
                );
            }
        }
    }
    if let Some(zone_aware) = &lb.zone_aware_lb_setting {
        c.int_in(
            at(&at(path, "zoneAwareLbSetting"), "minClusterSize"),
            zone_aware
                .min_cluster_size
                .flatten()
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            1,
            i64::MAX,
        );
    }
}

fn connection_pool_settings(c: &mut Checks, path: &str, pool: &ConnectionPoolSettings) {
    if let Some(tcp) = &pool.tcp {
        let path = at(path, "tcp");
        c.duration(
            at(&path, "connectTimeout"),
            tcp.connect_timeout.as_ref(),
            Shortest::OneMillisecond,
        );
        c.duration(
            at(&path, "maxConnectionDuration"),
            tcp.max_connection_duration.as_ref(),
            Shortest::OneMillisecond,
        );
        c.duration(
            at(&path, "idleTimeout"),
            tcp.idle_timeout.as_ref(),
            Shortest::Any,
        );
        if let Some(keepalive) = &tcp.tcp_keepalive {
            let path = at(&path, "tcpKeepalive");
            c.duration(
                at(&path, "time"),
                keepalive.time.as_ref(),
                Shortest::OneMillisecond,
            );
            c.duration(
                at(&path, "interval"),
                keepalive.interval.as_ref(),
                Shortest::OneMillisecond,
            );
        }
    }
    if let Some(http) = &pool.http {
        let path = at(path, "http");
        c.duration(
            at(&path, "idleTimeout"),
            http.idle_timeout.as_ref(),
            Shortest::OneMillisecond,
        );
        if let Some(keepalive) = &http.http2_keep_alive {
            let path = at(&path, "http2KeepAlive");
            for (name, value) in [
                ("interval", &keepalive.interval),
                ("timeout", &keepalive.timeout),
            ] {
                if value.is_none() {
                    c.add(
                        at(&path, name),
                        format!("`{name}` is missing: HTTP/2 keepalive needs both `interval` and `timeout`"),
                        format!("set `{name}`, e.g. `{name}: 30s`"),
                    );
                }
                c.duration(at(&path, name), value.as_ref(), Shortest::OneMillisecond);
            }
        }
    }
}

fn outlier_detection_settings(c: &mut Checks, path: &str, o: &OutlierDetection) {
    c.duration(
        at(path, "interval"),
        o.interval.as_ref(),
        Shortest::OneMillisecond,
    );
    c.duration(
        at(path, "baseEjectionTime"),
        o.base_ejection_time.as_ref(),
        Shortest::OneMillisecond,
    );
    c.int_in(
        at(path, "maxEjectionPercent"),
        o.max_ejection_percent.map(i64::from),
        0,
        100,
    );
    c.int_in(
        at(path, "minHealthPercent"),
        o.min_health_percent.map(i64::from),
        0,
        100,
    );
    for (i, code) in o
        .outlier_detection_http_error_codes
        .iter()
        .flatten()
        .enumerate()
    {
        c.int_in(
            item(&at(path, "outlierDetectionHttpErrorCodes"), i),
            Some(i64::from(*code)),
            100,
            599,
        );
    }
}

fn client_tls(c: &mut Checks, path: &str, tls: &ClientTlsSettings) {
    let files = [
        ("clientCertificate", tls.client_certificate.is_some()),
        ("privateKey", tls.private_key.is_some()),
        ("caCertificates", tls.ca_certificates.is_some()),
    ];
    match tls.mode {
        Some(ClientTlsMode::IstioMutual) => c.must_be_absent(
            path,
            &[files.as_slice(), &[("credentialName", tls.credential_name.is_some())]].concat(),
            "ISTIO_MUTUAL uses the certificates Istio issues, so it takes no certificates of its own",
            "remove it, or use `mode: MUTUAL` to present your own certificates",
        ),
        _ if tls.credential_name.is_some() => c.must_be_absent(
            path,
            &files,
            "the certificates come from the secret in `credentialName`, so file paths cannot be given too",
            "remove it, or remove `credentialName`",
        ),
        Some(ClientTlsMode::Mutual) => {
            for (name, value) in [("clientCertificate", &tls.client_certificate), ("privateKey", &tls.private_key)] {
                c.required_text(
                    at(path, name),
                    value.as_ref(),
                    "mode MUTUAL presents a client certificate (or name a secret in `credentialName`)",
                );
            }
        }
        _ => {}
    }
}

fn gateway_spec(c: &mut Checks, path: &str, spec: &GatewaySpec) {
    let mut seen = BTreeMap::new();
    for (i, server) in spec.servers().iter().enumerate() {
        let path = item(&at(path, "servers"), i);
        if server.hosts.is_empty() {
            c.add(
                at(&path, "hosts"),
                "a server needs at least one host",
                "list the hosts it serves, e.g. `hosts: [\"*\"]` or `hosts: [prod/*.example.com]`",
            );
        }
        if let Some(name) = server.name.as_deref()
            && let Some(first) = seen.insert(name, i)
        {
            c.add(
                at(&path, "name"),
                format!("server name `{name}` is also `spec.servers[{first}]`'s"),
                "give every server its own name, or none",
            );
        }
        if let Some(tls) = &server.tls {
            server_tls(c, &at(&path, "tls"), tls);
        }
    }
}

fn server_tls(c: &mut Checks, path: &str, tls: &ServerTlsSettings) {
    let has_credential_names = tls.credential_names.is_some();
    let has_tls_certificates = tls.tls_certificates.is_some();
    let sources = [
        ("credentialName", tls.credential_name.is_some()),
        ("credentialNames", has_credential_names),
        (
            "serverCertificate/privateKey",
            tls.server_certificate.is_some() && tls.private_key.is_some(),
        ),
        ("tlsCertificates", has_tls_certificates),
    ];
    c.at_most_one(
        path,
        "a server takes its certificates from one source",
        &sources,
    );
    for (name, list_len) in [
        (
            "credentialNames",
            tls.credential_names.as_ref().map(Vec::len),
        ),
        (
            "tlsCertificates",
            tls.tls_certificates.as_ref().map(Vec::len),
        ),
    ] {
        if let Some(n) = list_len.filter(|n| !(1..=2).contains(n)) {
            c.add(
                at(path, name),
                format!("has {n} entries"),
                "give one certificate, or two (an RSA and an ECDSA one)",
            );
        }
    }
    let from_secret = tls.credential_name.is_some() || has_credential_names;
    match tls.mode {
        Some(ServerTlsMode::IstioMutual) => c.must_be_absent(
            path,
            &[
                ("serverCertificate", tls.server_certificate.is_some()),
                ("privateKey", tls.private_key.is_some()),
                ("caCertificates", tls.ca_certificates.is_some()),
                ("credentialName", tls.credential_name.is_some()),
                ("credentialNames", has_credential_names),
                ("tlsCertificates", has_tls_certificates),
            ],
            "ISTIO_MUTUAL uses the certificates Istio issues, so it takes no certificates of its own",
            "remove it, or use `mode: MUTUAL` to present your own certificates",
        ),
        Some(mode @ (ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual))
            if !from_secret =>
        {
            let why = "a terminating server needs a certificate and its key (or a secret in \
                       `credentialName`)";
            match &tls.tls_certificates {
                Some(certificates) => {
                    for (i, cert) in certificates.iter().enumerate() {
                        let path = item(&at(path, "tlsCertificates"), i);
                        c.required_text(at(&path, "serverCertificate"), cert.server_certificate.as_ref(), why);
                        c.required_text(at(&path, "privateKey"), cert.private_key.as_ref(), why);
                    }
                }
                None => {
                    c.required_text(at(path, "serverCertificate"), tls.server_certificate.as_ref(), why);
                    c.required_text(at(path, "privateKey"), tls.private_key.as_ref(), why);
                }
            }
            if mode != ServerTlsMode::Simple && tls.ca_cert_credential_name.is_none() {
                c.required_text(
                    at(path, "caCertificates"),
                    tls.ca_certificates.as_ref(),
                    "mutual TLS verifies client certificates against a CA bundle (or a secret in \
                     `caCertCredentialName`)",
                );
            }
        }
        _ => {}
    }
}
