//! Controller cold start, FerroLB and MetalLB, each on a fresh control plane: N Services
//! created while the controller is stopped, then the controller started.

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use kube::Api;

use ferrolb_tests::cluster::Cluster;
use ferrolb_tests::env::{Controller, apply_deploy};
use ferrolb_tests::metallb;
use ferrolb_tests::process::terminate;

use super::super::controller::{Samples, create_services, listed_faults, sample_latency};
use super::super::measure::{CpuMeter, load_average, peak_rss_mib, percentile, track};
use super::Project;

/// The one pool of both projects: 65,536 IPv6 addresses.
const POOL: &str = "2001:db8:b::/112";
/// The namespace of the measured Services (unclassed: both controllers serve them).
const NAMESPACE: &str = "bench";
/// The longest a cold start may take before the run fails.
const COLD_START_LIMIT: Duration = Duration::from_secs(600);

/// What one cold start measured.
#[derive(Debug, Clone)]
pub struct ColdStart {
    /// Controller start to the last of the N Services showing an IP.
    pub all_ips: Duration,
    /// The controller's VmHWM at the end of the run (after the latency samples).
    pub peak_rss_mib: f64,
    /// CPU seconds from the controller's start to the last IP.
    pub controller_cpu: f64,
    pub apiserver_cpu: f64,
    /// IPs shown by more than one Service, and Services without exactly one IP, over the
    /// N and the latency Services.
    pub duplicates: usize,
    pub missing: usize,
    /// Create to IP over the latency Services, p50 and p99.
    pub latency_p50: Duration,
    pub latency_p99: Duration,
}

/// A running controller of either project.
enum Running {
    FerroLB(Controller),
    MetalLB(Child),
}

impl Running {
    fn start(project: Project, cluster: &Cluster) -> Result<Running> {
        Ok(match project {
            Project::FerroLB => Running::FerroLB(Controller::start_installed_as_admin(
                cluster,
                &["--no-leader-election"],
            )?),
            Project::MetalLB => Running::MetalLB(metallb::start_controller(cluster)?),
        })
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Running::FerroLB(c) => c.pid(),
            Running::MetalLB(c) => Some(c.id()),
        }
    }

    fn is_running(&mut self) -> bool {
        match self {
            Running::FerroLB(c) => c.is_running(),
            Running::MetalLB(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    fn stop(&mut self) {
        match self {
            Running::FerroLB(c) => c.stop(),
            Running::MetalLB(c) => terminate(c, Duration::from_secs(10)),
        }
    }
}

/// Both projects' CRDs and pools (the same range), so that the control planes of the two
/// differ only in which controller runs; and the Services' namespace.
fn prepare(cluster: &Cluster) -> Result<()> {
    apply_deploy(cluster)?;
    cluster.kubectl_ok(&["create", "namespace", metallb::NAMESPACE])?;
    metallb::install_crds(cluster)?;
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\n\
             metadata: {{name: bench, namespace: ferrolb-system}}\nspec: {{addresses: [\"{POOL}\"]}}\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
             metadata: {{name: bench, namespace: {}}}\nspec: {{addresses: [\"{POOL}\"]}}\n",
            metallb::NAMESPACE
        ),
    )?;
    cluster.kubectl_ok(&["create", "namespace", NAMESPACE])?;
    Ok(())
}

/// One cold start of `project` with `n` Services, then `latency_samples` Services created
/// one at a time, on a control plane of its own (stopped at the end).
pub async fn cold_start(project: Project, n: usize, latency_samples: usize) -> Result<ColdStart> {
    let cluster = Cluster::start()?;
    prepare(&cluster)?;
    let client = cluster.admin_client().await?;
    let api: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    create_services(&api, n, None).await?;
    let seen = track(api.clone());
    // The bench's watch has listed them all before the clock starts.
    let listed_by = Instant::now() + Duration::from_secs(60);
    while seen.lock().map(|s| s.listed.len()).unwrap_or(0) < n {
        if Instant::now() > listed_by {
            bail!("the bench's watch did not list {n} Services within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let start = Instant::now();
    let mut controller = Running::start(project, &cluster)?;
    let pid = controller.pid().context("controller pid")?;
    let cpu = CpuMeter::start(&cluster, pid);
    let log_tail = |cluster: &Cluster| {
        let file = match project {
            Project::FerroLB => "controller-ferrolb-system-*.log".to_string(),
            Project::MetalLB => metallb::CONTROLLER_LOG.to_string(),
        };
        format!("(logs in {}/{file})", cluster.dir.display())
    };
    loop {
        let done = seen.with_ip_count();
        if done >= n {
            break;
        }
        if !controller.is_running() {
            bail!(
                "{project} exited with {done}/{n} IPs {}",
                log_tail(&cluster)
            );
        }
        if start.elapsed() > COLD_START_LIMIT {
            bail!(
                "{project}: only {done}/{n} Services got IPs within {COLD_START_LIMIT:?} {}",
                log_tail(&cluster)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_ips = seen.last_ip_after(start);
    let (controller_cpu, apiserver_cpu) = (cpu.used("controller"), cpu.used("apiserver"));

    let Samples { mut latencies, .. } = sample_latency(&api, &seen, latency_samples, None).await?;
    latencies.sort();
    let (_, found) = listed_faults(&api, n + latency_samples).await?;
    let peak_rss_mib = peak_rss_mib(pid).unwrap_or(f64::NAN);
    controller.stop();
    drop(seen);
    cluster.stop();
    Ok(ColdStart {
        all_ips,
        peak_rss_mib,
        controller_cpu,
        apiserver_cpu,
        duplicates: found.duplicates.len(),
        missing: found.missing.len(),
        latency_p50: percentile(&latencies, 0.5),
        latency_p99: percentile(&latencies, 0.99),
    })
}

impl ColdStart {
    /// One line of this run's figures.
    pub fn line(&self, project: Project, n: usize) -> String {
        format!(
            "{project} N={n}: all IPs {:.2} s; peak RSS {:.1} MiB; CPU controller {:.1} s, apiserver {:.1} s; \
             duplicates {}, missing {}; create to IP p50 {:.1} ms, p99 {:.1} ms; load average {}",
            self.all_ips.as_secs_f64(),
            self.peak_rss_mib,
            self.controller_cpu,
            self.apiserver_cpu,
            self.duplicates,
            self.missing,
            self.latency_p50.as_secs_f64() * 1000.0,
            self.latency_p99.as_secs_f64() * 1000.0,
            load_average(),
        )
    }
}
