//! The apiserver's side of the controller's status writes: its CPU per write, for each
//! way the controller could write one (`FERROLB_BENCH_WRITE_COST=N` before `cargo xtask
//! bench controller`), and the floor: how fast it takes them at best, which no
//! controller can beat on that apiserver (issue 13 §1).

use std::time::Instant;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use ferrolb_tests::env::{TestNamespace, shared_cluster};

use super::controller::create_services;
use super::measure::{control_plane_pids, cpu_seconds, load_average};

/// When set to a number N, [`super::controller::run`] first compares the apiserver CPU of N
/// Service status writes per method, in alternating rounds so that drifting
/// load on a shared machine falls on both.
pub const WRITE_COST_VAR: &str = "FERROLB_BENCH_WRITE_COST";

/// The ways of writing a status that [`write_cost`] compares.
#[derive(Debug, Clone, Copy)]
enum StatusWay {
    Apply,
    Patch,
    PatchWithAnnotation,
}

/// The status (and, with the annotation, metadata) the controller writes
/// for one allocated Service, as `--status-write` sends it.
async fn write_status(api: &Api<Service>, way: StatusWay, name: &str, ip: &str) -> Result<()> {
    let manager = "ferrolb-controller";
    let ingress = json!([{ "ip": ip, "ipMode": "VIP" }]);
    let condition = json!([{
        "type": "ferrolb.io/IPAllocated", "status": "True", "reason": "Allocated",
        "message": format!("{ip} from pool bench"),
        "lastTransitionTime": "2026-11-26T00:00:00Z",
    }]);
    match way {
        StatusWay::Apply => {
            let body = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": name },
                "status": { "loadBalancer": { "ingress": ingress }, "conditions": condition },
            });
            let params = PatchParams::apply(manager).force();
            api.patch_status(name, &params, &Patch::Apply(&body))
                .await?;
        }
        StatusWay::Patch | StatusWay::PatchWithAnnotation => {
            let mut body = json!({
                "status": { "loadBalancer": { "ingress": ingress }, "conditions": condition },
            });
            if matches!(way, StatusWay::PatchWithAnnotation) {
                body["metadata"] =
                    json!({ "annotations": { "ferrolb.io/ip-allocated-from-pool": ip } });
            }
            let params = PatchParams {
                field_manager: Some(manager.into()),
                ..PatchParams::default()
            };
            api.patch_status(name, &params, &Patch::Strategic(&body))
                .await?;
        }
    }
    Ok(())
}

/// Apiserver CPU per status write, for each way, with no controller and no
/// watcher of ours: only the write itself.
pub async fn write_cost(n: usize) -> Result<()> {
    let cluster = shared_cluster();
    let client = cluster.admin_client().await?;
    let ns = TestNamespace::create(&client, "writecost").await?;
    let api: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    // A class no controller serves.
    let names = create_services(&api, n, Some("example.com/none")).await?;
    let apiserver = apiserver_pid(cluster)?;
    println!("write cost: {n} Services; load average {}", load_average());
    let ways = [
        StatusWay::Apply,
        StatusWay::Patch,
        StatusWay::PatchWithAnnotation,
    ];
    let mut totals = [0.0f64; 3];
    let rounds = 3u32;
    for round in 0..rounds {
        for (index, way) in ways.iter().enumerate() {
            // A new IP every time, so every write changes the object.
            let ip = format!("2001:db8:d::{:x}", round * 3 + index as u32 + 1);
            let before = cpu_seconds(apiserver).context("apiserver CPU")?;
            let started = Instant::now();
            let mut writes = futures::stream::iter(names.iter().map(|name| {
                let api = api.clone();
                let ip = ip.clone();
                async move { write_status(&api, *way, name, &ip).await }
            }))
            .buffer_unordered(16);
            while let Some(r) = writes.next().await {
                r?;
            }
            let used = cpu_seconds(apiserver).context("apiserver CPU")? - before;
            if let Some(total) = totals.get_mut(index) {
                *total += used;
            }
            println!(
                "  round {round} {way:?}: {:.2} ms apiserver CPU per write, {:.1} s wall; load average {}",
                used * 1000.0 / n as f64,
                started.elapsed().as_secs_f64(),
                load_average()
            );
        }
    }
    for (way, total) in ways.iter().zip(totals) {
        println!(
            "  {way:?}: {:.2} ms apiserver CPU per write over {rounds} rounds",
            total * 1000.0 / (n as f64 * f64::from(rounds))
        );
    }
    cluster.kubectl_ok(&["delete", "namespace", &ns.name, "--wait=false"])?;
    Ok(())
}

/// The fastest the apiserver takes the controller's status writes: the same
/// strategic-merge status patch (ingress and condition, as `--status-write
/// patch` sends) written to `n` existing Services, at each of
/// [`FLOOR_CONCURRENCY`] requests in flight, one pass per concurrency.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Status writes per second of the fastest pass.
    pub writes_per_second: f64,
    /// The requests in flight of that pass.
    pub concurrency: usize,
}

/// The concurrencies the floor client tries. FerroLB's controller keeps one
/// request per Service in flight, bounded by its client's connection pool.
pub const FLOOR_CONCURRENCY: [usize; 5] = [8, 16, 32, 64, 128];

/// Measures [`Floor`] on the Services `names` of `api` (none of which a
/// running controller serves), one pass per concurrency of `passes`.
pub async fn floor(api: &Api<Service>, names: &[String], passes: &[usize]) -> Result<Floor> {
    let cluster = shared_cluster();
    let n = names.len();
    let apiserver = apiserver_pid(cluster)?;
    let bench = std::process::id();
    let mut best: Option<Floor> = None;
    for (pass, &concurrency) in passes.iter().enumerate() {
        // A new IP every pass, so every write changes the object.
        let ip = format!("2001:db8:f::{:x}", pass + 1);
        let cpu_before = (cpu_seconds(apiserver), cpu_seconds(bench));
        let started = Instant::now();
        let mut writes = futures::stream::iter(names.iter().map(|name| {
            let api = api.clone();
            let ip = ip.clone();
            async move { write_status(&api, StatusWay::Patch, name, &ip).await }
        }))
        .buffer_unordered(concurrency);
        while let Some(written) = writes.next().await {
            written?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let writes_per_second = n as f64 / seconds;
        // Whether the apiserver or this client was the bottleneck: their CPU
        // seconds over the pass (2 cores in all).
        let used = |before: Option<f64>, pid: u32| {
            cpu_seconds(pid)
                .zip(before)
                .map_or(f64::NAN, |(after, before)| after - before)
        };
        println!(
            "  floor pass, {concurrency} in flight: {n} status writes in {seconds:.2} s, {writes_per_second:.0}/s; \
             CPU: apiserver {:.2} s, this client {:.2} s; load average {}",
            used(cpu_before.0, apiserver),
            used(cpu_before.1, bench),
            load_average()
        );
        super::raw::record(
            &format!("N={n}: floor client status writes per second, {concurrency} in flight"),
            "writes/s",
            [writes_per_second],
        );
        if best.is_none_or(|b| writes_per_second > b.writes_per_second) {
            best = Some(Floor {
                writes_per_second,
                concurrency,
            });
        }
    }
    best.context("no floor pass ran")
}

/// The pid of the shared control plane's kube-apiserver.
fn apiserver_pid(cluster: &ferrolb_tests::cluster::Cluster) -> Result<u32> {
    control_plane_pids(cluster)
        .get(1)
        .copied()
        .context("apiserver pid")
}
