//! MetalLB manifests, with only `apiVersion` changed, deserialize into our types with
//! MetalLB's defaults, pass `validate()`, and survive a serialization round trip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use ferrolb_crds::bgp_peer::PeerPassword;
use ferrolb_crds::community::{CommunityRef, CommunityValue};
use ferrolb_crds::{
    BGPAdvertisement, BGPPeer, Community, DynamicASNMode, IPAddressPool, L2Advertisement,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn parse<T: DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Serialize and parse again: nothing is lost or invented.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let yaml = serde_yaml::to_string(value).expect("the value serializes");
    assert_eq!(&parse::<T>(&yaml), value, "{yaml}");
}

#[test]
fn ip_address_pool() {
    let pool: IPAddressPool = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.10.0/24
  - 192.168.9.1-192.168.9.5
  - fc00:f853:0ccd:e799::/124
"#,
    );
    assert_eq!(pool.metadata.name.as_deref(), Some("first-pool"));
    assert!(pool.spec.auto_assign, "autoAssign defaults to true");
    assert!(
        !pool.spec.avoid_buggy_ips,
        "avoidBuggyIPs defaults to false"
    );
    assert_eq!(pool.spec.service_allocation, None);
    assert_eq!(pool.spec.validate(), Ok(()));
    assert_eq!(pool.spec.ranges().map(|r| r.len()), Ok(3));
    assert_eq!(pool.status, None);
    round_trip(&pool);

    let pool: IPAddressPool = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata:
  name: ns-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.0.2.0/24
  autoAssign: false
  avoidBuggyIPs: true
  serviceAllocation:
    priority: 50
    namespaces:
    - namespace-a
    - namespace-b
    namespaceSelectors:
    - matchLabels:
        foo: bar
    serviceSelectors:
    - matchExpressions:
      - key: serviceKey
        operator: In
        values: [serviceValue]
status:
  assignedIPv4: "1"
  availableIPv4: "255"
  assignedIPv6: "0"
  availableIPv6: "0"
  inUse: true
  observedGeneration: 3
  conditions:
  - type: Ready
    status: "True"
    reason: AddressesValid
    message: ""
    lastTransitionTime: "2025-01-01T00:00:00Z"
"#,
    );
    assert!(!pool.spec.auto_assign);
    assert!(pool.spec.avoid_buggy_ips);
    let allocation = pool
        .spec
        .service_allocation
        .clone()
        .expect("serviceAllocation is set");
    assert_eq!(allocation.priority, Some(50));
    assert_eq!(allocation.namespaces, ["namespace-a", "namespace-b"]);
    assert_eq!(allocation.namespace_selectors.len(), 1);
    assert_eq!(allocation.service_selectors.len(), 1);
    assert_eq!(pool.spec.validate(), Ok(()));
    let status = pool.status.clone().expect("the status is set");
    assert_eq!(status.counts().map(|c| c.available_ipv4), Some(255));
    assert_eq!(status.in_use, Some(true));
    assert_eq!(
        status.conditions[0].type_,
        ferrolb_crds::pool::condition::TYPE_READY
    );
    round_trip(&pool);
}

#[test]
fn l2_advertisement_without_spec() {
    // MetalLB's most common example has no spec at all; the CRD defaults it to {}.
    let l2: L2Advertisement = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
spec: {}
"#,
    );
    assert_eq!(l2.spec, Default::default());
    assert_eq!(l2.spec.validate(), Ok(()));
    round_trip(&l2);

    let l2: L2Advertisement = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata:
  name: l2adv
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
  ipAddressPoolSelectors:
  - matchLabels:
      zone: east
  nodeSelectors:
  - matchLabels:
      kubernetes.io/hostname: NodeA
  interfaces:
  - eth3
  - eth4
  serviceSelectors:
  - matchLabels:
      app: web
"#,
    );
    assert_eq!(l2.spec.interfaces, ["eth3", "eth4"]);
    // The selecting fields sit flat in the spec, as in MetalLB.
    let selectors = &l2.spec.selectors;
    assert_eq!(selectors.ip_address_pools, ["first-pool"]);
    assert_eq!(selectors.ip_address_pool_selectors.len(), 1);
    assert_eq!(selectors.node_selectors.len(), 1);
    assert_eq!(selectors.service_selectors.len(), 1);
    assert_eq!(l2.spec.validate(), Ok(()));
    round_trip(&l2);
}

#[test]
fn bgp_advertisement() {
    let empty: BGPAdvertisement = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: example
  namespace: metallb-system
spec: {}
"#,
    );
    assert_eq!(
        empty.spec.aggregation_length, 32,
        "aggregationLength defaults to 32"
    );
    assert_eq!(
        empty.spec.aggregation_length_v6, 128,
        "aggregationLengthV6 defaults to 128"
    );
    assert_eq!(empty.spec.local_pref, None);
    round_trip(&empty);

    let adv: BGPAdvertisement = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: local
  namespace: metallb-system
spec:
  ipAddressPools:
  - bgp-with-advertisement
  aggregationLength: 32
  aggregationLengthV6: 128
  localPref: 150
  communities:
  - 65535:65282
  - large:1:2:3
  - NO_ADVERTISE
  nodeSelectors:
  - matchLabels:
      kubernetes.io/hostname: hostA
  peers:
  - peer1
"#,
    );
    assert_eq!(adv.spec.local_pref, Some(150));
    assert_eq!(
        adv.spec.selectors.ip_address_pools,
        ["bgp-with-advertisement"]
    );
    assert_eq!(adv.spec.selectors.node_selectors.len(), 1);
    assert_eq!(adv.spec.peers, ["peer1"]);
    assert_eq!(adv.spec.validate(), Ok(()));
    assert_eq!(
        adv.spec.community_refs(),
        Ok(vec![
            CommunityRef::Value(CommunityValue::Standard(65535, 65282)),
            CommunityRef::Value(CommunityValue::Large(1, 2, 3)),
            CommunityRef::Alias("NO_ADVERTISE".into()),
        ])
    );
    round_trip(&adv);
}

#[test]
fn bgp_peer() {
    let peer: BGPPeer = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata:
  name: sample
  namespace: metallb-system
spec:
  myASN: 64500
  peerASN: 64501
  peerAddress: 10.0.0.1
"#,
    );
    assert_eq!(peer.spec.peer_port, 179, "peerPort defaults to 179");
    assert!(
        !peer.spec.ebgp_multi_hop && !peer.spec.enable_graceful_restart && !peer.spec.disable_mp
    );
    assert_eq!(peer.spec.dynamic_asn, None);
    assert_eq!(peer.spec.validate(), Ok(()));
    round_trip(&peer);

    let peer: BGPPeer = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata:
  name: full
  namespace: metallb-system
spec:
  myASN: 64512
  dynamicASN: external
  peerAddress: 2001:db8::1
  sourceAddress: 2001:db8::2
  peerPort: 1179
  holdTime: 90s
  keepaliveTime: 30s
  connectTime: 10s
  routerID: 10.10.10.10
  nodeSelectors:
  - matchExpressions:
    - key: kubernetes.io/hostname
      operator: In
      values: [hostA, hostB]
  password: ""
  passwordSecret:
    name: secretname
    namespace: metallb-system
  ebgpMultiHop: true
  enableGracefulRestart: true
  vrf: red
  disableMP: true
"#,
    );
    assert_eq!(peer.spec.dynamic_asn, Some(DynamicASNMode::External));
    assert_eq!(peer.spec.peer_port, 1179);
    assert_eq!(peer.spec.validate(), Ok(()));
    assert!(
        matches!(peer.spec.password_source(), Some(PeerPassword::Secret(s)) if s.name.as_deref() == Some("secretname"))
    );
    let timers = peer
        .spec
        .timers()
        .map(|t| (t.hold_time.as_secs(), t.keepalive_time.as_secs()));
    assert_eq!(timers, Ok((90, 30)));
    round_trip(&peer);
}

#[test]
fn community() {
    let community: Community = parse(
        r#"
apiVersion: ferrolb.io/v1beta1
kind: Community
metadata:
  name: communities
  namespace: metallb-system
spec:
  communities:
  - name: vpn-only
    value: 1234:1
  - name: NO_ADVERTISE
    value: 65535:65282
"#,
    );
    assert_eq!(community.spec.validate(), Ok(()));
    assert_eq!(
        community.spec.lookup("vpn-only"),
        Some(CommunityValue::Standard(1234, 1))
    );
    round_trip(&community);
}

#[test]
fn unknown_fields_do_not_break_reading() {
    // A field added by a newer CRD must not make the controller drop the object.
    let peer: Result<BGPPeer, _> = serde_yaml::from_str(
        "apiVersion: ferrolb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, bfdProfile: x}\n",
    );
    assert!(peer.is_ok());
}
