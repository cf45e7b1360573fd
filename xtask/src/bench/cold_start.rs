//! One cold start of the controller bench (issue 13 §1), in this order on one
//! namespace of the shared control plane:
//!
//! 1. N Services created while the controller is stopped;
//! 2. the controller started, timed until every Service shows an IP (peak RSS
//!    and CPU until then);
//! 3. at once, Services created one at a time, each when the one before has
//!    its IP: create-to-IP latency with N Services present, right after the
//!    cold start, while whatever it left to send (Events) goes out, split
//!    into the create round trip and the bench's watch seeing the Service to
//!    seeing its IP;
//! 4. the writes left to settle, every Service checked (exactly one IP, no IP
//!    twice), the controller stopped;
//! 5. the apiserver's floor on the same N Services (see
//!    [`super::write_cost::floor`]), so the ratio compares like with like
//!    and the controller never lists a second set of N.
//!
//! Step 1 is quadratic on kube-apiserver v1.34: its ClusterIP allocator
//! counts every IPAddress object (twice) after each allocation, for its
//! metrics, so creating 50,000 Services takes over an hour of apiserver CPU
//! on 2 cores (BENCHMARKS.md); steps 2 to 5 allocate nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use kube::Api;

use ferrolb_tests::env::shared_cluster;

use super::controller::{
    Samples, create_services, listed_faults, namespace_with_pool, request_counts, request_delta,
    sample_latency, settle, start_controller,
};
use super::measure::{CpuMeter, load_average, peak_rss_mib, percentile, rss_mib, summary, track};
use super::raw;
use super::write_cost::{Floor, floor};

/// What one cold start measured.
pub struct ColdStartFigures {
    /// Controller start to the bench's watch seeing the last IP.
    pub all_ips: Duration,
    /// The controller's VmHWM when the last IP was seen.
    pub peak_rss_mib: f64,
    /// The Services created right after the cold start.
    pub after: Samples,
    /// Events the apiserver took while those were created.
    pub events_during_after: f64,
    /// IPs shown by more than one Service / Services without exactly one IP.
    pub duplicates: usize,
    pub without_one_ip: usize,
    /// The apiserver's floor on the same Services.
    pub floor: Floor,
}

impl ColdStartFigures {
    /// FerroLB's cold-start rate over the floor's.
    pub fn ratio(&self, n: usize) -> f64 {
        n as f64 / self.all_ips.as_secs_f64() / self.floor.writes_per_second
    }

    /// The run's figures in one line.
    pub fn line(&self, n: usize) -> String {
        let p50 = |samples: &[Duration]| {
            let mut sorted = samples.to_vec();
            sorted.sort();
            percentile(&sorted, 0.5).as_secs_f64() * 1000.0
        };
        format!(
            "N={n}: all IPs {:.2} s ({:.0} Services/s); floor {:.0} writes/s ({} in flight); ratio {:.2} \
             (target at least 0.8); peak RSS {:.1} MiB; IPs shown twice {}, Services without exactly \
             one IP {}; right after: create to IP p50 {:.1} ms = create round trip p50 {:.1} ms + \
             watch sees the Service to its IP p50 {:.1} ms, {:.0} Events meanwhile",
            self.all_ips.as_secs_f64(),
            n as f64 / self.all_ips.as_secs_f64(),
            self.floor.writes_per_second,
            self.floor.concurrency,
            self.ratio(n),
            self.peak_rss_mib,
            self.duplicates,
            self.without_one_ip,
            p50(&self.after.latencies),
            p50(&self.after.created),
            p50(&self.after.after_listed),
            self.events_during_after,
        )
    }
}

/// The concurrencies of the floor's passes for `n` Services: all of
/// [`super::write_cost::FLOOR_CONCURRENCY`] up to 10,000, two above (a pass
/// at 50,000 takes about 35 s; 8 to 128 in flight differed by 10 % at most).
pub fn floor_passes(n: usize) -> &'static [usize] {
    if n > 10_000 {
        &[16, 64]
    } else {
        &super::write_cost::FLOOR_CONCURRENCY
    }
}

/// Runs one cold start of `n` Services and `after_samples` Services after it.
pub async fn cold_start(n: usize, after_samples: usize) -> Result<ColdStartFigures> {
    let cluster = shared_cluster();
    let client = cluster.admin_client().await?;
    let ns = namespace_with_pool(&client, &format!("bench{n}"), "2001:db8:b::/64").await?;
    let api: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let created = Instant::now();
    let names = create_services(&api, n, Some(&ns.class)).await?;
    println!(
        "created {n} Services in {:.1} s (controller stopped); load average {}",
        created.elapsed().as_secs_f64(),
        load_average()
    );

    // Build the binary before the clock starts.
    ferrolb_tests::env::binary("ferrolb-controller")?;
    let seen = track(api.clone());
    let requests_before = request_counts(&client).await?;
    println!("  load average at start: {}", load_average());
    let start = Instant::now();
    let mut controller = start_controller(cluster, &ns)?;
    let pid = controller.pid().context("controller pid")?;
    let cpu = CpuMeter::start(cluster, pid);
    let limit = Duration::from_secs(300);
    // (seconds since start, resident MiB, Services with IPs), every second.
    let mut timeline: Vec<(f64, f64, usize)> = Vec::new();
    loop {
        let done = seen.with_ip_count();
        if timeline
            .last()
            .is_none_or(|(t, _, _)| start.elapsed().as_secs_f64() - t >= 1.0)
        {
            timeline.push((
                start.elapsed().as_secs_f64(),
                rss_mib(pid).unwrap_or(f64::NAN),
                done,
            ));
        }
        if done >= n {
            break;
        }
        if start.elapsed() > limit {
            bail!("only {done}/{n} Services got IPs within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_ips = seen.last_ip_after(start);
    let peak = peak_rss_mib(pid).unwrap_or(f64::NAN);
    raw::record(
        &format!("N={n}: controller start -> every Service has an IP"),
        "s",
        [all_ips.as_secs_f64()],
    );
    raw::record(
        &format!("N={n}: controller peak RSS at that point"),
        "MiB",
        [peak],
    );
    raw::record(
        &format!("N={n}: controller RSS, one sample per second"),
        "MiB",
        timeline.iter().map(|(_, rss, _)| *rss),
    );
    raw::record(
        &format!("N={n}: Services with IPs, one sample per second"),
        "Services",
        timeline.iter().map(|(_, _, done)| *done as f64),
    );
    println!(
        "N={n}: all Services have IPs {:.2} s after the controller started; peak RSS {peak:.1} MiB",
        all_ips.as_secs_f64()
    );
    println!(
        "  CPU until then: {}; load average {}",
        cpu.report(),
        load_average()
    );
    println!(
        "  RSS MiB / Services with IPs over time: {}",
        timeline
            .iter()
            .map(|(t, rss, done)| format!("{t:.1}s {rss:.1}/{done}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let at_all_ips = request_counts(&client).await?;
    println!(
        "  writes until then: {}",
        request_delta(&requests_before, &at_all_ips)
    );

    // Right after the cold start, with whatever it left to send going out.
    let after = sample_latency(&api, &seen, after_samples, Some(&ns.class)).await?;
    let after_counts = request_counts(&client).await?;
    let events_during_after = after_counts.get("POST events").copied().unwrap_or(0.0)
        - at_all_ips.get("POST events").copied().unwrap_or(0.0);
    print_after(n, &after, events_during_after);

    // The rest of the work (Events) drains.
    let settled = settle(&client, Duration::from_secs(300)).await?;
    println!(
        "  all writes done {:.1} s after start; peak RSS {:.1} MiB; CPU {}; writes: {}",
        (settled - start).as_secs_f64(),
        peak_rss_mib(pid).unwrap_or(f64::NAN),
        cpu.report(),
        request_delta(&requests_before, &request_counts(&client).await?)
    );
    let (listed, found) = listed_faults(&api, n + after_samples).await?;
    println!(
        "  Services: {listed}; IPs shown twice: {}; Services without exactly one IP: {}",
        found.duplicates.len(),
        found.missing.len()
    );
    controller.stop();
    drop(seen);

    let floor = floor(&api, &names, floor_passes(n)).await?;
    cluster.kubectl_ok(&["delete", "namespace", &ns.name, "--wait=false"])?;
    Ok(ColdStartFigures {
        all_ips,
        peak_rss_mib: peak,
        after,
        events_during_after,
        duplicates: found.duplicates.len(),
        without_one_ip: found.missing.len(),
        floor,
    })
}

fn print_after(n: usize, after: &Samples, events: f64) {
    let count = after.latencies.len();
    let label = |what: &str| format!("N={n}: right after the cold start, {what}");
    println!(
        "{}",
        summary(
            &label(&format!("create -> IP over {count} Services")),
            after.latencies.clone()
        )
    );
    println!(
        "  {}",
        summary(&label("create request round trip"), after.created.clone())
    );
    println!(
        "  {}",
        summary(
            &label("bench watch sees the Service -> sees its IP"),
            after.after_listed.clone()
        )
    );
    println!("  Events created meanwhile: {events:.0}");
    raw::record(
        &label("Events created while they were created"),
        "Events",
        [events],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller bench at its smallest (100 Services, 10 after), so its
    /// code runs in `cargo test -p xtask`: every Service gets exactly one IP,
    /// every figure is measured and sane. Debug build of the controller.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn smoke_cold_start_latency_and_floor() {
        let n = 100;
        let figures = cold_start(n, 10).await.expect("the cold start runs");
        assert_eq!((figures.duplicates, figures.without_one_ip), (0, 0));
        assert!(figures.all_ips > Duration::ZERO, "{:?}", figures.all_ips);
        assert!(figures.peak_rss_mib.is_finite() && figures.peak_rss_mib > 1.0);
        let after = &figures.after;
        for samples in [
            &after.created,
            &after.latencies,
            &after.after_listed,
            &after.listed,
        ] {
            assert_eq!(samples.len(), 10);
        }
        // Every Service was seen, then seen with its IP, within the bench's bound
        // (the IP may arrive before the create call returns: no order there).
        let bound = Duration::from_secs(30);
        for (total, listed) in after.latencies.iter().zip(&after.listed) {
            assert!(listed <= total && *total < bound, "{listed:?}, {total:?}");
        }
        assert!(
            after
                .created
                .iter()
                .all(|d| *d > Duration::ZERO && *d < bound)
        );
        assert!(figures.events_during_after >= 0.0);
        let floor = figures.floor;
        assert!(floor_passes(n).contains(&floor.concurrency));
        assert!(
            floor.writes_per_second.is_finite() && floor.writes_per_second > 0.0,
            "{floor:?}"
        );
        let ratio = figures.ratio(n);
        assert!(ratio.is_finite() && ratio > 0.0, "{ratio}");
    }
}
