//! `central-sync ab report`: the arms of an A/B split compared on the exposure log.

use super::{print_json, Output};
use crate::{ab, exposure_log, kv, store::Store};
use anyhow::Result;
use edgerec_contract::pointer::Pointer;

/// The arguments of `central-sync ab`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Per arm: visitors, lists, clicks, CTR and conversions; each arm against the control
    /// with a confidence interval; the sample-ratio-mismatch check.
    Report(ReportArgs),
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The split that ran (`V1=W1,V2=W2`; the first arm is the control). Default: the split
    /// `models/current` names in `--from`, else equal shares of the arms in the log.
    #[arg(long, value_parser = |s: &str| Pointer::parse(s))]
    pub split: Option<Pointer>,
    /// Where the split is published (`local`, `cloudflare`, `dir:PATH`), to read it from.
    #[arg(long)]
    pub from: Option<String>,
    /// Two-sided confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Command::Report(args) = args.command;
    anyhow::ensure!(
        args.level > 0.0 && args.level < 1.0,
        "--level must be in (0, 1)"
    );
    let split = match (args.split, &args.from) {
        (Some(s), _) => Some(s),
        (None, Some(target)) => kv::pointer(kv::open(target)?.as_mut())?.filter(Pointer::is_split),
        (None, None) => None,
    };
    let store = Store::open(&global.db)?;
    let events: Vec<_> = store.events_after(0)?.into_iter().map(|(_, e)| e).collect();
    let rows = exposure_log::join(&store.exposures()?, &events);
    let report = ab::compare(&rows, &events, split.as_ref(), args.level);
    anyhow::ensure!(
        report.arms.iter().any(|a| a.lists > 0),
        "no exposures with an arm in the log: the edge logs arms while models/current is a split"
    );
    if global.json {
        print_json(&report)?;
        return Ok(0);
    }
    println!(
        "{:<28} {:>7} {:>9} {:>8} {:>8} {:>8} {:>9} {:>11}",
        "arm", "share", "visitors", "lists", "clicked", "CTR", "± s.e.", "conversions"
    );
    for a in &report.arms {
        println!(
            "{:<28} {:>6.1}% {:>9} {:>8} {:>8} {:>7.2}% {:>8.2}% {:>11}",
            a.arm,
            100.0 * a.expected_share,
            a.visitors,
            a.lists,
            a.lists_clicked,
            100.0 * a.ctr,
            100.0 * a.ctr_se,
            a.conversions
        );
    }
    for d in &report.differences {
        println!(
            "{} vs {}: CTR {:+.2} points [{:+.2}, {:+.2}] ({:.0}% interval), {:+.1}% relative, p = {:.3}",
            d.arm,
            d.control,
            100.0 * d.ctr_difference,
            100.0 * d.low,
            100.0 * d.high,
            100.0 * report.level,
            100.0 * d.relative,
            d.p_value
        );
    }
    if let Some(s) = &report.srm {
        println!(
            "sample ratio: chi-squared {:.2} ({} df), p = {:.3}: {}",
            s.chi_squared,
            s.degrees_of_freedom,
            s.p_value,
            if s.mismatch {
                "MISMATCH (assignment or logging is broken; do not trust the comparison)"
            } else {
                "consistent with the split"
            }
        );
    }
    match &report.winner {
        Some(w) => println!("better arm: {w}"),
        None => println!("better arm: none yet (the intervals do not separate the arms)"),
    }
    Ok(0)
}
