//! From `BGPPeer`, `BGPAdvertisement` and `Community` objects to a [`BgpView`]. Pure. An
//! object that cannot be used as written is left out whole, with a [`BgpWarning`]: half of
//! a peer or an advertisement without one of its communities could send routes where the
//! operator never meant them to go.

use std::collections::BTreeSet;
use std::time::Duration;

use ferrolb_crds::bgp_peer::PeerPassword;
use ferrolb_crds::community::{CommunityRef, CommunityValue};
use ferrolb_crds::validation::FieldError;
use ferrolb_crds::{BGPAdvertisement, BGPPeer, Community};

use super::bgp::{
    BgpAdvertisementView, BgpPeerView, BgpView, DEFAULT_CONNECT_TIME, PasswordSource,
};

/// Something in the BGP objects that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BgpWarning {
    /// An object without a name, which cannot be keyed.
    #[error("a {kind} without metadata.name was skipped")]
    MissingName {
        /// The object's kind, e.g. `BGPPeer`.
        kind: &'static str,
    },
    /// A BGPPeer that fails validation.
    #[error("BGPPeer {peer}: {errors}; the peer is skipped")]
    InvalidPeer {
        /// The BGPPeer's name.
        peer: String,
        /// The validation errors, joined into one line.
        errors: String,
    },
    /// A BGPPeer using a field the speaker does not implement.
    #[error("BGPPeer {peer}: {feature} is not supported; the peer is skipped")]
    UnsupportedPeerFeature {
        /// The BGPPeer's name.
        peer: String,
        /// The field, as spelled in the spec.
        feature: &'static str,
    },
    /// A BGPPeer whose passwordSecret lives in another namespace, which the speaker may not read.
    #[error(
        "BGPPeer {peer}: passwordSecret {namespace}/{name} is outside the speaker's namespace {speaker_namespace}; the peer is skipped"
    )]
    ForeignPasswordSecret {
        /// The BGPPeer's name.
        peer: String,
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The namespace the speaker runs in and reads Secrets from.
        speaker_namespace: String,
    },
    /// A BGPAdvertisement that fails validation.
    #[error("BGPAdvertisement {advertisement}: {errors}; the advertisement is skipped")]
    InvalidAdvertisement {
        /// The BGPAdvertisement's name.
        advertisement: String,
        /// The validation errors, joined into one line.
        errors: String,
    },
    /// A BGPAdvertisement naming a community alias that no Community object defines.
    #[error(
        "BGPAdvertisement {advertisement}: community alias {alias:?} is defined in no Community; the advertisement is skipped"
    )]
    UnknownCommunityAlias {
        /// The BGPAdvertisement's name.
        advertisement: String,
        /// The alias as written.
        alias: String,
    },
}

fn joined(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl BgpView {
    /// The view of the given objects, all from the speaker's `namespace`.
    pub fn from_objects<'o>(
        peers: impl IntoIterator<Item = &'o BGPPeer>,
        advertisements: impl IntoIterator<Item = &'o BGPAdvertisement>,
        communities: impl IntoIterator<Item = &'o Community>,
        namespace: &str,
    ) -> (BgpView, Vec<BgpWarning>) {
        let mut warnings = Vec::new();
        let mut view = BgpView::default();
        for peer in peers {
            if let Some(peer) = peer_view(peer, namespace, &mut warnings) {
                view.insert_peer(peer);
            }
        }
        let communities: Vec<&Community> = communities.into_iter().collect();
        for advertisement in advertisements {
            if let Some(advertisement) =
                advertisement_view(advertisement, &communities, &mut warnings)
            {
                view.insert_advertisement(advertisement);
            }
        }
        (view, warnings)
    }
}

fn object_name(
    name: &Option<String>,
    kind: &'static str,
    warnings: &mut Vec<BgpWarning>,
) -> Option<String> {
    let name = name.clone().filter(|name| !name.is_empty());
    if name.is_none() {
        warnings.push(BgpWarning::MissingName { kind });
    }
    name
}

/// Whole seconds as a u16, the OPEN's unit; validation already bounds them.
fn seconds(duration: Duration) -> Option<u16> {
    u16::try_from(duration.as_secs()).ok()
}

fn peer_view(
    peer: &BGPPeer,
    namespace: &str,
    warnings: &mut Vec<BgpWarning>,
) -> Option<BgpPeerView> {
    let name = object_name(&peer.metadata.name, "BGPPeer", warnings)?;
    let spec = &peer.spec;
    let invalid = |errors: String| BgpWarning::InvalidPeer {
        peer: name.clone(),
        errors,
    };
    if let Err(errors) = spec.validate() {
        warnings.push(invalid(joined(&errors)));
        return None;
    }
    let unsupported = |feature| BgpWarning::UnsupportedPeerFeature {
        peer: name.clone(),
        feature,
    };
    if spec.vrf.as_deref().is_some_and(|vrf| !vrf.is_empty()) {
        warnings.push(unsupported("vrf"));
        return None;
    }
    let Some(peer_asn) = spec.peer_asn else {
        warnings.push(unsupported("dynamicASN"));
        return None;
    };
    let (Ok(address), source) = (
        spec.peer_address.parse(),
        spec.source_address.as_deref().map(str::parse).transpose(),
    ) else {
        warnings.push(invalid("spec.peerAddress is not an IP address".into()));
        return None;
    };
    let Ok(source_address) = source else {
        warnings.push(invalid("spec.sourceAddress is not an IP address".into()));
        return None;
    };
    let Ok(router_id) = spec.router_id.as_deref().map(str::parse).transpose() else {
        warnings.push(invalid("spec.routerID is not an IPv4 address".into()));
        return None;
    };
    let timers = match spec.timers() {
        Ok(timers) => timers,
        Err(error) => {
            warnings.push(invalid(error.to_string()));
            return None;
        }
    };
    let connect_time = match spec.connect_time() {
        Ok(time) => time.unwrap_or(DEFAULT_CONNECT_TIME),
        Err(error) => {
            warnings.push(invalid(error.to_string()));
            return None;
        }
    };
    let (Some(hold_time), Some(keepalive_time)) =
        (seconds(timers.hold_time), seconds(timers.keepalive_time))
    else {
        warnings.push(invalid("timers exceed 65535s".into()));
        return None;
    };
    let password = match spec.password_source() {
        None => None,
        Some(PeerPassword::Inline(password)) => Some(PasswordSource::Inline(password.into())),
        Some(PeerPassword::Secret(reference)) => {
            let secret_namespace = reference.namespace.as_deref().unwrap_or(namespace);
            let secret_name = reference.name.clone().unwrap_or_default();
            if secret_namespace != namespace {
                warnings.push(BgpWarning::ForeignPasswordSecret {
                    peer: name.clone(),
                    namespace: secret_namespace.into(),
                    name: secret_name,
                    speaker_namespace: namespace.into(),
                });
                return None;
            }
            Some(PasswordSource::Secret(secret_name))
        }
    };
    Some(BgpPeerView {
        address,
        port: spec.peer_port,
        my_asn: spec.my_asn,
        peer_asn,
        source_address,
        router_id,
        hold_time,
        keepalive_time,
        connect_time,
        password,
        ebgp_multihop: spec.ebgp_multi_hop,
        graceful_restart: spec.enable_graceful_restart,
        node_selectors: spec.node_selectors.clone(),
        name,
    })
}

fn advertisement_view(
    advertisement: &BGPAdvertisement,
    communities: &[&Community],
    warnings: &mut Vec<BgpWarning>,
) -> Option<BgpAdvertisementView> {
    let name = object_name(&advertisement.metadata.name, "BGPAdvertisement", warnings)?;
    let spec = &advertisement.spec;
    let invalid = |errors: String| BgpWarning::InvalidAdvertisement {
        advertisement: name.clone(),
        errors,
    };
    if let Err(errors) = spec.validate() {
        warnings.push(invalid(joined(&errors)));
        return None;
    }
    let (Ok(aggregation_length), Ok(aggregation_length_v6)) = (
        u8::try_from(spec.aggregation_length),
        u8::try_from(spec.aggregation_length_v6),
    ) else {
        warnings.push(invalid("aggregation length out of range".into()));
        return None;
    };
    let mut values = BTreeSet::new();
    for text in &spec.communities {
        let value = match text.parse::<CommunityRef>() {
            Ok(CommunityRef::Value(value)) => Some(value),
            Ok(CommunityRef::Alias(alias)) => resolve_alias(&alias, communities),
            Err(error) => {
                warnings.push(invalid(error.to_string()));
                return None;
            }
        };
        let Some(value) = value else {
            warnings.push(BgpWarning::UnknownCommunityAlias {
                advertisement: name.clone(),
                alias: text.clone(),
            });
            return None;
        };
        values.insert(value);
    }
    Some(BgpAdvertisementView {
        aggregation_length,
        aggregation_length_v6,
        local_pref: spec.local_pref,
        communities: values,
        selectors: spec.selectors.clone(),
        peers: spec.peers.clone(),
        name,
    })
}

/// The value of `alias` in the Community objects, the first by name when several define
/// it (the controller reports the clash).
fn resolve_alias(alias: &str, communities: &[&Community]) -> Option<CommunityValue> {
    let mut sorted: Vec<&&Community> = communities.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    sorted
        .into_iter()
        .find_map(|community| community.spec.lookup(alias))
}
