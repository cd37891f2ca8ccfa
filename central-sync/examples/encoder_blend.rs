//! Does a learned sequence encoder add anything to the served model? Blends the served
//! model's full-history scores (int8, as the edge ranks, every item) with `λ ×` an encoder's
//! log-softmax over the catalog, as `tools/encoder-probe` writes it with `DUMP=path`, and
//! prints NDCG@10 per λ.
//!
//! `val`: the served model is tuned as `eval` tunes it, fitted on the events before each
//! user's 2nd-to-last and scored on that event (run the probe with `TEST=0`). `test`: refitted
//! on everything but the last event and scored on it (the probe with `TEST=1`); λ must come
//! from `val`. With `longknn` in place of the scores file, the blended signal is item-kNN
//! over the whole history instead (each item's mean cosine to every item the user had).
//!
//! ```text
//! RAYON_NUM_THREADS=1 DUMP=/tmp/enc-val.tsv tools/encoder-probe/target/release/encoder-probe data/ml-100k/events.csv
//! cargo run --release -p central-sync --example encoder_blend -- data/ml-100k/events.csv /tmp/enc-val.tsv val
//! ```

use anyhow::{bail, Context, Result};
use central_sync::eval::{self, Clicks, Split};
use central_sync::{dataset::Dataset, events, pipeline, train::TrainConfig};
use edgerec::format::Dtype;
use std::collections::HashMap;

const LAMBDAS: [f32; 12] = [
    0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0,
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: encoder_blend EVENTS.csv SCORES.tsv val|test";
    let [events_path, scores_path, mode] = args.as_slice() else {
        bail!(usage);
    };
    let test = match mode.as_str() {
        "val" => false,
        "test" => true,
        _ => bail!(usage),
    };
    let d = Dataset::from_events(&events::read_csv_strict(std::path::Path::new(events_path))?);
    let n = d.item_count();

    // The encoder's scores, by dataset item index, per user id.
    let mut encoder: HashMap<String, Vec<f32>> = HashMap::new();
    if scores_path != "longknn" {
        let text = std::fs::read_to_string(scores_path).context("scores")?;
        let mut lines = text.lines();
        let header: Vec<u32> = lines
            .next()
            .context("empty scores")?
            .split('\t')
            .map(|id| d.item_index.get(id).copied().context("unknown item"))
            .collect::<Result<_>>()?;
        for line in lines {
            let mut cells = line.split('\t');
            let user = cells.next().context("no user")?;
            let mut row = vec![f32::NEG_INFINITY; n];
            for (&i, c) in header.iter().zip(cells) {
                row[i as usize] = c.parse()?;
            }
            encoder.insert(user.to_string(), row);
        }
    }

    let cfg = pipeline::resolve_config(&d, &TrainConfig::default());
    let tuned = pipeline::tune(&d, &cfg, true)?;
    let split = Split::new(&d);
    let (train, queries) = if test {
        (&split.train_val, split.test(&d))
    } else {
        (&split.train, split.validation(&d))
    };
    let (p, t) = pipeline::fit(&d, train, &cfg, None, true, "fit")?;
    let engine = eval::build_engine(&p, &t, &cfg, Dtype::I8, &tuned.combination)?;

    // `longknn`: instead of an encoder, the mean cosine of every history item to each item
    // (item-kNN over the whole history, not the session's last clicks).
    if scores_path == "longknn" {
        let cosine = central_sync::train::item_neighbours(n, train, usize::MAX);
        for (q, &u) in queries.iter().zip(&split.users) {
            let mut row = vec![0f32; n];
            for h in q.history {
                for &(j, c) in &cosine[h.item as usize] {
                    row[j as usize] += c;
                }
            }
            let len = q.history.len().max(1) as f32;
            row.iter_mut().for_each(|x| *x /= len);
            encoder.insert(d.users[u].clone(), row);
        }
    }
    // The served model's whole ranking and the encoder's scores, per query.
    let mut served = Vec::with_capacity(queries.len());
    let mut scores = Vec::with_capacity(queries.len());
    let mut served_scale = 0f64;
    for (q, &u) in queries.iter().zip(&split.users) {
        let enc = encoder
            .get(d.users[u].as_str())
            .with_context(|| format!("no encoder scores for user {}", d.users[u]))?;
        let list = eval::engine_list_k(&engine, &d, q, Clicks::Full, n);
        let spread = list.first().map_or(0.0, |f| f.1) - list.get(10).map_or(0.0, |f| f.1);
        served_scale += f64::from(spread);
        served.push(list);
        scores.push(enc);
    }
    println!(
        "{} users; served top-1 minus 11th score, mean {:.3}",
        queries.len(),
        served_scale / queries.len().max(1) as f64
    );
    for lambda in LAMBDAS {
        let mut next = served.iter().zip(&scores);
        let m = eval::evaluate(&queries, |_| {
            next.next()
                .map_or_else(Vec::new, |(list, enc)| blended_top10(list, enc, lambda))
        });
        println!("lambda {lambda}: NDCG@10 {:.4}", m.ndcg10);
    }
    Ok(())
}

/// The 10 best of the served list by its score plus `lambda ×` the encoder's; ties keep the
/// served order (a stable sort).
fn blended_top10(served: &[(u32, f32)], encoder: &[f32], lambda: f32) -> Vec<u32> {
    let mut blended: Vec<(f32, u32)> = served
        .iter()
        .map(|&(i, s)| (s + lambda * encoder[i as usize], i))
        .collect();
    blended.sort_by(|a, b| b.0.total_cmp(&a.0));
    blended.into_iter().take(10).map(|(_, i)| i).collect()
}
