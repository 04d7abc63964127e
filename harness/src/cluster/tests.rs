//! Request-level tests of the cluster meshes against the fake API server: what a plan decides
//! from what the cluster holds, what a run sends, and what the teardown leaves.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::ca::CaBundle;
use crate::fake_api::{Behaviour, FakeApi};
use crate::istio_mesh::proxy::{ConfigDumps, ProxyRef};
use crate::manifests::Manifests;
use crate::run::{Observer, RunOptions};
use crate::scenario::Scenario;
use crate::session::{Outcome, Session};
use crate::steps::ApplyHow;

fn tutorial() -> (Scenario, Routing) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
    let scenario = Scenario::load(&path).unwrap();
    let manifests = Manifests::load_all(&scenario.manifests).unwrap();
    let routing = Routing::resolve(&scenario, manifests).unwrap();
    (scenario, routing)
}

/// A user's cluster: the fake API server and a kubeconfig for it.
struct UserCluster {
    api: FakeApi,
    dir: tempfile::TempDir,
    ca: CaBundle,
}

impl UserCluster {
    async fn new() -> Self {
        let api = FakeApi::start().await;
        let dir = tempfile::tempdir().unwrap();
        api.write_kubeconfig(&dir.path().join("kubeconfig"));
        Self {
            api,
            dir,
            ca: CaBundle::generate().unwrap(),
        }
    }

    async fn with_istio(revision: &str) -> Self {
        let cluster = Self::new().await;
        cluster
            .api
            .install_istio(revision, &cluster.ca.root_cert_pem, true);
        cluster
    }

    fn config(&self) -> ExistingConfig {
        ExistingConfig {
            kubeconfig: self.dir.path().join("kubeconfig"),
            context: None,
            install_istio: false,
            adopt: false,
            keep: false,
            state: self.dir.path().join("state"),
            cache: self.dir.path().join("cache"),
            logs: self.dir.path().join("reports/cluster"),
            wait: Duration::from_secs(5),
            run_id: "ab12cd".into(),
            tools: ToolPaths::default(),
        }
    }

    fn dumps(&self) -> Arc<dyn ConfigDumps> {
        Arc::new(ProxiesOf {
            base: self.api.base.clone(),
            chain: crate::ca::workload_chain(&self.ca),
        })
    }

    async fn plan(&self, config: &ExistingConfig) -> anyhow::Result<Planned> {
        plan_existing_with(config, &tutorial().1, Some(self.dumps())).await
    }
}

/// Proxies that route as the fake API server's VirtualService says, and serve a workload
/// certificate of the cluster's CA: what istiod would have pushed to them.
struct ProxiesOf {
    base: String,
    chain: String,
}

#[async_trait]
impl ConfigDumps for ProxiesOf {
    async fn dump(&self, proxy: &ProxyRef) -> anyhow::Result<Value> {
        let url = format!(
            "{}/apis/networking.istio.io/v1/namespaces/test/virtualservices/podinfo",
            self.base
        );
        let vs: Value = reqwest::Client::new().get(url).send().await?.json().await?;
        let clusters: Vec<Value> = vs["spec"]["http"][0]["route"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["weight"].as_u64() != Some(0))
            .map(|d| {
                json!({"name": format!("outbound|9898|{}|podinfo.test.svc.cluster.local", d["destination"]["subset"].as_str().unwrap_or_default()),
                       "weight": d["weight"].as_u64().unwrap_or(100)})
            })
            .collect();
        let (name, domain) = if proxy.label == "gateway" {
            ("http.8080", "podinfo.example.com")
        } else {
            ("9898", "podinfo.test.svc.cluster.local")
        };
        use base64::Engine;
        Ok(json!({"configs": [
            {"dynamic_route_configs": [{"version_info": "1", "route_config": {"name": name, "virtual_hosts": [
                {"name": domain, "domains": [domain], "routes": [{"match": {"prefix": "/"},
                    "route": {"weighted_clusters": {"clusters": clusters}}}]}]}}]},
            {"dynamic_active_secrets": [{"name": "default", "secret": {"name": "default", "tls_certificate": {
                "certificate_chain": {"inline_bytes": base64::engine::general_purpose::STANDARD.encode(&self.chain)}}}}]}
        ]}))
    }
}

struct Quiet;
impl Observer for Quiet {}

fn lines(steps: &[Step]) -> Vec<String> {
    steps.iter().map(|s| s.to_string()).collect()
}

/// Runs the session of `planned` on the tutorial, cancelling after `cancel_after` if given.
async fn session(
    planned: Planned,
    dir: &Path,
    cancel_after: Option<Duration>,
) -> crate::session::Finished {
    let (scenario, routing) = tutorial();
    let options = RunOptions {
        converge_timeout: Duration::from_secs(5),
        sample_timeout: Duration::from_secs(5),
        ..RunOptions::new(dir.join("reports"))
    };
    let cancel = CancellationToken::new();
    if let Some(after) = cancel_after {
        let token = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            token.cancel();
        });
    }
    Session {
        scenario: &scenario,
        routing: &routing,
        plans: &crate::run::plan_tests(&scenario, routing.entry_points().len()).unwrap(),
        options: &options,
        observer: &Quiet,
    }
    .run(planned, cancel)
    .await
    .unwrap()
}

fn applies(planned: &Planned) -> Vec<(String, ApplyHow, bool)> {
    planned
        .setup
        .iter()
        .filter_map(|s| match &s.action {
            Action::Apply(a) => Some((a.object.to_string(), a.how, a.dry_run)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_executes_exactly_the_printed_steps_and_deletes_what_it_created() {
    let cluster = UserCluster::with_istio("default").await;
    let before = cluster.api.names();
    let planned = cluster.plan(&cluster.config()).await.unwrap();
    let printed: Vec<String> = lines(&planned.setup)
        .into_iter()
        .chain(lines(&planned.teardown))
        .collect();
    // Planning only read.
    assert!(
        cluster.api.writes().is_empty(),
        "{:?}",
        cluster.api.writes()
    );
    let finished = session(planned, cluster.dir.path(), None).await;
    // The walk gets as far as sampling, which needs exec (no fake can do it); the set-up and
    // the teardown are what matters here.
    assert_eq!(
        finished.outcome,
        Outcome::Aborted,
        "{:?}",
        finished.report.aborted
    );
    assert_eq!(finished.steps.lines(), printed);
    assert!(
        finished.teardown_errors.is_empty(),
        "{:?}",
        finished.teardown_errors
    );
    // The stage's VirtualService reached the proxies before sampling was tried.
    assert!(
        finished
            .report
            .aborted
            .as_deref()
            .unwrap()
            .contains("stage `initial state`"),
        "{:?}",
        finished.report.aborted
    );
    // Everything the run created is gone again, and nothing else changed.
    assert_eq!(cluster.api.names(), before);
    let created = &finished.report.cluster_changes.created;
    assert!(created.is_empty(), "{created:?}");
    let deleted = &finished.report.cluster_changes.deleted;
    assert!(
        deleted.contains(&"Namespace test".to_string()),
        "{deleted:?}"
    );
    assert!(
        deleted.contains(&"Pod test/canary-mesh-client-ab12cd".to_string()),
        "{deleted:?}"
    );
    // Every write went through the strict server-side checks first.
    let writes = cluster.api.writes();
    let dry_runs = cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| r.query("dryRun").as_deref() == Some("All"))
        .count();
    assert_eq!(dry_runs, 7, "one server-side dry run per manifest object");
    for w in writes.iter().filter(|w| w.method == "PATCH") {
        assert_eq!(
            w.query("fieldValidation").as_deref(),
            Some("Strict"),
            "{}",
            w.uri
        );
        assert_eq!(
            w.query("fieldManager").as_deref(),
            Some("canary-harness"),
            "{}",
            w.uri
        );
    }
    // Nothing of Istio's was written.
    assert!(
        writes.iter().all(|w| !w.path().contains("istio-system")),
        "{:?}",
        writes.iter().map(|w| &w.uri).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_revisioned_istio_is_used_as_it_is_and_nothing_of_it_is_written() {
    let cluster = UserCluster::with_istio("1-31").await;
    let mut config = cluster.config();
    // Even with --install-istio: Istio is there, so nothing is installed.
    config.install_istio = true;
    let planned = cluster.plan(&config).await.unwrap();
    let text = lines(&planned.setup).join("\n");
    assert!(
        text.contains("skip    installing Istio: it is installed"),
        "{text}"
    );
    assert!(
        text.contains("Deployment istio-system/istiod-1-31"),
        "{text}"
    );
    assert!(!text.contains("istioctl install"), "{text}");
    assert!(!text.contains("cacerts —"), "{text}");
    assert!(
        text.contains("wait    at most 5s for Deployment istio-system/istiod-1-31 rolled out"),
        "{text}"
    );
    assert!(text.contains("revision `1-31`"), "{text}");
    // The namespace asks for the installed revision, not for the default one.
    let ns = planned
        .setup
        .iter()
        .find_map(|s| match &s.action {
            Action::Apply(a) if !a.dry_run && a.object.kind == "Namespace" => Some(a.body.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ns["metadata"]["labels"]["istio.io/rev"], "1-31");
    assert!(ns["metadata"]["labels"].get("istio-injection").is_none());
    assert!(
        text.contains("Namespace test labelled istio.io/rev=1-31"),
        "{text}"
    );
    let finished = session(planned, cluster.dir.path(), None).await;
    assert!(
        finished
            .report
            .setup
            .iter()
            .filter(|s| s.step.starts_with("wait"))
            .all(|s| s.error.is_none()),
        "{:#?}",
        finished.report.setup
    );
    let writes = cluster.api.writes();
    assert!(
        writes.iter().all(|w| !w.path().contains("istio-system")),
        "{:?}",
        writes.iter().map(|w| &w.uri).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn no_istio_is_refused_unless_the_user_allows_an_install() {
    let cluster = UserCluster::new().await;
    let err = cluster.plan(&cluster.config()).await.err().unwrap();
    assert!(crate::input_error::is_input_error(&err));
    let text = err.to_string();
    assert!(text.contains("no Istio on the cluster of"), "{text}");
    assert!(text.contains("--install-istio"), "{text}");
    assert!(cluster.api.writes().is_empty());

    let mut config = cluster.config();
    config.install_istio = true;
    let istioctl = cluster.dir.path().join("istioctl");
    std::fs::write(&istioctl, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&istioctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    config.tools.istioctl = Some(istioctl.clone());
    let planned = cluster.plan(&config).await.unwrap();
    let text = lines(&planned.setup).join("\n");
    assert!(
        text.contains("apply   Namespace istio-system — create (it must not exist)"),
        "{text}"
    );
    assert!(
        text.contains("apply   Secret istio-system/cacerts — create (it must not exist)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} install -y", istioctl.display())),
        "{text}"
    );
    assert!(text.contains("(Service type ClusterIP)"), "{text}");
    // What the run installs, it removes: the objects, Istio, then the CA and its namespace.
    let teardown = lines(&planned.teardown);
    let pos = |needle: &str| {
        teardown
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {teardown:#?}"))
    };
    assert!(pos("delete  VirtualService test/podinfo") < pos("delete  Namespace test"));
    assert!(pos("delete  Namespace test") < pos("uninstall -y"));
    assert!(pos("uninstall -y") < pos("delete  Secret istio-system/cacerts"));
    assert!(pos("delete  Secret istio-system/cacerts") < pos("delete  Namespace istio-system"));
}

#[tokio::test]
async fn an_existing_cacerts_is_never_replaced() {
    let cluster = UserCluster::new().await;
    let other = CaBundle::generate().unwrap();
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    cluster.api.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
    );
    cluster.api.insert(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"},
        "data": {"root-cert.pem": b64(&other.root_cert_pem)}}));
    let mut config = cluster.config();
    config.install_istio = true;
    let istioctl = cluster.dir.path().join("istioctl");
    std::fs::write(&istioctl, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&istioctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    config.tools.istioctl = Some(istioctl);
    let planned = cluster.plan(&config).await.unwrap();
    let text = lines(&planned.setup).join("\n");
    assert!(
        text.contains("skip    creating a plug-in CA: Secret istio-system/cacerts exists"),
        "{text}"
    );
    assert!(
        !text.contains("apply   Secret istio-system/cacerts"),
        "{text}"
    );
    assert!(!text.contains("apply   Namespace istio-system"), "{text}");
    assert!(
        !text.contains("write   ") || !text.contains("ca-existing"),
        "{text}"
    );
    // The checks trust the root that Secret holds.
    assert!(text.contains(&other.root_fingerprint()), "{text}");
    assert!(!lines(&planned.teardown).join("\n").contains("cacerts"));
}

fn unmanaged_deployment(manager: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "podinfo-ga", "namespace": "test",
                        "managedFields": [{"manager": manager, "operation": "Update"}]},
           "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "podinfo", "version": "ga"}},
                    "spec": {"containers": [{"name": "podinfo", "image": "ghcr.io/stefanprodan/podinfo:6.14.0"}]}}}})
}

#[tokio::test]
async fn an_object_someone_else_manages_is_refused_unless_adopted() {
    let cluster = UserCluster::with_istio("default").await;
    cluster.api.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test",
        "labels": {"istio-injection": "enabled"}, "managedFields": [{"manager": "kubectl", "operation": "Update"}]}}));
    cluster
        .api
        .insert(unmanaged_deployment("kubectl-client-side-apply"));
    let err = cluster.plan(&cluster.config()).await.err().unwrap();
    let text = err.to_string();
    assert!(crate::input_error::is_input_error(&err), "{text}");
    for needle in [
        "Namespace test exists",
        "Deployment test/podinfo-ga exists",
        "kubectl-client-side-apply",
        "--adopt",
        "podinfo-ga.yaml",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert!(!text.contains("podinfo-canary"), "{text}");

    let mut config = cluster.config();
    config.adopt = true;
    let planned = cluster.plan(&config).await.unwrap();
    let how: Vec<(String, ApplyHow, bool)> = applies(&planned);
    assert!(
        how.contains(&("Deployment test/podinfo-ga".into(), ApplyHow::Adopt, false)),
        "{how:?}"
    );
    assert!(
        how.contains(&(
            "Deployment test/podinfo-canary".into(),
            ApplyHow::Apply,
            false
        )),
        "{how:?}"
    );
    // Adopted objects stay; the ones the run created go.
    let teardown = lines(&planned.teardown).join("\n");
    assert!(
        teardown.contains("delete  Deployment test/podinfo-canary"),
        "{teardown}"
    );
    assert!(
        !teardown.contains("Deployment test/podinfo-ga\n"),
        "{teardown}"
    );
    assert!(!teardown.contains("Namespace test"), "{teardown}");
    let finished = session(planned, cluster.dir.path(), None).await;
    let forced: Vec<String> = cluster
        .api
        .writes()
        .into_iter()
        .filter(|w| w.method == "PATCH" && w.query("force").as_deref() == Some("true"))
        .map(|w| w.path().to_string())
        .collect();
    assert!(
        forced.contains(&"/apis/apps/v1/namespaces/test/deployments/podinfo-ga".to_string()),
        "{forced:?}"
    );
    assert!(
        finished
            .report
            .cluster_changes
            .changed
            .contains(&"Deployment test/podinfo-ga".to_string()),
        "{:?}",
        finished.report.cluster_changes
    );
    assert!(
        cluster
            .api
            .get("apps/v1", "Deployment", Some("test"), "podinfo-ga")
            .is_some()
    );
    assert!(
        cluster
            .api
            .get("apps/v1", "Deployment", Some("test"), "podinfo-canary")
            .is_none()
    );
}

#[tokio::test]
async fn what_an_earlier_run_applied_is_applied_again_and_left_alone() {
    let cluster = UserCluster::with_istio("default").await;
    cluster
        .api
        .insert(unmanaged_deployment(crate::istio_mesh::FIELD_MANAGER));
    let planned = cluster.plan(&cluster.config()).await.unwrap();
    assert!(applies(&planned).contains(&(
        "Deployment test/podinfo-ga".into(),
        ApplyHow::Reapply,
        false
    )));
    let teardown = lines(&planned.teardown);
    assert!(
        teardown
            .iter()
            .any(|l| l == "delete  Deployment test/podinfo-canary"),
        "{teardown:?}"
    );
    assert!(
        !teardown
            .iter()
            .any(|l| l == "delete  Deployment test/podinfo-ga"),
        "{teardown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_objects_are_deleted_after_a_failed_set_up() {
    let cluster = UserCluster::with_istio("default").await;
    cluster.api.set_behaviour(Behaviour {
        rollouts: false,
        ..Behaviour::default()
    });
    let before = cluster.api.names();
    let mut config = cluster.config();
    config.wait = Duration::from_millis(300);
    let planned = cluster.plan(&config).await.unwrap();
    let finished = session(planned, cluster.dir.path(), None).await;
    assert_eq!(finished.outcome, Outcome::Aborted);
    let reason = finished.report.aborted.unwrap();
    assert!(
        reason.contains("Deployment test/podinfo-canary rolled out"),
        "{reason}"
    );
    assert!(reason.contains("0/1 available"), "{reason}");
    assert_eq!(cluster.api.names(), before);
    assert!(cluster.dir.path().join("reports/report.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_objects_are_deleted_when_the_run_is_interrupted() {
    let cluster = UserCluster::with_istio("default").await;
    cluster.api.set_behaviour(Behaviour {
        rollouts: false,
        ..Behaviour::default()
    });
    let before = cluster.api.names();
    let mut config = cluster.config();
    config.wait = Duration::from_secs(60);
    let planned = cluster.plan(&config).await.unwrap();
    let finished = session(
        planned,
        cluster.dir.path(),
        Some(Duration::from_millis(700)),
    )
    .await;
    assert_eq!(finished.outcome, Outcome::Interrupted);
    assert_eq!(finished.report.aborted.as_deref(), Some("interrupted"));
    assert_eq!(cluster.api.names(), before);
    let report =
        crate::report::Report::read(&cluster.dir.path().join("reports/report.json")).unwrap();
    assert_eq!(report.aborted.as_deref(), Some("interrupted"));
}

/// A fake kind: logs its argv, lists `clusters`, and on `create` writes a kubeconfig for the
/// fake API server where kind was told to.
fn fake_kind(dir: &Path, clusters: &str, api: &FakeApi) -> std::path::PathBuf {
    let kubeconfig = dir.join("fake-kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let path = dir.join("kind");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1 $2\" in\n  'get clusters') printf '{clusters}' ;;\n  'get kubeconfig') cat {kc} ;;\n  'create cluster') while [ $# -gt 0 ]; do [ \"$1\" = --kubeconfig ] && cp {kc} \"$2\"; shift; done ;;\nesac\n",
            calls = dir.join("calls").display(),
            kc = kubeconfig.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn kind_calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(" --").next().unwrap().to_string())
        .collect()
}

fn kind_config(dir: &Path, kind: &Path) -> KindConfig {
    KindConfig {
        name: "c1".into(),
        keep: false,
        state: dir.join("state"),
        cache: dir.join("cache"),
        logs: dir.join("logs"),
        wait: Duration::from_secs(5),
        run_id: "ab12cd".into(),
        docker: "docker".into(),
        tools: ToolPaths {
            kind: Some(kind.to_path_buf()),
            istioctl: Some(kind.to_path_buf()),
        },
    }
}

#[tokio::test]
async fn a_kind_cluster_the_harness_did_not_create_is_never_used() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kind = fake_kind(dir.path(), "c1\\n", &api);
    let err = plan_kind(&kind_config(dir.path(), &kind), &tutorial().1)
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(crate::input_error::is_input_error(&err));
    assert!(text.contains("the harness did not create it"), "{text}");
    assert!(
        text.contains("--cluster-name") && text.contains("--mesh existing"),
        "{text}"
    );
    assert_eq!(kind_calls(dir.path()), ["get clusters"]);
}

#[tokio::test]
async fn a_kind_cluster_of_the_harness_is_reused_and_kept_or_deleted() {
    let api = FakeApi::start().await;
    let ca = CaBundle::generate().unwrap();
    api.install_istio("default", &ca.root_cert_pem, true);
    let dir = tempfile::tempdir().unwrap();
    let kind = fake_kind(dir.path(), "c1\\n", &api);
    let mut config = kind_config(dir.path(), &kind);
    kind::write_marker(&kind::marker_path(&config.state, "c1"), "c1").unwrap();
    config.keep = true;
    let planned = plan_kind(&config, &tutorial().1).await.unwrap();
    let setup = lines(&planned.setup).join("\n");
    assert!(setup.contains("export kubeconfig --name c1"), "{setup}");
    assert!(!setup.contains("create cluster"), "{setup}");
    // Istio of the earlier run is there: no install, no new CA under a running istiod.
    assert!(
        setup.contains("skip    installing Istio: it is installed"),
        "{setup}"
    );
    assert!(!setup.contains("cacerts —"), "{setup}");
    let teardown = lines(&planned.teardown).join("\n");
    assert!(
        teardown.contains("delete  Pod test/canary-mesh-client-ab12cd"),
        "{teardown}"
    );
    assert!(
        teardown.contains("skip    deleting kind cluster `c1`: kept"),
        "{teardown}"
    );
    assert!(!teardown.contains("\nrun "), "{teardown}");
    assert!(cluster_writes_are_none(&api));

    config.keep = false;
    let planned = plan_kind(&config, &tutorial().1).await.unwrap();
    let teardown = lines(&planned.teardown);
    assert_eq!(teardown.len(), 1, "{teardown:?}");
    assert!(
        teardown[0].contains("kind delete cluster --name c1"),
        "{teardown:?}"
    );
    assert!(teardown[0].contains("then remove"), "{teardown:?}");
}

fn cluster_writes_are_none(api: &FakeApi) -> bool {
    api.writes().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_gets_ready_makes_kind_create_try_again() {
    let api = FakeApi::start().await;
    api.set_behaviour(Behaviour {
        nodes_ready: false,
        ..Behaviour::default()
    });
    // The node exists before the behaviour changed; make it NotReady as the fake now says.
    api.insert(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "fake-control-plane"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let kind = fake_kind(dir.path(), "", &api);
    let config = kind_config(dir.path(), &kind);
    std::fs::create_dir_all(&config.state).unwrap();
    let planned = plan_kind(&config, &tutorial().1).await.unwrap();
    let create = planned
        .setup
        .iter()
        .find(|s| s.to_string().contains("create cluster"))
        .unwrap()
        .clone();
    let Action::Run(mut run) = create.action.clone() else {
        panic!()
    };
    // A short bound for the test; the plan's is three minutes.
    run.retry.as_mut().unwrap().until.bound = Duration::from_millis(200);
    let mut mesh = planned.mesh;
    let err = mesh
        .execute(&Step::new(Section::Cluster, Action::Run(run)))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("failed 3 attempts"), "{text}");
    assert!(text.contains("to be Ready"), "{text}");
    assert_eq!(
        kind_calls(dir.path()),
        [
            "get clusters",
            "create cluster",
            "delete cluster",
            "create cluster",
            "delete cluster",
            "create cluster"
        ]
    );
    for attempt in 1..=3 {
        assert!(
            dir.path()
                .join(format!("logs/kind-create-{attempt}.log"))
                .exists()
        );
    }
}

#[tokio::test]
async fn the_gateway_pod_is_a_ready_one_not_being_deleted_in_any_namespace() {
    let api = FakeApi::start().await;
    let labels = json!({"app": "istio-ingress", "istio": "ingress"});
    api.insert(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-ingress", "namespace": "istio-ingress"},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
    for (name, deleting) in [("istio-ingress-aaa", true), ("istio-ingress-bbb", false)] {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "istio-ingress", "labels": labels},
            "spec": {"containers": [{"name": "istio-proxy", "image": "x", "ports": [{"name": "http", "containerPort": 8081}]}]}});
        if deleting {
            pod["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:00:00Z");
        }
        api.insert(pod);
    }
    let dir = tempfile::tempdir().unwrap();
    api.write_kubeconfig(&dir.path().join("k"));
    let client = istio_mesh::client_from_kubeconfig(&dir.path().join("k"), None)
        .await
        .unwrap();
    let selector = [("istio".to_string(), "ingress".to_string())].into();
    let (ns, pod, port) = istio_mesh::gateway::find_gateway(&client, &selector, 80)
        .await
        .unwrap();
    assert_eq!(
        (ns.as_str(), pod.as_str(), port),
        ("istio-ingress", "istio-ingress-bbb", 8081)
    );
}

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The whole kind path with fake tools (docker, kind, an istioctl that "installs" Istio into the
/// fake API server): what runs is what the dry run prints, from the Docker check to the
/// cluster's deletion, and the cluster's mark goes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_run_executes_the_printed_plan_and_deletes_the_cluster_it_created() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kind = fake_kind(dir.path(), "", &api);
    let istioctl = script(
        dir.path(),
        "istioctl",
        &format!(
            "echo \"$*\" >> {}\ncurl -sf -X POST {}/fake/install-istio >/dev/null",
            dir.path().join("istioctl-calls").display(),
            api.base
        ),
    );
    let mut config = kind_config(dir.path(), &kind);
    config.tools.istioctl = Some(istioctl);
    config.docker = script(dir.path(), "docker", "echo 28.1.1");
    let dumps_ca = Arc::new(std::sync::Mutex::new(None::<String>));
    let planned = plan_kind_with(
        &config,
        &tutorial().1,
        Some(Arc::new(KindProxies {
            base: api.base.clone(),
            state: config.state.clone(),
            chain: dumps_ca.clone(),
        })),
    )
    .await
    .unwrap();
    let printed: Vec<String> = lines(&planned.setup)
        .into_iter()
        .chain(lines(&planned.teardown))
        .collect();
    let finished = session(planned, dir.path(), None).await;
    assert_eq!(
        finished.outcome,
        Outcome::Aborted,
        "{:?}",
        finished.report.aborted
    );
    assert!(
        finished
            .report
            .aborted
            .as_deref()
            .unwrap()
            .contains("stage `initial state`"),
        "the set-up went through: {:?}",
        finished.report.aborted
    );
    assert_eq!(finished.steps.lines(), printed);
    assert!(
        finished.teardown_errors.is_empty(),
        "{:?}",
        finished.teardown_errors
    );
    let calls = kind_calls(dir.path());
    assert_eq!(
        calls,
        ["get clusters", "create cluster", "delete cluster"],
        "{calls:?}"
    );
    assert!(!kind::marker_path(&config.state, "c1").exists());
    // The CA went in before Istio, so the webhook and the workload certificate trusted it.
    let istioctl_calls = std::fs::read_to_string(dir.path().join("istioctl-calls")).unwrap();
    assert!(
        istioctl_calls.starts_with("install -y --kubeconfig "),
        "{istioctl_calls}"
    );
}

/// The proxies of a kind run: the routes of the VirtualService the fake holds, and a workload
/// certificate from the CA the run wrote into its state folder.
struct KindProxies {
    base: String,
    state: std::path::PathBuf,
    chain: Arc<std::sync::Mutex<Option<String>>>,
}

#[async_trait]
impl ConfigDumps for KindProxies {
    async fn dump(&self, proxy: &ProxyRef) -> anyhow::Result<Value> {
        let chain = {
            let mut chain = self.chain.lock().unwrap();
            if chain.is_none() {
                let ca = CaBundle::read_from(&self.state.join("ca-kind-c1"))?;
                *chain = Some(crate::ca::workload_chain(&ca));
            }
            chain.clone().unwrap()
        };
        ProxiesOf {
            base: self.base.clone(),
            chain,
        }
        .dump(proxy)
        .await
    }
}

/// `--keep` on the user's cluster: the teardown deletes nothing, says what it keeps, and the
/// report lists those objects as left behind; nothing the run created is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_on_an_existing_cluster_deletes_nothing_and_says_what_it_kept() {
    let cluster = UserCluster::with_istio("default").await;
    let before = cluster.api.names();
    let mut config = cluster.config();
    config.keep = true;
    let planned = cluster.plan(&config).await.unwrap();
    let created: Vec<String> = applies(&planned)
        .into_iter()
        .filter(|(_, how, dry_run)| !dry_run && how.creates())
        .map(|(what, _, _)| what)
        .collect();
    assert!(
        created.contains(&"Namespace test".to_string())
            && created.contains(&"Pod test/canary-mesh-client-ab12cd".to_string()),
        "{created:?}"
    );
    let teardown = lines(&planned.teardown);
    assert_eq!(teardown.len(), 1, "{teardown:#?}");
    assert!(
        teardown[0].contains("deleting what the run created (--keep)"),
        "{teardown:#?}"
    );
    for what in &created {
        assert!(
            teardown[0].contains(what.as_str()),
            "{what} not in {teardown:#?}"
        );
    }

    let finished = session(planned, cluster.dir.path(), None).await;
    assert!(
        finished.teardown_errors.is_empty(),
        "{:?}",
        finished.teardown_errors
    );
    let executed_teardown: Vec<String> = finished
        .steps
        .lines()
        .into_iter()
        .filter(|l| l.contains("--keep") || l.starts_with("delete"))
        .collect();
    assert_eq!(executed_teardown, teardown);
    assert!(
        cluster.api.requests().iter().all(|r| r.method != "DELETE"),
        "{:?}",
        cluster
            .api
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .map(|r| &r.uri)
            .collect::<Vec<_>>()
    );
    let after = cluster.api.names();
    for what in &created {
        assert!(after.contains(what), "{what} was deleted: {after:#?}");
    }
    assert!(before.iter().all(|b| after.contains(b)));
    let changes = &finished.report.cluster_changes;
    assert!(changes.deleted.is_empty(), "{changes:?}");
    assert_eq!(changes.left, teardown_skips(&teardown), "{changes:?}");
    for what in &created {
        assert!(changes.created.contains(what), "{what} not in {changes:?}");
    }
}

/// The text of the Skip steps, as the report lists them.
fn teardown_skips(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            l.split_once("deleting what")
                .map(|(_, rest)| format!("deleting what{rest}"))
        })
        .collect()
}

/// What is left of an Istio without its istiod, as a half-done install or uninstall leaves it.
fn istio_remains(api: &FakeApi, what: &str) {
    match what {
        "crds" => api.insert(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "virtualservices.networking.istio.io"},
            "spec": {"group": "networking.istio.io", "names": {"plural": "virtualservices", "kind": "VirtualService"},
                     "scope": "Namespaced", "versions": []}
        })),
        "webhook" => api.insert(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "istio-sidecar-injector", "labels": {"app": "sidecar-injector", "istio.io/rev": "default"}},
            "webhooks": []
        })),
        other => panic!("no remains {other}"),
    }
}

/// Istio's CRDs or its injector webhook without an istiod: refused, with or without
/// `--install-istio` (the harness never installs over another Istio), naming what it found and
/// the fix; nothing is written.
#[rstest::rstest]
#[case::crds_only("crds", "virtualservices.networking.istio.io", false)]
#[case::crds_only_install_allowed("crds", "virtualservices.networking.istio.io", true)]
#[case::injector_webhook_only("webhook", "istio-sidecar-injector", false)]
#[case::injector_webhook_only_install_allowed("webhook", "istio-sidecar-injector", true)]
#[tokio::test]
async fn istios_remains_without_an_istiod_are_refused(
    #[case] remains: &str,
    #[case] named: &str,
    #[case] install_istio: bool,
) {
    let cluster = UserCluster::new().await;
    istio_remains(&cluster.api, remains);
    let mut config = cluster.config();
    config.install_istio = install_istio;
    let err = cluster.plan(&config).await.err().unwrap();
    assert!(crate::input_error::is_input_error(&err));
    let text = format!("{err:#}");
    assert!(text.contains("has Istio's remains"), "{text}");
    assert!(text.contains("no istiod Deployment"), "{text}");
    assert!(text.contains(named), "{text}");
    assert!(text.contains("--install-istio"), "{text}");
    assert!(
        cluster.api.writes().is_empty(),
        "{:?}",
        cluster.api.writes()
    );
}
