//! `central-sync ope` through its binary: a simulated log whose true answer is known, and the
//! Open Bandit sample (fetched by setup), where the uniform-random policy's click rate is
//! estimated from the Thompson-sampling logs and checked against the random logs.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn central(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_central-sync"))
        .env_remove("RUST_LOG")
        .args(["--log", "warn"])
        .args(args)
        .output()
        .expect("run central-sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ope(args: &[&str]) -> Value {
    let mut all = vec!["--json", "ope"];
    all.extend_from_slice(args);
    serde_json::from_slice(&central(&all)).expect("JSON report")
}

fn estimate(report: &Value, name: &str) -> (f64, f64, f64) {
    let row = report["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[0] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"));
    let f = |k: &str| row[1][k].as_f64().unwrap();
    (f("estimate"), f("low"), f("high"))
}

/// 10 items with click rates 0.02, 0.04, …, 0.20 at one position; the logging policy shows
/// item i with probability ∝ e^{0.3 i}, so it favours the good items, and the logged mean
/// click rate overstates what a uniform policy would earn (0.11).
fn simulated_log(path: &Path, rows: usize) -> (f64, f64) {
    let weights: Vec<f64> = (0..10).map(|i| (0.3 * i as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut rng = edgerec::math::SplitMix64::new(11);
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "ts,user,item,position,reward,propensity").unwrap();
    let mut clicks = 0.0;
    for r in 0..rows {
        let u = rng.next_u64() as f64 / u64::MAX as f64 * total;
        let mut acc = 0.0;
        let item = (0..10)
            .find(|&i| {
                acc += weights[i];
                u < acc
            })
            .unwrap_or(9);
        let ctr = 0.02 * (item + 1) as f64;
        let click = (rng.next_u64() as f64 / (u64::MAX as f64) < ctr) as u8;
        clicks += f64::from(click);
        let p = weights[item] / total;
        writeln!(f, "{r},v{},{item},0,{click},{p}", r % 97).unwrap();
    }
    (0.11, clicks / rows as f64)
}

#[test]
fn estimates_recover_a_known_policy_value_that_the_logged_mean_misses() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.csv");
    let (truth, logged_mean) = simulated_log(&log, 20_000);
    let r = ope(&["--exposures", log.to_str().unwrap(), "--resamples", "500"]);
    assert_eq!(r["rows"], 20_000);
    let (mean_w, ess) = (
        r["mean_weight"].as_f64().unwrap(),
        r["effective_sample_size"].as_f64().unwrap(),
    );
    assert!((mean_w - 1.0).abs() < 0.03, "mean weight {mean_w}");
    assert!(ess > 5_000.0 && ess < 20_000.0, "ESS {ess}");
    for name in ["IPS", "SNIPS", "DR"] {
        let (est, low, high) = estimate(&r, name);
        assert!(
            low <= truth && truth <= high,
            "{name} {est} [{low}, {high}] vs {truth}"
        );
        assert!(
            !(low <= logged_mean && logged_mean <= high),
            "{name}'s interval [{low}, {high}] also holds the uncorrected mean {logged_mean}"
        );
    }
}

fn obd(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/obd")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh",
        p.display()
    );
    p
}

#[test]
fn open_bandit_random_policy_value_from_the_thompson_sampling_logs() {
    let (bts, random) = (obd("bts.csv"), obd("random.csv"));
    let r = ope(&[
        "--exposures",
        bts.to_str().unwrap(),
        "--on-policy-exposures",
        random.to_str().unwrap(),
    ]);
    assert_eq!(r["rows"], 10_000);
    assert_eq!(r["policy"], "uniform over 80 items");
    let observed = r["on_policy"]["estimate"].as_f64().unwrap();
    // 38 clicks in the 10,000 rows of the random logs.
    assert!((observed - 0.0038).abs() < 1e-12, "{observed}");
    for name in ["IPS", "SNIPS", "DR"] {
        let (est, low, high) = estimate(&r, name);
        assert!(
            low <= observed && observed <= high,
            "{name} {est} [{low}, {high}]"
        );
    }
    // The random logs evaluated as their own target: every weight is 1, IPS is the plain mean.
    let own = ope(&["--exposures", random.to_str().unwrap()]);
    assert_eq!(
        own["effective_sample_size"].as_f64().unwrap().round(),
        10_000.0
    );
    assert!((estimate(&own, "IPS").0 - observed).abs() < 1e-12);
}

/// A model trained by `train`, evaluated as a policy: rows logged by a uniform-random policy
/// over 40 items, where a click is likely (0.5) only when the shown item is the one the model
/// ranks first for the row's session (as `central-sync recommend` says), 0.02 otherwise. The
/// model policy's true value is 0.5; the logging policy's is about 0.03.
#[test]
fn a_trained_model_is_evaluated_as_the_edge_would_rank() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let mut f = std::fs::File::create(p("events.csv")).unwrap();
    writeln!(f, "user,item,ts").unwrap();
    let mut rng = edgerec::math::SplitMix64::new(5);
    for u in 0..60 {
        let mut item = rng.below(40);
        for t in 0..10 {
            writeln!(f, "u{u},m{item},{}", 978_300_000 + u * 1000 + t * 60).unwrap();
            item = if rng.below(10) < 8 {
                (item + 4) % 40
            } else {
                rng.below(40)
            };
        }
    }
    drop(f);
    central(&[
        "train",
        "--events",
        &p("events.csv"),
        "--out",
        &p("model"),
        "--no-tune",
        "--dim",
        "8",
        "--epochs",
        "2",
    ]);
    // 400 visitors with a one-click session each; the model's first choice from `recommend`.
    let ts = 978_400_000;
    let mut sessions = String::new();
    for v in 0..400 {
        sessions += &format!(
            "{{\"id\": \"v{v}\", \"items\": [\"m{}\"], \"ts\": {ts}}}\n",
            v % 40
        );
    }
    std::fs::write(p("sessions.jsonl"), sessions).unwrap();
    let lists = central(&[
        "recommend",
        "--model",
        &p("model"),
        "--sessions",
        &p("sessions.jsonl"),
        "--k",
        "1",
    ]);
    let first: Vec<String> = String::from_utf8(lists)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["items"][0]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(first.len(), 400);
    let mut log = std::fs::File::create(p("log.csv")).unwrap();
    writeln!(log, "ts,user,session,item,position,reward,propensity").unwrap();
    let mut rng = edgerec::math::SplitMix64::new(9);
    for round in 0..20 {
        for (v, choice) in first.iter().enumerate() {
            let shown = format!("m{}", rng.below(40));
            let ctr = if &shown == choice { 0.5 } else { 0.02 };
            let click = (rng.next_u64() as f64 / u64::MAX as f64) < ctr;
            writeln!(
                log,
                "{ts},v{v}-{round},m{},{shown},0,{},0.025",
                v % 40,
                u8::from(click)
            )
            .unwrap();
        }
    }
    drop(log);
    let r = ope(&[
        "--exposures",
        &p("log.csv"),
        "--policy",
        "model",
        "--model",
        &p("model"),
        "--resamples",
        "500",
    ]);
    assert!(
        r["policy"].as_str().unwrap().starts_with("model v"),
        "{}",
        r["policy"]
    );
    for name in ["IPS", "SNIPS", "DR"] {
        let (est, low, high) = estimate(&r, name);
        assert!(low <= 0.5 && 0.5 <= high, "{name} {est} [{low}, {high}]");
        assert!(
            low > 0.2,
            "{name} {est} [{low}, {high}] is not clear of the logging policy"
        );
    }
    let uniform = ope(&["--exposures", &p("log.csv"), "--resamples", "200"]);
    assert!(estimate(&uniform, "IPS").0 < 0.1);
    // `--policy model` without a model is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_central-sync"))
        .args(["ope", "--exposures", &p("log.csv"), "--policy", "model"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
}
