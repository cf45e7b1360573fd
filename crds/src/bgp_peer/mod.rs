//! `BGPPeer`: a BGP router that speakers open sessions to.
//!
//! The fields are MetalLB's `metallb.io/v1beta2` BGPPeer fields (served by us as
//! `v1beta1`), without the ones FerroLB does not implement (`bfdProfile`, `interface` for
//! unnumbered sessions, `localASN`, `dualStackAddressFamily`): a manifest using them is
//! rejected rather than silently half-applied.

use std::time::Duration;

use k8s_openapi::api::core::v1::SecretReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::{format_go_duration, parse_go_duration};
use crate::schema::{
    cel_is_duration, cel_string, interface_name_schema, object_schema, pattern_string, rule,
};
use crate::selector::{check_label_selectors, selectors_schema};
use crate::validation::{
    DNS1123_LABEL_PATTERN, DNS1123_SUBDOMAIN_PATTERN, Errors, FieldError, MAX_NAMESPACE_NAME_LEN,
    MAX_OBJECT_NAME_LEN, Problem, check_interface_name, check_namespace_name, check_object_name,
    parse_ip, parse_ipv4,
};

/// The BGP port.
pub const DEFAULT_PEER_PORT: u16 = 179;
/// Hold time when neither `holdTime` nor `keepaliveTime` is set (MetalLB's default).
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
/// Smallest non-zero hold time (RFC 4271 §4.2).
pub const MIN_HOLD_TIME: Duration = Duration::from_secs(3);
/// Largest timer: hold time travels as a 16-bit number of seconds in the OPEN message.
pub const MAX_TIMER: Duration = Duration::from_secs(65535);
/// Longest TCP MD5 key the kernel accepts (`TCP_MD5SIG_MAXKEYLEN`), in bytes.
pub const MAX_PASSWORD_LEN: usize = 80;

/// How the peer's AS number is learned when `peerASN` is not given.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
// Doc comments on the variants would make the generated schema of `dynamicASN` carry this
// enum's description instead of the field's own, so the variants are described in comments.
#[allow(missing_docs)]
pub enum DynamicASNMode {
    // The peer must have our AS number (iBGP); a session from another AS is refused.
    Internal,
    // The peer must have another AS number (eBGP); a session from our AS is refused.
    External,
}

/// Desired state of a `BGPPeer`.
// Clippy reads kube's repeated `printcolumn(type_ = ...)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPPeer",
    plural = "bgppeers",
    singular = "bgppeer",
    category = "ferrolb",
    namespaced,
    derive = "PartialEq",
    doc = "BGPPeer is a BGP router that FerroLB speakers open sessions to and announce addresses to.",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
    printcolumn(name = "ASN", type_ = "string", json_path = ".spec.peerASN"),
    printcolumn(name = "Dynamic ASN", type_ = "string", json_path = ".spec.dynamicASN"),
    printcolumn(
        name = "Multi Hops",
        type_ = "string",
        json_path = ".spec.ebgpMultiHop"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = peer_rules()))]
pub struct BGPPeerSpec {
    /// Our AS number on this session, 1 to 4294967295.
    #[serde(rename = "myASN")]
    #[schemars(range(min = 1, max = u32::MAX))]
    pub my_asn: u32,

    /// The peer's AS number, 1 to 4294967295. Exactly one of `peerASN` and `dynamicASN`.
    #[serde(rename = "peerASN", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = u32::MAX))]
    pub peer_asn: Option<u32>,

    /// Accept whatever AS number the peer announces, provided it is our own (`internal`) or
    /// not (`external`). Exactly one of `peerASN` and `dynamicASN`.
    #[serde(
        rename = "dynamicASN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dynamic_asn: Option<DynamicASNMode>,

    /// Address to connect to.
    #[schemars(schema_with = "ip_schema")]
    pub peer_address: String,

    /// Local address to connect from; of the same family as `peerAddress`. When unset, the
    /// kernel picks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "ip_schema")]
    pub source_address: Option<String>,

    /// TCP port to connect to.
    #[serde(default = "default_peer_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub peer_port: u16,

    /// Hold time to propose (RFC 4271), e.g. `90s`: `0` (no keepalives) or from 3s to
    /// 65535s, in whole seconds since the OPEN message carries seconds. MetalLB silently
    /// truncates fractions; we reject them instead. Default: 3 × `keepaliveTime`, or 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "hold_time_schema")]
    pub hold_time: Option<String>,

    /// Keepalive interval, e.g. `30s`: whole seconds, at most `holdTime` (so 0 when
    /// `holdTime` is 0). Default: `holdTime` / 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "keepalive_time_schema")]
    pub keepalive_time: Option<String>,

    /// Time between connection attempts, e.g. `10s`: whole seconds from 1s to 65535s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "connect_time_schema")]
    pub connect_time: Option<String>,

    /// BGP identifier to send, an IPv4 address. When unset, the speaker picks the node's.
    #[serde(rename = "routerID", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "ipv4_schema")]
    pub router_id: Option<String>,

    /// Nodes that peer with this router. When empty, every node does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "selectors_schema")]
    pub node_selectors: Vec<LabelSelector>,

    /// TCP MD5 (RFC 2385) password, in the clear. Prefer `passwordSecret`; at most one of
    /// the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "password_schema")]
    pub password: Option<String>,

    /// A Secret of type `kubernetes.io/basic-auth` whose `password` key holds the TCP MD5
    /// password. At most one of `password` and `passwordSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "secret_reference_schema")]
    pub password_secret: Option<SecretReference>,

    /// The peer is more than one hop away (eBGP multi-hop).
    #[serde(default)]
    pub ebgp_multi_hop: bool,

    /// Negotiate BGP graceful restart (RFC 4724), so the peer keeps our routes while a
    /// speaker restarts.
    #[serde(default)]
    pub enable_graceful_restart: bool,

    /// Name of the VRF device (a Linux interface name) to open the session in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "vrf_schema")]
    pub vrf: Option<String>,

    /// Use one session per address family instead of one multiprotocol session.
    #[serde(default, rename = "disableMP")]
    pub disable_mp: bool,
}

fn default_peer_port() -> u16 {
    DEFAULT_PEER_PORT
}

/// Where the TCP MD5 password of a peer comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PeerPassword<'a> {
    /// The `password` field, in plain text.
    Inline(&'a str),
    /// The `passwordSecret` reference; the speaker reads the key `password` of that Secret.
    Secret(&'a SecretReference),
}

/// Hold time and keepalive interval after applying defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BgpTimers {
    /// The hold time proposed in OPEN: `holdTime`, else 3 × `keepaliveTime` (at most 65535 s), else 90 s. Zero turns keepalives and the hold timer off.
    pub hold_time: Duration,
    /// The interval between KEEPALIVEs: `keepaliveTime`, else a third of the hold time.
    pub keepalive_time: Duration,
}

impl BGPPeerSpec {
    /// The password source. An empty `password` or a `passwordSecret` without a name counts
    /// as unset: MetalLB's Go types serialize an unset `passwordSecret` as `{}`.
    pub fn password_source(&self) -> Option<PeerPassword<'_>> {
        if let Some(password) = self.password.as_deref().filter(|p| !p.is_empty()) {
            return Some(PeerPassword::Inline(password));
        }
        self.password_secret
            .as_ref()
            .filter(|s| secret_name_set(s))
            .map(PeerPassword::Secret)
    }

    /// Hold time and keepalive with MetalLB's defaults: a missing one is derived from the
    /// other (hold = 3 × keepalive, keepalive = hold / 3), and 90s hold when neither is set.
    pub fn timers(&self) -> Result<BgpTimers, FieldError> {
        let parse = |field: &str, value: &Option<String>| -> Result<Option<Duration>, FieldError> {
            value
                .as_deref()
                .map(parse_go_duration)
                .transpose()
                .map_err(|e| FieldError::new(field, Problem::Duration(e)))
        };
        let hold = parse("spec.holdTime", &self.hold_time)?;
        let keepalive = parse("spec.keepaliveTime", &self.keepalive_time)?;
        Ok(match (hold, keepalive) {
            (Some(hold_time), Some(keepalive_time)) => BgpTimers {
                hold_time,
                keepalive_time,
            },
            (Some(hold_time), None) => BgpTimers {
                hold_time,
                keepalive_time: hold_time / 3,
            },
            (None, Some(keepalive_time)) => BgpTimers {
                hold_time: (keepalive_time * 3).min(MAX_TIMER),
                keepalive_time,
            },
            (None, None) => BgpTimers {
                hold_time: DEFAULT_HOLD_TIME,
                keepalive_time: DEFAULT_HOLD_TIME / 3,
            },
        })
    }

    /// `connectTime`, parsed.
    pub fn connect_time(&self) -> Result<Option<Duration>, FieldError> {
        self.connect_time
            .as_deref()
            .map(parse_go_duration)
            .transpose()
            .map_err(|e| FieldError::new("spec.connectTime", Problem::Duration(e)))
    }

    /// The same rules as the CRD schema. Paths in the errors start at `spec.`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        check_asn(&mut errors, "spec.myASN", self.my_asn);
        if let Some(asn) = self.peer_asn {
            check_asn(&mut errors, "spec.peerASN", asn);
        }
        if self.peer_asn.is_some() == self.dynamic_asn.is_some() {
            errors.push(
                "spec.peerASN",
                Problem::ExactlyOneOf("peerASN", "dynamicASN"),
            );
        }

        let peer = errors.check("spec.peerAddress", parse_ip(&self.peer_address));
        if let Some(source_text) = &self.source_address {
            let source = errors.check("spec.sourceAddress", parse_ip(source_text));
            if let (Some(source), Some(peer)) = (source, peer) {
                let (family, peer_family) = (
                    crate::address::Family::of(&source),
                    crate::address::Family::of(&peer),
                );
                if family != peer_family {
                    errors.push(
                        "spec.sourceAddress",
                        Problem::FamilyMismatch {
                            address: source_text.clone(),
                            family,
                            peer_family,
                        },
                    );
                }
            }
        }
        if self.peer_port == 0 {
            errors.push(
                "spec.peerPort",
                Problem::OutOfRange {
                    value: 0,
                    min: 1,
                    max: 65535,
                },
            );
        }

        let hold = check_timer(&mut errors, "spec.holdTime", &self.hold_time, |d| {
            (d.is_zero() || (MIN_HOLD_TIME..=MAX_TIMER).contains(&d))
                .then_some(())
                .ok_or("0 or between 3s and 65535s")
        });
        let keepalive = check_timer(
            &mut errors,
            "spec.keepaliveTime",
            &self.keepalive_time,
            |d| (d <= MAX_TIMER).then_some(()).ok_or("at most 65535s"),
        );
        if let (Some(hold), Some(keepalive)) = (hold, keepalive)
            && keepalive > hold
        {
            errors.push(
                "spec.keepaliveTime",
                Problem::KeepaliveAboveHold {
                    value: format_go_duration(keepalive),
                    hold: format_go_duration(hold),
                },
            );
        }
        check_timer(&mut errors, "spec.connectTime", &self.connect_time, |d| {
            (Duration::from_secs(1)..=MAX_TIMER)
                .contains(&d)
                .then_some(())
                .ok_or("between 1s and 65535s")
        });

        if let Some(router_id) = &self.router_id {
            errors.check("spec.routerID", parse_ipv4(router_id));
        }
        check_label_selectors(&mut errors, "spec.nodeSelectors", &self.node_selectors);
        if let Some(password) = &self.password
            && password.len() > MAX_PASSWORD_LEN
        {
            errors.push(
                "spec.password",
                Problem::TooManyBytes {
                    len: password.len(),
                    max: MAX_PASSWORD_LEN,
                },
            );
        }
        if let Some(secret) = &self.password_secret {
            if let Some(name) = secret.name.as_deref().filter(|n| !n.is_empty()) {
                errors.check("spec.passwordSecret.name", check_object_name(name));
            }
            if let Some(namespace) = secret.namespace.as_deref().filter(|n| !n.is_empty()) {
                errors.check(
                    "spec.passwordSecret.namespace",
                    check_namespace_name(namespace),
                );
            }
        }
        let inline_password = self.password.as_deref().is_some_and(|p| !p.is_empty());
        if inline_password && self.password_secret.as_ref().is_some_and(secret_name_set) {
            errors.push(
                "spec.password",
                Problem::MutuallyExclusive("passwordSecret"),
            );
        }
        if let Some(vrf) = &self.vrf {
            errors.check("spec.vrf", check_interface_name(vrf));
        }
        errors.finish()
    }
}

fn secret_name_set(secret: &SecretReference) -> bool {
    secret.name.as_deref().is_some_and(|n| !n.is_empty())
}

fn check_asn(errors: &mut Errors, field: &str, asn: u32) {
    if asn == 0 {
        errors.push(
            field,
            Problem::OutOfRange {
                value: 0,
                min: 1,
                max: u32::MAX.into(),
            },
        );
    }
}

/// Parses a timer, requires whole seconds and `within`; returns it when valid.
fn check_timer(
    errors: &mut Errors,
    field: &str,
    value: &Option<String>,
    within: impl Fn(Duration) -> Result<(), &'static str>,
) -> Option<Duration> {
    let text = value.as_deref()?;
    let duration = errors.check(field, parse_go_duration(text).map_err(Problem::from))?;
    let mut valid = true;
    if let Err(bound) = within(duration) {
        errors.push(
            field,
            Problem::DurationBound {
                value: text.to_string(),
                bound,
            },
        );
        valid = false;
    }
    if duration.subsec_nanos() != 0 {
        errors.push(
            field,
            Problem::DurationBound {
                value: text.to_string(),
                bound: "a whole number of seconds",
            },
        );
        valid = false;
    }
    valid.then_some(duration)
}

// --- CRD schema -------------------------------------------------------------------------

/// Rules across fields; each is reported against the field a user would fix.
fn peer_rules() -> Vec<Value> {
    let both_durations = format!(
        "{} && {}",
        cel_is_duration("self.holdTime"),
        cel_is_duration("self.keepaliveTime")
    );
    vec![
        crate::schema::rule_at(
            "has(self.peerASN) != has(self.dynamicASN)",
            "exactly one of peerASN and dynamicASN must be set",
            ".peerASN",
        ),
        crate::schema::rule_at(
            "!(has(self.password) && self.password != '' && has(self.passwordSecret) \
             && has(self.passwordSecret.name) && self.passwordSecret.name != '')",
            "password and passwordSecret are mutually exclusive",
            ".password",
        ),
        crate::schema::rule_at(
            &format!(
                "!has(self.holdTime) || !has(self.keepaliveTime) || !({both_durations}) \
                 || duration(self.keepaliveTime) <= duration(self.holdTime)"
            ),
            "keepaliveTime must not be longer than holdTime (so with holdTime 0 it must be 0 or unset)",
            ".keepaliveTime",
        ),
        crate::schema::rule_at(
            "!has(self.sourceAddress) || !isIP(self.sourceAddress) || !isIP(self.peerAddress) \
             || ip(self.sourceAddress).family() == ip(self.peerAddress).family()",
            "sourceAddress and peerAddress must be of the same IP family",
            ".sourceAddress",
        ),
    ]
}

/// Longest IP address text (an IPv6 address with an embedded IPv4 address is 45).
const MAX_IP_LEN: usize = 64;

fn ip_schema(_: &mut SchemaGenerator) -> Schema {
    object_schema(cel_string(
        MAX_IP_LEN,
        vec![rule(
            "isIP(self)",
            "must be an IP address (IPv4-mapped IPv6 addresses and zones are not allowed)",
        )],
    ))
}

fn ipv4_schema(_: &mut SchemaGenerator) -> Schema {
    object_schema(cel_string(
        MAX_IP_LEN,
        vec![rule(
            "isIP(self) && ip(self).family() == 4",
            "must be an IPv4 address",
        )],
    ))
}

/// CEL rules of a timer: a Go duration, in whole seconds, within `bound_rule`.
fn timer_schema(bound_rule: &str, bound_message: &str) -> Schema {
    let is_duration = cel_is_duration("self");
    object_schema(cel_string(
        32,
        vec![
            rule(&is_duration, "must be a duration such as 90s or 1m30s"),
            rule(&format!("!({is_duration}) || {bound_rule}"), bound_message),
            rule(
                // int() of a duration is its nanoseconds. (Rebuilding the duration from a string
                // would be simpler to read, but string() of a number has no size bound in the
                // API server's cost estimate, which then rejects the rule.)
                &format!("!({is_duration}) || int(duration(self)) % 1000000000 == 0"),
                "must be a whole number of seconds",
            ),
        ],
    ))
}

fn hold_time_schema(_: &mut SchemaGenerator) -> Schema {
    timer_schema(
        "duration(self) == duration('0s') || (duration(self) >= duration('3s') && duration(self) <= duration('65535s'))",
        "must be 0 or between 3s and 65535s",
    )
}

fn keepalive_time_schema(_: &mut SchemaGenerator) -> Schema {
    timer_schema(
        "duration(self) <= duration('65535s')",
        "must be at most 65535s",
    )
}

fn connect_time_schema(_: &mut SchemaGenerator) -> Schema {
    timer_schema(
        "duration(self) >= duration('1s') && duration(self) <= duration('65535s')",
        "must be between 1s and 65535s",
    )
}

fn password_schema(_: &mut SchemaGenerator) -> Schema {
    object_schema(cel_string(
        MAX_PASSWORD_LEN,
        vec![rule(
            "size(bytes(self)) <= 80",
            "must be at most 80 bytes (the kernel's TCP MD5 key limit)",
        )],
    ))
}

fn secret_reference_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "A reference to a Secret.",
        "properties": {
            "name": pattern_string(MAX_OBJECT_NAME_LEN, DNS1123_SUBDOMAIN_PATTERN),
            "namespace": pattern_string(MAX_NAMESPACE_NAME_LEN, DNS1123_LABEL_PATTERN),
        },
    })
}

fn vrf_schema(_: &mut SchemaGenerator) -> Schema {
    object_schema(interface_name_schema())
}

#[cfg(test)]
mod tests;
