//! What the schema walk cannot know: why a field has no twin, fields FerroLB accepts but its
//! speakers do not act on, kinds that do not carry over, and MetalLB's duration truncation.

use std::time::Duration;

use ferrolb_crds::duration::{format_go_duration, parse_go_duration};
use serde_json::{Map, Value};

use crate::kind::MetallbKind;
use crate::report::{Loss, ObjectRef};

/// Why a `spec` field of `kind` that FerroLB's schema lacks cannot carry over.
pub fn missing_field_reason(kind: MetallbKind, path: &str) -> &'static str {
    let field = path
        .strip_prefix("spec.")
        .unwrap_or(path)
        .split(['.', '['])
        .next()
        .unwrap_or("");
    match (kind, field) {
        (MetallbKind::BgpPeer, "bfdProfile") => "BFD is not supported",
        (MetallbKind::BgpPeer, "interface") => {
            "BGP unnumbered (a session on an interface, FRR mode) is not supported"
        }
        (MetallbKind::BgpPeer, "localASN") => "localASN (FRR mode) is not supported; myASN is used",
        (MetallbKind::BgpPeer, "dualStackAddressFamily") => {
            "FRR-mode only: one multiprotocol session carries both families unless disableMP"
        }
        (MetallbKind::L2Advertisement, "preferredNodeSelectors") => {
            "preferred announcing nodes are not supported: any eligible node may announce"
        }
        _ => "FerroLB has no such field",
    }
}

/// FerroLB accepts these BGPPeer fields, but its speakers open no session for a peer that
/// sets them: the peer is kept as it is (rather than open a session MetalLB did not, e.g. in
/// the default VRF) and each is a loss.
pub fn inert_peer_fields(object: &ObjectRef, spec: &Map<String, Value>) -> Vec<Loss> {
    let mut losses = Vec::new();
    for (field, reason) in [
        (
            "vrf",
            "VRFs are not supported: the peer is kept with its vrf, and FerroLB's speakers \
             open no session to it",
        ),
        (
            "dynamicASN",
            "a dynamic peer ASN is not supported: the peer is kept, and FerroLB's speakers \
             open no session to it",
        ),
    ] {
        if let Some(value) = spec.get(field).filter(|v| !super::is_zero(v)) {
            losses.push(Loss::field(object, &format!("spec.{field}"), value, reason));
        }
    }
    losses
}

/// MetalLB truncates `holdTime` and `keepaliveTime` to whole seconds; FerroLB requires whole
/// seconds. Truncates them here, returning a note for each one changed.
pub fn truncate_peer_timers(object: &ObjectRef, spec: &mut Map<String, Value>) -> Vec<String> {
    let mut notes = Vec::new();
    for field in ["holdTime", "keepaliveTime"] {
        let Some(Value::String(text)) = spec.get_mut(field) else {
            continue;
        };
        let Ok(duration) = parse_go_duration(text) else {
            continue;
        };
        if duration.subsec_nanos() == 0 {
            continue;
        }
        let whole = format_go_duration(Duration::from_secs(duration.as_secs()));
        notes.push(format!(
            "{object}: spec.{field} {text:?} truncated to {whole:?}, as MetalLB does"
        ));
        *text = whole;
    }
    notes
}
