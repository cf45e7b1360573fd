use std::collections::BTreeSet;

use ferrolb_crds::AdvertisementSelectors;
use ferrolb_crds::l2::L2AdvertisementSpec;
use ferrolb_crds::labels::Labels;
use ferrolb_crds::validation::Problem;
use k8s_openapi::api::core::v1::LoadBalancerIngress;

use super::*;
use crate::model::fixtures::*;
use crate::model::objects::EndpointObject;

fn convert(
    services: &[Service],
    slices: &[EndpointSlice],
    nodes: &[Node],
    pools: &[IPAddressPool],
    advertisements: &[L2Advertisement],
) -> (ClusterView, Vec<ViewWarning>) {
    ClusterView::from_objects(
        services,
        slices,
        nodes,
        pools,
        advertisements,
        &ClassFilter::default(),
    )
}

fn only_services(services: &[Service]) -> ClusterView {
    let (view, warnings) = convert(services, &[], &[], &[], &[]);
    assert_eq!(warnings, Vec::new());
    view
}

#[test]
fn reads_a_service() {
    let mut service = k8s_service("web", None, &["203.0.113.5", "2001:db8::5"], true);
    service.metadata.labels = Some(labels(&[("app", "web")]));
    let view = only_services(&[service]);
    assert_eq!(
        view.services.get(&key("web")),
        Some(&ServiceView {
            key: key("web"),
            labels: labels(&[("app", "web")]),
            ips: vec![ip("203.0.113.5"), ip("2001:db8::5")].into(),
            local_traffic_policy: true,
        })
    );
    assert_eq!(key("web").to_string(), "apps/web");
}

#[test]
fn keeps_only_load_balancers_of_our_class() {
    let mut cluster_ip = k8s_service("internal", None, &[], false);
    if let Some(spec) = cluster_ip.spec.as_mut() {
        spec.type_ = Some("ClusterIP".into());
    }
    let view = only_services(&[
        k8s_service("ours", Some("ferrolb.io/ferrolb"), &["203.0.113.1"], false),
        k8s_service("unclassed", None, &["203.0.113.2"], false),
        k8s_service("theirs", Some("example.com/lb"), &["203.0.113.3"], false),
        cluster_ip,
    ]);
    let kept: Vec<String> = view.services.keys().map(|k| k.name().to_string()).collect();
    assert_eq!(kept, vec!["ours", "unclassed"]);

    let strict = ClassFilter {
        ignore_unclassed: true,
        ..ClassFilter::default()
    };
    let services = [
        k8s_service("ours", Some("ferrolb.io/ferrolb"), &["203.0.113.1"], false),
        k8s_service("unclassed", None, &["203.0.113.2"], false),
    ];
    let (view, _) = ClusterView::from_objects(&services, &[], &[], &[], &[], &strict);
    let kept: Vec<String> = view.services.keys().map(|k| k.name().to_string()).collect();
    assert_eq!(kept, vec!["ours"]);
}

#[test]
fn bad_ingress_ips_are_skipped_with_a_warning() {
    let mut service = k8s_service(
        "web",
        None,
        &["203.0.113.5", "not-an-ip", "203.0.113.5"],
        false,
    );
    if let Some(ingress) = service
        .status
        .as_mut()
        .and_then(|s| s.load_balancer.as_mut())
        .and_then(|lb| lb.ingress.as_mut())
    {
        // A hostname-only entry is not ours and not an error.
        ingress.push(LoadBalancerIngress {
            hostname: Some("lb.example.com".into()),
            ..Default::default()
        });
    }
    let (view, warnings) = convert(&[service], &[], &[], &[], &[]);
    assert_eq!(
        view.services.get(&key("web")).map(|s| s.ips.clone()),
        Some(vec![ip("203.0.113.5")].into())
    );
    assert_eq!(
        warnings,
        vec![ViewWarning::InvalidIngressIp {
            service: key("web"),
            value: "not-an-ip".into(),
        }]
    );
    assert_eq!(
        warnings[0].to_string(),
        "Service apps/web: status.loadBalancer.ingress IP \"not-an-ip\" is not an IP address; it is not announced"
    );
}

#[test]
fn objects_without_names_are_skipped_with_a_warning() {
    let mut service = k8s_service("web", None, &["203.0.113.5"], false);
    service.metadata.namespace = None;
    let mut node = k8s_node("node-a", Labels::new(), &[("Ready", "True")]);
    node.metadata.name = None;
    let (view, warnings) = convert(&[service], &[], &[node], &[], &[]);
    assert!(view.services.is_empty() && view.nodes.is_empty());
    assert_eq!(
        warnings,
        vec![
            ViewWarning::MissingName { kind: "Service" },
            ViewWarning::MissingName { kind: "Node" },
        ]
    );
}

#[test]
fn endpoint_slices_merge_per_service_by_label_and_namespace() {
    let services = [
        k8s_service("web", None, &["203.0.113.5"], true),
        k8s_service("idle", None, &["203.0.113.6"], true),
    ];
    let ready = Some((Some(true), Some(true), Some(false)));
    let mut elsewhere = k8s_slice(
        "web-other-ns",
        "web",
        vec![k8s_endpoint(Some("node-x"), ready)],
    );
    elsewhere.metadata.namespace = Some("other".into());
    let mut unlabelled = k8s_slice("custom", "web", vec![k8s_endpoint(Some("node-y"), ready)]);
    unlabelled.metadata.labels = None;
    let slices = [
        k8s_slice("web-1", "web", vec![k8s_endpoint(Some("node-a"), ready)]),
        k8s_slice(
            "web-2",
            "web",
            vec![
                k8s_endpoint(Some("node-b"), None),
                k8s_endpoint(None, ready),
                k8s_endpoint(Some("node-a"), ready),
            ],
        ),
        k8s_slice(
            "not-ours",
            "cluster-ip-service",
            vec![k8s_endpoint(Some("node-z"), ready)],
        ),
        elsewhere,
        unlabelled,
    ];
    let (view, warnings) = convert(&services, &slices, &[], &[], &[]);
    assert_eq!(warnings, Vec::new());
    assert_eq!(
        view.endpoints.get(&key("web")),
        Some(&ServiceEndpoints {
            nodes: names(&["node-a", "node-b"]).into(),
            unplaced: 1,
        })
    );
    assert_eq!(view.endpoints.get(&key("idle")), None);
    assert_eq!(view.endpoints.len(), 1);
}

#[test]
fn endpoint_usability_follows_kubernetes() {
    let cases = [
        // (ready, serving, terminating) -> usable
        (None, None, None, true),
        (Some(true), None, None, true),
        (Some(true), Some(true), Some(false), true),
        (Some(false), None, None, false),
        (Some(false), Some(true), None, true),
        (Some(false), Some(true), Some(false), true),
        (Some(false), Some(true), Some(true), false),
        (Some(false), Some(false), Some(false), false),
    ];
    for (ready, serving, terminating, usable) in cases {
        let endpoint = k8s_endpoint(Some("node-a"), Some((ready, serving, terminating)));
        assert_eq!(
            is_usable(&EndpointObject::of(&endpoint)),
            usable,
            "ready {ready:?} serving {serving:?} terminating {terminating:?}"
        );
    }
    assert!(is_usable(&EndpointObject::of(&k8s_endpoint(
        Some("node-a"),
        None
    ))));
}

/// A kubelet-to-API partition on every node: the node lifecycle controller marks every
/// Node `Unknown` and every pod on them not ready. The endpoints still count (all but the
/// terminating), so the Service keeps its announcement; once one Node is `Ready` again,
/// the conditions count again.
#[test]
fn endpoint_conditions_do_not_count_when_no_node_is_ready() {
    let services = [k8s_service("web", None, &["203.0.113.5"], false)];
    let marked = Some((Some(false), Some(false), Some(false)));
    let leaving = Some((Some(false), Some(false), Some(true)));
    let slices = [k8s_slice(
        "web-1",
        "web",
        vec![
            k8s_endpoint(Some("node-a"), marked),
            k8s_endpoint(Some("node-b"), leaving),
        ],
    )];
    let nodes_with = |a: &str, b: &str| {
        [
            k8s_node("node-a", Labels::new(), &[("Ready", a)]),
            k8s_node("node-b", Labels::new(), &[("Ready", b)]),
        ]
    };
    let (view, warnings) = convert(
        &services,
        &slices,
        &nodes_with("Unknown", "Unknown"),
        &[],
        &[],
    );
    assert_eq!(warnings, Vec::new());
    assert_eq!(
        view.endpoints.get(&key("web")),
        Some(&ServiceEndpoints {
            nodes: names(&["node-a"]).into(),
            unplaced: 0,
        }),
        "in a full disruption, every endpoint but the terminating one counts"
    );
    let (view, _) = convert(&services, &slices, &nodes_with("Unknown", "True"), &[], &[]);
    assert_eq!(
        view.endpoints.get(&key("web")),
        Some(&ServiceEndpoints::default()),
        "one Ready Node: conditions count"
    );
    let (view, _) = convert(&services, &slices, &[], &[], &[]);
    assert_eq!(
        view.endpoints.get(&key("web")),
        Some(&ServiceEndpoints::default()),
        "no Nodes known: conditions count"
    );
}

#[test]
fn reads_node_conditions_and_labels() {
    let nodes = [
        k8s_node(
            "ready",
            labels(&[("zone", "west")]),
            &[("Ready", "True"), ("NetworkUnavailable", "False")],
        ),
        k8s_node("not-ready", Labels::new(), &[("Ready", "False")]),
        k8s_node("unknown", Labels::new(), &[("Ready", "Unknown")]),
        k8s_node(
            "no-network",
            Labels::new(),
            &[("Ready", "True"), ("NetworkUnavailable", "True")],
        ),
        k8s_node("silent", Labels::new(), &[]),
    ];
    let (view, warnings) = convert(&[], &[], &nodes, &[], &[]);
    assert_eq!(warnings, Vec::new());
    let summary: Vec<(&str, bool, bool)> = view
        .nodes
        .values()
        .map(|n| (n.name.as_str(), n.ready, n.network_unavailable))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("no-network", true, true),
            ("not-ready", false, false),
            ("ready", true, false),
            ("silent", false, false),
            ("unknown", false, false),
        ]
    );
    assert_eq!(
        view.nodes.get("ready").map(|n| n.labels.clone()),
        Some(labels(&[("zone", "west")]))
    );
}

#[test]
fn bad_pool_entries_are_dropped_with_a_warning() {
    let pools = [k8s_pool(
        "mixed",
        labels(&[("tier", "gold")]),
        &[
            "203.0.113.0/28",
            "203.0.113.99-203.0.113.9",
            "2001:db8::/120",
        ],
    )];
    let (view, warnings) = convert(&[], &[], &[], &pools, &[]);
    let pool = view.pools.get("mixed").expect("the pool is kept");
    assert_eq!(pool.labels, labels(&[("tier", "gold")]));
    assert_eq!(pool.ranges.len(), 2);
    assert!(pool.contains(&ip("203.0.113.15")));
    assert!(pool.contains(&ip("2001:db8::ff")));
    assert!(!pool.contains(&ip("203.0.113.50")));
    assert_eq!(warnings.len(), 1);
    assert!(
        matches!(
            &warnings[0],
            ViewWarning::InvalidPoolAddress { pool, error }
                if pool == "mixed"
                    && error.field == "spec.addresses[1]"
                    && matches!(error.problem, Problem::Address(_))
        ),
        "{warnings:?}"
    );
}

#[test]
fn reads_l2_advertisements() {
    let selectors = AdvertisementSelectors {
        ip_address_pools: vec!["gold".into()],
        ip_address_pool_selectors: vec![selector(&[("tier", "gold")])],
        node_selectors: vec![selector(&[("zone", "west")])],
        service_selectors: vec![selector(&[("app", "web")])],
    };
    let spec = L2AdvertisementSpec {
        selectors: selectors.clone(),
        interfaces: vec!["eth0".into()],
    };
    let advertisements = [
        k8s_l2_advertisement("west", spec),
        k8s_l2_advertisement("everything", L2AdvertisementSpec::default()),
    ];
    let (view, warnings) = convert(&[], &[], &[], &[], &advertisements);
    assert_eq!(warnings, Vec::new());
    assert_eq!(
        view.l2_advertisements.get("west"),
        Some(&L2AdvertisementView {
            name: "west".into(),
            selectors,
            interfaces: vec!["eth0".into()],
        })
    );
    assert_eq!(
        view.l2_advertisements.get("everything"),
        Some(&advertisement("everything"))
    );
}

/// The whole path: objects in, plan out.
#[test]
fn plan_from_real_objects() {
    use crate::model::{Liveness, l2_plan};

    let services = [
        k8s_service("web", None, &["203.0.113.5"], true),
        k8s_service("outside", None, &["198.51.100.5"], false),
    ];
    let ready = Some((Some(true), None, None));
    let slices = [k8s_slice(
        "web-1",
        "web",
        vec![k8s_endpoint(Some("node-b"), ready)],
    )];
    let nodes = [
        k8s_node("node-a", Labels::new(), &[("Ready", "True")]),
        k8s_node("node-b", Labels::new(), &[("Ready", "True")]),
    ];
    let pools = [k8s_pool("default", Labels::new(), &["203.0.113.0/24"])];
    let advertisements = [k8s_l2_advertisement("all", L2AdvertisementSpec::default())];
    let (view, warnings) = convert(&services, &slices, &nodes, &pools, &advertisements);
    assert_eq!(warnings, Vec::new());
    let plan = l2_plan(&view, &Liveness::NodeReadyOnly);
    let summary: Vec<(String, Option<String>, BTreeSet<ServiceKey>)> = plan
        .iter()
        .map(|(ip, d)| {
            (
                ip.to_string(),
                d.owner.clone(),
                d.services.iter().cloned().collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![(
            "203.0.113.5".to_string(),
            Some("node-b".to_string()),
            [key("web")].into()
        )]
    );
}
