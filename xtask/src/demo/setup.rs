//! The set-up as the tutorial tells it: each executed step under its section, with what that
//! section of the tutorial is about on this mesh.

use std::time::Duration;

use harness::envoy_config;
use harness::routing::EntryPoint;
use harness::steps::{Section, Step};

use super::narrator::{Narrator, PreparedText};
use super::text::{Palette, bullets, display, indent, yaml};
use crate::e2e::Prepared;
use crate::flags::MeshKind;

/// The parts of the story that come from the routing state, not from the steps.
pub fn prepared_text(prepared: &Prepared, mesh: MeshKind, _palette: &Palette) -> PreparedText {
    let routing = &prepared.routing;
    let local = mesh == MeshKind::Local;
    let mut lines = Vec::new();
    for (i, s) in routing.subsets.iter().enumerate() {
        let role = if i == 0 { "baseline" } else { "canary" };
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let stands_for = if local {
            let tuning = prepared
                .scenario
                .backends
                .get(&s.name)
                .filter(|t| !t.delay.is_zero() || t.error_rate > 0.0)
                .map(|t| {
                    format!(
                        ", delayed {} ms, failing {:.1} %",
                        t.delay.as_millis(),
                        t.error_rate * 100.0
                    )
                })
                .unwrap_or_default();
            format!(
                "\n    → a backend process that answers as {} does{tuning}",
                match prepared.scenario.backends.get(&s.name).map(|t| t.mode) {
                    Some(harness::scenario::BackendMode::Plain) => {
                        "an app that reports no version".to_string()
                    }
                    _ => format!("podinfo {}", s.backend_version()),
                }
            )
        } else {
            String::new()
        };
        lines.push(format!(
            "{role} `{}`: Deployment {} with {} [{}]{stands_for}",
            s.name,
            s.deployment,
            s.image,
            labels.join(", ")
        ));
    }
    let workloads = bullets(&lines);
    let files: Vec<String> = routing.files().iter().map(|f| display(f)).collect();
    let vs = &routing.virtual_service.value;
    let mut resources = Vec::new();
    if let Some(g) = &routing.gateway {
        resources.push(format!(
            "Gateway {}: port {} for host {}",
            g.name, g.port, g.host
        ));
    }
    resources.push(format!(
        "DestinationRule for {}: subsets {}",
        routing.host,
        routing
            .subsets
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    resources.push(format!(
        "VirtualService {} ({}): hosts {}, gateways {}",
        vs.metadata.name,
        display(&routing.virtual_service.file),
        vs.spec.hosts().join(", "),
        vs.spec.gateways().join(", ")
    ));
    let routing_text = format!(
        "manifests loaded:\n{}\n{}\nThe VirtualService as the manifests have it:\n{}",
        bullets(&files),
        bullets(&resources),
        indent(&yaml(&prepared.routing.virtual_service_body), 2)
    );
    PreparedText {
        workloads,
        routing: routing_text,
    }
}

impl Narrator {
    /// What a section of the tutorial is about on this mesh, said when its first step starts.
    fn section_intro(&self, section: Section) -> String {
        let local = self.mesh == MeshKind::Local;
        match (section, self.mesh) {
            (Section::Tools, _) => "The tools the run uses, at pinned versions.".into(),
            (Section::Cluster, MeshKind::Kind) => {
                "A kind cluster (Kubernetes in Docker) of the harness's own, with its own kubeconfig; your current context is never touched.".into()
            }
            (Section::Cluster, _) => "Your cluster, as it is: the run writes only what the plan shows.".into(),
            (Section::Istio, MeshKind::Local) => format!(
                "One real Envoy plays Istio's data plane. The harness renders its configuration the way istiod would:\n\
                 one cluster per subset, named as Istio names them (`{}`),\n\
                 one route configuration per entry point, delivered by file-based RDS so that new weights apply without a restart.\n\
                 No sidecars to inject and plain HTTP on loopback, so no certificates.",
                envoy_config::cluster_name(0, &self.subsets[0], "<host>")
            ),
            (Section::Istio, _) => "Istio: the control plane (istiod) and the ingress gateway, with the run's own CA unless the cluster has one.".into(),
            (Section::Injection, _) => "Injection is proven, not assumed: the namespace asks for it, every pod runs istio-proxy, and its workload certificate chains to the mesh's root.".into(),
            (Section::Namespace, _) => {
                "The namespace of the workloads: it qualifies the service's host name.".into()
            }
            (Section::Deployments, _) => format!(
                "The GA and canary versions:\n{}",
                self.prepared_text.workloads
            ),
            (Section::Routing, _) => self.prepared_text.routing.clone(),
            (Section::EntryPoints, _) if local => {
                "One Envoy listener stands for the ingress gateway, the other for a client's sidecar inside the mesh.".into()
            }
            (Section::EntryPoints, _) => {
                "North-south through a port-forward to the ingress gateway; east-west from a client pod with a sidecar.".into()
            }
            (Section::Teardown, _) => "Everything the run started or created goes again.".into(),
        }
    }

    pub(super) fn tell_step(&self, step: &Step) {
        if self.stopping() {
            return;
        }
        let mut told = self.section.lock().expect("narrator lock");
        if !told.contains(&step.section) {
            told.push(step.section);
            let title = step.section.title();
            if step.section == Section::Teardown {
                self.section("", title);
            } else {
                let number = self
                    .sections_told
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;
                self.section(&format!("{number}."), title);
            }
            self.say(self.section_intro(step.section));
        }
        self.say(format!("{} {step}", self.palette.dim.apply_to("›")));
        let spinner = self.progress.spinner(step.to_string());
        *self.wait.lock().expect("narrator lock") = Some(spinner);
    }

    pub(super) fn tell_step_done(&self, _step: &Step, elapsed: Duration, error: Option<&str>) {
        if let Some(spinner) = self.wait.lock().expect("narrator lock").take() {
            spinner.finish_and_clear();
        }
        if let Some(error) = error {
            self.say(format!(
                "  {} {error}",
                self.palette.fail.apply_to("failed:")
            ));
        } else if elapsed > Duration::from_secs(2) {
            self.say(
                self.palette
                    .dim
                    .apply_to(format!("  done in {:.1} s", elapsed.as_secs_f64()))
                    .to_string(),
            );
        }
    }

    /// What the entry points of this routing stand for, for the introduction.
    pub fn entry_text(prepared: &Prepared) -> String {
        let routing = &prepared.routing;
        routing
            .entry_points()
            .into_iter()
            .map(|e| {
                let what = match e {
                    EntryPoint::Ingress => "through the ingress gateway",
                    EntryPoint::Mesh => "from inside the mesh",
                };
                format!("{e} ({what}, Host {})", envoy_config::authority(routing, e))
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }
}
