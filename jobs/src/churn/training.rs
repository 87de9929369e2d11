//! Training a churn model from the store: labelled accounts as of a cutoff
//! (features before it, label = churned within the horizon after it), and
//! the reference distribution of the training rows kept for drift
//! monitoring. `kairos train churn`, the demo and the retraining job
//! ([`super::retrain`]) all train through here.

use kairos_core::store::Tenant;
use kairos_core::Store;
use kairos_models::churn::{AccountFeatures, ChurnModel, Dataset};

use super::{features, registry, ChurnStoreError};
use crate::monitor::psi::{Baseline, FeatureBaseline};

/// Labelled accounts read from the store.
#[derive(Debug, Clone)]
pub struct StoreDataset {
    /// The rows as a training dataset (ids `tenant/account`).
    pub dataset: Dataset,
    /// The same rows' features, in order.
    pub features: Vec<AccountFeatures>,
    /// The same rows' labels (churned within the horizon).
    pub labels: Vec<bool>,
}

impl StoreDataset {
    /// Rows labelled churned.
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|l| **l).count()
    }
}

/// Labelled accounts of `tenants` at `cutoff_ms`; `None` when there are none.
pub async fn store_dataset(
    store: &Store,
    tenants: &[Tenant],
    cutoff_ms: i64,
    horizon_ms: i64,
) -> Result<Option<StoreDataset>, ChurnStoreError> {
    let (mut all_features, mut labels, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for t in tenants {
        let labelled = features::labelled_accounts(store, &t.id, cutoff_ms, horizon_ms).await?;
        let accounts: Vec<String> = labelled.iter().map(|(a, _)| a.clone()).collect();
        let f = features::account_features(store, &t.id, &accounts, cutoff_ms).await?;
        for ((account, churned), f) in labelled.into_iter().zip(f) {
            ids.push(format!("{}/{account}", t.name));
            labels.push(churned);
            all_features.push(f);
        }
    }
    if labels.is_empty() {
        return Ok(None);
    }
    let dataset = Dataset::from_accounts("store", &all_features, &labels, Some(ids))?;
    Ok(Some(StoreDataset {
        dataset,
        features: all_features,
        labels,
    }))
}

/// The reference distribution of every account feature over `rows`.
pub fn baseline(rows: &[AccountFeatures]) -> Baseline {
    let values: Vec<_> = rows.iter().map(AccountFeatures::values).collect();
    AccountFeatures::FEATURE_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let column: Vec<Option<f64>> = values.iter().map(|v| v[i]).collect();
            ((*name).to_owned(), FeatureBaseline::fit(&column))
        })
        .collect()
}

/// Registers a store-trained model (inactive) with the reference
/// distribution of its training rows.
pub async fn register(
    store: &Store,
    model: &ChurnModel,
    scope: Option<&str>,
    source: &str,
    training_rows: &[AccountFeatures],
) -> Result<(), ChurnStoreError> {
    registry::register(store, model, scope, source).await?;
    crate::monitor::baselines::save(store, model.version(), &baseline(training_rows), training_rows.len()).await?;
    Ok(())
}
