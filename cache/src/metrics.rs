//! Prometheus counters, kept as plain atomics: a scrape renders them as text, and the hot
//! narinfo path pays one relaxed increment.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub narinfo_hits: AtomicU64,
    pub narinfo_misses: AtomicU64,
    pub nar_hits: AtomicU64,
    pub nar_misses: AtomicU64,
    pub nar_bytes_served: AtomicU64,
    pub nar_uploads: AtomicU64,
    pub nar_upload_bytes: AtomicU64,
    pub narinfo_uploads: AtomicU64,
    pub uploads_rejected: AtomicU64,
    pub unauthorized: AtomicU64,
    pub gc_runs: AtomicU64,
    pub gc_deleted_paths: AtomicU64,
    pub gc_freed_bytes: AtomicU64,
}

pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// The Prometheus text exposition; `paths` and `stored_bytes` are gauges read from the index.
    pub fn render(&self, paths: u64, stored_bytes: u64) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "pcr_cache_narinfo_requests_total",
            "counter",
            "narinfo lookups (GET and HEAD) by result.",
            &[
                ("{result=\"hit\"}", get(&self.narinfo_hits)),
                ("{result=\"miss\"}", get(&self.narinfo_misses)),
            ],
        );
        metric(
            "pcr_cache_nar_requests_total",
            "counter",
            "NAR downloads by result.",
            &[
                ("{result=\"hit\"}", get(&self.nar_hits)),
                ("{result=\"miss\"}", get(&self.nar_misses)),
            ],
        );
        metric(
            "pcr_cache_nar_bytes_served_total",
            "counter",
            "NAR bytes sent to clients.",
            &[("", get(&self.nar_bytes_served))],
        );
        metric(
            "pcr_cache_uploads_total",
            "counter",
            "Accepted uploads by kind.",
            &[
                ("{kind=\"nar\"}", get(&self.nar_uploads)),
                ("{kind=\"narinfo\"}", get(&self.narinfo_uploads)),
            ],
        );
        metric(
            "pcr_cache_upload_bytes_total",
            "counter",
            "NAR bytes received in accepted uploads.",
            &[("", get(&self.nar_upload_bytes))],
        );
        metric(
            "pcr_cache_uploads_rejected_total",
            "counter",
            "Uploads refused for failing verification.",
            &[("", get(&self.uploads_rejected))],
        );
        metric(
            "pcr_cache_unauthorized_total",
            "counter",
            "Requests refused for a missing or wrong token.",
            &[("", get(&self.unauthorized))],
        );
        metric(
            "pcr_cache_gc_runs_total",
            "counter",
            "Garbage collections run.",
            &[("", get(&self.gc_runs))],
        );
        metric(
            "pcr_cache_gc_deleted_paths_total",
            "counter",
            "Store paths deleted by garbage collection.",
            &[("", get(&self.gc_deleted_paths))],
        );
        metric(
            "pcr_cache_gc_freed_bytes_total",
            "counter",
            "NAR bytes freed by garbage collection.",
            &[("", get(&self.gc_freed_bytes))],
        );
        metric(
            "pcr_cache_paths",
            "gauge",
            "Published store paths.",
            &[("", paths)],
        );
        metric(
            "pcr_cache_stored_bytes",
            "gauge",
            "Bytes of NAR files on disk.",
            &[("", stored_bytes)],
        );
        out
    }
}
