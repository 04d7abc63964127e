//! An in-process mesh for tests of the session and the walk: it executes a small plan of its
//! own (a start and a wait), routes every request with the weights last applied (seeded, so a
//! test is repeatable) and answers with the subset's version, optionally slowly.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::istio::VirtualService;
use crate::mesh::{Mesh, Planned};
use crate::prober::{Batch, OnSample, Sample, Target};
use crate::routing::{EntryPoint, Routing};
use crate::scenario::Weights;
use crate::steps::{Action, Condition, Process, Section, Start, Step, Wait};

/// The weights the fake proxies route with, shared by the mesh and its targets.
#[derive(Clone)]
struct Routes {
    weights: Arc<Mutex<Weights>>,
    versions: Vec<(String, String)>,
    rng: Arc<Mutex<StdRng>>,
    delay: Duration,
}

pub struct FakeMesh {
    routes: Routes,
    entries: Vec<EntryPoint>,
    executed: Vec<Step>,
}

/// The plan of a fake mesh: a process and its wait, then the entry points.
pub fn plan(routing: &Routing, delay: Duration, seed: u64) -> Planned {
    let versions: Vec<(String, String)> = routing
        .subsets
        .iter()
        .map(|s| (s.name.clone(), s.version.clone()))
        .collect();
    let weights = versions
        .iter()
        .map(|(s, _)| (s.clone(), if s == &versions[0].0 { 100 } else { 0 }))
        .collect();
    let mesh = FakeMesh {
        routes: Routes {
            weights: Arc::new(Mutex::new(weights)),
            versions,
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            delay,
        },
        entries: routing.entry_points(),
        executed: Vec::new(),
    };
    let setup = vec![
        Step::new(
            Section::Istio,
            Action::Start(Start {
                process: Process::Envoy,
                invocation: crate::invocation::Invocation::new("fake-envoy", vec![]),
                log: "fake.log".into(),
            }),
        ),
        Step::new(
            Section::Istio,
            Action::Wait(Wait {
                condition: Condition::EnvoyListeners {
                    entries: routing.entry_points(),
                },
                bound: Duration::from_secs(1),
            }),
        ),
    ];
    let teardown = vec![Step::new(Section::Teardown, Action::Stop(Process::Envoy))];
    Planned {
        mesh: Box::new(mesh),
        setup,
        teardown,
        locks: Vec::new(),
    }
}

struct FakeTarget {
    routes: Routes,
}

#[async_trait]
impl Target for FakeTarget {
    fn describe(&self) -> String {
        "the fake mesh".into()
    }

    async fn collect(&self, batch: Batch, on_sample: OnSample<'_>) -> anyhow::Result<Vec<Sample>> {
        let started = Instant::now();
        let mut samples = Vec::new();
        while (samples.len() as u64) < batch.want {
            if !self.routes.delay.is_zero() {
                tokio::time::sleep(self.routes.delay).await;
            }
            let weights = self.routes.weights.lock().expect("weights").clone();
            let total: u32 = weights.values().sum();
            let draw = self
                .routes
                .rng
                .lock()
                .expect("rng")
                .random_range(0..total.max(1));
            let mut acc = 0;
            let mut version = None;
            for (subset, v) in &self.routes.versions {
                acc += weights.get(subset).copied().unwrap_or(0);
                if draw < acc {
                    version = Some(v.clone());
                    break;
                }
            }
            let sample = Sample {
                at_ms: started.elapsed().as_secs_f64() * 1e3,
                latency_ms: 1.0,
                version,
                status: Some(200),
                error: None,
            };
            on_sample(&sample);
            samples.push(sample);
        }
        Ok(samples)
    }
}

#[async_trait]
impl Mesh for FakeMesh {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn execute(&mut self, step: &Step) -> anyhow::Result<()> {
        self.executed.push(step.clone());
        Ok(())
    }

    fn teardown(&self) -> Vec<Step> {
        if self
            .executed
            .iter()
            .any(|s| matches!(s.action, Action::Start(_)))
            && !self
                .executed
                .iter()
                .any(|s| matches!(s.action, Action::Stop(_)))
        {
            vec![Step::new(Section::Teardown, Action::Stop(Process::Envoy))]
        } else {
            Vec::new()
        }
    }

    fn entry_points(&self) -> Vec<EntryPoint> {
        self.entries.clone()
    }

    async fn apply(&mut self, vs: &VirtualService) -> anyhow::Result<()> {
        let mut weights = Weights::new();
        for r in vs.spec.http.iter().flat_map(|h| &h.route) {
            if let Some(subset) = &r.destination.subset {
                weights.insert(subset.clone(), r.weight.unwrap_or(0));
            }
        }
        *self.routes.weights.lock().expect("weights") = weights;
        Ok(())
    }

    async fn await_weights(
        &mut self,
        _weights: &Weights,
        _timeout: Duration,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    fn target(&self, _entry: EntryPoint) -> anyhow::Result<Arc<dyn Target>> {
        Ok(Arc::new(FakeTarget {
            routes: self.routes.clone(),
        }))
    }

    async fn diagnostics(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        Ok(())
    }
}
