//! `kairos train churn | sentiment`: train a model and register it as a new
//! version in the model registry (`kairos models` activates it).

pub mod churn;
mod sentiment;

use crate::Config;

/// `kairos train ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TrainCmd {
    /// Train a churn model from the store (default) or from `--csv`.
    Churn(churn::TrainChurnArgs),
    /// Train a sentiment head on labelled texts (`--data FILE...`).
    Sentiment(sentiment::TrainSentimentArgs),
}

/// Runs `kairos train ...`.
pub async fn run(config: Config, cmd: TrainCmd) -> anyhow::Result<()> {
    match cmd {
        TrainCmd::Churn(args) => churn::run(config, args).await,
        TrainCmd::Sentiment(args) => sentiment::run(config, args).await,
    }
}
