//! Every field of the three Istio resources survives from the manifests to what a run applies:
//! the staged VirtualService differs from the manifest's only by the split's weights and the
//! harness's two response headers, and DestinationRules and Gateways are applied as written.
//! The resources are the `istio` module's fixtures, which together use every field of
//! virtual_service.proto, destination_rule.proto and gateway.proto.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::{Routing, STAGE_HEADER, SUBSET_HEADER};
use crate::manifests::Manifests;
use crate::scenario::{Scenario, Weights};

const VIRTUAL_SERVICES: &str = include_str!("../istio/fixtures/virtual-services.yaml");
const DESTINATION_RULES: &str = include_str!("../istio/fixtures/destination-rules.yaml");
const GATEWAYS: &str = include_str!("../istio/fixtures/gateways.yaml");

fn documents(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("a fixture document"))
        .collect()
}

/// One VirtualService holding every route of the fixtures, bound like the tutorial's, with the
/// tutorial's split (carrying fields of its own) appended as `canary-split`.
fn every_field_virtual_service() -> Value {
    let docs = documents(VIRTUAL_SERVICES);
    let mut vs = docs[0].clone();
    vs["spec"]["hosts"] = json!(["podinfo.test.svc.cluster.local", "podinfo.example.com"]);
    vs["spec"]["gateways"] = json!(["podinfo-gateway", "mesh"]);
    let mut http = Vec::new();
    for doc in &docs {
        http.extend(
            doc["spec"]["http"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    http.push(json!({
        "name": "canary-split",
        "headers": {"response": {"set": {"x-team": "payments"}}},
        "timeout": "3s",
        "route": [
            {"destination": {"host": "podinfo.test.svc.cluster.local", "subset": "ga", "port": {"number": 9898}},
             "weight": 100,
             "headers": {"request": {"add": {"x-from": "split"}}}},
            {"destination": {"host": "podinfo.test.svc.cluster.local", "subset": "canary", "port": {"number": 9898}},
             "weight": 0},
        ],
    }));
    vs["spec"]["http"] = json!(http);
    vs["spec"]["tls"] = docs[3]["spec"]["tls"].clone();
    vs["spec"]["tcp"] = docs[3]["spec"]["tcp"].clone();
    vs["status"] = docs[3]["status"].clone();
    vs
}

/// The fixtures' first DestinationRule with its subsets renamed to the tutorial's and selecting
/// the tutorial's pods; every other field as the fixture has it.
fn every_field_destination_rule() -> Value {
    let mut dr = documents(DESTINATION_RULES)[0].clone();
    let subsets = dr["spec"]["subsets"].as_array_mut().unwrap();
    subsets[0]["name"] = json!("ga");
    subsets[0]["labels"] = json!({"version": "ga"});
    subsets[1]["labels"] = json!({"version": "canary"});
    dr
}

/// The tutorial's manifests with the every-field resources in place of its routing.
fn write_manifests(dir: &Path) -> Vec<Value> {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    for file in [
        "namespace.yaml",
        "podinfo-ga.yaml",
        "podinfo-canary.yaml",
        "service.yaml",
        "gateway.yaml",
    ] {
        std::fs::copy(project.join(file), dir.join(file)).unwrap();
    }
    let mut extra = vec![
        every_field_virtual_service(),
        every_field_destination_rule(),
    ];
    extra.extend(documents(DESTINATION_RULES).into_iter().skip(1));
    extra.extend(documents(GATEWAYS));
    for (i, doc) in extra.iter().enumerate() {
        let text = serde_json::to_string_pretty(doc).unwrap();
        std::fs::write(dir.join(format!("every-field-{i}.yaml")), text).unwrap();
    }
    extra
}

fn routing(dir: &Path) -> Routing {
    let scenario = Scenario::parse(
        &dir.join("scenario.yaml"),
        "name: every-field\nmanifests: .\nvirtual_service: podinfo\nroute: canary-split\n\
         baseline: ga\ncanary: canary\nstages:\n  - name: half\n    weights: { ga: 50, canary: 50 }\n",
    )
    .unwrap();
    let manifests = Manifests::load_all(&scenario.manifests).unwrap();
    Routing::resolve(&scenario, manifests).unwrap()
}

/// Every leaf of a JSON document by its JSON pointer; empty objects and arrays are leaves.
fn leaves(value: &Value, at: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(list) if !list.is_empty() => {
            for (i, v) in list.iter().enumerate() {
                leaves(v, format!("{at}/{i}"), out);
            }
        }
        other => {
            out.insert(at, other.clone());
        }
    }
}

fn flat(value: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    leaves(value, String::new(), &mut out);
    out
}

#[test]
fn every_field_survives_to_the_staged_virtual_service() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_manifests(dir.path());
    let routing = routing(dir.path());
    let split = routing.route_index;
    let weights: Weights = [("ga".to_string(), 40), ("canary".to_string(), 60)].into();
    let staged = routing.staged(&weights, "2.1");

    let before = flat(&written[0]);
    let after = flat(&staged.body);
    let routes = written[0]["spec"]["http"].as_array().unwrap().len();
    // What the harness may change: the split's two weights. What it may add: its stage header
    // on every route, its subset header on the split's destinations.
    let weight_of = |j: usize| format!("/spec/http/{split}/route/{j}/weight");
    let mut allowed_added: Vec<String> = (0..routes)
        .map(|i| format!("/spec/http/{i}/headers/response/set/{STAGE_HEADER}"))
        .collect();
    allowed_added.extend(
        (0..2)
            .map(|j| format!("/spec/http/{split}/route/{j}/headers/response/set/{SUBSET_HEADER}")),
    );
    for (path, value) in &before {
        match after.get(path) {
            Some(v) if path == &weight_of(0) => assert_eq!(v, &json!(40)),
            Some(v) if path == &weight_of(1) => assert_eq!(v, &json!(60)),
            Some(v) => assert_eq!(v, value, "{path} changed"),
            // An empty object the harness filled with its header.
            None => {
                assert_eq!(value, &json!({}), "{path} was lost");
                assert!(
                    allowed_added
                        .iter()
                        .any(|a| a.starts_with(&format!("{path}/"))),
                    "{path} was lost"
                );
            }
        }
    }
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    for path in &added {
        assert!(allowed_added.contains(path), "the harness added {path}");
    }
    assert_eq!(added.len(), allowed_added.len(), "{added:?}");
    assert_eq!(
        staged.body["spec"]["http"][split]["route"][1]["headers"]["response"]["set"][SUBSET_HEADER],
        "canary"
    );
    assert_eq!(
        staged.body["spec"]["http"][0]["headers"]["response"]["set"][STAGE_HEADER],
        "2.1"
    );
}

#[test]
fn destination_rules_and_gateways_are_applied_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_manifests(dir.path());
    let routing = routing(dir.path());
    let applied = crate::istio_mesh::apply::ordered(
        &routing
            .manifests
            .objects
            .iter()
            .map(|o| o.value.clone())
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .cloned()
    .collect::<Vec<_>>();
    for doc in &written[1..] {
        assert!(
            applied.contains(doc),
            "{} {} is applied unchanged",
            doc["kind"],
            doc["metadata"]["name"]
        );
    }
    assert_eq!(routing.manifests.destination_rules.len(), 2);
    assert_eq!(routing.manifests.gateways.len(), 2);
}

#[test]
fn a_misspelled_field_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = write_manifests(dir.path());
    let vs = &mut written[0];
    let insiders = vs["spec"]["http"][0].as_object_mut().unwrap();
    let retries = insiders.remove("retries").unwrap();
    insiders.insert("retry".into(), retries);
    std::fs::write(
        dir.path().join("every-field-0.yaml"),
        serde_json::to_string_pretty(vs).unwrap(),
    )
    .unwrap();
    let errors = Manifests::load(dir.path()).unwrap_err().to_string();
    assert!(errors.contains("spec.http[0].retry"), "{errors}");
    assert!(
        errors.contains("retries"),
        "the fix names the field: {errors}"
    );
}
