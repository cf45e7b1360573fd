//! `metallb.io` objects (and expanded legacy configurations) to `ferrolb.io/v1beta1` objects.

mod rules;
mod schema_walk;

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_crds::validation::summarize;
use ferrolb_crds::{
    BGPAdvertisementSpec, BGPPeerSpec, CommunitySpec, FieldError, IPAddressPoolSpec,
    L2AdvertisementSpec,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::MigrateError;
use crate::input::{Document, InputObject, Origin};
use crate::kind::{Disposition, MetallbKind};
use crate::report::{Loss, ObjectRef};
use crate::{METALLB_GROUP, legacy};
pub use schema_walk::is_zero;

/// Where objects come from and go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The namespace MetalLB runs in (its objects must be there; default `metallb-system`).
    pub from_namespace: String,
    /// FerroLB's namespace, where the converted objects go (default `ferrolb-system`).
    pub namespace: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            from_namespace: crate::METALLB_NAMESPACE.into(),
            namespace: crate::FERROLB_NAMESPACE.into(),
        }
    }
}

/// The result of a conversion.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Conversion {
    /// `ferrolb.io/v1beta1` objects (and copied v1 Secrets), in an order that applies cleanly:
    /// Secrets, Communities, pools, peers, advertisements.
    pub objects: Vec<Value>,
    /// What does not carry over, one per field and object, in input order.
    pub losses: Vec<Loss>,
    /// What was done that changes nothing MetalLB did (skipped non-MetalLB objects, copied
    /// Secrets, truncated timers).
    pub notes: Vec<String>,
}

/// A Secret by namespace and name.
type SecretKey = (String, String);

/// Converts `inputs`. Non-MetalLB objects are skipped with a note, except v1 Secrets, which
/// are copied when a BGPPeer's `passwordSecret` names them.
pub fn convert(inputs: &[InputObject], options: &Options) -> Result<Conversion, MigrateError> {
    let schemas = spec_schemas();
    let mut out = Conversion::default();
    let mut metallb: Vec<(Origin, Value)> = Vec::new();
    let mut secrets: BTreeMap<SecretKey, Value> = BTreeMap::new();
    for input in inputs {
        match &input.document {
            Document::Legacy {
                namespace,
                name,
                config,
            } => {
                let namespace = namespace.as_deref().unwrap_or(&options.from_namespace);
                let source = ObjectRef::new("ConfigMap", namespace, name);
                let expanded = legacy::expand(config, namespace, &source).map_err(|message| {
                    MigrateError::Legacy {
                        origin: input.origin.clone(),
                        message,
                    }
                })?;
                out.losses.extend(expanded.losses);
                metallb.extend(
                    expanded
                        .objects
                        .into_iter()
                        .map(|o| (input.origin.clone(), o)),
                );
            }
            Document::Object(object) => {
                let (group, kind, name) = identity(object);
                if group == METALLB_GROUP {
                    metallb.push((input.origin.clone(), object.clone()));
                } else if group.is_empty() && kind == "Secret" {
                    let namespace = namespace_of(object, options);
                    secrets.insert((namespace, name.into()), object.clone());
                } else {
                    out.notes.push(format!(
                        "{}: {kind} {name} is not a MetalLB object: skipped",
                        input.origin
                    ));
                }
            }
        }
    }
    let mut copied: BTreeSet<SecretKey> = BTreeSet::new();
    let mut converted: Vec<(Origin, Value)> = Vec::new();
    for (origin, object) in &metallb {
        let mut object_out = ObjectOut::default();
        convert_object(object, &schemas, options, &mut object_out);
        for key in object_out.secret_refs {
            match secrets.get(&key) {
                Some(secret) => {
                    if copied.insert(key.clone()) {
                        converted.push((origin.clone(), copy_secret(secret, options)));
                        out.notes.push(format!(
                            "Secret {}/{} copied to namespace {}",
                            key.0, key.1, options.namespace
                        ));
                    }
                }
                None => out.losses.push(Loss::field(
                    &object_out.reference,
                    "spec.passwordSecret.name",
                    &Value::String(key.1.clone()),
                    &format!(
                        "the Secret {}/{} is not in the input: copy it to namespace {} with \
                         the same name",
                        key.0, key.1, options.namespace
                    ),
                )),
            }
        }
        out.losses.extend(object_out.losses);
        out.notes.extend(object_out.notes);
        converted.extend(object_out.object.map(|o| (origin.clone(), o)));
    }
    let unused = secrets.keys().filter(|key| !copied.contains(*key));
    for (namespace, name) in unused {
        out.notes.push(format!(
            "Secret {namespace}/{name} is not a BGPPeer's passwordSecret: skipped"
        ));
    }
    check_duplicates(&converted)?;
    converted.sort_by_key(|(_, object)| apply_rank(object));
    out.objects = converted.into_iter().map(|(_, object)| object).collect();
    Ok(out)
}

/// The Secrets the BGPPeers among `inputs` name in `passwordSecret`, as (namespace, name):
/// what to fetch from a live cluster so that [`convert`] can copy them.
pub fn referenced_secrets(inputs: &[InputObject], options: &Options) -> Vec<(String, String)> {
    let mut keys = BTreeSet::new();
    for input in inputs {
        if let Document::Object(object) = &input.document
            && identity(object).0 == METALLB_GROUP
            && let Some(key) = password_secret(object, options)
        {
            keys.insert(key);
        }
    }
    keys.into_iter().collect()
}

/// (API group, kind, name) of an object; the group is empty for the core group.
fn identity(object: &Value) -> (&str, &str, &str) {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    (group, kind, name)
}

fn namespace_of(object: &Value, options: &Options) -> String {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(&options.from_namespace)
        .into()
}

fn password_secret(object: &Value, options: &Options) -> Option<SecretKey> {
    let reference = object.pointer("/spec/passwordSecret")?;
    let name = reference
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let namespace = reference
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .map_or_else(|| namespace_of(object, options), String::from);
    Some((namespace, name.into()))
}

/// The `spec` schema of each FerroLB kind, from FerroLB's own CRDs.
fn spec_schemas() -> BTreeMap<String, Value> {
    ferrolb_crds::crds()
        .into_iter()
        .filter_map(|crd| {
            let kind = crd.spec.names.kind.clone();
            let version = crd.spec.versions.into_iter().next()?;
            let schema = serde_json::to_value(version.schema?.open_api_v3_schema?).ok()?;
            Some((kind, schema.pointer("/properties/spec")?.clone()))
        })
        .collect()
}

#[derive(Default)]
struct ObjectOut {
    reference: ObjectRef,
    object: Option<Value>,
    losses: Vec<Loss>,
    notes: Vec<String>,
    secret_refs: Vec<SecretKey>,
}

/// Metadata the API server sets: dropped quietly.
const SERVER_SET_METADATA: [&str; 8] = [
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn convert_object(
    object: &Value,
    schemas: &BTreeMap<String, Value>,
    options: &Options,
    out: &mut ObjectOut,
) {
    let (_, kind, name) = identity(object);
    let namespace = namespace_of(object, options);
    out.reference = ObjectRef::new(kind, &namespace, name);
    let reference = out.reference.clone();
    let metallb_kind = match Disposition::of(kind) {
        Disposition::Converts(metallb_kind) => metallb_kind,
        Disposition::Lost(reason) => {
            out.losses.push(Loss::object(&reference, reason));
            return;
        }
        Disposition::Skipped(reason) => {
            out.notes.push(format!("{reference}: {reason}"));
            return;
        }
    };
    if namespace != options.from_namespace {
        out.losses.push(Loss::object(
            &reference,
            &format!(
                "not in {} (see --from-namespace), so MetalLB ignored it: not converted",
                options.from_namespace
            ),
        ));
        return;
    }
    let Some(object_map) = object.as_object() else {
        return;
    };
    for (key, value) in object_map {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) && !is_zero(value)
        {
            out.losses.push(Loss::field(
                &reference,
                key,
                value,
                "FerroLB has no such field",
            ));
        }
    }
    let metadata = convert_metadata(object, &reference, &options.namespace, &mut out.losses);
    let empty = Value::Object(Map::new());
    let spec_in = object.get("spec").unwrap_or(&empty);
    let mut dropped = Vec::new();
    let spec_schema = schemas.get(kind).unwrap_or(&Value::Null);
    let spec = schema_walk::prune(spec_in, spec_schema, "spec", &mut dropped);
    for field in dropped {
        let reason = rules::missing_field_reason(metallb_kind, &field.path);
        out.losses
            .push(Loss::field(&reference, &field.path, &field.value, reason));
    }
    let Value::Object(mut spec) = spec else {
        out.losses.push(Loss::field(
            &reference,
            "spec",
            spec_in,
            "not a mapping: not converted",
        ));
        return;
    };
    if metallb_kind == MetallbKind::BgpPeer {
        out.notes
            .extend(rules::truncate_peer_timers(&reference, &mut spec));
        out.losses
            .extend(rules::inert_peer_fields(&reference, &spec));
        if let Some(key) = password_secret(object, options) {
            if let Some(Value::Object(secret_ref)) = spec.get_mut("passwordSecret")
                && secret_ref.contains_key("namespace")
            {
                secret_ref.insert("namespace".into(), Value::String(options.namespace.clone()));
            }
            out.secret_refs.push(key);
        }
    }
    let spec = Value::Object(spec);
    if let Err(errors) = validate(metallb_kind, &spec) {
        out.losses.push(Loss::object(
            &reference,
            &format!("FerroLB would reject it ({errors}): not converted"),
        ));
        return;
    }
    out.object = Some(json!({
        "apiVersion": ferrolb_crds::API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    }));
}

/// Name, target namespace, labels and annotations (without kubectl's last-applied copy).
/// Server-set fields go quietly; owner references and finalizers are losses.
fn convert_metadata(
    object: &Value,
    reference: &ObjectRef,
    namespace: &str,
    losses: &mut Vec<Loss>,
) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), Value::String(reference.name.clone()));
    out.insert("namespace".into(), Value::String(namespace.into()));
    let Some(metadata) = object.get("metadata").and_then(Value::as_object) else {
        return Value::Object(out);
    };
    for (key, value) in metadata {
        match key.as_str() {
            "name" | "namespace" => {}
            "labels" if !is_zero(value) => {
                out.insert(key.clone(), value.clone());
            }
            "annotations" => {
                if let Some(kept) = value.as_object().and_then(without_last_applied) {
                    out.insert(key.clone(), kept);
                }
            }
            key if SERVER_SET_METADATA.contains(&key) || is_zero(value) => {}
            "ownerReferences" => losses.push(Loss::field(
                reference,
                "metadata.ownerReferences",
                value,
                "owners do not carry over to another namespace: dropped",
            )),
            _ => losses.push(Loss::field(
                reference,
                &format!("metadata.{key}"),
                value,
                "dropped (only name, labels and annotations carry over)",
            )),
        }
    }
    Value::Object(out)
}

/// FerroLB's own validation of a converted spec (the Rust twin of its CRDs' rules).
fn validate(kind: MetallbKind, spec: &Value) -> Result<(), String> {
    fn check<T: DeserializeOwned>(
        spec: &Value,
        validate: impl Fn(&T) -> Result<(), Vec<FieldError>>,
    ) -> Result<(), String> {
        let typed: T = serde_json::from_value(spec.clone()).map_err(|e| format!("spec: {e}"))?;
        validate(&typed).map_err(|errors| summarize(&errors))
    }
    match kind {
        MetallbKind::IpAddressPool => check(spec, IPAddressPoolSpec::validate),
        MetallbKind::L2Advertisement => check(spec, L2AdvertisementSpec::validate),
        MetallbKind::BgpAdvertisement => check(spec, BGPAdvertisementSpec::validate),
        MetallbKind::BgpPeer => check(spec, BGPPeerSpec::validate),
        MetallbKind::Community => check(spec, CommunitySpec::validate),
        // Never converted (see `Disposition::of`): there is no twin to check.
        MetallbKind::BfdProfile => Ok(()),
    }
}

/// Labels or annotations without kubectl's last-applied copy; `None` when nothing is left.
fn without_last_applied(map: &Map<String, Value>) -> Option<Value> {
    let kept: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| *k != LAST_APPLIED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}

fn copy_secret(secret: &Value, options: &Options) -> Value {
    let mut metadata = Map::new();
    let name = secret
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    metadata.insert("name".into(), name);
    metadata.insert("namespace".into(), Value::String(options.namespace.clone()));
    for key in ["labels", "annotations"] {
        let map = secret.pointer(&format!("/metadata/{key}"));
        if let Some(kept) = map
            .and_then(Value::as_object)
            .and_then(without_last_applied)
        {
            metadata.insert(key.into(), kept);
        }
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Secret"));
    out.insert("metadata".into(), Value::Object(metadata));
    for key in ["type", "data", "stringData", "immutable"] {
        if let Some(value) = secret.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    Value::Object(out)
}

fn check_duplicates(objects: &[(Origin, Value)]) -> Result<(), MigrateError> {
    let mut seen: BTreeMap<(String, String, String), &Origin> = BTreeMap::new();
    for (origin, object) in objects {
        let (_, kind, name) = identity(object);
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        let key = (
            kind.to_string(),
            namespace.unwrap_or("").to_string(),
            name.to_string(),
        );
        if let Some(first) = seen.insert(key.clone(), origin) {
            return Err(MigrateError::Duplicate {
                object: ObjectRef::new(&key.0, &key.1, &key.2).to_string(),
                first: Box::new(first.clone()),
                second: Box::new(origin.clone()),
            });
        }
    }
    Ok(())
}

/// Secrets first (peers name them), then each kind in [`MetallbKind::apply_order`].
fn apply_rank(object: &Value) -> u8 {
    match identity(object).1 {
        "Secret" => 0,
        kind => MetallbKind::parse(kind).map_or(u8::MAX, MetallbKind::apply_order),
    }
}

#[cfg(test)]
mod tests;
