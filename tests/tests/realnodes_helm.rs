//! The Helm chart on real kubelet nodes: `helm install` as the chart's README
//! says (the chart making the gossip key Secret), traffic from a client
//! through a LoadBalancer IP, `helm upgrade --reuse-values` that keeps the
//! gossip key and the traffic, and `helm uninstall`.
//!
//! The test starts a cluster of its own (2 nodes, no router), so it does not
//! share the `deploy/`-installed site of `realnodes.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_tests::realnodes::failover::requests;
use ferrolb_tests::realnodes::http_probe::{ProbeLoop, outage};
use ferrolb_tests::realnodes::{Policy, RealCluster, RealClusterShape, built_images, echo_field};
use ferrolb_tests::tools::{ensure_helm, repo_root};
use serde_json::{Value, json};

const SYSTEM: &str = "ferrolb-system";
const NS: &str = "default";
const POOL: &str = "helm-l2";
const NODES: usize = 2;
const HELM_TIMEOUT: &str = "180s";

/// Runs helm against the cluster (admin kubeconfig), with its config, cache
/// and data kept out of the user's home; returns stdout or fails with both.
fn helm(helm: &Path, kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let home = std::env::temp_dir().join("ferrolb-tests-helm");
    let output = Command::new(helm)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running helm {args:?}"))?;
    if !output.status.success() {
        bail!(
            "helm {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What the system namespace looks like, for a failure message.
fn diagnose(site: &RealCluster) -> String {
    let run = |args: &[&str]| {
        site.api
            .kubectl_ok(args)
            .unwrap_or_else(|e| format!("{args:?}: {e:#}"))
    };
    format!(
        "workloads:\n{}\nspeaker logs:\n{}\nevents:\n{}\nlogs in {}",
        run(&[
            "-n",
            SYSTEM,
            "get",
            "deploy,ds,rs,pods,secrets",
            "-o",
            "wide"
        ]),
        run(&[
            "-n",
            SYSTEM,
            "logs",
            "-l",
            "app.kubernetes.io/name=ferrolb-speaker",
            "--prefix",
            "--tail=15",
        ]),
        run(&["-n", SYSTEM, "get", "events", "--sort-by=.lastTimestamp"]),
        site.dir.display()
    )
}

fn get_json(site: &RealCluster, namespace: &str, what: &[&str]) -> Result<Value> {
    let mut args = vec!["-n", namespace, "get"];
    args.extend(what);
    args.extend(["-o", "json"]);
    Ok(serde_json::from_str(&site.api.kubectl_ok(&args)?)?)
}

/// `name Ready` of every pod of component `app` in the system namespace
/// (terminating pods of a rollout are left out).
fn ready_pods(site: &RealCluster, app: &str) -> Result<Vec<(String, bool)>> {
    let pods = get_json(
        site,
        SYSTEM,
        &["pods", "-l", &format!("app.kubernetes.io/name={app}")],
    )?;
    Ok(pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                ready,
            )
        })
        .collect())
}

/// Waits until `app` has exactly `count` pods, all Ready.
fn wait_ready_pods(site: &RealCluster, app: &str, count: usize) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pods = ready_pods(site, app)?;
        if pods.len() == count && pods.iter().all(|(_, ready)| *ready) {
            return Ok(pods.into_iter().map(|(name, _)| name).collect());
        }
        if Instant::now() > deadline {
            bail!("{app}: want {count} Ready pods, have {pods:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn controller_args(site: &RealCluster) -> Result<(u64, Vec<String>)> {
    let d = get_json(site, SYSTEM, &["deployment", "ferrolb-controller"])?;
    let replicas = d["spec"]["replicas"].as_u64().context("spec.replicas")?;
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .context("controller args")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    Ok((replicas, args))
}

/// The memberlist Secret: (labels, annotations, base64 `secretkey`).
fn memberlist_secret(site: &RealCluster) -> Result<(Value, Value, String)> {
    let s = get_json(site, SYSTEM, &["secret", "ferrolb-memberlist"])?;
    let key = s["data"]["secretkey"]
        .as_str()
        .context("secretkey in the Secret")?
        .to_string();
    Ok((
        s["metadata"]["labels"].clone(),
        s["metadata"]["annotations"].clone(),
        key,
    ))
}

fn pods_answering(bodies: &[String]) -> BTreeSet<String> {
    bodies
        .iter()
        .filter_map(|b| echo_field(b, "pod"))
        .map(str::to_string)
        .collect()
}

/// An echo Deployment and its LoadBalancer Service from POOL; returns its IPs.
fn echo_app(site: &RealCluster, name: &str, replicas: u32) -> Result<Vec<IpAddr>> {
    site.apply(&[
        RealCluster::echo_deployment(name, NS, replicas, None),
        RealCluster::echo_service(name, NS, POOL, Policy::Cluster),
    ])?;
    site.rollout(&format!("deployment/{name}"), NS)?;
    site.wait_ingress(name, NS, 2)
}

/// Both families' ingress IPs answer, from pods of `name`.
fn check_answers(site: &RealCluster, name: &str, ips: &[IpAddr]) -> Result<()> {
    for ip in ips {
        let bodies = requests(&site.client, *ip, 6)?;
        let pods = pods_answering(&bodies);
        println!("{name} {ip}: answered by {pods:?}");
        assert!(
            !pods.is_empty() && pods.iter().all(|p| p.starts_with(&format!("{name}-"))),
            "{ip} should be answered by {name} pods: {bodies:?}"
        );
    }
    Ok(())
}

#[test]
fn helm_install_and_upgrade_on_real_nodes() -> Result<()> {
    let helm_bin: PathBuf = ensure_helm()?;
    let started = Instant::now();
    let site = RealCluster::start(&RealClusterShape {
        nodes: NODES,
        images: built_images()?,
        detached: false,
        router: false,
        second_lan: false,
    })?;
    println!("cluster of {NODES} nodes up in {:?}", started.elapsed());
    let kubeconfig = site.api.admin_kubeconfig();
    let chart = repo_root().join("charts/ferrolb");
    let chart = chart.to_string_lossy();

    // 1. Install, as the chart's README says. The namespace is made by helm
    // with no Pod Security label: this apiserver runs the PodSecurity
    // admission plugin with its built-in default (privileged), so the
    // hostNetwork + NET_RAW speakers are admitted (the --wait below fails
    // otherwise).
    let install = Instant::now();
    helm(
        &helm_bin,
        &kubeconfig,
        &[
            "install",
            "ferrolb",
            &chart,
            "-n",
            SYSTEM,
            "--create-namespace",
            "--set",
            "speaker.memberlist.createSecret=true",
            "--wait",
            "--timeout",
            HELM_TIMEOUT,
        ],
    )
    .map_err(|e| e.context(diagnose(&site)))?;
    let helm_returned = install.elapsed();
    site.rollout("deployment/ferrolb-controller", SYSTEM)?;
    site.rollout("daemonset/ferrolb-speaker", SYSTEM)?;
    let controllers = wait_ready_pods(&site, "ferrolb-controller", 2)?;
    let speakers = wait_ready_pods(&site, "ferrolb-speaker", NODES)?;
    let install_ready = install.elapsed();
    println!(
        "helm install: returned after {helm_returned:?}, controllers {controllers:?} and speakers {speakers:?} Ready after {install_ready:?}"
    );
    let ns_labels = get_json(&site, NS, &["namespace", SYSTEM])?["metadata"]["labels"].clone();
    println!("{SYSTEM} labels: {ns_labels}");

    // The chart made the gossip key Secret, not the controller: the chart
    // turns the controller's creation off, and the Secret carries Helm's
    // ownership marks (the controller's own Secret has neither).
    let (replicas, args) = controller_args(&site)?;
    assert_eq!(replicas, 2);
    assert!(
        args.iter().any(|a| a == "--memberlist-secret-name="),
        "the chart turns the controller's Secret creation off: {args:?}"
    );
    assert!(!args.iter().any(|a| a.starts_with("--log-format=json")));
    let (labels, annotations, key) = memberlist_secret(&site)?;
    assert_eq!(
        labels["app.kubernetes.io/managed-by"], "Helm",
        "labels {labels}"
    );
    assert_eq!(
        annotations["meta.helm.sh/release-name"], "ferrolb",
        "annotations {annotations}"
    );
    assert_eq!(annotations["meta.helm.sh/release-namespace"], SYSTEM);
    assert!(!key.is_empty());

    // 2. A pool, an L2 announcement, and an echo Service through it.
    site.apply(&[
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": POOL, "namespace": SYSTEM},
            "spec": {
                "addresses": ["198.51.100.200-198.51.100.210", "2001:db8:100::200-2001:db8:100::20f"],
                "autoAssign": false,
            },
        }),
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": POOL, "namespace": SYSTEM},
            "spec": {"ipAddressPools": [POOL]},
        }),
    ])?;
    let ips = echo_app(&site, "echo", 2)?;
    println!("Service echo got {ips:?}");
    check_answers(&site, "echo", &ips)?;
    let ip4 = *ips.iter().find(|ip| ip.is_ipv4()).context("an IPv4 IP")?;

    // 3. Upgrade the controller while a client keeps requesting the IP.
    let speaker_pods_before = wait_ready_pods(&site, "ferrolb-speaker", NODES)?;
    let probe = ProbeLoop::start(
        &site.client,
        SocketAddr::new(ip4, 80),
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(300),
    )?;
    let upgrade = Instant::now();
    let upgraded = helm(
        &helm_bin,
        &kubeconfig,
        &[
            "upgrade",
            "ferrolb",
            &chart,
            "-n",
            SYSTEM,
            "--reuse-values",
            "--set",
            "controller.replicas=1",
            "--set",
            "controller.logFormat=json",
            "--wait",
            "--timeout",
            HELM_TIMEOUT,
        ],
    );
    let upgraded = upgraded.map_err(|e| e.context(diagnose(&site)));
    let helm_upgrade_returned = upgrade.elapsed();
    let rolled = upgraded.and_then(|_| {
        site.rollout("deployment/ferrolb-controller", SYSTEM)?;
        wait_ready_pods(&site, "ferrolb-controller", 1)
    });
    let upgrade_rolled_out = upgrade.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let samples = probe.finish()?;
    let new_controllers = rolled?;
    let seen = outage(&samples);
    println!(
        "helm upgrade: returned after {helm_upgrade_returned:?}, rolled out ({new_controllers:?}) after {upgrade_rolled_out:?}; \
         client on {ip4}: {} of {} requests failed, longest gap {:?}",
        seen.failed, seen.total, seen.longest_gap
    );

    let (replicas, args) = controller_args(&site)?;
    assert_eq!(replicas, 1, "controller.replicas=1: {args:?}");
    assert!(
        args.iter().any(|a| a == "--log-format=json"),
        "controller.logFormat=json: {args:?}"
    );
    // --reuse-values kept createSecret=true.
    assert!(args.iter().any(|a| a == "--memberlist-secret-name="));
    assert!(
        new_controllers.iter().all(|p| !controllers.contains(p)),
        "the controller pod is a new one: {new_controllers:?} vs {controllers:?}"
    );
    let (labels, _, key_after) = memberlist_secret(&site)?;
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(
        key_after, key,
        "the upgrade keeps the gossip key (the chart's lookup)"
    );
    // The speakers were not touched, and the client never lost the IP.
    assert_eq!(
        wait_ready_pods(&site, "ferrolb-speaker", NODES)?,
        speaker_pods_before
    );
    assert_eq!(
        seen.failed, 0,
        "requests failed during the upgrade: {seen:?}"
    );
    check_answers(&site, "echo", &ips)?;
    // The upgraded controller allocates.
    let after = echo_app(&site, "echo-after", 1)?;
    println!("Service echo-after got {after:?} from the upgraded controller");
    assert!(
        after.iter().all(|ip| !ips.contains(ip)),
        "new IPs: {after:?} vs {ips:?}"
    );
    check_answers(&site, "echo-after", &after)?;

    // 4. Uninstall: the release's objects go, speakers included.
    let uninstall = Instant::now();
    helm(
        &helm_bin,
        &kubeconfig,
        &[
            "uninstall",
            "ferrolb",
            "-n",
            SYSTEM,
            "--wait",
            "--timeout",
            HELM_TIMEOUT,
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Terminating pods count too: gone means gone.
        let left = site.api.kubectl_ok(&[
            "-n",
            SYSTEM,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/part-of=ferrolb",
            "-o",
            "name",
        ])?;
        if left.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "FerroLB pods left 60 s after helm uninstall: {left}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let secrets = site.api.kubectl_ok(&[
        "-n",
        SYSTEM,
        "get",
        "secret",
        "ferrolb-memberlist",
        "--ignore-not-found",
        "-o",
        "name",
    ])?;
    assert!(
        secrets.trim().is_empty(),
        "the chart's Secret goes with the release: {secrets:?}"
    );
    println!(
        "helm uninstall: FerroLB pods gone after {:?}",
        uninstall.elapsed()
    );
    let teardown = Instant::now();
    drop(site);
    println!(
        "cluster torn down in {:?}; whole test {:?}",
        teardown.elapsed(),
        started.elapsed()
    );
    Ok(())
}
