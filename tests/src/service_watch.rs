//! A watch on every Service through a cut-over from MetalLB: each event is
//! checked against the IPs MetalLB gave, and the Services FerroLB shows as
//! its own are recorded. Shared by the apiserver-only cut-over test and the
//! real-node one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::scenario::ingress;

/// The annotation FerroLB's controller marks its Services with.
pub const OUR_POOL_ANNOTATION: &str = "ferrolb.io/ip-allocated-from-pool";

/// `namespace/name`.
pub fn key(service: &Service) -> String {
    format!(
        "{}/{}",
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The value of annotation `name`, if set.
pub fn annotation<'a>(service: &'a Service, name: &str) -> Option<&'a str> {
    service
        .metadata
        .annotations
        .as_ref()?
        .get(name)
        .map(String::as_str)
}

/// Whether FerroLB shows the Service as its own: our pool annotation and our condition, True.
pub fn owned_by_ferrolb(service: &Service) -> bool {
    annotation(service, OUR_POOL_ANNOTATION).is_some()
        && service
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "ferrolb.io/IPAllocated" && c.status == "True")
            })
}

/// What the Service watch saw.
#[derive(Default)]
pub struct Watched {
    /// Events where a watched Service showed other IPs than MetalLB gave it, or was deleted.
    pub violations: Vec<String>,
    pub events: usize,
    /// The Services seen marked as FerroLB's.
    pub owned: BTreeSet<String>,
    /// The first listing is in.
    pub listed: bool,
    /// Listings after the first: the watch lost its place and may have missed events.
    pub relists: usize,
}

/// Watches every Service, recording each event against `expected` (IPs by
/// `namespace/name`). Call inside a tokio runtime.
pub fn watch_services(
    client: kube::Client,
    expected: Arc<BTreeMap<String, Vec<String>>>,
    seen: Arc<Mutex<Watched>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Service> = Api::all(client);
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let Ok(mut seen) = seen.lock() else { return };
            let service = match event {
                Ok(Event::Init) if seen.listed => {
                    seen.relists += 1;
                    continue;
                }
                Ok(Event::InitDone) => {
                    seen.listed = true;
                    continue;
                }
                Ok(Event::Apply(s) | Event::InitApply(s)) => s,
                Ok(Event::Delete(s)) => {
                    if expected.contains_key(&key(&s)) {
                        seen.violations.push(format!("{} deleted", key(&s)));
                    }
                    continue;
                }
                Ok(Event::Init) | Err(_) => continue,
            };
            seen.events += 1;
            let name = key(&service);
            let Some(want) = expected.get(&name) else {
                continue;
            };
            let shown = ingress(&service);
            if &shown != want {
                let version = service.metadata.resource_version.clone();
                seen.violations.push(format!(
                    "{name} showed {shown:?} (MetalLB gave {want:?}) at resourceVersion {version:?}"
                ));
            }
            if owned_by_ferrolb(&service) {
                seen.owned.insert(name);
            }
        }
    })
}

/// Every event that showed other IPs than MetalLB's, and a relist (then the
/// watch may have missed one), as one error.
pub fn check_no_violations(seen: &Mutex<Watched>) -> anyhow::Result<()> {
    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("the watch's record is poisoned"))?;
    if !seen.violations.is_empty() {
        anyhow::bail!(
            "{} events showed other IPs than MetalLB's:\n{}",
            seen.violations.len(),
            seen.violations.join("\n")
        );
    }
    if seen.relists != 0 {
        anyhow::bail!("the watch lost its place ({} relists)", seen.relists);
    }
    Ok(())
}
