//! The testcontainers tier: a real Kubernetes API server (k3s in Docker) under the harness's
//! server-side apply and waits.
//!
//! Istio is not installed here (its CRD file alone is large and its images are heavy); these
//! tests cover what the mocks cannot: that a real API server accepts the applies of the
//! project's core manifests with the harness's field manager, that re-applying is idempotent,
//! and that the Deployment waits end when the pods really are available.
//!
//! Without a Docker engine the tests print `SKIPPED k3s tier: …` to stderr and return: they
//! never pass silently without saying so. CI runs them where Docker is available.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::cluster::facts;
use harness::cluster::plan::Teardown;
use harness::invocation::Invocation;
use harness::istio_mesh::{self, Access, FIELD_MANAGER, IstioMesh, apply};
use harness::manifests::Manifests;
use harness::mesh::Mesh;
use harness::routing::Routing;
use harness::scenario::Scenario;
use harness::steps::{Action, Apply, ApplyHow, Condition, ObjectRef, Section, Step, Wait};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use testcontainers_modules::k3s::{K3s, KUBE_SECURE_PORT};
use testcontainers_modules::testcontainers::ImageExt;
use testcontainers_modules::testcontainers::runners::AsyncRunner;

/// A current k3s release (the module's default image is old).
const K3S_TAG: &str = "v1.35.5-k3s1";

/// Why no Docker engine answers, or `Ok` when one does: `DOCKER_HOST` (unix or tcp) or the
/// default socket must answer `GET /_ping` with `OK`.
fn docker_engine() -> Result<(), String> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let mut answer = String::new();
    let timeout = Some(Duration::from_secs(3));
    if let Some(addr) = host.strip_prefix("tcp://") {
        let addr = addr
            .parse()
            .map_err(|e| format!("DOCKER_HOST={host} is not host:port ({e})"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| format!("DOCKER_HOST={host} does not answer: {e}"))?;
        s.set_read_timeout(timeout).ok();
        s.write_all(request).map_err(|e| e.to_string())?;
        s.read_to_string(&mut answer).ok();
    } else {
        #[cfg(unix)]
        {
            let path = host
                .strip_prefix("unix://")
                .unwrap_or("/var/run/docker.sock")
                .to_string();
            if !Path::new(&path).exists() {
                return Err(format!("{path} does not exist and DOCKER_HOST is not set"));
            }
            let mut s = std::os::unix::net::UnixStream::connect(&path)
                .map_err(|e| format!("{path} does not accept connections: {e}"))?;
            s.set_read_timeout(timeout).ok();
            s.write_all(request).map_err(|e| e.to_string())?;
            s.read_to_string(&mut answer).ok();
        }
        #[cfg(not(unix))]
        return Err("only unix sockets and tcp:// DOCKER_HOST are probed".into());
    }
    if answer.lines().last().map(str::trim) == Some("OK") {
        Ok(())
    } else {
        Err(format!(
            "the engine did not answer /_ping with OK (got {:?})",
            answer.lines().next().unwrap_or("nothing")
        ))
    }
}

/// Prints the skip line and returns true when there is no Docker engine.
fn skip_without_docker(test: &str) -> bool {
    match docker_engine() {
        Ok(()) => false,
        Err(why) => {
            // Straight to stderr: libtest captures eprintln!, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED k3s tier ({test}): no Docker engine ({why})"
            );
            true
        }
    }
}

fn tutorial_routing() -> Routing {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tutorial.yaml");
    let scenario = Scenario::load(&path).unwrap();
    let manifests = Manifests::load_all(&scenario.manifests).unwrap();
    Routing::resolve(&scenario, manifests).unwrap()
}

fn project_manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

#[test]
fn the_docker_probe_explains_a_missing_engine() {
    // Whatever this machine has, the probe answers with a reason or Ok, never hangs or panics.
    match docker_engine() {
        Ok(()) => {}
        Err(why) => assert!(!why.is_empty()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_manifests_apply_server_side_and_their_deployments_roll_out() {
    if skip_without_docker("core_manifests_apply_server_side_and_their_deployments_roll_out") {
        return;
    }
    let conf = tempfile::tempdir().unwrap();
    let container = K3s::default()
        .with_conf_mount(conf.path())
        .with_tag(K3S_TAG)
        .with_privileged(true)
        .with_userns_mode("host")
        .start()
        .await
        .expect("starting k3s");
    let port = container
        .get_host_port_ipv4(KUBE_SECURE_PORT)
        .await
        .unwrap();
    // The harness's own loader, on a kubeconfig whose server is the mapped port.
    let kubeconfig = container.image().read_kube_config().unwrap();
    let kubeconfig = kubeconfig.replace(
        "https://127.0.0.1:6443",
        &format!("https://127.0.0.1:{port}"),
    );
    let path = conf.path().join("harness-kubeconfig.yaml");
    std::fs::write(&path, kubeconfig).unwrap();
    let client = istio_mesh::client_from_kubeconfig(&path, None)
        .await
        .unwrap();

    // Bare k3s has no Istio, and the harness's detection says so.
    assert_eq!(facts::find_istio(&client).await.unwrap(), None);

    let manifests = Manifests::load(&project_manifests()).unwrap();
    let core: Vec<serde_json::Value> = manifests
        .objects
        .iter()
        .map(|o| o.value.clone())
        .filter(|o| !apply::is_istio(o))
        .collect();
    let routing = tutorial_routing();
    let mut mesh = IstioMesh::new(
        "existing",
        &routing,
        Access {
            kubeconfig: path.clone(),
            context: None,
        },
        None,
        Teardown::Existing {
            keep: false,
            uninstall: Invocation::new("true", vec![]),
        },
    );
    let step = |action| Step::new(Section::Deployments, action);
    let apply = |o: &serde_json::Value, how, dry_run| {
        step(Action::Apply(Apply {
            object: ObjectRef::of(o),
            body: o.clone(),
            how,
            dry_run,
        }))
    };
    let rolled_out = |name: &str, bound| {
        step(Action::Wait(Wait {
            condition: Condition::DeploymentRolledOut {
                namespace: "test".into(),
                name: name.into(),
            },
            bound,
        }))
    };
    let ordered = apply::ordered(&core);
    // The namespace first (the dry run of objects inside it needs it), then strict dry runs,
    // then the objects, as the plan orders them.
    for o in &ordered {
        if o["kind"] == "Namespace" {
            mesh.execute(&apply(o, ApplyHow::Apply, true))
                .await
                .unwrap();
            mesh.execute(&apply(o, ApplyHow::Apply, false))
                .await
                .unwrap();
        }
    }
    for o in ordered.iter().filter(|o| o["kind"] != "Namespace") {
        mesh.execute(&apply(o, ApplyHow::Apply, true))
            .await
            .unwrap();
    }
    for o in ordered.iter().filter(|o| o["kind"] != "Namespace") {
        mesh.execute(&apply(o, ApplyHow::Apply, false))
            .await
            .unwrap();
    }
    for d in &manifests.deployments {
        mesh.execute(&rolled_out(
            &d.value.metadata.name,
            Duration::from_secs(300),
        ))
        .await
        .unwrap();
    }

    // Applying again (as a later run does) changes nothing: same generation, and the
    // harness owns the fields.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "test");
    let before = deployments.get("podinfo-ga").await.unwrap();
    for o in ordered.iter().filter(|o| o["kind"] != "Namespace") {
        mesh.execute(&apply(o, ApplyHow::Reapply, false))
            .await
            .unwrap();
    }
    let after = deployments.get("podinfo-ga").await.unwrap();
    assert_eq!(before.metadata.generation, after.metadata.generation);
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == FIELD_MANAGER), "{managers:?}");

    // A field the API server does not know is refused by the strict dry run, before any change.
    let mut typo = core
        .iter()
        .find(|o| o["metadata"]["name"] == "podinfo-ga")
        .unwrap()
        .clone();
    typo["spec"]["replicaz"] = 2.into();
    let err = mesh
        .execute(&apply(&typo, ApplyHow::Reapply, true))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("replicaz"), "{err:#}");

    // A Deployment that cannot become available makes the wait give up, naming it.
    let mut broken = core
        .iter()
        .find(|o| o["metadata"]["name"] == "podinfo-ga")
        .unwrap()
        .clone();
    broken["metadata"]["name"] = "podinfo-broken".into();
    broken["spec"]["template"]["spec"]["containers"][0]["image"] =
        "ghcr.io/stefanprodan/podinfo:0.0.0-does-not-exist".into();
    mesh.execute(&apply(&broken, ApplyHow::Apply, false))
        .await
        .unwrap();
    let err = mesh
        .execute(&rolled_out("podinfo-broken", Duration::from_secs(20)))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("Deployment test/podinfo-broken"), "{text}");
    assert!(text.contains("0/1 available"), "{text}");

    // The teardown deletes exactly what these steps created.
    for step in mesh.teardown() {
        mesh.execute(&step).await.unwrap();
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = namespaces.get_opt("test").await.unwrap();
    assert!(
        ns.is_none() || ns.unwrap().metadata.deletion_timestamp.is_some(),
        "namespace test is gone or going"
    );
}
