//! The speakers' gossip key: the controller creates the `ferrolb-memberlist`
//! Secret when it is missing, as MetalLB's controller does, so installing
//! needs no `openssl` and no manual step. An existing Secret is never touched.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use rand::RngCore;

/// The key in the Secret's data that the speakers read (`FERROLB_GOSSIP_KEY`).
pub const SECRET_KEY: &str = "secretkey";

/// How many random bytes the key holds (stored base64-encoded, as MetalLB does).
pub const KEY_BYTES: usize = 128;

/// What [`ensure_secret`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The Secret did not exist; we created it with a fresh key.
    Created,
    /// The Secret already existed (made by a user, a chart, or another
    /// replica); it was left as it is.
    AlreadyExists,
}

#[derive(Debug, thiserror::Error)]
pub enum MemberlistError {
    #[error("creating Secret {namespace}/{name}: {source}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// A new gossip key: `KEY_BYTES` random bytes as base64 text. Text, because the
/// speaker takes the key from an environment variable, which must be UTF-8.
pub fn new_key() -> String {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

/// The Secret object we create.
pub fn secret(namespace: &str, name: &str, key: String) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "ferrolb".to_string(),
                ),
                (
                    "app.kubernetes.io/component".to_string(),
                    "speaker".to_string(),
                ),
            ])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            SECRET_KEY.to_string(),
            ByteString(key.into_bytes()),
        )])),
        type_: Some("Opaque".to_string()),
        ..Default::default()
    }
}

/// Creates the Secret `namespace/name` with a new key unless it exists.
/// Only a `create` is sent (no read first), so the role needs nothing more;
/// AlreadyExists (409) is success and the existing Secret is left untouched.
pub async fn ensure_secret(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Outcome, MemberlistError> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    match secrets
        .create(&PostParams::default(), &secret(namespace, name, new_key()))
        .await
    {
        Ok(_) => Ok(Outcome::Created),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Outcome::AlreadyExists),
        Err(source) => Err(MemberlistError::Create {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_base64_of_128_random_bytes() {
        let key = new_key();
        let decoded = STANDARD.decode(&key).unwrap();
        assert_eq!(decoded.len(), KEY_BYTES);
        assert_ne!(new_key(), key, "two keys are never the same");
    }

    #[test]
    fn secret_carries_the_key_under_secretkey() {
        let s = secret("ns", "ferrolb-memberlist", "abc".into());
        assert_eq!(s.metadata.name.as_deref(), Some("ferrolb-memberlist"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
        let data = s.data.unwrap();
        assert_eq!(data[SECRET_KEY].0, b"abc");
    }
}
