#![cfg(not(target_arch = "wasm32"))]
//! Ranking behaviour on synthetic clustered models: what a session, context, filters, diversity
//! and exploration do to the list, and that the pruned scan is exact.

use edgerec::format::MAX_SHARD_BYTES;
use edgerec::testing::Synthetic;
use edgerec::{Context, Device, Engine, EventType, Exploration, Recommendation, Request, Session};

fn engine(syn: &Synthetic) -> Engine {
    Engine::from_bytes(syn.shards(MAX_SHARD_BYTES).iter().map(|s| s.as_slice())).unwrap()
}

/// Both engines rank the request alike: the same items in the same order, scores bit for bit.
fn assert_same_ranking(a: &Engine, b: &Engine, session: &Session, request: &Request) {
    let (x, y) = (a.recommend(session, request), b.recommend(session, request));
    let key = |r: &[Recommendation]| -> Vec<(u32, u32)> {
        r.iter().map(|e| (e.index, e.score.to_bits())).collect()
    };
    assert_eq!(key(&x), key(&y), "context {:?}", request.context);
}

fn cluster_share(
    engine: &Engine,
    syn: &Synthetic,
    recs: &[edgerec::Recommendation],
    cluster: usize,
) -> f32 {
    let hits = recs
        .iter()
        .filter(|r| {
            let id = engine.item_id(r.index).unwrap();
            let i: usize = id.trim_start_matches("item-").parse().unwrap();
            syn.cluster_of(i) == cluster
        })
        .count();
    hits as f32 / recs.len().max(1) as f32
}

#[test]
fn clicks_pull_the_ranking_toward_their_cluster() {
    let syn = Synthetic {
        items: 400,
        dim: 32,
        clusters: 8,
        ..Synthetic::default()
    };
    let engine = engine(&syn);
    let request = Request {
        k: 10,
        ..Request::default()
    };
    let before = engine.recommend(&Session::new(), &request);
    let mut session = Session::new();
    for (t, id) in ["item-3", "item-11", "item-19"].iter().enumerate() {
        session.observe(id, EventType::Click, 1_700_000_000 + t as u64);
    }
    let after = engine.recommend(&session, &request);
    let (b, a) = (
        cluster_share(&engine, &syn, &before, 3),
        cluster_share(&engine, &syn, &after, 3),
    );
    assert!(a >= 0.9, "cluster share after clicks {a} (before {b})");
    assert!(a > b);
    // Session items are never returned.
    for r in &after {
        assert!(!["item-3", "item-11", "item-19"].contains(&engine.item_id(r.index).unwrap()));
    }
    // Scores come best first.
    assert!(after.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn pruned_scan_equals_full_ranking() {
    // With k = n every item enters the heap (no pruning); the top of that list must equal a
    // k = 10 request, sequence boosts included.
    let syn = Synthetic {
        items: 1500,
        dim: 48,
        clusters: 5,
        neighbours: 20,
        ..Synthetic::default()
    };
    let engine = engine(&syn);
    let mut session = Session::new();
    for (t, id) in ["item-7", "item-12", "item-700", "item-2"]
        .iter()
        .enumerate()
    {
        session.observe(id, EventType::View, 100 + t as u64);
    }
    let ctx = Context {
        device: Some(Device::Mobile),
        geohash: Some("9q8yy".into()),
        ts: Some(1_700_000_000),
        tz_offset_min: 60,
    };
    let small = engine.recommend(
        &session,
        &Request {
            k: 10,
            context: ctx.clone(),
            ..Request::default()
        },
    );
    let full = engine.recommend(
        &session,
        &Request {
            k: 1500,
            context: ctx,
            ..Request::default()
        },
    );
    assert_eq!(full.len(), 1500 - 4);
    assert_eq!(small, full[..10].to_vec());
}

#[test]
fn context_changes_the_ranking() {
    let syn = Synthetic {
        items: 300,
        dim: 16,
        ..Synthetic::default()
    };
    let engine = engine(&syn);
    let at = |device, hour: i64| {
        let ctx = Context {
            device: Some(device),
            ts: Some(978_307_200 + hour * 3600),
            ..Context::default()
        };
        engine.recommend(
            &Session::new(),
            &Request {
                k: 10,
                context: ctx,
                ..Request::default()
            },
        )
    };
    assert_ne!(at(Device::Mobile, 1), at(Device::Desktop, 1));
    assert_ne!(at(Device::Mobile, 1), at(Device::Mobile, 13));
    assert_eq!(at(Device::Tv, 5), at(Device::Tv, 5));
}

#[test]
fn filters_and_exclusions() {
    let syn = Synthetic {
        items: 200,
        dim: 16,
        ..Synthetic::default()
    };
    let engine = engine(&syn);
    let allow = engine.category_mask(&["cat2"]).unwrap();
    let recs = engine.recommend(
        &Session::new(),
        &Request {
            k: 10,
            allow_categories: allow,
            ..Request::default()
        },
    );
    assert_eq!(recs.len(), 10);
    assert!(recs
        .iter()
        .all(|r| engine.item_categories(r.index) == allow));
    let deny = engine.category_mask(&["cat0", "cat1"]).unwrap();
    let recs = engine.recommend(
        &Session::new(),
        &Request {
            k: 50,
            deny_categories: deny,
            ..Request::default()
        },
    );
    assert!(recs
        .iter()
        .all(|r| engine.item_categories(r.index) & deny == 0));
    assert!(engine.category_mask(&["nope"]).is_err());

    let top = engine.recommend(&Session::new(), &Request::default());
    let exclude: Vec<String> = top[..3]
        .iter()
        .map(|r| engine.item_id(r.index).unwrap().to_string())
        .collect();
    let next = engine.recommend(
        &Session::new(),
        &Request {
            exclude: exclude.clone(),
            ..Request::default()
        },
    );
    assert_eq!(next[..7], top[3..]);
    assert!(next
        .iter()
        .all(|r| !exclude.contains(&engine.item_id(r.index).unwrap().to_string())));
    // Unknown ids in the session or the exclude list are ignored, not errors.
    let mut s = Session::new();
    s.observe("no-such-item", EventType::Click, 5);
    let req = Request {
        exclude: vec!["also-missing".into()],
        ..Request::default()
    };
    assert_eq!(engine.recommend(&s, &req), top);
}

#[test]
fn diversity_spreads_categories() {
    let syn = Synthetic {
        items: 400,
        dim: 32,
        clusters: 8,
        ..Synthetic::default()
    };
    let engine = engine(&syn);
    let mut session = Session::new();
    session.observe("item-5", EventType::Purchase, 10);
    let distinct = |d: f32| {
        let recs = engine.recommend(
            &session,
            &Request {
                k: 10,
                diversity: d,
                pool: 200,
                ..Request::default()
            },
        );
        let mut cats: Vec<u64> = recs
            .iter()
            .map(|r| engine.item_categories(r.index))
            .collect();
        cats.sort();
        cats.dedup();
        cats.len()
    };
    let (plain, diverse) = (distinct(0.0), distinct(0.7));
    assert!(
        diverse > plain,
        "distinct categories: {plain} without diversity, {diverse} with"
    );
}

#[test]
fn exploration_is_seeded_and_reports_propensities() {
    let syn = Synthetic {
        items: 300,
        dim: 16,
        ..Synthetic::default()
    };
    let engine = engine(&syn);
    let session = Session::new();
    let with = |exploration| {
        engine.recommend(
            &session,
            &Request {
                k: 10,
                exploration,
                ..Request::default()
            },
        )
    };
    let greedy = with(Exploration::Off);
    let eps0 = with(Exploration::Epsilon {
        epsilon: 0.0,
        seed: 1,
    });
    assert_eq!(
        eps0.iter().map(|r| r.index).collect::<Vec<_>>(),
        greedy.iter().map(|r| r.index).collect::<Vec<_>>()
    );
    assert!(eps0.iter().all(|r| r.propensity == Some(1.0)));
    let a = with(Exploration::Epsilon {
        epsilon: 0.5,
        seed: 42,
    });
    let b = with(Exploration::Epsilon {
        epsilon: 0.5,
        seed: 42,
    });
    assert_eq!(a, b);
    let differs = (0..20).any(|s| {
        with(Exploration::Epsilon {
            epsilon: 0.5,
            seed: s,
        }) != a
    });
    assert!(differs);
    for r in with(Exploration::Softmax {
        temperature: 0.1,
        seed: 3,
    }) {
        let p = r.propensity.unwrap();
        assert!(p > 0.0 && p <= 1.0);
    }
}

#[test]
fn time_decay_prefers_recent_events() {
    let mut spec = Synthetic {
        items: 200,
        dim: 16,
        clusters: 4,
        with_context: false,
        ..Synthetic::default()
    }
    .spec();
    if let Some(m) = spec.meta.as_mut() {
        m.time_half_life_s = 600.0;
        m.position_decay = 1.0;
        m.seq_len = 0;
    }
    let shards = edgerec::writer::write_model(&spec, 7, MAX_SHARD_BYTES).unwrap();
    let engine = Engine::from_bytes(shards.iter().map(|s| s.as_slice())).unwrap();
    let mut s = Session::new();
    s.observe("item-1", EventType::Click, 1_000); // cluster 1, an hour before the request
    s.observe("item-2", EventType::Click, 4_590); // cluster 2, ten seconds before
    let q = engine.query_vector(
        &s,
        &Context {
            ts: Some(4_600),
            ..Context::default()
        },
    );
    let mut v1 = vec![0.0; 16];
    let mut v2 = vec![0.0; 16];
    engine.item_vector(1, &mut v1);
    engine.item_vector(2, &mut v2);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let cos = |a: &[f32], b: &[f32]| dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt());
    assert!(cos(&q, &v2) > 0.95 && cos(&q, &v1) < cos(&q, &v2));
}

/// A model whose only signal for an anonymous visitor is the trend: zero bias, no context.
fn trend_only_engine(
    buckets: Vec<Vec<(u32, f32)>>,
    profiles: [edgerec::format::Profile; edgerec::format::PROFILE_BUCKETS],
) -> Engine {
    let mut spec = Synthetic {
        with_context: false,
        ..Synthetic::default()
    }
    .spec();
    spec.bias = vec![0.0; spec.ids.len()];
    spec.profiles = Some(profiles);
    spec.trend = Some(edgerec::writer::TrendSpec {
        start: 0,
        bucket_s: 100,
        window_s: 200,
        buckets,
    });
    let shards = edgerec::writer::write_model(&spec, 9, MAX_SHARD_BYTES).unwrap();
    Engine::from_bytes(shards.iter().map(|s| s.as_slice())).unwrap()
}

#[test]
fn anonymous_lists_follow_the_trend_window_before_the_request() {
    let profile = edgerec::format::Profile {
        trend: 1.0,
        ..edgerec::format::Profile::NEUTRAL
    };
    let engine = trend_only_engine(
        vec![
            vec![(2, 5.0)],
            vec![(3, 9.0), (2, 1.0)],
            vec![(4, 1.0), (2, 1.0)],
        ],
        [profile; edgerec::format::PROFILE_BUCKETS],
    );
    let top = |ts: Option<i64>| {
        let request = Request {
            k: 3,
            context: Context {
                ts,
                ..Context::default()
            },
            ..Request::default()
        };
        engine
            .recommend(&Session::new(), &request)
            .iter()
            .filter(|r| r.score > 0.0)
            .map(|r| (engine.item_id(r.index).unwrap().to_string(), r.score))
            .collect::<Vec<_>>()
    };
    let names = |v: Vec<(String, f32)>| v.into_iter().map(|x| x.0).collect::<Vec<_>>();
    // At 250 the window is the last two buckets that ended by then (0 and 1); the largest
    // count scores 1.
    assert_eq!(
        top(Some(250)),
        vec![
            ("item-3".to_string(), 1.0),
            ("item-2".to_string(), 6.0 / 9.0)
        ]
    );
    // At 150 only bucket 0 has passed: item-3's later counts are not seen (no look-ahead).
    assert_eq!(names(top(Some(150))), vec!["item-2"]);
    // Before the data there is no trend; after it (or without a time) the last window counts.
    assert!(top(Some(-5)).is_empty());
    let latest = vec!["item-3", "item-2", "item-4"];
    assert_eq!(names(top(None)), latest);
    assert_eq!(names(top(Some(i64::MAX))), latest);
    assert_eq!(names(top(Some(i64::MIN))), Vec::<String>::new());
}

#[test]
fn profiles_weigh_signals_by_session_length() {
    use edgerec::format::Profile;
    // Trend counts say item-3; a click on item-1 (transition to item-5) says item-5.
    let buckets = vec![vec![(3, 10.0)], vec![(3, 10.0)]];
    let request = Request {
        k: 1,
        context: Context {
            ts: Some(1_000),
            ..Context::default()
        },
        ..Request::default()
    };
    let mut clicked = Session::new();
    clicked.observe("item-1", EventType::Click, 900);
    let first = |engine: &Engine, session: &Session| {
        let r = engine.recommend(session, &request);
        engine.item_id(r[0].index).unwrap().to_string()
    };
    let mut profiles = [Profile {
        trend: 100.0,
        ..Profile::NEUTRAL
    }; edgerec::format::PROFILE_BUCKETS];
    let trend_heavy = trend_only_engine(buckets.clone(), profiles);
    assert_eq!(first(&trend_heavy, &Session::new()), "item-3");
    assert_eq!(first(&trend_heavy, &clicked), "item-3");
    // Same model, but one-click sessions ignore the trend: the transition wins for them.
    profiles[1].trend = 0.0;
    let per_length = trend_only_engine(buckets, profiles);
    assert_eq!(per_length.profile(1).trend, 0.0);
    assert_eq!(first(&per_length, &Session::new()), "item-3");
    assert_eq!(first(&per_length, &clicked), "item-5");
}

#[test]
fn profiles_set_on_a_loaded_model_rank_as_shards_written_with_them() {
    use edgerec::format::{Profile, PROFILE_BUCKETS};
    // Every signal present (context, sequence tables, trend, session encoder), and a catalog
    // past the first pass's threshold, so the two-stage scan runs too.
    let syn = Synthetic {
        items: edgerec::first_pass::MIN_ITEMS as usize + 500,
        with_trend: true,
        first_pass: true,
        with_encoder: true,
        ..Synthetic::default()
    };
    let other: [Profile; PROFILE_BUCKETS] = core::array::from_fn(|b| Profile {
        embed: 0.25 + b as f32,
        context: 1.0,
        neighbours: 8.0 - b as f32,
        transitions: 64.0,
        trend: [16.0, 0.0, 4.0, 1.0, 0.0, 256.0][b],
        encoder: [0.0, 2.0, 0.0, 0.5, 3.0, 1.0][b],
    });
    let mut spec = syn.spec();
    let mut written = |profiles: [Profile; PROFILE_BUCKETS]| {
        spec.profiles = Some(profiles);
        let shards = edgerec::writer::write_model(&spec, 3, MAX_SHARD_BYTES).unwrap();
        Engine::from_bytes(shards.iter().map(|s| s.as_slice())).unwrap()
    };
    let shipped = syn.spec().profiles.unwrap();
    let expected = written(other);
    let mut swapped = written(shipped);
    let before = |engine: &Engine| engine.profile(3);
    assert_eq!(before(&swapped), shipped[3]);
    swapped.set_profiles(Some(other));
    assert_eq!(before(&swapped), other[3]);
    for clicks in [0usize, 1, 2, 3, 5, 9] {
        let mut session = Session::new();
        for i in 0..clicks {
            session.observe(
                &format!("item-{}", 37 * i + 5),
                EventType::Click,
                1_000 + i as u64,
            );
        }
        for ts in [None, Some(50_000)] {
            let request = Request {
                k: 20,
                context: Context {
                    ts,
                    device: Some(Device::Mobile),
                    ..Context::default()
                },
                ..Request::default()
            };
            assert_same_ranking(&expected, &swapped, &session, &request);
        }
    }
    // `None` goes back to the shards' own profiles.
    swapped.set_profiles(None);
    assert_eq!(before(&swapped), shipped[3]);
}

#[test]
fn memoized_trend_windows_rank_as_summed_ones() {
    use edgerec::testing::{TREND_DAYS, TREND_START};
    // The synthetic profiles weigh the trend at every length but the longest.
    let syn = Synthetic {
        with_trend: true,
        ..Synthetic::default()
    };
    let summed = engine(&syn);
    // Requests before, within and after the trend table, at hours inside and on bucket edges.
    let times: Vec<i64> = (-2..TREND_DAYS as i64 + 3)
        .flat_map(|day| [0, 3_600, 86_399].map(|s| TREND_START + day * 86_400 + s))
        .collect();
    let mut memoized = summed.clone();
    let kept = memoized.memoize_trend_windows(times.iter().copied(), usize::MAX);
    // One window per past day with buckets before it, less the latest (summed at load).
    assert!(kept >= TREND_DAYS - 2, "{kept} windows kept");
    assert_eq!(
        summed
            .clone()
            .memoize_trend_windows(times.iter().copied(), 0),
        0
    );
    for clicks in [0usize, 2] {
        let mut session = Session::new();
        for i in 0..clicks {
            session.observe(&format!("item-{}", 11 * i + 3), EventType::Click, 1_000);
        }
        for &ts in &times {
            let request = Request {
                k: 20,
                context: Context {
                    ts: Some(ts),
                    ..Context::default()
                },
                ..Request::default()
            };
            assert_same_ranking(&summed, &memoized, &session, &request);
        }
    }
}

#[test]
fn a_huge_pool_is_clamped_not_allocated() {
    // A caller-supplied pool (JS API, native callers) must neither overflow an allocation nor
    // make diversity's pool × k work unbounded (L2).
    let syn = Synthetic::default();
    let engine = engine(&syn);
    for pool in [usize::MAX, 1 << 40, 5_000] {
        let recs = engine.recommend(
            &Session::new(),
            &Request {
                k: 5,
                pool,
                diversity: 0.5,
                ..Request::default()
            },
        );
        assert_eq!(recs.len(), 5, "pool {pool}");
    }
}

#[test]
fn a_session_encoder_weighed_zero_ranks_as_no_encoder_and_otherwise_reads_order() {
    use edgerec::format::PROFILE_BUCKETS;
    let syn = Synthetic {
        items: 300,
        with_trend: true,
        with_encoder: true,
        ..Synthetic::default()
    };
    let with = syn.write(&syn.spec(), MAX_SHARD_BYTES);
    let with = Engine::from_bytes(with.iter().map(|s| s.as_slice())).unwrap();
    let mut spec = syn.spec();
    spec.encoder = None;
    let without = syn.write(&spec, MAX_SHARD_BYTES);
    let without = Engine::from_bytes(without.iter().map(|s| s.as_slice())).unwrap();
    let mut muted = with.clone();
    let mut profiles: [edgerec::format::Profile; PROFILE_BUCKETS] =
        core::array::from_fn(|b| with.profile([0, 1, 2, 3, 4, 8][b]));
    profiles.iter_mut().for_each(|p| p.encoder = 0.0);
    muted.set_profiles(Some(profiles));
    let session_of = |ids: &[usize]| {
        let mut s = Session::new();
        for (t, &i) in ids.iter().enumerate() {
            s.observe(&format!("item-{i}"), EventType::Click, 1_000 + t as u64);
        }
        s
    };
    let request = Request {
        k: 15,
        ..Request::default()
    };
    let mut differs = 0;
    for ids in [&[3usize, 50, 97][..], &[97, 50, 3], &[8, 9, 10, 11, 12, 13]] {
        let session = session_of(ids);
        assert_same_ranking(&without, &muted, &session, &request);
        let ranked = |e: &Engine| -> Vec<u32> {
            e.recommend(&session, &request)
                .iter()
                .map(|r| r.index)
                .collect()
        };
        differs += usize::from(ranked(&with) != ranked(&without));
    }
    assert!(differs > 0, "the encoder changed no ranking");
    // The same clicks in another order: only the encoder tells them apart (the session
    // vector's position decay aside, which the query reads the same way in both models).
    let q = |e: &Engine, ids: &[usize]| e.query_vector(&session_of(ids), &Context::default());
    let gap = |e: &Engine| {
        q(e, &[3, 50, 97])
            .iter()
            .zip(q(e, &[97, 50, 3]))
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
    };
    assert!(gap(&with) > gap(&without));
}
