//! MetalLB's module source (`go.universe.tf/metallb`), from the Go module proxy through
//! `go mod download` (cached in Go's module cache), the examples in it, and its controller
//! and speaker binaries, built from the proxy by `tests/k8s/build-metallb.sh` (cached by
//! version, so only the first run pays).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::tools::run_build_script;

/// The MetalLB release the migration is tested against.
pub const METALLB_MODULE: &str = "go.universe.tf/metallb@v0.16.2";

/// MetalLB's controller, built from the Go module proxy at [`METALLB_MODULE`]'s version
/// (frr-k8s shimmed, see the script), or taken from the cache.
pub fn controller_binary() -> Result<PathBuf> {
    built_binary("controller")
}

/// MetalLB's speaker (native BGP and L2 mode), built like [`controller_binary`].
pub fn speaker_binary() -> Result<PathBuf> {
    built_binary("speaker")
}

fn built_binary(name: &str) -> Result<PathBuf> {
    let (_, version) = METALLB_MODULE
        .split_once('@')
        .context("METALLB_MODULE has no version")?;
    let dir = run_build_script(
        "tests/k8s/build-metallb.sh",
        &[name],
        &[("FERROLB_METALLB_VERSION", version)],
    )?;
    let binary = dir.join(name);
    if !binary.exists() {
        bail!("{} does not exist after the build", binary.display());
    }
    Ok(binary)
}

/// The module's source directory (read-only, in Go's module cache).
pub fn module_dir() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| download().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn download() -> Result<PathBuf> {
    // Outside any module, so that `go` resolves the version from the proxy alone.
    let scratch = tempfile::tempdir()?;
    let go = ["go", "/usr/local/go/bin/go"]
        .into_iter()
        .find(|go| Command::new(go).arg("version").output().is_ok())
        .context("the go command is needed to fetch MetalLB's module source")?;
    let out = Command::new(go)
        .args(["mod", "download", "-json", METALLB_MODULE])
        .env("GOFLAGS", "-mod=mod")
        .current_dir(scratch.path())
        .output()
        .context("running go mod download")?;
    if !out.status.success() {
        bail!(
            "go mod download {METALLB_MODULE}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let dir = info["Dir"]
        .as_str()
        .context("go mod download gave no Dir")?;
    Ok(PathBuf::from(dir))
}

/// Every MetalLB example the migration is checked on, as (label, YAML): the files of
/// `configsamples/` and `configmaptocrs/testdata/`, and each YAML block of the documentation
/// (`website/content/**/*.md`) holding a `metallb.io` object or a ConfigMap, labelled
/// `path:line`.
pub fn examples() -> Result<Vec<(String, String)>> {
    let dir = module_dir()?;
    let mut examples = Vec::new();
    for sub in ["configsamples", "configmaptocrs/testdata"] {
        for file in files(&dir.join(sub), "yaml")? {
            let label = file.strip_prefix(&dir)?.display().to_string();
            examples.push((label, std::fs::read_to_string(&file)?));
        }
    }
    for file in files(&dir.join("website/content"), "md")? {
        let label = file.strip_prefix(&dir)?.display().to_string();
        let text = std::fs::read_to_string(&file)?;
        for (line, block) in yaml_blocks(&text) {
            if block.contains("apiVersion: metallb.io") || block.contains("kind: ConfigMap") {
                examples.push((format!("{label}:{line}"), block));
            }
        }
    }
    Ok(examples)
}

/// Files under `dir` (recursively) ending in `.ext`, sorted.
fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files(&path, ext)?);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The ```yaml (or unlabelled) fenced blocks of a markdown text, with the 1-based line of
/// their fence, dedented by the fence's indentation.
pub fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize, bool, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.take() {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    let yaml = matches!(lang.trim(), "" | "yaml" | "yml");
                    open = Some((index + 1, indent, yaml, String::new()));
                }
            }
            Some((start, fence_indent, yaml, mut body)) => {
                if trimmed.trim_end() == "```" {
                    if yaml {
                        blocks.push((start, body));
                    }
                } else {
                    body.push_str(line.get(fence_indent.min(indent)..).unwrap_or(""));
                    body.push('\n');
                    open = Some((start, fence_indent, yaml, body));
                }
            }
        }
    }
    blocks
}
