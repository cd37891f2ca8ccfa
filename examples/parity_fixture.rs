//! Writes a synthetic multi-shard model and the native engine's rankings for a set of sessions
//! and contexts into the directory given as the first argument. The Node and browser tests rank
//! the same cases through pkg/ and must get identical ids and scores. The model carries
//! first-pass codes, and each case is ranked twice: by the exact scan (the default at 3,000
//! items) and by the two-stage scan with `FIRST_PASS_KEEP` candidates (`twoStage`; the keep is
//! also written to `first-pass.json` for the JS tests to set). The same model paged (format 7)
//! goes into `paged/` (`index-N.bin`, `page-N.bin`); ranked two-stage, it must give `twoStage`.
//! The model carries a session encoder (format 8), so its f32 arithmetic is compared too.

use edgerec::testing::Synthetic;
use edgerec::{Context, Device, Engine, EventType, Exploration, Request, Session};
use std::fmt::Write;

/// One ranking case: session events (id, type, ts), context and selection options.
struct Case {
    events: Vec<(&'static str, &'static str, u64)>,
    device: Option<&'static str>,
    geo: Option<&'static str>,
    ts: Option<i64>,
    tz: i32,
    diversity: f32,
    explore: Option<(f32, u64)>,
}

/// Candidates the two-stage cases keep: few enough that the first pass decides the ranking.
const FIRST_PASS_KEEP: usize = 24;

/// A ranking as JSON array bodies: ids, scores (f32 printed as f64 is exact, so JS can compare
/// with ===) and propensities.
fn ranking(engine: &Engine, session: &Session, request: &Request) -> [String; 3] {
    let recs = engine.recommend(session, request);
    let ids: Vec<String> = recs
        .iter()
        .map(|r| format!("\"{}\"", engine.item_id(r.index).unwrap_or("")))
        .collect();
    let scores: Vec<String> = recs
        .iter()
        .map(|r| format!("{:?}", f64::from(r.score)))
        .collect();
    let props: Vec<String> = recs
        .iter()
        .map(|r| {
            r.propensity
                .map_or("null".into(), |p| format!("{:?}", f64::from(p)))
        })
        .collect();
    [ids.join(","), scores.join(","), props.join(",")]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: parity_fixture OUT_DIR")?;
    // A fresh directory: shard files of an earlier, larger fixture would otherwise stay
    // beside the new ones (the tests load every `shard-*.bin` there).
    if std::path::Path::new(&dir).exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let syn = Synthetic {
        items: 3000,
        dim: 64,
        clusters: 12,
        neighbours: 10,
        with_trend: true,
        first_pass: true,
        with_encoder: true,
        ..Synthetic::default()
    };
    let shards = syn.shards(200_000);
    for (i, s) in shards.iter().enumerate() {
        std::fs::write(format!("{dir}/shard-{i}.bin"), s)?;
    }
    // The same model paged (format 7): ranked with the same first pass, it must give the
    // two-stage rankings, its pages loaded as each case asks.
    let paged =
        edgerec::writer::write_paged_model(&syn.spec(), syn.seed ^ 0xed9e_4ec0, 200_000, 256)?;
    std::fs::create_dir_all(format!("{dir}/paged"))?;
    for (i, s) in paged.index.iter().enumerate() {
        std::fs::write(format!("{dir}/paged/index-{i}.bin"), s)?;
    }
    for (i, s) in paged.pages.iter().enumerate() {
        std::fs::write(format!("{dir}/paged/page-{i}.bin"), s)?;
    }
    let engine = Engine::from_bytes(shards.iter().map(|s| s.as_slice()))?;
    let mut two_stage = engine.clone();
    if !two_stage.set_first_pass(Some(FIRST_PASS_KEEP)) {
        return Err("the parity model has no first pass".into());
    }
    std::fs::write(
        format!("{dir}/first-pass.json"),
        format!("{{\"keep\":{FIRST_PASS_KEEP}}}\n"),
    )?;
    let mut json = String::from("[\n");
    let cases = [
        Case {
            events: vec![],
            device: None,
            geo: None,
            ts: None,
            tz: 0,
            diversity: 0.0,
            explore: None,
        },
        Case {
            events: vec![("item-5", "click", 1_700_000_000)],
            device: Some("mobile"),
            geo: Some("9q8yy"),
            ts: Some(1_700_000_100),
            tz: -480,
            diversity: 0.0,
            explore: None,
        },
        Case {
            events: vec![
                ("item-5", "view", 10),
                ("item-17", "like", 20),
                ("item-29", "purchase", 30),
            ],
            device: Some("desktop"),
            geo: None,
            ts: Some(40),
            tz: 0,
            diversity: 0.0,
            explore: None,
        },
        Case {
            events: vec![("item-100", "cart", 1_000), ("item-7", "dwell", 2_000)],
            device: Some("tablet"),
            geo: Some("u4pru"),
            ts: Some(3_000),
            tz: 120,
            diversity: 0.5,
            explore: None,
        },
        // Inside the trend window: the anonymous list follows the trend, a short session mixes
        // it with its own signals (per-length profiles).
        Case {
            events: vec![],
            device: Some("mobile"),
            geo: None,
            ts: Some(1_700_000_000 + 5 * 86_400 + 7),
            tz: 60,
            diversity: 0.0,
            explore: None,
        },
        Case {
            events: vec![
                ("item-3", "click", 1_700_000_000 + 5 * 86_400),
                ("item-8", "click", 1_700_000_000 + 5 * 86_400 + 5),
            ],
            device: None,
            geo: None,
            ts: Some(1_700_000_000 + 5 * 86_400 + 7),
            tz: 0,
            diversity: 0.0,
            explore: None,
        },
        Case {
            events: vec![("item-1", "click", 50)],
            device: None,
            geo: None,
            ts: None,
            tz: 0,
            diversity: 0.3,
            explore: Some((0.3, 99)),
        },
        // A session longer than the encoder's 8 positions, of every event type: the session
        // encoder's output (f32 products through each build's kernel) decides much of it.
        Case {
            events: vec![
                ("item-40", "view", 100),
                ("item-52", "click", 110),
                ("item-64", "like", 120),
                ("item-76", "cart", 130),
                ("item-88", "purchase", 140),
                ("item-100", "dwell", 150),
                ("item-112", "click", 160),
                ("item-124", "view", 170),
                ("item-136", "click", 180),
                ("item-148", "like", 190),
            ],
            device: Some("desktop"),
            geo: None,
            ts: Some(200),
            tz: 0,
            diversity: 0.0,
            explore: None,
        },
    ];
    for (n, case) in cases.iter().enumerate() {
        let Case {
            events,
            device,
            geo,
            ts,
            tz,
            diversity,
            explore,
        } = case;
        let mut session = Session::new();
        for (id, kind, t) in events {
            session.observe(id, EventType::from_name(kind)?, *t);
        }
        let request = Request {
            k: 10,
            context: Context {
                geohash: geo.map(String::from),
                device: device.map(Device::from_name).transpose()?,
                ts: *ts,
                tz_offset_min: *tz,
            },
            diversity: *diversity,
            exploration: explore.map_or(Exploration::Off, |(epsilon, seed)| Exploration::Epsilon {
                epsilon,
                seed,
            }),
            ..Request::default()
        };
        let exact = ranking(&engine, &session, &request);
        let (ids, scores, props) = (&exact[0], &exact[1], &exact[2]);
        let twice = ranking(&two_stage, &session, &request);
        let events_json: Vec<String> = events
            .iter()
            .map(|(id, k, t)| format!("[\"{id}\",\"{k}\",{t}]"))
            .collect();
        let mut opts = format!("{{\"k\":10,\"tzOffsetMin\":{tz},\"diversity\":{diversity}");
        if let Some(d) = device {
            write!(opts, ",\"device\":\"{d}\"")?;
        }
        if let Some(g) = geo {
            write!(opts, ",\"geohash\":\"{g}\"")?;
        }
        if let Some(t) = ts {
            write!(opts, ",\"ts\":{t}")?;
        }
        if let Some((e, s)) = explore {
            write!(opts, ",\"explore\":{{\"epsilon\":{e},\"seed\":{s}}}")?;
        }
        opts.push('}');
        write!(
            json,
            "{}  {{\"events\":[{}],\"options\":{opts},\"ids\":[{ids}],\"scores\":[{scores}],\"propensities\":[{props}],\"twoStage\":{{\"ids\":[{}],\"scores\":[{}],\"propensities\":[{}]}}}}",
            if n > 0 { ",\n" } else { "" },
            events_json.join(","),
            twice[0],
            twice[1],
            twice[2]
        )?;
    }
    json.push_str("\n]\n");
    std::fs::write(format!("{dir}/cases.json"), json)?;
    println!(
        "wrote {} shards and {} cases to {dir}",
        shards.len(),
        cases.len()
    );
    Ok(())
}
