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

/// The labels of the speaker Pod objects, which MetalLB's speakers list (`--ml-labels`) to
/// find each other's addresses for memberlist.
pub const SPEAKER_LABELS: &str = "app=metallb,component=speaker";

/// The name of the speaker Pod object of `node`.
pub fn speaker_pod(node: &str) -> String {
    format!("speaker-{node}")
}

/// A Pod object for MetalLB's speaker on `node`, with `ip` as its address (a speaker runs
/// on the host network): the speaker reads its own Pod at start, and memberlist joins the
/// addresses of the Pods labelled [`SPEAKER_LABELS`]. Pending for ever, without a kubelet;
/// its status is written here.
pub fn register_speaker_pod(cluster: &Cluster, node: &str, ip: std::net::IpAddr) -> Result<()> {
    let name = speaker_pod(node);
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: speaker, namespace: {NAMESPACE}}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NAMESPACE},\n\
             labels: {{app: metallb, component: speaker}}}}\n\
             spec: {{serviceAccountName: speaker, automountServiceAccountToken: false, nodeName: {node},\n\
             hostNetwork: true, containers: [{{name: speaker, image: quay.io/metallb/speaker:v0.16.2}}]}}\n"
        ),
    )?;
    cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "patch",
        "pod",
        &name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status": {{"podIP": "{ip}", "podIPs": [{{"ip": "{ip}"}}]}}}}"#),
    ])?;
    Ok(())
}

/// The memberlist key file MetalLB's speakers read (`--ml-secret-key-path` is its
/// directory), written into the cluster's directory with `secret`; returns the directory.
pub fn write_memberlist_secret(cluster: &Cluster, secret: &str) -> Result<std::path::PathBuf> {
    let dir = cluster.dir.join("metallb-memberlist");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("secretkey"), secret)?;
    Ok(dir)
}

/// MetalLB's speaker for `node` in native mode (L2 and native BGP), as a command to run
/// in the node's network namespace (`command` is `netns.command(speaker_binary()?)`):
/// admin kubeconfig, memberlist bound to `ip` with the key in `secret_dir`, metrics off,
/// `--log-level=info`. Its Pod must be registered first ([`register_speaker_pod`]).
pub fn speaker_command(
    cluster: &Cluster,
    mut command: Command,
    node: &str,
    ip: std::net::IpAddr,
    secret_dir: &std::path::Path,
) -> Command {
    command
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args(["--namespace", NAMESPACE, "--port=0", "--log-level=info"])
        .args(["--node-name", node, "--pod-name", &speaker_pod(node)])
        .arg(format!("--ml-bindaddr={ip}"))
        .arg(format!("--ml-labels={SPEAKER_LABELS}"))
        .arg("--ml-secret-key-path")
        .arg(secret_dir)
        .env("METALLB_BGP_TYPE", "native");
    command
}
