//! One real node: its own containerd, kubelet and kube-proxy inside a network
//! namespace, with a CNI bridge for its pods.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::control_plane::Tokens;
use super::pki::Pki;
use super::{
    APISERVER_PORT, CLUSTER_CIDR, CONTROL_PLANE_IP, HostState, LAN_PREFIX6, Launcher,
    write_kubeconfig,
};
use crate::netns::run;
use crate::tools::Tools;

/// The apiserver as the nodes reach it, on the LAN.
fn api_server() -> String {
    format!("https://{CONTROL_PLANE_IP}:{APISERVER_PORT}")
}

pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// A node of the cluster, and where its files live.
pub struct RealNode {
    pub index: usize,
    pub name: String,
    pub netns: String,
    pub ip4: Ipv4Addr,
    pub ip6: Ipv6Addr,
    pub dir: PathBuf,
    pub pod_cidr4: String,
    pub pod_cidr6: String,
    /// The kubelet's cgroupRoot, unique to this run.
    pub cgroup_root: String,
}

impl RealNode {
    pub(super) fn plan(i: usize, netns: &str, cluster_dir: &Path, _nodes: usize) -> RealNode {
        let last = 10 + i as u8;
        RealNode {
            index: i,
            name: node_name(i),
            netns: netns.to_string(),
            ip4: Ipv4Addr::new(198, 51, 100, last),
            ip6: format!("{LAN_PREFIX6}:{last:x}")
                .parse()
                .unwrap_or(Ipv6Addr::UNSPECIFIED),
            dir: cluster_dir.join(node_name(i)),
            pod_cidr4: format!("198.18.{}.0/24", i + 1),
            pod_cidr6: format!("2001:db8:18:{:x}::/64", i + 1),
            cgroup_root: format!("/{}", netns.replace('-', "_")),
        }
    }

    /// MAC address of the node's LAN interface.
    pub fn mac(&self) -> Result<String> {
        let out = self.ip(&["-o", "link", "show", "dev", "eth0"])?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("no MAC for eth0 of {}: {out}", self.name))
    }

    /// SIGKILLs every process of this node: those in its network namespace
    /// (kubelet, kube-proxy, containerd, shims, hostNetwork containers) and
    /// those in its cgroup root (every pod), until none is left.
    pub fn kill_everything(&self) -> Result<()> {
        let state = HostState {
            netns: vec![self.netns.clone()],
            cgroup_roots: vec![self.cgroup_root.clone()],
            ..HostState::default()
        };
        state.kill_processes().map_err(anyhow::Error::msg)
    }

    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    /// `ip -n <node> ...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.netns).args(args))
    }

    /// A command run inside the node's network namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns, program]);
        command
    }

    /// Forwarding on, a route to every other node's pods through that node,
    /// and with a router, the default route through it.
    pub(super) fn prepare_network(&self, all: &[RealNode], router: bool) -> Result<()> {
        for key in [
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            // kube-proxy would set these itself and warn; set them first.
            "net.ipv4.conf.all.route_localnet=1",
            // A node whose link went down and up again (a failure test)
            // keeps its IPv6 address, as a real NIC's static config would.
            "net.ipv6.conf.eth0.keep_addr_on_down=1",
        ] {
            run(self.command("sysctl").args(["-qw", key]))?;
        }
        for other in all.iter().filter(|o| o.index != self.index) {
            let (ip4, ip6) = (other.ip4.to_string(), other.ip6.to_string());
            self.ip(&["route", "replace", &other.pod_cidr4, "via", &ip4])?;
            self.ip(&["-6", "route", "replace", &other.pod_cidr6, "via", &ip6])?;
        }
        if router {
            // Replies to the outside client leave through the router (with
            // policy Local nothing rewrites the client's address). Without a
            // default route, ClusterIPs (the API's among them) are unroutable
            // before kube-proxy's DNAT even sees them.
            let router6 = format!("{LAN_PREFIX6}:1");
            self.ip(&["route", "replace", "default", "via", super::ROUTER_IP])?;
            self.ip(&["-6", "route", "replace", "default", "via", &router6])?;
        } else {
            // No default route: give the ClusterIP ranges one on the LAN, or
            // host-network pods (the speakers) cannot reach the API's
            // ClusterIP (connect fails before kube-proxy's DNAT sees it).
            for cidr in super::SERVICE_CIDR.split(',') {
                let family = if cidr.contains(':') { "-6" } else { "-4" };
                self.ip(&[family, "route", "replace", cidr, "dev", "eth0"])?;
            }
        }
        Ok(())
    }

    pub(super) fn start_containerd(
        &self,
        host: &mut HostState,
        launcher: &mut Launcher,
    ) -> Result<()> {
        let containerd = self.dir.join("containerd");
        let cni_conf = self.dir.join("cni/net.d");
        std::fs::create_dir_all(&containerd)?;
        std::fs::create_dir_all(&cni_conf)?;
        if !host.cgroup_roots.contains(&self.cgroup_root) {
            host.create_cgroup_root(&self.cgroup_root)?;
        }
        std::fs::write(cni_conf.join("10-ferrolb-pods.conflist"), self.cni_config())?;
        let config = containerd.join("config.toml");
        std::fs::write(&config, self.containerd_config())?;
        launcher.spawn_in(
            host,
            &self.netns,
            Path::new("containerd"),
            &["--config".to_string(), config.display().to_string()],
            &self.dir.join("containerd.log"),
        )?;
        Ok(())
    }

    pub(super) fn wait_containerd(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.ctr(&["version"]).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "containerd of {} did not start; see {}",
            self.name,
            self.dir.join("containerd.log").display()
        )
    }

    /// `ctr` against this node's containerd, in the CRI's namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ctr")
            .arg("--address")
            .arg(self.containerd_socket())
            .args(["--namespace", "k8s.io"])
            .args(args))
    }

    pub fn import_image(&self, archive: &Path) -> Result<()> {
        self.ctr(&["images", "import", &archive.display().to_string()])?;
        Ok(())
    }

    /// Starts this node's kubelet; returns its pid.
    pub(super) fn start_kubelet(
        &self,
        tools: &Tools,
        pki: &Pki,
        tokens: &Tokens,
        host: &mut HostState,
        launcher: &mut Launcher,
    ) -> Result<u32> {
        let kubelet = self.dir.join("kubelet");
        std::fs::create_dir_all(kubelet.join("pki"))?;
        let kubeconfig = self.dir.join("kubelet.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &api_server(),
            &pki.ca_cert(),
            &format!("system:node:{}", self.name),
            &tokens.nodes[self.index],
        )?;
        let config = self.dir.join("kubelet-config.yaml");
        std::fs::write(&config, self.kubelet_config())?;
        let args = vec![
            format!("--config={}", config.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--root-dir={}", kubelet.display()),
            // The cert dir defaults to /var/lib/kubelet/pki whatever the root dir is.
            format!("--cert-dir={}", kubelet.join("pki").display()),
            format!("--hostname-override={}", self.name),
            format!("--node-ip={},{}", self.ip4, self.ip6),
            "--v=1".to_string(),
        ];
        launcher.spawn_in(
            host,
            &self.netns,
            &tools.bin_dir.join("kubelet"),
            &args,
            &self.dir.join("kubelet.log"),
        )
    }

    pub(super) fn start_kube_proxy(
        &self,
        tools: &Tools,
        pki: &Pki,
        tokens: &Tokens,
        host: &mut HostState,
        launcher: &mut Launcher,
    ) -> Result<()> {
        let kubeconfig = self.dir.join("kube-proxy.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &api_server(),
            &pki.ca_cert(),
            "system:kube-proxy",
            &tokens.kube_proxy,
        )?;
        let config = self.dir.join("kube-proxy-config.yaml");
        std::fs::write(&config, self.kube_proxy_config(&kubeconfig))?;
        launcher.spawn_in(
            host,
            &self.netns,
            &tools.bin_dir.join("kube-proxy"),
            &[
                format!("--config={}", config.display()),
                "--v=1".to_string(),
            ],
            &self.dir.join("kube-proxy.log"),
        )?;
        Ok(())
    }

    fn cni_config(&self) -> String {
        // The bridge is named cni0, which the speaker's default interface
        // exclusion skips (REAL-NODES.md: with another name it announced on
        // the pod bridge too).
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "ferrolb-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_cidr4}], [{"subnet": self.pod_cidr6}]],
                        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                        "dataDir": self.dir.join("cni/ipam").display().to_string(),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
        .to_string()
    }

    fn containerd_config(&self) -> String {
        let d = self.dir.join("containerd");
        let d = d.display();
        let cni = self.dir.join("cni/net.d");
        let cni = cni.display();
        // restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and the
        // pause container's oom_score_adj of -998 fails every sandbox.
        // netns_mounts_under_state_dir: pod namespaces stay under our dir
        // instead of /var/run/netns, so teardown finds them and `ip netns`
        // stays clean.
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        )
    }

    fn kubelet_config(&self) -> String {
        let root = self.dir.join("kubelet");
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 hybrid host: the kubelet must be told v1 is fine, and use cgroupfs.
failCgroupV1: false
cgroupDriver: cgroupfs
# Its own cgroup root, so several kubelets on one host do not fight.
cgroupRoot: {cgroup_root}
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
address: {ip4}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
podCIDR: {pod4}
maxPods: 40
serializeImagePulls: false
protectKernelDefaults: false
volumePluginDir: {root}/volume-plugins
podLogsDir: {root}/pod-logs
# The disk is shared with the rest of the machine: never evict for it.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 4s
nodeStatusReportFrequency: 10s
resolvConf: ""
"#,
            cgroup_root = self.cgroup_root,
            socket = self.containerd_socket().display(),
            ip4 = self.ip4,
            pod4 = self.pod_cidr4,
            root = root.display(),
        )
    }

    fn kube_proxy_config(&self, kubeconfig: &Path) -> String {
        // Conntrack sysctls are not writable here: leave them alone.
        format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {name}
mode: iptables
clusterCIDR: {CLUSTER_CIDR}
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
            kubeconfig = kubeconfig.display(),
            name = self.name,
        )
    }
}
