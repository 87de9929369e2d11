//! A/B measurement building blocks: a stable assignment of a person to a
//! rule's holdout group or one of its variants, and the comparison of a
//! variant's re-engagement rate with the holdout's (difference of two
//! proportions with a 95% Wald interval; a winner is named only when the
//! interval excludes zero).

use sha2::{Digest, Sha256};

/// Where a person falls for a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Gets nothing: the baseline "re-engaged anyway" is measured on them.
    Holdout,
    /// Gets this variant.
    Variant(String),
}

/// A stable assignment: the same (rule, person) always lands in the same
/// group, on every worker and after a restart, because it is a hash, not a
/// draw. `holdout_bp` is the holdout share in basis points (1000 = 10%);
/// `variants` are `(name, weight)`. The holdout and the variant use
/// different bits of the hash, so the variant split is the same inside and
/// outside any holdout size.
pub fn assign(rule: &str, person_id: &str, holdout_bp: u32, variants: &[(&str, u32)]) -> Assignment {
    let digest = Sha256::digest(format!("{rule}|{person_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut second = [0u8; 8];
    second.copy_from_slice(&digest[8..16]);
    if u64::from_be_bytes(first) % 10_000 < u64::from(holdout_bp) {
        return Assignment::Holdout;
    }
    let total: u64 = variants.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return Assignment::Variant("default".into());
    }
    let mut pick = u64::from_be_bytes(second) % total;
    for (name, w) in variants {
        if pick < u64::from(*w) {
            return Assignment::Variant((*name).to_owned());
        }
        pick -= u64::from(*w);
    }
    Assignment::Variant("default".into())
}

/// People in a group and how many of them re-engaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// People.
    pub n: u64,
    /// Re-engaged.
    pub k: u64,
}

/// A variant against the holdout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Variant rate − holdout rate.
    pub difference: f64,
    /// 95% interval, low end.
    pub ci_low: f64,
    /// 95% interval, high end.
    pub ci_high: f64,
    /// `Some(true)`: the variant re-engages more (interval above zero);
    /// `Some(false)`: less (below zero); `None`: the interval includes zero,
    /// no winner.
    pub variant_wins: Option<bool>,
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Difference of re-engagement rates with its 95% Wald interval; `None`
/// when either group is empty.
pub fn compare(variant: Counts, holdout: Counts) -> Option<Comparison> {
    if variant.n == 0 || holdout.n == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let rate = |c: Counts| (c.k as f64 / c.n as f64, c.n as f64);
    let (p1, n1) = rate(variant);
    let (p0, n0) = rate(holdout);
    let difference = p1 - p0;
    let se = (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt();
    let (ci_low, ci_high) = (difference - Z95 * se, difference + Z95 * se);
    let variant_wins = if ci_low > 0.0 {
        Some(true)
    } else if ci_high < 0.0 {
        Some(false)
    } else {
        None
    };
    Some(Comparison {
        difference,
        ci_low,
        ci_high,
        variant_wins,
    })
}

/// One variant of a rule, against the rule's holdout.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantStats {
    /// Variant name.
    pub variant: String,
    /// Assigned and re-engaged.
    pub counts: Counts,
    /// Against the holdout; `None` without a holdout (or an empty one).
    pub vs_holdout: Option<Comparison>,
}

/// A rule's experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleStats {
    /// Rule name.
    pub rule: String,
    /// The holdout group.
    pub holdout: Counts,
    /// Each variant.
    pub variants: Vec<VariantStats>,
}

/// Groups `(rule, variant, n, k)` rows (variant `holdout` is the baseline)
/// into per-rule comparisons.
pub fn report(rows: &[(String, String, u64, u64)]) -> Vec<RuleStats> {
    let mut out: Vec<RuleStats> = Vec::new();
    for (rule, variant, n, k) in rows {
        let idx = match out.iter().position(|r| r.rule == *rule) {
            Some(i) => i,
            None => {
                out.push(RuleStats {
                    rule: rule.clone(),
                    holdout: Counts { n: 0, k: 0 },
                    variants: Vec::new(),
                });
                out.len() - 1
            }
        };
        let counts = Counts { n: *n, k: *k };
        if variant == "holdout" {
            out[idx].holdout = counts;
        } else {
            out[idx].variants.push(VariantStats {
                variant: variant.clone(),
                counts,
                vs_holdout: None,
            });
        }
    }
    for r in &mut out {
        let holdout = r.holdout;
        for v in &mut r.variants {
            v.vs_holdout = compare(v.counts, holdout);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn a_clear_difference_names_the_winner() {
        // 60/100 vs 40/100: d = 0.2, se = sqrt(0.0048) = 0.069282, ±0.135791.
        let c = compare(Counts { n: 100, k: 60 }, Counts { n: 100, k: 40 }).unwrap();
        assert!(close(c.difference, 0.2));
        assert!(close(c.ci_low, 0.064209) && close(c.ci_high, 0.335791), "{c:?}");
        assert_eq!(c.variant_wins, Some(true));
        // And the other way round the variant loses.
        let c = compare(Counts { n: 100, k: 40 }, Counts { n: 100, k: 60 }).unwrap();
        assert_eq!(c.variant_wins, Some(false));
    }

    #[test]
    fn an_interval_that_includes_zero_names_no_winner() {
        // 45/100 vs 40/100: d = 0.05, se = sqrt(0.004875) = 0.069821, ±0.136848.
        let c = compare(Counts { n: 100, k: 45 }, Counts { n: 100, k: 40 }).unwrap();
        assert!(close(c.ci_low, -0.086848) && close(c.ci_high, 0.186848), "{c:?}");
        assert_eq!(c.variant_wins, None);
        assert_eq!(compare(Counts { n: 0, k: 0 }, Counts { n: 10, k: 1 }), None);
    }

    #[test]
    fn a_report_compares_each_variant_with_its_rules_holdout() {
        let rows: Vec<(String, String, u64, u64)> = [
            ("r", "a", 100, 60),
            ("r", "b", 100, 45),
            ("r", "holdout", 100, 40),
            ("s", "only", 10, 5),
        ]
        .iter()
        .map(|(r, v, n, k)| ((*r).to_owned(), (*v).to_owned(), *n, *k))
        .collect();
        let rep = report(&rows);
        assert_eq!(rep.len(), 2);
        assert_eq!(rep[0].holdout, Counts { n: 100, k: 40 });
        let wins: Vec<_> = rep[0]
            .variants
            .iter()
            .map(|v| (v.variant.as_str(), v.vs_holdout.unwrap().variant_wins))
            .collect();
        assert_eq!(wins, [("a", Some(true)), ("b", None)]);
        // No holdout, no comparison.
        assert_eq!(rep[1].variants[0].vs_holdout, None);
    }

    #[test]
    fn assignment_is_stable_and_splits_as_weighted() {
        let variants = [("a", 1), ("b", 1)];
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..10_000 {
            let p = format!("person-{i}");
            let got = assign("rule", &p, 1_000, &variants);
            assert_eq!(got, assign("rule", &p, 1_000, &variants), "stable");
            let key = match got {
                Assignment::Holdout => "holdout".to_owned(),
                Assignment::Variant(v) => v,
            };
            *counts.entry(key).or_insert(0u32) += 1;
        }
        // 10% holdout, the rest halved: within 3 standard deviations.
        let within = |n: u32, expected: f64, sd: f64| (f64::from(n) - expected).abs() < 3.0 * sd;
        assert!(within(counts["holdout"], 1_000.0, 30.0), "{counts:?}");
        assert!(within(counts["a"], 4_500.0, 50.0), "{counts:?}");
        assert!(within(counts["b"], 4_500.0, 50.0), "{counts:?}");
        // No holdout: nobody is held out.
        assert_eq!(
            assign("rule", "x", 0, &[("only", 1)]),
            Assignment::Variant("only".into())
        );
    }
}
