//! `--from-cluster`: MetalLB's objects, legacy ConfigMap and password Secrets, read live.

use std::path::Path;

use anyhow::{Context, Result};
use ferrolb_migrate::input::classify;
use ferrolb_migrate::{
    InputObject, METALLB_GROUP, MetallbKind, Options, Origin, referenced_secrets,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::Serialize;
use serde_json::Value;

/// The inputs found in `options.from_namespace`, and notes on what was not there.
pub async fn fetch(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    options: &Options,
) -> Result<(Vec<InputObject>, Vec<String>)> {
    let client = client(kubeconfig, context).await?;
    let namespace = options.from_namespace.as_str();
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    for metallb_kind in MetallbKind::ALL {
        let (kind, plural) = (metallb_kind.name(), metallb_kind.plural());
        let mut found = false;
        for version in metallb_kind.served_versions() {
            let resource = ApiResource {
                group: METALLB_GROUP.into(),
                version: (*version).into(),
                api_version: format!("{METALLB_GROUP}/{version}"),
                kind: kind.into(),
                plural: plural.into(),
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for item in list.items {
                        inputs.push(from_cluster(&item, &resource.api_version, kind)?);
                    }
                    found = true;
                    break;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("listing {plural}.{METALLB_GROUP} in {namespace}")
                    });
                }
            }
        }
        if !found {
            notes.push(format!(
                "the cluster serves no {plural}.{METALLB_GROUP}: none read"
            ));
        }
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let legacy = config_maps
        .get_opt("config")
        .await
        .with_context(|| format!("reading ConfigMap {namespace}/config"))?;
    if let Some(config_map) = legacy {
        inputs.push(from_cluster(&config_map, "v1", "ConfigMap")?);
    }
    for (secret_namespace, name) in referenced_secrets(&inputs, options) {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &secret_namespace);
        match secrets.get_opt(&name).await {
            Ok(Some(secret)) => inputs.push(from_cluster(&secret, "v1", "Secret")?),
            // The conversion reports the Secret as missing, with what to do.
            Ok(None) => {}
            Err(e) => notes.push(format!("reading Secret {secret_namespace}/{name}: {e}")),
        }
    }
    Ok((inputs, notes))
}

async fn client(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Client> {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// An object read from the cluster as an input, with the `apiVersion` and `kind` that
/// list and get responses leave out of their items.
fn from_cluster(object: &impl Serialize, api_version: &str, kind: &str) -> Result<InputObject> {
    let mut value = serde_json::to_value(object)?;
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), Value::String(api_version.into()));
        map.insert("kind".into(), Value::String(kind.into()));
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let origin = Origin::source(format!("cluster {kind} {name}"));
    Ok(classify(origin, value)?)
}
