//! `kairos score churn`: apply any registered churn model (trained from the
//! store or from a CSV) to a CSV of new rows, with the preprocessing stored
//! in the model applied exactly as in training, and write one scored row per
//! input row.

use std::path::PathBuf;

use anyhow::Context;
use kairos_jobs::churn::registry;
use kairos_models::churn::{ChurnModel, FeatureTable};

use crate::Config;

/// Factors written per row.
const TOP_FACTORS: usize = 3;

/// `kairos score ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ScoreCmd {
    /// Score a CSV with a churn model: `id,probability,risk_level,churn,top_factors`.
    Churn(ScoreChurnArgs),
}

/// Options of `kairos score churn`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreChurnArgs {
    /// Registered model version (`kairos models list`).
    #[arg(long, required_unless_present = "model_file", conflicts_with = "model_file")]
    pub model: Option<String>,
    /// A model artifact file (`kairos models export`) instead of the registry.
    #[arg(long)]
    pub model_file: Option<PathBuf>,
    /// Rows to score: a CSV with (at least) the model's columns; others, the
    /// label included, are ignored.
    #[arg(long)]
    pub csv: PathBuf,
    /// Column naming each row in the output (default: the input line number).
    #[arg(long)]
    pub id_column: Option<String>,
    /// Output CSV; standard output when absent.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// Runs `kairos score ...`.
pub async fn run(config: Config, cmd: ScoreCmd) -> anyhow::Result<()> {
    match cmd {
        ScoreCmd::Churn(args) => churn(config, args).await,
    }
}

async fn churn(config: Config, args: ScoreChurnArgs) -> anyhow::Result<()> {
    let model = match (&args.model, &args.model_file) {
        (_, Some(path)) => ChurnModel::load(path).with_context(|| format!("loading {}", path.display()))?,
        (Some(version), None) => {
            let store = super::open_store(&config).await?;
            registry::load(&store, version).await?
        }
        (None, None) => anyhow::bail!("give --model VERSION or --model-file FILE"),
    };
    let table = FeatureTable::from_csv_path_with_schema(&args.csv, model.schema(), args.id_column.as_deref())
        .with_context(|| format!("reading {} for model {}", args.csv.display(), model.version()))?;
    let rows = score_table(&model, &table)?;
    let written = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            write_rows(file, &rows)?;
            Some(path)
        }
        None => {
            write_rows(std::io::stdout().lock(), &rows)?;
            None
        }
    };
    let at_risk = rows.iter().filter(|r| r.churn).count();
    eprintln!(
        "scored {} rows with model {} ({} predicted to churn at threshold {}){}",
        rows.len(),
        model.version(),
        at_risk,
        model.threshold(),
        written.map(|p| format!("; wrote {}", p.display())).unwrap_or_default()
    );
    Ok(())
}

/// One scored input row.
struct Scored {
    id: String,
    probability: f64,
    risk_level: String,
    churn: bool,
    factors: String,
}

fn score_table(model: &ChurnModel, table: &FeatureTable) -> anyhow::Result<Vec<Scored>> {
    let probabilities = model.score_table(table)?;
    let mut out = Vec::with_capacity(probabilities.len());
    for (row, probability) in probabilities.into_iter().enumerate() {
        let id = match (table.ids(), table.lines()) {
            (Some(ids), _) => ids[row].clone(),
            (None, Some(lines)) => format!("line {}", lines[row]),
            (None, None) => row.to_string(),
        };
        let explanation = model.explain_table_row(table, row, TOP_FACTORS)?;
        let factors = explanation
            .risk_factors()
            .map(|f| format!("{}={} ({:+.3})", f.feature, f.value, f.contribution))
            .collect::<Vec<_>>()
            .join("; ");
        out.push(Scored {
            id,
            probability,
            risk_level: model.risk_level(probability).to_string(),
            churn: model.predict_churn(probability),
            factors,
        });
    }
    Ok(out)
}

fn write_rows<W: std::io::Write>(writer: W, rows: &[Scored]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(writer);
    w.write_record(["id", "probability", "risk_level", "churn", "top_factors"])?;
    for r in rows {
        // 17 significant digits: the probability round-trips exactly, so other tools can compare.
        w.write_record([
            r.id.as_str(),
            &format!("{:.17e}", r.probability),
            &r.risk_level,
            if r.churn { "yes" } else { "no" },
            &r.factors,
        ])?;
    }
    w.flush()?;
    Ok(())
}
