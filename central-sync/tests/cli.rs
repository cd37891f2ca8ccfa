//! central-sync end to end through its binary: import → train → eval → recommend → publish
//! (directory KV and the Cloudflare REST contract) → rollback → sync, and bad input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_central-sync"));
    c.env_remove("RUST_LOG").arg("--log").arg("warn");
    c
}

fn run(args: &[&str], db: &Path) -> Output {
    bin()
        .args(args)
        .env("EDGEREC_DB", db)
        .output()
        .expect("run central-sync")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Synthetic events: 60 users walk through 40 items in 4 "genres"; each user mostly stays in
/// one genre and moves to the next item of it, so sequence signals are learnable.
fn write_events(path: &Path, users: usize, per_user: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "user,item,ts,type").unwrap();
    let mut rng = edgerec::math::SplitMix64::new(3);
    for u in 0..users {
        let genre = u % 4;
        let mut item = genre + 4 * rng.below(10);
        for t in 0..per_user {
            let kind = ["view", "click", "like"][rng.below(3)];
            writeln!(
                f,
                "u{u},m{item},{},{kind}",
                978_300_000 + u * 10_000 + t * 60
            )
            .unwrap();
            item = if rng.below(10) < 8 {
                (item + 4) % 40
            } else {
                rng.below(40)
            };
        }
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn train_eval_recommend_publish_rollback() {
    let dir = tmp();
    let db = dir.path().join("events.db");
    let csv = dir.path().join("events.csv");
    write_events(&csv, 60, 25);
    let model = dir.path().join("model");
    let out = ok(&run(
        &[
            "train",
            "--events",
            csv.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--epochs",
            "4",
            "--dim",
            "16",
        ],
        &db,
    ));
    assert!(out.contains("trained v"), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["items"], 40);
    assert_eq!(manifest["dtype"], "i8");

    // Eval prints all rows with the same user count, as JSON too.
    let report: serde_json::Value = serde_json::from_str(&ok(&run(
        &[
            "eval",
            "--events",
            csv.to_str().unwrap(),
            "--epochs",
            "4",
            "--dim",
            "16",
            "--json",
        ],
        &db,
    )))
    .unwrap();
    for key in [
        "edgerec_int8",
        "edgerec_f32",
        "edgerec_int8_last10",
        "popularity",
        "trending_30d",
        "markov_last_item",
        "knn_last5",
    ] {
        assert_eq!(report[key]["users"], 60, "{key}");
        let ndcg = report[key]["ndcg10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ndcg));
    }
    // The by-session-length table: every method on the same 60 users for 0, 1, 2, 3, 5 clicks
    // and the full history, whose row is the table above.
    let rows = report["by_session_length"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|r| r["clicks"].as_str().unwrap()).collect();
    assert_eq!(labels, ["0", "1", "2", "3", "5", "full"]);
    for row in rows {
        for key in [
            "edgerec_int8",
            "popularity",
            "trending_30d",
            "markov_last_item",
            "knn_last5",
        ] {
            assert_eq!(row[key]["users"], 60, "{key}");
        }
    }
    assert_eq!(rows[5]["edgerec_int8"], report["edgerec_int8"]);
    assert_eq!(
        report["tuned"]["combination"]["profiles"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    // On data made of item-to-item walks the sequence-aware model beats popularity clearly.
    assert!(
        report["edgerec_int8"]["ndcg10"].as_f64().unwrap()
            > 2.0 * report["popularity"]["ndcg10"].as_f64().unwrap(),
        "{report}"
    );

    // Batch recommend: one line per input, k items, inputs never returned, bad lines reported.
    let sessions = dir.path().join("s.jsonl");
    std::fs::write(&sessions, "{\"id\": \"a\", \"items\": [\"m1\", \"m5\"], \"ts\": 978300760, \"context\": {\"device\": \"mobile\"}}\n{\"id\": 7, \"items\": []}\n").unwrap();
    let out = ok(&run(
        &[
            "recommend",
            "--model",
            model.to_str().unwrap(),
            "--sessions",
            sessions.to_str().unwrap(),
            "--k",
            "5",
        ],
        &db,
    ));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "a");
    let items: Vec<&str> = lines[0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(items.len(), 5);
    assert!(!items.contains(&"m1") && !items.contains(&"m5"));
    assert!(
        items.contains(&"m9"),
        "the next item of the walk should rank: {items:?}"
    );
    std::fs::write(
        &sessions,
        "{\"id\": 1, \"items\": [\"m1\"], \"context\": {\"device\": \"fridge\"}}\n",
    )
    .unwrap();
    let bad = run(
        &[
            "recommend",
            "--model",
            model.to_str().unwrap(),
            "--sessions",
            sessions.to_str().unwrap(),
        ],
        &db,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("s.jsonl:1: unknown device"));

    // Publish twice to a directory KV, then roll back.
    let kv = dir.path().join("kv");
    let target = format!("dir:{}", kv.display());
    ok(&run(
        &[
            "publish",
            "--model",
            model.to_str().unwrap(),
            "--to",
            &target,
        ],
        &db,
    ));
    let first = std::fs::read_to_string(kv.join("models/current")).unwrap();
    let model2 = dir.path().join("model2");
    ok(&run(
        &[
            "train",
            "--events",
            csv.to_str().unwrap(),
            "--out",
            model2.to_str().unwrap(),
            "--epochs",
            "1",
            "--dim",
            "16",
            "--no-tune",
        ],
        &db,
    ));
    ok(&run(
        &[
            "publish",
            "--model",
            model2.to_str().unwrap(),
            "--to",
            &target,
        ],
        &db,
    ));
    let second = std::fs::read_to_string(kv.join("models/current")).unwrap();
    assert_ne!(first, second);
    assert!(kv.join(format!("models/{second}/shard-0.bin")).exists());
    let fallback: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kv.join("models/fallback")).unwrap()).unwrap();
    assert_eq!(fallback["items"].as_array().unwrap().len(), 40);
    ok(&run(&["rollback", "--to", &target], &db));
    assert_eq!(
        std::fs::read_to_string(kv.join("models/current")).unwrap(),
        first
    );

    // A corrupt model directory is refused and the pointer is untouched.
    let shard = model2.join("shard-0.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&shard, &bytes).unwrap();
    let out = run(
        &[
            "publish",
            "--model",
            model2.to_str().unwrap(),
            "--to",
            &target,
        ],
        &db,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shard-0.bin is corrupt") && err.contains("checksum"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(kv.join("models/current")).unwrap(),
        first
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tmp();
    let db = dir.path().join("events.db");
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let err = |out: Output| {
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out = dir.path().join("m");
    let o = out.to_str().unwrap();
    assert!(err(run(
        &[
            "train",
            "--events",
            write("empty.csv", "").to_str().unwrap(),
            "--out",
            o
        ],
        &db
    ))
    .contains("empty file"));
    assert!(err(run(
        &[
            "train",
            "--events",
            write("cols.csv", "user,item,when\nu,i,1\n")
                .to_str()
                .unwrap(),
            "--out",
            o
        ],
        &db
    ))
    .contains("unknown column \"when\""));
    let e = err(run(
        &[
            "train",
            "--events",
            write(
                "rows.csv",
                "user,item,ts\nu1,i1,978300760\nu1,i2,notatime\n",
            )
            .to_str()
            .unwrap(),
            "--out",
            o,
        ],
        &db,
    ));
    assert!(e.contains("rows.csv:3:") && e.contains("`ts`"), "{e}");
    assert!(!out.exists(), "no half-written model");
    assert!(err(run(
        &[
            "recommend",
            "--model",
            dir.path().to_str().unwrap(),
            "--sessions",
            "x"
        ],
        &db
    ))
    .contains("manifest.json"));
    assert!(err(run(&["publish", "--model", o, "--to", "nowhere"], &db))
        .contains("unknown target \"nowhere\""));
    let kv = format!("dir:{}", dir.path().join("kv").display());
    assert!(err(run(&["publish", "--model", o, "--to", &kv], &db)).contains("a model directory?"));
    assert!(!dir.path().join("kv/models/current").exists());

    // import skips and reports bad rows by line, keeps the good ones, exit status 2.
    let csv = write("mixed.csv", "user,item,ts,type\nu1,i1,978300760,click\nu1,,978300761,view\nu2,i2,978300762,teleport\nu2,i3,978300763,like\n");
    let imp = run(&["import", csv.to_str().unwrap(), "--json"], &db);
    assert_eq!(imp.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&imp.stdout).unwrap();
    assert_eq!(v["stored"], 2);
    let lines: Vec<u64> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4]);
}

#[test]
fn pack_external_embeddings() {
    let dir = tmp();
    let (n, d) = (30usize, 8usize);
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for i in 0..n * d {
        npy.extend_from_slice(&(((i * 37) % 17) as f32 / 17.0 - 0.5).to_le_bytes());
    }
    std::fs::write(dir.path().join("v.npy"), &npy).unwrap();
    let ids: String = (0..n).map(|i| format!("sku-{i}\n")).collect();
    std::fs::write(dir.path().join("ids.txt"), &ids).unwrap();
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    ok(&run(
        &[
            "pack",
            "--embeddings",
            &p("v.npy"),
            "--ids",
            &p("ids.txt"),
            "--out",
            &p("m"),
            "--dtype",
            "f16",
        ],
        p("db").as_ref(),
    ));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("m/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        (m["items"].as_u64(), m["dim"].as_u64(), m["dtype"].as_str()),
        (Some(30), Some(8), Some("f16"))
    );
    std::fs::write(dir.path().join("ids.txt"), "only-one\n").unwrap();
    let out = run(
        &[
            "pack",
            "--embeddings",
            &p("v.npy"),
            "--ids",
            &p("ids.txt"),
            "--out",
            &p("m2"),
        ],
        p("db").as_ref(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("has 1 ids but"));
}

/// A stand-in for the Cloudflare API (the real one cannot be reached here) that checks every
/// request against the documented shape of the Workers KV v4 endpoints, answers like the API,
/// answers bulk writes with the scripted `faults` first, and records the order of writes.
struct FakeCloudflare {
    kv: std::collections::BTreeMap<String, Vec<u8>>,
    writes: Vec<String>,
    violations: Vec<String>,
    /// Answers for the next bulk writes, in order; then bulk writes succeed.
    faults: std::collections::VecDeque<Fault>,
    /// Keys ending so are never stored: every bulk write lists them as unsuccessful.
    always_unsuccessful: Option<String>,
}

/// A documented way for a bulk write to go wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// 429 with the API's error body.
    RateLimited,
    /// 503.
    ServerError,
    /// `success: true`, but the first key listed in `unsuccessful_keys` and not stored.
    Partial,
    /// No answer within the client's timeout.
    Hang,
}

fn serve_fake_cloudflare(state: Arc<Mutex<FakeCloudflare>>) -> String {
    use base64::Engine as _;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                continue;
            }
            let mut headers = std::collections::HashMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut parts = request_line.split_whitespace();
            let (method, target) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut st = state.lock().unwrap();
            let base = "/client/v4/accounts/acct-1/storage/kv/namespaces/ns-1";
            if headers.get("authorization").map(String::as_str) != Some("Bearer tok-123") {
                st.violations
                    .push(format!("{method} {target}: missing bearer token"));
            }
            let (status, response): (u16, Vec<u8>) = if method == "PUT"
                && target == format!("{base}/bulk")
            {
                if headers.get("content-type").map(String::as_str) != Some("application/json") {
                    st.violations
                        .push("bulk write without application/json".into());
                }
                let fault = st.faults.pop_front();
                if fault == Some(Fault::RateLimited) {
                    (
                        429,
                        br#"{"success":false,"errors":[{"code":10013,"message":"rate limited"}]}"#
                            .to_vec(),
                    )
                } else if fault == Some(Fault::ServerError) {
                    (
                        503,
                        br#"{"success":false,"errors":[{"code":10000,"message":"internal"}]}"#
                            .to_vec(),
                    )
                } else if fault == Some(Fault::Hang) {
                    drop(st);
                    std::thread::sleep(std::time::Duration::from_secs(3));
                    continue;
                } else {
                    let pairs: Vec<serde_json::Value> =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let mut unsuccessful = Vec::new();
                    if pairs.is_empty() || pairs.len() > 10_000 || body.len() > 100_000_000 {
                        st.violations
                            .push("bulk write outside the documented limits".into());
                    }
                    for p in pairs {
                        let (Some(key), Some(value)) = (p["key"].as_str(), p["value"].as_str())
                        else {
                            st.violations
                                .push(format!("bulk pair without key/value: {p}"));
                            continue;
                        };
                        if p["base64"] != true || key.len() > 512 {
                            st.violations
                                .push(format!("pair {key}: base64 flag missing or key too long"));
                        }
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(value)
                            .unwrap_or_default();
                        if bytes.len() > 25 * 1024 * 1024 {
                            st.violations.push(format!("{key}: value above 25 MiB"));
                        }
                        let refused = st
                            .always_unsuccessful
                            .as_deref()
                            .is_some_and(|suffix| key.ends_with(suffix));
                        if refused || (fault == Some(Fault::Partial) && unsuccessful.is_empty()) {
                            unsuccessful.push(key.to_string());
                            continue;
                        }
                        st.writes.push(key.to_string());
                        st.kv.insert(key.to_string(), bytes);
                    }
                    let stored = st.writes.len();
                    (200, serde_json::to_vec(&serde_json::json!({"success": true, "errors": [], "messages": [],
                        "result": {"successful_key_count": stored, "unsuccessful_keys": unsuccessful}})).unwrap())
                }
            } else if method == "GET" && target.starts_with(&format!("{base}/values/")) {
                let key = target[base.len() + 8..].replace("%2F", "/");
                match st.kv.get(&key) {
                    Some(v) => (200, v.clone()),
                    None => (
                        404,
                        br#"{"success":false,"errors":[{"code":10009,"message":"key not found"}]}"#
                            .to_vec(),
                    ),
                }
            } else if method == "GET" && target.starts_with(&format!("{base}/keys?")) {
                let prefix = target
                    .split("prefix=")
                    .nth(1)
                    .unwrap_or("")
                    .split('&')
                    .next()
                    .unwrap_or("")
                    .replace("%2F", "/");
                let names: Vec<serde_json::Value> = st
                    .kv
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .map(|k| serde_json::json!({"name": k}))
                    .collect();
                (200, serde_json::to_vec(&serde_json::json!({"success": true, "errors": [], "result": names, "result_info": {"count": names.len(), "cursor": ""}})).unwrap())
            } else if method == "POST" && target == format!("{base}/bulk/delete") {
                let keys: Vec<String> = serde_json::from_slice(&body).unwrap_or_default();
                for k in keys {
                    st.kv.remove(&k);
                }
                (200, br#"{"success":true,"errors":[],"messages":[],"result":{"successful_key_count":1}}"#.to_vec())
            } else {
                st.violations
                    .push(format!("undocumented request {method} {target}"));
                (404, b"{}".to_vec())
            };
            drop(st);
            let reason = match status {
                200 => "OK",
                404 => "Not Found",
                429 => "Too Many Requests",
                503 => "Service Unavailable",
                _ => "Error",
            };
            let head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/json\r\nRetry-After: 0\r\nConnection: close\r\n\r\n", response.len());
            stream.write_all(head.as_bytes()).ok();
            stream.write_all(&response).ok();
        }
    });
    format!("http://{addr}/client/v4")
}

#[test]
fn publish_to_cloudflare_follows_the_rest_contract() {
    let dir = tmp();
    let db = dir.path().join("events.db");
    let csv = dir.path().join("events.csv");
    write_events(&csv, 30, 12);
    let model = dir.path().join("model");
    ok(&run(
        &[
            "train",
            "--events",
            csv.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--epochs",
            "1",
            "--dim",
            "16",
            "--no-tune",
        ],
        &db,
    ));
    // The first publish meets every documented failure once: a 429, a partial write, a 5xx and
    // a timeout. It must retry through all of them and still move the pointer last.
    let state = Arc::new(Mutex::new(FakeCloudflare {
        kv: Default::default(),
        writes: vec![],
        violations: vec![],
        faults: [
            Fault::RateLimited,
            Fault::Partial,
            Fault::ServerError,
            Fault::Hang,
        ]
        .into(),
        always_unsuccessful: None,
    }));
    let base = serve_fake_cloudflare(state.clone());
    let cf = |args: &[&str]| {
        bin()
            .args(args)
            .env("EDGEREC_DB", &db)
            .env("CLOUDFLARE_API_BASE_URL", &base)
            .env("CLOUDFLARE_API_TOKEN", "tok-123")
            .env("CLOUDFLARE_ACCOUNT_ID", "acct-1")
            .env("EDGEREC_KV_NAMESPACE_ID", "ns-1")
            .env("EDGEREC_KV_TIMEOUT_SECONDS", "1")
            .output()
            .unwrap()
    };
    ok(&cf(&[
        "publish",
        "--model",
        model.to_str().unwrap(),
        "--to",
        "cloudflare",
    ]));
    let st = state.lock().unwrap();
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    assert!(st.faults.is_empty(), "every fault was met and retried");
    // The pointer follows every shard and the manifest; after it comes only the served-version
    // history (bookkeeping the edge never reads).
    let pointer = st
        .writes
        .iter()
        .rposition(|k| k == "models/current")
        .expect("pointer written");
    assert!(
        st.writes[..pointer]
            .iter()
            .any(|k| k.ends_with("/manifest.json"))
            && st.writes[pointer + 1..]
                .iter()
                .all(|k| k == "models/history"),
        "pointer written last: {:?}",
        st.writes
    );
    let version = String::from_utf8(st.kv["models/current"].clone()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&st.kv[&format!("models/{version}/manifest.json")]).unwrap();
    for shard in manifest["shards"].as_array().unwrap() {
        let file = shard["file"].as_str().unwrap();
        assert_eq!(
            st.kv[&format!("models/{version}/{file}")],
            std::fs::read(model.join(file)).unwrap(),
            "{file} written despite the partial answer"
        );
    }
    drop(st);
    let model2 = dir.path().join("model2");
    ok(&run(
        &[
            "train",
            "--events",
            csv.to_str().unwrap(),
            "--out",
            model2.to_str().unwrap(),
            "--epochs",
            "1",
            "--dim",
            "16",
            "--no-tune",
            "--seed",
            "9",
        ],
        &db,
    ));
    ok(&cf(&[
        "publish",
        "--model",
        model2.to_str().unwrap(),
        "--to",
        "cloudflare",
    ]));
    ok(&cf(&["rollback", "--to", "cloudflare"]));
    let mut st = state.lock().unwrap();
    assert_eq!(
        String::from_utf8(st.kv["models/current"].clone()).unwrap(),
        version
    );
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    // A shard Cloudflare never stores: the publish fails naming it, after its retries, and the
    // pointer stays where it was (no partial model is ever served).
    st.always_unsuccessful = Some("shard-0.bin".into());
    drop(st);
    let out = cf(&[
        "publish",
        "--model",
        model2.to_str().unwrap(),
        "--to",
        "cloudflare",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not store 1 key(s)") && err.contains("shard-0.bin"),
        "{err}"
    );
    let mut st = state.lock().unwrap();
    assert_eq!(
        String::from_utf8(st.kv["models/current"].clone()).unwrap(),
        version,
        "the pointer did not move"
    );
    st.always_unsuccessful = None;
    // Missing credentials are a clear error.
    drop(st);
    let out = run(
        &[
            "publish",
            "--model",
            model.to_str().unwrap(),
            "--to",
            "cloudflare",
        ],
        &db,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not set"));
}

#[test]
fn serve_ingests_validates_and_reports_metrics() {
    let dir = tmp();
    let db = dir.path().join("events.db");
    let mut child = bin()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("EDGEREC_DB", &db)
        .env("EDGEREC_INGEST_TOKEN", "secret-token")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server even when an assertion fails, or it would outlive the test.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _guard = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.trim().trim_start_matches("listening on ").to_string();
    let post_to = |path: &str, body: &str, token: &str| {
        let r = ureq::post(&format!("{base}{path}"))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            .send_string(body);
        match r {
            Ok(resp) => (resp.status(), resp.into_string().unwrap()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let post = |body: &str, token: &str| post_to("/v1/events", body, token);
    let batch = r#"[{"id":"e1","user":"u1","item":"i1","ts":978300760,"type":"click"},
                    {"id":"e2","user":"u1","item":"","ts":978300761},
                    {"id":"e3","user":"u1","item":"i2","ts":978300762,"type":"like","lat":37.77,"lon":-122.42}]"#;
    let (status, body) = post(batch, "secret-token");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stored"], 2);
    assert_eq!(v["rejected"][0]["index"], 1);
    assert!(v["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("`item`"));
    let (_, body) = post(batch, "secret-token");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["duplicates"],
        2
    );
    assert_eq!(post(batch, "wrong").0, 401);
    let (status, body) = post("{not json", "secret-token");
    assert_eq!(status, 400);
    assert!(body.contains("malformed_json"));
    let many = format!(
        "[{}]",
        vec![r#"{"user":"u","item":"i","ts":978300760}"#; 1001].join(",")
    );
    assert_eq!(post(&many, "secret-token").0, 413);
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("edgerec_events_stored 2"), "{metrics}");
    assert!(
        metrics.contains("edgerec_events_rejected_total 2"),
        "{metrics}"
    );
    let health: serde_json::Value = ureq::get(&format!("{base}/healthz"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(health["events"], 2);

    // The token and the declared length are checked before any of the body is read (M3): a
    // client that announces a large body and never sends it gets its answer at once.
    let head_only = |token: &str, length: usize| -> String {
        let addr = base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        .unwrap();
        let mut status = String::new();
        BufReader::new(stream)
            .read_line(&mut status)
            .expect("an answer before the body was sent");
        status
    };
    assert!(head_only("wrong", 900_000).contains(" 401 "));
    assert!(head_only("secret-token", 5 << 20).contains(" 413 "));

    // Exposures: the lists the edge served, in the same envelope; a click names its list.
    let lists = r#"[{"id":"x1","user":"u1","ts":978300770,"model":"m1","arm":"m1",
                     "items":[{"item":"i1","position":0,"score":0.9,"propensity":1},
                              {"item":"i3","position":1,"score":0.4,"propensity":1}]},
                    {"id":"x2","user":"u1","ts":978300770,"model":"m1","items":[]}]"#;
    assert_eq!(post_to("/v1/exposures", lists, "wrong").0, 401);
    let (status, body) = post_to("/v1/exposures", lists, "secret-token");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["stored"].as_u64(), v["rejected"][0]["index"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(v["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("`items`"));
    let (_, body) = post_to("/v1/exposures", lists, "secret-token");
    assert!(body.contains(r#""duplicates":1"#), "{body}");
    let click =
        r#"{"id":"e9","user":"u1","item":"i3","ts":978300780,"type":"click","exposure":"x1"}"#;
    assert_eq!(post(click, "secret-token").0, 200);
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("edgerec_exposures_ingested_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgerec_exposures_rejected_total 2"),
        "{metrics}"
    );
    // Joined with the click into the CSV `ope` reads, while serve keeps running.
    let csv = dir.path().join("exposures.csv");
    let out = ok(&run(&["exposures", "--out", csv.to_str().unwrap()], &db));
    assert!(out.contains("1 lists served (2 items shown)"), "{out}");
    assert!(
        out.contains("model m1 arm m1: 1 lists, 1 with a click"),
        "{out}"
    );
    let written = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = written.lines().collect();
    assert_eq!(
        rows[0],
        "ts,user,session,item,position,reward,propensity,model,arm,exposure"
    );
    // The session is what u1 did before the list: i1 and i2 (e1, e3).
    assert_eq!(rows[1], "978300770,u1,i1 i2,i1,0,0.0,1.0,m1,m1,x1");
    assert_eq!(rows[2], "978300770,u1,i1 i2,i3,1,1.0,1.0,m1,m1,x1");
    let ope = ok(&run(
        &[
            "ope",
            "--exposures",
            csv.to_str().unwrap(),
            "--resamples",
            "50",
        ],
        &db,
    ));
    assert!(ope.contains("IPS"), "{ope}");

    // Edge metrics: two isolates' reports add up; a bad one is refused with its reason.
    let report = |isolate: &str, hits: u64| {
        format!(
            r#"{{"isolate":"{isolate}","ts":978300800,"series":[
              {{"route":"recommendations","status":200,"model":"m1","cache":"hit","error":"",
                "count":{hits},"ms_sum":{hits}.0,"buckets":[{hits},0,0,0,0,0,0,0,0,0,0]}},
              {{"route":"events","status":400,"model":"none","cache":"none","error":"unknown_item",
                "count":1,"ms_sum":30.0,"buckets":[0,0,0,0,0,1,0,0,0,0,0]}}]}}"#
        )
    };
    assert_eq!(post_to("/v1/edge-metrics", &report("a", 3), "wrong").0, 401);
    let two = format!("[{},{}]", report("a", 3), report("b", 2));
    let (status, body) = post_to("/v1/edge-metrics", &two, "secret-token");
    assert_eq!(
        (status, body.contains(r#""stored":2"#)),
        (200, true),
        "{body}"
    );
    let (status, body) = post_to(
        "/v1/edge-metrics",
        &report("c", 1).replace("recommendations", "admin"),
        "secret-token",
    );
    assert_eq!(status, 400);
    assert!(body.contains("`route`"), "{body}");
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for line in [
        r#"edgerec_edge_requests_total{route="recommendations",status="200",model="m1",cache="hit",error=""} 5"#,
        r#"edgerec_edge_requests_total{route="events",status="400",model="none",cache="none",error="unknown_item"} 2"#,
        r#"edgerec_edge_request_duration_seconds_bucket{route="events",le="0.025"} 0"#,
        r#"edgerec_edge_request_duration_seconds_bucket{route="events",le="0.05"} 2"#,
        r#"edgerec_edge_request_duration_seconds_count{route="recommendations"} 5"#,
        r#"edgerec_edge_request_duration_seconds_sum{route="events"} 0.06"#,
        "edgerec_edge_reports_total 2",
        "edgerec_edge_reports_rejected_total 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[test]
fn sync_publishes_incrementally_and_holds_back_regressions() {
    let dir = tmp();
    let db = dir.path().join("events.db");
    let csv = dir.path().join("events.csv");
    write_events(&csv, 60, 25);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = 1 + (lines.len() - 1) * 4 / 5;
    std::fs::write(dir.path().join("a.csv"), lines[..cut].join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("b.csv"),
        format!("{}\n{}\n", lines[0], lines[cut..].join("\n")),
    )
    .unwrap();
    let kv = format!("dir:{}", dir.path().join("kv").display());
    let work = dir.path().join("work");
    let sync = |extra: &[&str]| {
        let mut args = vec![
            "sync",
            "--to",
            &kv,
            "--work-dir",
            work.to_str().unwrap(),
            "--epochs",
            "3",
            "--dim",
            "16",
            "--json",
        ];
        args.extend_from_slice(extra);
        run(&args, &db)
    };
    ok(&run(
        &["import", dir.path().join("a.csv").to_str().unwrap()],
        &db,
    ));
    let first: serde_json::Value = serde_json::from_str(&ok(&sync(&[]))).unwrap();
    assert_eq!(
        (first["status"].as_str(), first["mode"].as_str()),
        (Some("published"), Some("full"))
    );
    // The published model's session encoder, as the next sync warm-starts from it.
    let encoder = || -> serde_json::Value {
        let params = std::fs::read_to_string(work.join("current/params.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&params).unwrap()["encoder"].clone()
    };
    let full_encoder = encoder();
    assert!(full_encoder["weights"]
        .as_array()
        .is_some_and(|w| !w.is_empty()));
    let noop: serde_json::Value = serde_json::from_str(&ok(&sync(&[]))).unwrap();
    assert_eq!(noop["status"], "noop");
    ok(&run(
        &["import", dir.path().join("b.csv").to_str().unwrap()],
        &db,
    ));
    // A margin of -100% demands the hold-out double: the new model is held back, exit 3.
    let held = sync(&["--margin=-1.0"]);
    assert_eq!(held.status.code(), Some(3));
    let held: serde_json::Value = serde_json::from_slice(&held.stdout).unwrap();
    assert_eq!(held["status"], "held_back");
    let second: serde_json::Value = serde_json::from_str(&ok(&sync(&[]))).unwrap();
    assert_eq!(
        (second["status"].as_str(), second["mode"].as_str()),
        (Some("published"), Some("incremental"))
    );
    assert!(second["incremental_events_per_second"].as_f64().unwrap() > 0.0);
    assert_ne!(first["version"], second["version"]);
    // The incremental sync trained the published encoder on the new events: same shape, moved.
    let incremental_encoder = encoder();
    assert_eq!(incremental_encoder["positions"], full_encoder["positions"]);
    assert_eq!(
        incremental_encoder["weights"].as_array().map(Vec::len),
        full_encoder["weights"].as_array().map(Vec::len)
    );
    assert_ne!(incremental_encoder["weights"], full_encoder["weights"]);
    // Its cost is reported: one epoch over the new targets only, fewer examples than the
    // full sync trained on.
    let (full_run, incremental_run) = (&first["encoder"], &second["encoder"]);
    assert_eq!(incremental_run["epochs"], 1);
    assert!(full_run["epochs"].as_u64().unwrap() >= 1);
    let examples = |run: &serde_json::Value| run["examples"].as_u64().unwrap();
    assert!(examples(incremental_run) > 0);
    assert!(examples(incremental_run) < examples(full_run));
    assert!(
        incremental_run["seconds"].as_f64().unwrap() <= second["train_seconds"].as_f64().unwrap()
    );
    let current = std::fs::read_to_string(dir.path().join("kv/models/current")).unwrap();
    assert_eq!(second["version"].as_str(), Some(current.as_str()));
}

#[test]
fn forget_deletes_a_visitor_and_expired_events_and_the_next_sync_refits() {
    let dir = tmp();
    let db = dir.path().join("events.db");
    let csv = dir.path().join("events.csv");
    write_events(&csv, 30, 20);
    ok(&run(&["import", csv.to_str().unwrap()], &db));
    let kv = format!("dir:{}", dir.path().join("kv").display());
    let work = dir.path().join("work");
    let sync = || {
        let args = [
            "sync",
            "--to",
            &kv,
            "--work-dir",
            work.to_str().unwrap(),
            "--epochs",
            "2",
            "--dim",
            "8",
            "--margin",
            "1",
            "--json",
        ];
        serde_json::from_str::<serde_json::Value>(&ok(&run(&args, &db))).unwrap()
    };
    assert_eq!(sync()["mode"], "full");

    let forget = |args: &[&str]| {
        let mut all = vec!["forget", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str::<serde_json::Value>(&ok(&run(&all, &db))).unwrap()
    };
    assert_eq!(forget(&["--user", "u3"])["deleted_by_user"], 20);
    assert_eq!(forget(&["--user", "u3"])["deleted_by_user"], 0);
    let bytes = std::fs::read(&db).unwrap();
    // A record stores the user next to the item ("u3" then "m12"); there is no user u30-u39.
    assert!(
        !bytes.windows(3).any(|w| w == b"u3m"),
        "no copy left in the file"
    );
    // Every synthetic event is from 2001: a 1-day retention window deletes them all.
    assert_eq!(forget(&["--older-than-days", "1"])["deleted_expired"], 580);
    let none = run(&["forget"], &db);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--user"));

    // Deleting a visitor forces the next sync to refit from scratch (with new events to learn).
    write_events(&csv, 30, 20);
    ok(&run(&["import", csv.to_str().unwrap()], &db));
    ok(&run(&["forget", "--user", "u4"], &db));
    let after = sync();
    assert_eq!(
        (after["status"].as_str(), after["mode"].as_str()),
        (Some("published"), Some("full"))
    );
}
