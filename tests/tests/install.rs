//! The two install paths, `kubectl apply -k deploy/` and the Helm chart
//! `charts/ferrolb`, against the real kube-apiserver (server-side dry runs:
//! validation, defaulting and admission, without persisting), and against
//! each other, so they cannot drift apart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use ferrolb_tests::cluster::Cluster;
use ferrolb_tests::env::shared_cluster;
use ferrolb_tests::tools::{ensure_helm, repo_root};

type R = Result<()>;

const NAMESPACE: &str = "ferrolb-system";

fn helm_path() -> Result<PathBuf> {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    HELM.get_or_init(|| ensure_helm().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Runs helm with its config, cache and data kept out of the user's home.
fn helm(args: &[&str]) -> Result<String> {
    let home = std::env::temp_dir().join("ferrolb-tests-helm");
    let mut command = Command::new(helm_path()?);
    command
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(repo_root());
    checked(&mut command, None)
}

fn chart() -> String {
    repo_root()
        .join("charts/ferrolb")
        .to_string_lossy()
        .into_owned()
}

/// `helm template` of the chart into NAMESPACE, CRDs included, with `set` values.
fn helm_template(set: &[&str]) -> Result<String> {
    let chart = chart();
    let mut args = vec![
        "template",
        "ferrolb",
        chart.as_str(),
        "--namespace",
        NAMESPACE,
        "--include-crds",
    ];
    for value in set {
        args.extend(["--set", value]);
    }
    helm(&args)
}

fn kustomize(dir: &str) -> Result<String> {
    let cluster = shared_cluster();
    let path = repo_root().join(dir);
    cluster.kubectl_ok(&["kustomize", &path.to_string_lossy()])
}

/// Runs a command, feeding `stdin`, and returns stdout; fails with its output.
fn checked(command: &mut Command, stdin: Option<&str>) -> Result<String> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("running {command:?}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `kubectl apply --dry-run=server -f -` of `manifests`, as admin.
fn server_dry_run(cluster: &Cluster, manifests: &str) -> Result<String> {
    checked(
        cluster
            .kubectl()
            .args(["apply", "--dry-run=server", "-f", "-"]),
        Some(manifests),
    )
}

/// The (kind, namespace/name) of every object in a multi-document YAML stream.
fn objects(manifests: &str) -> Result<BTreeSet<(String, String)>> {
    let mut set = BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(manifests) {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let field = |path: &[&str]| {
            path.iter()
                .try_fold(&value, |v, key| v.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let kind = field(&["kind"]).context("an object without kind")?;
        let name = field(&["metadata", "name"]).context("an object without name")?;
        let namespace = field(&["metadata", "namespace"]).unwrap_or_default();
        if !set.insert((kind.clone(), format!("{namespace}/{name}"))) {
            bail!("{kind} {namespace}/{name} is rendered twice");
        }
    }
    Ok(set)
}

#[test]
fn helm_lint_passes() -> R {
    let out = helm(&["lint", "--strict", &chart()])?;
    assert!(out.contains("0 chart(s) failed"), "{out}");
    Ok(())
}

#[test]
fn chart_default_render_passes_server_dry_run() -> R {
    let cluster = shared_cluster();
    let rendered = helm_template(&[])?;
    let out = server_dry_run(cluster, &rendered)?;
    assert!(
        out.contains("deployment.apps/ferrolb-controller") && out.contains("(server dry run)"),
        "{out}"
    );
    assert!(out.contains("daemonset.apps/ferrolb-speaker"), "{out}");
    // By default the controller makes the gossip key, not the chart.
    assert!(!rendered.contains("kind: Secret"), "{rendered}");
    assert!(!rendered.contains("ServiceMonitor"), "{rendered}");
    assert!(rendered.contains("--memberlist-secret-name=ferrolb-memberlist"));
    Ok(())
}

/// A minimal ServiceMonitor CRD (the Prometheus Operator's group and kind,
/// any spec), so the server can check the chart's ServiceMonitors too.
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;

#[test]
fn chart_with_options_passes_server_dry_run() -> R {
    let cluster = shared_cluster();
    checked(
        cluster.kubectl().args([
            "apply",
            "--server-side",
            "--field-manager=ferrolb-tests",
            "-f",
            "-",
        ]),
        Some(SERVICE_MONITOR_CRD),
    )?;
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
    ])?;
    let rendered = helm_template(&[
        "speaker.memberlist.createSecret=true",
        "serviceMonitor.enabled=true",
        "serviceMonitor.additionalLabels.release=prometheus",
        "controller.replicas=1",
        "controller.logFormat=json",
        "controller.extraArgs={--ignore-unclassed}",
        "controller.priorityClassName=system-cluster-critical",
        "controller.nodeSelector.kubernetes\\.io/os=linux",
        "speaker.image.repository=registry.example.com/lb/speaker",
        "speaker.image.tag=dev",
        "speaker.pullPolicy=Always",
        "speaker.resources=null",
    ])?;
    let objects = objects(&rendered)?;
    for expected in [
        ("Secret", "ferrolb-system/ferrolb-memberlist"),
        ("ServiceMonitor", "ferrolb-system/ferrolb-controller"),
        ("ServiceMonitor", "ferrolb-system/ferrolb-speaker"),
        ("Service", "ferrolb-system/ferrolb-controller-metrics"),
        ("Service", "ferrolb-system/ferrolb-speaker-metrics"),
    ] {
        assert!(
            objects.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} missing from {objects:?}"
        );
    }
    for arg in [
        "--log-format=json",
        "--ignore-unclassed",
        // The chart owns the Secret, so the controller does not make one.
        "--memberlist-secret-name=\n",
        "image: \"registry.example.com/lb/speaker:dev\"",
        "imagePullPolicy: Always",
        "priorityClassName: system-cluster-critical",
    ] {
        assert!(rendered.contains(arg), "{arg:?} not in\n{rendered}");
    }
    let out = server_dry_run(cluster, &rendered)?;
    assert!(
        out.contains("secret/ferrolb-memberlist created (server dry run)"),
        "{out}"
    );
    assert!(
        out.contains(
            "servicemonitor.monitoring.coreos.com/ferrolb-speaker created (server dry run)"
        ),
        "{out}"
    );
    Ok(())
}

#[test]
fn kustomization_passes_server_dry_run() -> R {
    let cluster = shared_cluster();
    let deploy = repo_root().join("deploy");
    let out =
        cluster.kubectl_ok(&["apply", "-k", &deploy.to_string_lossy(), "--dry-run=server"])?;
    assert!(
        out.contains("deployment.apps/ferrolb-controller") && out.contains("(server dry run)"),
        "{out}"
    );
    Ok(())
}

#[test]
fn local_overlay_overrides_the_images() -> R {
    let base = kustomize("deploy")?;
    let local = kustomize("deploy/overlays/local")?;
    assert!(base.contains("image: ghcr.io/ferrolb/ferrolb-controller:0.1.0"));
    assert!(base.contains("image: ghcr.io/ferrolb/ferrolb-speaker:0.1.0"));
    for image in [
        "image: localhost:5000/ferrolb/ferrolb-controller:dev",
        "image: localhost:5000/ferrolb/ferrolb-speaker:dev",
    ] {
        assert!(local.contains(image), "{image:?} not in\n{local}");
    }
    assert!(!local.contains("ghcr.io"), "{local}");
    assert_eq!(local.matches("imagePullPolicy: IfNotPresent").count(), 2);
    // The overlay lists deploy/'s parts itself; it must keep all of them.
    assert_eq!(objects(&local)?, objects(&base)?);
    Ok(())
}

/// The chart's default render and `kubectl kustomize deploy/` are the same
/// objects (the chart leaves the Namespace to `helm install --create-namespace`).
#[test]
fn chart_and_kustomization_render_the_same_objects() -> R {
    let mut from_kustomize = objects(&kustomize("deploy")?)?;
    assert!(from_kustomize.remove(&("Namespace".to_string(), format!("/{NAMESPACE}"))));
    let from_chart = objects(&helm_template(&[])?)?;
    let only_kustomize: Vec<_> = from_kustomize.difference(&from_chart).collect();
    let only_chart: Vec<_> = from_chart.difference(&from_kustomize).collect();
    assert!(
        only_kustomize.is_empty() && only_chart.is_empty(),
        "only in deploy/: {only_kustomize:?}; only in the chart: {only_chart:?}"
    );
    Ok(())
}

/// The object of `kind` named `name` in a multi-document YAML stream.
fn find(manifests: &str, kind: &str, name: &str) -> Result<serde_yaml::Value> {
    for document in serde_yaml::Deserializer::from_str(manifests) {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(document)?;
        if value.get("kind").and_then(|k| k.as_str()) == Some(kind)
            && value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                == Some(name)
        {
            return Ok(value);
        }
    }
    bail!("no {kind} {name} in the render")
}

/// What decides how a workload's pods run, with the image's tag left out
/// (the chart takes it from its appVersion).
fn pod_contract(workload: &serde_yaml::Value) -> Result<serde_yaml::Value> {
    let spec = workload
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .context("no pod template")?;
    let container = spec
        .get("containers")
        .and_then(|c| c.get(0))
        .context("no container")?;
    let pick = |from: &serde_yaml::Value, keys: &[&str]| {
        let mut out = serde_yaml::Mapping::new();
        for key in keys {
            if let Some(v) = from.get(*key) {
                out.insert((*key).into(), v.clone());
            }
        }
        serde_yaml::Value::Mapping(out)
    };
    let image = container
        .get("image")
        .and_then(|i| i.as_str())
        .and_then(|i| i.rsplit_once(':'))
        .map(|(repository, _)| repository.to_string())
        .unwrap_or_default();
    let mut contract = serde_yaml::Mapping::new();
    contract.insert(
        "pod".into(),
        pick(
            spec,
            &[
                "serviceAccountName",
                "hostNetwork",
                "securityContext",
                "terminationGracePeriodSeconds",
                "tolerations",
                "priorityClassName",
                "volumes",
            ],
        ),
    );
    contract.insert(
        "container".into(),
        pick(
            container,
            &[
                "securityContext",
                "ports",
                "env",
                "livenessProbe",
                "readinessProbe",
                "resources",
                "volumeMounts",
            ],
        ),
    );
    contract.insert("image".into(), image.into());
    Ok(serde_yaml::Value::Mapping(contract))
}

#[test]
fn chart_and_kustomization_run_the_same_pods_with_the_same_rights() -> R {
    let from_kustomize = kustomize("deploy")?;
    let from_chart = helm_template(&[])?;
    for (kind, name) in [
        ("Deployment", "ferrolb-controller"),
        ("DaemonSet", "ferrolb-speaker"),
    ] {
        let kustomized = pod_contract(&find(&from_kustomize, kind, name)?)?;
        let charted = pod_contract(&find(&from_chart, kind, name)?)?;
        assert_eq!(
            kustomized, charted,
            "{kind} {name}: deploy/ and the chart run its pods differently"
        );
    }
    for (kind, name) in [
        ("ClusterRole", "ferrolb-controller"),
        ("ClusterRole", "ferrolb-controller-namespaced"),
        ("ClusterRole", "ferrolb-speaker"),
        ("ClusterRole", "ferrolb-speaker-namespaced"),
    ] {
        let rules = |manifests: &str| -> Result<serde_yaml::Value> {
            Ok(find(manifests, kind, name)?
                .get("rules")
                .cloned()
                .unwrap_or_default())
        };
        assert_eq!(
            rules(&from_kustomize)?,
            rules(&from_chart)?,
            "{kind} {name}: deploy/ and the chart grant different rights"
        );
    }
    Ok(())
}
