//! Kairos's own account feature schema: the per-client signals the product brief lists, all numeric.
//!
//! The job that scores a tenant's accounts fills one [`AccountFeatures`] per account from the store and
//! trains / scores through the same pipeline as a CSV ([`Dataset::from_accounts`],
//! [`crate::churn::ChurnModel::score_accounts`]). Every field is optional: a missing signal is imputed with the
//! training median rather than forcing the caller to invent a value.

use serde::{Deserialize, Serialize};

use super::data::{Column, ColumnData, Dataset, FeatureTable};
use super::error::Result;

/// Number of fields of [`AccountFeatures`].
pub const ACCOUNT_FEATURE_COUNT: usize = 15;

/// Behavioural, sentiment, delivery and billing signals of one client account over recent windows.
/// Windows are "the last 30 days" unless the name says otherwise; `None` means unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountFeatures {
    /// Logins by the client's users in the last 30 days: the core engagement signal.
    pub logins_30d: Option<f64>,
    /// Days since any user of the client last logged in: recency of engagement.
    pub days_since_last_login: Option<f64>,
    /// Support tickets opened in the last 30 days.
    pub tickets_30d: Option<f64>,
    /// Comments / ticket messages written in the last 30 days (activity, not necessarily unhappiness).
    pub comments_30d: Option<f64>,
    /// Mean sentiment of the client's recent messages, −1 (negative) … 1 (positive), from the sentiment model.
    pub avg_sentiment: Option<f64>,
    /// Messages classified negative in the last 30 days.
    pub negative_interactions: Option<f64>,
    /// Support escalations in the last 30 days.
    pub support_escalations: Option<f64>,
    /// Projects currently behind schedule.
    pub project_delays: Option<f64>,
    /// Deadlines missed in the last 30 days.
    pub missed_deadlines: Option<f64>,
    /// Projects over budget.
    pub budget_overruns: Option<f64>,
    /// Late payments over the last 12 months.
    pub payment_delays: Option<f64>,
    /// Days since the last payment was received.
    pub days_since_last_payment: Option<f64>,
    /// Total amount the client has paid (account currency).
    pub total_spent: Option<f64>,
    /// Days since the account was created.
    pub account_age_days: Option<f64>,
    /// Days until the contract renews (negative if overdue).
    pub days_to_renewal: Option<f64>,
}

impl AccountFeatures {
    /// Field names, in model order (the order of [`AccountFeatures::values`]).
    pub const FEATURE_NAMES: [&'static str; ACCOUNT_FEATURE_COUNT] = [
        "logins_30d",
        "days_since_last_login",
        "tickets_30d",
        "comments_30d",
        "avg_sentiment",
        "negative_interactions",
        "support_escalations",
        "project_delays",
        "missed_deadlines",
        "budget_overruns",
        "payment_delays",
        "days_since_last_payment",
        "total_spent",
        "account_age_days",
        "days_to_renewal",
    ];

    /// The fields as an array in [`AccountFeatures::FEATURE_NAMES`] order.
    pub fn values(&self) -> [Option<f64>; ACCOUNT_FEATURE_COUNT] {
        [
            self.logins_30d,
            self.days_since_last_login,
            self.tickets_30d,
            self.comments_30d,
            self.avg_sentiment,
            self.negative_interactions,
            self.support_escalations,
            self.project_delays,
            self.missed_deadlines,
            self.budget_overruns,
            self.payment_delays,
            self.days_since_last_payment,
            self.total_spent,
            self.account_age_days,
            self.days_to_renewal,
        ]
    }

    /// The inverse of [`AccountFeatures::values`].
    pub fn from_values(v: [Option<f64>; ACCOUNT_FEATURE_COUNT]) -> Self {
        AccountFeatures {
            logins_30d: v[0],
            days_since_last_login: v[1],
            tickets_30d: v[2],
            comments_30d: v[3],
            avg_sentiment: v[4],
            negative_interactions: v[5],
            support_escalations: v[6],
            project_delays: v[7],
            missed_deadlines: v[8],
            budget_overruns: v[9],
            payment_delays: v[10],
            days_since_last_payment: v[11],
            total_spent: v[12],
            account_age_days: v[13],
            days_to_renewal: v[14],
        }
    }
}

impl FeatureTable {
    /// A table with one numeric column per [`AccountFeatures`] field. Non-finite values count as missing.
    pub fn from_accounts(
        name: impl Into<String>,
        accounts: &[AccountFeatures],
        ids: Option<Vec<String>>,
    ) -> Result<Self> {
        let mut columns: Vec<Vec<Option<f64>>> = (0..ACCOUNT_FEATURE_COUNT)
            .map(|_| Vec::with_capacity(accounts.len()))
            .collect();
        for a in accounts {
            for (column, v) in columns.iter_mut().zip(a.values()) {
                column.push(v.filter(|x| x.is_finite()));
            }
        }
        let columns = AccountFeatures::FEATURE_NAMES
            .iter()
            .zip(columns)
            .map(|(name, values)| Column {
                name: (*name).to_string(),
                data: ColumnData::Numeric(values),
            })
            .collect();
        FeatureTable::new(name, columns, ids)
    }
}

impl Dataset {
    /// Training data from accounts and their outcomes (`true` = churned); the label column is named `churned`.
    pub fn from_accounts(
        name: impl Into<String>,
        accounts: &[AccountFeatures],
        churned: &[bool],
        ids: Option<Vec<String>>,
    ) -> Result<Self> {
        Dataset::new(
            FeatureTable::from_accounts(name, accounts, ids)?,
            churned.to_vec(),
            "churned",
        )
    }
}
