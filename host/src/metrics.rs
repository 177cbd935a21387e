//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::runtime::{Invocation, InvokeError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    plugin: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    plugin: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    plugin: String,
    limit: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    uploads: Family<StatusLabel, Counter>,
    upload_seconds: Histogram,
    bytes_in: Counter,
    bytes_out: Counter,
    post_store_jobs: Family<EventLabel, Counter>,
    post_store_depth: Gauge,
    post_store_oldest_seconds: Gauge,
    post_store_dead: Gauge,
    connections_open: Gauge,
    connection_timeouts: Family<KindLabel, Counter>,
    orphans_swept: Family<KindLabel, Counter>,
    resumable: Family<EventLabel, Counter>,
    resumable_bytes: Counter,
    invocations: Family<OutcomeLabels, Counter>,
    fuel: Family<PluginLabel, Counter>,
    cache_ops: Family<OpLabels, Counter>,
    budget_stops: Family<LimitLabels, Counter>,
    plugin_seconds: Histograms<PluginLabel>,
    plugin_active: Family<PluginLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("airlock");
        let uploads = Family::<StatusLabel, Counter>::default();
        registry.register("uploads", "Upload requests by HTTP status", uploads.clone());
        let upload_seconds = latency_histogram();
        registry.register(
            "upload_duration_seconds",
            "Upload latency, request to response",
            upload_seconds.clone(),
        );
        let bytes_in = Counter::default();
        registry.register(
            "upload_bytes",
            "Bytes received in upload bodies",
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register(
            "download_bytes",
            "Bytes sent in content and derived downloads",
            bytes_out.clone(),
        );
        let post_store_jobs = Family::<EventLabel, Counter>::default();
        registry.register(
            "post_store_jobs",
            "Post-store jobs by event: queued, done, retried (a host failure), dead (given up), dropped (the upload is gone)",
            post_store_jobs.clone(),
        );
        let post_store_depth = Gauge::default();
        registry.register(
            "post_store_queue_depth",
            "Post-store jobs queued or running (every node's, with Redis)",
            post_store_depth.clone(),
        );
        let post_store_oldest_seconds = Gauge::default();
        registry.register(
            "post_store_oldest_job_seconds",
            "Age of the oldest queued post-store job",
            post_store_oldest_seconds.clone(),
        );
        let post_store_dead = Gauge::default();
        registry.register(
            "post_store_dead_letters",
            "Post-store jobs given up after their attempts",
            post_store_dead.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "http_connections_open",
            "HTTP connections open now",
            connections_open.clone(),
        );
        let connection_timeouts = Family::<KindLabel, Counter>::default();
        registry.register(
            "http_connection_timeouts",
            "Connections closed by a timeout: header_read or keep_alive",
            connection_timeouts.clone(),
        );
        let orphans_swept = Family::<KindLabel, Counter>::default();
        registry.register(
            "orphans_swept",
            "Stored objects removed because no record owns them: content, derived or tombstone",
            orphans_swept.clone(),
        );
        let resumable = Family::<EventLabel, Counter>::default();
        registry.register(
            "resumable_uploads",
            "Resumable (tus) upload events: created, finished, expired, terminated, resumed, checksum_failed",
            resumable.clone(),
        );
        let resumable_bytes = Counter::default();
        registry.register(
            "resumable_bytes",
            "Bytes received in resumable (tus) uploads and kept",
            resumable_bytes.clone(),
        );
        let invocations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "plugin_invocations",
            "Plugin invocations by outcome",
            invocations.clone(),
        );
        let fuel = Family::<PluginLabel, Counter>::default();
        registry.register(
            "plugin_fuel",
            "Fuel used by plugin invocations",
            fuel.clone(),
        );
        let cache_ops = Family::<OpLabels, Counter>::default();
        registry.register(
            "plugin_cache_ops",
            "Cache operations by plugin and operation (one per key)",
            cache_ops.clone(),
        );
        let budget_stops = Family::<LimitLabels, Counter>::default();
        registry.register(
            "plugin_budget_stops",
            "Invocations stopped for exceeding a budget, by limit",
            budget_stops.clone(),
        );
        let plugin_seconds: Histograms<PluginLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "plugin_duration_seconds",
            "Plugin invocation wall time",
            plugin_seconds.clone(),
        );
        let plugin_active = Family::<PluginLabel, Gauge>::default();
        registry.register(
            "plugin_active",
            "1 when the plugin is invoked, 0 when quarantined or disabled",
            plugin_active.clone(),
        );
        Self {
            registry,
            uploads,
            upload_seconds,
            bytes_in,
            bytes_out,
            post_store_jobs,
            post_store_depth,
            post_store_oldest_seconds,
            post_store_dead,
            connections_open,
            connection_timeouts,
            orphans_swept,
            resumable,
            resumable_bytes,
            invocations,
            fuel,
            cache_ops,
            budget_stops,
            plugin_seconds,
            plugin_active,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One upload request finished.
    pub fn upload(&self, status: u16, seconds: f64) {
        self.uploads.get_or_create(&StatusLabel { status }).inc();
        self.upload_seconds.observe(seconds);
    }

    /// Upload body bytes received.
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    /// Download bytes sent.
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    /// A post-store job `event` (`queued`, `done`, `retried`, `dead`,
    /// `dropped`).
    pub fn post_store_job(&self, event: &'static str) {
        self.post_store_jobs
            .get_or_create(&EventLabel { event })
            .inc();
    }

    /// The post-store queue now: jobs in it, the oldest one's age, dead
    /// letters.
    pub fn post_store_queue(&self, depth: u64, oldest_seconds: u64, dead: u64) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.post_store_depth.set(gauge(depth));
        self.post_store_oldest_seconds.set(gauge(oldest_seconds));
        self.post_store_dead.set(gauge(dead));
    }

    /// An HTTP connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// An HTTP connection was closed.
    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// A connection was closed by the `kind` timeout.
    pub fn connection_timed_out(&self, kind: &'static str) {
        self.connection_timeouts
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// `n` orphaned objects of `kind` were removed.
    pub fn orphans_swept(&self, kind: &'static str, n: u64) {
        self.orphans_swept
            .get_or_create(&KindLabel { kind })
            .inc_by(n);
    }

    /// A resumable upload `event` happened (`created`, `finished`,
    /// `expired`, `terminated`, `resumed`, `checksum_failed`).
    pub fn resumable(&self, event: &'static str) {
        self.resumable.get_or_create(&EventLabel { event }).inc();
    }

    /// `n` bytes of a resumable upload were received and kept.
    pub fn resumable_bytes(&self, n: u64) {
        self.resumable_bytes.inc_by(n);
    }

    /// Marks a plugin active (true) or not.
    pub fn plugin_active(&self, plugin: &str, active: bool) {
        self.plugin_active
            .get_or_create(&PluginLabel {
                plugin: plugin.into(),
            })
            .set(i64::from(active));
    }

    /// Records one plugin invocation.
    pub fn invocation<T>(&self, plugin: &str, invocation: &Invocation<T>) {
        let outcome = invocation.outcome_key();
        let label = PluginLabel {
            plugin: plugin.into(),
        };
        self.invocations
            .get_or_create(&OutcomeLabels {
                plugin: plugin.into(),
                outcome,
            })
            .inc();
        let report = &invocation.report;
        if let Some(fuel) = report.fuel_used {
            self.fuel.get_or_create(&label).inc_by(fuel);
        }
        for (op, n) in report.usage.cache_ops.by_kind() {
            if n > 0 {
                self.cache_ops
                    .get_or_create(&OpLabels {
                        plugin: plugin.into(),
                        op,
                    })
                    .inc_by(n);
            }
        }
        if let Some(limit) = invocation
            .outcome
            .as_ref()
            .err()
            .and_then(InvokeError::limit)
        {
            self.budget_stops
                .get_or_create(&LimitLabels {
                    plugin: plugin.into(),
                    limit: limit.key(),
                })
                .inc();
        }
        self.plugin_seconds
            .get_or_create(&label)
            .observe(report.wall_time_ms / 1000.0);
    }
}
