use std::collections::BTreeSet;

use rstest::rstest;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::explain::{self, Card, MESSAGES, Position, Step};
use super::*;

const VIRTUAL_SERVICES: &str = include_str!("fixtures/virtual-services.yaml");
const DESTINATION_RULES: &str = include_str!("fixtures/destination-rules.yaml");
const GATEWAYS: &str = include_str!("fixtures/gateways.yaml");

/// Every document of every fixture file, read as the manifests loader reads YAML.
fn fixture_documents() -> Vec<Value> {
    [VIRTUAL_SERVICES, DESTINATION_RULES, GATEWAYS]
        .iter()
        .flat_map(|text| serde_saphyr::from_multiple::<Value>(text).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap()
}

/// Parses `doc` as its kind and writes it back.
fn round_trip(doc: &Value) -> Result<Value, Vec<Problem>> {
    fn back<T: Serialize>(parsed: T) -> Value {
        serde_json::to_value(parsed).unwrap()
    }
    match kind_of(doc) {
        "VirtualService" => parse_virtual_service(doc).map(back),
        "DestinationRule" => parse_destination_rule(doc).map(back),
        "Gateway" => parse_gateway(doc).map(back),
        other => panic!("no fixture kind {other}"),
    }
}

fn problems(doc: &Value) -> Vec<Problem> {
    round_trip(doc).expect_err("the document should be refused")
}

/// A `kind` document whose spec is `spec_yaml`.
fn document(kind: &str, spec_yaml: &str) -> Value {
    let spec: Value = serde_saphyr::from_str(spec_yaml).unwrap();
    json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "r", "namespace": "test"},
        "spec": spec,
    })
}

#[test]
fn every_fixture_document_round_trips_exactly() {
    let docs = fixture_documents();
    assert_eq!(docs.len(), 7);
    for doc in &docs {
        let name = &doc["metadata"]["name"];
        let back = round_trip(doc).unwrap_or_else(|p| panic!("{name} refused: {p:#?}"));
        assert_eq!(&back, doc, "{name} changed in the round trip");
    }
}

#[test]
fn numbers_come_back_as_the_kind_of_number_they_were() {
    let docs = fixture_documents();
    let vs = round_trip(&docs[0]).unwrap();
    let http = &vs["spec"]["http"][0];
    assert!(http["route"][1]["weight"].is_u64(), "explicit zero weight");
    assert_eq!(http["route"][1]["weight"], 0);
    assert!(http["mirrorPercentage"]["value"].is_f64());
    let ratings = round_trip(&docs[1]).unwrap();
    let percentage = &ratings["spec"]["http"][0]["fault"]["abort"]["percentage"]["value"];
    assert!(
        percentage.is_u64(),
        "`value: 10` stays an integer: {percentage}"
    );
    let dr = round_trip(&docs[4]).unwrap();
    let warmup = &dr["spec"]["trafficPolicy"]["loadBalancer"]["warmup"];
    assert!(warmup["minimumPercent"].is_u64() && warmup["aggression"].is_f64());
    assert!(
        vs["metadata"]["generation"].is_u64(),
        "untyped metadata keeps its integers"
    );
}

/// Walks a fixture along the hand-written table, recording every (message, field) it meets and
/// refusing any key the table does not know.
fn walk(
    value: &Value,
    at: Position,
    path: &str,
    seen: &mut BTreeSet<(&'static str, &'static str)>,
    messages: &mut Vec<(String, &'static str)>,
) {
    match (at, value) {
        (Position::Message(m), Value::Object(object)) => {
            messages.push((path.to_string(), m.name));
            for (key, child) in object {
                match m.field(key) {
                    Some(f) => {
                        seen.insert((m.name, f.json));
                    }
                    None if m.lenient => continue,
                    None => panic!("{path}/{key} is not a field of {} in the table", m.name),
                }
                let next = explain::step(at, Step::Key(key)).unwrap();
                walk(
                    child,
                    next,
                    &format!("{path}/{}", pointer_escape(key)),
                    seen,
                    messages,
                );
            }
        }
        (Position::Value(_, Card::List), Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                let next = explain::step(at, Step::Index).unwrap();
                walk(child, next, &format!("{path}/{i}"), seen, messages);
            }
        }
        (Position::Value(_, Card::Map), Value::Object(object)) => {
            for (key, child) in object {
                let next = explain::step(at, Step::Key(key)).unwrap();
                walk(
                    child,
                    next,
                    &format!("{path}/{}", pointer_escape(key)),
                    seen,
                    messages,
                );
            }
        }
        (Position::Value(_, Card::One), _) => {}
        (at, value) => panic!("{path}: {value} does not fit {at:?}"),
    }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn root(kind: &str) -> Position {
    Position::Message(explain::message_schema(kind).unwrap())
}

#[test]
fn the_fixtures_use_every_field_of_every_message() {
    let mut seen = BTreeSet::new();
    for doc in fixture_documents() {
        walk(&doc, root(kind_of(&doc)), "", &mut seen, &mut Vec::new());
    }
    let missing: Vec<String> = MESSAGES
        .iter()
        .flat_map(|m| m.fields.iter().map(move |f| (m.name, f.json)))
        .filter(|field| !seen.contains(field))
        .map(|(m, f)| format!("{m}.{f}"))
        .collect();
    assert!(missing.is_empty(), "no fixture uses: {missing:#?}");
}

/// The names serde lists after "expected" in an unknown-field error.
fn expected_fields(message: &str) -> BTreeSet<String> {
    let Some((_, expected)) = message.split_once("expected ") else {
        return BTreeSet::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_model_has_exactly_the_fields_of_the_table_in_every_message() {
    // An unknown key in each message of the fixtures makes serde list that struct's fields.
    for doc in fixture_documents() {
        let mut messages = Vec::new();
        walk(
            &doc,
            root(kind_of(&doc)),
            "",
            &mut BTreeSet::new(),
            &mut messages,
        );
        for (pointer, name) in messages {
            let schema = explain::message_schema(name).unwrap();
            if schema.lenient {
                continue;
            }
            let mut probe = doc.clone();
            probe
                .pointer_mut(&pointer)
                .and_then(Value::as_object_mut)
                .unwrap()
                .insert("zzNotAField".into(), json!(1));
            let message = match kind_of(&doc) {
                "VirtualService" => serde_json::from_value::<VirtualService>(probe).map(drop),
                "DestinationRule" => serde_json::from_value::<DestinationRule>(probe).map(drop),
                _ => serde_json::from_value::<Gateway>(probe).map(drop),
            }
            .unwrap_err()
            .to_string();
            let table: BTreeSet<String> =
                schema.fields.iter().map(|f| f.json.to_string()).collect();
            assert_eq!(
                expected_fields(&message),
                table,
                "{name} at {pointer}: {message}"
            );
        }
    }
}

fn enum_matches_table<T: DeserializeOwned + Serialize>(table: &[&str]) {
    for value in table {
        let parsed: T = serde_json::from_value(json!(value)).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), json!(value));
    }
    let refusal = serde_json::from_value::<T>(json!("NOT_A_VALUE"))
        .err()
        .unwrap()
        .to_string();
    let table: BTreeSet<String> = table.iter().map(|v| v.to_string()).collect();
    assert_eq!(expected_fields(&refusal), table, "{refusal}");
}

#[test]
fn every_enum_has_exactly_the_values_of_its_proto() {
    enum_matches_table::<RedirectPortSelection>(explain::REDIRECT_PORT_SELECTION);
    enum_matches_table::<UnmatchedPreflights>(explain::UNMATCHED_PREFLIGHTS);
    enum_matches_table::<ProxyProtocolVersion>(explain::PROXY_PROTOCOL_VERSION);
    enum_matches_table::<SimpleLb>(explain::SIMPLE_LB);
    enum_matches_table::<H2UpgradePolicy>(explain::H2_UPGRADE_POLICY);
    enum_matches_table::<ClientTlsMode>(explain::CLIENT_TLS_MODE);
    enum_matches_table::<ServerTlsMode>(explain::SERVER_TLS_MODE);
    enum_matches_table::<TlsProtocol>(explain::TLS_PROTOCOL);
}

const ROUTE: &str = "hosts: [podinfo]\nhttp:\n- route:\n  - destination: {host: podinfo}\n";

#[rstest]
#[case::misspelled_field(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: podinfo, subst: canary}\n",
    "spec.http[0].route[0].destination.subst",
    "unknown field `subst`",
    "did you mean `subset`?"
)]
#[case::misspelling_first_in_its_object(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: podinfo, abset: canary}\n",
    "spec.http[0].route[0].destination.abset",
    "unknown field `abset`",
    "did you mean `subset`?"
)]
#[case::misspelled_case(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: podinfo}\n    Weight: 10\n",
    "spec.http[0].route[0].Weight",
    "unknown field `Weight`",
    "did you mean `weight`?"
)]
#[case::snake_case_field(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: podinfo}\n  retries: {attempts: 2, per_try_timeout: 1s}\n",
    "spec.http[0].retries.per_try_timeout",
    "unknown field `per_try_timeout`",
    "rename `per_try_timeout` to `perTryTimeout`"
)]
#[case::tutorials_destination_name(
    "VirtualService",
    "http:\n- route:\n  - destination: {name: helloworld, subset: v1}\n    weight: 90\n",
    "spec.http[0].route[0].destination.name",
    "unknown field `name`",
    "rename `name` to `host` (Istio renamed it before 0.8)"
)]
#[case::mirror_name(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: a}\n  mirror: {name: b}\n",
    "spec.http[0].mirror.name",
    "unknown field `name`",
    "rename `name` to `host`"
)]
#[case::not_a_field_anywhere(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: podinfo}\n  canaryAnalysis: {interval: 1m}\n",
    "spec.http[0].canaryAnalysis",
    "unknown field `canaryAnalysis`",
    "not a field of HTTPRoute in networking.istio.io/v1 at Istio 1.31"
)]
#[case::removed_abort_percent(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: a}\n  fault: {abort: {percent: 10, httpStatus: 503}}\n",
    "spec.http[0].fault.abort.percent",
    "unknown field `percent`",
    "`percentage: {value: N}`"
)]
#[case::removed_append_headers(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: a}\n  appendHeaders: {x-a: b}\n",
    "spec.http[0].appendHeaders",
    "unknown field `appendHeaders`",
    "`headers.request.add`"
)]
#[case::removed_port_name(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: a, port: {name: http}}\n",
    "spec.http[0].route[0].destination.port.name",
    "unknown field `name`",
    "select the port by `number`"
)]
#[case::misspelled_in_a_header_match(
    "VirtualService",
    "http:\n- match:\n  - headers: {x-canary: {exatc: insider}}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].match[0].headers.x-canary.exatc",
    "unknown field `exatc`",
    "did you mean `exact`?"
)]
#[case::top_level_typo(
    "DestinationRule",
    "host: a\nsubset:\n- name: x\n",
    "spec.subset",
    "unknown field `subset`",
    "did you mean `subsets`?"
)]
#[case::gateway_field_of_another_message(
    "Gateway",
    "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*']\n  credentialName: c\n",
    "spec.servers[0].credentialName",
    "unknown field `credentialName`",
    "not a field of Server"
)]
#[case::wrong_type_weight(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: podinfo}\n    weight: fifty\n",
    "spec.http[0].route[0].weight",
    "invalid type: string \"fifty\"",
    "make `spec.http[0].route[0].weight` a whole number (int32)"
)]
#[case::wrong_type_duration(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: podinfo}\n  timeout: 5\n",
    "spec.http[0].timeout",
    "invalid type: integer `5`",
    "a duration string such as \"1.5s\""
)]
#[case::wrong_type_list(
    "VirtualService",
    "hosts: podinfo\n",
    "spec.hosts",
    "invalid type: string",
    "a list (each item a string)"
)]
#[case::wrong_type_port(
    "Gateway",
    "servers:\n- port: {number: -1, name: http, protocol: HTTP}\n  hosts: ['*']\n",
    "spec.servers[0].port.number",
    "invalid value: integer `-1`",
    "a whole number from 0 to 4294967295"
)]
#[case::enum_in_lower_case(
    "DestinationRule",
    "host: a\ntrafficPolicy: {loadBalancer: {simple: round_robin}}\n",
    "spec.trafficPolicy.loadBalancer.simple",
    "unknown variant `round_robin`",
    "write `ROUND_ROBIN`"
)]
#[case::enum_unknown(
    "Gateway",
    "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: STRICT}\n",
    "spec.servers[0].tls.mode",
    "unknown variant `STRICT`",
    "use one of `PASSTHROUGH`, `SIMPLE`"
)]
#[case::missing_destination_host(
    "VirtualService",
    "http:\n- route:\n  - destination: {subset: v1}\n",
    "spec.http[0].route[0].destination.host",
    "missing field `host`",
    "add `host` (a string): Destination requires it"
)]
#[case::missing_port_protocol(
    "Gateway",
    "servers:\n- port: {number: 80, name: http}\n  hosts: ['*']\n",
    "spec.servers[0].port.protocol",
    "missing field `protocol`",
    "add `protocol`"
)]
#[case::missing_spec_host(
    "DestinationRule",
    "subsets: [{name: v1}]\n",
    "spec.host",
    "missing field `host`",
    "DestinationRule.spec requires it"
)]
#[case::wrong_type_message(
    "VirtualService",
    "http:\n- route:\n  - destination: podinfo\n",
    "spec.http[0].route[0].destination",
    "invalid type: string \"podinfo\"",
    "make `spec.http[0].route[0].destination` a Destination object"
)]
fn refusals_name_the_field_and_a_fix(
    #[case] kind: &str,
    #[case] spec: &str,
    #[case] field: &str,
    #[case] problem: &str,
    #[case] fix: &str,
) {
    let found = problems(&document(kind, spec));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, field, "{found:#?}");
    assert!(found[0].problem.contains(problem), "{found:#?}");
    assert!(found[0].fix.contains(fix), "{found:#?}");
}

#[rstest]
#[case::two_of_exact_prefix_regex(
    "VirtualService",
    "http:\n- match:\n  - uri: {prefix: /}\n  - uri: {exact: /a, prefix: /b}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].match[1].uri",
    "sets `exact` and `prefix` together",
    "keep only one of `exact`, `prefix`, `regex`"
)]
#[case::header_match_oneof(
    "VirtualService",
    "http:\n- match:\n  - headers: {x-canary: {exact: a, regex: b}}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].match[0].headers.x-canary",
    "`exact` and `regex`",
    "keep only one of"
)]
#[case::route_and_redirect(
    "VirtualService",
    "http:\n- redirect: {uri: /b}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0]",
    "sets `route` and `redirect` together",
    "keep only one of `route`, `redirect`, `directResponse`, `delegate`"
)]
#[case::no_action(
    "VirtualService",
    "http:\n- name: nothing\n  timeout: 1s\n",
    "spec.http[0]",
    "no action",
    "add a `route`"
)]
#[case::fixed_and_exponential_delay(
    "VirtualService",
    "http:\n- fault: {delay: {fixedDelay: 1s, exponentialDelay: 2s}}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].fault.delay",
    "`fixedDelay` and `exponentialDelay`",
    "keep only one of"
)]
#[case::abort_status_and_grpc(
    "VirtualService",
    "http:\n- fault: {abort: {httpStatus: 503, grpcStatus: UNAVAILABLE}}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].fault.abort",
    "`httpStatus` and `grpcStatus`",
    "keep only one of `httpStatus`, `grpcStatus`, `http2Error`"
)]
#[case::empty_fault(
    "VirtualService",
    "http:\n- fault: {}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].fault",
    "needs a `delay`, an `abort`, or both",
    "add `delay:"
)]
#[case::rewrite_uri_and_regex(
    "VirtualService",
    "http:\n- rewrite: {uri: /a, uriRegexRewrite: {match: ^/x, rewrite: /z}}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].rewrite",
    "`uri` and `uriRegexRewrite`",
    "keep only one of"
)]
#[case::redirect_port_and_derive_port(
    "VirtualService",
    "http:\n- redirect: {uri: /b, port: 8080, derivePort: FROM_REQUEST_PORT}\n",
    "spec.http[0].redirect",
    "`port` and `derivePort`",
    "keep only one of"
)]
#[case::prefix_rewrite_on_exact_match(
    "VirtualService",
    "http:\n- match:\n  - uri: {exact: /foo}\n  redirect: {prefixRewrite: /bar}\n",
    "spec.http[0].match[0].uri",
    "not a prefix match",
    "`prefix:`"
)]
#[case::rewrite_with_redirect(
    "VirtualService",
    "http:\n- redirect: {uri: /b}\n  rewrite: {uri: /c}\n",
    "spec.http[0].rewrite",
    "has no effect",
    "forward the request with `route`"
)]
#[case::body_string_and_bytes(
    "VirtualService",
    "http:\n- directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n",
    "spec.http[0].directResponse.body",
    "`string` and `bytes`",
    "keep only one of"
)]
#[case::body_not_base64(
    "VirtualService",
    "http:\n- directResponse: {status: 200, body: {bytes: 'not base64!'}}\n",
    "spec.http[0].directResponse.body.bytes",
    "not base64",
    "encode the body in base64"
)]
#[case::both_mirror_percent_names(
    "VirtualService",
    "http:\n- mirror: {host: b}\n  mirrorPercent: 10\n  mirror_percent: 20\n  route:\n  - destination: {host: a}\n",
    "spec.http[0]",
    "`mirrorPercent` and `mirror_percent`",
    "keep only one of"
)]
#[case::percentage_above_100(
    "VirtualService",
    "http:\n- mirror: {host: b}\n  mirrorPercentage: {value: 150.5}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].mirrorPercentage.value",
    "150.5 is outside [0, 100]",
    "from 0 to 100"
)]
#[case::not_a_duration(
    "VirtualService",
    "http:\n- timeout: 5 seconds\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].timeout",
    "`5 seconds` is not a duration",
    "`1.5s`"
)]
#[case::duration_below_one_millisecond(
    "VirtualService",
    "http:\n- retries: {attempts: 2, perTryTimeout: 500us}\n  route:\n  - destination: {host: a}\n",
    "spec.http[0].retries.perTryTimeout",
    "shorter than 1ms",
    "at least `1ms`"
)]
#[case::negative_weight(
    "VirtualService",
    "http:\n- route:\n  - destination: {host: a}\n    weight: -5\n",
    "spec.http[0].route[0].weight",
    "negative",
    "0 or more"
)]
#[case::simple_and_consistent_hash(
    "DestinationRule",
    "host: a\ntrafficPolicy:\n  loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}\n",
    "spec.trafficPolicy.loadBalancer",
    "`simple` and `consistentHash`",
    "keep only one of"
)]
#[case::two_hash_keys(
    "DestinationRule",
    "host: a\nsubsets:\n- name: v1\n  trafficPolicy:\n    loadBalancer: {consistentHash: {httpHeaderName: x-user, useSourceIp: true}}\n",
    "spec.subsets[0].trafficPolicy.loadBalancer.consistentHash",
    "`httpHeaderName` and `useSourceIp`",
    "keep only one of `httpHeaderName`, `httpCookie`, `useSourceIp`, `httpQueryParameterName`"
)]
#[case::ring_hash_and_maglev(
    "DestinationRule",
    "host: a\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}\n    loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {}, maglev: {}}}\n",
    "spec.trafficPolicy.portLevelSettings[0].loadBalancer.consistentHash",
    "`ringHash` and `maglev`",
    "keep only one of"
)]
#[case::warmup_twice(
    "DestinationRule",
    "host: a\ntrafficPolicy:\n  loadBalancer: {warmupDurationSecs: 10s, warmup: {duration: 10s}}\n",
    "spec.trafficPolicy.loadBalancer",
    "`warmupDurationSecs` and `warmup`",
    "keep only one of"
)]
#[case::distribute_not_100(
    "DestinationRule",
    "host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute: [{from: 'a/*', to: {'a/*': 70, 'b/*': 20}}]\n",
    "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
    "add up to 90",
    "add up to 100"
)]
#[case::keepalive_without_timeout(
    "DestinationRule",
    "host: a\ntrafficPolicy:\n  connectionPool: {http: {http2KeepAlive: {interval: 30s}}}\n",
    "spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout",
    "`timeout` is missing",
    "set `timeout`"
)]
#[case::duplicate_subsets(
    "DestinationRule",
    "host: a\nsubsets: [{name: v1}, {name: v1}]\n",
    "spec.subsets[1].name",
    "also `spec.subsets[0]`",
    "its own name"
)]
#[case::mutual_without_certificates(
    "DestinationRule",
    "host: a\ntrafficPolicy:\n  tls: {mode: MUTUAL, privateKey: /k.pem}\n",
    "spec.trafficPolicy.tls.clientCertificate",
    "mode MUTUAL presents a client certificate",
    "set `spec.trafficPolicy.tls.clientCertificate`"
)]
#[case::istio_mutual_with_certificates(
    "DestinationRule",
    "host: a\ntrafficPolicy:\n  tls: {mode: ISTIO_MUTUAL, caCertificates: /ca.pem}\n",
    "spec.trafficPolicy.tls.caCertificates",
    "ISTIO_MUTUAL uses the certificates Istio issues",
    "remove it"
)]
#[case::wildcard_workload_selector(
    "DestinationRule",
    "host: a\nworkloadSelector: {matchLabels: {app: '*'}}\n",
    "spec.workloadSelector.matchLabels.app",
    "wildcards are not allowed",
    "exact label"
)]
#[case::two_certificate_sources(
    "Gateway",
    "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: SIMPLE, credentialName: a, credentialNames: [b]}\n",
    "spec.servers[0].tls",
    "`credentialName` and `credentialNames`",
    "keep only one of"
)]
#[case::simple_without_key(
    "Gateway",
    "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: SIMPLE, serverCertificate: /c.pem}\n",
    "spec.servers[0].tls.privateKey",
    "needs a certificate and its key",
    "set `spec.servers[0].tls.privateKey`"
)]
#[case::three_credential_names(
    "Gateway",
    "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: SIMPLE, credentialNames: [a, b, c]}\n",
    "spec.servers[0].tls.credentialNames",
    "has 3 entries",
    "one certificate, or two"
)]
#[case::server_without_hosts(
    "Gateway",
    "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: []\n",
    "spec.servers[0].hosts",
    "at least one host",
    "list the hosts"
)]
fn broken_rules_name_the_field_and_a_fix(
    #[case] kind: &str,
    #[case] spec: &str,
    #[case] field: &str,
    #[case] problem: &str,
    #[case] fix: &str,
) {
    let found = problems(&document(kind, spec));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, field, "{found:#?}");
    assert!(found[0].problem.contains(problem), "{found:#?}");
    assert!(found[0].fix.contains(fix), "{found:#?}");
}

#[test]
fn every_broken_rule_is_reported_at_once() {
    let doc = document(
        "VirtualService",
        "http:\n- match:\n  - uri: {exact: /a, regex: b}\n  timeout: 1x\n  route:\n  - destination: {host: ''}\n",
    );
    let fields: Vec<String> = problems(&doc).into_iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [
            "spec.http[0].match[0].uri",
            "spec.http[0].route[0].destination.host",
            "spec.http[0].timeout",
        ]
    );
}

#[test]
fn a_document_without_spec_or_not_an_object_is_explained() {
    let mut doc = document("Gateway", "servers: []\n");
    doc.as_object_mut().unwrap().remove("spec");
    let found = parse_gateway(&doc).unwrap_err();
    assert_eq!(found[0].field, "spec");
    assert_eq!(
        found[0].fix,
        "add `spec` (a Gateway.spec object): Gateway requires it"
    );
    let found = parse_gateway(&json!("just some text")).unwrap_err();
    assert_eq!(found[0].field, "");
    assert!(found[0].fix.contains("give a Gateway object"), "{found:#?}");
}

#[rstest]
#[case::other_kind("DestinationRule", API_VERSION, "kind", "use `kind: VirtualService`")]
#[case::unserved_version(
    "VirtualService",
    "networking.istio.io/v1alpha1",
    "apiVersion",
    "use `apiVersion: networking.istio.io/v1`"
)]
fn the_kind_and_version_are_checked_first(
    #[case] kind: &str,
    #[case] api_version: &str,
    #[case] field: &str,
    #[case] fix: &str,
) {
    let mut doc = document(kind, "host: a\n");
    doc["apiVersion"] = json!(api_version);
    let found = parse_virtual_service(&doc).unwrap_err();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, field);
    assert!(found[0].fix.contains(fix), "{found:#?}");
}

#[test]
fn every_served_version_is_accepted() {
    for version in SERVED_VERSIONS {
        let mut doc = document("VirtualService", ROUTE);
        doc["apiVersion"] = json!(version);
        parse_virtual_service(&doc).unwrap();
    }
}

#[test]
fn an_explicit_null_is_kept_in_nullable_wrapper_fields_only() {
    let doc = document(
        "VirtualService",
        "hosts: [a]\nhttp:\n- route:\n  - destination: {host: a, subset: null}\n  corsPolicy: {allowCredentials: null}\n",
    );
    let back = serde_json::to_value(parse_virtual_service(&doc).unwrap()).unwrap();
    let http = &back["spec"]["http"][0];
    assert_eq!(http["corsPolicy"], json!({"allowCredentials": null}));
    assert_eq!(http["route"][0]["destination"], json!({"host": "a"}));
}

#[test]
fn accessors_read_absent_lists_and_maps_as_empty() {
    let vs = parse_virtual_service(&document("VirtualService", ROUTE)).unwrap();
    let route = &vs.spec.http()[0];
    assert!(route.matches().is_empty() && route.mirrors().is_empty());
    assert!(vs.spec.gateways().is_empty() && vs.spec.tcp().is_empty());
    assert_eq!(route.route()[0].destination.host, "podinfo");

    let docs = fixture_documents();
    let podinfo = parse_virtual_service(&docs[0]).unwrap();
    let insiders = &podinfo.spec.http()[0];
    let (name, header) = insiders.matches()[0].headers().next().unwrap();
    assert_eq!(
        (name, header.match_type()),
        ("x-canary", Some(MatchType::Exact("insider")))
    );
    assert_eq!(podinfo.metadata.label("app"), Some("podinfo"));
    let ratings = parse_virtual_service(&docs[1]).unwrap();
    assert_eq!(ratings.spec.http()[2].deprecated_mirror_percent(), Some(25));
    assert_eq!(ratings.spec.http()[3].deprecated_mirror_percent(), Some(10));

    let dr = parse_destination_rule(&docs[4]).unwrap();
    assert_eq!(dr.spec.subset("canary").unwrap().labels().count(), 1);
    let budget = dr
        .spec
        .traffic_policy
        .as_ref()
        .unwrap()
        .retry_budget
        .as_ref()
        .unwrap();
    assert_eq!(budget.percent(), Some(20.0));
}

#[rstest]
#[case("1.5s", Some(1_500_000_000))]
#[case("100ms", Some(100_000_000))]
#[case("1h30m", Some(5_400_000_000_000))]
#[case("2.5us", Some(2_500))]
#[case("1µs", Some(1_000))]
#[case("-1s", Some(-1_000_000_000))]
#[case("0", Some(0))]
#[case("0s", Some(0))]
#[case(".5s", Some(500_000_000))]
#[case("", None)]
#[case("5", None)]
#[case("s", None)]
#[case("1x", None)]
#[case("1h 30m", None)]
#[case("1.5", None)]
fn durations_follow_go_syntax(#[case] text: &str, #[case] nanos: Option<i128>) {
    assert_eq!(Duration(text.to_string()).nanos(), nanos);
}

#[test]
fn durations_convert_to_std() {
    let d = Duration("1.5s".into());
    assert_eq!(d.to_std(), Some(std::time::Duration::from_millis(1500)));
    assert_eq!(Duration("-1s".into()).to_std(), None);
}

#[rstest]
#[case("podinfo", "test", "podinfo.test.svc.cluster.local")]
#[case(
    "podinfo.test.svc.cluster.local",
    "x",
    "podinfo.test.svc.cluster.local"
)]
#[case("podinfo.example.com", "test", "podinfo.example.com")]
#[case("*", "test", "*")]
fn qualifies_short_hosts(#[case] host: &str, #[case] ns: &str, #[case] want: &str) {
    assert_eq!(qualify_host(host, ns), want);
}

#[test]
fn problems_display_field_problem_and_fix() {
    let p = Problem::new("spec.hosts", "bad", "mend it");
    assert_eq!(p.to_string(), "field `spec.hosts`: bad\n  fix: mend it");
}
