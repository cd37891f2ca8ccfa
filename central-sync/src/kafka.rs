//! Kafka as the event log, through librdkafka (the `rdkafka` crate): works unchanged against
//! Apache Kafka, Redpanda, a managed Kafka or tansu (what the tests start).
//!
//! One message per event: the key is the event's user (the edge's visitor id), so one visitor's
//! events stay ordered in one partition; the value is the event as the contract's JSON, with an
//! id always set (the ingest derives one when a client sent none), so a consumer removes
//! duplicates by id. The producer is idempotent with `acks=all`: `append` returns only once the
//! broker has every event.

use crate::events::Event;
use crate::store::{synthetic_id, Store};
use anyhow::{Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a produce may wait for the broker before it counts as failed.
const DELIVERY_TIMEOUT_MS: &str = "15000";

/// Appends events to a topic.
pub struct Producer {
    inner: FutureProducer,
    topic: String,
}

impl Producer {
    pub fn new(brokers: &str, topic: &str) -> Result<Producer> {
        let inner: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", DELIVERY_TIMEOUT_MS)
            .set("linger.ms", "5")
            .create()
            .with_context(|| format!("creating a Kafka producer for {brokers}"))?;
        Ok(Producer {
            inner,
            topic: topic.to_string(),
        })
    }

    /// Sends every event and waits until the broker acknowledged all of them (`acks=all`).
    /// Events without an id get the same derived id the SQLite log would give them.
    pub async fn append(&self, events: &[Event]) -> Result<usize> {
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let mut e = e.clone();
            if e.id.is_none() {
                e.id = Some(synthetic_id(&e));
            }
            let payload = serde_json::to_vec(&e)?;
            let record = FutureRecord::to(&self.topic)
                .key(e.user.as_bytes())
                .payload(&payload);
            // Queue-full waits up to the delivery timeout; the broker's answer comes after.
            let delivery = self
                .inner
                .send_result(record)
                .map_err(|(err, _)| anyhow::anyhow!("queueing an event for Kafka: {err}"))?;
            pending.push(delivery);
        }
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => anyhow::bail!("Kafka did not acknowledge an event: {err}"),
                Err(_) => anyhow::bail!("the Kafka producer shut down before acknowledging"),
            }
        }
        Ok(events.len())
    }
}

/// What one `catch_up` read.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Consumed {
    /// Messages read from the topic.
    pub messages: usize,
    /// Events new to the local store.
    pub stored: usize,
    /// Events the store already had (a producer retry, or a re-read after a crash).
    pub duplicates: usize,
    /// Messages skipped as not valid events (each logged with its reason).
    pub malformed: usize,
    /// Seconds from the start of reading to the last message read (the quiet wait that
    /// ends a read is not included).
    pub read_seconds: f64,
}

/// Copies a topic into the local store from the offsets committed under a consumer group.
///
/// `sync` is the only trainer, so the reader assigns itself every partition and keeps its
/// position in the group's committed offsets, rather than joining the group's rebalancing:
/// training can take longer than a group member may go without polling, and a crashed member
/// would hold up the next run's rebalance until the broker evicts it.
pub struct GroupReader {
    inner: BaseConsumer,
    topic: String,
    /// Next offset per partition, after what was read.
    next: BTreeMap<i32, i64>,
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

impl GroupReader {
    /// Assigns every partition of `topic`, each from the group's committed offset, or from the
    /// start when `from_start` (a new local store must see the whole log) or nothing is
    /// committed.
    pub fn new(brokers: &str, topic: &str, group: &str, from_start: bool) -> Result<GroupReader> {
        let inner: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .with_context(|| format!("creating a Kafka consumer for {brokers}"))?;
        let metadata = inner
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .with_context(|| format!("reading the metadata of {topic} from {brokers}"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        anyhow::ensure!(
            !partitions.is_empty(),
            "topic {topic} has no partitions (does it exist?)"
        );
        let mut wanted = TopicPartitionList::new();
        for &p in &partitions {
            wanted.add_partition(topic, p);
        }
        let committed = inner
            .committed_offsets(wanted, METADATA_TIMEOUT)
            .with_context(|| format!("reading group {group}'s offsets"))?;
        let mut assignment = TopicPartitionList::new();
        for element in committed.elements() {
            let start = match element.offset() {
                Offset::Offset(o) if !from_start => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            assignment.add_partition_offset(topic, element.partition(), start)?;
        }
        inner
            .assign(&assignment)
            .context("assigning the topic's partitions")?;
        Ok(GroupReader {
            inner,
            topic: topic.to_string(),
            next: BTreeMap::new(),
        })
    }

    /// Reads everything after the assigned offsets into `store`, deduplicated by id, until the
    /// topic was quiet for `idle` or `limit` passed. Commits nothing. (Quiet, not the high
    /// watermarks: some brokers report those low, which would stop the read early.)
    pub fn catch_up(
        &mut self,
        store: &mut Store,
        idle: Duration,
        limit: Duration,
    ) -> Result<Consumed> {
        let started = Instant::now();
        let mut last_message = Instant::now();
        let mut consumed = Consumed::default();
        let mut batch = Vec::new();
        while started.elapsed() < limit {
            let Some(message) = self.inner.poll(Duration::from_millis(200)) else {
                if last_message.elapsed() >= idle {
                    break;
                }
                continue;
            };
            let message = message.context("reading from Kafka")?;
            last_message = Instant::now();
            consumed.messages += 1;
            self.next.insert(message.partition(), message.offset() + 1);
            match parse_message(message.payload()) {
                Ok(event) => batch.push(event),
                Err(why) => {
                    consumed.malformed += 1;
                    tracing::warn!(
                        partition = message.partition(),
                        offset = message.offset(),
                        "skipping a malformed message: {why}"
                    );
                }
            }
            if batch.len() >= 10_000 {
                flush(store, &mut batch, &mut consumed)?;
            }
        }
        flush(store, &mut batch, &mut consumed)?;
        consumed.read_seconds = (last_message - started).as_secs_f64().max(0.0);
        Ok(consumed)
    }

    /// Commits, under the group, the offsets after everything `catch_up` read.
    pub fn commit(&self) -> Result<()> {
        if self.next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in &self.next {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        }
        self.inner
            .commit(&list, CommitMode::Sync)
            .context("committing Kafka offsets")
    }
}

fn flush(store: &mut Store, batch: &mut Vec<Event>, consumed: &mut Consumed) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let inserted = store.insert(batch)?;
    consumed.stored += inserted.stored;
    consumed.duplicates += inserted.duplicates;
    batch.clear();
    Ok(())
}

/// One message's event, validated by the contract's rules like any other event.
fn parse_message(payload: Option<&[u8]>) -> Result<Event, String> {
    let payload = payload.ok_or("no payload")?;
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    edgerec_contract::events::validate_logged_json(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_validated_like_any_event() {
        let ok = br#"{"id":"a","user":"v1","item":"50","ts":978300760,"type":"click"}"#;
        assert_eq!(parse_message(Some(ok)).unwrap().item, "50");
        for bad in [
            &b"not json"[..],
            br#"{"user":"v1","item":"50","ts":5}"#,
            br#"{"user":"v1","ts":978300760}"#,
            br#"[1,2]"#,
            br#"{"user":"v1","item":"50","ts":978300760,"colour":"red"}"#,
        ] {
            assert!(
                parse_message(Some(bad)).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_message(None).is_err());
    }
}
