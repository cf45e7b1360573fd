//! The speaker binary's gossip key flags, checked before it connects to any
//! cluster: a missing, empty or short key stops it with an error naming the
//! flag, the variable and the Secret; `--no-gossip` is the explicit way out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::process::{Command, Output};

/// The speaker with a clean environment (no cluster to find, no variables
/// of ours), `--node-name` given, and `args`.
fn speaker(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolb-speaker"))
        .env_clear()
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .args(["--node-name", "node-a"])
        .args(args)
        .output()
        .expect("the speaker binary runs")
}

fn refused(out: &Output, what: &str, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{what}: no {needle:?} in {stderr}");
    }
    assert!(
        !stderr.contains("connecting to the Kubernetes API"),
        "{what}: got as far as the API: {stderr}"
    );
}

const NAMES: [&str; 3] = ["--gossip-key", "FERROLB_GOSSIP_KEY", "ferrolb-memberlist"];

#[test]
fn a_missing_key_is_refused() {
    let out = speaker(&[], &[]);
    refused(&out, "no key", &NAMES);
    refused(
        &out,
        "no key",
        &["--gossip-key-file", "--no-gossip", "NotReady"],
    );
}

#[test]
fn an_empty_or_blank_key_is_refused() {
    refused(
        &speaker(&["--gossip-key", ""], &[]),
        "--gossip-key ''",
        &NAMES,
    );
    refused(
        &speaker(&[], &[("FERROLB_GOSSIP_KEY", "")]),
        "FERROLB_GOSSIP_KEY=''",
        &NAMES,
    );
    refused(
        &speaker(&[], &[("FERROLB_GOSSIP_KEY", "   \n")]),
        "FERROLB_GOSSIP_KEY=blank",
        &NAMES,
    );
}

#[test]
fn a_short_key_is_refused() {
    let out = speaker(&["--gossip-key", "hunter2"], &[]);
    refused(&out, "short key", &NAMES);
    refused(&out, "short key", &["at least 16"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn an_unreadable_key_file_is_refused() {
    let out = speaker(&["--gossip-key-file", "/nonexistent/keys"], &[]);
    refused(
        &out,
        "missing key file",
        &["--gossip-key-file", "/nonexistent/keys"],
    );
}

#[test]
fn no_gossip_is_explicit_and_logged_at_start() {
    let out = speaker(&["--no-gossip"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("WARN") && stdout.contains("--no-gossip") && stdout.contains("NotReady"),
        "no warning at start: {stdout}"
    );
    // It went on, and stopped only for want of a cluster.
    assert!(
        stderr.contains("connecting to the Kubernetes API"),
        "{stderr}"
    );
    let both = speaker(&["--no-gossip", "--gossip-key", "a key long enough"], &[]);
    refused(&both, "--no-gossip with a key", &["--no-gossip"]);
}

#[test]
fn help_names_the_gossip_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-speaker"))
        .arg("--help")
        .output()
        .expect("the speaker binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for flag in [
        "--gossip-key",
        "--gossip-key-file",
        "FERROLB_GOSSIP_KEY_FILE",
        "--no-gossip",
        "FERROLB_NO_GOSSIP",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}
