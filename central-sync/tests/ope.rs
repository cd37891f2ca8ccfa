//! `central-sync ope` through its binary: a simulated log whose true answer is known, and the
//! Open Bandit sample (fetched by setup), where the uniform-random policy's click rate is
//! estimated from the Thompson-sampling logs and checked against the random logs.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ope(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_central-sync"))
        .env_remove("RUST_LOG")
        .args(["--log", "warn", "--json", "ope"])
        .args(args)
        .output()
        .expect("run central-sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
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
