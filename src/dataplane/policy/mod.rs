//! Network policy in nftables: the compiled [`Program`] rendered by `starling_policy::render`
//! into the tables `ip starling` / `ip6 starling` (layout in that module), applied here.
//!
//! Contract: [`PolicyDataplane::apply`] commits the changed keys as one atomic nft transaction
//! (all of it or nothing; run in-process by [`libnft`], as `nft -f` would); [`PolicyDataplane::resync`] reads both tables back
//! (`nft -j list table`) and writes only what differs, nothing when they are right. After any
//! failure, and before the first commit, `apply` resyncs instead: the renderer's memory is
//! trusted only when it matches what nft accepted. No other table is ever named. The calls
//! block on nft (run them on a blocking thread from async code), which works in the calling
//! thread's network namespace.
//!
//! Every policy and profile rule and every endpoint chain's own drops count on named nft
//! counters (`starling_policy::render::counters`); [`PolicyDataplane::refresh_counters`] reads
//! them (one nfnetlink dump of the counter objects, no rule read: [`netlink`]) and moves the `starling_policy_rule_*` and
//! `starling_policy_denied_*` metrics by their growth. Counter values never count as a
//! difference: an idle resync still writes nothing.

pub mod counters;
pub mod lean;
pub mod libnft;
pub mod metrics;
pub mod netlink;
pub mod nft;

use std::time::{Duration, Instant};

use starling_policy::program::{Changes, Family, Program};
use starling_policy::render::installed::{self, ParseError};
use starling_policy::render::{
    nft_family, ConfigError, CounterValue, RenderConfig, Renderer, TableView, Touched, Transaction,
};

pub use counters::{CounterReport, Series};
pub use libnft::NftLibrary;
pub use metrics::PolicyNftMetrics;
pub use nft::{Nft, NftCommand, NftError};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy dataplane configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("policy nft transaction ({bytes} bytes, {objects} objects): {source}")]
    Transaction {
        bytes: usize,
        objects: usize,
        #[source]
        source: NftError,
    },
    #[error("reading the installed policy tables: {0}")]
    Read(#[source] NftError),
    #[error("reading the policy counters: {0}")]
    ReadCounters(#[source] NftError),
    #[error("parsing table {family} starling: {source}")]
    Parse {
        family: &'static str,
        #[source]
        source: ParseError,
    },
}

/// Whether a transaction came from the changed keys or from comparing with the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyKind {
    Incremental,
    Resync,
}

impl ApplyKind {
    fn label(self) -> &'static str {
        match self {
            ApplyKind::Incremental => "incremental",
            ApplyKind::Resync => "resync",
        }
    }
}

/// What one apply or resync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub kind: ApplyKind,
    pub touched: Touched,
    /// Sets, elements and chains written (`touched.objects()`).
    pub objects: usize,
    /// Size of the nft script run; 0 when nothing needed writing (and nft did not run).
    pub script_bytes: usize,
    /// Render, read-back (resync) and commit.
    pub duration: Duration,
    /// Program objects that could not be rendered (their traffic stays dropped).
    pub warnings: Vec<String>,
}

pub struct PolicyDataplane {
    renderer: Renderer,
    nft: Box<dyn Nft>,
    metrics: Option<PolicyNftMetrics>,
    /// The renderer's state equals what nft last accepted.
    in_sync: bool,
    counters: counters::CounterBook,
}

impl PolicyDataplane {
    /// With the real nftables: transactions through libnftables in-process ([`NftLibrary`]),
    /// or the `nft` binary from `PATH` when the library cannot be loaded (said once, in the log).
    pub fn new(
        config: RenderConfig,
        metrics: Option<PolicyNftMetrics>,
    ) -> Result<PolicyDataplane, PolicyError> {
        let nft: Box<dyn Nft> = match NftLibrary::load() {
            Ok(library) => Box::new(library),
            Err(reason) => {
                tracing::warn!(%reason, "policy transactions run the nft binary instead of libnftables");
                Box::new(NftCommand::default())
            }
        };
        PolicyDataplane::with_nft(config, nft, metrics)
    }

    pub fn with_nft(
        config: RenderConfig,
        nft: Box<dyn Nft>,
        metrics: Option<PolicyNftMetrics>,
    ) -> Result<PolicyDataplane, PolicyError> {
        Ok(PolicyDataplane {
            renderer: Renderer::new(config)?,
            nft,
            metrics,
            in_sync: false,
            counters: counters::CounterBook::default(),
        })
    }

    /// The renderer (desired tables and object counts).
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// Commits the keys in `changes` (the program's other keys are unchanged since the last
    /// call). Before the first commit and after a failure this is a [`resync`](Self::resync).
    pub fn apply(
        &mut self,
        program: &Program,
        changes: &Changes,
    ) -> Result<ApplyReport, PolicyError> {
        if !self.in_sync {
            return self.resync(program);
        }
        let started = Instant::now();
        let transaction = self.renderer.update(program, changes);
        self.commit(transaction, ApplyKind::Incremental, started)
    }

    /// Renders the whole program, compares it with the installed tables and writes only the
    /// difference (nothing when the kernel is right).
    pub fn resync(&mut self, program: &Program) -> Result<ApplyReport, PolicyError> {
        let started = Instant::now();
        self.in_sync = false;
        let warnings = self.renderer.rebuild(program).warnings;
        let installed = match self.read_installed() {
            Ok(installed) => installed,
            Err(error) => {
                self.count_failure(ApplyKind::Resync);
                return Err(error);
            }
        };
        let mut transaction = self.renderer.resync(&installed);
        drop(installed);
        transaction.warnings = warnings;
        let result = self.commit(transaction, ApplyKind::Resync, started);
        // Its JSON read-back is hundreds of MiB of short-lived values at 1000 x 2000.
        super::release_freed_heap();
        result
    }

    /// Both installed tables, parsed (an absent table is an empty view).
    pub fn read_installed(&mut self) -> Result<[TableView; 2], PolicyError> {
        let mut views: [TableView; 2] = Default::default();
        for (index, family) in [Family::V4, Family::V6].into_iter().enumerate() {
            if let Some(json) = self.nft.list(family).map_err(PolicyError::Read)? {
                views[index] =
                    installed::parse_table(&json, family).map_err(|source| PolicyError::Parse {
                        family: nft_family(family),
                        source,
                    })?;
            }
        }
        Ok(views)
    }

    /// Reads every named counter of both tables and adds what each grew since the last read
    /// to its metric series (see [`metrics`]). Counters are named through the last rendering
    /// (tiers from the rendered endpoints' pipelines); call it after `apply`/`resync` on an
    /// interval. A failed read changes no metric and counts as a `counters` failure.
    pub fn refresh_counters(&mut self) -> Result<CounterReport, PolicyError> {
        let started = Instant::now();
        let read = self.read_counters();
        let values = match read {
            Ok(values) => values,
            Err(error) => {
                if let Some(metrics) = &self.metrics {
                    metrics
                        .failures_total
                        .with_label_values(&["counters"])
                        .inc();
                }
                return Err(error);
            }
        };
        let mut report = self
            .counters
            .account(&self.renderer, values, self.metrics.as_ref());
        report.duration = started.elapsed();
        if let Some(metrics) = &self.metrics {
            metrics
                .counters_read_seconds
                .observe(report.duration.as_secs_f64());
        }
        Ok(report)
    }

    fn read_counters(&mut self) -> Result<[Vec<CounterValue>; 2], PolicyError> {
        let v4 = self
            .nft
            .counters(Family::V4)
            .map_err(PolicyError::ReadCounters)?;
        let v6 = self
            .nft
            .counters(Family::V6)
            .map_err(PolicyError::ReadCounters)?;
        Ok([v4, v6])
    }

    fn count_failure(&self, kind: ApplyKind) {
        if let Some(metrics) = &self.metrics {
            metrics
                .failures_total
                .with_label_values(&[kind.label()])
                .inc();
        }
    }

    fn commit(
        &mut self,
        transaction: Transaction,
        kind: ApplyKind,
        started: Instant,
    ) -> Result<ApplyReport, PolicyError> {
        let objects = transaction.touched.objects();
        // A change in the forms nft runs without listing every chain first (see `lean`).
        let lean = match kind {
            ApplyKind::Incremental => lean::rewrite(&transaction.script, &self.renderer),
            ApplyKind::Resync => None,
        };
        let script = lean.as_deref().unwrap_or(&transaction.script);
        let bytes = script.len();
        if !script.is_empty() {
            if let Err(source) = self.nft.run(script) {
                self.in_sync = false;
                self.count_failure(kind);
                tracing::warn!(%source, kind = kind.label(), "policy nft transaction rejected");
                return Err(PolicyError::Transaction {
                    bytes,
                    objects,
                    source,
                });
            }
        }
        self.in_sync = true;
        let duration = started.elapsed();
        for warning in &transaction.warnings {
            tracing::warn!(%warning, "policy object not rendered");
        }
        if let Some(metrics) = &self.metrics {
            let label = [kind.label()];
            // Objects first: a scrape that sees the transaction sees what it wrote.
            metrics
                .objects_touched_total
                .with_label_values(&label)
                .inc_by(objects as u64);
            if bytes > 0 {
                metrics.transactions_total.with_label_values(&label).inc();
                metrics.transaction_seconds.observe(duration.as_secs_f64());
            }
            for family in [Family::V4, Family::V6] {
                let counts = self.renderer.counts(family);
                let family = [nft_family(family)];
                let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
                metrics
                    .chains
                    .with_label_values(&family)
                    .set(gauge(counts.chains));
                metrics
                    .rules
                    .with_label_values(&family)
                    .set(gauge(counts.rules));
                metrics
                    .sets
                    .with_label_values(&family)
                    .set(gauge(counts.sets));
            }
        }
        Ok(ApplyReport {
            kind,
            touched: transaction.touched,
            objects,
            script_bytes: bytes,
            duration,
            warnings: transaction.warnings,
        })
    }
}

#[cfg(test)]
mod tests;
