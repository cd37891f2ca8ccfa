//! Where events live: the embedded SQLite log (the default), or a Kafka topic when one machine
//! is outgrown. `--event-log sqlite:PATH | kafka://HOST:PORT[,HOST:PORT...]/TOPIC`.
//!
//! With Kafka, the topic is the log of record: `serve` and `import` append to it, and `sync`
//! reads what arrived since its consumer group's committed offsets into its local SQLite store
//! (the `--db` file, deduplicated by event id), trains from that store, and commits the offsets
//! only after the model is published or held back by the gate. A crash anywhere before the
//! commit re-reads those messages, and the id deduplication makes the re-read a no-op.

use anyhow::{bail, Context as _, Result};
use std::path::PathBuf;

/// A parsed `--event-log` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventLog {
    Sqlite(PathBuf),
    Kafka { brokers: String, topic: String },
}

impl EventLog {
    /// Parses `sqlite:PATH` or `kafka://HOST:PORT[,HOST:PORT...]/TOPIC`.
    pub fn parse(url: &str) -> Result<EventLog> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("{url:?}: sqlite: needs a file path (sqlite:.edgerec/events.db)");
            }
            return Ok(EventLog::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("kafka://") {
            let (brokers, topic) = rest.split_once('/').with_context(|| {
                format!("{url:?}: kafka:// needs a topic (kafka://HOST:PORT/TOPIC)")
            })?;
            let valid_topic = !topic.is_empty()
                && topic.len() <= 249
                && topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
                bail!("{url:?}: brokers must be HOST:PORT[,HOST:PORT...]");
            }
            if !valid_topic {
                bail!("{url:?}: a topic name is 1-249 characters of [a-zA-Z0-9._-]");
            }
            return Ok(EventLog::Kafka {
                brokers: brokers.to_string(),
                topic: topic.to_string(),
            });
        }
        bail!("{url:?}: the event log is sqlite:PATH or kafka://HOST:PORT/TOPIC")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_and_refuses_the_rest() {
        assert_eq!(
            EventLog::parse("sqlite:.edgerec/events.db").unwrap(),
            EventLog::Sqlite(".edgerec/events.db".into())
        );
        assert_eq!(
            EventLog::parse("kafka://127.0.0.1:9092,10.0.0.2:9092/edgerec.events").unwrap(),
            EventLog::Kafka {
                brokers: "127.0.0.1:9092,10.0.0.2:9092".into(),
                topic: "edgerec.events".into()
            }
        );
        for bad in [
            "sqlite:",
            "kafka://127.0.0.1:9092",
            "kafka://127.0.0.1:9092/",
            "kafka:///events",
            "kafka://host/events",
            "kafka://h:1/bad topic",
            "postgres://x",
            "events.db",
        ] {
            assert!(EventLog::parse(bad).is_err(), "{bad}");
        }
    }
}
