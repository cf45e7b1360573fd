//! MetalLB's legacy configuration (the `config` key of its ConfigMap) as the `metallb.io`
//! objects MetalLB's own `configmaptocrs` creates from it, so that one conversion serves both.
//!
//! As there: each pool becomes an `IPAddressPool` (a name that is not a valid object name is
//! lowercased, `_` becomes `-`, and anything before the first letter is cut); a `layer2` pool
//! gets an `L2Advertisement` `l2advertisementN`; each `bgp-advertisements` entry becomes a
//! `BGPAdvertisement` `bgpadvertisementN` (a `bgp` pool without entries gets an empty one);
//! peers become `BGPPeer`s `peer1`, `peer2`, …; `bgp-communities` one `Community`
//! `communities`; `bfd-profiles` `BFDProfile`s. Unlike there, an unknown key is not ignored
//! but reported, and a peer gets no `holdTime` unless it had one (90s is the default anyway).

use serde_json::{Map, Value, json};

use crate::kind::MetallbKind;
use crate::report::{Loss, ObjectRef};

/// The objects the configuration stands for, and what of it has no place in them.
#[derive(Debug, Default, PartialEq)]
pub struct Expanded {
    /// `metallb.io` objects, in namespace `namespace`.
    pub objects: Vec<Value>,
    /// Keys the configuration format does not have, pools without a known protocol, renames.
    pub losses: Vec<Loss>,
}

/// Expands `config` (already parsed YAML) into `metallb.io` objects in `namespace`. `source`
/// names the ConfigMap in loss lines. Errors name the offending key.
pub fn expand(config: &Value, namespace: &str, source: &ObjectRef) -> Result<Expanded, String> {
    let mut ctx = Ctx {
        namespace,
        source,
        out: Expanded::default(),
    };
    let config = match config {
        Value::Null => return Ok(ctx.out),
        Value::Object(map) => map,
        _ => return Err("the configuration must be a mapping".into()),
    };
    for (key, value) in config {
        let path = format!("config.{key}");
        match key.as_str() {
            "peers" => {
                for (index, peer) in list(value, &path)?.iter().enumerate() {
                    ctx.peer(index, peer)?;
                }
            }
            "address-pools" => ctx.pools(list(value, &path)?)?,
            "bgp-communities" => ctx.communities(value, &path)?,
            "bfd-profiles" => {
                for (index, profile) in list(value, &path)?.iter().enumerate() {
                    ctx.bfd_profile(index, profile)?;
                }
            }
            _ => ctx.unknown(&path, value),
        }
    }
    // Objects were pushed as found; sort them stably in configmaptocrs' order.
    ctx.out.objects.sort_by_key(|object| {
        object
            .get("kind")
            .and_then(Value::as_str)
            .and_then(MetallbKind::parse)
            .map_or(u8::MAX, MetallbKind::legacy_order)
    });
    Ok(ctx.out)
}

struct Ctx<'a> {
    namespace: &'a str,
    source: &'a ObjectRef,
    out: Expanded,
}

impl Ctx<'_> {
    fn unknown(&mut self, path: &str, value: &Value) {
        self.out.losses.push(Loss::field(
            self.source,
            path,
            value,
            "not a key of MetalLB's configuration format (MetalLB ignored it)",
        ));
    }

    fn object(
        &mut self,
        api_version: &str,
        kind: MetallbKind,
        name: &str,
        spec: Map<String, Value>,
    ) {
        self.out.objects.push(json!({
            "apiVersion": api_version,
            "kind": kind.name(),
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": Value::Object(spec),
        }));
    }

    /// Copies the keys of `from` named in `renames` (legacy name, CRD name) into a spec;
    /// reports the others.
    fn fields(
        &mut self,
        from: &Value,
        path: &str,
        renames: &[(&str, &str)],
    ) -> Result<Map<String, Value>, String> {
        let Value::Object(from) = from else {
            return Err(format!("{path} must be a mapping"));
        };
        let mut spec = Map::new();
        for (key, value) in from {
            match renames.iter().find(|(legacy, _)| legacy == key) {
                Some((_, field)) => {
                    spec.insert((*field).into(), value.clone());
                }
                None => self.unknown(&format!("{path}.{key}"), value),
            }
        }
        Ok(spec)
    }

    fn peer(&mut self, index: usize, peer: &Value) -> Result<(), String> {
        let path = format!("config.peers[{index}]");
        let mut spec = self.fields(
            peer,
            &path,
            &[
                ("my-asn", "myASN"),
                ("peer-asn", "peerASN"),
                ("peer-address", "peerAddress"),
                ("source-address", "sourceAddress"),
                ("peer-port", "peerPort"),
                ("hold-time", "holdTime"),
                ("keepalive-time", "keepaliveTime"),
                ("router-id", "routerID"),
                ("node-selectors", "nodeSelectors"),
                ("password", "password"),
                ("bfd-profile", "bfdProfile"),
                ("ebgp-multihop", "ebgpMultiHop"),
            ],
        )?;
        map_items(
            &mut spec,
            "nodeSelectors",
            &format!("{path}.node-selectors"),
            |selector, at| self.node_selector(selector, at),
        )?;
        if let Some(Value::String(profile)) = spec.get_mut("bfdProfile")
            && !profile.is_empty()
        {
            *profile = kubernetes_name(profile)
                .ok_or_else(|| format!("{path}.bfd-profile: no letter in {profile:?}"))?;
        }
        self.object(
            "metallb.io/v1beta2",
            MetallbKind::BgpPeer,
            &format!("peer{}", index + 1),
            spec,
        );
        Ok(())
    }

    fn node_selector(&mut self, selector: &Value, path: &str) -> Result<Value, String> {
        let mut out = self.fields(
            selector,
            path,
            &[
                ("match-labels", "matchLabels"),
                ("match-expressions", "matchExpressions"),
            ],
        )?;
        map_items(
            &mut out,
            "matchExpressions",
            &format!("{path}.match-expressions"),
            |expression, at| {
                self.fields(
                    expression,
                    at,
                    &[
                        ("key", "key"),
                        ("operator", "operator"),
                        ("values", "values"),
                    ],
                )
                .map(Value::Object)
            },
        )?;
        Ok(Value::Object(out))
    }

    fn pools(&mut self, pools: &[Value]) -> Result<(), String> {
        let mut bgp_index = 1;
        let mut l2_index = 1;
        for (index, pool) in pools.iter().enumerate() {
            let path = format!("config.address-pools[{index}]");
            let mut spec = self.fields(
                pool,
                &path,
                &[
                    ("name", "name"),
                    ("protocol", "protocol"),
                    ("addresses", "addresses"),
                    ("auto-assign", "autoAssign"),
                    ("avoid-buggy-ips", "avoidBuggyIPs"),
                    ("bgp-advertisements", "bgpAdvertisements"),
                ],
            )?;
            let (given, name) = take_name(&mut spec, &path)?;
            if name != given {
                self.out.losses.push(Loss::field(
                    self.source,
                    &format!("{path}.name"),
                    &Value::String(given.clone()),
                    &format!(
                        "not a valid object name, so the pool is named {name:?}: Services that \
                         ask for the pool by name (address-pool annotation) must use the new name"
                    ),
                ));
            }
            let protocol = spec.remove("protocol");
            let advertisements = spec.remove("bgpAdvertisements");
            let advertisements = match &advertisements {
                Some(value) => list(value, &format!("{path}.bgp-advertisements"))?,
                None => &[],
            };
            for (i, advertisement) in advertisements.iter().enumerate() {
                let mut adv = self.fields(
                    advertisement,
                    &format!("{path}.bgp-advertisements[{i}]"),
                    &[
                        ("aggregation-length", "aggregationLength"),
                        ("aggregation-length-v6", "aggregationLengthV6"),
                        ("localpref", "localPref"),
                        ("communities", "communities"),
                    ],
                )?;
                // configmaptocrs carries localpref 0 as "unset".
                if adv.get("localPref").and_then(Value::as_u64) == Some(0) {
                    adv.remove("localPref");
                }
                adv.insert("ipAddressPools".into(), json!([name]));
                self.object(
                    "metallb.io/v1beta1",
                    MetallbKind::BgpAdvertisement,
                    &format!("bgpadvertisement{bgp_index}"),
                    adv,
                );
                bgp_index += 1;
            }
            match protocol.as_ref().and_then(Value::as_str) {
                Some("layer2") => {
                    let adv = Map::from_iter([("ipAddressPools".into(), json!([name]))]);
                    let adv_name = format!("l2advertisement{l2_index}");
                    self.object(
                        "metallb.io/v1beta1",
                        MetallbKind::L2Advertisement,
                        &adv_name,
                        adv,
                    );
                    l2_index += 1;
                }
                Some("bgp") if advertisements.is_empty() => {
                    let adv = Map::from_iter([("ipAddressPools".into(), json!([name]))]);
                    let adv_name = format!("bgpadvertisement{bgp_index}");
                    self.object(
                        "metallb.io/v1beta1",
                        MetallbKind::BgpAdvertisement,
                        &adv_name,
                        adv,
                    );
                    bgp_index += 1;
                }
                Some("bgp") => {}
                _ => self.out.losses.push(Loss::field(
                    self.source,
                    &format!("{path}.protocol"),
                    protocol.as_ref().unwrap_or(&Value::Null),
                    "not a protocol MetalLB knows (layer2 or bgp): the pool is converted \
                     without an advertisement, so its IPs are assigned but not announced",
                )),
            }
            self.object(
                "metallb.io/v1beta1",
                MetallbKind::IpAddressPool,
                &name,
                spec,
            );
        }
        Ok(())
    }

    fn communities(&mut self, value: &Value, path: &str) -> Result<(), String> {
        let Value::Object(aliases) = value else {
            return Err(format!("{path} must be a mapping of names to communities"));
        };
        if aliases.is_empty() {
            return Ok(());
        }
        // serde_json's map is sorted by key, as configmaptocrs sorts the aliases.
        let aliases: Vec<Value> = aliases
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        let spec = Map::from_iter([("communities".into(), Value::Array(aliases))]);
        self.object(
            "metallb.io/v1beta1",
            MetallbKind::Community,
            "communities",
            spec,
        );
        Ok(())
    }

    fn bfd_profile(&mut self, index: usize, profile: &Value) -> Result<(), String> {
        let path = format!("config.bfd-profiles[{index}]");
        let mut spec = self.fields(
            profile,
            &path,
            &[
                ("name", "name"),
                ("receive-interval", "receiveInterval"),
                ("transmit-interval", "transmitInterval"),
                ("detect-multiplier", "detectMultiplier"),
                ("echo-interval", "echoInterval"),
                ("echo-mode", "echoMode"),
                ("passive-mode", "passiveMode"),
                ("minimum-ttl", "minimumTtl"),
            ],
        )?;
        let (_, name) = take_name(&mut spec, &path)?;
        self.object("metallb.io/v1beta1", MetallbKind::BfdProfile, &name, spec);
        Ok(())
    }
}

/// Removes `name` from `spec`: (the name given, the object name it becomes).
fn take_name(spec: &mut Map<String, Value>, path: &str) -> Result<(String, String), String> {
    let Some(Value::String(given)) = spec.remove("name") else {
        return Err(format!("{path}.name must be a string"));
    };
    let name =
        kubernetes_name(&given).ok_or_else(|| format!("{path}.name: no letter in {given:?}"))?;
    Ok((given, name))
}

/// Replaces the list `spec[field]` (found at `path` in the configuration), when there is
/// one, by `convert` of each of its items (given the item and its path).
fn map_items(
    spec: &mut Map<String, Value>,
    field: &str,
    path: &str,
    mut convert: impl FnMut(&Value, &str) -> Result<Value, String>,
) -> Result<(), String> {
    let Some(items) = spec.remove(field) else {
        return Ok(());
    };
    let items = list(&items, path)?
        .iter()
        .enumerate()
        .map(|(i, item)| convert(item, &format!("{path}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    spec.insert(field.into(), Value::Array(items));
    Ok(())
}

fn list<'v>(value: &'v Value, path: &str) -> Result<&'v [Value], String> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(&[]),
        _ => Err(format!("{path} must be a list")),
    }
}

/// configmaptocrs' renaming: a name matching `^[a-z][-a-z0-9]{0,61}[a-z0-9]$` stays; any other
/// is cut to 63 characters, lowercased, `_` replaced by `-`, and cut before its first letter.
/// `None` when no letter is left.
pub fn kubernetes_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let valid = (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.last().is_some_and(|b| *b != b'-');
    if valid {
        return Some(name.into());
    }
    let cut: String = name.chars().take(63).collect();
    let lower = cut.to_lowercase().replace('_', "-");
    let first = lower.find(|c: char| c.is_ascii_lowercase())?;
    Some(lower[first..].into())
}

#[cfg(test)]
#[path = "legacy_tests.rs"]
mod tests;
