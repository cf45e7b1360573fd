//! MetalLB on a real-node site, installed as its users install it: from its
//! own `config/manifests/metallb-native.yaml` (in the module source), with
//! its own images (`cargo xtask image --metallb`), patched only where this
//! site needs it (see [`native_manifest`]). The site of the cut-over test
//! comes up without FerroLB: MetalLB serves first.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{RealCluster, RealClusterShape, built_images, images_listed_in};
use crate::metallb::NAMESPACE;
use crate::metallb_source::module_dir;

/// MetalLB's image archives, listed in `target/images/metallb/images.json`.
pub fn metallb_images() -> Result<Vec<PathBuf>> {
    let index = crate::tools::target_dir().join("images/metallb/images.json");
    images_listed_in(&index)
        .context("build MetalLB's images first with `cargo xtask image --metallb`")
}

/// A site of `nodes` nodes (LAN client, no router) with both projects'
/// images on every node and nothing installed: no FerroLB, no MetalLB.
pub fn start_bare_site(nodes: usize) -> Result<RealCluster> {
    let mut images = built_images()?;
    images.extend(metallb_images()?);
    RealCluster::start(&RealClusterShape {
        nodes,
        images,
        detached: false,
        router: false,
        second_lan: false,
    })
}

/// MetalLB's native-mode manifest as objects, with the patch this site
/// needs, and only that:
/// - the controller runs with `--webhook-mode=disabled`: its webhooks need
///   a serving certificate that the controller would otherwise generate and
///   inject (and this test is about the cut-over, not MetalLB's webhooks);
///   with them off the controller rotates no certificate either;
/// - the `ValidatingWebhookConfiguration` is left out: with nobody serving
///   the webhooks, its `failurePolicy: Fail` would reject every
///   `metallb.io` object.
///
/// Nothing else: the images' tags are not `latest`, so the pull policy is
/// already `IfNotPresent` (and the images are on the nodes); the controller
/// creates the memberlist Secret itself (`METALLB_ML_SECRET_NAME`); the
/// default excluded interfaces (`metallb-excludel2`) already skip the pod
/// bridge `cni0`. The `bgppeers` CRD keeps its conversion webhook: the test
/// creates no BGPPeer, so nothing is ever converted.
pub fn native_manifest() -> Result<Vec<Value>> {
    let path = module_dir()?.join("config/manifests/metallb-native.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    patch_native(&text)
}

/// The patch of [`native_manifest`], on the manifest's text.
pub fn patch_native(text: &str) -> Result<Vec<Value>> {
    let mut objects = Vec::new();
    let mut patched_controller = false;
    for document in serde_yaml::Deserializer::from_str(text) {
        let mut object = Value::deserialize(document)?;
        if object.is_null() {
            continue;
        }
        match (object["kind"].as_str(), object["metadata"]["name"].as_str()) {
            (Some("ValidatingWebhookConfiguration"), _) => continue,
            (Some("Deployment"), Some("controller")) => {
                let args = object["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_array_mut()
                    .context("MetalLB's controller has no args")?;
                args.push(json!("--webhook-mode=disabled"));
                patched_controller = true;
            }
            _ => {}
        }
        objects.push(object);
    }
    if !patched_controller {
        bail!("MetalLB's manifest has no controller Deployment to patch");
    }
    Ok(objects)
}

impl RealCluster {
    /// Installs MetalLB from [`native_manifest`] and waits until its
    /// controller and every speaker are rolled out.
    pub fn install_metallb(&self) -> Result<()> {
        let manifest = native_manifest()?;
        let crds: Vec<Value> = manifest
            .iter()
            .filter(|o| {
                matches!(
                    o["kind"].as_str(),
                    Some("Namespace" | "CustomResourceDefinition")
                )
            })
            .cloned()
            .collect();
        self.apply(&crds)?;
        crate::env::wait_crds_established(&self.api)?;
        self.apply(&manifest)?;
        self.rollout("deployment/controller", NAMESPACE)?;
        self.rollout("daemonset/speaker", NAMESPACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n---\n\
        apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: controller}\n\
        spec: {template: {spec: {containers: [{name: controller, args: [--port=9120]}]}}}\n---\n\
        apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n\
        metadata: {name: metallb-webhook-configuration}\n";

    #[test]
    fn the_patch_turns_webhooks_off_and_drops_their_configuration() {
        let objects = patch_native(MANIFEST).unwrap();
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(kinds, ["Namespace", "Deployment"]);
        assert_eq!(
            objects[1]["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["--port=9120", "--webhook-mode=disabled"])
        );
    }

    #[test]
    fn a_manifest_without_the_controller_is_refused() {
        assert!(patch_native("kind: Namespace\nmetadata: {name: x}\n").is_err());
    }
}
