//! `cargo xtask image` end to end: the archives are reproducible, and the
//! tools people load them with read them (skopeo, umoci, tar, containerd).
//! Each real tool is used when installed and skipped with a note otherwise.
//!
//! The first run pays for the static release build; later runs are a cargo
//! no-op plus writing four archives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unsafe_code,
    reason = "an integration test fails by panicking; geteuid has no preconditions"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Debug, serde::Deserialize)]
struct Record {
    name: String,
    tag: String,
    reference: String,
    archive: String,
    digest: String,
    config_digest: String,
    size: u64,
}

fn xtask_image(out: &Path) -> Vec<Record> {
    let status = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["image", "--out"])
        .arg(out)
        .status()
        .expect("running xtask image");
    assert!(status.success(), "cargo xtask image failed: {status}");
    let json = std::fs::read(out.join("images.json")).expect("images.json");
    serde_json::from_slice(&json).expect("images.json parses")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn find<'a>(records: &'a [Record], name: &str) -> &'a Record {
    records
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} not in images.json"))
}

#[test]
fn images_are_reproducible_and_load_with_real_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let first = xtask_image(&tmp.path().join("a"));
    let second = xtask_image(&tmp.path().join("b"));

    // Reproducible: the same commit gives the same digests and bytes twice in a row.
    assert_eq!(first.len(), 4);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(
            (&a.reference, &a.digest, a.size),
            (&b.reference, &b.digest, b.size)
        );
        let (ba, bb) = (
            std::fs::read(&a.archive).unwrap(),
            std::fs::read(&b.archive).unwrap(),
        );
        assert!(ba == bb, "{} differs between two runs", a.reference);
        assert!(
            a.size < 10 * 1024 * 1024,
            "{} is {} bytes",
            a.reference,
            a.size
        );
        assert!(a.digest.starts_with("sha256:") && a.digest.len() == 71);
    }
    let refs: Vec<&str> = first.iter().map(|r| r.reference.as_str()).collect();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        refs,
        [
            format!("ghcr.io/ferrolb/ferrolb-controller:{version}").as_str(),
            &format!("ghcr.io/ferrolb/ferrolb-speaker:{version}"),
            &format!("ghcr.io/ferrolb/ferrolb-echo:{version}"),
            "registry.k8s.io/pause:3.10",
        ]
    );

    skopeo_sees_labels_user_and_digest(&first);
    layer_lists_exactly_and_echo_runs(find(&first, "ghcr.io/ferrolb/ferrolb-echo"), tmp.path());
    umoci_unpacks(
        find(&first, "ghcr.io/ferrolb/ferrolb-controller"),
        tmp.path(),
    );
    containerd_imports(find(&first, "registry.k8s.io/pause"), tmp.path());
}

fn skopeo_sees_labels_user_and_digest(records: &[Record]) {
    if !have("skopeo") {
        eprintln!("skopeo not installed: skipping its checks");
        return;
    }
    let revision = run(Command::new("git").args(["rev-parse", "HEAD"]));
    for r in records {
        let src = format!("oci-archive:{}", r.archive);
        let inspect: Value =
            serde_json::from_str(&run(Command::new("skopeo").args(["inspect", &src]))).unwrap();
        assert_eq!(inspect["Digest"], r.digest.as_str(), "{}", r.reference);
        assert_eq!(inspect["Architecture"], "amd64");
        assert_eq!(inspect["Os"], "linux");
        let labels = &inspect["Labels"];
        assert_eq!(labels["org.opencontainers.image.revision"], revision.trim());
        assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://github.com/ferrolb/ferrolb"
        );
        let config: Value = serde_json::from_str(&run(
            Command::new("skopeo").args(["inspect", "--config", &src])
        ))
        .unwrap();
        let (user, entrypoint) = match r.name.as_str() {
            "ghcr.io/ferrolb/ferrolb-controller" => (Some("65532:65532"), "/ferrolb-controller"),
            "ghcr.io/ferrolb/ferrolb-speaker" => (None, "/ferrolb-speaker"),
            "ghcr.io/ferrolb/ferrolb-echo" => (Some("65532:65532"), "/ferrolb-echo"),
            _ => (Some("65535:65535"), "/pause"),
        };
        assert_eq!(config["config"]["User"].as_str(), user, "{}", r.reference);
        assert_eq!(config["config"]["Entrypoint"][0], entrypoint);
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(r.config_digest.starts_with("sha256:"));
    }
}

/// Opens the archive and the layer with GNU tar, lists the layer, then runs
/// the echo binary from it: it is static, so it runs with nothing else.
fn layer_lists_exactly_and_echo_runs(r: &Record, tmp: &Path) {
    let dir = tmp.join("echo-archive");
    std::fs::create_dir_all(&dir).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&r.archive)
        .arg("-C")
        .arg(&dir));
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(manifest_digest, r.digest);
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let listing = run(Command::new("tar").arg("-tzf").arg(&layer));
    let paths: Vec<&str> = listing.lines().collect();
    assert_eq!(
        paths,
        ["etc/", "etc/group", "etc/passwd", "ferrolb-echo", "tmp/"]
    );
    let verbose = run(Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&layer));
    assert!(verbose.lines().all(|l| l.contains(" 0/0 ")), "{verbose}");
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("drwxrwxrwt") && l.ends_with("tmp/")),
        "{verbose}"
    );

    let rootfs = tmp.join("echo-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs));
    let port = free_port();
    let mut child = Command::new(rootfs.join("ferrolb-echo"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("POD_NAME", "echo-test")
        .env("NODE_NAME", "node-t")
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the echo binary from the layer");
    let body = http_get(port, "/");
    let health = http_get(port, "/healthz");
    let _ = child.kill();
    let _ = child.wait();
    let body = body.expect("echo answered");
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(
        body.contains("\r\n\r\npod=echo-test node=node-t client=127.0.0.1:"),
        "{body}"
    );
    assert!(health.expect("healthz answered").ends_with("\r\n\r\nok\n"));
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            return Some(out);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// umoci unpacks the image into a runtime bundle whose process runs as 65532.
fn umoci_unpacks(r: &Record, tmp: &Path) {
    if !have("umoci") {
        eprintln!("umoci not installed: skipping its checks");
        return;
    }
    let layout = tmp.join("controller-layout");
    std::fs::create_dir_all(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&r.archive)
        .arg("-C")
        .arg(&layout));
    let bundle = tmp.join("controller-bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{}", layout.display(), r.tag))
        .arg(&bundle));
    let config: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["user"]["uid"], 65532);
    assert_eq!(config["process"]["args"][0], "/ferrolb-controller");
    let rootfs = bundle.join("rootfs");
    let mut names: Vec<String> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["etc", "ferrolb-controller", "tmp"]);
}

/// A throwaway containerd (own root, state and socket) imports the archive
/// the way the real-node tier does, and lists it under its name and digest.
fn containerd_imports(r: &Record, tmp: &Path) {
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    if !(have("containerd") && have("ctr") && root_user) {
        eprintln!("containerd, ctr or root missing: skipping the import check");
        return;
    }
    let base = tmp.join("containerd");
    let sock = base.join("containerd.sock");
    let config = base.join("config.toml");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\", \
             \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \
             \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.aufs\"]\n\
             [grpc]\n  address = \"{1}\"\n[ttrpc]\n  address = \"{1}.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            base.display(),
            sock.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(base.join("containerd.log")).unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting containerd");
    let _guard = Kill(child, base.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "containerd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ctr = |args: &[&str]| {
        run(Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args(["--namespace", "k8s.io"])
            .args(args))
    };
    ctr(&["images", "import", &r.archive]);
    let listing = ctr(&["images", "ls"]);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&format!("{} ", r.reference)))
        .unwrap_or_else(|| panic!("{} not listed:\n{listing}", r.reference));
    assert!(line.contains(&r.digest), "{line}");
}

struct Kill(std::process::Child, PathBuf);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        // Snapshots may still be mounted if containerd died mid-way.
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(self.1.join("root"))
            .stderr(Stdio::null())
            .status();
    }
}
