//! Writes single-layer OCI image archives, byte for byte reproducibly.
//!
//! One archive is an OCI image layout in a tar (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) plus a Docker-style `manifest.json` naming the same
//! blobs, so both OCI readers (skopeo, containerd, umoci) and Docker-archive
//! readers (`podman load`, older tools) accept it.
//!
//! Determinism: every tar entry (layer and archive) has mtime 0, uid/gid 0,
//! empty user and group names and a fixed mode; entries are sorted by path;
//! the gzip header has mtime 0, no file name and OS "unknown"; JSON keys come
//! out in a fixed order (structs and `BTreeMap`s). So the bytes depend only on
//! the file contents and the [`ImageSpec`].

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One entry of the image's only layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Path inside the image, relative (`etc/passwd`, no leading slash).
    pub path: String,
    /// Permission bits, including setuid/setgid/sticky (`0o1777`).
    pub mode: u32,
    /// `None` for a directory.
    pub contents: Option<Vec<u8>>,
}

impl LayerEntry {
    pub fn file(path: &str, mode: u32, contents: Vec<u8>) -> Self {
        Self {
            path: path.trim_start_matches('/').to_string(),
            mode,
            contents: Some(contents),
        }
    }
    pub fn dir(path: &str, mode: u32) -> Self {
        Self {
            path: path.trim_matches('/').to_string(),
            mode,
            contents: None,
        }
    }
}

/// What goes into one image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Repository, e.g. `ghcr.io/ferrolb/ferrolb-controller`.
    pub name: String,
    pub tag: String,
    pub entrypoint: Vec<String>,
    /// `uid:gid`; `None` leaves the runtime's default (root).
    pub user: Option<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 time recorded as the image's creation time.
    pub created: String,
    pub files: Vec<LayerEntry>,
}

impl ImageSpec {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// A written archive and the digests it holds.
#[derive(Debug, Clone)]
pub struct Archive {
    pub bytes: Vec<u8>,
    /// `sha256:…` of the manifest: the image's digest.
    pub manifest_digest: String,
    /// `sha256:…` of the config: the image ID containerd and podman show.
    pub config_digest: String,
    pub layer_digest: String,
    /// Bytes a registry stores for the image: layer + config + manifest.
    pub compressed_size: u64,
}

// ---- the JSON documents (field order is the serialised order) ----

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub config: RunConfig,
    pub rootfs: RootFs,
    pub history: Vec<History>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Env")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "WorkingDir")]
    pub working_dir: String,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct History {
    pub created: String,
    pub created_by: String,
}

/// One entry of Docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DockerManifest {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Path of a blob inside the archive, from its `sha256:…` digest.
pub fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// A tar of `entries` (sorted by path, directories end in `/`), deterministic.
pub fn deterministic_tar(entries: &[LayerEntry]) -> Result<Vec<u8>> {
    let mut sorted: Vec<&LayerEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for pair in sorted.windows(2) {
        if pair[0].path == pair[1].path {
            bail!("duplicate path {} in layer", pair[0].path);
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    for entry in sorted {
        if entry.path.is_empty() || entry.path.split('/').any(|c| c == ".." || c.is_empty()) {
            bail!("bad path {:?} in layer", entry.path);
        }
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("")?;
        header.set_groupname("")?;
        header.set_mode(entry.mode);
        match &entry.contents {
            Some(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, &entry.path, data.as_slice())
                    .with_context(|| format!("adding {}", entry.path))?;
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{}/", entry.path), std::io::empty())
                    .with_context(|| format!("adding {}/", entry.path))?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

/// Gzip with a fixed header (mtime 0, no name, OS unknown), best compression.
pub fn deterministic_gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// Builds the archive for `spec`.
pub fn write_archive(spec: &ImageSpec) -> Result<Archive> {
    let layer_tar = deterministic_tar(&spec.files)?;
    let diff_id = digest_of(&layer_tar);
    let layer = deterministic_gzip(&layer_tar)?;
    let layer_digest = digest_of(&layer);

    let config = to_json(&ImageConfig {
        created: spec.created.clone(),
        architecture: "amd64".into(),
        os: "linux".into(),
        config: RunConfig {
            user: spec.user.clone(),
            env: spec.env.clone(),
            entrypoint: spec.entrypoint.clone(),
            working_dir: "/".into(),
            labels: spec.labels.clone(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id.clone()],
        },
        history: vec![History {
            created: spec.created.clone(),
            created_by: "cargo xtask image".into(),
        }],
    })?;
    let config_digest = digest_of(&config);

    let manifest = to_json(&Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.into(),
        config: Descriptor {
            media_type: MEDIA_CONFIG.into(),
            digest: config_digest.clone(),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: vec![Descriptor {
            media_type: MEDIA_LAYER_GZIP.into(),
            digest: layer_digest.clone(),
            size: layer.len() as u64,
            annotations: BTreeMap::new(),
        }],
    })?;
    let manifest_digest = digest_of(&manifest);

    let index = to_json(&Index {
        schema_version: 2,
        media_type: MEDIA_INDEX.into(),
        manifests: vec![Descriptor {
            media_type: MEDIA_MANIFEST.into(),
            digest: manifest_digest.clone(),
            size: manifest.len() as u64,
            annotations: BTreeMap::from([
                ("io.containerd.image.name".to_string(), spec.reference()),
                (
                    "org.opencontainers.image.ref.name".to_string(),
                    spec.tag.clone(),
                ),
            ]),
        }],
    })?;
    let docker_manifest = to_json(&vec![DockerManifest {
        config: blob_path(&config_digest),
        repo_tags: vec![spec.reference()],
        layers: vec![blob_path(&layer_digest)],
    }])?;

    let mut entries = vec![
        LayerEntry::dir("blobs", 0o755),
        LayerEntry::dir("blobs/sha256", 0o755),
        LayerEntry::file(
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        LayerEntry::file("index.json", 0o644, index),
        LayerEntry::file("manifest.json", 0o644, docker_manifest),
    ];
    let compressed_size = (layer.len() + config.len() + manifest.len()) as u64;
    for (digest, blob) in [
        (&layer_digest, layer),
        (&config_digest, config),
        (&manifest_digest, manifest),
    ] {
        entries.push(LayerEntry::file(&blob_path(digest), 0o644, blob));
    }
    Ok(Archive {
        bytes: deterministic_tar(&entries)?,
        manifest_digest,
        config_digest,
        layer_digest,
        compressed_size,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;

    pub(crate) fn spec(binary: &[u8]) -> ImageSpec {
        ImageSpec {
            name: "ghcr.io/ferrolb/ferrolb-test".into(),
            tag: "0.1.0".into(),
            entrypoint: vec!["/ferrolb-test".into()],
            user: Some("65532:65532".into()),
            env: vec!["PATH=/bin".into()],
            labels: BTreeMap::from([("org.opencontainers.image.version".into(), "0.1.0".into())]),
            created: "1970-01-01T00:00:00Z".into(),
            files: vec![
                LayerEntry::dir("tmp", 0o1777),
                LayerEntry::file("ferrolb-test", 0o755, binary.to_vec()),
                LayerEntry::dir("etc", 0o755),
                LayerEntry::file("etc/passwd", 0o644, b"root:x:0:0::/:\n".to_vec()),
            ],
        }
    }

    /// One entry of a tar as read back.
    pub(crate) struct Entry {
        pub path: String,
        pub mode: u32,
        pub mtime: u64,
        pub uid: u64,
        pub gid: u64,
        pub data: Vec<u8>,
    }

    /// Every entry of a tar, in order.
    pub(crate) fn untar(bytes: &[u8]) -> Vec<Entry> {
        let mut archive = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push(Entry {
                path,
                mode: h.mode().unwrap(),
                mtime: h.mtime().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                data,
            });
        }
        out
    }

    fn file<'a>(entries: &'a [Entry], path: &str) -> &'a [u8] {
        &entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} missing"))
            .data
    }

    #[test]
    fn same_inputs_give_the_same_bytes() {
        let a = write_archive(&spec(b"\x7fELF binary")).unwrap();
        let b = write_archive(&spec(b"\x7fELF binary")).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let c = write_archive(&spec(b"\x7fELF other")).unwrap();
        assert_ne!(a.manifest_digest, c.manifest_digest);
        // The order files are given in does not matter.
        let mut reversed = spec(b"\x7fELF binary");
        reversed.files.reverse();
        assert_eq!(write_archive(&reversed).unwrap().bytes, a.bytes);
    }

    #[test]
    fn gzip_header_is_fixed() {
        let gz = deterministic_gzip(b"hello").unwrap();
        // magic, deflate, flags (no FNAME), mtime 0, xfl, OS 255
        assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
        assert_eq!(gz[9], 255);
    }

    #[test]
    fn json_documents_reference_blobs_that_match_their_digests() {
        let archive = write_archive(&spec(b"bin")).unwrap();
        let entries = untar(&archive.bytes);
        // Every blob is stored under its own sha256.
        let blobs: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.path.starts_with("blobs/sha256/") && !e.path.ends_with('/'))
            .collect();
        assert_eq!(blobs.len(), 3);
        for e in blobs {
            let name = e.path.trim_start_matches("blobs/sha256/");
            assert_eq!(name, sha256_hex(&e.data), "{}", e.path);
        }
        let layout: serde_json::Value =
            serde_json::from_slice(file(&entries, "oci-layout")).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");

        let index: Index = serde_json::from_slice(file(&entries, "index.json")).unwrap();
        assert_eq!(index.schema_version, 2);
        assert_eq!(index.manifests.len(), 1);
        let m = &index.manifests[0];
        assert_eq!(m.media_type, MEDIA_MANIFEST);
        assert_eq!(m.digest, archive.manifest_digest);
        assert_eq!(m.annotations["org.opencontainers.image.ref.name"], "0.1.0");
        assert_eq!(
            m.annotations["io.containerd.image.name"],
            "ghcr.io/ferrolb/ferrolb-test:0.1.0"
        );
        let manifest_bytes = file(&entries, &blob_path(&m.digest));
        assert_eq!(manifest_bytes.len() as u64, m.size);

        let manifest: Manifest = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest.config.media_type, MEDIA_CONFIG);
        let config_bytes = file(&entries, &blob_path(&manifest.config.digest));
        assert_eq!(config_bytes.len() as u64, manifest.config.size);
        assert_eq!(manifest.layers.len(), 1);
        assert_eq!(manifest.layers[0].media_type, MEDIA_LAYER_GZIP);
        let layer = file(&entries, &blob_path(&manifest.layers[0].digest));
        assert_eq!(layer.len() as u64, manifest.layers[0].size);

        let config: ImageConfig = serde_json::from_slice(config_bytes).unwrap();
        assert_eq!(
            (config.architecture.as_str(), config.os.as_str()),
            ("amd64", "linux")
        );
        assert_eq!(config.config.user.as_deref(), Some("65532:65532"));
        assert_eq!(config.config.entrypoint, ["/ferrolb-test"]);
        // diff_id is the sha256 of the uncompressed layer.
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(layer)
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(config.rootfs.diff_ids, [digest_of(&tar_bytes)]);

        let docker: Vec<DockerManifest> =
            serde_json::from_slice(file(&entries, "manifest.json")).unwrap();
        assert_eq!(docker.len(), 1);
        assert_eq!(docker[0].repo_tags, ["ghcr.io/ferrolb/ferrolb-test:0.1.0"]);
        assert_eq!(docker[0].config, blob_path(&manifest.config.digest));
        assert_eq!(docker[0].layers, [blob_path(&manifest.layers[0].digest)]);

        assert_eq!(
            archive.compressed_size as usize,
            layer.len() + config_bytes.len() + manifest_bytes.len()
        );
    }

    #[test]
    fn archive_and_layer_entries_are_sorted_zeroed_and_exact() {
        let archive = write_archive(&spec(b"bin")).unwrap();
        let outer = untar(&archive.bytes);
        let paths: Vec<&str> = outer.iter().map(|e| e.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert!(
            outer
                .iter()
                .all(|e| e.mtime == 0 && e.uid == 0 && e.gid == 0)
        );

        let layer_path = blob_path(&archive.layer_digest);
        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(file(&outer, &layer_path))
            .read_to_end(&mut layer_tar)
            .unwrap();
        let layer = untar(&layer_tar);
        let got: Vec<(&str, u32)> = layer.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(
            got,
            [
                ("etc/", 0o755),
                ("etc/passwd", 0o644),
                ("ferrolb-test", 0o755),
                ("tmp/", 0o1777)
            ]
        );
        assert!(
            layer
                .iter()
                .all(|e| e.mtime == 0 && e.uid == 0 && e.gid == 0)
        );
        assert_eq!(file(&layer, "ferrolb-test"), b"bin");
    }

    #[test]
    fn rejects_duplicate_and_escaping_paths() {
        let mut s = spec(b"x");
        s.files.push(LayerEntry::file("etc/passwd", 0o644, vec![]));
        assert!(write_archive(&s).is_err());
        let mut s = spec(b"x");
        s.files.push(LayerEntry::file("../x", 0o644, vec![]));
        assert!(write_archive(&s).is_err());
    }
}
