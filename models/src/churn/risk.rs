//! Risk levels: the coarse buckets people act on, derived from a churn probability.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{ChurnError, Result};

/// How urgently an account needs attention. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskLevel {
    /// Probability at or below the medium threshold.
    Low,
    /// Above the medium threshold (default 0.3).
    Medium,
    /// Above the high threshold (default 0.5).
    High,
    /// Above the critical threshold (default 0.7): the daily run alerts the team on these.
    Critical,
}

impl RiskLevel {
    /// Bucket with the default thresholds (`> 0.7` CRITICAL, `> 0.5` HIGH, `> 0.3` MEDIUM, else LOW, as the
    /// product brief specifies). A NaN probability maps to `Low`; the models never produce one.
    pub fn from_probability(probability: f64) -> Self {
        RiskThresholds::default().level(probability)
    }

    /// Upper-case name (`"LOW"`, …), the spelling used in APIs and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "LOW",
            RiskLevel::Medium => "MEDIUM",
            RiskLevel::High => "HIGH",
            RiskLevel::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Probability thresholds between risk levels; a level applies when the probability is strictly above its
/// threshold. Configurable because a tenant may want fewer (or more) accounts flagged; stored in the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskThresholds {
    /// Above this: at least MEDIUM.
    pub medium: f64,
    /// Above this: at least HIGH.
    pub high: f64,
    /// Above this: CRITICAL.
    pub critical: f64,
}

impl Default for RiskThresholds {
    fn default() -> Self {
        RiskThresholds {
            medium: 0.3,
            high: 0.5,
            critical: 0.7,
        }
    }
}

impl RiskThresholds {
    /// Validated thresholds: `0 ≤ medium ≤ high ≤ critical ≤ 1`.
    pub fn new(medium: f64, high: f64, critical: f64) -> Result<Self> {
        let t = RiskThresholds { medium, high, critical };
        t.validate()?;
        Ok(t)
    }

    /// Checks the ordering (used by [`RiskThresholds::new`] and when loading a model).
    pub fn validate(&self) -> Result<()> {
        let ok = 0.0 <= self.medium && self.medium <= self.high && self.high <= self.critical && self.critical <= 1.0;
        if ok {
            Ok(())
        } else {
            Err(ChurnError::InvalidConfig(format!(
                "risk thresholds must satisfy 0 <= medium <= high <= critical <= 1, got {} / {} / {}",
                self.medium, self.high, self.critical
            )))
        }
    }

    /// The level of a probability.
    pub fn level(&self, probability: f64) -> RiskLevel {
        if probability > self.critical {
            RiskLevel::Critical
        } else if probability > self.high {
            RiskLevel::High
        } else if probability > self.medium {
            RiskLevel::Medium
        } else {
            RiskLevel::Low
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_levels_are_strict() {
        assert_eq!(RiskLevel::from_probability(0.0), RiskLevel::Low);
        assert_eq!(RiskLevel::from_probability(0.3), RiskLevel::Low);
        assert_eq!(RiskLevel::from_probability(0.31), RiskLevel::Medium);
        assert_eq!(RiskLevel::from_probability(0.5), RiskLevel::Medium);
        assert_eq!(RiskLevel::from_probability(0.51), RiskLevel::High);
        assert_eq!(RiskLevel::from_probability(0.7), RiskLevel::High);
        assert_eq!(RiskLevel::from_probability(0.71), RiskLevel::Critical);
        assert_eq!(RiskLevel::from_probability(f64::NAN), RiskLevel::Low);
        assert!(RiskLevel::Critical > RiskLevel::High);
        assert_eq!(
            serde_json::to_string(&RiskLevel::Critical).ok().as_deref(),
            Some("\"CRITICAL\"")
        );
    }

    #[test]
    fn custom_thresholds() {
        let t = RiskThresholds::new(0.2, 0.4, 0.6).unwrap();
        assert_eq!(t.level(0.5), RiskLevel::High);
        assert!(RiskThresholds::new(0.5, 0.4, 0.6).is_err());
        assert!(RiskThresholds::new(0.1, 0.4, 1.5).is_err());
        assert!(RiskThresholds::new(f64::NAN, 0.4, 0.6).is_err());
    }
}
