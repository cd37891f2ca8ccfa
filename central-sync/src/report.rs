//! `central-sync report`: one self-contained HTML page (inline CSS and SVG, no scripts, nothing
//! fetched) from what the other commands measured: quality by session length (`eval --json`),
//! off-policy estimates (`ope --json`), A/B arms (`ab report --json`) and the last sync's gate and drift (the sync state in the
//! event log). Each section appears when its input is given.

use crate::pipeline::LengthRow;
use crate::sync_state::SyncState;
use crate::{ab, ope};
use serde::Deserialize;
use std::fmt::Write as _;

/// The part of `central-sync eval --json` the report shows.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalSummary {
    pub by_session_length: Vec<LengthRow>,
}

/// What a report is made of.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub eval: Option<EvalSummary>,
    pub ope: Option<ope::Report>,
    pub ab: Option<ab::Report>,
    pub sync: Option<SyncState>,
    /// When the page was made (unix seconds), printed in its header.
    pub generated_at: i64,
}

/// Text safe inside HTML elements and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}\
table{border-collapse:collapse;margin:.6rem 0}td,th{padding:.25rem .7rem;border-bottom:1px solid #eee;text-align:right}\
th:first-child,td:first-child{text-align:left}.muted{color:#666}.bad{color:#b00020;font-weight:600}.good{color:#1b7f3b}\
svg text{font:12px system-ui,sans-serif;fill:#333}";

/// Colours of the methods in the quality chart: edgerec first, then the baselines.
const COLOURS: [&str; 5] = ["#1f6feb", "#9aa4b2", "#f2a33a", "#7c4dff", "#2ca58d"];

/// The whole page.
pub fn render(inputs: &Inputs) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>edgerec report</title>\
         <style>{STYLE}</style></head><body><h1>edgerec report</h1>\
         <p class=\"muted\">Generated {} UTC by <code>central-sync report</code>.</p>",
        utc(inputs.generated_at)
    );
    if let Some(s) = &inputs.sync {
        html += &sync_section(s);
    }
    if let Some(e) = &inputs.eval {
        html += &quality_section(e);
    }
    if let Some(r) = &inputs.ab {
        html += &ab_section(r);
    }
    if let Some(o) = &inputs.ope {
        html += &ope_section(o);
    }
    if inputs.sync.is_none() && inputs.eval.is_none() && inputs.ope.is_none() && inputs.ab.is_none()
    {
        html += "<p>Nothing to report: give <code>--eval</code>, <code>--ope</code>, <code>--ab</code> or an event log with a sync behind it.</p>";
    }
    html += "</body></html>\n";
    html
}

/// `YYYY-MM-DD HH:MM` of unix seconds (civil-from-days, proleptic Gregorian).
fn utc(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.digits$}"))
}

fn sync_section(s: &SyncState) -> String {
    let mut h = String::from("<h2 id=\"sync\">Last sync: gate and drift</h2><table>");
    let mut row = |name: &str, value: String| {
        let _ = write!(h, "<tr><td>{name}</td><td>{value}</td></tr>");
    };
    row(
        "served version",
        s.model_version
            .as_deref()
            .map_or_else(|| "none".into(), escape),
    );
    row(
        "last sync",
        s.last_sync_ts.map_or_else(|| "never".into(), utc),
    );
    row(
        "outcome",
        match s.published {
            Some(true) => "<span class=\"good\">published</span>".into(),
            Some(false) => "<span class=\"bad\">held back</span>".into(),
            None => "–".into(),
        },
    );
    row("candidate hold-out NDCG@10", opt(s.candidate_ndcg10, 4));
    row(
        "served model, same hold-out, NDCG@10",
        opt(s.served_ndcg10, 4),
    );
    row("popularity PSI of new events", opt(s.popularity_psi, 4));
    row("KS statistic, top-10 scores", opt(s.score_ks, 3));
    row(
        "KS statistic, listed items' popularity",
        opt(s.popularity_ks, 3),
    );
    h += "</table>";
    h
}

fn quality_section(e: &EvalSummary) -> String {
    let mut h = String::from(
        "<h2 id=\"quality\">Quality by the clicks the edge knows</h2>\
         <p class=\"muted\">NDCG@10, leave-last-out, full ranking; every method given the same clicks \
         (<code>central-sync eval</code>).</p>",
    );
    h += &quality_chart(&e.by_session_length);
    h += "<table><tr><th>clicks</th><th>edgerec (int8)</th><th>popularity</th><th>trending 30 d</th>\
          <th>Markov</th><th>item-kNN</th><th>vs best baseline</th></tr>";
    for r in &e.by_session_length {
        let (best, name) = r.best_baseline();
        let ratio = r.edgerec_int8.ndcg10 / best;
        let class = if ratio >= 1.0 { "good" } else { "bad" };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>\
             <td class=\"{class}\">{ratio:.3}× {name}</td></tr>",
            escape(&r.clicks),
            r.edgerec_int8.ndcg10,
            r.popularity.ndcg10,
            r.trending_30d.ndcg10,
            r.markov_last_item.ndcg10,
            r.knn_last5.ndcg10,
        );
    }
    h += "</table>";
    h
}

/// Grouped bars: one group per session length, one bar per method.
fn quality_chart(rows: &[LengthRow]) -> String {
    let (w, h, left, bottom, top) = (760.0, 260.0, 50.0, 40.0, 30.0);
    let values = |r: &LengthRow| {
        [
            r.edgerec_int8.ndcg10,
            r.popularity.ndcg10,
            r.trending_30d.ndcg10,
            r.markov_last_item.ndcg10,
            r.knn_last5.ndcg10,
        ]
    };
    let max = rows.iter().flat_map(values).fold(1e-9f64, f64::max) * 1.1;
    let plot_h = h - bottom - top;
    let group_w = (w - left) / rows.len().max(1) as f64;
    let bar_w = group_w * 0.8 / 5.0;
    let mut s = format!(
        "<svg class=\"chart\" id=\"quality-chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"NDCG@10 by session length\">"
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let y = top + plot_h * (1.0 - f64::from(k) / 4.0);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{w}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.3}</text>",
            left - 6.0,
            y + 4.0
        );
    }
    for (g, r) in rows.iter().enumerate() {
        let x0 = left + group_w * g as f64 + group_w * 0.1;
        for (m, v) in values(r).into_iter().enumerate() {
            let bh = plot_h * v / max;
            let _ = write!(
                s,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{v:.4}</title></rect>",
                x0 + bar_w * m as f64,
                top + plot_h - bh,
                COLOURS[m]
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} clicks</text>",
            x0 + bar_w * 2.5,
            h - bottom + 16.0,
            escape(&r.clicks)
        );
    }
    for (m, name) in ["edgerec", "popularity", "trending", "Markov", "item-kNN"]
        .iter()
        .enumerate()
    {
        let x = left + 110.0 * m as f64;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"6\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"16\">{name}</text>",
            COLOURS[m],
            x + 16.0
        );
    }
    s += "</svg>";
    s
}

fn ope_section(o: &ope::Report) -> String {
    let mut h = format!(
        "<h2 id=\"ope\">Off-policy evaluation</h2><p class=\"muted\">Target policy: {}; {} logged rows, \
         effective sample size {:.1}, mean weight {:.3}, largest weight {:.1}; {:.0}% bootstrap intervals \
         ({} resamples; DR and DM hold the reward model fixed).</p>",
        escape(&o.policy),
        o.rows,
        o.effective_sample_size,
        o.mean_weight,
        o.max_weight,
        o.level * 100.0,
        o.resamples
    );
    h += &ope_chart(o);
    h += "<table><tr><th>estimator</th><th>estimate</th><th>interval</th></tr>";
    let mut rows: Vec<(String, ope::Interval)> = o.estimates.clone();
    if let Some(obs) = o.on_policy {
        rows.push(("observed on-policy".into(), obs));
    }
    for (name, i) in &rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.5}</td><td>[{:.5}, {:.5}]</td></tr>",
            escape(name),
            i.estimate,
            i.low,
            i.high
        );
    }
    h += "</table>";
    h
}

/// The OPE estimates with their intervals; the observed value (when given) as a band.
fn ope_chart(o: &ope::Report) -> String {
    let rows: Vec<(&str, ope::Interval, &str)> = o
        .estimates
        .iter()
        .map(|(name, i)| (name.as_str(), *i, "#1f6feb"))
        .chain(o.on_policy.map(|i| ("observed", i, "#2ca58d")))
        .collect();
    interval_chart("ope-chart", &rows, o.on_policy, 4)
}

/// One row per entry: its interval as a line, its value as a dot; `band` (when given) as a
/// shaded band and a dashed line across all rows.
fn interval_chart(
    id: &str,
    rows: &[(&str, ope::Interval, &str)],
    band: Option<ope::Interval>,
    digits: usize,
) -> String {
    let n = rows.len();
    // Room for the longest label (A/B arms are version names) at about 8 px a character.
    let longest = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let left = (24.0 + 8.0 * longest as f64).clamp(170.0, 340.0);
    let (w, right, row_h, top) = (760.0, 30.0, 34.0, 10.0);
    let h = top + row_h * n as f64 + 30.0;
    let all = rows
        .iter()
        .map(|r| r.1)
        .chain(band)
        .flat_map(|i| [i.low, i.high, i.estimate]);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let pad = ((hi - lo) * 0.08).max(1e-9);
    let (lo, hi) = ((lo - pad).max(0.0), hi + pad);
    let x = |v: f64| left + (w - left - right) * (v - lo) / (hi - lo);
    let mut s = format!(
        "<svg class=\"chart\" id=\"{id}\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"values with intervals\">"
    );
    if let Some(obs) = band {
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#2ca58d\" opacity=\"0.12\"/>\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#2ca58d\" stroke-dasharray=\"4 3\"/>",
            x(obs.low),
            x(obs.high) - x(obs.low),
            row_h * n as f64,
            x(obs.estimate),
            x(obs.estimate),
            top + row_h * n as f64
        );
    }
    for (r, (name, i, colour)) in rows.iter().enumerate() {
        let y = top + row_h * (r as f64 + 0.5);
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <line class=\"interval\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{colour}\"><title>{:.digits$} [{:.digits$}, {:.digits$}]</title></circle>",
            left - 10.0,
            y + 4.0,
            escape(name),
            x(i.low),
            x(i.high),
            x(i.estimate),
            i.estimate,
            i.low,
            i.high
        );
    }
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.digits$}</text>",
            x(v),
            h - 8.0
        );
    }
    s += "</svg>";
    s
}

/// The arms of an A/B split (`ab report --json`): CTR per arm with its interval, the
/// differences to the control, the sample-ratio check and the better arm.
fn ab_section(r: &ab::Report) -> String {
    let z = statrs::distribution::ContinuousCDF::inverse_cdf(
        &statrs::distribution::Normal::standard(),
        0.5 + r.level / 2.0,
    );
    let mut h = String::from("<h2 id=\"ab\">A/B arms</h2>");
    if let Some(srm) = &r.srm {
        let _ = write!(
            h,
            "<p class=\"{}\">Sample ratio: χ² {:.2} ({} df), p = {:.3}: {}.</p>",
            if srm.mismatch { "bad" } else { "muted" },
            srm.chi_squared,
            srm.degrees_of_freedom,
            srm.p_value,
            if srm.mismatch {
                "mismatch: assignment or logging is broken, do not trust the comparison"
            } else {
                "consistent with the split"
            }
        );
    }
    let rows: Vec<(&str, ope::Interval, &str)> = r
        .arms
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let i = ope::Interval {
                estimate: a.ctr,
                low: (a.ctr - z * a.ctr_se).max(0.0),
                high: a.ctr + z * a.ctr_se,
            };
            (a.arm.as_str(), i, COLOURS[k % COLOURS.len()])
        })
        .collect();
    h += &interval_chart("ab-chart", &rows, None, 3);
    h += "<table><tr><th>arm</th><th>share</th><th>visitors</th><th>lists</th><th>clicked</th>\
          <th>CTR</th><th>± s.e.</th><th>conversions</th></tr>";
    for a in &r.arms {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.0}%</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.2}%</td><td>{}</td></tr>",
            escape(&a.arm),
            100.0 * a.expected_share,
            a.visitors,
            a.lists,
            a.lists_clicked,
            100.0 * a.ctr,
            100.0 * a.ctr_se,
            a.conversions
        );
    }
    h += "</table><table><tr><th>arm vs control</th><th>CTR difference</th><th>interval</th><th>relative</th><th>p</th></tr>";
    for d in &r.differences {
        let _ = write!(
            h,
            "<tr><td>{} vs {}</td><td>{:+.2} points</td><td>[{:+.2}, {:+.2}]</td><td>{:+.1}%</td><td>{:.3}</td></tr>",
            escape(&d.arm),
            escape(&d.control),
            100.0 * d.ctr_difference,
            100.0 * d.low,
            100.0 * d.high,
            100.0 * d.relative,
            d.p_value
        );
    }
    h += "</table>";
    let _ = write!(
        h,
        "<p>Better arm: <strong>{}</strong> ({:.0}% intervals over visitors).</p>",
        r.winner
            .as_deref()
            .map_or_else(|| "none yet".to_string(), escape),
        100.0 * r.level
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Metrics;

    fn m(ndcg10: f64) -> Metrics {
        Metrics {
            hr10: ndcg10 * 2.0,
            ndcg10,
            users: 10,
        }
    }

    fn row(clicks: &str, e: f64, best: f64) -> LengthRow {
        LengthRow {
            clicks: clicks.into(),
            edgerec_int8: m(e),
            popularity: m(0.01),
            trending_30d: m(best),
            markov_last_item: m(0.02),
            knn_last5: m(0.015),
        }
    }

    fn arm(name: &str, ctr: f64, visitors: usize) -> ab::ArmReport {
        ab::ArmReport {
            arm: name.into(),
            expected_share: 0.5,
            visitors,
            lists: 2 * visitors,
            lists_clicked: 0,
            clicks: 0,
            conversions: 0,
            ctr,
            ctr_se: 0.005,
            conversion_rate: 0.0,
        }
    }

    fn interval(estimate: f64) -> ope::Interval {
        ope::Interval {
            estimate,
            low: estimate - 0.001,
            high: estimate + 0.001,
        }
    }

    #[test]
    fn each_section_shows_its_figures() {
        let inputs = Inputs {
            eval: Some(EvalSummary {
                by_session_length: vec![row("0", 0.028, 0.029), row("full", 0.12, 0.10)],
            }),
            ope: Some(ope::Report {
                policy: "uniform over <80> items".into(),
                rows: 100,
                effective_sample_size: 34.0,
                mean_weight: 1.01,
                max_weight: 27.0,
                level: 0.95,
                resamples: 10,
                estimates: vec![("IPS".into(), interval(0.0024))],
                on_policy: Some(interval(0.0038)),
            }),
            ab: Some(ab::Report {
                level: 0.95,
                arms: vec![arm("v1", 0.4471, 1020), arm("v2", 0.1153, 980)],
                differences: vec![ab::Difference {
                    arm: "v2".into(),
                    control: "v1".into(),
                    ctr_difference: -0.3318,
                    low: -0.3480,
                    high: -0.3155,
                    relative: -0.742,
                    p_value: 0.0,
                }],
                srm: Some(ab::Srm {
                    chi_squared: 0.8,
                    degrees_of_freedom: 1,
                    p_value: 0.371,
                    mismatch: false,
                }),
                winner: Some("v1".into()),
            }),
            sync: Some(SyncState {
                model_version: Some("v1\"><script>".into()),
                published: Some(false),
                score_ks: Some(0.128),
                last_sync_ts: Some(1_764_806_400),
                ..SyncState::default()
            }),
            generated_at: 0,
        };
        let html = render(&inputs);
        assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>\n"));
        assert!(html.contains("Generated 1970-01-01 00:00 UTC"));
        // Quality: the ratio to the best baseline, marked below 1 and above it.
        assert!(
            html.contains("<td class=\"bad\">0.966× trending</td>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"good\">1.200× trending</td>"));
        assert_eq!(html.matches("class=\"bar\"").count(), 10);
        // OPE: estimate, interval and the observed value.
        assert!(html.contains("<td>0.00240</td><td>[0.00140, 0.00340]</td>"));
        assert!(html.contains("<td>observed on-policy</td><td>0.00380</td>"));
        assert!(html.contains("uniform over &lt;80&gt; items"));
        // Sync: escaped version, outcome, KS, date.
        assert!(html.contains("v1&quot;&gt;&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("held back") && html.contains("<td>0.128</td>"));
        assert!(html.contains("2025-12-04 00:00"));
        // A/B: arms, the difference, the sample-ratio check, the better arm.
        assert!(
            html.contains("<td>v1</td><td>50%</td><td>1020</td>"),
            "{html}"
        );
        assert!(html.contains("<td>v2 vs v1</td><td>-33.18 points</td><td>[-34.80, -31.55]</td>"));
        assert!(html.contains("p = 0.371: consistent with the split"));
        assert!(html.contains("Better arm: <strong>v1</strong>"));
        assert!(html.contains("id=\"ab-chart\""));
        // Nothing given: a page that says so.
        assert!(render(&Inputs::default()).contains("Nothing to report"));
    }
}
