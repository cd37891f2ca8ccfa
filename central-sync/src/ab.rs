//! `central-sync ab report`: the arms of an A/B split compared on the exposure log.
//!
//! The unit of assignment is the visitor (the edge hashes the visitor id), so every interval is
//! computed over visitors: an arm's click-through rate is a ratio of sums over its visitors
//! (clicked lists / lists), its variance the delta method's for a ratio metric, and the
//! difference between an arm and the control a normal interval on the difference of two
//! independent ratios. The sample-ratio-mismatch (SRM) check is a chi-squared goodness-of-fit
//! test of the visitors per arm against the split's weights: a small p-value means assignment
//! or logging is broken and the comparison should not be trusted.

use crate::events::{Event, EventKind};
use crate::ope;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};
use std::collections::{BTreeMap, HashMap, HashSet};

/// SRM p-values below this flag the experiment (the threshold the A/B literature uses:
/// false alarms are rare, real mismatches at these sample sizes are not).
pub const SRM_ALPHA: f64 = 0.001;

/// One arm's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmReport {
    pub arm: String,
    /// The traffic share the split gives it (0..1).
    pub expected_share: f64,
    pub visitors: usize,
    pub lists: usize,
    pub lists_clicked: usize,
    pub clicks: usize,
    /// Lists with a linked `cart` or `purchase` event.
    pub conversions: usize,
    /// Clicked lists / lists.
    pub ctr: f64,
    /// Standard error of `ctr` over visitors (delta method).
    pub ctr_se: f64,
    pub conversion_rate: f64,
}

/// An arm against the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub arm: String,
    pub control: String,
    /// `ctr(arm) - ctr(control)`.
    pub ctr_difference: f64,
    pub low: f64,
    pub high: f64,
    /// Relative to the control's CTR.
    pub relative: f64,
    /// Two-sided p-value of no difference.
    pub p_value: f64,
}

/// Sample-ratio-mismatch check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Srm {
    pub chi_squared: f64,
    pub degrees_of_freedom: usize,
    pub p_value: f64,
    /// `p_value < SRM_ALPHA`.
    pub mismatch: bool,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub level: f64,
    pub arms: Vec<ArmReport>,
    pub differences: Vec<Difference>,
    pub srm: Option<Srm>,
    /// The arm whose CTR is above every other arm's with intervals that exclude no difference
    /// (none while the data cannot tell, or when the SRM check fails).
    pub winner: Option<String>,
}

/// Per visitor of an arm: lists, clicked lists, converted lists.
#[derive(Default, Clone, Copy)]
struct Unit {
    lists: f64,
    clicked: f64,
    converted: f64,
}

/// An arm's visitors: visitor -> exposure -> (clicked, converted).
type Visitors<'a> = HashMap<&'a str, HashMap<&'a str, (bool, bool)>>;

/// The ratio `Σy / Σx` over units and its delta-method standard error.
fn ratio(units: &[(f64, f64)]) -> (f64, f64) {
    let n = units.len() as f64;
    if units.is_empty() {
        return (0.0, 0.0);
    }
    let mx = units.iter().map(|u| u.0).sum::<f64>() / n;
    let my = units.iter().map(|u| u.1).sum::<f64>() / n;
    if mx == 0.0 {
        return (0.0, 0.0);
    }
    let r = my / mx;
    if units.len() < 2 {
        return (r, 0.0);
    }
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for &(x, y) in units {
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
        sxy += (x - mx) * (y - my);
    }
    let d = n - 1.0;
    let var = (syy / d - 2.0 * r * sxy / d + r * r * sxx / d) / (n * mx * mx);
    (r, var.max(0.0).sqrt())
}

/// Compares the arms found in `rows` (the exposure log joined with its clicks). `split` gives
/// the arms' order (the first is the control) and weights; without it, every arm seen gets an
/// equal share, in name order. Rows without an arm (served outside a split) are left out.
pub fn compare(
    rows: &[ope::Exposure],
    events: &[Event],
    split: Option<&edgerec_contract::pointer::Pointer>,
    level: f64,
) -> Report {
    let converted: HashSet<(&str, &str)> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Cart | EventKind::Purchase))
        .filter_map(|e| Some((e.exposure.as_deref()?, e.item.as_str())))
        .collect();
    let mut lists: BTreeMap<&str, Visitors<'_>> = BTreeMap::new();
    let mut clicks: HashMap<&str, usize> = HashMap::new();
    for r in rows.iter().filter(|r| !r.arm.is_empty()) {
        let list = lists
            .entry(r.arm.as_str())
            .or_default()
            .entry(r.user.as_str())
            .or_default()
            .entry(r.exposure.as_str())
            .or_default();
        if r.reward > 0.0 {
            list.0 = true;
            *clicks.entry(r.arm.as_str()).or_default() += 1;
        }
        if converted.contains(&(r.exposure.as_str(), r.item.as_str())) {
            list.1 = true;
        }
    }
    let order: Vec<(String, f64)> = match split {
        Some(p) => {
            let total: f64 = p.arms().iter().map(|a| f64::from(a.weight)).sum();
            p.arms()
                .iter()
                .map(|a| (a.version.clone(), f64::from(a.weight) / total))
                .collect()
        }
        None => lists
            .keys()
            .map(|a| (a.to_string(), 1.0 / lists.len() as f64))
            .collect(),
    };
    let mut arms = Vec::new();
    for (arm, share) in &order {
        let units: Vec<Unit> = lists
            .get(arm.as_str())
            .map(|visitors| {
                visitors
                    .values()
                    .map(|l| Unit {
                        lists: l.len() as f64,
                        clicked: l.values().filter(|x| x.0).count() as f64,
                        converted: l.values().filter(|x| x.1).count() as f64,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (ctr, ctr_se) = ratio(
            &units
                .iter()
                .map(|u| (u.lists, u.clicked))
                .collect::<Vec<_>>(),
        );
        let (conversion_rate, _) = ratio(
            &units
                .iter()
                .map(|u| (u.lists, u.converted))
                .collect::<Vec<_>>(),
        );
        arms.push(ArmReport {
            arm: arm.clone(),
            expected_share: *share,
            visitors: units.len(),
            lists: units.iter().map(|u| u.lists as usize).sum(),
            lists_clicked: units.iter().map(|u| u.clicked as usize).sum(),
            clicks: clicks.get(arm.as_str()).copied().unwrap_or(0),
            conversions: units.iter().map(|u| u.converted as usize).sum(),
            ctr,
            ctr_se,
            conversion_rate,
        });
    }
    let z = Normal::standard().inverse_cdf(0.5 + level / 2.0);
    let standard = Normal::standard();
    let differences: Vec<Difference> = arms
        .iter()
        .skip(1)
        .map(|a| {
            let c = &arms[0];
            let d = a.ctr - c.ctr;
            let se = (a.ctr_se * a.ctr_se + c.ctr_se * c.ctr_se).sqrt();
            let p_value = if se > 0.0 {
                2.0 * (1.0 - standard.cdf((d / se).abs()))
            } else {
                1.0
            };
            Difference {
                arm: a.arm.clone(),
                control: c.arm.clone(),
                ctr_difference: d,
                low: d - z * se,
                high: d + z * se,
                relative: if c.ctr > 0.0 { d / c.ctr } else { 0.0 },
                p_value,
            }
        })
        .collect();
    let srm = srm(&arms);
    let winner = pick_winner(&arms, &differences, srm.as_ref());
    Report {
        level,
        arms,
        differences,
        srm,
        winner,
    }
}

/// Chi-squared test of visitors per arm against the expected shares.
fn srm(arms: &[ArmReport]) -> Option<Srm> {
    let total: usize = arms.iter().map(|a| a.visitors).sum();
    if arms.len() < 2 || total == 0 {
        return None;
    }
    let chi_squared: f64 = arms
        .iter()
        .map(|a| {
            let expected = a.expected_share * total as f64;
            (a.visitors as f64 - expected).powi(2) / expected
        })
        .sum();
    let degrees_of_freedom = arms.len() - 1;
    let p_value = ChiSquared::new(degrees_of_freedom as f64)
        .map(|d| 1.0 - d.cdf(chi_squared))
        .unwrap_or(f64::NAN);
    Some(Srm {
        chi_squared,
        degrees_of_freedom,
        p_value,
        mismatch: p_value < SRM_ALPHA,
    })
}

/// The control wins when every other arm's interval lies below zero; another arm wins when its
/// interval lies above zero and its CTR is the highest. No winner with an SRM mismatch.
fn pick_winner(arms: &[ArmReport], diffs: &[Difference], srm: Option<&Srm>) -> Option<String> {
    if srm.is_some_and(|s| s.mismatch) || diffs.is_empty() {
        return None;
    }
    if diffs.iter().all(|d| d.high < 0.0) {
        return Some(arms[0].arm.clone());
    }
    let best = diffs
        .iter()
        .filter(|d| d.low > 0.0)
        .max_by(|a, b| a.ctr_difference.total_cmp(&b.ctr_difference))?;
    // Significantly above the control; it must also lead every other arm.
    let best_ctr = arms.iter().find(|a| a.arm == best.arm)?.ctr;
    let lead = arms
        .iter()
        .filter(|a| a.arm != best.arm)
        .all(|a| a.ctr < best_ctr);
    lead.then(|| best.arm.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgerec_contract::pointer::Pointer;

    fn row(arm: &str, user: &str, exposure: &str, item: &str, reward: f64) -> ope::Exposure {
        ope::Exposure {
            user: user.into(),
            item: item.into(),
            reward,
            propensity: 1.0,
            arm: arm.into(),
            exposure: exposure.into(),
            ..ope::Exposure::default()
        }
    }

    #[test]
    fn the_ratio_and_its_delta_method_error_by_hand() {
        // Visitors with (lists, clicked): (1,1), (2,0), (3,1): R = 2/6.
        let (r, se) = ratio(&[(1.0, 1.0), (2.0, 0.0), (3.0, 1.0)]);
        assert!((r - 1.0 / 3.0).abs() < 1e-12);
        // mx = 2, my = 2/3; sxx = 2, syy = 2/3, sxy = 0 (over n-1 = 2: 1, 1/3, 0);
        // var = (1/3 - 0 + (1/9) * 1) / (3 * 4) = (4/9) / 12 = 1/27.
        assert!((se - (1.0f64 / 27.0).sqrt()).abs() < 1e-12, "{se}");
        assert_eq!(ratio(&[]), (0.0, 0.0));
    }

    #[test]
    fn counts_srm_and_the_difference() {
        // Arm a: 4 visitors with one list each, 1 clicked; arm b: 4 visitors, 3 clicked.
        let mut rows = Vec::new();
        for i in 0..4 {
            let (ua, ub) = (format!("a{i}"), format!("b{i}"));
            rows.push(row(
                "a",
                &ua,
                &format!("xa{i}"),
                "i1",
                f64::from(u8::from(i == 0)),
            ));
            rows.push(row("a", &ua, &format!("xa{i}"), "i2", 0.0));
            rows.push(row(
                "b",
                &ub,
                &format!("xb{i}"),
                "i1",
                f64::from(u8::from(i < 3)),
            ));
        }
        rows.push(row("", "z", "xz", "i1", 1.0)); // outside the split: left out
        let purchase = Event {
            kind: EventKind::Purchase,
            exposure: Some("xb0".into()),
            ..Event::click("b0", "i1", 978_300_760)
        };
        let split = Pointer::parse("a=50,b=50").unwrap();
        let r = compare(&rows, &[purchase], Some(&split), 0.95);
        assert_eq!(r.arms.len(), 2);
        let (a, b) = (&r.arms[0], &r.arms[1]);
        assert_eq!(
            (a.visitors, a.lists, a.lists_clicked, a.clicks),
            (4, 4, 1, 1)
        );
        assert_eq!((b.visitors, b.lists_clicked, b.conversions), (4, 3, 1));
        assert!((a.ctr - 0.25).abs() < 1e-12 && (b.ctr - 0.75).abs() < 1e-12);
        let d = &r.differences[0];
        assert!((d.ctr_difference - 0.5).abs() < 1e-12);
        assert!(d.low < d.ctr_difference && d.ctr_difference < d.high);
        // Balanced arms: chi-squared 0, p 1.
        let srm = r.srm.as_ref().unwrap();
        assert!(srm.chi_squared.abs() < 1e-12 && (srm.p_value - 1.0).abs() < 1e-9);
        // A 90/10 split observed 50/50 is a mismatch at scale.
        let mut many = Vec::new();
        for i in 0..500 {
            many.push(row("a", &format!("a{i}"), &format!("xa{i}"), "i1", 0.0));
            many.push(row("b", &format!("b{i}"), &format!("xb{i}"), "i1", 0.0));
        }
        let skewed = Pointer::parse("a=90,b=10").unwrap();
        let r = compare(&many, &[], Some(&skewed), 0.95);
        assert!(r.srm.as_ref().unwrap().mismatch);
        assert_eq!(r.winner, None);
    }

    #[test]
    fn a_clear_difference_names_the_winner_and_noise_names_none() {
        let mut rows = Vec::new();
        for i in 0..400 {
            let clicked_a = f64::from(u8::from(i % 10 == 0)); // 10%
            let clicked_b = f64::from(u8::from(i % 4 == 0)); // 25%
            rows.push(row(
                "a",
                &format!("a{i}"),
                &format!("xa{i}"),
                "i",
                clicked_a,
            ));
            rows.push(row(
                "b",
                &format!("b{i}"),
                &format!("xb{i}"),
                "i",
                clicked_b,
            ));
        }
        let r = compare(&rows, &[], None, 0.95);
        assert_eq!(r.winner.as_deref(), Some("b"));
        assert!(r.differences[0].p_value < 1e-6);
        let tiny: Vec<_> = rows.iter().take(20).cloned().collect();
        assert_eq!(compare(&tiny, &[], None, 0.95).winner, None);
    }
}
