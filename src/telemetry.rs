//! Logs and metrics: the tracing subscriber (text or JSON), the process-wide Prometheus recorder,
//! the HTTP middleware that counts requests by route and status and times them, and process
//! metrics read from `/proc` at scrape time.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber. Later calls (tests start many apps) do nothing.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).try_init(),
    };
}

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("http_request_duration_seconds".into()), LATENCY_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full("aether_chat_delivery_seconds".into()), LATENCY_BUCKETS)
            })
            .expect("buckets are non-empty")
            .install_recorder()
            .expect("no other metrics recorder is installed")
    })
}

/// Counts and times every request by method, route template (never the raw path, so that the
/// label set stays bounded) and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |path| path.as_str()).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2]).record(started.elapsed().as_secs_f64());
    response
}

/// The metrics page: everything recorded plus the process metrics of the Prometheus conventions.
pub fn render() -> String {
    let mut text = prometheus().render();
    text.push_str(&process_metrics());
    text
}

fn process_metrics() -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: f64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    if let Some(stat) = ProcStat::read() {
        gauge("process_cpu_seconds_total", "User and system CPU time spent in seconds.", "counter", stat.cpu_seconds);
        gauge("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", stat.rss_bytes);
        gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", stat.vsize_bytes);
        gauge("process_threads", "Number of OS threads.", "gauge", stat.threads);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge("process_open_fds", "Number of open file descriptors.", "gauge", fds.count() as f64);
    }
    gauge("process_start_time_seconds", "Start time of the process since the Unix epoch.", "gauge", start_time());
    out
}

fn start_time() -> f64 {
    static START: OnceLock<f64> = OnceLock::new();
    *START.get_or_init(|| crate::db::now_ms() as f64 / 1000.0)
}

struct ProcStat {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    threads: f64,
}

impl ProcStat {
    /// Reads `/proc/self/stat` and `/proc/self/status` (proc(5)); `None` off Linux.
    fn read() -> Option<ProcStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name may contain spaces: the fields start after its closing parenthesis.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
        // CPU times are in USER_HZ ticks, which Linux fixes at 100 for user space.
        let cpu_seconds = (field(14)? + field(15)?) / 100.0;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = |key: &str| -> Option<f64> {
            let line = status.lines().find(|line| line.starts_with(key))?;
            Some(line[key.len()..].trim().trim_end_matches("kB").trim().parse::<f64>().ok()? * 1024.0)
        };
        Some(ProcStat { cpu_seconds, threads: field(20)?, vsize_bytes: kib("VmSize:")?, rss_bytes: kib("VmRSS:")? })
    }
}

/// Records the start time now, so that `process_start_time_seconds` is the start, not the first scrape.
pub fn mark_start() {
    start_time();
}
