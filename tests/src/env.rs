//! Shared test environment: one cluster per test binary, with `deploy/`
//! applied, and helpers to run our binaries against it as their
//! ServiceAccounts.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::cluster::Cluster;
use crate::process::{spawn_tied, terminate};
use crate::tools::{repo_root, target_dir};

/// The cluster of this test process, started on first use with `deploy/`
/// (the install kustomization) and then `deploy/examples/` applied server-side.
pub fn shared_cluster() -> &'static Cluster {
    shared_cluster_with(crate::cluster::ClusterOptions::default())
}

/// [`shared_cluster`], started with `options` if this is the first call
/// (a later call gets the cluster as the first one started it).
pub fn shared_cluster_with(options: crate::cluster::ClusterOptions) -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::start_with(options)
            .unwrap_or_else(|e| panic!("starting the test cluster: {e:#}"));
        apply_deploy(&cluster).unwrap_or_else(|e| panic!("applying deploy/: {e:#}"));
        apply_examples(&cluster).unwrap_or_else(|e| panic!("applying deploy/examples/: {e:#}"));
        remove_at_exit(cluster.dir.clone());
        cluster
    })
}

/// A cluster of its own for a test that disturbs the control plane
/// (restarts the apiserver, registers admission webhooks), with `deploy/`
/// applied. It lives until the test process exits, like the shared one.
pub fn own_cluster() -> Result<&'static Cluster> {
    let cluster = Cluster::start()?;
    apply_deploy(&cluster)?;
    remove_at_exit(cluster.dir.clone());
    Ok(Box::leak(Box::new(cluster)))
}

/// A static cluster is never dropped: remove its state directory when the
/// test process exits (its processes die with it, see `process`).
fn remove_at_exit(dir: PathBuf) {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    static REGISTERED: Once = Once::new();
    extern "C" fn cleanup() {
        if std::env::var_os("FERROLB_KEEP_CLUSTER").is_some() {
            return;
        }
        if let Ok(dirs) = DIRS.lock() {
            for dir in dirs.iter() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    if let Ok(mut dirs) = DIRS.lock() {
        dirs.push(dir);
    }
    REGISTERED.call_once(|| {
        // SAFETY: registers a plain function; it only touches a static.
        unsafe {
            libc::atexit(cleanup);
        }
    });
}

/// Server-side apply of the install kustomization `deploy/` (namespace,
/// CRDs, RBAC, Deployment, DaemonSet; kustomize puts the CRDs first), then a
/// wait until the CRDs are Established so their kinds can be used at once.
/// `deploy/examples/` is not part of it: see [`apply_examples`].
pub fn apply_deploy(cluster: &Cluster) -> Result<String> {
    let deploy = repo_root().join("deploy");
    let applied = cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=ferrolb-tests",
        "-k",
        &deploy.to_string_lossy(),
    ])?;
    wait_crds_established(cluster)?;
    Ok(applied)
}

/// Waits until every CRD of the cluster is Established, so their kinds can be used.
pub fn wait_crds_established(cluster: &Cluster) -> Result<()> {
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ])?;
    Ok(())
}

/// Server-side apply of `deploy/examples/` (pools, advertisements, a BGP
/// peer, Services), which also proves they are valid against the CRDs.
pub fn apply_examples(cluster: &Cluster) -> Result<String> {
    let examples = repo_root().join("deploy/examples");
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=ferrolb-tests",
        "-f",
        &examples.to_string_lossy(),
    ])
}

/// Variables cargo sets for the crate it builds or runs. A cargo started from
/// a test or from xtask inherits them, and some build scripts (ring's) rerun
/// when they change: ring, rustls, kube and our crates were rebuilt every time
/// a nested cargo and a plain one took turns on the same target directory.
fn is_per_crate_cargo_variable(name: &str) -> bool {
    matches!(
        name,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_MANIFEST_LINKS"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_RUSTC_CURRENT_DIR"
    ) || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
}

/// A `cargo` command (the one running us, if any) with the environment a
/// plain shell would give it, so that it shares build results with one.
pub fn nested_cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_per_crate_cargo_variable) {
            command.env_remove(name);
        }
    }
    command
}

/// The Cargo profile the speaker ships with (`Cargo.toml`): built for size.
pub const SPEAKER_PROFILE: &str = "speaker";

/// The Cargo profile our binary (or package) `name` ships with: [`SPEAKER_PROFILE`]
/// for `ferrolb-speaker`, `release` for the rest. The images and the benchmarks
/// both build by it.
pub fn shipping_profile(name: &str) -> &'static str {
    if name == "ferrolb-speaker" {
        SPEAKER_PROFILE
    } else {
        "release"
    }
}

/// Path of one of our binaries, built once per test process. Debug builds,
/// unless `FERROLB_RELEASE=1` (the benchmarks set it): then each is built as it
/// ships, `ferrolb-speaker` with [`SPEAKER_PROFILE`] and the others `--release`.
pub fn binary(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let release = std::env::var_os("FERROLB_RELEASE").is_some_and(|v| v == "1");
    let built = BUILT.get_or_init(|| {
        let all = ["ferrolb-controller", "ferrolb-speaker", "ferrolb-migrate"];
        let profile_of = |package: &str| {
            if release {
                shipping_profile(package)
            } else {
                "dev"
            }
        };
        let mut builds: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for package in all {
            builds.entry(profile_of(package)).or_default().push(package);
        }
        for (profile, packages) in builds {
            let mut build = nested_cargo();
            build.args(["build", "--quiet", "--bins", "--profile", profile]);
            for package in packages {
                build.args(["-p", package]);
            }
            let status = build
                .current_dir(repo_root())
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("cargo build --profile {profile} failed: {status}"));
            }
        }
        Ok(())
    });
    if let Err(e) = built {
        bail!("{e}");
    }
    let directory = if release {
        shipping_profile(name)
    } else {
        "debug"
    };
    let path = target_dir().join(directory).join(name);
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// One free port on 127.0.0.1 (see [`crate::cluster::free_ports`]).
pub fn free_port() -> Result<u16> {
    let [port] = crate::cluster::free_ports()?;
    Ok(port)
}

/// A namespace of one test: its pools live here, and its Services use its
/// own loadBalancerClass, so tests sharing a cluster never see each other.
pub struct TestNamespace {
    pub name: String,
    pub class: String,
}

impl TestNamespace {
    /// Creates the namespace and grants the controller's and speakers' namespaced roles there.
    pub async fn create(client: &kube::Client, prefix: &str) -> Result<TestNamespace> {
        let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await?;
        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &name);
        for component in ["ferrolb-controller", "ferrolb-speaker"] {
            bindings
                .create(
                    &PostParams::default(),
                    &RoleBinding {
                        metadata: ObjectMeta {
                            name: Some(component.into()),
                            ..Default::default()
                        },
                        role_ref: RoleRef {
                            api_group: "rbac.authorization.k8s.io".into(),
                            kind: "ClusterRole".into(),
                            name: format!("{component}-namespaced"),
                        },
                        subjects: Some(vec![Subject {
                            kind: "ServiceAccount".into(),
                            name: component.into(),
                            namespace: Some("ferrolb-system".into()),
                            ..Default::default()
                        }]),
                    },
                )
                .await?;
        }
        Ok(TestNamespace {
            class: format!("ferrolb.io/{name}"),
            name,
        })
    }
}

/// A `ferrolb-controller` process running as the `ferrolb-system/ferrolb-controller`
/// ServiceAccount.
pub struct Controller {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Controller {
    /// Starts a controller serving `ns` (its pools, its class) with extra flags.
    pub fn start(cluster: &Cluster, ns: &TestNamespace, extra: &[&str]) -> Result<Controller> {
        Controller::start_via(cluster, ns, extra, &cluster.server)
    }

    /// [`Controller::start`] reaching the apiserver at `server` (a
    /// [`crate::forward::Forwarder`] the test can cut).
    pub fn start_via(
        cluster: &Cluster,
        ns: &TestNamespace,
        extra: &[&str],
        server: &str,
    ) -> Result<Controller> {
        let mut args = vec![
            "--namespace",
            &ns.name,
            "--load-balancer-class",
            &ns.class,
            "--ignore-unclassed",
        ];
        args.extend_from_slice(extra);
        Controller::spawn(cluster, &ns.name, &args, server)
    }

    /// A controller as the install runs it: pools in `ferrolb-system`, Services of the
    /// default class and unclassed ones (every test namespace's too, so only for a
    /// cluster of its own), with extra flags.
    pub fn start_installed(cluster: &Cluster, extra: &[&str]) -> Result<Controller> {
        Controller::spawn(cluster, "ferrolb-system", extra, &cluster.server)
    }

    /// [`Controller::start_installed`] with the harness's admin kubeconfig instead of the
    /// controller's ServiceAccount, and `RUST_LOG=info`: the benchmark against MetalLB runs
    /// both projects' controllers this way.
    pub fn start_installed_as_admin(cluster: &Cluster, extra: &[&str]) -> Result<Controller> {
        let kubeconfig = cluster.admin_kubeconfig();
        Controller::spawn_with(cluster, "ferrolb-system", extra, &kubeconfig, "info")
    }

    fn spawn(cluster: &Cluster, label: &str, args: &[&str], server: &str) -> Result<Controller> {
        let kubeconfig = cluster.service_account_kubeconfig_via(
            "ferrolb-system",
            "ferrolb-controller",
            server,
        )?;
        Controller::spawn_with(
            cluster,
            label,
            args,
            &kubeconfig,
            "info,kube=warn,ferrolb_controller::shell=debug",
        )
    }

    fn spawn_with(
        cluster: &Cluster,
        label: &str,
        args: &[&str],
        kubeconfig: &std::path::Path,
        rust_log: &str,
    ) -> Result<Controller> {
        let metrics_port = free_port()?;
        let log = cluster
            .dir
            .join(format!("controller-{label}-{metrics_port}.log"));
        let mut command = Command::new(binary("ferrolb-controller")?);
        command
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", rust_log)
            .args(args)
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"));
        let child = spawn_tied(command, &log)?;
        Ok(Controller {
            child: Some(child),
            metrics_port,
            log,
        })
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as Kubernetes stops a pod.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs a path of the metrics endpoint (plain HTTP/1.0 on loopback).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("bad HTTP response")?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `probe` every 100 ms until it yields a value or `timeout` passes.
///
/// A probe returns an `Option` (nothing to say while waiting) or a `Result`,
/// whose last error is quoted when the wait times out: "timed out waiting for
/// 2 IPs on web" says little, "…; last: 1 IP: 198.51.100.200" says why.
pub async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    probe: F,
) -> Result<<Fut::Output as ProbeOutcome>::Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
    Fut::Output: ProbeOutcome,
{
    wait_for_every(what, timeout, Duration::from_millis(100), probe).await
}

/// [`wait_for`], polling every `interval`: for a test that must act as soon
/// as the probe holds.
pub async fn wait_for_every<F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> Result<<Fut::Output as ProbeOutcome>::Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
    Fut::Output: ProbeOutcome,
{
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        match probe().await.into_attempt() {
            Ok(value) => return Ok(value),
            Err(Some(why)) => last = Some(why),
            Err(None) => {}
        }
        if Instant::now() >= deadline {
            match last {
                Some(why) => bail!("timed out after {timeout:?} waiting for {what}; last: {why}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// What a [`wait_for`] probe returns: a value, or why there is none yet.
pub trait ProbeOutcome {
    /// What the wait yields.
    type Value;
    /// The value, or the reason to keep waiting (if the probe gave one).
    fn into_attempt(self) -> std::result::Result<Self::Value, Option<String>>;
}

impl<T> ProbeOutcome for Option<T> {
    type Value = T;
    fn into_attempt(self) -> std::result::Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: std::fmt::Display> ProbeOutcome for std::result::Result<T, E> {
    type Value = T;
    fn into_attempt(self) -> std::result::Result<T, Option<String>> {
        // `{:#}` prints an anyhow error with its causes on one line.
        self.map_err(|e| Some(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timed_out_wait_quotes_the_probes_last_error() {
        let mut tries = 0;
        let error = wait_for("the answer", Duration::from_millis(250), || {
            tries += 1;
            let attempt = tries;
            async move { Err::<(), _>(anyhow::anyhow!("attempt {attempt}: not yet")) }
        })
        .await
        .expect_err("the probe never succeeds");
        let text = error.to_string();
        assert!(text.contains("waiting for the answer"), "{text}");
        assert!(
            text.contains(&format!("last: attempt {tries}: not yet")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_wait_returns_the_first_value() {
        let mut tries = 0;
        let value = wait_for("three tries", Duration::from_secs(5), || {
            tries += 1;
            let attempt = tries;
            async move { (attempt >= 3).then_some(attempt) }
        })
        .await
        .expect("the third try answers");
        assert_eq!(value, 3);
    }
}
