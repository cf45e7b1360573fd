//! A real Kubernetes control plane on loopback: etcd and kube-apiserver, with
//! authentication and RBAC switched on.
//!
//! The harness itself authenticates with a static admin token (group
//! `system:masters`). Our components never use it: they run with
//! ServiceAccount tokens from the TokenRequest API, bound to the roles in
//! `deploy/`, which is what proves those roles are sufficient.
//!
//! There is no kubelet and no kube-controller-manager: tests create Nodes and
//! EndpointSlices themselves, as DESIGN.md explains.
//!
//! Address plan (documentation ranges only, see DESIGN.md): Service ClusterIPs
//! come from 203.0.113.0/25 and 2001:db8:ffff::/108, or, with
//! [`ClusterOptions::large_service_range`], from 198.18.0.0/15 (RFC 2544,
//! 131,072 addresses) and the same IPv6 range. Nothing ever sends traffic to
//! them; there is no kube-proxy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::process::{kill_pid, spawn_detached, spawn_tied, terminate};
use crate::tools::Tools;

pub const SERVICE_CLUSTER_IP_RANGE: &str = "203.0.113.0/25,2001:db8:ffff::/108";
pub const NODE_PORT_RANGE: &str = "20000-45000";
/// The ClusterIP ranges of [`ClusterOptions::large_service_range`]: room for
/// 50,000 Services and more of either family.
pub const LARGE_SERVICE_CLUSTER_IP_RANGE: &str = "198.18.0.0/15,2001:db8:ffff::/108";

/// How a control plane is started; the default is what the tests use.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// ClusterIPs from [`LARGE_SERVICE_CLUSTER_IP_RANGE`] (the default range
    /// holds 128 IPv4 Services), and etcd with an 8 GiB quota instead of
    /// 2 GiB, for benches with tens of thousands of Services.
    pub large_service_range: bool,
    /// ClusterIPs from the bitmap allocator of Kubernetes 1.32 and before
    /// (kube-apiserver emulating 1.33, where it may still be chosen) instead
    /// of IPAddress objects. From 1.33 on, every Service create lists every
    /// IPAddress of its family twice (the allocator's metrics,
    /// `pkg/registry/core/service/ipallocator/ipallocator.go`), so creating
    /// 50,000 Services takes over an hour of apiserver CPU on 2 cores; with
    /// the bitmap it takes minutes. Nothing else a bench measures allocates
    /// ClusterIPs.
    pub bitmap_cluster_ip_allocator: bool,
}

/// How the processes relate to the caller.
enum Lifetime {
    /// Killed when the `Cluster` is dropped or the test process exits:
    /// etcd, then kube-apiserver.
    Tied(Mutex<Vec<Child>>),
    /// Left running (`cargo xtask cluster up`); stopped with [`Cluster::stop_detached`].
    Detached,
}

/// A running etcd + kube-apiserver.
pub struct Cluster {
    pub tools: Tools,
    pub dir: PathBuf,
    pub server: String,
    admin_token: String,
    lifetime: Lifetime,
    remove_dir_on_drop: bool,
    /// How kube-apiserver was started, to start it again.
    apiserver: Option<(PathBuf, Vec<std::ffi::OsString>)>,
}

/// `N` distinct free ports on 127.0.0.1. All `N` are held bound until the
/// last is chosen: a port bound and dropped can come straight back from the
/// kernel, and etcd and kube-apiserver on one port fail to start (seen in CI).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port"))
        .collect::<Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// Free ports are only free when chosen: another test thread or process can
/// bind one before etcd or kube-apiserver does. Such a start is retried on
/// fresh ports, this many times in all.
const START_ATTEMPTS: u32 = 3;

/// What etcd and kube-apiserver log when a port they were given is taken.
const PORT_TAKEN: &str = "address already in use";

fn run_checked(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Cluster {
    /// Starts a cluster in a fresh temporary directory, torn down on drop.
    pub fn start() -> Result<Cluster> {
        Cluster::start_with(ClusterOptions::default())
    }

    /// [`Cluster::start`] with `options`.
    pub fn start_with(options: ClusterOptions) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("ferrolb-cluster-")
            .tempdir()?
            .keep();
        let mut cluster = Cluster::start_in(&dir, false, options, free_ports)?;
        cluster.remove_dir_on_drop = std::env::var_os("FERROLB_KEEP_CLUSTER").is_none();
        Ok(cluster)
    }

    /// Starts a cluster in `dir` that outlives this process.
    pub fn start_detached(dir: &Path) -> Result<Cluster> {
        if dir.join("pids").exists() {
            bail!(
                "a cluster already runs from {} (stop it with `cargo xtask cluster down`)",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        Cluster::start_in(dir, true, ClusterOptions::default(), free_ports)
    }

    /// Stops a detached cluster started in `dir` and deletes its state.
    pub fn stop_detached(dir: &Path) -> Result<bool> {
        let Ok(pids) = std::fs::read_to_string(dir.join("pids")) else {
            return Ok(false);
        };
        for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            kill_pid(pid, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(500));
        for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            kill_pid(pid, libc::SIGKILL);
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        Ok(true)
    }

    /// Starts etcd and kube-apiserver on the ports `choose_ports` gives
    /// (etcd client, etcd peer, apiserver), asked again after a start that
    /// lost a port.
    fn start_in(
        dir: &Path,
        detached: bool,
        options: ClusterOptions,
        mut choose_ports: impl FnMut() -> Result<[u16; 3]>,
    ) -> Result<Cluster> {
        let tools = Tools::ensure()?;
        let admin_token = format!("ferrolb-admin-{:032x}", rand::random::<u128>());
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{admin_token},ferrolb-admin,ferrolb-admin,system:masters\n"),
        )?;
        std::fs::write(dir.join("admin-token"), &admin_token)?;
        run_checked(
            Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(dir.join("sa.key"))
                .arg("2048"),
        )?;
        run_checked(
            Command::new("openssl")
                .args(["rsa", "-pubout", "-in"])
                .arg(dir.join("sa.key"))
                .arg("-out")
                .arg(dir.join("sa.pub")),
        )?;

        let mut attempt = 1;
        loop {
            let cluster = Cluster::launch(
                &tools,
                dir,
                detached,
                options,
                &admin_token,
                choose_ports()?,
            )?;
            match cluster.wait_ready_unless(Duration::from_secs(120), || cluster.exited_process()) {
                Ok(()) => {
                    cluster.write_admin_kubeconfig()?;
                    return Ok(cluster);
                }
                Err(error) if attempt < START_ATTEMPTS && cluster.lost_a_port() => {
                    eprintln!(
                        "control plane in {}: a port was taken before it bound it ({error:#}); \
                         starting again on fresh ports",
                        dir.display()
                    );
                    cluster.stop_processes();
                    cluster.set_logs_aside(attempt)?;
                    let etcd_data = dir.join("etcd");
                    if etcd_data.exists() {
                        std::fs::remove_dir_all(&etcd_data)
                            .with_context(|| format!("removing {}", etcd_data.display()))?;
                    }
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Spawns etcd and kube-apiserver on these ports, without waiting.
    fn launch(
        tools: &Tools,
        dir: &Path,
        detached: bool,
        options: ClusterOptions,
        admin_token: &str,
        [etcd_client, etcd_peer, secure_port]: [u16; 3],
    ) -> Result<Cluster> {
        let server = format!("https://127.0.0.1:{secure_port}");
        std::fs::write(dir.join("server"), &server)?;

        let mut etcd = Command::new(tools.etcd());
        etcd.arg("--data-dir")
            .arg(dir.join("etcd"))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{etcd_client}"
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_client}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{etcd_peer}"
            ))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        if options.large_service_range {
            etcd.arg(format!("--quota-backend-bytes={}", 8u64 << 30));
        }
        let service_range = if options.large_service_range {
            LARGE_SERVICE_CLUSTER_IP_RANGE
        } else {
            SERVICE_CLUSTER_IP_RANGE
        };

        let mut apiserver = Command::new(tools.kube_apiserver());
        apiserver
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_client}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--secure-port={secure_port}"))
            .arg("--cert-dir")
            .arg(dir.join("pki"))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-account-key-file")
            .arg(dir.join("sa.pub"))
            .arg("--service-account-signing-key-file")
            .arg(dir.join("sa.key"))
            .arg("--token-auth-file")
            .arg(dir.join("tokens.csv"))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-cluster-ip-range={service_range}"))
            .arg(format!("--service-node-port-range={NODE_PORT_RANGE}"))
            .arg("--max-requests-inflight=2000")
            .arg("--max-mutating-requests-inflight=1000")
            .arg("--v=1");
        if options.bitmap_cluster_ip_allocator {
            apiserver
                .arg("--emulated-version=1.33")
                .arg("--feature-gates=MultiCIDRServiceAllocator=false");
        }
        let apiserver_command = (
            PathBuf::from(apiserver.get_program()),
            apiserver.get_args().map(ToOwned::to_owned).collect(),
        );

        let mut lifetime = if detached {
            Lifetime::Detached
        } else {
            Lifetime::Tied(Mutex::new(Vec::new()))
        };
        let mut pids = Vec::new();
        for (name, command) in [("etcd", etcd), ("kube-apiserver", apiserver)] {
            let log = dir.join(format!("{name}.log"));
            match &mut lifetime {
                Lifetime::Tied(children) => {
                    let child = spawn_tied(command, &log)?;
                    pids.push(child.id());
                    children
                        .get_mut()
                        .map_err(|_| anyhow!("poisoned"))?
                        .push(child);
                }
                Lifetime::Detached => pids.push(spawn_detached(command, &log)?),
            }
        }
        std::fs::write(
            dir.join("pids"),
            pids.iter().map(|p| format!("{p}\n")).collect::<String>(),
        )?;

        Ok(Cluster {
            tools: tools.clone(),
            dir: dir.to_path_buf(),
            server,
            admin_token: admin_token.to_string(),
            lifetime,
            remove_dir_on_drop: false,
            apiserver: Some(apiserver_command),
        })
    }

    /// Whether etcd or kube-apiserver of this start logged that a port it
    /// was given is taken.
    fn lost_a_port(&self) -> bool {
        ["etcd.log", "kube-apiserver.log"].iter().any(|log| {
            std::fs::read_to_string(self.dir.join(log)).is_ok_and(|text| text.contains(PORT_TAKEN))
        })
    }

    /// Stops both processes of a failed start, however it was started.
    fn stop_processes(&self) {
        self.stop();
        if let Lifetime::Detached = self.lifetime
            && let Ok(pids) = std::fs::read_to_string(self.dir.join("pids"))
        {
            for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                kill_pid(pid, libc::SIGKILL);
            }
        }
    }

    /// Renames the logs of failed start `attempt`, so the next start's logs
    /// are its own and the failure stays readable.
    fn set_logs_aside(&self, attempt: u32) -> Result<()> {
        for name in ["etcd", "kube-apiserver"] {
            let log = self.dir.join(format!("{name}.log"));
            if log.exists() {
                let aside = self.dir.join(format!("{name}.attempt{attempt}.log"));
                std::fs::rename(&log, &aside)
                    .with_context(|| format!("renaming {}", log.display()))?;
            }
        }
        Ok(())
    }

    /// The name and exit status of a process of this cluster that has
    /// exited (only known for processes tied to this one).
    fn exited_process(&self) -> Option<String> {
        let Lifetime::Tied(children) = &self.lifetime else {
            return None;
        };
        let mut children = match children.lock() {
            Ok(children) => children,
            Err(poisoned) => poisoned.into_inner(),
        };
        children
            .iter_mut()
            .zip(["etcd", "kube-apiserver"])
            .find_map(|(child, name)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("{name} ({status})")),
                _ => None,
            })
    }

    /// The harness's handle on a control plane started elsewhere (the
    /// real-node cluster): admin kubeconfig for `server` with `admin_token`,
    /// trusting `dir/pki/ca.crt`. Dropping it stops nothing.
    pub fn attach(tools: Tools, dir: &Path, server: &str, admin_token: &str) -> Result<Cluster> {
        let cluster = Cluster {
            tools,
            dir: dir.to_path_buf(),
            server: server.to_string(),
            admin_token: admin_token.to_string(),
            lifetime: Lifetime::Detached,
            remove_dir_on_drop: false,
            apiserver: None,
        };
        cluster.write_admin_kubeconfig()?;
        Ok(cluster)
    }

    /// Stops kube-apiserver (SIGTERM) and starts it again with the same
    /// flags and state, then waits until it is ready. Its watch cache starts
    /// afresh at the current revision, so every client watching from an
    /// older resourceVersion is told 410 Gone and lists again. Only for a
    /// cluster this process started.
    pub fn restart_apiserver(&self) -> Result<()> {
        let (Lifetime::Tied(children), Some((program, args))) = (&self.lifetime, &self.apiserver)
        else {
            bail!("this cluster was not started by this process");
        };
        {
            let mut children = children.lock().map_err(|_| anyhow!("poisoned"))?;
            let apiserver = children.get_mut(1).context("no kube-apiserver")?;
            terminate(apiserver, Duration::from_secs(10));
            let mut command = Command::new(program);
            command.args(args);
            children[1] = spawn_tied(command, &self.dir.join("kube-apiserver.log"))?;
        }
        self.wait_ready(Duration::from_secs(60))
    }

    /// Stops kube-apiserver, then etcd, of a cluster this process started
    /// (a no-op for any other, and when stopped already). Its state directory
    /// stays until it is dropped or the process exits, for the logs.
    pub fn stop(&self) {
        if let Lifetime::Tied(children) = &self.lifetime {
            let mut children = match children.lock() {
                Ok(children) => children,
                Err(poisoned) => poisoned.into_inner(),
            };
            while let Some(mut child) = children.pop() {
                terminate(&mut child, Duration::from_secs(5));
            }
        }
    }

    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.wait_ready_unless(timeout, || None)
    }

    /// [`Cluster::wait_ready`] that gives up as soon as `exited` names a
    /// process that has exited (a port taken, a bad flag): no use waiting.
    fn wait_ready_unless(
        &self,
        timeout: Duration,
        exited: impl Fn() -> Option<String>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let output = Command::new(self.tools.kubectl())
                .args([
                    "--server",
                    &self.server,
                    "--token",
                    &self.admin_token,
                    "--insecure-skip-tls-verify",
                    "get",
                    "--raw=/readyz",
                ])
                .output()?;
            if output.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&output.stderr).into_owned();
            if let Some(process) = exited() {
                bail!(
                    "{process} exited before kube-apiserver was ready: {last}\nlogs in {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!(
            "kube-apiserver not ready after {timeout:?}: {last}\nlogs in {}",
            self.dir.display()
        )
    }

    /// The CA that signed the apiserver's self-generated serving certificate:
    /// the last certificate of the chain it writes to its cert dir.
    pub fn ca_pem(&self) -> Result<String> {
        // A cluster with a CA of its own (the real-node cluster) keeps it here.
        if let Ok(ca) = std::fs::read_to_string(self.dir.join("pki/ca.crt")) {
            return Ok(ca);
        }
        let chain = std::fs::read_to_string(self.dir.join("pki/apiserver.crt"))?;
        let start = chain
            .rfind("-----BEGIN CERTIFICATE-----")
            .context("no certificate in apiserver.crt")?;
        Ok(chain[start..].to_string())
    }

    fn kubeconfig_yaml(
        &self,
        server: &str,
        user: &str,
        token: &str,
        namespace: &str,
    ) -> Result<String> {
        use base64::Engine as _;
        let ca_b64 = base64::engine::general_purpose::STANDARD.encode(self.ca_pem()?);
        Ok(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: ferrolb\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca_b64}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: ferrolb\n  context:\n    cluster: ferrolb\n    user: {user}\n    namespace: {namespace}\ncurrent-context: ferrolb\n"
        ))
    }

    fn write_admin_kubeconfig(&self) -> Result<()> {
        let yaml =
            self.kubeconfig_yaml(&self.server, "ferrolb-admin", &self.admin_token, "default")?;
        std::fs::write(self.admin_kubeconfig(), yaml)?;
        Ok(())
    }

    /// The kubeconfig of the harness's admin user.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.tools.kubectl());
        command.arg("--kubeconfig").arg(self.admin_kubeconfig());
        command
    }

    /// Runs kubectl as admin and returns stdout, failing with its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        run_checked(self.kubectl().args(args))
    }

    /// Runs kubectl as admin with `input` on stdin (`apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        use std::io::Write as _;
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "kubectl {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Writes a kubeconfig for ServiceAccount `namespace/name` with a token from
    /// the TokenRequest API, so a component runs with exactly that account's RBAC.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        self.service_account_kubeconfig_via(namespace, name, &self.server)
    }

    /// [`Self::service_account_kubeconfig`] reaching the apiserver at
    /// `server` (a forwarder on loopback: it must be 127.0.0.1, which the
    /// serving certificate names).
    pub fn service_account_kubeconfig_via(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> Result<PathBuf> {
        let token =
            self.kubectl_ok(&["-n", namespace, "create", "token", name, "--duration=24h"])?;
        let port = server.rsplit(':').next().unwrap_or_default();
        let path = self
            .dir
            .join(format!("sa-{namespace}-{name}-{port}.kubeconfig"));
        let user = format!("{namespace}-{name}");
        std::fs::write(
            &path,
            self.kubeconfig_yaml(server, &user, token.trim(), namespace)?,
        )?;
        Ok(path)
    }

    /// The apiserver's address (127.0.0.1 and its port).
    pub fn apiserver_addr(&self) -> Result<std::net::SocketAddr> {
        let hostport = self
            .server
            .strip_prefix("https://")
            .context("the server is not https://")?;
        hostport
            .parse()
            .with_context(|| format!("apiserver address {hostport}"))
    }

    /// A kube client authenticated as the harness admin.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        client_from_kubeconfig(&self.admin_kubeconfig()).await
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Lifetime::Tied(_) = &self.lifetime {
            self.stop();
            if self.remove_dir_on_drop {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start CI once lost: kube-apiserver given a port that something
    /// else bound first. The start is retried on fresh ports and succeeds,
    /// and the failed attempt's log is kept.
    #[test]
    fn a_start_that_loses_a_port_starts_again_on_fresh_ports() -> Result<()> {
        let taken = TcpListener::bind("127.0.0.1:0")?;
        let taken_port = taken.local_addr()?.port();
        let mut starts = 0;
        let dir = tempfile::Builder::new()
            .prefix("ferrolb-cluster-")
            .tempdir()?;
        let cluster = Cluster::start_in(dir.path(), false, ClusterOptions::default(), || {
            starts += 1;
            let [etcd_client, etcd_peer, apiserver] = free_ports()?;
            Ok(if starts == 1 {
                [etcd_client, etcd_peer, taken_port]
            } else {
                [etcd_client, etcd_peer, apiserver]
            })
        })?;
        assert_eq!(starts, 2, "one failed start, one good one");
        assert!(!cluster.server.ends_with(&format!(":{taken_port}")));
        let first_log = std::fs::read_to_string(dir.path().join("kube-apiserver.attempt1.log"))?;
        assert!(
            first_log.contains(PORT_TAKEN),
            "the first start failed for its port: {first_log}"
        );
        cluster.wait_ready(Duration::from_secs(10))?;
        drop(taken);
        Ok(())
    }

    #[test]
    fn free_ports_are_distinct() -> Result<()> {
        for _ in 0..100 {
            let ports: [u16; 3] = free_ports()?;
            assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        }
        Ok(())
    }
}
