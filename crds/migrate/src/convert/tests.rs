use serde_json::{Value, json};

use super::*;
use crate::input::parse_yaml;

const EDGE_CASES: &str = include_str!("../../testdata/edge-cases.yaml");

fn run(yaml: &str) -> Conversion {
    convert(&parse_yaml("t.yaml", yaml).unwrap(), &Options::default()).unwrap()
}

fn losses(yaml: &str) -> Vec<String> {
    run(yaml).losses.iter().map(ToString::to_string).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in {objects:#?}"))
}

fn peer(spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: p1, namespace: metallb-system}}\n\
         spec: {{myASN: 64512, peerASN: 64513, peerAddress: 192.0.2.1, {spec}}}\n"
    )
}

#[test]
fn edge_cases_carry_over_field_for_field() {
    let out = run(EDGE_CASES);
    assert_eq!(out.losses, vec![], "no loss");
    let input: Vec<Value> = serde_yaml::Deserializer::from_str(EDGE_CASES)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    for original in input.iter().filter(|o| o["apiVersion"] != "v1") {
        let name = original["metadata"]["name"].as_str().unwrap();
        let kind = original["kind"].as_str().unwrap();
        let converted = find(&out.objects, kind, name);
        assert_eq!(converted["apiVersion"], "ferrolb.io/v1beta1");
        assert_eq!(converted["metadata"]["namespace"], "ferrolb-system");
        let mut expected_spec = original["spec"].clone();
        if kind == "BGPPeer" {
            expected_spec["passwordSecret"]["namespace"] = json!("ferrolb-system");
        }
        assert_eq!(converted["spec"], expected_spec, "{kind} {name}");
    }
    // Server-set metadata and status go; labels and other annotations stay.
    let pool = find(&out.objects, "IPAddressPool", "cidr-and-range");
    assert_eq!(
        pool["metadata"],
        json!({"name": "cidr-and-range", "namespace": "ferrolb-system",
               "labels": {"tier": "edge"}, "annotations": {"team": "network"}})
    );
    assert!(pool.get("status").is_none());
    // The password Secret is copied, first in apply order.
    assert_eq!(
        out.objects[0],
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
               "metadata": {"name": "bgp-password", "namespace": "ferrolb-system"},
               "data": {"password": "c2VjcmV0"}})
    );
    let kinds: Vec<&str> = out
        .objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Secret",
            "Community",
            "IPAddressPool",
            "IPAddressPool",
            "BGPPeer",
            "BGPAdvertisement",
            "L2Advertisement"
        ]
    );
}

#[test]
fn fields_ferrolb_lacks_are_losses_zero_values_are_not() {
    assert_eq!(
        losses(&peer(
            "bfdProfile: fast, interface: eth0, localASN: 65000, dualStackAddressFamily: true, foo: {a: 1}"
        )),
        [
            r#"BGPPeer metallb-system/p1: spec.bfdProfile "fast": BFD is not supported"#,
            r#"BGPPeer metallb-system/p1: spec.dualStackAddressFamily true: FRR-mode only: one multiprotocol session carries both families unless disableMP"#,
            r#"BGPPeer metallb-system/p1: spec.foo {"a":1}: FerroLB has no such field"#,
            r#"BGPPeer metallb-system/p1: spec.interface "eth0": BGP unnumbered (a session on an interface, FRR mode) is not supported"#,
            r#"BGPPeer metallb-system/p1: spec.localASN 65000: localASN (FRR mode) is not supported; myASN is used"#,
        ]
    );
    // What Go writes for unset fields is no loss.
    assert_eq!(
        losses(&peer(
            "bfdProfile: '', localASN: 0, dualStackAddressFamily: false, passwordSecret: {}"
        )),
        Vec::<String>::new()
    );
}

#[test]
fn vrf_and_dynamic_asn_peers_are_kept_but_reported() {
    let out = run(&peer("vrf: red"));
    assert_eq!(out.objects[0]["spec"]["vrf"], "red");
    assert_eq!(
        out.losses[0].to_string(),
        "BGPPeer metallb-system/p1: spec.vrf \"red\": VRFs are not supported: the peer is kept with \
         its vrf, and FerroLB's speakers open no session to it"
    );
    let dynamic = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: d}\n\
                   spec: {myASN: 64512, dynamicASN: external, peerAddress: 192.0.2.1}\n";
    assert_eq!(run(dynamic).losses[0].field, "spec.dynamicASN");
}

#[test]
fn missing_password_secret_is_an_action_line() {
    let out = run(&peer("passwordSecret: {name: pw}"));
    assert_eq!(out.objects.len(), 1);
    assert_eq!(
        out.losses[0].to_string(),
        "BGPPeer metallb-system/p1: spec.passwordSecret.name \"pw\": the Secret metallb-system/pw is \
         not in the input: copy it to namespace ferrolb-system with the same name"
    );
    // An inline password carries as it is.
    let inline = run(&peer("password: hunter2"));
    assert_eq!(
        (inline.losses.len(), &inline.objects[0]["spec"]["password"]),
        (0, &json!("hunter2"))
    );
}

#[test]
fn fractional_timers_are_truncated_as_metallb_does() {
    let out = run(&peer("holdTime: 90.5s, keepaliveTime: 1500ms"));
    assert_eq!(out.losses, vec![]);
    assert_eq!(out.objects[0]["spec"]["holdTime"], "1m30s");
    assert_eq!(out.objects[0]["spec"]["keepaliveTime"], "1s");
    assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
}

#[test]
fn whole_objects_that_do_not_carry_over() {
    let yaml = "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: b, namespace: metallb-system}\n---\n\
                apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: elsewhere, namespace: other}\nspec: {addresses: [192.0.2.0/24]}\n---\n\
                apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad, ownerReferences: [{name: x}]}\nspec: {addresses: [192.0.2.0/33]}\n---\n\
                apiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata: {name: s}\n---\n\
                apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n";
    let out = run(yaml);
    assert_eq!(out.objects, Vec::<Value>::new());
    let lines: Vec<String> = out.losses.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with("BFDProfile metallb-system/b: BFD is not supported"));
    assert!(lines[1].starts_with("IPAddressPool other/elsewhere: not in metallb-system"));
    assert!(lines[2].starts_with("IPAddressPool metallb-system/bad: metadata.ownerReferences"));
    assert!(
        lines[3].contains("FerroLB would reject it (spec.addresses[0]"),
        "{}",
        lines[3]
    );
    assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
}

#[test]
fn namespaces_follow_the_flags() {
    let options = Options {
        from_namespace: "mlb".into(),
        namespace: "lb".into(),
    };
    let yaml = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: a, namespace: mlb}\n---\n\
                apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: b}\n";
    let out = convert(&parse_yaml("t", yaml).unwrap(), &options).unwrap();
    assert_eq!(out.losses, vec![]);
    assert!(
        out.objects
            .iter()
            .all(|o| o["metadata"]["namespace"] == "lb")
    );
}

#[test]
fn the_same_object_twice_is_an_error_naming_both_inputs() {
    let doc = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: a}\n";
    let mut inputs = parse_yaml("one.yaml", doc).unwrap();
    inputs.extend(parse_yaml("two.yaml", doc).unwrap());
    let error = convert(&inputs, &Options::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "L2Advertisement ferrolb-system/a comes from both one.yaml, document 1 and two.yaml, \
         document 1; keep one of them"
    );
}

#[test]
fn referenced_secrets_are_what_a_live_read_must_fetch() {
    let inputs = parse_yaml("t", &peer("passwordSecret: {name: pw}")).unwrap();
    assert_eq!(
        referenced_secrets(&inputs, &Options::default()),
        [("metallb-system".to_string(), "pw".to_string())]
    );
}
