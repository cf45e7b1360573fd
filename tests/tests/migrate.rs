//! `ferrolb migrate` on MetalLB's own examples (its `configsamples/`, `configmaptocrs`
//! test data and documentation, from the module source) and on hand-written edge cases:
//! each converts with exactly the losses expected, every converted object passes the
//! FerroLB CRDs' validation on the real apiserver, and the binary reads a live cluster.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use ferrolb_migrate::{Conversion, Options, convert, output, parse_yaml};
use ferrolb_tests::env::{binary, shared_cluster, wait_crds_established};
use ferrolb_tests::metallb_source::{examples, module_dir};
use ferrolb_tests::tools::repo_root;

type R = anyhow::Result<()>;

const EDGE_CASES: &str = "crds/migrate/testdata/edge-cases.yaml";

/// Every loss over all examples, as `label: line`. Everything else converts without loss.
const EXPECTED_LOSSES: &str =
    include_str!("../../crds/migrate/testdata/metallb-v0.16.2-losses.txt");

fn convert_example(label: &str, yaml: &str) -> Conversion {
    let inputs = parse_yaml(label, yaml).unwrap_or_else(|e| panic!("{e}"));
    convert(&inputs, &Options::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn metallb_examples_convert_with_exactly_the_expected_losses() -> R {
    let examples = examples()?;
    assert!(examples.len() > 60, "{} examples", examples.len());
    let mut losses = BTreeSet::new();
    for (label, yaml) in &examples {
        let conversion = convert_example(label, yaml);
        assert!(
            !(conversion.objects.is_empty() && conversion.losses.is_empty()),
            "{label}: neither converted nor reported"
        );
        losses.extend(
            conversion
                .losses
                .iter()
                .map(|loss| format!("{label}: {loss}")),
        );
    }
    let expected: BTreeSet<String> = EXPECTED_LOSSES
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(String::from)
        .collect();
    let missing: Vec<&String> = expected.difference(&losses).collect();
    let unexpected: Vec<&String> = losses.difference(&expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing: {missing:#?}\nunexpected: {unexpected:#?}"
    );
    Ok(())
}

/// `kubectl apply --dry-run=server` of `yaml`: its output, or the error with kubectl's.
fn dry_run(yaml: &str) -> anyhow::Result<String> {
    shared_cluster().kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], yaml)
}

#[test]
fn every_converted_object_passes_the_apiserver_validation() -> R {
    let mut examples = examples()?;
    let edge = std::fs::read_to_string(repo_root().join(EDGE_CASES))?;
    examples.push((EDGE_CASES.into(), edge));
    let mut applied = 0;
    for (label, yaml) in &examples {
        let conversion = convert_example(label, yaml);
        if conversion.objects.is_empty() {
            continue; // BFD profiles only.
        }
        let stdout = dry_run(&output::render(&conversion.objects))
            .unwrap_or_else(|e| panic!("{label}: {e:#}"));
        let lines = stdout
            .lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count();
        assert_eq!(lines, conversion.objects.len(), "{label}: {stdout}");
        applied += lines;
    }
    eprintln!(
        "{applied} converted objects from {} inputs passed",
        examples.len()
    );
    Ok(())
}

fn ferrolb(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary("ferrolb").unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferrolb starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("ferrolb ends")
}

#[test]
fn binary_exit_codes_stdin_and_output_directory() -> R {
    let vrf = std::fs::read_to_string(module_dir()?.join("configsamples/bgppeer_with_vrf.yaml"))?;
    let refused = ferrolb(&["migrate", "-f", "-"], &vrf);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(
        refused.stdout.is_empty(),
        "nothing is written without --allow-loss"
    );
    assert!(
        stderr.contains(
            r#"loss: BGPPeer metallb-system/peer: spec.vrf "red": VRFs are not supported"#
        ),
        "{stderr}"
    );
    let allowed = ferrolb(&["migrate", "-f", "-", "--allow-loss"], &vrf);
    assert_eq!(allowed.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&allowed.stdout).contains("kind: BGPPeer"));

    let dir = tempfile::tempdir()?;
    let edge = repo_root().join(EDGE_CASES);
    let out_dir = dir.path().join("out");
    let written = ferrolb(
        &[
            "migrate",
            "-f",
            &edge.to_string_lossy(),
            "-o",
            &out_dir.to_string_lossy(),
        ],
        "",
    );
    assert_eq!(
        written.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "bgpadvertisement-communities-and-localpref.yaml",
            "bgppeer-secret-peer.yaml",
            "community-aliases.yaml",
            "ipaddresspool-cidr-and-range.yaml",
            "ipaddresspool-ipv6-only.yaml",
            "l2advertisement-selected-nodes.yaml",
            "secret-bgp-password.yaml",
        ]
    );
    let bad = ferrolb(
        &["migrate", "-f", "-"],
        "apiVersion: v1\nkind: List\nitems: [3]\n",
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("error: -, document 1, item 0:"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    Ok(())
}

#[test]
fn reads_metallb_objects_legacy_configmap_and_secrets_from_the_live_cluster() -> R {
    let cluster = shared_cluster();
    let dir = module_dir()?;
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        &dir.join("config/crd/bases").to_string_lossy(),
    ])?;
    wait_crds_established(cluster)?;
    // A namespace of its own stands for metallb-system.
    let from = "mlb-migrate-live";
    cluster.kubectl_ok(&["create", "namespace", from])?;
    let edge =
        std::fs::read_to_string(repo_root().join(EDGE_CASES))?.replace("metallb-system", from);
    let legacy = std::fs::read_to_string(
        dir.join("configmaptocrs/testdata/configmap-yaml/config-yaml-address-pools.yaml"),
    )?
    .replace("metallb-system", from);
    cluster.kubectl_stdin(&["apply", "-f", "-"], &format!("{edge}\n---\n{legacy}"))?;
    let kubeconfig = cluster.admin_kubeconfig();
    let live = ferrolb(
        &[
            "migrate",
            "--from-cluster",
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "--from-namespace",
            from,
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&live.stderr);
    assert_eq!(live.status.code(), Some(0), "{stderr}");
    let yaml = String::from_utf8_lossy(&live.stdout);
    let mut names: Vec<String> = parse_yaml("live", &yaml)?
        .iter()
        .map(|input| match &input.document {
            ferrolb_migrate::input::Document::Object(o) => {
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            }
            other => panic!("{other:?}"),
        })
        .collect();
    names.sort();
    let expected_legacy = convert_example("legacy", &legacy.replace(from, "metallb-system"));
    let expected_edge = convert_example("edge", &edge.replace(from, "metallb-system"));
    let mut expected: Vec<String> = expected_legacy
        .objects
        .iter()
        .chain(&expected_edge.objects)
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    expected.sort();
    assert_eq!(names, expected, "{stderr}");
    assert!(
        stderr.contains(&format!("note: Secret {from}/bgp-password copied")),
        "{stderr}"
    );
    dry_run(&yaml)?;
    cluster.kubectl_ok(&["delete", "namespace", from, "--wait=false"])?;
    Ok(())
}
