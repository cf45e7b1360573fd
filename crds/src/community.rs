//! BGP communities: the `Community` kind (named aliases) and the parsing of community
//! strings used by `BGPAdvertisement.spec.communities`.

use std::fmt;
use std::str::FromStr;

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::{cel_string, object_schema, rule};
use crate::validation::{Errors, FieldError, Problem, check_len, is_label_name, item};

/// Most aliases in one `Community` object, and most communities on one advertisement.
pub const MAX_COMMUNITIES: usize = 256;
/// Longest community string: `large:` and three 10-digit numbers.
pub const MAX_COMMUNITY_LEN: usize = 63;

/// A BGP community value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommunityValue {
    /// RFC 1997 community `AA:NN`, two 16-bit halves.
    Standard(u16, u16),
    /// RFC 8092 large community `large:A:B:C`, three 32-bit parts.
    Large(u32, u32, u32),
}

/// A community as written on an advertisement: a value, or the name of an alias defined in
/// a `Community` object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CommunityRef {
    /// A literal standard or large community.
    Value(CommunityValue),
    /// The name of an alias, resolved against the `Community` objects when the advertisement is used.
    Alias(String),
}

/// Why a community string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunityError {
    /// Looked like `AA:NN` but a part is missing, not a number, or above 65535.
    #[error("{0:?} is not a standard community: use AA:NN with both parts between 0 and 65535")]
    Standard(String),
    /// Started with `large:` but is not three numbers of at most 32 bits.
    #[error(
        "{0:?} is not a large community: use large:A:B:C with all parts between 0 and 4294967295"
    )]
    Large(String),
    /// Not a valid alias name (at most 63 characters of letters, digits, `-`, `_`, `.`, alphanumeric at both ends).
    #[error(
        "{0:?} is not a community alias name: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    )]
    AliasName(String),
    /// Where a literal value is required, a string of neither form.
    #[error("{0:?} is not a community value: use AA:NN or large:A:B:C")]
    NotAValue(String),
}

const LARGE_PREFIX: &str = "large:";

/// Decimal digits only (no sign, no spaces), at most `max_digits` of them, parsed.
fn decimal<T: FromStr>(text: &str, max_digits: usize) -> Option<T> {
    let well_formed =
        !text.is_empty() && text.len() <= max_digits && text.bytes().all(|b| b.is_ascii_digit());
    if well_formed { text.parse().ok() } else { None }
}

impl FromStr for CommunityValue {
    type Err = CommunityError;

    fn from_str(text: &str) -> Result<CommunityValue, CommunityError> {
        if let Some(parts) = text.strip_prefix(LARGE_PREFIX) {
            let error = || CommunityError::Large(text.to_string());
            let mut numbers = parts.split(':').map(|p| decimal::<u32>(p, 10));
            return match (
                numbers.next(),
                numbers.next(),
                numbers.next(),
                numbers.next(),
            ) {
                (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => {
                    Ok(CommunityValue::Large(a, b, c))
                }
                _ => Err(error()),
            };
        }
        if !text.contains(':') {
            return Err(CommunityError::NotAValue(text.to_string()));
        }
        let mut numbers = text.split(':').map(|p| decimal::<u16>(p, 5));
        match (numbers.next(), numbers.next(), numbers.next()) {
            (Some(Some(a)), Some(Some(b)), None) => Ok(CommunityValue::Standard(a, b)),
            _ => Err(CommunityError::Standard(text.to_string())),
        }
    }
}

impl fmt::Display for CommunityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommunityValue::Standard(a, b) => write!(f, "{a}:{b}"),
            CommunityValue::Large(a, b, c) => write!(f, "{LARGE_PREFIX}{a}:{b}:{c}"),
        }
    }
}

impl FromStr for CommunityRef {
    type Err = CommunityError;

    /// Anything with a ':' is a value; anything else must be a valid alias name. Alias names
    /// cannot contain ':', so the two never overlap.
    fn from_str(text: &str) -> Result<CommunityRef, CommunityError> {
        if text.contains(':') {
            text.parse().map(CommunityRef::Value)
        } else {
            check_alias_name(text).map(|()| CommunityRef::Alias(text.to_string()))
        }
    }
}

/// An alias name: like a label name (MetalLB's own examples use `NO_ADVERTISE`, so upper
/// case and '_' are allowed, unlike object names).
pub fn check_alias_name(name: &str) -> Result<(), CommunityError> {
    if is_label_name(name, false) {
        Ok(())
    } else {
        Err(CommunityError::AliasName(name.to_string()))
    }
}

/// `Community` holds named aliases for community values, which BGPAdvertisements can use in
/// place of the values.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "Community",
    plural = "communities",
    singular = "community",
    category = "ferrolb",
    namespaced,
    derive = "PartialEq",
    doc = "Community defines named aliases for BGP community values, for use in BGPAdvertisements.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CommunitySpec {
    /// The aliases. Names are unique within one object; a name defined in two objects is
    /// reported by the controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "aliases_schema")]
    pub communities: Vec<CommunityAlias>,
}

/// One alias: a name for a community value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CommunityAlias {
    /// The alias, as written in `BGPAdvertisement.spec.communities`. Required here (MetalLB
    /// leaves it optional, but an alias without a name cannot be used).
    #[schemars(schema_with = "alias_name_schema")]
    pub name: String,
    /// The community: standard `AA:NN` or large `large:A:B:C`.
    #[schemars(schema_with = "community_value_schema")]
    pub value: String,
}

impl CommunitySpec {
    /// The same rules as the CRD schema. Paths in the errors start at `spec.`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        let field = "spec.communities";
        check_len(&mut errors, field, &self.communities, MAX_COMMUNITIES);
        for (i, alias) in self.communities.iter().enumerate() {
            let at = item(field, i);
            if self.communities[..i]
                .iter()
                .any(|earlier| earlier.name == alias.name)
            {
                errors.push(&at, Problem::Duplicate(alias.name.clone()));
            }
            errors.check(
                format!("{at}.name"),
                check_alias_name(&alias.name).map_err(Problem::from),
            );
            errors.check(
                format!("{at}.value"),
                alias.value.parse::<CommunityValue>().map_err(Problem::from),
            );
        }
        errors.finish()
    }

    /// The value of alias `name`, if this object defines it and the value is valid.
    pub fn lookup(&self, name: &str) -> Option<CommunityValue> {
        self.communities
            .iter()
            .find(|alias| alias.name == name)?
            .value
            .parse()
            .ok()
    }
}

// --- CRD schema -------------------------------------------------------------------------

const ALIAS_NAME_PATTERN: &str = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
const ALIAS_NAME_MESSAGE: &str = "must be a community alias name: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

/// CEL rules for the value forms, shared by alias values and advertisement communities.
fn community_value_rules() -> Vec<Value> {
    vec![
        rule(
            "!self.contains(':') || self.startsWith('large:') || (self.matches(r'^[0-9]{1,5}:[0-9]{1,5}$') \
             && int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535)",
            "a standard community must be AA:NN with both parts between 0 and 65535",
        ),
        rule(
            "!self.startsWith('large:') || (self.matches(r'^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') \
             && int(self.split(':')[1]) <= 4294967295 && int(self.split(':')[2]) <= 4294967295 \
             && int(self.split(':')[3]) <= 4294967295)",
            "a large community must be large:A:B:C with all parts between 0 and 4294967295",
        ),
    ]
}

/// CEL rules for one `BGPAdvertisement.spec.communities` entry: a value or an alias name.
pub(crate) fn community_ref_schema() -> Value {
    let mut rules = community_value_rules();
    rules.push(rule(
        &format!("self.contains(':') || self.matches(r'{ALIAS_NAME_PATTERN}')"),
        "must be a community (AA:NN or large:A:B:C) or the name of an alias defined in a Community: \
         at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    ));
    cel_string(MAX_COMMUNITY_LEN, rules)
}

fn community_value_schema(_: &mut SchemaGenerator) -> Schema {
    let mut rules = community_value_rules();
    rules.push(rule(
        "self.contains(':')",
        "must be a community value: AA:NN or large:A:B:C",
    ));
    object_schema(cel_string(MAX_COMMUNITY_LEN, rules))
}

fn alias_name_schema(_: &mut SchemaGenerator) -> Schema {
    object_schema(cel_string(
        MAX_COMMUNITY_LEN,
        vec![rule(
            &format!("self.matches(r'{ALIAS_NAME_PATTERN}')"),
            ALIAS_NAME_MESSAGE,
        )],
    ))
}

fn aliases_schema(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": MAX_COMMUNITIES,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": generator.subschema_for::<CommunityAlias>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        assert_eq!(
            "65535:65282".parse(),
            Ok(CommunityValue::Standard(65535, 65282))
        );
        assert_eq!("0:0".parse(), Ok(CommunityValue::Standard(0, 0)));
        assert_eq!(
            "large:4294967295:0:7".parse(),
            Ok(CommunityValue::Large(u32::MAX, 0, 7))
        );
        assert_eq!(CommunityValue::Large(1, 2, 3).to_string(), "large:1:2:3");
        assert_eq!(CommunityValue::Standard(1, 2).to_string(), "1:2");
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "65536:1", "1:65536", "1:2:3", ":1", "1:", "+1:2", " 1:2", "1:2 ", "000001:2", "a:b",
        ] {
            assert_eq!(
                bad.parse::<CommunityValue>(),
                Err(CommunityError::Standard(bad.into())),
                "{bad}"
            );
        }
        for bad in [
            "large:1:2",
            "large:1:2:3:4",
            "large:4294967296:0:0",
            "large:-1:0:0",
            "large:",
            "large:00000000001:0:0",
        ] {
            assert_eq!(
                bad.parse::<CommunityValue>(),
                Err(CommunityError::Large(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            "NO_ADVERTISE".parse::<CommunityValue>(),
            Err(CommunityError::NotAValue("NO_ADVERTISE".into()))
        );
    }

    #[test]
    fn parses_refs() {
        assert_eq!(
            "NO_ADVERTISE".parse(),
            Ok(CommunityRef::Alias("NO_ADVERTISE".into()))
        );
        assert_eq!(
            "vpn-only".parse(),
            Ok(CommunityRef::Alias("vpn-only".into()))
        );
        assert_eq!(
            "1234:1".parse(),
            Ok(CommunityRef::Value(CommunityValue::Standard(1234, 1)))
        );
        for bad in ["", "-x", "x-", "no advertise", "ü", &"a".repeat(64)] {
            assert_eq!(
                bad.parse::<CommunityRef>(),
                Err(CommunityError::AliasName(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn validates_community_spec() {
        let spec = CommunitySpec {
            communities: vec![
                CommunityAlias {
                    name: "NO_ADVERTISE".into(),
                    value: "65535:65282".into(),
                },
                CommunityAlias {
                    name: "vpn-only".into(),
                    value: "large:1:2:3".into(),
                },
                CommunityAlias {
                    name: "vpn-only".into(),
                    value: "1:2".into(),
                },
                CommunityAlias {
                    name: "bad name".into(),
                    value: "NO_EXPORT".into(),
                },
            ],
        };
        let errors: Vec<String> = spec
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                "spec.communities[2]: duplicate value \"vpn-only\"",
                "spec.communities[3].name: \"bad name\" is not a community alias name: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
                "spec.communities[3].value: \"NO_EXPORT\" is not a community value: use AA:NN or large:A:B:C",
            ]
        );
        assert_eq!(
            spec.lookup("NO_ADVERTISE"),
            Some(CommunityValue::Standard(65535, 65282))
        );
        assert_eq!(spec.lookup("missing"), None);
    }
}
