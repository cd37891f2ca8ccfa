//! Scores a neighbour table alone on the validation split of an event log: each user's
//! second-to-last interaction is the target, the table is fitted on everything before the last
//! two, and items rank by `Σ_k 0.7^k nb(last_k, j)` over the last 5 clicks (the edge's neighbour
//! boost), the history excluded. This is how `neighbour_decay` and `neighbour_reach` were chosen
//! (validation only; docs/FIGURES.md).
//!
//! ```text
//! cargo run --release -p central-sync --example neighbour_table -- data/ml-100k/events.csv \
//!     cosine 0.97:100 0.95:150 1:20
//! ```
//! `cosine` is the item-kNN table; `DECAY:REACH` a sequence table (`REACH` may be `all`), and
//! `DECAY:REACH:POPULARITY` one with another `neighbour_popularity` than the cosine's 0.5.

use anyhow::{bail, Context, Result};
use central_sync::{dataset, eval, events, train};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: neighbour_table EVENTS.csv TABLE...")?;
    let events = events::read_csv_strict(std::path::Path::new(&path))?;
    let d = dataset::Dataset::from_events(&events);
    let split = eval::Split::new(&d);
    let validation = split.validation(&d);
    let n = d.item_count();
    for spec in args {
        let table = if spec == "cosine" {
            train::item_neighbours(n, &split.train, usize::MAX)
        } else {
            let mut parts = spec.split(':');
            let (Some(decay), Some(reach)) = (parts.next(), parts.next()) else {
                bail!("{spec}: expected cosine, DECAY:REACH or DECAY:REACH:POPULARITY");
            };
            let popularity = parts.next().map_or(Ok(0.5), str::parse)?;
            let reach = if reach == "all" {
                usize::MAX
            } else {
                reach.parse()?
            };
            train::sequence_neighbours(
                n,
                &split.train,
                usize::MAX,
                decay.parse()?,
                reach,
                popularity,
            )
        };
        let m = eval::evaluate(&validation, |q| eval::neighbour_boost_top10(&table, n, q));
        println!(
            "{spec:>12}: validation NDCG@10 {:.4}, HR@10 {:.4}",
            m.ndcg10, m.hr10
        );
    }
    Ok(())
}
