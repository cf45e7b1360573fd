//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler, in the
//! control-plane namespace, with authentication (static tokens for the system
//! components, ServiceAccount tokens for pods) and the Node and RBAC
//! authorizers on.

use std::path::Path;

use anyhow::Result;

use super::pki::Pki;
use super::{
    APISERVER_PORT, CLUSTER_CIDR, CONTROL_PLANE_IP, HostState, Launcher, SERVICE_CIDR, new_token,
    write_kubeconfig,
};
use crate::tools::Tools;

/// The static tokens of the cluster's users.
pub struct Tokens {
    pub admin: String,
    pub controller_manager: String,
    pub scheduler: String,
    pub kube_proxy: String,
    /// One per node, for `system:node:<name>` (the Node authorizer limits each
    /// kubelet to its own node's objects).
    pub nodes: Vec<String>,
}

impl Tokens {
    pub fn new(nodes: usize) -> Tokens {
        Tokens {
            admin: new_token("admin"),
            controller_manager: new_token("kcm"),
            scheduler: new_token("sched"),
            kube_proxy: new_token("proxy"),
            nodes: (0..nodes).map(|i| new_token(&format!("node{i}"))).collect(),
        }
    }

    fn csv(&self) -> String {
        let mut csv = format!(
            "{},ferrolb-admin,ferrolb-admin,system:masters\n\
             {},system:kube-controller-manager,system:kube-controller-manager\n\
             {},system:kube-scheduler,system:kube-scheduler\n\
             {},system:kube-proxy,system:kube-proxy\n",
            self.admin, self.controller_manager, self.scheduler, self.kube_proxy
        );
        for (i, token) in self.nodes.iter().enumerate() {
            let name = super::node::node_name(i);
            csv.push_str(&format!(
                "{token},system:node:{name},system:node:{name},system:nodes\n"
            ));
        }
        csv
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Starts etcd and the apiserver in `netns`.
pub fn start(
    tools: &Tools,
    dir: &Path,
    pki: &Pki,
    tokens: &Tokens,
    netns: &str,
    host: &mut HostState,
    launcher: &mut Launcher,
) -> Result<()> {
    std::fs::write(dir.join("tokens.csv"), tokens.csv())?;
    let etcd_dir = dir.join("etcd");
    let mut etcd = strings(&[
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=default=http://127.0.0.1:2380",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]);
    etcd.push(format!("--data-dir={}", etcd_dir.display()));
    launcher.spawn_in(host, netns, &tools.etcd(), &etcd, &dir.join("etcd.log"))?;

    let path = |p: &Path| p.display().to_string();
    let apiserver = vec![
        "--etcd-servers=http://127.0.0.1:2379".to_string(),
        "--bind-address=0.0.0.0".into(),
        format!("--advertise-address={CONTROL_PLANE_IP}"),
        format!("--secure-port={APISERVER_PORT}"),
        format!("--tls-cert-file={}", path(&pki.apiserver_cert())),
        format!("--tls-private-key-file={}", path(&pki.apiserver_key())),
        format!("--client-ca-file={}", path(&pki.ca_cert())),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        format!("--service-account-key-file={}", path(&pki.sa_pub())),
        format!("--service-account-signing-key-file={}", path(&pki.sa_key())),
        format!("--token-auth-file={}", path(&dir.join("tokens.csv"))),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--service-node-port-range=30000-32767".into(),
        // Node names do not resolve here: the apiserver reaches kubelets
        // (logs, exec) at their InternalIP.
        "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
        // The speaker runs with host networking and NET_RAW.
        "--allow-privileged=true".into(),
        "--v=1".into(),
    ];
    launcher.spawn_in(
        host,
        netns,
        &tools.kube_apiserver(),
        &apiserver,
        &dir.join("kube-apiserver.log"),
    )?;
    Ok(())
}

/// Starts the controller manager (ReplicaSets, DaemonSet pods, EndpointSlices,
/// the root-CA ConfigMap every pod's projected token needs, node lifecycle)
/// and the scheduler, each with its own token and without leader election.
pub fn start_managers(
    tools: &Tools,
    dir: &Path,
    pki: &Pki,
    tokens: &Tokens,
    netns: &str,
    host: &mut HostState,
    launcher: &mut Launcher,
) -> Result<()> {
    let server = format!("https://127.0.0.1:{APISERVER_PORT}");
    let kcm_kubeconfig = dir.join("kcm.kubeconfig");
    write_kubeconfig(
        &kcm_kubeconfig,
        &server,
        &pki.ca_cert(),
        "system:kube-controller-manager",
        &tokens.controller_manager,
    )?;
    let sched_kubeconfig = dir.join("scheduler.kubeconfig");
    write_kubeconfig(
        &sched_kubeconfig,
        &server,
        &pki.ca_cert(),
        "system:kube-scheduler",
        &tokens.scheduler,
    )?;
    let path = |p: &Path| p.display().to_string();
    let kcm = vec![
        format!("--kubeconfig={}", path(&kcm_kubeconfig)),
        format!("--authentication-kubeconfig={}", path(&kcm_kubeconfig)),
        format!("--authorization-kubeconfig={}", path(&kcm_kubeconfig)),
        "--leader-elect=false".into(),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", path(&pki.sa_key())),
        format!("--root-ca-file={}", path(&pki.ca_cert())),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=10257".into(),
        // A dead node turns NotReady after 20 s (upstream: 40 s), so the
        // node-failure tests see kube-proxy drop its endpoints in bounded time.
        "--node-monitor-grace-period=20s".into(),
        "--node-monitor-period=2s".into(),
        "--v=1".into(),
    ];
    launcher.spawn_in(
        host,
        netns,
        &tools.bin_dir.join("kube-controller-manager"),
        &kcm,
        &dir.join("kube-controller-manager.log"),
    )?;
    let scheduler = vec![
        format!("--kubeconfig={}", path(&sched_kubeconfig)),
        format!("--authentication-kubeconfig={}", path(&sched_kubeconfig)),
        format!("--authorization-kubeconfig={}", path(&sched_kubeconfig)),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=10259".into(),
        "--v=1".into(),
    ];
    launcher.spawn_in(
        host,
        netns,
        &tools.bin_dir.join("kube-scheduler"),
        &scheduler,
        &dir.join("kube-scheduler.log"),
    )?;
    Ok(())
}
