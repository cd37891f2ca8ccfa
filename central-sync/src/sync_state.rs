//! The sync bookkeeping, kept in the event log's state table: one typed record written by
//! `sync` and `rollback` and read by `serve`'s `/metrics`. Each field is one row named like the
//! field, so a log written by an older release still loads (a row that does not parse reads as
//! unset) and nothing else spells a key.

use crate::eval::Metrics;
use crate::store::Store;
use crate::train::Combination;
use anyhow::Result;

/// What `sync` remembers between runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncState {
    /// The last event (arrival seq) the published model has seen: every event up to it was
    /// trained on or is in `pending_holdout`.
    pub last_seq: i64,
    /// Seqs of the events the published model was gated on and therefore not trained on; the
    /// next incremental sync trains on them.
    pub pending_holdout: Vec<i64>,
    /// The version `sync` (or `rollback`) last made current.
    pub model_version: Option<String>,
    /// Whether the last sync published (false: held back by the gate).
    pub published: Option<bool>,
    /// Incremental syncs since the last full fit.
    pub syncs_since_full: u32,
    /// Set by `rollback`: the saved warm-start parameters belong to another version, so the
    /// next sync fits from scratch.
    pub force_full: bool,
    /// The tuned per-length profiles, reused by incremental syncs.
    pub combination: Option<Combination>,
    /// The neighbour table's popularity discount those profiles were tuned with (they weigh
    /// that table). Unset for profiles saved before it was chosen: those had the cosine, 0.5.
    pub neighbour_popularity: Option<f32>,
    /// Hold-out NDCG@10 / HR@10 of the published model: the gate's reference.
    pub published_ndcg10: Option<f64>,
    pub published_hr10: Option<f64>,
    /// Hold-out NDCG@10 / HR@10 of the last candidate, published or not.
    pub candidate_ndcg10: Option<f64>,
    pub candidate_hr10: Option<f64>,
    /// Hold-out NDCG@10 of the served model on the last candidate's hold-out (what the gate
    /// compared against).
    pub served_ndcg10: Option<f64>,
    pub train_seconds: Option<f64>,
    pub popularity_psi: Option<f64>,
    /// KS statistics of the last candidate's top-10 scores and item popularity against the
    /// served model's (unset when nothing was served).
    pub score_ks: Option<f64>,
    pub popularity_ks: Option<f64>,
    /// Unix seconds of the last sync run.
    pub last_sync_ts: Option<i64>,
}

impl SyncState {
    /// Reads the record; missing or unparsable rows are unset.
    pub fn load(store: &Store) -> Result<SyncState> {
        let get = |key: &str| store.get_state(key);
        fn parse<T: std::str::FromStr>(v: Option<String>) -> Option<T> {
            v.and_then(|s| s.parse().ok())
        }
        Ok(SyncState {
            last_seq: parse(get("last_seq")?).unwrap_or(0),
            pending_holdout: get("pending_holdout")?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            model_version: get("model_version")?,
            published: get("published")?.map(|v| v == "1"),
            syncs_since_full: parse(get("syncs_since_full")?).unwrap_or(0),
            force_full: get("force_full")?.as_deref() == Some("1"),
            combination: get("combination")?.and_then(|s| serde_json::from_str(&s).ok()),
            neighbour_popularity: parse(get("neighbour_popularity")?),
            // Older releases kept the last candidate's score as `eval_ndcg10`.
            published_ndcg10: parse(get("published_ndcg10")?).or(parse(get("eval_ndcg10")?)),
            published_hr10: parse(get("published_hr10")?).or(parse(get("eval_hr10")?)),
            candidate_ndcg10: parse(get("candidate_ndcg10")?),
            candidate_hr10: parse(get("candidate_hr10")?),
            served_ndcg10: parse(get("served_ndcg10")?),
            train_seconds: parse(get("train_seconds")?),
            popularity_psi: parse(get("popularity_psi")?),
            score_ks: parse(get("score_ks")?),
            popularity_ks: parse(get("popularity_ks")?),
            last_sync_ts: parse(get("last_sync_ts")?),
        })
    }

    /// Writes every set field (one transaction per row, as the store does).
    pub fn save(&self, store: &Store) -> Result<()> {
        let mut rows: Vec<(&str, String)> = vec![
            ("last_seq", self.last_seq.to_string()),
            ("syncs_since_full", self.syncs_since_full.to_string()),
            ("force_full", u8::from(self.force_full).to_string()),
            (
                "pending_holdout",
                serde_json::to_string(&self.pending_holdout)?,
            ),
        ];
        let mut opt = |key: &'static str, v: Option<String>| {
            if let Some(v) = v {
                rows.push((key, v));
            }
        };
        opt("model_version", self.model_version.clone());
        opt("published", self.published.map(|p| u8::from(p).to_string()));
        opt(
            "combination",
            self.combination
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
        );
        opt(
            "neighbour_popularity",
            self.neighbour_popularity.map(|e| e.to_string()),
        );
        let num = |v: Option<f64>| v.map(|x| format!("{x:.6}"));
        opt("published_ndcg10", num(self.published_ndcg10));
        opt("published_hr10", num(self.published_hr10));
        opt("candidate_ndcg10", num(self.candidate_ndcg10));
        opt("candidate_hr10", num(self.candidate_hr10));
        opt("served_ndcg10", num(self.served_ndcg10));
        opt("train_seconds", num(self.train_seconds));
        opt("popularity_psi", num(self.popularity_psi));
        opt("score_ks", num(self.score_ks));
        opt("popularity_ks", num(self.popularity_ks));
        opt("last_sync_ts", self.last_sync_ts.map(|t| t.to_string()));
        for (key, value) in rows {
            store.set_state(key, &value)?;
        }
        Ok(())
    }

    /// The last candidate's drift against the served model.
    pub fn record_drift(&mut self, drift: Option<&crate::drift::ModelDrift>) {
        self.score_ks = drift.map(|d| d.score.statistic);
        self.popularity_ks = drift.map(|d| d.popularity.statistic);
    }

    /// A scored candidate, published or not.
    pub fn record_candidate(&mut self, scored: &Metrics, served: Option<&Metrics>, secs: f64) {
        self.candidate_ndcg10 = Some(scored.ndcg10);
        self.candidate_hr10 = Some(scored.hr10);
        self.served_ndcg10 = served.map(|m| m.ndcg10);
        self.train_seconds = Some(secs);
    }

    /// A published candidate: the cursor moves to the last event it saw, and the events it was
    /// gated on wait for the next sync's training.
    pub fn record_published(
        &mut self,
        version: &str,
        scored: &Metrics,
        last_seq: Option<i64>,
        held_out: Vec<i64>,
        incremental: bool,
    ) {
        self.last_seq = last_seq.unwrap_or(self.last_seq);
        self.pending_holdout = held_out;
        self.model_version = Some(version.to_string());
        self.published = Some(true);
        self.force_full = false;
        self.syncs_since_full = if incremental {
            self.syncs_since_full + 1
        } else {
            0
        };
        self.published_ndcg10 = Some(scored.ndcg10);
        self.published_hr10 = Some(scored.hr10);
    }

    /// The Prometheus gauges of the set numeric fields: (name, help, value).
    pub fn gauges(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        let mut gauge = |name, help, v: Option<String>| {
            if let Some(v) = v {
                out.push((name, help, v));
            }
        };
        let num = |v: Option<f64>| v.map(|x| x.to_string());
        gauge(
            "edgerec_last_sync_timestamp_seconds",
            "Unix time of the last sync run.",
            self.last_sync_ts.map(|t| t.to_string()),
        );
        gauge(
            "edgerec_train_seconds",
            "Training time of the last sync.",
            num(self.train_seconds),
        );
        gauge(
            "edgerec_eval_ndcg10",
            "Hold-out NDCG@10 of the published model when it was published.",
            num(self.published_ndcg10),
        );
        gauge(
            "edgerec_eval_hr10",
            "Hold-out HR@10 of the published model.",
            num(self.published_hr10),
        );
        gauge(
            "edgerec_candidate_ndcg10",
            "Hold-out NDCG@10 of the last candidate model, published or not.",
            num(self.candidate_ndcg10),
        );
        gauge(
            "edgerec_served_ndcg10",
            "NDCG@10 of the served model on the last candidate's hold-out (the gate's reference).",
            num(self.served_ndcg10),
        );
        gauge(
            "edgerec_popularity_psi",
            "Popularity drift (PSI) of new events against earlier ones.",
            num(self.popularity_psi),
        );
        gauge(
            "edgerec_score_ks",
            "KS statistic of the last candidate's top-10 scores against the served model's.",
            num(self.score_ks),
        );
        gauge(
            "edgerec_popularity_ks",
            "KS statistic of the popularity of the last candidate's listed items against the served model's.",
            num(self.popularity_ks),
        );
        gauge(
            "edgerec_last_sync_published",
            "1 if the last sync published its model, 0 if it held it back.",
            self.published.map(|p| u8::from(p).to_string()),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_older_logs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("events.db")).unwrap();
        assert_eq!(SyncState::load(&store).unwrap(), SyncState::default());
        // A log written by an older release: the last score under its old name, a combination
        // of another shape.
        store.set_state("eval_ndcg10", "0.125000").unwrap();
        store.set_state("tuned", "[1.0,2.0,1.0]").unwrap();
        store.set_state("combination", "[1.0]").unwrap();
        let old = SyncState::load(&store).unwrap();
        assert_eq!(old.published_ndcg10, Some(0.125));
        assert_eq!(old.combination, None);
        let state = SyncState {
            last_seq: 42,
            pending_holdout: vec![7, 9],
            model_version: Some("v1".into()),
            published: Some(false),
            syncs_since_full: 3,
            force_full: true,
            combination: Some(crate::train::Combination::untuned(&Default::default())),
            neighbour_popularity: Some(0.25),
            published_ndcg10: Some(0.25),
            published_hr10: Some(0.5),
            candidate_ndcg10: Some(0.2),
            candidate_hr10: Some(0.4),
            served_ndcg10: Some(0.19),
            train_seconds: Some(1.5),
            popularity_psi: Some(0.01),
            score_ks: Some(0.125),
            popularity_ks: Some(0.5),
            last_sync_ts: Some(1_700_000_000),
        };
        state.save(&store).unwrap();
        assert_eq!(SyncState::load(&store).unwrap(), state);
        let names: Vec<&str> = state.gauges().iter().map(|g| g.0).collect();
        assert!(
            names.contains(&"edgerec_eval_ndcg10") && names.contains(&"edgerec_candidate_ndcg10")
        );
        assert!(names.contains(&"edgerec_score_ks") && names.contains(&"edgerec_popularity_ks"));
    }
}
