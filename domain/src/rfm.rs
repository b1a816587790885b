//! RFM scoring and churn risk: the rules behind the nightly `rfm_snapshot`.
//!
//! ClickHouse computes the snapshot set-based (`storage::analytics`); its SQL mirrors these
//! functions, and a test checks the two agree.

/// The 20/40/60/80 % boundaries of a population, ascending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quintiles(pub [f64; 4]);

/// Quintile boundaries the way ClickHouse's `quantileExact` picks them: the element at
/// position ⌊level × n⌋ of the sorted values.
pub fn quintiles(values: &[f64]) -> Quintiles {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |level: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((level * sorted.len() as f64).floor() as usize).min(sorted.len() - 1);
        sorted[index]
    };
    Quintiles([at(0.2), at(0.4), at(0.6), at(0.8)])
}

/// A score from 1 to 5: which fifth of the population `value` falls in. For recency,
/// fewer days is better, so the score is turned around.
pub fn score(value: f64, q: &Quintiles, lower_is_better: bool) -> u8 {
    let fifth = 1 + q.0.iter().filter(|boundary| value > **boundary).count() as u8;
    if lower_is_better { 6 - fifth } else { fifth }
}

/// The segment name, `"111"` to `"555"`.
pub fn segment(r: u8, f: u8, m: u8) -> String {
    format!("{r}{f}{m}")
}

/// A member's usual gap between purchases when they have bought only once.
pub const DEFAULT_GAP_DAYS: f64 = 60.0;
/// Gaps shorter than this are treated as this: a daily buyer is not "churning" after two days.
pub const MIN_GAP_DAYS: f64 = 7.0;

/// Churn risk from 0.0 to 1.0, relative to the member's own rhythm: 0 while the time since
/// the last purchase is within their usual gap between purchases, rising linearly to 1 at
/// three usual gaps. The usual gap is (last − first purchase) / (purchases − 1), at least
/// [`MIN_GAP_DAYS`], or [`DEFAULT_GAP_DAYS`] for a single purchase. Rounded to 3 places.
pub fn churn_risk(recency_days: f64, frequency: u64, span_days: f64) -> f64 {
    let gap = if frequency >= 2 {
        (span_days / (frequency - 1) as f64).max(MIN_GAP_DAYS)
    } else {
        DEFAULT_GAP_DAYS
    };
    let risk = ((recency_days - gap) / (2.0 * gap)).clamp(0.0, 1.0);
    (risk * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_take_the_element_at_floor_of_level_times_n() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quintiles(&values), Quintiles([3.0, 5.0, 7.0, 9.0]));
        assert_eq!(quintiles(&[4.0]), Quintiles([4.0; 4]));
        assert_eq!(quintiles(&[]), Quintiles([0.0; 4]));
    }

    #[test]
    fn scores_place_values_in_fifths_and_turn_recency_around() {
        let q = Quintiles([3.0, 5.0, 7.0, 9.0]);
        let cases = [
            (1.0, 1),
            (3.0, 1),
            (3.5, 2),
            (5.0, 2),
            (6.0, 3),
            (8.0, 4),
            (9.0, 4),
            (10.0, 5),
        ];
        for (value, expected) in cases {
            assert_eq!(score(value, &q, false), expected, "value {value}");
            assert_eq!(score(value, &q, true), 6 - expected, "recency {value}");
        }
        assert_eq!(segment(5, 1, 3), "513");
    }

    #[test]
    fn churn_risk_is_relative_to_the_members_own_rhythm() {
        let cases = [
            // recency, purchases, span (days) → risk
            (10.0, 5, 120.0, 0.0),   // gap 30: within it
            (30.0, 5, 120.0, 0.0),   // exactly one gap
            (60.0, 5, 120.0, 0.5),   // two gaps
            (90.0, 5, 120.0, 1.0),   // three gaps
            (400.0, 5, 120.0, 1.0),  // capped
            (90.0, 1, 0.0, 0.25),    // single purchase: 60-day default gap
            (10.0, 30, 29.0, 0.214), // daily buyer: gap floored at 7 days
        ];
        for (recency, frequency, span, expected) in cases {
            assert_eq!(
                churn_risk(recency, frequency, span),
                expected,
                "{recency} days, {frequency} purchases over {span}"
            );
        }
    }
}
