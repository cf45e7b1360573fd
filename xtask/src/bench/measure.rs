//! What every suite measures with: the machine line, process memory and load, latency
//! summaries, a watch that times when Services appear and get their IPs, and the release
//! runtime the suites run on.

// libc calls (sysconf, set_var before threads start); each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use ferrolb_tests::cluster::Cluster;
use ferrolb_tests::scenario::ingress;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::watcher;

/// When the bench's own watch first saw each Service, and first saw it
/// with an IP.
#[derive(Default)]
pub struct Sightings {
    pub listed: HashMap<String, Instant>,
    pub with_ip: HashMap<String, Instant>,
}

/// The sightings of a [`track`] watch; the watch stops when this is dropped (so it never
/// spins on a control plane that is gone).
pub struct Tracked {
    seen: Arc<Mutex<Sightings>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::ops::Deref for Tracked {
    type Target = Mutex<Sightings>;
    fn deref(&self) -> &Mutex<Sightings> {
        &self.seen
    }
}

impl Tracked {
    /// How many Services the watch has seen with an IP.
    pub fn with_ip_count(&self) -> usize {
        self.seen.lock().map(|s| s.with_ip.len()).unwrap_or(0)
    }

    /// From `start` to the watch first seeing the last of the Services with an IP so far
    /// (zero when none has one).
    pub fn last_ip_after(&self, start: Instant) -> Duration {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.with_ip.values().max().copied())
            .unwrap_or(start)
            - start
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches a namespace and records when each Service first appears and
/// first shows an IP.
pub fn track(api: Api<Service>) -> Tracked {
    let seen: Arc<Mutex<Sightings>> = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let s = match event {
                Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => s,
                _ => continue,
            };
            let (Some(name), Ok(mut map)) = (s.metadata.name.clone(), out.lock()) else {
                continue;
            };
            let now = Instant::now();
            map.listed.entry(name.clone()).or_insert(now);
            if !ingress(&s).is_empty() {
                map.with_ip.entry(name).or_insert(now);
            }
        }
    });
    Tracked { seen, task }
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The control plane's pids as the cluster writes them: etcd's, then the
/// apiserver's (none when the file cannot be read).
pub fn control_plane_pids(cluster: &Cluster) -> Vec<u32> {
    std::fs::read_to_string(cluster.dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The processes whose CPU time a measurement reports.
pub struct CpuMeter {
    pids: Vec<(&'static str, u32)>,
    start: Vec<f64>,
}

impl CpuMeter {
    pub fn start(cluster: &Cluster, controller: u32) -> CpuMeter {
        let mut pids = vec![("controller", controller), ("bench", std::process::id())];
        for (name, pid) in ["etcd", "apiserver"]
            .into_iter()
            .zip(control_plane_pids(cluster))
        {
            pids.push((name, pid));
        }
        let start = pids
            .iter()
            .map(|(_, pid)| cpu_seconds(*pid).unwrap_or(f64::NAN))
            .collect();
        CpuMeter { pids, start }
    }

    /// CPU seconds `name` (controller, bench, etcd, apiserver) used since the start.
    pub fn used(&self, name: &str) -> f64 {
        self.pids
            .iter()
            .zip(&self.start)
            .find(|((n, _), _)| *n == name)
            .map_or(f64::NAN, |((_, pid), start)| {
                cpu_seconds(*pid).unwrap_or(f64::NAN) - start
            })
    }

    pub fn report(&self) -> String {
        self.pids
            .iter()
            .zip(&self.start)
            .map(|((name, _), _)| format!("{name} {:.1} s", self.used(name)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

pub fn rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

/// A size field of /proc/PID/status, in MiB.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// The runtime every benchmark runs on, with our binaries built for release
/// ([`ferrolb_tests::env::binary`] reads `FERROLB_RELEASE`). Call it before any
/// thread of the benchmark starts.
pub fn release_runtime() -> Result<tokio::runtime::Runtime> {
    // SAFETY: called at the start of a benchmark, before any thread of ours starts.
    unsafe { std::env::set_var("FERROLB_RELEASE", "1") };
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// One line of min, p50, p90, p99 and max of `samples`, in milliseconds;
/// the samples go to the run's raw data as `name`.
pub fn summary(name: &str, mut samples: Vec<Duration>) -> String {
    super::raw::record_ms(name, samples.iter().copied());
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    match (samples.first(), samples.last()) {
        (Some(&min), Some(&max)) => format!(
            "{name}: n={} min {:.1} / p50 {:.1} / p90 {:.1} / p99 {:.1} / max {:.1} ms",
            samples.len(),
            ms(min),
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.9)),
            ms(percentile(&samples, 0.99)),
            ms(max),
        ),
        _ => format!("{name}: no samples"),
    }
}

/// The machine a benchmark ran on: cores, kernel, load and the date.
pub fn machine_line() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read("/proc/sys/kernel/osrelease");
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let date = std::process::Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "machine: {cores} cores, {memory_gib:.0} GiB, Linux {}, load average {}; {date}",
        kernel.trim(),
        load_average(),
    )
}
