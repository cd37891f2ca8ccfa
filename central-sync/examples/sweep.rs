//! Validation NDCG@10 by session length for training settings given as JSON overrides of
//! `TrainConfig` (everything else at its default), on several hold-out positions. Each setting
//! is fitted and tuned on validation as `central-sync eval` does before it refits for the test
//! split; the test split is never used.
//!
//! One hold-out position (943 users on MovieLens-100k) moves by about ±0.003 NDCG@10 with the
//! seed alone, as much as most changes worth trying. So `--holdouts H` repeats each setting on
//! the log without each user's last 0, 1, …, H−1 events (ties in time keep file order, as in
//! `eval`): the validation target is then the 2nd-, 3rd-, … to-last event. Seeds go in the JSON.
//! The last lines print each setting's mean over every run.
//!
//! Those figures are in sample: the profiles were chosen on the very targets they are scored
//! on. With `--refit` each run is instead `central-sync eval`'s whole protocol (tune, refit on
//! everything but the last event, score the last) on the log without each user's last 1, 2,
//! …, H events, so the scored targets are the 2nd-, 3rd-, … to-last events, which the tuning
//! never saw (and still never the test event). That compares tuning settings themselves, such
//! as `tuning_holdouts`; each run also prints the best baseline per length (as `eval` names it),
//! and the means end with edgerec's ratio to them. Either way each run prints the profiles
//! the tuner chose (embed, context, neighbours, transitions, trend per length).
//!
//! ```text
//! cargo run --release -p central-sync --example sweep -- data/ml-100k/events.csv --holdouts 3 \
//!     '{"seed":7}' '{"seed":11}' '{"dim":64,"seed":7}' '{"dim":64,"seed":11}'
//! ```

use anyhow::{Context, Result};
use central_sync::{dataset::Dataset, eval::Clicks, events, pipeline, train::TrainConfig};
use std::collections::HashMap;

/// The events without each user's last `h` (by time, ties in file order).
fn without_last(events: &[events::Event], h: usize) -> Vec<events::Event> {
    let mut by_user: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        by_user.entry(e.user.as_str()).or_default().push(i);
    }
    let mut dropped = vec![false; events.len()];
    for indices in by_user.values_mut() {
        indices.sort_by_key(|&i| events[i].ts);
        for &i in indices.iter().rev().take(h) {
            dropped[i] = true;
        }
    }
    events
        .iter()
        .zip(dropped)
        .filter(|(_, d)| !d)
        .map(|(e, _)| e.clone())
        .collect()
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: sweep EVENTS.csv [--holdouts H] [--refit] JSON...";
    let mut holdouts = 1;
    if let Some(at) = args.iter().position(|a| a == "--holdouts") {
        holdouts = args.get(at + 1).context(usage)?.parse().context(usage)?;
        args.drain(at..at + 2);
    }
    let refit = args.iter().any(|a| a == "--refit");
    args.retain(|a| a != "--refit");
    let path = args.first().context(usage)?.clone();
    let all = events::read_csv_strict(std::path::Path::new(&path))?;
    // A refit run scores the last event of its log, so its log ends one event earlier.
    let first = usize::from(refit);
    let datasets: Vec<Dataset> = (first..first + holdouts)
        .map(|h| Dataset::from_events(&without_last(&all, h)))
        .collect();
    let lengths: Vec<String> = Clicks::TABLE.iter().map(|c| c.label()).collect();
    let what = if refit {
        "tuned, refitted, scored out of sample"
    } else {
        "as tuned, in sample"
    };
    println!(
        "validation NDCG@10 ({what}) by clicks: {}",
        lengths.join(" / ")
    );
    let mut means = Vec::new();
    for spec in &args[1..] {
        let cfg: TrainConfig = serde_json::from_str(spec).with_context(|| spec.clone())?;
        let mut sum = vec![0f64; Clicks::TABLE.len()];
        // With --refit: the best baseline's figure per length, summed over the runs.
        let mut baseline_sum = vec![0f64; Clicks::TABLE.len()];
        for (h, d) in datasets.iter().enumerate() {
            let started = std::time::Instant::now();
            let mut baselines = Vec::new();
            let (scores, tuned): (Vec<f64>, _) = if refit {
                let report = pipeline::evaluate(d, &cfg, true)?;
                for (r, s) in report.by_session_length.iter().zip(&mut baseline_sum) {
                    let (ndcg, name) = r.best_baseline();
                    *s += ndcg;
                    baselines.push(format!("{ndcg:.4} {name}"));
                }
                let rows = report.by_session_length.iter();
                (rows.map(|r| r.edgerec_int8.ndcg10).collect(), report.tuned)
            } else {
                let tuned = pipeline::tune(d, &cfg, true)?;
                (tuned.validation.iter().map(|m| m.ndcg10).collect(), tuned)
            };
            let ndcg: Vec<String> = scores
                .iter()
                .zip(&mut sum)
                .map(|(m, s)| {
                    *s += m;
                    format!("{m:.4}")
                })
                .collect();
            println!(
                "{spec}, without the last {}: {} ({:.1} s)",
                h + first,
                ndcg.join(" / "),
                started.elapsed().as_secs_f64()
            );
            if !baselines.is_empty() {
                println!("  best baseline: {}", baselines.join(" / "));
            }
            // What the tuner reached, so a run's figures can be traced to the mix behind them.
            let profiles: Vec<String> = tuned
                .combination
                .profiles
                .iter()
                .map(|p| format!("{:?}", p.to_array()))
                .collect();
            println!("  profiles: {}", profiles.join(" / "));
        }
        means.push((spec, sum, baseline_sum));
    }
    for (spec, sum, baseline_sum) in means {
        let mean: Vec<String> = sum
            .iter()
            .map(|s| format!("{:.4}", s / holdouts as f64))
            .collect();
        println!(
            "mean over {holdouts} hold-outs, {spec}: {}",
            mean.join(" / ")
        );
        if refit {
            // The ratio of the means, as `eval` prints edgerec against its best baseline.
            let ratio: Vec<String> = sum
                .iter()
                .zip(&baseline_sum)
                .map(|(e, b)| format!("{:.3}x", e / b))
                .collect();
            println!("  vs the best baseline of each run: {}", ratio.join(" / "));
        }
    }
    Ok(())
}
