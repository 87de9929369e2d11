//! Summary statistics the CLI reports (bench, bench-sentiment, demo).

/// The `p`-th percentile (`p` in 0..=100) of `sorted` (ascending) by the
/// nearest-rank method: the smallest value such that at least `p`% of the
/// values are less than or equal to it, i.e. the value at 1-based rank
/// `ceil(p / 100 × n)` (rank 1 for `p` = 0). Always one of the values, never
/// an interpolation, so a latency percentile is a latency that happened.
///
/// `None` for no values: an empty run has no percentile, and callers show
/// that rather than a made-up 0.
pub fn percentile<T: Copy + PartialOrd>(sorted: &[T], p: f64) -> Option<T> {
    debug_assert!(sorted.is_sorted(), "percentile needs sorted values");
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // p × n first: exact for whole p and n, so p95 of 100 values is rank 95, not 96.
    let rank = (p * sorted.len() as f64 / 100.0).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The 1-minute load average (NaN where `/proc/loadavg` cannot be read).
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_of_one_to_a_hundred() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
    }

    #[test]
    fn rounds_the_rank_up() {
        // n = 10: p50 → rank 5, p99 → rank ceil(9.9) = 10, p95 → rank ceil(9.5) = 10.
        let v: Vec<i64> = (10..=100).step_by(10).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(100));
        assert_eq!(percentile(&v, 99.0), Some(100));
        assert_eq!(percentile(&v, 10.0), Some(10));
        assert_eq!(percentile(&v, 11.0), Some(20));
        // n = 4: the median is the 2nd value (nearest rank), not an average.
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(percentile::<u64>(&[], 50.0), None);
        assert_eq!(percentile(&[7i64], 0.0), Some(7));
        assert_eq!(percentile(&[7i64], 50.0), Some(7));
        assert_eq!(percentile(&[7i64], 99.0), Some(7));
    }

    #[test]
    fn out_of_range_p_is_clamped() {
        let v = [1u64, 2, 3];
        assert_eq!(percentile(&v, -5.0), Some(1));
        assert_eq!(percentile(&v, 250.0), Some(3));
    }
}
