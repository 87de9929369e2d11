//! `kairos bench`: queue throughput and latency per backend (being written).

use kairos_core::Config;

/// Options of `kairos bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {}

/// Options of the hidden `kairos bench-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchWorkerArgs {}

/// Runs the benchmark.
pub async fn run(_config: Config, _args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet available")
}

/// Runs one benchmark consumer process.
pub async fn worker(_config: Config, _args: BenchWorkerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet available")
}
