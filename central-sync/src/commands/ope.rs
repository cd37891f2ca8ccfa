//! `central-sync ope`: off-policy evaluation of a target policy from a logged exposure CSV.

use super::{print_json, Output};
use crate::model;
use crate::ope::{self, Bootstrap, Policy};
use anyhow::Result;
use std::path::PathBuf;

/// The arguments of `central-sync ope`.
#[derive(clap::Args)]
pub struct Args {
    /// Exposure log of the logging policy: CSV with item,reward,propensity (and optional
    /// ts,user,position).
    #[arg(long)]
    pub exposures: PathBuf,
    /// The policy to evaluate: `uniform` (every item of the log equally likely at each
    /// position) or `model` (the ranking of `--model` for each row's session and time).
    #[arg(long, default_value = "uniform")]
    pub policy: PolicyArg,
    /// The model directory of `--policy model`.
    #[arg(long, required_if_eq("policy", "model"))]
    pub model: Option<PathBuf>,
    /// An exposure log the target policy produced itself: its observed mean reward is printed
    /// beside the estimates, with whether each interval covers it.
    #[arg(long)]
    pub on_policy_exposures: Option<PathBuf>,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Two-sided interval level.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Pseudo-rows of the position's mean reward in each cell of DR's reward model.
    #[arg(long, default_value_t = ope::DEFAULT_PRIOR_ROWS)]
    pub prior_rows: f64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    Uniform,
    Model,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let log = ope::read_log(&args.exposures)?;
    let on_policy = args
        .on_policy_exposures
        .as_deref()
        .map(ope::read_log)
        .transpose()?;
    let policy = match (args.policy, &args.model) {
        (PolicyArg::Uniform, _) => Policy::uniform_over(&log),
        (PolicyArg::Model, Some(dir)) => {
            let (manifest, engine) = model::load_engine(dir)?;
            Policy::Model {
                engine: Box::new(engine),
                label: format!("model {} ({})", manifest.version, dir.display()),
            }
        }
        (PolicyArg::Model, None) => anyhow::bail!("--policy model needs --model DIR"),
    };
    let bootstrap = Bootstrap {
        resamples: args.resamples,
        level: args.level,
        seed: args.seed,
    };
    let report = ope::evaluate(
        &log,
        &policy,
        args.prior_rows,
        bootstrap,
        on_policy.as_deref(),
    )?;
    if global.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(0)
}

fn print_report(r: &ope::Report) {
    let pct = r.level * 100.0;
    println!(
        "policy: {} · {} logged rows · effective sample size {:.1} · mean weight {:.3} (≈1 when the propensities are right) · max weight {:.1}",
        r.policy, r.rows, r.effective_sample_size, r.mean_weight, r.max_weight
    );
    println!(
        "| estimator | value | {pct:.0}% interval ({} resamples) |",
        r.resamples
    );
    println!("|---|---|---|");
    for (name, i) in &r.estimates {
        let covers = match r.on_policy {
            Some(o) if i.contains(o.estimate) => " · covers the observed value",
            Some(_) => " · misses the observed value",
            None => "",
        };
        println!(
            "| {name} | {:.5} | [{:.5}, {:.5}]{covers} |",
            i.estimate, i.low, i.high
        );
    }
    if let Some(o) = r.on_policy {
        println!(
            "| observed (on-policy log) | {:.5} | [{:.5}, {:.5}] |",
            o.estimate, o.low, o.high
        );
    }
    println!("DR and DM intervals hold the cross-fitted reward model fixed, so they leave out its own estimation error.");
}
