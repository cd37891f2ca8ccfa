//! Drift between the served model and a candidate, beside the popularity PSI of the events:
//! two-sample Kolmogorov–Smirnov tests on what the two models show for the same hold-out
//! queries — the scores of their top-10 lists and the popularity (training interactions) of
//! the items in them. A candidate that suddenly scores on another scale, or pushes far more
//! (or less) popular items than the served model, shows up here before any visitor sees it.
//!
//! KS needs no binning and is invariant to monotone transforms (counts or log counts give the
//! same test). Items within one list are not independent draws, so the p-value is a guide and
//! the statistic D (the largest gap between the two empirical distribution functions) carries
//! the threshold: a publish is held on drift only when D exceeds `max_statistic` and the
//! p-value is below `alpha`, and only when the operator asked for it.

use serde::Serialize;

/// A two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KsTest {
    /// sup |F_a − F_b|, in [0, 1].
    pub statistic: f64,
    /// Asymptotic p-value of the statistic under "same distribution".
    pub p_value: f64,
    pub n_a: usize,
    pub n_b: usize,
}

/// The KS test of samples `a` and `b` (NaNs are ignored). Either sample empty gives D = 0 and
/// p = 1: no evidence either way.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> KsTest {
    let sorted = |x: &[f64]| {
        let mut v: Vec<f64> = x.iter().copied().filter(|v| !v.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(a), sorted(b));
    let (n_a, n_b) = (a.len(), b.len());
    if n_a == 0 || n_b == 0 {
        return KsTest {
            statistic: 0.0,
            p_value: 1.0,
            n_a,
            n_b,
        };
    }
    // Walk both sorted samples one distinct value at a time, so ties step both functions
    // together before the gap is measured.
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < n_a && j < n_b {
        let x = a[i].min(b[j]);
        while i < n_a && a[i] <= x {
            i += 1;
        }
        while j < n_b && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n_a as f64 - j as f64 / n_b as f64).abs());
    }
    let ne = (n_a * n_b) as f64 / (n_a + n_b) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    KsTest {
        statistic: d,
        p_value: kolmogorov_q(lambda),
        n_a,
        n_b,
    }
}

/// P(K > λ) for the Kolmogorov distribution. Two series, each used where it converges in a
/// few terms: the alternating one for large λ, the Jacobi-theta form for small λ.
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    let q = if lambda < 1.18 {
        let k = (2.0 * std::f64::consts::PI).sqrt() / lambda;
        let t = -std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda);
        let s: f64 = (1..=20)
            .map(|j| ((2 * j - 1) as f64).powi(2) * t)
            .map(f64::exp)
            .sum();
        1.0 - k * s
    } else {
        let s: f64 = (1..=100)
            .map(|j| {
                let sign = if j % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * (j * j) as f64 * lambda * lambda).exp()
            })
            .sum();
        2.0 * s
    };
    q.clamp(0.0, 1.0)
}

/// When a candidate counts as drifted.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DriftLimits {
    /// KS statistic above which a distribution has drifted.
    pub max_statistic: f64,
    /// ... provided the p-value is below this.
    pub alpha: f64,
    /// Hold the publish back when either test drifted (otherwise only report).
    pub hold: bool,
}

impl Default for DriftLimits {
    fn default() -> Self {
        DriftLimits {
            max_statistic: 0.3,
            alpha: 0.01,
            hold: false,
        }
    }
}

impl DriftLimits {
    pub fn exceeded(&self, t: &KsTest) -> bool {
        t.statistic > self.max_statistic && t.p_value < self.alpha
    }
}

/// Served model against candidate on the same queries.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDrift {
    /// Scores of the items in the top-10 lists.
    pub score: KsTest,
    /// Training interactions of the items in the top-10 lists.
    pub popularity: KsTest,
    /// Whether either test exceeded the limits.
    pub drifted: bool,
}

/// One ranked list: (item index, score), best first.
pub type List = Vec<(u32, f32)>;

/// Compares the lists the served model and the candidate gave for the same queries;
/// `popularity[i]` is item i's training interactions.
pub fn compare(
    served: &[List],
    candidate: &[List],
    popularity: &[f64],
    limits: &DriftLimits,
) -> ModelDrift {
    let scores = |lists: &[List]| -> Vec<f64> {
        lists.iter().flatten().map(|&(_, s)| f64::from(s)).collect()
    };
    let pops = |lists: &[List]| -> Vec<f64> {
        lists
            .iter()
            .flatten()
            .map(|&(i, _)| popularity.get(i as usize).copied().unwrap_or(0.0))
            .collect()
    };
    let score = ks_two_sample(&scores(served), &scores(candidate));
    let popularity = ks_two_sample(&pops(served), &pops(candidate));
    ModelDrift {
        drifted: limits.exceeded(&score) || limits.exceeded(&popularity),
        score,
        popularity,
    }
}

impl ModelDrift {
    /// A one-line account for logs and the held-back reason.
    pub fn describe(&self) -> String {
        format!(
            "score KS D={:.3} (p={:.2e}), popularity KS D={:.3} (p={:.2e})",
            self.score.statistic,
            self.score.p_value,
            self.popularity.statistic,
            self.popularity.p_value
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statistic_is_the_largest_gap_between_the_two_distribution_functions() {
        // At x = 2: F_a = 1/2, F_b = 0; the gap is 1/2 on [2, 3) and shrinks after.
        let t = ks_two_sample(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.statistic, 0.5);
        // Ties step both functions together: identical samples have no gap.
        let same = ks_two_sample(&[1.0, 1.0, 2.0], &[2.0, 1.0, 1.0]);
        assert_eq!((same.statistic, same.p_value), (0.0, 1.0));
        // Disjoint samples: D = 1 and, with 200 per side, a vanishing p-value.
        let a: Vec<f64> = (0..200).map(f64::from).collect();
        let b: Vec<f64> = (1000..1200).map(f64::from).collect();
        let t = ks_two_sample(&a, &b);
        assert_eq!(t.statistic, 1.0);
        assert!(t.p_value < 1e-30, "{}", t.p_value);
        assert_eq!(ks_two_sample(&[], &a).p_value, 1.0);
    }

    #[test]
    fn kolmogorov_tail_matches_tabulated_values() {
        // Q(λ) = P(K > λ): the classical 10%, 5% and 1% critical values, and two other points.
        for (lambda, q) in [
            (1.2238, 0.10),
            (1.3581, 0.05),
            (1.6276, 0.01),
            (1.0, 0.26999967),
            (0.5, 0.96394524),
        ] {
            let got = kolmogorov_q(lambda);
            assert!((got - q).abs() < 2e-4, "Q({lambda}) = {got}, expected {q}");
        }
        // Both series agree where they meet.
        assert!((kolmogorov_q(1.1799) - kolmogorov_q(1.1801)).abs() < 1e-3);
    }

    #[test]
    fn a_shifted_sample_is_detected_and_a_resample_is_not() {
        let mut rng = edgerec::math::SplitMix64::new(5);
        let mut draw = |shift: f64| -> Vec<f64> {
            (0..2000)
                .map(|_| f64::from(rng.approx_normal()) + shift)
                .collect()
        };
        let (a, b, c) = (draw(0.0), draw(0.0), draw(1.0));
        let limits = DriftLimits::default();
        let same = ks_two_sample(&a, &b);
        assert!(!limits.exceeded(&same) && same.p_value > 0.01, "{same:?}");
        let shifted = ks_two_sample(&a, &c);
        assert!(limits.exceeded(&shifted), "{shifted:?}");
    }

    #[test]
    fn compare_tests_scores_and_the_popularity_of_listed_items() {
        let popularity: Vec<f64> = (0..100).map(f64::from).collect();
        let lists = |items: std::ops::Range<u32>, score: f32| -> Vec<List> {
            (0..50)
                .map(|_| items.clone().map(|i| (i, score + i as f32)).collect())
                .collect()
        };
        let limits = DriftLimits::default();
        // Same items, scores shifted by 100: the score test fires, popularity does not.
        let d = compare(
            &lists(0..10, 0.0),
            &lists(0..10, 100.0),
            &popularity,
            &limits,
        );
        assert_eq!(d.score.statistic, 1.0);
        assert_eq!(d.popularity.statistic, 0.0);
        assert!(d.drifted);
        // Popular items instead of rare ones at the same scores: popularity fires.
        let d = compare(
            &lists(0..10, 0.0),
            &lists(90..100, -90.0),
            &popularity,
            &limits,
        );
        assert_eq!(d.popularity.statistic, 1.0);
        assert_eq!(d.score.statistic, 0.0);
        assert!(d.drifted);
        let d = compare(&lists(0..10, 0.0), &lists(0..10, 0.0), &popularity, &limits);
        assert!(!d.drifted);
    }
}
