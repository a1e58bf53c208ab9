//! Statistics for the canary judge: the Mann–Whitney U test (normal approximation with tie
//! correction) and the normal distribution function it needs.

use serde::Serialize;

/// Result of a two-sided Mann–Whitney U test of sample `a` against sample `b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    /// `U` of sample `a`: pairs `(x, y)` with `x` from `a` above `y` from `b`, ties counting ½.
    pub u: f64,
    /// `U / (n_a · n_b)`: the probability that a value of `a` exceeds one of `b` (ties ½).
    /// Above 0.5: `a` tends to be larger.
    pub prob_greater: f64,
    /// Standardised statistic (with continuity correction).
    pub z: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// The two-sided Mann–Whitney U test of `a` against `b` (normal approximation, tie-corrected
/// variance, continuity correction; good for samples of about 20 or more each). `None` when
/// either sample is empty.
///
/// ```
/// use amp_supervisor::adapt::mann_whitney;
/// let slow: Vec<f64> = (0..50).map(|i| 10.0 + f64::from(i)).collect();
/// let fast: Vec<f64> = (0..50).map(|i| f64::from(i)).collect();
/// let t = mann_whitney(&slow, &fast).unwrap();
/// assert!(t.prob_greater > 0.5 && t.p < 0.05);
/// ```
#[must_use]
#[allow(clippy::cast_precision_loss, reason = "sample sizes far below 2^52")]
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&y| (y, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let (mut rank_a, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        let in_a = all[i..j].iter().filter(|e| e.1).count() as f64;
        rank_a += mean_rank * in_a;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        i = j;
    }
    let u = rank_a - na * (na + 1.0) / 2.0;
    let mean = na * nb / 2.0;
    let nf = na + nb;
    let var = na * nb / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)).max(1.0));
    let (z, p) = if var <= 0.0 {
        (0.0, 1.0) // every value equal: no evidence either way
    } else {
        let d = u - mean;
        let corrected = (d.abs() - 0.5).max(0.0).copysign(d);
        let z = corrected / var.sqrt();
        (z, (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0))
    };
    Some(MannWhitney {
        u,
        prob_greater: u / (na * nb),
        z,
        p,
    })
}

/// The standard normal distribution function Φ(x).
#[must_use]
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error below
/// 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The `q` quantile (nearest rank) of `samples`, sorting them; `None` if empty.
#[must_use]
pub fn quantile(samples: &mut [f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rank within 1..=len"
    )]
    let rank = ((q.clamp(0.0, 1.0) * samples.len() as f64).ceil() as usize).max(1);
    Some(samples[rank.min(samples.len()) - 1])
}
