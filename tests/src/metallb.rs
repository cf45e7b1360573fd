//! MetalLB's processes against a test control plane: its CRDs (from the module source) and
//! its controller, run outside the cluster with the admin kubeconfig.

use std::process::{Child, Command};

use anyhow::Result;

use crate::cluster::Cluster;
use crate::env::{free_port, wait_crds_established};
use crate::metallb_source::{controller_binary, module_dir};
use crate::process::spawn_tied;

/// The namespace MetalLB's objects live in.
pub const NAMESPACE: &str = "metallb-system";
/// The Pod object that stands for MetalLB's controller (see [`start_controller`]).
pub const CONTROLLER_POD: &str = "metallb-controller";
/// Where [`start_controller`] writes the controller's output, in the cluster's directory.
pub const CONTROLLER_LOG: &str = "metallb-controller.log";

/// Server-side apply of MetalLB's CRDs (`config/crd/bases` of the module), then a wait
/// until every CRD is Established. The namespace [`NAMESPACE`] is the caller's.
pub fn install_crds(cluster: &Cluster) -> Result<()> {
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        &module_dir()?.join("config/crd/bases").to_string_lossy(),
    ])?;
    wait_crds_established(cluster)
}

/// MetalLB's controller as a process: admin kubeconfig (it runs outside the cluster, so
/// its own RBAC is not the point here), webhooks and certificate rotation off, metrics off,
/// the health probe on a free port, `--log-level=info`. It reads its own Pod at start (for
/// owner references), so a Pod object (with MetalLB's ServiceAccount `controller`, which no
/// controller-manager creates here) stands for it, Pending for ever: there is no kubelet.
/// Its output goes to [`CONTROLLER_LOG`].
pub fn start_controller(cluster: &Cluster) -> Result<Child> {
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: controller, namespace: {NAMESPACE}}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {CONTROLLER_POD}, namespace: {NAMESPACE}}}\n\
             spec: {{serviceAccountName: controller, automountServiceAccountToken: false,\n\
             containers: [{{name: controller, image: quay.io/metallb/controller:v0.16.2}}]}}\n"
        ),
    )?;
    let mut command = Command::new(controller_binary()?);
    command
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args([
            "--namespace",
            NAMESPACE,
            "--webhook-mode=disabled",
            "--disable-cert-rotation",
            "--port=0",
            "--log-level=info",
            "--pod-name",
            CONTROLLER_POD,
        ])
        .arg(format!("--health-probe-port={}", free_port()?));
    spawn_tied(command, &cluster.dir.join(CONTROLLER_LOG))
}
