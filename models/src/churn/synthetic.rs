//! Synthetic account histories with a known churn process, for demos and for testing that training recovers
//! the truth.
//!
//! # Ground truth
//! Each account's churn probability is `σ(logit)` with
//!
//! ```text
//! logit = −1.3
//!         − 0.08  · (logins_30d − 12)
//!         + 0.08  · (days_since_last_login − 5)
//!         − 2.0   · (avg_sentiment − 0.2)
//!         + 0.6   · (support_escalations − 0.5)
//!         + 0.5   · (payment_delays − 0.5)
//!         + 0.4   · (project_delays − 0.5)
//!         − 0.004 · (days_to_renewal − 180)
//! ```
//!
//! ([`GROUND_TRUTH_INTERCEPT`], [`GROUND_TRUTH`]), computed on the complete values; churn is then drawn as a
//! Bernoulli of that probability. The other eight fields are generated too (some correlated with the truth
//! features, e.g. negative interactions with sentiment) but do not enter the logit, so a fitted model should
//! give them small weights. After the outcome is drawn, each field is blanked with probability
//! [`SyntheticConfig::missing_rate`], to exercise imputation.
//!
//! The generator is deterministic for a seed on every platform (own SplitMix64).

use std::io::Write;

use super::account::AccountFeatures;
use super::data::Dataset;
use super::error::{ChurnError, Result};
use super::model::sigmoid;
use super::rng::SplitMix64;

/// Intercept of the ground-truth logit.
pub const GROUND_TRUTH_INTERCEPT: f64 = -1.3;

/// Ground-truth terms: (field, centre, coefficient per raw unit). See the [module docs](self).
pub const GROUND_TRUTH: [(&str, f64, f64); 7] = [
    ("logins_30d", 12.0, -0.08),
    ("days_since_last_login", 5.0, 0.08),
    ("avg_sentiment", 0.2, -2.0),
    ("support_escalations", 0.5, 0.6),
    ("payment_delays", 0.5, 0.5),
    ("project_delays", 0.5, 0.4),
    ("days_to_renewal", 180.0, -0.004),
];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Number of accounts.
    pub accounts: usize,
    /// RNG seed.
    pub seed: u64,
    /// Probability that any one field is blanked (0 … 1).
    pub missing_rate: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            accounts: 5000,
            seed: 7,
            missing_rate: 0.02,
        }
    }
}

/// One generated account.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticAccount {
    /// `acct-000000`, `acct-000001`, …
    pub account_id: String,
    /// Its features (possibly with blanks).
    pub features: AccountFeatures,
    /// The ground-truth churn probability (from the complete features).
    pub churn_probability: f64,
    /// The drawn outcome.
    pub churned: bool,
}

/// The ground-truth logit of complete features (a missing truth field counts at its centre).
pub fn ground_truth_logit(features: &AccountFeatures) -> f64 {
    let values = features.values();
    GROUND_TRUTH
        .iter()
        .fold(GROUND_TRUTH_INTERCEPT, |acc, (name, centre, coef)| {
            let at = AccountFeatures::FEATURE_NAMES.iter().position(|n| n == name);
            let v = at.and_then(|i| values[i]).unwrap_or(*centre);
            acc + coef * (v - centre)
        })
}

/// Generates accounts; see the [module docs](self) for the process.
pub fn generate(config: &SyntheticConfig) -> Result<Vec<SyntheticAccount>> {
    if !(0.0..=1.0).contains(&config.missing_rate) {
        return Err(ChurnError::InvalidConfig(format!(
            "missing rate {} is not in [0, 1]",
            config.missing_rate
        )));
    }
    let mut rng = SplitMix64::new(config.seed);
    let mut out = Vec::with_capacity(config.accounts);
    for i in 0..config.accounts {
        let engagement = rng.normal();
        let account_age_days = (30.0 + 1470.0 * rng.uniform()).round();
        let logins = rng.poisson((12.0 * (0.5 * engagement).exp()).clamp(0.5, 60.0));
        let days_since_last_login = (-(30.0 / (logins + 1.0)) * (1.0 - rng.uniform()).ln())
            .round()
            .min(90.0);
        let tickets = rng.poisson(1.5);
        let comments = rng.poisson((6.0 * (0.4 * engagement).exp()).clamp(0.5, 60.0));
        let sentiment = ((0.2 + 0.15 * engagement + 0.3 * rng.normal()).clamp(-1.0, 1.0) * 1000.0).round() / 1000.0;
        let negative = rng.poisson(0.5 + 3.0 * (-sentiment).max(0.0) + 0.3 * tickets);
        let escalations = rng.poisson(0.2 + 0.25 * tickets);
        let project_delays = rng.poisson(0.5);
        let missed_deadlines = rng.poisson(0.3 + 0.5 * project_delays);
        let budget_overruns = rng.poisson(0.3);
        let payment_delays = rng.poisson(0.5);
        let days_since_last_payment = (30.0 * rng.uniform() + 20.0 * payment_delays).round();
        let total_spent = (account_age_days / 30.0 * 400.0 * (0.3 * rng.normal()).exp()).round();
        let days_to_renewal = (365.0 * rng.uniform()).round();
        let complete = AccountFeatures {
            logins_30d: Some(logins),
            days_since_last_login: Some(days_since_last_login),
            tickets_30d: Some(tickets),
            comments_30d: Some(comments),
            avg_sentiment: Some(sentiment),
            negative_interactions: Some(negative),
            support_escalations: Some(escalations),
            project_delays: Some(project_delays),
            missed_deadlines: Some(missed_deadlines),
            budget_overruns: Some(budget_overruns),
            payment_delays: Some(payment_delays),
            days_since_last_payment: Some(days_since_last_payment),
            total_spent: Some(total_spent),
            account_age_days: Some(account_age_days),
            days_to_renewal: Some(days_to_renewal),
        };
        let churn_probability = sigmoid(ground_truth_logit(&complete));
        let churned = rng.uniform() < churn_probability;
        let mut values = complete.values();
        for v in values.iter_mut() {
            if rng.uniform() < config.missing_rate {
                *v = None;
            }
        }
        out.push(SyntheticAccount {
            account_id: format!("acct-{i:06}"),
            features: AccountFeatures::from_values(values),
            churn_probability,
            churned,
        });
    }
    Ok(out)
}

/// Training data from generated accounts (ids kept).
pub fn to_dataset(name: impl Into<String>, accounts: &[SyntheticAccount]) -> Result<Dataset> {
    let features: Vec<AccountFeatures> = accounts.iter().map(|a| a.features.clone()).collect();
    let churned: Vec<bool> = accounts.iter().map(|a| a.churned).collect();
    let ids = accounts.iter().map(|a| a.account_id.clone()).collect();
    Dataset::from_accounts(name, &features, &churned, Some(ids))
}

/// Writes accounts as CSV (`account_id`, the 15 fields, `churned` as `yes`/`no`; blanks for missing), so the
/// demo can also exercise the CSV path. The ground-truth probability is not written (it would leak the answer).
pub fn write_csv<W: Write>(writer: W, accounts: &[SyntheticAccount]) -> Result<()> {
    let mut w = csv::Writer::from_writer(writer);
    let mut header = vec!["account_id"];
    header.extend(AccountFeatures::FEATURE_NAMES);
    header.push("churned");
    w.write_record(&header).map_err(ChurnError::csv)?;
    for a in accounts {
        let mut row = vec![a.account_id.clone()];
        row.extend(
            a.features
                .values()
                .iter()
                .map(|v| v.map(|x| x.to_string()).unwrap_or_default()),
        );
        row.push(if a.churned { "yes" } else { "no" }.to_string());
        w.write_record(&row).map_err(ChurnError::csv)?;
    }
    w.flush().map_err(|e| ChurnError::csv(e.into()))
}
