use serde_json::{Value, json};

use super::*;

fn expand_yaml(yaml: &str) -> Expanded {
    let config: Value = serde_yaml::from_str(yaml).unwrap();
    expand(
        &config,
        "metallb-system",
        &ObjectRef::new("ConfigMap", "metallb-system", "config"),
    )
    .unwrap()
}

fn names(expanded: &Expanded) -> Vec<String> {
    expanded
        .objects
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn pools_advertisements_peers_and_communities_as_configmaptocrs_makes_them() {
    let out = expand_yaml(
        "peers:\n- {peer-address: 192.0.2.1, peer-asn: 64513, my-asn: 64512, hold-time: 120s,\n   \
         node-selectors: [{match-labels: {a: b}, match-expressions: [{key: k, operator: In, values: [v]}]}]}\n\
         address-pools:\n- {name: l2, protocol: layer2, addresses: [198.51.100.0/28], auto-assign: false}\n\
         - {name: b1, protocol: bgp, addresses: [203.0.113.0/28]}\n\
         - {name: b2, protocol: bgp, addresses: [203.0.113.16/28], avoid-buggy-ips: true,\n   \
         bgp-advertisements: [{localpref: 0, communities: [no-export]}, {aggregation-length: 32, localpref: 100}]}\n\
         bgp-communities: {no-export: '65535:65281'}\n",
    );
    assert_eq!(out.losses, vec![]);
    assert_eq!(
        names(&out),
        [
            "BGPPeer peer1",
            "IPAddressPool l2",
            "IPAddressPool b1",
            "IPAddressPool b2",
            "BGPAdvertisement bgpadvertisement1",
            "BGPAdvertisement bgpadvertisement2",
            "BGPAdvertisement bgpadvertisement3",
            "L2Advertisement l2advertisement1",
            "Community communities",
        ]
    );
    assert_eq!(
        out.objects[0]["spec"],
        json!({"peerAddress": "192.0.2.1", "peerASN": 64513, "myASN": 64512, "holdTime": "120s",
               "nodeSelectors": [{"matchLabels": {"a": "b"},
                                  "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]})
    );
    assert_eq!(
        out.objects[1]["spec"],
        json!({"addresses": ["198.51.100.0/28"], "autoAssign": false})
    );
    assert_eq!(out.objects[4]["spec"], json!({"ipAddressPools": ["b1"]}));
    assert_eq!(
        out.objects[5]["spec"],
        json!({"ipAddressPools": ["b2"], "communities": ["no-export"]})
    );
    assert_eq!(
        out.objects[6]["spec"],
        json!({"ipAddressPools": ["b2"], "aggregationLength": 32, "localPref": 100})
    );
    assert_eq!(
        out.objects[8]["spec"],
        json!({"communities": [{"name": "no-export", "value": "65535:65281"}]})
    );
}

#[test]
fn unknown_keys_bad_protocols_and_renames_are_reported() {
    let out = expand_yaml(
        "address-pools:\n- {name: Pool_A, protocol: l2, addresses: [198.51.100.0/28], color: red}\n\
         extra: 1\n",
    );
    let lines: Vec<String> = out.losses.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with(
        r#"ConfigMap metallb-system/config: config.address-pools[0].color "red": not a key"#
    ));
    assert!(lines[1].contains(r#"config.address-pools[0].name "Pool_A": not a valid object name, so the pool is named "pool-a""#));
    assert!(
        lines[2].contains(r#"config.address-pools[0].protocol "l2": not a protocol MetalLB knows"#)
    );
    assert!(lines[3].contains("config.extra 1: not a key"));
    assert_eq!(names(&out), ["IPAddressPool pool-a"]);
}

#[test]
fn malformed_configurations_are_errors_naming_the_key() {
    let config = |yaml: &str| {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        expand(&value, "ns", &ObjectRef::default()).unwrap_err()
    };
    assert_eq!(config("peers: 3"), "config.peers must be a list");
    assert_eq!(
        config("address-pools: [{protocol: bgp}]"),
        "config.address-pools[0].name must be a string"
    );
    assert_eq!(
        config("address-pools: [{name: '123'}]"),
        "config.address-pools[0].name: no letter in \"123\""
    );
}

#[test]
fn kubernetes_names_like_configmaptocrs() {
    assert_eq!(kubernetes_name("ok-name").as_deref(), Some("ok-name"));
    assert_eq!(kubernetes_name("01-numbered").as_deref(), Some("numbered"));
    assert_eq!(
        kubernetes_name("Under_Score").as_deref(),
        Some("under-score")
    );
    assert_eq!(kubernetes_name(&"a".repeat(70)).map(|n| n.len()), Some(63));
    assert_eq!(kubernetes_name("42"), None);
}
