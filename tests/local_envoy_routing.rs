//! VirtualService routing beyond uri and header matches, proven through the real Envoy of the
//! local mesh: fault injection (abort and delay), matches on the method and on query
//! parameters, Envoy's acceptance of every shape the local mesh renders (mirrors and redirects
//! included), and the one line of
//! the plan that names what it does not render.

use std::path::{Path, PathBuf};

use canary_e2e::{e2e_local, read_report, root, scenario_in, xtask};
use harness::routing::EntryPoint;
use serde_json::{Value, json};

/// A destination of the tutorial's service, as a list item under a route's `route:`.
fn to(subset: &str) -> String {
    r#"
        - destination:
            host: podinfo.test.svc.cluster.local
            subset: SUBSET
            port:
              number: 9898
"#
    .trim_start_matches('\n')
    .replace("SUBSET", subset)
}

/// YAML with `{ga}` and `{canary}` standing for the destinations of the two subsets.
fn with_destinations(yaml: &str) -> String {
    yaml.trim_start_matches('\n')
        .replace("{ga}\n", &to("ga"))
        .replace("{canary}\n", &to("canary"))
}

/// The tutorial's VirtualService with `routes` (list items under `http:`) before its split,
/// which stays at ga 100 / canary 0.
fn virtual_service(routes: &str) -> String {
    let head = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: podinfo
  namespace: test
spec:
  hosts:
    - podinfo.test.svc.cluster.local
    - podinfo.example.com
  gateways:
    - podinfo-gateway
    - mesh
  http:
"#;
    let split = r#"
    - name: canary-split
      route:
{ga}
          weight: 100
{canary}
          weight: 0
"#;
    format!(
        "{}{}{}",
        head.trim_start_matches('\n'),
        with_destinations(routes),
        with_destinations(split)
    )
}

/// A scenario of one ga 100 / canary 0 stage with `classes`, next to a copy of the manifests
/// whose VirtualService is `vs`.
fn scenario_with(dir: &Path, classes: &str, vs: &str) -> PathBuf {
    let scenario = scenario_in(
        dir,
        &format!(
            "name: routing\nmanifests: manifests\nvirtual_service: podinfo\nroute: canary-split\n\
             baseline: ga\ncanary: canary\nclasses:\n{}\
             stages:\n  - name: all on ga\n    weights: {{ ga: 100, canary: 0 }}\n",
            classes.trim_start_matches('\n')
        ),
    );
    std::fs::write(dir.join("manifests/virtual-service.yaml"), vs).unwrap();
    scenario
}

const EVERYONE: &str = "  - name: everyone\n";

/// The entries of the first stage of a report by class, one per entry point.
fn by_class<'a>(report: &'a Value, class: &str) -> Vec<&'a Value> {
    let entries: Vec<&Value> = report["stages"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["class"] == class)
        .collect();
    assert_eq!(entries.len(), 2, "{class} on both entry points");
    entries
}

const FAULT_ROUTES: &str = r#"
    - name: aborted
      match:
        - headers:
            x-fault:
              exact: abort
      fault:
        abort:
          httpStatus: 503
          percentage:
            value: 100
      route:
{ga}
    - name: delayed
      match:
        - headers:
            x-fault:
              exact: delay
      fault:
        delay:
          fixedDelay: 200ms
          percentage:
            value: 100
      route:
{ga}
"#;

const FAULT_CLASSES: &str = r#"
  - name: aborted
    headers: { x-fault: abort }
    expect: { ga: 100 }
  - name: delayed
    headers: { x-fault: delay }
    expect: { ga: 100 }
  - name: everyone
"#;

/// istiod renders `fault` as the fault filter's per-route configuration; the local Envoy runs
/// the same: every request of the aborted class is answered 503 by Envoy (the run fails, naming
/// the failures), every request of the delayed class waits the fixed delay and still reaches
/// its subset, and everyone else is untouched.
#[test]
fn a_fault_abort_route_fails_its_class_with_503_and_a_delay_route_delays_it() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_with(dir.path(), FAULT_CLASSES, &virtual_service(FAULT_ROUTES));
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports).code(1);
    let report = read_report(&reports);
    assert_eq!(report["passed"], false);
    for e in by_class(&report, "aborted") {
        assert_eq!(e["passed"], false, "{e}");
        let requests = e["requests"].as_u64().unwrap();
        assert!(requests > 0);
        assert_eq!(
            e["errors"].as_u64().unwrap(),
            requests,
            "every request failed: {e}"
        );
        assert_eq!(e["error_kinds"], json!({"HTTP 503": requests}), "{e}");
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains("requests failed"), "{reason}");
        assert!(reason.contains("HTTP 503"), "{reason}");
    }
    for e in by_class(&report, "delayed") {
        assert_eq!(e["passed"], true, "{e}");
        assert_eq!(e["errors"], 0);
        assert_eq!(e["counts"]["canary"], 0);
        // The fixed delay is a floor on every answer's latency.
        let p50 = e["latency"]["ga"]["p50_ms"].as_f64().unwrap();
        assert!(p50 >= 200.0, "delayed answers took {p50} ms");
    }
    for e in by_class(&report, "everyone") {
        assert_eq!(e["passed"], true, "{e}");
        assert_eq!(e["errors"], 0);
        let p50 = e["latency"]["ga"]["p50_ms"].as_f64().unwrap();
        assert!(p50 < 200.0, "everyone else is not delayed: {p50} ms");
    }
}

const MATCH_ROUTES: &str = r#"
    - name: heads-and-flagged
      match:
        - method:
            exact: HEAD
        - queryParams:
            canary:
              exact: "yes"
      route:
{canary}
"#;

const MATCH_CLASSES: &str = r#"
  - name: heads
    method: HEAD
    expect: { canary: 100 }
  - name: flagged
    path: /?canary=yes
    expect: { canary: 100 }
  - name: everyone
"#;

/// A match on the method and one on a query parameter send their classes to the canary while
/// everyone stays on the GA: each class is a zero-leak check through the real Envoy.
#[test]
fn method_and_query_parameter_matches_route_their_classes_to_the_canary() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_with(dir.path(), MATCH_CLASSES, &virtual_service(MATCH_ROUTES));
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports).code(0);
    let report = read_report(&reports);
    for class in ["heads", "flagged"] {
        for e in by_class(&report, class) {
            assert_eq!(e["passed"], true, "{e}");
            assert_eq!(e["plan"]["design"], "zero_leak");
            assert_eq!(e["expected_share"], 1.0);
            assert_eq!(e["counts"]["ga"], 0, "{class} never reach the GA: {e}");
        }
    }
    for e in by_class(&report, "everyone") {
        assert_eq!(e["passed"], true, "{e}");
        assert_eq!(e["counts"]["canary"], 0, "{e}");
    }
}

/// The same classes with the matching route taken out: both leak to the GA and fail.
#[test]
fn without_the_method_and_query_matches_their_classes_fail_as_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_with(dir.path(), MATCH_CLASSES, &virtual_service(""));
    let reports = dir.path().join("reports");
    e2e_local(&scenario, &reports).code(1);
    let report = read_report(&reports);
    for class in ["heads", "flagged"] {
        for e in by_class(&report, class) {
            assert_eq!(e["passed"], false, "{class} must fail: {e}");
            let reason = e["reason"].as_str().unwrap();
            assert!(reason.contains("leak"), "{reason}");
            assert!(e["counts"]["ga"].as_u64().unwrap() > 0);
        }
    }
    for e in by_class(&report, "everyone") {
        assert_eq!(e["passed"], true, "{e}");
    }
}

/// The plan (and so `--dry-run`) says once which fields the local Envoy leaves out.
#[test]
fn the_plan_names_the_fields_the_local_envoy_does_not_render() {
    let dir = tempfile::tempdir().unwrap();
    let mirrored = r#"
    - name: mirrored
      match:
        - headers:
            x-m: {}
      mirror:
        host: podinfo-shadow.test.svc.cluster.local
      corsPolicy:
        allowMethods: [GET]
      route:
{ga}
"#;
    let scenario = scenario_with(dir.path(), EVERYONE, &virtual_service(mirrored));
    let out = xtask()
        .args(["e2e", "--mesh", "local", "--dry-run", "--scenario"])
        .arg(&scenario)
        .arg("--report-dir")
        .arg(dir.path().join("reports"))
        .assert()
        .code(0);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("does not render"))
        .collect();
    assert_eq!(lines.len(), 1, "said once:\n{stdout}");
    assert!(
        lines[0].contains("spec.http[0].mirror, spec.http[0].corsPolicy"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("the kind mesh applies them as written"));

    // The tutorial renders everything it has: no such line.
    let out = xtask()
        .args(["e2e", "--mesh", "local", "--dry-run", "--report-dir"])
        .arg(dir.path().join("tutorial-reports"))
        .assert()
        .code(0);
    assert!(!String::from_utf8_lossy(&out.get_output().stdout).contains("does not render"));
}

/// Every route shape the local mesh renders from the new fields, loaded by the real Envoy
/// (`--mode validate`): the JSON is not only what istiod would write but what Envoy accepts.
#[test]
fn envoy_accepts_every_rendered_route_shape() {
    let dir = tempfile::tempdir().unwrap();
    let routes = r#"
    - name: matched
      match:
        - name: all
          uri: { prefix: /API }
          ignoreUriCase: true
          method: { regex: "GET|HEAD" }
          authority: { prefix: podinfo }
          scheme: { exact: http }
          statPrefix: matched
          headers: { x-a: { exact: v }, x-p: {} }
          withoutHeaders: { x-b: { prefix: "no" }, x-q: { regex: "*" } }
          queryParams: { q: { exact: "1" }, r: {}, s: { regex: "^[a-z]+$" } }
      rewrite: { uri: /v2/, authority: backend.example }
      headers: { request: { set: { host: h.example, x-set: "1" }, remove: [x-gone] } }
      retries: { attempts: 3, perTryTimeout: 1s, backoff: 25ms, retryOn: "gateway-error,503", retryRemoteLocalities: true }
      timeout: 5s
      mirror: { host: podinfo.test.svc.cluster.local, subset: canary }
      mirrorPercentage: { value: 2.5 }
      fault:
        delay: { fixedDelay: 1s, percentage: { value: 0.5 } }
        abort: { grpcStatus: UNAVAILABLE, percentage: { value: 12.5 } }
      route:
{ga}
    - name: regex-rewrite
      match: [{ uri: { regex: "^/r/.*" } }]
      rewrite: { uriRegexRewrite: { match: "^/r/(.*)", rewrite: "/\\1" } }
      fault: { delay: { fixedDelay: 2s, percent: 10 }, abort: { httpStatus: 503 } }
      mirrors: [{ destination: { host: podinfo, subset: ga } }]
      route:
{ga}
    - name: moved
      match: [{ uri: { exact: /old } }]
      redirect: { uri: /new, authority: other.example, scheme: https, port: 8443, redirectCode: 308 }
    - name: teapot
      match: [{ uri: { exact: /tea } }]
      directResponse: { status: 418, body: { string: short and stout } }
"#;
    let scenario = scenario_with(dir.path(), EVERYONE, &virtual_service(routes));
    let scenario = harness::scenario::Scenario::load(&scenario).unwrap();
    let manifests = harness::manifests::Manifests::load_all(&scenario.manifests).unwrap();
    let routing = harness::routing::Routing::resolve(&scenario, manifests).unwrap();
    let vs = &routing.virtual_service.value;
    let mut route_configs = Vec::new();
    for entry in [EntryPoint::Ingress, EntryPoint::Mesh] {
        let rds =
            harness::envoy_config::route_discovery_response(&routing, vs, entry, "1").unwrap();
        let mut rc = rds["resources"][0].clone();
        rc.as_object_mut().unwrap().remove("@type");
        let names: Vec<&str> = rc["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "matched.all",
                "regex-rewrite",
                "moved",
                "teapot",
                "canary-split"
            ]
        );
        // The shapes under test are really there.
        let routes = &rc["virtual_hosts"][0]["routes"];
        for (i, key) in [
            (0, "/route/request_mirror_policies"),
            (0, "/typed_per_filter_config/envoy.filters.http.fault/abort"),
            (0, "/match/query_parameters"),
            (0, "/route/retry_policy/retriable_status_codes"),
            (0, "/route/retry_policy/retry_priority"),
            (1, "/route/retry_policy/retry_host_predicate"),
            (1, "/route/regex_rewrite"),
            (1, "/route/request_mirror_policies"),
            (2, "/redirect/port_redirect"),
            (3, "/direct_response/body"),
        ] {
            assert!(routes[i].pointer(key).is_some(), "{key} in {}", routes[i]);
        }
        route_configs.push(rc);
    }
    // A bootstrap of the local mesh's listeners, with the rendered routes inline (RDS would
    // deliver the same RouteConfiguration) and clusters for the subsets they name.
    let mut bootstrap =
        harness::envoy_config::bootstrap(&routing, &routing.entry_points(), dir.path());
    let listeners = bootstrap["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap();
    for (listener, rc) in listeners.iter_mut().zip(route_configs) {
        let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
        hcm.as_object_mut().unwrap().remove("rds");
        hcm["route_config"] = rc;
    }
    let backends = [
        ("ga".to_string(), "127.0.0.1:1".parse().unwrap()),
        ("canary".to_string(), "127.0.0.1:2".parse().unwrap()),
    ];
    let clusters =
        harness::envoy_config::clusters_discovery_response(&routing, &backends, "1")["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.as_object_mut().unwrap().remove("@type");
                c
            })
            .collect::<Vec<_>>();
    bootstrap["static_resources"]["clusters"] = json!(clusters);
    bootstrap
        .as_object_mut()
        .unwrap()
        .remove("dynamic_resources");
    let file = dir.path().join("bootstrap.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();

    let cache = harness::tools::cache_dir(&root());
    let envoy = harness::tools::envoy::ensure(None, &cache).expect("an Envoy binary");
    let out = std::process::Command::new(envoy)
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "envoy refused the rendered routes:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
