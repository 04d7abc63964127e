//! An in-process mesh for tests of the session and the walk: it executes a small plan of its
//! own (a start and a wait), routes every request on its own with the weights last applied
//! (seeded, so a test is repeatable) and answers with the subset's version, optionally slowly,
//! off by a few points, or failing some requests of a subset (which still carry its header, as
//! Envoy's answers do).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::mesh::{Mesh, Planned};
use tokio_util::sync::CancellationToken;

use crate::prober::{Probe, Sample, Sink, Target};
use crate::routing::{EntryPoint, Routing, STAGE_HEADER, Staged};
use crate::scenario::Weights;
use crate::steps::{Action, Condition, Process, Section, Start, Step, Wait};

/// The weights the fake proxies route with, shared by the mesh and its targets.
#[derive(Clone)]
struct Routes {
    weights: Arc<Mutex<Weights>>,
    versions: Vec<(String, String)>,
    rng: Arc<Mutex<StdRng>>,
    delay: Duration,
    /// The stage stamp answers carry: what the last apply set.
    stamp: Arc<Mutex<String>>,
    faults: Faults,
}

/// How the fake mesh misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added to the canary's share of every request (in [-1, 1]; the result is clamped).
    pub canary_shift: f64,
    /// Per subset, the probability that a request it serves fails with HTTP 503.
    pub error_rates: BTreeMap<String, f64>,
}

pub struct FakeMesh {
    routes: Routes,
    entries: Vec<EntryPoint>,
    executed: Vec<Step>,
}

/// The plan of a fake mesh: a process and its wait, then the entry points.
pub fn plan(routing: &Routing, delay: Duration, seed: u64) -> Planned {
    plan_with(routing, delay, seed, Faults::default())
}

/// The plan of a fake mesh with faults.
pub fn plan_with(routing: &Routing, delay: Duration, seed: u64, faults: Faults) -> Planned {
    let versions: Vec<(String, String)> = routing
        .subsets
        .iter()
        .map(|s| (s.name.clone(), s.backend_version().to_string()))
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
            stamp: Arc::new(Mutex::new(String::new())),
            faults,
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

    async fn stream(
        &self,
        probe: &Probe,
        stop: &CancellationToken,
        sink: &Sink,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        for seq in 0..probe.max_requests {
            if stop.is_cancelled() {
                break;
            }
            if !self.routes.delay.is_zero() {
                tokio::time::sleep(self.routes.delay).await;
            }
            let weights = self.routes.weights.lock().expect("weights").clone();
            let total: u32 = weights.values().sum();
            let (canary, baseline) = (&self.routes.versions[1].0, &self.routes.versions[0].0);
            let share =
                f64::from(weights.get(canary).copied().unwrap_or(0)) / f64::from(total.max(1));
            let share = (share + self.routes.faults.canary_shift).clamp(0.0, 1.0);
            let (draw, fail_draw) = {
                let mut rng = self.routes.rng.lock().expect("rng");
                (rng.random::<f64>(), rng.random::<f64>())
            };
            let subset = if total == 0 {
                None
            } else if draw < share {
                Some(canary.clone())
            } else {
                Some(baseline.clone())
            };
            let reported = subset.as_ref().and_then(|s| {
                self.routes
                    .versions
                    .iter()
                    .find(|(n, _)| n == s)
                    .map(|(_, v)| v.clone())
            });
            let error_rate = subset
                .as_ref()
                .and_then(|s| self.routes.faults.error_rates.get(s))
                .copied()
                .unwrap_or(0.0);
            let failed = fail_draw < error_rate;
            let sample = Sample {
                seq,
                at_ms: started.elapsed().as_secs_f64() * 1e3,
                latency_ms: 1.0,
                status: Some(if failed { 503 } else { 200 }),
                subset,
                stamp: Some(self.routes.stamp.lock().expect("stamp").clone()),
                reported: if failed { None } else { reported },
                error: failed.then(|| "HTTP 503".to_string()),
            };
            if sink.send(sample).is_err() {
                break;
            }
        }
        Ok(())
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

    async fn apply(&mut self, staged: &Staged) -> anyhow::Result<()> {
        let mut weights = Weights::new();
        for r in staged
            .virtual_service
            .spec
            .http()
            .iter()
            .flat_map(|h| h.route())
        {
            if let Some(subset) = &r.destination.subset {
                weights.insert(subset.clone(), r.weight.unwrap_or(0).max(0) as u32);
            }
        }
        *self.routes.weights.lock().expect("weights") = weights;
        let stamp = staged.body["spec"]["http"][0]["headers"]["response"]["set"][STAGE_HEADER]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *self.routes.stamp.lock().expect("stamp") = stamp;
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
