//! Model directories: `manifest.json` plus shard files, written so that a reader never sees a
//! half-written model (everything goes to a temporary directory that is renamed into place),
//! and read back with every shard validated against the manifest and the core's checks.

use anyhow::{bail, ensure, Context as _, Result};
use edgerec::writer::{write_model, write_paged_model, ModelSpec};
use edgerec::Engine;
use std::path::Path;

pub use edgerec_contract::manifest::{Manifest, ShardEntry};

pub use edgerec_contract::keys::MANIFEST_FILE as MANIFEST;

/// The shard's own verified checksum (XXH3-64 from its header), as hex.
fn hex_checksum(shard: &edgerec::Shard) -> String {
    ShardEntry::checksum_hex(shard.header().checksum)
}

/// Room left under the edge budget when sequence tables are trimmed, for what the estimate of
/// the bytes saved leaves out: section padding, and a shard header if the split moves.
const BUDGET_SLACK_BYTES: u64 = 64 * 1024;

/// The largest per-item cap on sequence-table entries (each item keeps its strongest `cap`
/// entries per table) that removes at least `excess` bytes, given each table's bytes per entry;
/// `None` when emptying the tables would not remove enough.
fn sequence_cap(spec: &ModelSpec, entry_bytes: [u64; 2], excess: u64) -> Option<usize> {
    let saved = |cap: usize| -> u64 {
        spec.seq
            .iter()
            .zip(entry_bytes)
            .map(|(table, bytes)| {
                bytes
                    * table
                        .iter()
                        .map(|list| list.len().saturating_sub(cap) as u64)
                        .sum::<u64>()
            })
            .sum()
    };
    if saved(0) < excess {
        return None;
    }
    // `saved` falls as the cap grows; keep `saved(lo) >= excess`.
    let (mut lo, mut hi) = (
        0,
        spec.seq.iter().flatten().map(Vec::len).max().unwrap_or(0),
    );
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if saved(mid) >= excess {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Packs `spec` into shards that fit the edge's budget (`EDGE_MODEL_BUDGET_BYTES`) where
/// that can be done by trimming its sequence tables: each item then keeps its strongest
/// entries (the lists are sorted by weight) up to one cap for every item and table. In a
/// trained model these tables are most of the bytes (100 neighbours per item), so without this
/// a growing catalog would train a model that `publish` refuses. Returns the shards and the cap,
/// if one was applied. A model that still does not fit is returned as is, for `publish` to
/// refuse with the budget in its message.
pub fn pack_for_edge(
    spec: &mut ModelSpec,
    model_id: u64,
    max_shard_bytes: u64,
) -> Result<(Vec<Vec<u8>>, Option<usize>)> {
    let budget = edgerec_contract::manifest::EDGE_MODEL_BUDGET_BYTES;
    pack_within(spec, model_id, max_shard_bytes, budget)
}

/// [`pack_for_edge`] under any budget.
fn pack_within(
    spec: &mut ModelSpec,
    model_id: u64,
    max_shard_bytes: u64,
    budget: u64,
) -> Result<(Vec<Vec<u8>>, Option<usize>)> {
    let shards = write_model(spec, model_id, max_shard_bytes).context("packing the model")?;
    let total: u64 = shards.iter().map(|s| s.len() as u64).sum();
    if total <= budget {
        return Ok((shards, None));
    }
    let mut entry_bytes = [0u64; 2];
    let first = edgerec::Shard::from_bytes(&shards[0]).context("re-reading a written shard")?;
    for (bytes, table) in entry_bytes.iter_mut().zip(first.view().seq) {
        *bytes = table.map_or(0, |t| t.entry_bytes() as u64);
    }
    let Some(cap) = sequence_cap(spec, entry_bytes, total - budget + BUDGET_SLACK_BYTES) else {
        return Ok((shards, None));
    };
    for list in spec.seq.iter_mut().flatten() {
        list.truncate(cap);
    }
    let shards = write_model(spec, model_id, max_shard_bytes).context("packing the model")?;
    let trimmed: u64 = shards.iter().map(|s| s.len() as u64).sum();
    tracing::warn!(
        before = total,
        after = trimmed,
        budget,
        cap,
        "the model was over the edge budget: each item keeps its {cap} strongest neighbours and transitions"
    );
    Ok((shards, Some(cap)))
}

/// Writes `spec` as a model directory at `out` and returns its manifest. Its sequence tables
/// are trimmed first if the model would not fit an edge isolate ([`pack_for_edge`]); the cap
/// is then recorded in the manifest's `info` as `sequence_entries_per_item`.
pub fn write_dir(
    spec: &mut ModelSpec,
    out: &Path,
    popular: Vec<String>,
    info: serde_json::Value,
    max_shard_bytes: u64,
) -> Result<Manifest> {
    write_dir_paged(spec, out, popular, info, max_shard_bytes, None)
}

/// [`write_dir`], or with `page_items`, the model paged (shard format 7): index shards (the
/// manifest's `shards`) and pages of at most that many items (its `pages`), which the edge
/// reads as requests need them. A paged model's sequence tables are not trimmed: only its index
/// has to fit an isolate. It needs int8 rows, and always carries first-pass codes.
pub fn write_dir_paged(
    spec: &mut ModelSpec,
    out: &Path,
    popular: Vec<String>,
    mut info: serde_json::Value,
    max_shard_bytes: u64,
    page_items: Option<usize>,
) -> Result<Manifest> {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now = since_epoch.as_secs() as i64;
    let seed =
        since_epoch.as_nanos() as u64 ^ (spec.ids.len() as u64) << 32 ^ std::process::id() as u64;
    let model_id = edgerec::math::SplitMix64::new(seed).next_u64();
    let (shards, pages) = match page_items {
        None => {
            let (shards, cap) = pack_for_edge(spec, model_id, max_shard_bytes)?;
            if let Some(cap) = cap {
                if !info.is_object() {
                    info = serde_json::json!({});
                }
                info["sequence_entries_per_item"] = cap.into();
            }
            (shards, Vec::new())
        }
        Some(items) => {
            spec.first_pass = true;
            let paged = write_paged_model(spec, model_id, max_shard_bytes, items)
                .context("packing the model in pages")?;
            (paged.index, paged.pages)
        }
    };
    let meta = spec.meta.as_ref().context("model spec has no meta")?;
    // Milliseconds, so versions published within one second still sort by time.
    let version = format!("v{}-{:08x}", since_epoch.as_millis(), model_id >> 32);
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
    let write_files = |files: &[Vec<u8>], name: fn(usize) -> String| -> Result<Vec<ShardEntry>> {
        let mut entries = Vec::with_capacity(files.len());
        let mut start = 0u32;
        for (i, bytes) in files.iter().enumerate() {
            let shard = edgerec::Shard::from_bytes(bytes).context("re-reading a written shard")?;
            let count = shard.header().item_count;
            let file = name(i);
            write_durably(&tmp.join(&file), bytes)?;
            entries.push(ShardEntry {
                file,
                bytes: bytes.len() as u64,
                checksum: hex_checksum(&shard),
                items: [start, start + count],
            });
            start += count;
        }
        Ok(entries)
    };
    let entries = write_files(&shards, edgerec_contract::keys::shard_file)?;
    let page_entries = write_files(&pages, edgerec_contract::keys::page_file)?;
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
        pages: page_entries,
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

/// A model directory's manifest and files, validated.
pub struct ModelFiles {
    pub manifest: Manifest,
    /// The shards, or a paged model's index shards, in the manifest's order.
    pub shards: Vec<Vec<u8>>,
    /// A paged model's pages, in the manifest's order (empty for a model of whole shards).
    pub pages: Vec<Vec<u8>>,
}

/// Reads a manifest and its shards (and pages), checking sizes and checksums against the
/// manifest, then validating every file in the core. Errors name the file.
pub fn read_dir(dir: &Path) -> Result<ModelFiles> {
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
    let read = |entries: &[ShardEntry]| -> Result<Vec<Vec<u8>>> {
        let mut files = Vec::with_capacity(entries.len());
        for s in entries {
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
            files.push(bytes);
        }
        Ok(files)
    };
    let shards = read(&manifest.shards)?;
    let pages = read(&manifest.pages)?;
    Ok(ModelFiles {
        manifest,
        shards,
        pages,
    })
}

/// An engine from a model's shards, with every page of a paged model loaded (central-sync
/// ranks whole catalogs: evaluation, the quality gate).
pub fn engine_of(shards: &[Vec<u8>], pages: &[Vec<u8>], what: &str) -> Result<Engine> {
    let mut engine = Engine::from_bytes(shards.iter().map(Vec::as_slice))
        .with_context(|| format!("{what}: shards do not form a model"))?;
    for (i, bytes) in pages.iter().enumerate() {
        edgerec::Shard::from_bytes(bytes)
            .and_then(|page| engine.add_page(page))
            .with_context(|| format!("{what}: page {i}"))?;
    }
    Ok(engine)
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
        entry.names_checksum(shard.header().checksum),
        "{name}: checksum differs from the manifest"
    );
    Ok(shard)
}

/// Loads a model directory into an engine.
pub fn load_engine(dir: &Path) -> Result<(Manifest, Engine)> {
    let files = read_dir(dir)?;
    let engine = engine_of(&files.shards, &files.pages, &dir.display().to_string())?;
    Ok((files.manifest, engine))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec::testing::Synthetic;

    fn total(shards: &[Vec<u8>]) -> u64 {
        shards.iter().map(|s| s.len() as u64).sum()
    }

    #[test]
    fn the_cap_is_the_largest_that_saves_enough() {
        let mut spec = ModelSpec::default();
        // Lists of 10, 4 and 1 entries in the first table, 6 in the second.
        let list = |n: usize| vec![(0u32, 1.0f32); n];
        spec.seq = [vec![list(10), list(4), list(1)], vec![list(6)]];
        // Cap 5 saves 5 + 1 = 6 entries; cap 4 saves 6 + 2 = 8.
        assert_eq!(sequence_cap(&spec, [1, 1], 6), Some(5));
        assert_eq!(sequence_cap(&spec, [1, 1], 7), Some(4));
        assert_eq!(sequence_cap(&spec, [4, 2], 4 * 6 + 2), Some(4));
        assert_eq!(sequence_cap(&spec, [1, 1], 0), Some(10));
        assert_eq!(sequence_cap(&spec, [1, 1], 21), Some(0));
        assert_eq!(sequence_cap(&spec, [1, 1], 22), None);
    }

    #[test]
    fn a_model_over_the_budget_keeps_each_items_strongest_entries() {
        let syn = Synthetic {
            items: 3000,
            neighbours: 40,
            ..Synthetic::default()
        };
        let mut spec = syn.spec();
        for list in spec.seq[0].iter_mut() {
            for (s, entry) in list.iter_mut().enumerate() {
                entry.1 = 1.0 / (s + 1) as f32; // strongest first, as training sorts them
            }
        }
        let original = spec.seq.clone();
        let (full, cap) = pack_within(&mut spec.clone(), 1, MAX_SHARD, u64::MAX).unwrap();
        assert_eq!(cap, None);
        let budget = total(&full) - 100_000;
        let (shards, cap) = pack_within(&mut spec, 1, MAX_SHARD, budget).unwrap();
        let cap = cap.expect("trimmed");
        assert!(cap > 0 && cap < 39, "cap {cap}");
        assert!(total(&shards) <= budget, "{} > {budget}", total(&shards));
        for (table, before) in spec.seq.iter().zip(&original) {
            for (list, was) in table.iter().zip(before) {
                assert_eq!(list.as_slice(), &was[..was.len().min(cap)]);
            }
        }
        // The trimmed model loads, and one more entry per item would not have fitted.
        let engine = Engine::from_bytes(shards.iter().map(|s| s.as_slice())).unwrap();
        assert_eq!(engine.item_count(), 3000);
        let mut roomier = syn.spec();
        roomier.seq = original.clone();
        for list in roomier.seq.iter_mut().flatten() {
            list.truncate(cap + 1);
        }
        let wider = write_model(&roomier, 1, MAX_SHARD).unwrap();
        assert!(total(&wider) + BUDGET_SLACK_BYTES > budget);

        // Rows alone over the budget: nothing to trim that would help; returned as is.
        let mut spec = syn.spec();
        let (shards, cap) = pack_within(&mut spec, 1, MAX_SHARD, 10_000).unwrap();
        assert_eq!(cap, None);
        assert_eq!(spec.seq, syn.spec().seq);
        assert_eq!(total(&shards), total(&full_of(&syn)));
    }

    #[test]
    fn a_paged_model_directory_reads_back_and_ranks_as_the_whole_one() {
        let syn = Synthetic {
            items: 3000,
            clusters: 12,
            first_pass: true,
            ..Synthetic::default()
        };
        let tmp = tempfile::tempdir().unwrap();
        let (paged_dir, whole_dir) = (tmp.path().join("paged"), tmp.path().join("whole"));
        let paged = write_dir_paged(
            &mut syn.spec(),
            &paged_dir,
            vec![],
            serde_json::Value::Null,
            MAX_SHARD,
            Some(250),
        )
        .unwrap();
        write_dir(
            &mut syn.spec(),
            &whole_dir,
            vec![],
            serde_json::Value::Null,
            MAX_SHARD,
        )
        .unwrap();
        assert!(
            paged.is_paged() && paged.pages.len() >= 12,
            "{}",
            paged.pages.len()
        );
        assert_eq!(paged.pages[0].file, "page-0.bin");
        assert_eq!(paged.pages.last().unwrap().items[1], 3000);
        // Every page is loaded for central-sync's own ranking (evaluation, the quality gate).
        let (_, mut engine) = load_engine(&paged_dir).unwrap();
        let (_, mut whole) = load_engine(&whole_dir).unwrap();
        assert_eq!(engine.loaded_pages().len(), paged.pages.len());
        assert!(engine.set_first_pass(Some(256)) && whole.set_first_pass(Some(256)));
        for i in 0..20 {
            let mut session = edgerec::Session::new();
            session.observe(&format!("item-{}", i * 37), edgerec::EventType::Click, 1);
            let request = edgerec::Request {
                k: 10,
                ..edgerec::Request::default()
            };
            let ids = |e: &Engine| -> Vec<String> {
                e.recommend(&session, &request)
                    .iter()
                    .map(|r| e.item_id(r.index).unwrap().to_string())
                    .collect()
            };
            assert_eq!(ids(&engine), ids(&whole), "session {i}");
        }
        // A page that does not match its manifest entry is refused by name.
        std::fs::write(paged_dir.join("page-3.bin"), b"short").unwrap();
        let err = format!("{:#}", read_dir(&paged_dir).err().unwrap());
        assert!(err.contains("page-3.bin"), "{err}");
    }

    const MAX_SHARD: u64 = edgerec::format::MAX_SHARD_BYTES;

    fn full_of(syn: &Synthetic) -> Vec<Vec<u8>> {
        write_model(&syn.spec(), 1, MAX_SHARD).unwrap()
    }
}
