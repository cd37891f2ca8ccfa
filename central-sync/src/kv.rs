//! Publishing models to key-value stores the edge reads, atomically from the edge's point of
//! view: shards and manifest under `models/<version>/…` first, then the pointer
//! `models/current` last. Old versions stay for rollback and are then collected.
//!
//! Three targets share one small trait: a directory (`dir:PATH`, one file per key), wrangler's
//! local KV (`local`, what `wrangler dev` serves), and Cloudflare's KV REST API (`cloudflare`,
//! bulk writes with retries and backoff; credentials from the environment).

use crate::model::{self, Manifest};
use anyhow::{bail, ensure, Context as _, Result};
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edgerec_contract::keys;
pub use edgerec_contract::keys::{CURRENT, FALLBACK};
use edgerec_contract::pointer::Pointer;

/// The operations publishing needs from a key-value store.
pub trait Kv {
    fn put_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<()>;
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>>;
    fn list(&mut self, prefix: &str) -> Result<Vec<String>>;
    fn delete_many(&mut self, keys: &[String]) -> Result<()>;
}

/// Parses `local`, `cloudflare` or `dir:PATH`.
pub fn open(target: &str) -> Result<Box<dyn Kv>> {
    if let Some(path) = target.strip_prefix("dir:") {
        ensure!(!path.is_empty(), "dir: needs a path, e.g. dir:/tmp/kv");
        return Ok(Box::new(DirKv {
            root: PathBuf::from(path),
        }));
    }
    match target {
        "local" => Ok(Box::new(WranglerLocal::from_env())),
        "cloudflare" => Ok(Box::new(Cloudflare::from_env()?)),
        other => bail!("unknown target {other:?}: use local, cloudflare or dir:PATH"),
    }
}

/// One file per key under a root directory; each write goes to a temporary file renamed into
/// place, so a reader sees the old or the new value, never half of one.
pub struct DirKv {
    pub root: PathBuf,
}

impl DirKv {
    fn path(&self, key: &str) -> Result<PathBuf> {
        ensure!(
            !key.split('/')
                .any(|p| p.is_empty() || p == "." || p == ".."),
            "bad key {key:?}"
        );
        Ok(self.root.join(key))
    }
}

impl Kv for DirKv {
    fn put_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        for (key, value) in entries {
            let path = self.path(key)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("edgerec-tmp");
            std::fs::write(&tmp, value).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(key)?) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<String>> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Ok(());
            };
            for e in entries {
                let p = e?.path();
                if p.is_dir() {
                    walk(root, &p, out)?;
                } else if p.extension().is_none_or(|x| x != "edgerec-tmp") {
                    if let Ok(rel) = p.strip_prefix(root) {
                        out.push(rel.to_string_lossy().replace('\\', "/"));
                    }
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out)?;
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<()> {
        for key in keys {
            let path = self.path(key)?;
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(dir) = path.parent() {
                std::fs::remove_dir(dir).ok(); // only succeeds once the version's folder is empty
            }
        }
        Ok(())
    }
}

/// wrangler's local KV (the store `wrangler dev` reads), driven through the wrangler CLI from
/// the directory holding wrangler.toml.
pub struct WranglerLocal {
    wrangler: String,
    binding: String,
    cwd: PathBuf,
}

impl WranglerLocal {
    fn from_env() -> WranglerLocal {
        WranglerLocal {
            wrangler: std::env::var("WRANGLER").unwrap_or_else(|_| "wrangler".into()),
            binding: std::env::var("EDGEREC_KV_BINDING").unwrap_or_else(|_| "MODELS".into()),
            cwd: std::env::var("EDGEREC_WRANGLER_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    fn run(&self, args: &[&str]) -> Result<Vec<u8>> {
        let out = std::process::Command::new(&self.wrangler)
            .args(args)
            .args(["--binding", &self.binding, "--local"])
            .current_dir(&self.cwd)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| {
                format!(
                    "running {} (is wrangler installed? run `make setup`)",
                    self.wrangler
                )
            })?;
        if !out.status.success() {
            bail!(
                "wrangler {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }

    fn bulk_file(&self, body: &serde_json::Value) -> Result<tempfile::NamedTempFile> {
        let mut f = tempfile::Builder::new()
            .prefix("edgerec-bulk")
            .suffix(".json")
            .tempfile()?;
        std::io::Write::write_all(&mut f, &serde_json::to_vec(body)?)?;
        Ok(f)
    }
}

fn bulk_json<'a>(entries: impl Iterator<Item = &'a (String, Vec<u8>)>) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::Value::Array(
        entries
            .map(|(k, v)| serde_json::json!({"key": k, "value": b64.encode(v), "base64": true}))
            .collect(),
    )
}

impl Kv for WranglerLocal {
    fn put_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        // One `kv key put --path` per value: wrangler's bulk put stores base64 values as text
        // in local mode, which corrupts binary shards (seen with wrangler 4.86).
        for (key, value) in entries {
            let mut f = tempfile::Builder::new()
                .prefix("edgerec-value")
                .tempfile()?;
            std::io::Write::write_all(&mut f, value)?;
            self.run(&[
                "kv",
                "key",
                "put",
                key,
                "--path",
                &f.path().to_string_lossy(),
            ])?;
        }
        Ok(())
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let keys = self.list(key)?;
        if !keys.iter().any(|k| k == key) {
            return Ok(None);
        }
        Ok(Some(self.run(&["kv", "key", "get", key])?))
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<String>> {
        let out = self.run(&["kv", "key", "list", "--prefix", prefix])?;
        let v: Vec<serde_json::Value> =
            serde_json::from_slice(&out).context("parsing `wrangler kv key list` output")?;
        let mut keys: Vec<String> = v
            .iter()
            .filter_map(|x| x["name"].as_str().map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let f = self.bulk_file(&serde_json::json!(keys))?;
        self.run(&[
            "kv",
            "bulk",
            "delete",
            &f.path().to_string_lossy(),
            "--force",
        ])?;
        Ok(())
    }
}

/// Cloudflare's Workers KV REST API (v4). Credentials and ids come from the environment:
/// `CLOUDFLARE_API_TOKEN`, `CLOUDFLARE_ACCOUNT_ID`, `EDGEREC_KV_NAMESPACE_ID`;
/// `CLOUDFLARE_API_BASE_URL` overrides the endpoint (tests point it at a local server) and
/// `EDGEREC_KV_TIMEOUT_SECONDS` the per-request timeout (120 s).
pub struct Cloudflare {
    base: String,
    token: String,
    agent: ureq::Agent,
    max_attempts: u32,
}

/// Cloudflare accepts at most 10,000 pairs and 100 MB per bulk write; stay well under.
const BULK_MAX_BYTES: usize = 64 * 1024 * 1024;
const BULK_MAX_PAIRS: usize = 10_000;

impl Cloudflare {
    fn from_env() -> Result<Cloudflare> {
        let var = |k: &str| {
            std::env::var(k).with_context(|| format!("{k} is not set (needed for --to cloudflare)"))
        };
        let api = std::env::var("CLOUDFLARE_API_BASE_URL")
            .unwrap_or_else(|_| "https://api.cloudflare.com/client/v4".into());
        let (account, namespace) = (
            var("CLOUDFLARE_ACCOUNT_ID")?,
            var("EDGEREC_KV_NAMESPACE_ID")?,
        );
        Ok(Cloudflare {
            base: format!(
                "{}/accounts/{account}/storage/kv/namespaces/{namespace}",
                api.trim_end_matches('/')
            ),
            token: var("CLOUDFLARE_API_TOKEN")?,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(
                    std::env::var("EDGEREC_KV_TIMEOUT_SECONDS")
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(120),
                ))
                .build(),
            max_attempts: 5,
        })
    }

    /// Sends a request, retrying 429, 5xx and transport errors with exponential backoff (or the
    /// server's Retry-After). Returns the response, or None for 404.
    fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<ureq::Response>> {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=self.max_attempts {
            let req = self
                .agent
                .request(method, url)
                .set("Authorization", &format!("Bearer {}", self.token));
            let result = match body {
                Some(b) => req
                    .set("Content-Type", "application/json")
                    .send_string(&b.to_string()),
                None => req.call(),
            };
            match result {
                Ok(resp) => return Ok(Some(resp)),
                Err(ureq::Error::Status(404, _)) if method == "GET" => return Ok(None),
                Err(ureq::Error::Status(code, resp))
                    if (code == 429 || code >= 500) && attempt < self.max_attempts =>
                {
                    let wait = resp
                        .header("Retry-After")
                        .and_then(|s| s.parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(delay);
                    tracing::warn!(
                        code,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "Cloudflare API busy; retrying"
                    );
                    std::thread::sleep(wait.min(Duration::from_secs(30)));
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    bail!("Cloudflare API {method} {url}: HTTP {code}: {text}");
                }
                Err(ureq::Error::Transport(t)) if attempt < self.max_attempts => {
                    tracing::warn!(attempt, error = %t, "Cloudflare API unreachable; retrying");
                    std::thread::sleep(delay);
                }
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("Cloudflare API {method} {url}"))
                    )
                }
            }
            delay *= 2;
        }
        bail!(
            "Cloudflare API {method} {url}: gave up after {} attempts",
            self.max_attempts
        )
    }

    fn check_success(resp: ureq::Response, what: &str) -> Result<serde_json::Value> {
        let v: serde_json::Value = resp
            .into_json()
            .with_context(|| format!("{what}: response is not JSON"))?;
        ensure!(
            v["success"].as_bool() == Some(true),
            "{what}: Cloudflare reported failure: {}",
            v["errors"]
        );
        Ok(v)
    }
}

impl Cloudflare {
    /// One pass of bulk writes under the size and count limits. Returns the keys Cloudflare
    /// answered as `unsuccessful_keys` (a bulk write can say `success: true` and still leave
    /// some keys unwritten).
    fn bulk_put(&self, entries: &[&(String, Vec<u8>)]) -> Result<Vec<String>> {
        let mut unsuccessful = Vec::new();
        let mut start = 0;
        while start < entries.len() {
            let (mut end, mut bytes) = (start, 0usize);
            while end < entries.len() && end - start < BULK_MAX_PAIRS {
                let b64 = entries[end].1.len().div_ceil(3) * 4 + entries[end].0.len() + 64;
                if end > start && bytes + b64 > BULK_MAX_BYTES {
                    break;
                }
                bytes += b64;
                end += 1;
            }
            let body = bulk_json(entries[start..end].iter().copied());
            let resp = self
                .send("PUT", &format!("{}/bulk", self.base), Some(&body))?
                .context("bulk write returned 404")?;
            let v = Self::check_success(resp, "bulk write")?;
            let sent: std::collections::HashSet<&str> =
                entries[start..end].iter().map(|e| e.0.as_str()).collect();
            for key in v["result"]["unsuccessful_keys"]
                .as_array()
                .into_iter()
                .flatten()
            {
                match key.as_str() {
                    Some(k) if sent.contains(k) => unsuccessful.push(k.to_string()),
                    _ => bail!("bulk write: Cloudflare named an unknown unsuccessful key {key}"),
                }
            }
            start = end;
        }
        Ok(unsuccessful)
    }
}

impl Kv for Cloudflare {
    /// Writes every entry, or fails: keys Cloudflare leaves unwritten are retried with
    /// exponential backoff, and an error names those still missing after the last attempt (so a
    /// publish stops before it moves the pointer).
    fn put_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        let mut pending: Vec<&(String, Vec<u8>)> = entries.iter().collect();
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=self.max_attempts {
            let failed = self.bulk_put(&pending)?;
            if failed.is_empty() {
                return Ok(());
            }
            tracing::warn!(
                attempt,
                keys = failed.len(),
                "Cloudflare left keys unwritten; retrying them"
            );
            pending.retain(|e| failed.contains(&e.0));
            if attempt < self.max_attempts {
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
        let names: Vec<&str> = pending.iter().map(|e| e.0.as_str()).collect();
        bail!(
            "bulk write: Cloudflare did not store {} key(s) after {} attempts: {}",
            names.len(),
            self.max_attempts,
            names.join(", ")
        )
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let url = format!("{}/values/{}", self.base, urlencode(key));
        let Some(resp) = self.send("GET", &url, None)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut buf)?;
        Ok(Some(buf))
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut url = format!("{}/keys?prefix={}&limit=1000", self.base, urlencode(prefix));
            if !cursor.is_empty() {
                url += &format!("&cursor={}", urlencode(&cursor));
            }
            let resp = self
                .send("GET", &url, None)?
                .context("list keys returned 404")?;
            let v = Self::check_success(resp, "list keys")?;
            for k in v["result"].as_array().into_iter().flatten() {
                if let Some(name) = k["name"].as_str() {
                    keys.push(name.to_string());
                }
            }
            cursor = v["result_info"]["cursor"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if cursor.is_empty() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(BULK_MAX_PAIRS) {
            let resp = self
                .send(
                    "POST",
                    &format!("{}/bulk/delete", self.base),
                    Some(&serde_json::json!(chunk)),
                )?
                .context("bulk delete returned 404")?;
            Self::check_success(resp, "bulk delete")?;
        }
        Ok(())
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Versions present in the store, oldest first (version names start with the unix time).
pub fn versions(kv: &mut dyn Kv) -> Result<Vec<String>> {
    let mut v: Vec<String> = kv
        .list(keys::MODELS_PREFIX)?
        .iter()
        .filter_map(|k| {
            keys::version_of(k)
                .filter(|v| *k == keys::manifest(v))
                .map(str::to_string)
        })
        .collect();
    v.sort_by_key(|name| (version_time(name), name.clone()));
    Ok(v)
}

fn version_time(name: &str) -> u64 {
    name.trim_start_matches('v')
        .split('-')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// The text of `models/current`: a version, or an A/B split (`v1=90,v2=10`).
pub fn current(kv: &mut dyn Kv) -> Result<Option<String>> {
    Ok(kv
        .get(CURRENT)?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
}

/// `models/current` parsed.
pub fn pointer(kv: &mut dyn Kv) -> Result<Option<Pointer>> {
    current(kv)?
        .map(|text| {
            Pointer::parse(&text).map_err(|e| anyhow::anyhow!("{CURRENT} is not valid: {e}"))
        })
        .transpose()
}

/// What a publish did.
#[derive(Debug, serde::Serialize)]
pub struct Published {
    pub version: String,
    pub previous: Option<String>,
    pub keys_written: usize,
    pub bytes_written: u64,
    pub collected: Vec<String>,
}

/// Publishes a model directory: validated first, shards and manifest, then the fallback list,
/// then the pointer; then collects versions beyond the newest `keep` (never the current one or
/// its predecessor).
/// Refuses a model the edge could not hold: its shard bytes (and a paged model's default page
/// cache) must fit the worker's budget (`EDGE_MODEL_BUDGET_BYTES`), which the worker checks too
/// before it downloads anything.
pub fn check_edge_budget(manifest: &model::Manifest) -> Result<()> {
    let budget = edgerec_contract::manifest::EDGE_MODEL_BUDGET_BYTES;
    let bytes = manifest.edge_bytes();
    let pages = if manifest.is_paged() {
        " with its default page cache"
    } else {
        ""
    };
    ensure!(
        bytes <= budget,
        "model {} has {bytes} bytes of shards{pages}; an edge worker holds at most {budget} \
         (128 MB per isolate, room for a second model while one replaces the other): use fewer \
         items, fewer dimensions or int8 rows, or page it (`pack --page-items`)",
        manifest.version
    );
    Ok(())
}

/// A key and its value.
type Entry = (String, Vec<u8>);

/// Writes a model directory's shards and manifest (not the pointer); returns the manifest and
/// the entries written.
fn upload(kv: &mut dyn Kv, model_dir: &Path) -> Result<(Manifest, Vec<Entry>)> {
    let files = model::read_dir(model_dir)?;
    let manifest = files.manifest;
    check_edge_budget(&manifest)?;
    let v = &manifest.version;
    let mut entries: Vec<(String, Vec<u8>)> = manifest
        .shards
        .iter()
        .zip(files.shards)
        .chain(manifest.pages.iter().zip(files.pages))
        .map(|(s, bytes)| (keys::shard(v, &s.file), bytes))
        .collect();
    entries.push((keys::manifest(v), serde_json::to_vec(&manifest)?));
    kv.put_many(&entries)
        .context("writing shards and manifest")?;
    Ok((manifest, entries))
}

/// Writes the fallback list, then the pointer (last: until this write the edge keeps serving
/// what it served), records the primary as served and collects old versions.
fn point_at(
    kv: &mut dyn Kv,
    pointer: &Pointer,
    popular: &[String],
    keep: usize,
) -> Result<Vec<String>> {
    let fallback = edgerec_contract::manifest::Fallback {
        version: pointer.primary().to_string(),
        items: popular.to_vec(),
    };
    kv.put_many(&[(FALLBACK.to_string(), serde_json::to_vec(&fallback)?)])?;
    kv.put_many(&[(CURRENT.to_string(), pointer.to_string().into_bytes())])
        .context("writing the pointer")?;
    record_served(kv, pointer.primary())?;
    collect(kv, keep.max(2), pointer)
}

pub fn publish(kv: &mut dyn Kv, model_dir: &Path, keep: usize) -> Result<Published> {
    let previous = current(kv)?;
    let (manifest, entries) = upload(kv, model_dir)?;
    let v = &manifest.version;
    let collected = point_at(kv, &Pointer::single(v), &manifest.popular, keep)?;
    Ok(Published {
        version: v.clone(),
        previous,
        keys_written: entries.len() + 2,
        bytes_written: entries.iter().map(|e| e.1.len() as u64).sum(),
        collected,
    })
}

/// Points `models/current` at an A/B split (`publish --split v1=90,v2=10`), after uploading
/// `model_dir` (whose version must be one of the arms) if given. Every arm is read back and
/// validated as the edge loads it, and the arms together must fit one isolate's budget, before
/// the pointer moves. One arm (`v2=100`) ends an experiment.
pub fn publish_split(
    kv: &mut dyn Kv,
    model_dir: Option<&Path>,
    split: &Pointer,
    keep: usize,
) -> Result<Published> {
    let previous = current(kv)?;
    let mut entries = Vec::new();
    if let Some(dir) = model_dir {
        let manifest = model::read_dir(dir)?.manifest;
        ensure!(
            split.versions().any(|v| v == manifest.version),
            "the model in {} is version {}, which is not an arm of {split}",
            dir.display(),
            manifest.version
        );
        entries = upload(kv, dir)?.1;
    }
    let mut total = 0u64;
    let mut popular = Vec::new();
    for version in split.versions() {
        let manifest = stored_manifest(kv, version)?;
        load_version(kv, version)?;
        total += manifest.shard_bytes();
        if version == split.primary() {
            popular = manifest.popular;
        }
    }
    let budget = edgerec_contract::manifest::EDGE_MODEL_BUDGET_BYTES;
    ensure!(
        total <= budget,
        "the arms of {split} have {total} bytes of shards together; an edge worker holds at most \
         {budget}, and every isolate loads every arm"
    );
    let collected = point_at(kv, split, &popular, keep)?;
    Ok(Published {
        version: split.to_string(),
        previous,
        keys_written: entries.len() + 2,
        bytes_written: entries.iter().map(|e| e.1.len() as u64).sum(),
        collected,
    })
}

/// Most versions the history remembers.
const HISTORY_LEN: usize = 50;

/// The versions that were served, oldest first. A store written before the history existed
/// reads as its versions in time order.
pub fn history(kv: &mut dyn Kv) -> Result<Vec<String>> {
    match kv.get(keys::HISTORY)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a JSON list of versions", keys::HISTORY)),
        None => versions(kv),
    }
}

/// Records that `version` is now served (after the pointer moved to it).
fn record_served(kv: &mut dyn Kv, version: &str) -> Result<()> {
    let mut served = history(kv)?;
    served.retain(|v| v != version);
    served.push(version.to_string());
    let excess = served.len().saturating_sub(HISTORY_LEN);
    served.drain(..excess);
    kv.put_many(&[(keys::HISTORY.to_string(), serde_json::to_vec(&served)?)])
}

/// Deletes every version except the current ones (every arm) and the versions served last
/// before them (the rollback targets), `keep` besides the arms; versions written but never
/// served (a failed publish) go too.
fn collect(kv: &mut dyn Kv, keep: usize, current: &Pointer) -> Result<Vec<String>> {
    let served = history(kv)?;
    let arms = current.arms().len();
    let keep = keep + arms - 1;
    let mut protected: Vec<&str> = current.versions().collect();
    for v in served.iter().rev() {
        if protected.len() >= keep {
            break;
        }
        if !protected.contains(&v.as_str()) {
            protected.push(v);
        }
    }
    let doomed: Vec<String> = versions(kv)?
        .into_iter()
        .filter(|v| !protected.contains(&v.as_str()))
        .collect();
    for name in &doomed {
        let keys = kv.list(&keys::version_prefix(name))?;
        kv.delete_many(&keys)?;
    }
    Ok(doomed)
}

/// Reads every shard of `version` back from the store and validates it as the edge will: sizes
/// and checksums against the manifest, then the core's full validation of the model.
pub fn load_version(kv: &mut dyn Kv, version: &str) -> Result<edgerec::Engine> {
    let m = stored_manifest(kv, version)?;
    let mut read = |entries: &[model::ShardEntry]| -> Result<Vec<Vec<u8>>> {
        let mut files = Vec::with_capacity(entries.len());
        for s in entries {
            let key = keys::shard(version, &s.file);
            let bytes = kv
                .get(&key)?
                .with_context(|| format!("version {version} is missing {}", s.file))?;
            model::check_shard(s, &bytes, &key)?;
            files.push(bytes);
        }
        Ok(files)
    };
    let shards = read(&m.shards)?;
    let pages = read(&m.pages)?;
    model::engine_of(&shards, &pages, &format!("version {version}"))
}

/// The manifest of a version in the store.
fn stored_manifest(kv: &mut dyn Kv, version: &str) -> Result<Manifest> {
    let manifest = kv
        .get(&keys::manifest(version))?
        .with_context(|| format!("version {version} is not in the store"))?;
    serde_json::from_slice(&manifest)
        .with_context(|| format!("version {version}: manifest is not valid"))
}

/// Points `models/current` at `to` (default: the version served before the current one), after
/// reading that version back and validating every shard.
pub fn rollback(kv: &mut dyn Kv, to: Option<&str>) -> Result<(Option<String>, String)> {
    let cur = current(kv)?;
    let target = match to {
        Some(t) => t.to_string(),
        None => {
            let served = history(kv)?;
            served
                .iter()
                .rev()
                .find(|v| Some(v.as_str()) != cur.as_deref())
                .cloned()
                .with_context(|| {
                    format!(
                        "no version was served before {} (history: {})",
                        cur.as_deref().unwrap_or("nothing"),
                        served.join(", ")
                    )
                })?
        }
    };
    load_version(kv, &target)?;
    kv.put_many(&[(CURRENT.to_string(), target.as_bytes().to_vec())])?;
    record_served(kv, &target)?;
    Ok((cur, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model directory whose version is `name` (names start with their "time", so time order
    /// and publish order can be made to differ).
    fn model_dir(root: &Path, name: &str, seed: u64) -> std::path::PathBuf {
        let mut spec = edgerec::testing::Synthetic {
            seed,
            ..Default::default()
        }
        .spec();
        let dir = root.join(name);
        let mut manifest = model::write_dir(
            &mut spec,
            &dir,
            vec![],
            serde_json::Value::Null,
            edgerec::format::MAX_SHARD_BYTES,
        )
        .unwrap();
        manifest.version = name.into();
        std::fs::write(
            dir.join(model::MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        dir
    }

    fn store(root: &Path) -> Box<dyn Kv> {
        open(&format!("dir:{}", root.join("kv").display())).unwrap()
    }

    #[test]
    fn rollback_goes_back_to_what_was_served() {
        let root = tempfile::tempdir().unwrap();
        let mut kv = store(root.path());
        // Trained later, served first; then an older model is served (M5: the target is the
        // version served before, not the one named earlier in time).
        publish(kv.as_mut(), &model_dir(root.path(), "v2000-b", 2), 3).unwrap();
        publish(kv.as_mut(), &model_dir(root.path(), "v1000-a", 1), 3).unwrap();
        let (from, to) = rollback(kv.as_mut(), None).unwrap();
        assert_eq!((from.as_deref(), to.as_str()), (Some("v1000-a"), "v2000-b"));
        assert_eq!(current(kv.as_mut()).unwrap().as_deref(), Some("v2000-b"));
        // Rolling back again returns to what was served before that.
        assert_eq!(rollback(kv.as_mut(), None).unwrap().1, "v1000-a");
    }

    #[test]
    fn a_paged_model_publishes_its_pages_and_reads_back_whole() {
        let root = tempfile::tempdir().unwrap();
        let mut kv = store(root.path());
        let syn = edgerec::testing::Synthetic {
            items: 1000,
            first_pass: true,
            ..Default::default()
        };
        let dir = root.path().join("paged");
        let manifest = model::write_dir_paged(
            &mut syn.spec(),
            &dir,
            vec![],
            serde_json::Value::Null,
            edgerec::format::MAX_SHARD_BYTES,
            Some(100),
        )
        .unwrap();
        publish(kv.as_mut(), &dir, 2).unwrap();
        let v = &manifest.version;
        for page in &manifest.pages {
            assert!(
                kv.get(&keys::shard(v, &page.file)).unwrap().is_some(),
                "{}",
                page.file
            );
        }
        let engine = load_version(kv.as_mut(), v).unwrap();
        assert!(engine.is_paged());
        assert_eq!(engine.loaded_pages().len(), manifest.pages.len());
        // A page lost from the store makes the version unreadable, by name.
        let lost = keys::shard(v, &manifest.pages[1].file);
        kv.delete_many(std::slice::from_ref(&lost)).unwrap();
        let err = format!("{:#}", load_version(kv.as_mut(), v).err().unwrap());
        assert!(err.contains("page-1.bin"), "{err}");
    }

    #[test]
    fn collection_keeps_the_last_good_version() {
        let root = tempfile::tempdir().unwrap();
        let mut kv = store(root.path());
        publish(kv.as_mut(), &model_dir(root.path(), "v1000-good", 1), 2).unwrap();
        publish(kv.as_mut(), &model_dir(root.path(), "v2000-bad", 2), 2).unwrap();
        rollback(kv.as_mut(), Some("v1000-good")).unwrap();
        // A failed publish left keys of a version that was never served.
        kv.put_many(&[(keys::manifest("v2500-partial"), b"{}".to_vec())])
            .unwrap();
        let published = publish(kv.as_mut(), &model_dir(root.path(), "v3000-new", 3), 2).unwrap();
        let left = versions(kv.as_mut()).unwrap();
        assert_eq!(left, vec!["v1000-good", "v3000-new"], "{published:?}");
        assert_eq!(rollback(kv.as_mut(), None).unwrap().1, "v1000-good");
    }

    #[test]
    fn a_split_names_published_versions_and_keeps_every_arm() {
        let root = tempfile::tempdir().unwrap();
        let mut kv = store(root.path());
        publish(kv.as_mut(), &model_dir(root.path(), "v1000-a", 1), 2).unwrap();
        let b = model_dir(root.path(), "v2000-b", 2);
        let split = Pointer::parse("v1000-a=50,v2000-b=50").unwrap();
        // The model is uploaded first, then every arm is read back; the pointer moves last.
        let p = publish_split(kv.as_mut(), Some(&b), &split, 2).unwrap();
        assert_eq!(p.previous.as_deref(), Some("v1000-a"));
        assert_eq!(
            current(kv.as_mut()).unwrap().as_deref(),
            Some("v1000-a=50,v2000-b=50")
        );
        assert_eq!(pointer(kv.as_mut()).unwrap(), Some(split.clone()));
        // Neither arm is collected by later publishes of arms.
        publish_split(kv.as_mut(), None, &split, 2).unwrap();
        assert_eq!(versions(kv.as_mut()).unwrap(), ["v1000-a", "v2000-b"]);
        // An arm that is not in the store, or a model that is not an arm: refused, and the
        // pointer stays.
        let missing = Pointer::parse("v1000-a=50,v9-missing=50").unwrap();
        let e = publish_split(kv.as_mut(), None, &missing, 2).unwrap_err();
        assert!(
            format!("{e:#}").contains("v9-missing is not in the store"),
            "{e:#}"
        );
        let c = model_dir(root.path(), "v3000-c", 3);
        let e = publish_split(kv.as_mut(), Some(&c), &split, 2).unwrap_err();
        assert!(format!("{e:#}").contains("not an arm"), "{e:#}");
        assert_eq!(pointer(kv.as_mut()).unwrap(), Some(split));
        // One arm ends the experiment.
        let end = Pointer::parse("v2000-b=100").unwrap();
        publish_split(kv.as_mut(), None, &end, 2).unwrap();
        assert_eq!(current(kv.as_mut()).unwrap().as_deref(), Some("v2000-b"));
    }

    #[test]
    fn rollback_reads_the_target_back_and_refuses_a_corrupt_one() {
        let root = tempfile::tempdir().unwrap();
        let mut kv = store(root.path());
        publish(kv.as_mut(), &model_dir(root.path(), "v1000-a", 1), 3).unwrap();
        publish(kv.as_mut(), &model_dir(root.path(), "v2000-b", 2), 3).unwrap();
        let key = keys::shard("v1000-a", "shard-0.bin");
        let mut bytes = kv.get(&key).unwrap().unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        kv.put_many(&[(key, bytes)]).unwrap();
        let err = format!("{:#}", rollback(kv.as_mut(), None).unwrap_err());
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(current(kv.as_mut()).unwrap().as_deref(), Some("v2000-b"));
    }

    #[test]
    fn models_above_the_edge_budget_are_refused() {
        let budget = edgerec_contract::manifest::EDGE_MODEL_BUDGET_BYTES;
        let shard = |bytes: u64| model::ShardEntry {
            file: "shard-0.bin".into(),
            bytes,
            checksum: "0".into(),
            items: [0, 1],
        };
        let mut manifest = model::Manifest {
            format: edgerec_contract::manifest::FORMAT.into(),
            format_version: 2,
            version: "v1".into(),
            model_id: "0".into(),
            created_at: 0,
            items: 1,
            dim: 16,
            dtype: "i8".into(),
            shards: vec![shard(budget / 2), shard(budget / 2)],
            pages: vec![],
            popular: vec![],
            info: serde_json::Value::Null,
        };
        assert!(check_edge_budget(&manifest).is_ok());
        manifest.shards.push(shard(1));
        let err = check_edge_budget(&manifest).unwrap_err().to_string();
        assert!(err.contains("at most"), "{err}");
        // A paged model's index leaves room for the worker's page cache.
        let cache = edgerec_contract::manifest::EDGE_PAGE_CACHE_BYTES;
        manifest.shards = vec![shard(budget - cache)];
        manifest.pages = vec![shard(1_000)];
        assert!(check_edge_budget(&manifest).is_ok());
        manifest.shards = vec![shard(budget - cache + 1)];
        let err = check_edge_budget(&manifest).unwrap_err().to_string();
        assert!(err.contains("page cache"), "{err}");
    }
}
