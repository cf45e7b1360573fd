//! Reading the speakers of a real-node site from the LAN client: their
//! metrics pages and what those say about the gossip group.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::RealCluster;
use crate::metrics_text::sample_value;

/// A speaker's metrics page, fetched from the LAN client.
pub fn speaker_metrics(site: &RealCluster, node: usize) -> Result<String> {
    speaker_http(site, node, "/metrics")
}

/// `GET path` on node `node`'s speaker endpoint (`/metrics`, `/readyz`...),
/// fetched from the LAN client: the body, whatever the status.
pub fn speaker_http(site: &RealCluster, node: usize, path: &str) -> Result<String> {
    let url = format!("http://{}:7473{path}", site.nodes[node].ip4);
    site.client_netns()
        .exec_ok(&["curl", "-sS", "--max-time", "2", &url])
}

/// The log of the speaker pod on node `node` (`kubectl logs`).
pub fn speaker_log(site: &RealCluster, node: usize) -> Result<String> {
    let pod = super::failover::speaker_pod_on(site, &site.nodes[node].name)?;
    site.api.kubectl_ok(&["-n", "ferrolb-system", "logs", &pod])
}

/// The gossip keys in Secret `ferrolb-memberlist`, as stored (base64).
pub fn gossip_secret_data(site: &RealCluster) -> Result<String> {
    let data = site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "get",
        "secret",
        "ferrolb-memberlist",
        "-o",
        "jsonpath={.data.secretkey}",
    ])?;
    Ok(data.trim().to_string())
}

/// The highest count of gossip datagrams dropped for their key that each
/// node's speaker reported, polled every 500 ms while `polling` holds.
/// Speakers restart during the rotation and their counters with them, so
/// only a poll while the count is up sees it.
pub fn most_bad_key_rejections(site: &RealCluster, polling: &AtomicBool) -> BTreeMap<String, f64> {
    let mut most = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    while polling.load(Ordering::Relaxed) && Instant::now() < deadline {
        for (i, node) in site.nodes.iter().enumerate() {
            let count = speaker_metrics(site, i)
                .ok()
                .and_then(|page| {
                    sample_value(
                        &page,
                        "ferrolb_speaker_gossip_rejected_total{reason=\"bad_key\"}",
                    )
                })
                .unwrap_or(0.0);
            let seen = most.entry(node.name.clone()).or_insert(0.0);
            *seen = f64::max(*seen, count);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    most
}

/// Waits up to 60 s until every speaker counts every node alive.
pub fn wait_for_whole_gossip_group(site: &RealCluster) -> Result<()> {
    let whole = site.nodes.len() as f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alive: Vec<Option<f64>> = (0..site.nodes.len())
            .map(|i| {
                speaker_metrics(site, i)
                    .ok()
                    .and_then(|page| sample_value(&page, "ferrolb_speaker_members_alive"))
            })
            .collect();
        if alive.iter().all(|a| *a == Some(whole)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let page = speaker_metrics(site, 0).unwrap_or_else(|e| format!("{e:#}"));
            let gossip: Vec<&str> = page
                .lines()
                .filter(|l| l.contains("members") || l.contains("gossip"))
                .collect();
            anyhow::bail!(
                "the speakers' gossip group is not whole after 60 s: members alive {alive:?}; {}'s gossip metrics:\n{}",
                site.nodes[0].name,
                gossip.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
