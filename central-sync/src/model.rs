//! Model directories: `manifest.json` plus shard files, written so that a reader never sees a
//! half-written model (everything goes to a temporary directory that is renamed into place),
//! and read back with every shard validated against the manifest and the core's checks.

use anyhow::{bail, ensure, Context as _, Result};
use edgerec::writer::{write_model, ModelSpec};
use edgerec::Engine;
use std::path::Path;

pub use edgerec_contract::manifest::{Manifest, ShardEntry};

pub use edgerec_contract::keys::MANIFEST_FILE as MANIFEST;

/// The shard's own verified checksum (XXH3-64 from its header), as hex.
fn hex_checksum(shard: &edgerec::Shard) -> String {
    format!("{:016x}", shard.header().checksum)
}

/// Writes `spec` as a model directory at `out` and returns its manifest.
pub fn write_dir(
    spec: &ModelSpec,
    out: &Path,
    popular: Vec<String>,
    info: serde_json::Value,
    max_shard_bytes: u64,
) -> Result<Manifest> {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now = since_epoch.as_secs() as i64;
    let seed =
        since_epoch.as_nanos() as u64 ^ (spec.ids.len() as u64) << 32 ^ std::process::id() as u64;
    let model_id = edgerec::math::SplitMix64::new(seed).next_u64();
    let shards = write_model(spec, model_id, max_shard_bytes).context("packing the model")?;
    let meta = spec.meta.as_ref().context("model spec has no meta")?;
    // Milliseconds, so versions published within one second still sort by time.
    let version = format!("v{}-{:08x}", since_epoch.as_millis(), model_id >> 32);
    let mut entries = Vec::new();
    let mut start = 0u32;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    // Built beside `out` (same filesystem, so the final rename is atomic) and kept: it becomes
    // the model directory.
    let tmp = tempfile::Builder::new()
        .prefix(".edgerec-tmp-")
        .tempdir_in(parent)?
        .keep();
    for (i, bytes) in shards.iter().enumerate() {
        let shard = edgerec::Shard::from_bytes(bytes).context("re-reading a written shard")?;
        let count = shard.header().item_count;
        let file = format!("shard-{i}.bin");
        write_durably(&tmp.join(&file), bytes)?;
        entries.push(ShardEntry {
            file,
            bytes: bytes.len() as u64,
            checksum: hex_checksum(&shard),
            items: [start, start + count],
        });
        start += count;
    }
    let manifest = Manifest {
        format: edgerec_contract::manifest::FORMAT.into(),
        format_version: u32::from(edgerec::format::VERSION),
        version,
        model_id: format!("{model_id:016x}"),
        created_at: now,
        items: spec.ids.len() as u32,
        dim: meta.dim,
        dtype: match meta.dtype {
            edgerec::Dtype::I8 => "i8",
            edgerec::Dtype::F16 => "f16",
            edgerec::Dtype::F32 => "f32",
        }
        .into(),
        shards: entries,
        popular,
        info,
    };
    write_durably(&tmp.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)?;
    sync_dir(&tmp)?;
    if out.exists() {
        let old = parent.join(format!(".old-{}", manifest.version));
        std::fs::rename(out, &old)
            .with_context(|| format!("moving the old {} aside", out.display()))?;
        std::fs::rename(&tmp, out)?;
        std::fs::remove_dir_all(&old).ok();
    } else {
        std::fs::rename(&tmp, out)?;
    }
    sync_dir(parent)?;
    Ok(manifest)
}

/// Writes a file and flushes it to disk before returning: the directory is renamed into place
/// next, and a rename that reaches the disk before the data would leave a complete-looking
/// model with empty or torn files after a power loss.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()
        .with_context(|| format!("cannot flush {}", path.display()))?;
    Ok(())
}

/// Flushes a directory's entries (the files created in it, a rename into it).
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush directory {}", dir.display()))
}

/// Reads a manifest and its shards, checking sizes and checksums against the manifest, then
/// validating every shard in the core. Errors name the file.
pub fn read_dir(dir: &Path) -> Result<(Manifest, Vec<Vec<u8>>)> {
    let mpath = dir.join(MANIFEST);
    let text = std::fs::read(&mpath).with_context(|| {
        format!(
            "cannot read {} (is {} a model directory?)",
            mpath.display(),
            dir.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a valid manifest", mpath.display()))?;
    ensure!(
        manifest.format == edgerec_contract::manifest::FORMAT,
        "{}: format is {:?}, not {:?}",
        mpath.display(),
        manifest.format,
        edgerec_contract::manifest::FORMAT
    );
    ensure!(
        !manifest.shards.is_empty(),
        "{}: lists no shards",
        mpath.display()
    );
    let mut shards = Vec::new();
    for s in &manifest.shards {
        if s.file.contains('/') || s.file.contains("..") {
            bail!(
                "{}: shard file name {:?} is not a plain file name",
                mpath.display(),
                s.file
            );
        }
        let path = dir.join(&s.file);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read shard {}", path.display()))?;
        check_shard(s, &bytes, &path.display().to_string())?;
        shards.push(bytes);
    }
    Ok((manifest, shards))
}

/// Checks one shard's bytes against its manifest entry (size, the core's full validation,
/// checksum) and returns it parsed. `name` says where the bytes came from, for the errors.
pub fn check_shard(entry: &ShardEntry, bytes: &[u8], name: &str) -> Result<edgerec::Shard> {
    ensure!(
        bytes.len() as u64 == entry.bytes,
        "{name}: {} bytes, the manifest says {} (partial file?)",
        bytes.len(),
        entry.bytes
    );
    let shard = edgerec::Shard::from_bytes(bytes).with_context(|| format!("{name} is corrupt"))?;
    ensure!(
        hex_checksum(&shard) == entry.checksum,
        "{name}: checksum differs from the manifest"
    );
    Ok(shard)
}

/// Loads a model directory into an engine.
pub fn load_engine(dir: &Path) -> Result<(Manifest, Engine)> {
    let (manifest, shards) = read_dir(dir)?;
    let engine = Engine::from_bytes(shards.iter().map(Vec::as_slice))
        .with_context(|| format!("{}: shards do not form a model", dir.display()))?;
    Ok((manifest, engine))
}
