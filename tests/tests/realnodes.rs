//! Real kubelet nodes: FerroLB installed from `deploy/` as pods, and client
//! traffic reaching pods through its LoadBalancer IPs.

use std::time::Duration;

use ferrolb_tests::realnodes::{RealCluster, RealClusterShape};

#[test]
fn nodes_come_up_and_teardown_leaves_nothing() {
    let shape = RealClusterShape {
        nodes: 2,
        images: Vec::new(),
        detached: false,
        router: false,
    };
    let mut cluster = RealCluster::start(&shape).unwrap();
    let nodes = cluster
        .api
        .kubectl_ok(&["get", "nodes", "-o", "wide"])
        .unwrap();
    println!("{nodes}");
    std::thread::sleep(Duration::from_secs(1));
    cluster.teardown().unwrap();
}
