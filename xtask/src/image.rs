//! `cargo xtask image`: static release binaries, then one OCI archive per
//! image, without Docker. See the README's "Building the images".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::oci::{self, ImageSpec, LayerEntry};
use ferrolb_tests::env::shipping_profile;
use ferrolb_tests::tools::{repo_root, target_dir};

pub const TARGET: &str = "x86_64-unknown-linux-gnu";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SOURCE: &str = "https://github.com/ferrolb/ferrolb";
const NONROOT: &str = "65532:65532";

/// One image `cargo xtask image` makes.
struct Image {
    /// Repository name.
    name: &'static str,
    /// `None`: the `--tag`.
    fixed_tag: Option<&'static str>,
    /// The cargo binary that goes in.
    binary: &'static str,
    /// Where it lands, also the entrypoint.
    path_in_image: &'static str,
    user: Option<&'static str>,
    /// File name of the archive in the output directory.
    archive: &'static str,
}

const IMAGES: [Image; 4] = [
    Image {
        name: "ghcr.io/ferrolb/ferrolb-controller",
        fixed_tag: None,
        binary: "ferrolb-controller",
        path_in_image: "/ferrolb-controller",
        user: Some(NONROOT),
        archive: "ferrolb-controller.oci.tar",
    },
    Image {
        // Root in the DaemonSet, for NET_RAW and the host network.
        name: "ghcr.io/ferrolb/ferrolb-speaker",
        fixed_tag: None,
        binary: "ferrolb-speaker",
        path_in_image: "/ferrolb-speaker",
        user: None,
        archive: "ferrolb-speaker.oci.tar",
    },
    Image {
        name: "ghcr.io/ferrolb/ferrolb-echo",
        fixed_tag: None,
        binary: "ferrolb-echo",
        path_in_image: "/ferrolb-echo",
        user: Some(NONROOT),
        archive: "ferrolb-echo.oci.tar",
    },
    Image {
        // The kubelet's sandbox image, so test nodes never ask a registry.
        name: "registry.k8s.io/pause",
        fixed_tag: Some("3.10"),
        binary: "ferrolb-pause",
        path_in_image: "/pause",
        user: Some("65535:65535"),
        archive: "pause.oci.tar",
    },
];

/// One line of `images.json`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub name: String,
    pub tag: String,
    /// `name:tag`.
    pub reference: String,
    /// Absolute path of the archive.
    pub archive: String,
    /// Manifest digest, `sha256:…`.
    pub digest: String,
    /// Config digest (the image ID containerd and podman list).
    pub config_digest: String,
    /// The one layer's (compressed) digest.
    pub layer_digest: String,
    /// Layer + config + manifest bytes.
    pub size: u64,
}

pub fn default_out_dir() -> PathBuf {
    target_dir().join("images")
}

pub fn run(out: Option<PathBuf>, tag: Option<String>) -> Result<()> {
    let root = repo_root();
    let tag = tag.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    let out = out.unwrap_or_else(default_out_dir);
    let out = if out.is_absolute() {
        out
    } else {
        std::env::current_dir()?.join(out)
    };
    build_static(&root)?;

    let revision = git(&root, &["rev-parse", "HEAD"])?;
    let created = git(&root, &["log", "-1", "--format=%cI"])?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let mut records = Vec::new();
    for image in &IMAGES {
        let binary = target_dir()
            .join(TARGET)
            .join(shipping_profile(image.binary))
            .join(image.binary);
        check_static(&binary)?;
        let spec = image_spec(
            image,
            &tag,
            &revision,
            &created,
            binary_entry(&binary, image.path_in_image)?,
        );
        records.push(write_image(&spec, &out.join(image.archive))?);
    }
    let json = serde_json::to_vec_pretty(&records)?;
    write_atomically(&out.join("images.json"), &json)?;

    println!("{:<44} {:<73} {:>10}", "IMAGE", "DIGEST", "SIZE");
    for r in &records {
        println!(
            "{:<44} {:<73} {:>6.2} MiB",
            r.reference,
            r.digest,
            r.size as f64 / (1024.0 * 1024.0)
        );
    }
    println!(
        "wrote {} archives and images.json to {}",
        records.len(),
        out.display()
    );
    Ok(())
}

/// Writes the archive of `spec` to `path` and returns its `images.json` record.
pub(crate) fn write_image(spec: &ImageSpec, path: &Path) -> Result<Record> {
    let archive = oci::write_archive(spec)?;
    write_atomically(path, &archive.bytes)?;
    Ok(Record {
        name: spec.name.clone(),
        tag: spec.tag.clone(),
        reference: spec.reference(),
        archive: path.display().to_string(),
        digest: archive.manifest_digest,
        config_digest: archive.config_digest,
        layer_digest: archive.layer_digest,
        size: archive.compressed_size,
    })
}

/// The release builds, statically linked, with paths that do not depend on
/// where the repository or the cargo home are (so the bytes are reproducible):
/// one cargo call per profile the images use.
fn build_static(root: &Path) -> Result<()> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let rustflags = format!(
        "-C target-feature=+crt-static -C strip=symbols --remap-path-prefix={}=/src --remap-path-prefix={home}=/home",
        root.display()
    );
    let mut profiles: Vec<&str> = IMAGES
        .iter()
        .map(|image| shipping_profile(image.binary))
        .collect();
    profiles.sort_unstable();
    profiles.dedup();
    for profile in profiles {
        let mut args = vec!["build", "--profile", profile, "--target", TARGET];
        for image in IMAGES
            .iter()
            .filter(|image| shipping_profile(image.binary) == profile)
        {
            args.extend(["--bin", image.binary]);
        }
        println!("+ RUSTFLAGS={rustflags:?} cargo {}", args.join(" "));
        let status = ferrolb_tests::env::nested_cargo()
            .args(&args)
            .env("RUSTFLAGS", &rustflags)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .current_dir(root)
            .status()
            .context("running cargo")?;
        if !status.success() {
            bail!("the static {profile} build failed ({status})");
        }
    }
    Ok(())
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn image_spec(
    image: &Image,
    tag: &str,
    revision: &str,
    created: &str,
    binary: LayerEntry,
) -> ImageSpec {
    let title = image.binary;
    let labels = BTreeMap::from([
        (
            "org.opencontainers.image.source".to_string(),
            SOURCE.to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            tag.to_string(),
        ),
        (
            "org.opencontainers.image.revision".to_string(),
            revision.to_string(),
        ),
        (
            "org.opencontainers.image.title".to_string(),
            title.to_string(),
        ),
        (
            "org.opencontainers.image.licenses".to_string(),
            "Apache-2.0".to_string(),
        ),
    ]);
    let mut files = base_files();
    files.push(binary);
    ImageSpec {
        name: image.name.to_string(),
        tag: image.fixed_tag.unwrap_or(tag).to_string(),
        entrypoint: vec![image.path_in_image.to_string()],
        user: image.user.map(str::to_string),
        env: vec![PATH_ENV.to_string()],
        labels,
        created: created.to_string(),
        files,
    }
}

/// Everything in a layer besides the binary: users, groups and `/tmp`.
pub fn base_files() -> Vec<LayerEntry> {
    vec![
        LayerEntry::dir("etc", 0o755),
        LayerEntry::file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n".to_vec(),
        ),
        LayerEntry::file("etc/group", 0o644, b"root:x:0:\nnonroot:x:65532:\n".to_vec()),
        LayerEntry::dir("tmp", 0o1777),
    ]
}

/// The binary as a layer entry: its contents only, never its mtime or owner.
pub fn binary_entry(path: &Path, path_in_image: &str) -> Result<LayerEntry> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(LayerEntry::file(path_in_image, 0o755, data))
}

/// Fails unless `path` is an x86-64 ELF without a program interpreter
/// (PT_INTERP), i.e. one that runs in an image holding nothing else.
pub fn check_static(path: &Path) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match elf_interpreter(&data) {
        Ok(None) => Ok(()),
        Ok(Some(interp)) => bail!(
            "{} is dynamically linked (interpreter {interp}); build with +crt-static",
            path.display()
        ),
        Err(e) => Err(e.context(format!("{} is not a usable ELF", path.display()))),
    }
}

/// The PT_INTERP path of a 64-bit little-endian x86-64 ELF, if it has one.
pub fn elf_interpreter(data: &[u8]) -> Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| -> Result<u16> {
        let b = data.get(o..o + 2).context("truncated ELF")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| -> Result<u32> {
        let b = data.get(o..o + 4).context("truncated ELF")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| -> Result<u64> {
        let b = data.get(o..o + 8).context("truncated ELF")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    };
    if data.get(..4) != Some(b"\x7fELF") {
        bail!("no ELF magic");
    }
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        bail!("not a 64-bit little-endian ELF");
    }
    if u16_at(0x12)? != 62 {
        bail!("not x86-64");
    }
    let phoff = usize::try_from(u64_at(0x20)?)?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i.checked_mul(phentsize).context("bad program headers")?)
            .context("bad program headers")?;
        if u32_at(ph)? == PT_INTERP {
            let off = usize::try_from(u64_at(ph + 8)?)?;
            let len = usize::try_from(u64_at(ph + 32)?)?;
            let end = off.checked_add(len).context("bad PT_INTERP")?;
            let raw = data.get(off..end).context("PT_INTERP out of the file")?;
            let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
            return Ok(Some(String::from_utf8_lossy(raw).into_owned()));
        }
    }
    Ok(None)
}

/// Writes through a temporary file, so a reader never sees half an archive.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn spec_for(binary: &Path) -> ImageSpec {
        image_spec(
            &IMAGES[0],
            "0.1.0",
            "0123456789abcdef0123456789abcdef01234567",
            "2026-11-30T00:00:00+00:00",
            binary_entry(binary, "/ferrolb-controller").unwrap(),
        )
    }

    #[test]
    fn an_input_mtime_does_not_change_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("ferrolb-controller");
        std::fs::write(&bin, b"\x7fELF pretend").unwrap();
        let file = std::fs::File::options().write(true).open(&bin).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        let before = oci::write_archive(&spec_for(&bin)).unwrap();
        file.set_modified(SystemTime::now()).unwrap();
        drop(file);
        let after = oci::write_archive(&spec_for(&bin)).unwrap();
        assert_eq!(before.manifest_digest, after.manifest_digest);
        assert_eq!(before.bytes, after.bytes);
        // The contents do count.
        std::fs::write(&bin, b"\x7fELF changed").unwrap();
        let changed = oci::write_archive(&spec_for(&bin)).unwrap();
        assert_ne!(before.manifest_digest, changed.manifest_digest);
    }

    #[test]
    fn the_layer_holds_exactly_the_binary_users_and_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("ferrolb-controller");
        std::fs::write(&bin, b"\x7fELF pretend").unwrap();
        let archive = oci::write_archive(&spec_for(&bin)).unwrap();
        let outer = oci::tests::untar(&archive.bytes);
        let gz = &outer
            .iter()
            .find(|e| e.path == oci::blob_path(&archive.layer_digest))
            .unwrap()
            .data;
        let mut layer = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut layer)
            .unwrap();
        let entries = oci::tests::untar(&layer);
        let got: Vec<(&str, u32)> = entries.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(
            got,
            [
                ("etc/", 0o755),
                ("etc/group", 0o644),
                ("etc/passwd", 0o644),
                ("ferrolb-controller", 0o755),
                ("tmp/", 0o1777),
            ]
        );
        let passwd = String::from_utf8(entries[2].data.clone()).unwrap();
        assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    }

    #[test]
    fn images_have_the_agreed_names_users_and_labels() {
        let entry = LayerEntry::file("/x", 0o755, vec![]);
        let specs: Vec<ImageSpec> = IMAGES
            .iter()
            .map(|i| image_spec(i, "9.9.9", "abc", "1970-01-01T00:00:00Z", entry.clone()))
            .collect();
        let refs: Vec<String> = specs.iter().map(ImageSpec::reference).collect();
        assert_eq!(
            refs,
            [
                "ghcr.io/ferrolb/ferrolb-controller:9.9.9",
                "ghcr.io/ferrolb/ferrolb-speaker:9.9.9",
                "ghcr.io/ferrolb/ferrolb-echo:9.9.9",
                "registry.k8s.io/pause:3.10",
            ]
        );
        let users: Vec<Option<&str>> = specs.iter().map(|s| s.user.as_deref()).collect();
        assert_eq!(
            users,
            [
                Some("65532:65532"),
                None,
                Some("65532:65532"),
                Some("65535:65535")
            ]
        );
        assert_eq!(specs[3].entrypoint, ["/pause"]);
        for s in &specs {
            assert_eq!(s.labels["org.opencontainers.image.version"], "9.9.9");
            assert_eq!(s.labels["org.opencontainers.image.revision"], "abc");
            assert_eq!(s.labels["org.opencontainers.image.licenses"], "Apache-2.0");
            assert_eq!(s.labels["org.opencontainers.image.source"], SOURCE);
        }
    }

    fn elf(interp: Option<&[u8]>) -> Vec<u8> {
        // ELF header (64 bytes) + 2 program headers (56 bytes each) + interp string.
        let mut d = vec![0u8; 64 + 2 * 56];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        d[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        if let Some(path) = interp {
            let ph = 64 + 56;
            d[ph..ph + 4].copy_from_slice(&3u32.to_le_bytes());
            let off = d.len() as u64;
            d[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
            d[ph + 32..ph + 40].copy_from_slice(&(path.len() as u64 + 1).to_le_bytes());
            d.extend_from_slice(path);
            d.push(0);
        }
        d
    }

    #[test]
    fn elf_interpreter_tells_static_from_dynamic() {
        assert_eq!(elf_interpreter(&elf(None)).unwrap(), None);
        assert_eq!(
            elf_interpreter(&elf(Some(b"/lib64/ld-linux-x86-64.so.2"))).unwrap(),
            Some("/lib64/ld-linux-x86-64.so.2".to_string())
        );
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
        let mut truncated = elf(Some(b"/lib64/ld"));
        truncated.truncate(100);
        assert!(elf_interpreter(&truncated).is_err());
    }

    #[test]
    fn a_real_dynamic_binary_is_refused() {
        // Debian's own binaries are dynamically linked.
        let sh = Path::new("/bin/sh");
        if sh.exists() {
            assert!(check_static(sh).is_err());
        }
    }
}
