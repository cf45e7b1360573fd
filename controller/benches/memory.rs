//! The allocation loop's heap per Service, counted by a global allocator.
//!
//! Feeds a [`Reconciler`] the first listing of one pool and `n` LoadBalancer
//! Services shaped like the controller bench's (a namespace, a 36-character
//! uid, one port, IPv4), then settles every write it orders with the echo the
//! apiserver would send. Prints, per size, the bytes live after the listing,
//! the peak while the listing's decisions are taken, the bytes live once
//! every write settled, each per Service. Only the pure core is counted: the
//! shell's write queue and Event budget come on top (see BENCHMARKS.md).
//!
//! Each size runs twice: first as the controller runs, the listing decided
//! in batches of 1,000 (`sync_batch`) with each batch's writes settled
//! before the next is asked for (the shell asks as its write queue
//! drains), then in one pass (`sync_batch: usize::MAX`, as before batches).
//! dhat's peak is over the whole run, so sizes go up and the batched run
//! goes first.
//!
//! `cargo bench -p ferrolb-controller --bench memory [-- 5000 50000]`

use std::collections::BTreeMap;

use ferrolb_controller::core::effect::{Effect, MetricChange, ServiceWriteOrder};
use ferrolb_controller::core::service::ANNOTATION_ALLOCATED_FROM_POOL;
use ferrolb_controller::core::{Input, Kind, Reconciler, ReconcilerConfig, WriteSettled};
use ferrolb_crds::class::{ClassFilter, DEFAULT_LOAD_BALANCER_CLASS};
use ferrolb_crds::pool::{IPAddressPool, IPAddressPoolSpec};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;

/// dhat's allocator counts live heap bytes and their high-water mark.
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const POOL_NAMESPACE: &str = "ferrolb-system";
const KINDS: [Kind; 3] = [Kind::Pools, Kind::Namespaces, Kind::Services];

fn pool() -> IPAddressPool {
    let mut pool = IPAddressPool::new(
        "bench",
        IPAddressPoolSpec {
            addresses: vec!["198.18.0.0/15".into()],
            auto_assign: true,
            avoid_buggy_ips: false,
            service_allocation: None,
        },
    );
    pool.metadata.namespace = Some(POOL_NAMESPACE.into());
    pool.metadata.uid = Some("6c0f1d1e-0000-4000-8000-000000000000".into());
    pool.metadata.generation = Some(1);
    pool
}

fn service(i: usize, version: u64) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("bench-cold-start".into()),
            name: Some(format!("svc-{i:05}")),
            uid: Some(format!("5e1c0a77-{:04x}-4000-8000-{i:012x}", i % 0xffff)),
            resource_version: Some(version.to_string()),
            creation_timestamp: Timestamp::from_second(1_700_000_000 + i as i64)
                .ok()
                .map(Time),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ip_families: Some(vec!["IPv4".into()]),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// `service` as the apiserver returns it once our write landed: it shows
/// the write exactly, at the version the write produced.
fn echo(mut service: Service, ips: &[std::net::IpAddr], pool: &str, cond: (&str, &str)) -> Service {
    service.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_ALLOCATED_FROM_POOL.to_string(),
        pool.to_string(),
    )]));
    service.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(
                ips.iter()
                    .map(|ip| LoadBalancerIngress {
                        ip: Some(ip.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }),
        conditions: Some(vec![Condition {
            type_: "ferrolb.io/IPAllocated".into(),
            status: "True".into(),
            reason: cond.0.into(),
            message: cond.1.into(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::from_second(1_700_000_000).unwrap_or_default()),
        }]),
    });
    service
}

fn live() -> usize {
    dhat::HeapStats::get().curr_bytes
}

fn peak() -> usize {
    dhat::HeapStats::get().max_bytes
}

fn per_service(bytes: usize, n: usize) -> String {
    format!(
        "{:.2} MiB ({} B per Service)",
        bytes as f64 / (1 << 20) as f64,
        bytes / n.max(1)
    )
}

/// One line per (label, bytes): the MiB and the bytes per Service.
fn print_figures(n: usize, figures: &[(&str, usize)]) {
    for (label, bytes) in figures {
        println!("  {:<35}{}", format!("{label}:"), per_service(*bytes, n));
    }
}

/// The batch the controller's shell decides the first listing in.
const SYNC_BATCH: usize = 1_000;

/// Reports write `order` settled at `version` and feeds the echo.
fn settle(r: &mut Reconciler, order: ServiceWriteOrder, version: u64) {
    let Some(condition) = &order.write.condition else {
        return;
    };
    let i: usize = order.key.name()["svc-".len()..].parse().unwrap_or(0);
    let pool = order.write.pool.clone().unwrap_or_default();
    let shown = echo(
        service(i, version),
        &order.write.ips,
        &pool,
        (&condition.reason, &condition.message),
    );
    let mut effects = r.handle(Input::ServiceWriteSettled(WriteSettled {
        key: order.key.clone(),
        ticket: order.ticket,
        applied_version: Some(version),
        written: true,
    }));
    effects.extend(r.handle(Input::ServiceApplied(shown)));
    // Anything else would mean the echo is not what the apiserver returns
    // (a repair ordered) and the settled state not the steady one.
    assert!(
        effects
            .iter()
            .all(|e| matches!(e, Effect::Metric(MetricChange::Pending(_)))),
        "the echo of {} ordered {effects:?}",
        order.key
    );
}

fn listed(n: usize, sync_batch: usize) -> Reconciler {
    let mut r = Reconciler::new(ReconcilerConfig {
        pool_namespace: POOL_NAMESPACE.into(),
        class: ClassFilter::new(DEFAULT_LOAD_BALANCER_CLASS, false),
        sync_batch,
    });
    for kind in KINDS {
        r.handle(Input::RelistStarted(kind));
    }
    r.handle(Input::PoolApplied(pool()));
    for i in 0..n {
        r.handle(Input::ServiceApplied(service(i, 10 + i as u64)));
    }
    r
}

/// The listing decided in batches, each batch's writes settled before the
/// next batch is asked for.
fn measure_batched(n: usize) {
    let base = live();
    let mut r = listed(n, SYNC_BATCH);
    let listed = live() - base;
    let mut version = 1_000_000u64;
    let mut events = 0;
    let mut effects = Vec::new();
    for kind in KINDS {
        effects.extend(r.handle(Input::RelistDone(kind)));
    }
    loop {
        for effect in std::mem::take(&mut effects) {
            match effect {
                Effect::WriteService(order) => {
                    version += 1;
                    settle(&mut r, order, version);
                }
                Effect::Event(_) => events += 1,
                _ => {}
            }
        }
        if !r.deciding() {
            break;
        }
        effects = r.handle(Input::DecideBacklog);
    }
    let decided_peak = peak().saturating_sub(base);
    let settled = live() - base;
    println!("n={n}, in batches of {SYNC_BATCH}: {events} Events ordered");
    print_figures(
        n,
        &[
            ("live after the listing", listed),
            ("peak while deciding the listing", decided_peak),
            ("live once every write settled", settled),
        ],
    );
    drop(r);
}

/// The listing decided in one pass.
fn measure(n: usize) {
    let base = live();
    let mut r = listed(n, usize::MAX);
    let listed = live() - base;
    // dhat's peak is over the whole run: decide on a size's listing first.
    let mut effects = Vec::new();
    for kind in KINDS {
        // Kept as returned (no copy): the last one holds the decisions.
        let more = r.handle(Input::RelistDone(kind));
        if effects.is_empty() {
            effects = more;
        } else {
            effects.extend(more);
        }
    }
    let decided_peak = peak().saturating_sub(base);
    let mut orders = Vec::new();
    let mut events = 0;
    for effect in effects {
        match effect {
            Effect::WriteService(order) => orders.push(order),
            Effect::Event(_) => events += 1,
            _ => {}
        }
    }
    let with_orders = live() - base;
    let mut version = 1_000_000u64;
    for order in orders {
        version += 1;
        settle(&mut r, order, version);
    }
    let settled = live() - base;
    println!("n={n}, in one pass: {events} Events ordered");
    print_figures(
        n,
        &[
            ("live after the listing", listed),
            ("peak while deciding the listing", decided_peak),
            ("live holding the write orders", with_orders),
            ("live once every write settled", settled),
        ],
    );
    drop(r);
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![5_000, 50_000]
    } else {
        sizes
    };
    // Counting only (no profile file): dhat's testing mode.
    let _profiler = dhat::Profiler::builder().testing().build();
    for n in sizes {
        measure_batched(n);
        measure(n);
    }
}
