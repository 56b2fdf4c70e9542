//! The policy thread: datastore inputs → [`Engine`] (the incremental compiler) → the nftables
//! [`PolicyDataplane`], plus `starling policy explain` answered from the same compiled state.
//!
//! Contract: the thread is spawned by `daemon::start`, so it runs in the daemon's network
//! namespace (nft programs the namespace of its caller), and waits for [`PolicyStart`] (the
//! node name is known only after start-up). Nothing is committed before every input kind has
//! been listed; the first commit is a resync against whatever tables a previous run left (so a
//! restart rewrites nothing that is right), later ones are the compiler's changes, batched over
//! every update already queued. A failed commit is retried with backoff (the applier resyncs
//! after a failure). A resync runs every `resync_interval`; the rule counters are read into
//! their metrics every 10 s. Health reporter `policy`: ready
//! after the first commit, not ready while the inputs are out of sync or a commit fails.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::dataplane::policy::{ApplyReport, PolicyDataplane};
use crate::health::HealthRegistry;
use crate::metrics::Metrics;
use crate::policy::engine::Engine;
use crate::policy::explain_view::{ExplainReply, ExplainView};
use crate::policy::inputs::{InputKind, InputUpdate};
use crate::syncer::Backoff;
use starling_policy::explain::{explain, Packet};
use starling_policy::render::RenderConfig;

/// Health reporter name.
pub const POLICY_REPORTER: &str = "policy";

/// How often the nft counters are read into the per-rule metrics (one netlink dump of the
/// tables' counter objects).
const COUNTERS_INTERVAL: Duration = Duration::from_secs(10);

/// Prefix of the host side of workload interfaces (Calico's `cali`).
const INTERFACE_PREFIX: &str = "cali";

/// What the thread needs once start-up has named the node.
pub struct PolicyStart {
    pub node_name: String,
    pub kinds: Vec<InputKind>,
    pub updates: mpsc::Receiver<InputUpdate>,
}

/// A question for the policy thread.
pub enum PolicyRequest {
    Explain {
        source: String,
        destination: String,
        packet: String,
        reply: oneshot::Sender<ExplainReply>,
    },
}

/// The daemon's side of the policy thread.
pub struct PolicyHandle {
    pub start: oneshot::Sender<PolicyStart>,
    pub requests: mpsc::Sender<PolicyRequest>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the policy thread (in the caller's network namespace).
pub fn spawn(
    metrics: Metrics,
    health: HealthRegistry,
    resync_interval: Duration,
) -> std::io::Result<PolicyHandle> {
    let (start_sender, start) = oneshot::channel::<PolicyStart>();
    let (requests_sender, requests) = mpsc::channel(16);
    health.register(POLICY_REPORTER, None, Instant::now());
    let thread = super::spawn_runtime_thread("policy", move || async move {
        let Ok(start) = start.await else { return };
        let dataplane =
            match PolicyDataplane::new(RenderConfig::default(), Some(metrics.policy_nft.clone())) {
                Ok(dataplane) => dataplane,
                Err(error) => {
                    tracing::error!(%error, "policy dataplane: policy is not enforced");
                    let detail = format!("policy dataplane not started: {error}");
                    health.report(POLICY_REPORTER, true, false, &detail, Instant::now());
                    return;
                }
            };
        let engine = Engine::new(&start.node_name, &start.kinds, INTERFACE_PREFIX);
        let worker = Worker {
            node_name: start.node_name,
            engine,
            dataplane,
            metrics,
            health,
            committed: false,
            failing: false,
            counters_failing: false,
        };
        worker.run(start.updates, requests, resync_interval).await;
    })?;
    Ok(PolicyHandle {
        start: start_sender,
        requests: requests_sender,
        thread,
    })
}

struct Worker {
    node_name: String,
    engine: Engine,
    dataplane: PolicyDataplane,
    metrics: Metrics,
    health: HealthRegistry,
    /// A program has been committed since start.
    committed: bool,
    /// The last commit failed; retry (as a resync) after the backoff.
    failing: bool,
    /// The last counter read failed (logged once).
    counters_failing: bool,
}

impl Worker {
    async fn run(
        mut self,
        mut updates: mpsc::Receiver<InputUpdate>,
        mut requests: mpsc::Receiver<PolicyRequest>,
        resync_interval: Duration,
    ) {
        self.report("waiting for the policy inputs");
        let mut backoff = Backoff::new();
        let mut retry_in = backoff.next_delay();
        let mut next_resync = tokio::time::Instant::now() + resync_interval;
        let mut counters = tokio::time::interval(COUNTERS_INTERVAL);
        counters.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let failing = self.failing;
            let retry = async move {
                if failing {
                    tokio::time::sleep(retry_in).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                update = updates.recv() => {
                    let Some(update) = update else { return };
                    self.take(update);
                    // Batch whatever is already queued into one commit.
                    while let Ok(update) = updates.try_recv() {
                        self.take(update);
                    }
                    if !self.failing {
                        self.commit(false);
                    }
                }
                Some(request) = requests.recv() => self.answer(request),
                () = retry => {
                    self.commit(true);
                    retry_in = if self.failing { backoff.next_delay() } else {
                        backoff = Backoff::new();
                        backoff.next_delay()
                    };
                }
                _ = counters.tick(), if self.committed => self.refresh_counters(),
                () = tokio::time::sleep_until(next_resync) => {
                    next_resync = tokio::time::Instant::now() + resync_interval;
                    if self.committed && !self.failing {
                        self.commit(true);
                    }
                }
            }
        }
    }

    fn take(&mut self, update: InputUpdate) {
        let started = Instant::now();
        for kind in self.engine.handle(update) {
            self.metrics
                .policy_engine
                .rejected_total
                .with_label_values(&[kind.name()])
                .inc();
        }
        let metrics = &self.metrics.policy_engine;
        metrics
            .compile_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.in_sync.set(i64::from(self.engine.in_sync()));
        let stats = self.engine.compiler().stats();
        let gauge = |vec: &prometheus::IntGaugeVec, label: &str, value: usize| {
            vec.with_label_values(&[label])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        gauge(&metrics.endpoints, "all", stats.endpoints);
        gauge(&metrics.endpoints, "local", stats.local_endpoints);
        gauge(&metrics.active, "policy", stats.active_policies);
        gauge(&metrics.active, "profile", stats.active_profiles);
    }

    /// Commits what changed (or, with `full`, compares everything with the kernel).
    fn commit(&mut self, full: bool) {
        if !self.engine.in_sync() {
            if self.committed {
                // Keep enforcing the last program while a watch relists.
                self.report("policy inputs out of sync; the last program stays in force");
            }
            return;
        }
        let changes = self.engine.take_changes();
        let program = self.engine.compiler().program();
        let result = if full || !self.committed {
            self.dataplane.resync(program)
        } else if changes.is_empty() {
            return;
        } else {
            self.dataplane.apply(program, &changes)
        };
        match result {
            Ok(report) => {
                self.log_commit(&report);
                let first = !self.committed;
                self.committed = true;
                self.failing = false;
                if first {
                    tracing::info!(
                        endpoints = program.endpoints.len(),
                        policies = program.policies.len(),
                        "first policy program committed"
                    );
                }
                self.report("policy program committed");
            }
            Err(error) => {
                if !self.failing {
                    tracing::error!(%error, "policy commit failed; retrying with a resync");
                }
                self.failing = true;
                self.report(&format!("policy commit failed: {error}"));
            }
        }
    }

    /// Moves the per-rule and per-endpoint counter metrics (a failed read is counted by the
    /// applier and logged once until a read succeeds again).
    fn refresh_counters(&mut self) {
        match self.dataplane.refresh_counters() {
            Ok(_) => self.counters_failing = false,
            Err(error) => {
                if !self.counters_failing {
                    tracing::warn!(%error, "reading the policy counters failed");
                }
                self.counters_failing = true;
            }
        }
    }

    fn log_commit(&self, report: &ApplyReport) {
        for warning in &report.warnings {
            tracing::warn!(%warning, "policy object not rendered (its traffic stays dropped)");
        }
        if report.objects > 0 {
            tracing::debug!(
                kind = ?report.kind,
                objects = report.objects,
                bytes = report.script_bytes,
                duration_ms = report.duration.as_secs_f64() * 1e3,
                "policy transaction committed"
            );
        }
    }

    fn report(&self, detail: &str) {
        let ready = self.committed && !self.failing;
        self.health
            .report(POLICY_REPORTER, true, ready, detail, Instant::now());
    }

    fn answer(&self, request: PolicyRequest) {
        match request {
            PolicyRequest::Explain {
                source,
                destination,
                packet,
                reply,
            } => {
                let answer = Packet::parse(&packet)
                    .map_err(|error| format!("{packet:?}: {error}"))
                    .and_then(|packet| {
                        explain(self.engine.compiler(), &source, &destination, packet)
                    });
                let reply_value = match answer {
                    Ok(explanation) => ExplainReply::Answer(Box::new(ExplainView::new(
                        &self.node_name,
                        &explanation,
                    ))),
                    Err(error) => ExplainReply::Error { error },
                };
                // The asker may have given up (timeout): nothing to do then.
                let _ = reply.send(reply_value);
            }
        }
    }
}
