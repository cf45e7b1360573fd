//! `cargo xtask image --metallb`: OCI archives of MetalLB's controller and
//! speaker (the static binaries `tests/k8s/build-metallb.sh` builds from the
//! Go module proxy and caches), named as MetalLB's own manifest names them,
//! for the real-node cut-over test. They get an index of their own
//! (`images/metallb/images.json`), so FerroLB's sites never import them, and
//! the plain `cargo xtask image` never needs Go.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::image::{Record, base_files, binary_entry, check_static, write_atomically, write_image};
use crate::oci::{ImageSpec, LayerEntry};
use ferrolb_tests::metallb_source::{METALLB_MODULE, controller_binary, speaker_binary};

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The subdirectory of the images directory holding MetalLB's archives.
pub const SUBDIR: &str = "metallb";

/// MetalLB's version, as its image tags spell it (`v0.16.2`).
fn version() -> Result<&'static str> {
    METALLB_MODULE
        .split_once('@')
        .map(|(_, v)| v)
        .context("METALLB_MODULE has no version")
}

/// The image of MetalLB's `component` (`controller` or `speaker`): the
/// binary at `/component`, also the entrypoint, as MetalLB's Dockerfiles
/// have it; the user is the manifest's (`runAsUser`), not the image's.
fn spec(component: &str, version: &str, binary: LayerEntry) -> ImageSpec {
    let labels = BTreeMap::from([
        (
            "org.opencontainers.image.source".to_string(),
            "https://github.com/metallb/metallb".to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            version.to_string(),
        ),
        (
            "org.opencontainers.image.title".to_string(),
            format!("metallb-{component} (built from the Go module proxy)"),
        ),
        (
            "org.opencontainers.image.licenses".to_string(),
            "Apache-2.0".to_string(),
        ),
    ]);
    let mut files = base_files();
    files.push(binary);
    ImageSpec {
        name: format!("quay.io/metallb/{component}"),
        tag: version.to_string(),
        entrypoint: vec![format!("/{component}")],
        user: None,
        env: vec![PATH_ENV.to_string()],
        labels,
        // Fixed: the bytes depend on the binaries only.
        created: "1970-01-01T00:00:00Z".to_string(),
        files,
    }
}

/// Builds (or takes from the cache) MetalLB's binaries and writes their
/// archives and `images.json` to `out` (default: `<images>/metallb`).
pub fn run(out: Option<PathBuf>) -> Result<()> {
    let out = out.unwrap_or_else(|| crate::image::default_out_dir().join(SUBDIR));
    let out = if out.is_absolute() {
        out
    } else {
        std::env::current_dir()?.join(out)
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let version = version()?;
    let mut records = Vec::new();
    for (component, binary) in [
        ("controller", controller_binary()?),
        ("speaker", speaker_binary()?),
    ] {
        records.push(write_one(&out, component, version, &binary)?);
    }
    write_atomically(
        &out.join("images.json"),
        &serde_json::to_vec_pretty(&records)?,
    )?;
    for r in &records {
        println!("{} {} {}", r.reference, r.digest, r.archive);
    }
    Ok(())
}

fn write_one(out: &Path, component: &str, version: &str, binary: &Path) -> Result<Record> {
    check_static(binary)?;
    let spec = spec(
        component,
        version,
        binary_entry(binary, &format!("/{component}"))?,
    );
    write_image(&spec, &out.join(format!("metallb-{component}.oci.tar")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci;

    #[test]
    fn images_are_named_as_metallbs_manifest_names_them() {
        let manifest_refs = [
            "quay.io/metallb/controller:v0.16.2",
            "quay.io/metallb/speaker:v0.16.2",
        ];
        for (component, want) in ["controller", "speaker"].into_iter().zip(manifest_refs) {
            let entry = LayerEntry::file(&format!("/{component}"), 0o755, vec![1]);
            let spec = spec(component, version().unwrap(), entry);
            assert_eq!(spec.reference(), want);
            assert_eq!(spec.entrypoint, [format!("/{component}")]);
            assert_eq!(spec.user, None, "the manifest's securityContext decides");
            assert!(
                spec.files
                    .iter()
                    .any(|f| f.path == component && f.mode == 0o755),
                "{component}: the binary at /{component}, executable"
            );
            assert_eq!(spec.labels["org.opencontainers.image.version"], "v0.16.2");
        }
    }

    #[test]
    fn the_archive_depends_on_the_binary_only() {
        let entry = |data: &[u8]| LayerEntry::file("/speaker", 0o755, data.to_vec());
        let a = oci::write_archive(&spec("speaker", "v0.16.2", entry(b"one"))).unwrap();
        let b = oci::write_archive(&spec("speaker", "v0.16.2", entry(b"one"))).unwrap();
        let c = oci::write_archive(&spec("speaker", "v0.16.2", entry(b"two"))).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_ne!(a.manifest_digest, c.manifest_digest);
    }
}
