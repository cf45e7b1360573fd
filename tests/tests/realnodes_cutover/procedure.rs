//! The README's procedure ("Migrating from MetalLB", steps 1 to 5), step by
//! step, with the real binaries.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use ferrolb_tests::env::{apply_deploy, wait_crds_established};
use ferrolb_tests::metallb::NAMESPACE as METALLB_NS;
use ferrolb_tests::realnodes::apps::NS;
use ferrolb_tests::realnodes::metallb::native_manifest;
use ferrolb_tests::realnodes::{RealCluster, until};
use ferrolb_tests::service_watch::Watched;
use ferrolb_tests::tools::repo_root;

/// `kubectl ARGS` as the README's reader runs it: the admin kubeconfig in
/// `KUBECONFIG`, the `kubectl-ferrolb` plugin on the `PATH`.
fn kubectl(site: &RealCluster, plugin_dir: &Path, args: &[&str]) -> Result<std::process::Output> {
    let path = std::env::var("PATH").unwrap_or_default();
    let output = Command::new(site.api.tools.kubectl())
        .args(args)
        .env("KUBECONFIG", site.api.admin_kubeconfig())
        .env("PATH", format!("{}:{path}", plugin_dir.display()))
        .output()
        .with_context(|| format!("running kubectl {}", args.join(" ")))?;
    Ok(output)
}

fn kubectl_ok(site: &RealCluster, plugin_dir: &Path, args: &[&str]) -> Result<String> {
    let output = kubectl(site, plugin_dir, args)?;
    if !output.status.success() {
        bail!(
            "kubectl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// When the speakers were swapped (step 4), and how long after that
/// FerroLB's speakers were Ready and its controller owned every Service.
pub struct Swap {
    pub at: Instant,
    pub speakers_ready: Duration,
    pub owned: Duration,
}

/// Steps 1 to 5, with `kubectl-ferrolb` from `plugin_dir`; `seen` is the
/// Service watch's record, `expected` MetalLB's IPs.
pub fn run(
    site: &RealCluster,
    plugin_dir: &Path,
    seen: &Mutex<Watched>,
    expected: &BTreeMap<String, Vec<String>>,
    say: &dyn Fn(&str),
) -> Result<Swap> {
    // 1. Convert first, change nothing yet.
    let migrate = kubectl(site, plugin_dir, &["ferrolb", "migrate", "--from-cluster"])?;
    let stderr = String::from_utf8_lossy(&migrate.stderr);
    assert_eq!(
        migrate.status.code(),
        Some(0),
        "kubectl ferrolb migrate: {stderr}"
    );
    let converted = site.dir.join("ferrolb.yaml");
    std::fs::write(&converted, &migrate.stdout)?;
    say(&format!(
        "1. converted ({} bytes; stderr: {})",
        migrate.stdout.len(),
        stderr.trim()
    ));
    // 2. Stop MetalLB's controller.
    kubectl_ok(
        site,
        plugin_dir,
        &[
            "-n",
            METALLB_NS,
            "scale",
            "deployment",
            "controller",
            "--replicas=0",
        ],
    )?;
    say("2. MetalLB's controller scaled to 0");
    // 3. FerroLB's namespace and CRDs, then the converted objects.
    let deploy = repo_root().join("deploy");
    for part in ["namespace", "crds"] {
        kubectl_ok(
            site,
            plugin_dir,
            &[
                "apply",
                "--server-side",
                "-k",
                &deploy.join(part).to_string_lossy(),
            ],
        )?;
    }
    kubectl_ok(
        site,
        plugin_dir,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
    )?;
    let applied = kubectl_ok(
        site,
        plugin_dir,
        &["apply", "-f", &converted.to_string_lossy()],
    )?;
    for object in [
        "ipaddresspool.ferrolb.io/lan",
        "ipaddresspool.ferrolb.io/gold",
        "l2advertisement.ferrolb.io/l2",
    ] {
        assert!(applied.contains(object), "{applied}");
    }
    say("3. FerroLB's namespace, CRDs and the converted objects applied");
    // 4. Swap the speakers, then start the controller.
    let swap = Instant::now();
    kubectl_ok(
        site,
        plugin_dir,
        &["-n", METALLB_NS, "delete", "daemonset", "speaker"],
    )?;
    apply_deploy(&site.api)?;
    say("4. MetalLB's speakers deleted, deploy/ applied");
    site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")?;
    let speakers_ready = swap.elapsed();
    site.rollout("deployment/ferrolb-controller", "ferrolb-system")?;
    let owned = until(
        "FerroLB to own every Service",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || {
            let seen = seen.lock().unwrap();
            Ok((seen.owned.len() == expected.len()).then(|| swap.elapsed()))
        },
    )?;
    for (key, ips) in expected {
        let name = key.split_once('/').unwrap().1;
        assert_eq!(&site.ingress_now(name, NS)?, ips, "{key} kept its IPs");
    }
    say(&format!(
        "FerroLB owns every Service {owned:?} after the speakers' swap (speakers ready after {speakers_ready:?})"
    ));
    // 5. Remove MetalLB: what its manifest installed, as its users uninstall it.
    let manifest = json!({"apiVersion": "v1", "kind": "List", "items": native_manifest()?});
    site.api.kubectl_stdin(
        &[
            "delete",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
            "-f",
            "-",
        ],
        &manifest.to_string(),
    )?;
    wait_crds_established(&site.api)?;
    let left = site.api.kubectl_ok(&["get", "crd", "-o", "name"])?;
    assert!(
        !left.contains("metallb.io"),
        "MetalLB's CRDs are gone: {left}"
    );
    say("5. MetalLB removed (Deployment, RBAC, CRDs, namespace)");

    Ok(Swap {
        at: swap,
        speakers_ready,
        owned,
    })
}
