//! `central-sync serve`: the ingest endpoint, /healthz and /metrics.

use super::Output;
use crate::event_log::EventLog;
use crate::{serve, store};
use anyhow::Result;

/// The arguments of `central-sync serve`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub addr: String,
    /// Bearer token clients must send.
    #[arg(long, env = "EDGEREC_INGEST_TOKEN", hide_env_values = true)]
    pub token: String,
}

pub fn run(args: Args, global: &Output) -> Result<i32> {
    let Args { addr, token } = args;
    anyhow::ensure!(
        token.len() >= 8,
        "the ingest token must be at least 8 characters"
    );
    let store = store::Store::open(&global.db)?;
    let sink = match &global.event_log {
        EventLog::Sqlite(_) => serve::Sink::Sqlite,
        EventLog::Kafka { brokers, topic } => {
            serve::Sink::Kafka(crate::kafka::Producer::new(brokers, topic)?)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The producer's delivery futures and the server share this runtime.
    let _guard = rt.enter();
    rt.block_on(serve::run(store, sink, &addr, token))?;
    Ok(0)
}
