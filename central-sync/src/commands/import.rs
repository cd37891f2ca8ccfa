//! `central-sync import`: import an event CSV into the event log.

use super::{print_json, Output};
use crate::event_log::EventLog;
use crate::{events, store};
use anyhow::Result;
use std::path::PathBuf;

/// The arguments of `central-sync import`.
#[derive(clap::Args)]
pub struct Args {
    /// Event CSV (user,item,ts[,id,type,value,lat,lon,geohash,device,tz_offset_min]).
    pub file: PathBuf,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args { file } = args;
    let bar = if global.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    let (mut events, errors) = events::read_csv(&file, |n| {
        if n % 10_000 == 0 {
            bar.set_message(format!("read {n} rows"));
            bar.tick();
        }
    })?;
    bar.finish_and_clear();
    for e in &mut events {
        if e.id.is_none() {
            e.id = Some(store::synthetic_id(e));
        }
    }
    let (inserted, destination) = match &global.event_log {
        EventLog::Sqlite(path) => (
            store::Store::open(path)?.insert(&events)?,
            path.display().to_string(),
        ),
        EventLog::Kafka { brokers, topic } => {
            let producer = crate::kafka::Producer::new(brokers, topic)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let _guard = rt.enter();
            for chunk in events.chunks(10_000) {
                rt.block_on(producer.append(chunk))?;
            }
            // Duplicates are removed by id when `sync` reads the topic.
            let sent = store::Inserted {
                stored: events.len(),
                duplicates: 0,
            };
            (sent, format!("kafka://{brokers}/{topic}"))
        }
    };
    for e in errors.iter().take(20) {
        tracing::warn!("{}:{}: {}", file.display(), e.line, e.message);
    }
    if global.json {
        print_json(
            &serde_json::json!({"stored": inserted.stored, "duplicates": inserted.duplicates, "rejected": errors}),
        )?;
    } else {
        println!(
            "imported {}: {} stored, {} duplicates, {} rejected rows{} -> {}",
            file.display(),
            inserted.stored,
            inserted.duplicates,
            errors.len(),
            if errors.len() > 20 {
                " (first 20 shown above)"
            } else {
                ""
            },
            destination
        );
    }
    Ok(if errors.is_empty() { 0 } else { 2 })
}
