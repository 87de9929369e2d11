//! Churn pipeline tests: loading errors, encoding rules, metrics, split, artifact round trip, synthetic recovery.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::path::{Path, PathBuf};

use kairos_models::churn::{
    self, synthetic, AccountFeatures, ChurnError, ChurnModel, ColumnData, Confusion, CsvOptions, Dataset, DropReason,
    FeatureEncoding, FeatureSchema, FeatureTable, FieldValue, LabelMap, Record, RiskLevel, Split, TrainConfig,
    TrainEvent,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn small() -> Dataset {
    Dataset::from_csv_path(&fixture("accounts_small.csv"), &CsvOptions::new("churned")).unwrap()
}

/// No search, 25 % held out: the fixture is tiny.
fn small_config() -> TrainConfig {
    TrainConfig {
        cv_folds: 0,
        alphas: vec![1.0],
        test_fraction: 0.25,
        seed: 3,
        version: Some("t1".into()),
        ..Default::default()
    }
}

fn small_model() -> ChurnModel {
    churn::train(&small(), &small_config()).unwrap().model
}

// ---------- loading ----------

#[test]
fn wrong_field_count_names_the_line() {
    let err = Dataset::from_csv_path(&fixture("bad_field_count.csv"), &CsvOptions::new("churned")).unwrap_err();
    match err {
        ChurnError::FieldCount { line, expected, found } => assert_eq!((line, expected, found), (4, 4, 5)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_label_names_line_and_column() {
    let err = Dataset::from_csv_path(&fixture("bad_label.csv"), &CsvOptions::new("churned")).unwrap_err();
    match &err {
        ChurnError::BadLabel { line, column, value } => {
            assert_eq!((*line, column.as_str(), value.as_str()), (5, "churned", "maybe"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "line 5, column `churned`: cannot read label \"maybe\" as churned/not churned"
    );
}

#[test]
fn blank_label_is_an_error_not_a_guess() {
    let csv = "a,churned\n1,yes\n2,\n";
    let err = Dataset::from_csv_reader(csv.as_bytes(), "t", &CsvOptions::new("churned")).unwrap_err();
    assert!(
        matches!(err, ChurnError::BadLabel { line: 3, ref value, .. } if value.is_empty()),
        "{err:?}"
    );
}

#[test]
fn custom_label_map() {
    let csv = "a,status\n1,cancelled\n2,renewed\n";
    let mut options = CsvOptions::new("status");
    options.labels = LabelMap::new(["cancelled"], ["renewed"]).unwrap();
    let data = Dataset::from_csv_reader(csv.as_bytes(), "t", &options).unwrap();
    assert_eq!(data.labels(), &[true, false]);
}

#[test]
fn missing_and_duplicate_columns() {
    let err = Dataset::from_csv_path(&fixture("accounts_small.csv"), &CsvOptions::new("Churn")).unwrap_err();
    assert!(matches!(err, ChurnError::MissingColumn { ref column } if column == "Churn"));
    let options = CsvOptions::new("churned").id_column("customerID");
    let err = Dataset::from_csv_path(&fixture("accounts_small.csv"), &options).unwrap_err();
    assert!(matches!(err, ChurnError::MissingColumn { ref column } if column == "customerID"));
    let err =
        Dataset::from_csv_reader("a,a,churned\n1,2,yes\n".as_bytes(), "t", &CsvOptions::new("churned")).unwrap_err();
    assert!(matches!(err, ChurnError::DuplicateColumn { ref column } if column == "a"));
    let err = Dataset::from_csv_reader("a,churned\n".as_bytes(), "t", &CsvOptions::new("churned")).unwrap_err();
    assert!(matches!(err, ChurnError::NoRows));
    let err = Dataset::from_csv_path(&fixture("nope.csv"), &CsvOptions::new("churned")).unwrap_err();
    assert!(matches!(err, ChurnError::Io { .. }));
}

#[test]
fn column_kinds_ids_and_blanks_are_inferred() {
    let data = small();
    let t = data.features();
    assert_eq!(data.len(), 30);
    assert_eq!(data.positives(), 8);
    assert_eq!(data.dropped().len(), 1);
    assert_eq!(data.dropped()[0].name, "account");
    assert_eq!(data.dropped()[0].reason, DropReason::AllDistinct);
    assert_eq!(t.ids().map(|ids| ids[0].as_str()), Some("A001"));
    assert_eq!(t.lines().map(|l| l[0]), Some(2));
    let kinds: Vec<(&str, &str)> = t
        .columns()
        .iter()
        .map(|c| (c.name.as_str(), c.data.kind_name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("plan", "categorical"),
            ("seats", "numeric"),
            ("monthly_fee", "numeric"),
            ("region", "categorical"),
            // One "high" among numbers: the column is categorical (training-time rule).
            ("tier", "categorical"),
        ]
    );
    match &t.column("monthly_fee").unwrap().data {
        ColumnData::Numeric(v) => assert_eq!(v.iter().filter(|x| x.is_none()).count(), 3),
        _ => unreachable!(),
    }

    // An explicitly named id column is dropped as such and names the rows.
    let data = Dataset::from_csv_path(
        &fixture("accounts_small.csv"),
        &CsvOptions::new("churned").id_column("account"),
    )
    .unwrap();
    assert_eq!(data.dropped()[0].reason, DropReason::IdColumn);

    // With auto-drop off, the id column is kept as a categorical feature.
    let mut options = CsvOptions::new("churned");
    options.auto_drop_ids = false;
    let data = Dataset::from_csv_path(&fixture("accounts_small.csv"), &options).unwrap();
    assert!(data.features().column("account").is_some());

    // A column blank everywhere is dropped; nothing left is an error.
    let data = Dataset::from_csv_reader(
        "a,b,churned\n1,,yes\n2,,no\n".as_bytes(),
        "t",
        &CsvOptions::new("churned"),
    )
    .unwrap();
    assert_eq!(data.dropped()[0].reason, DropReason::AllBlank);
    let err =
        Dataset::from_csv_reader("b,churned\n,yes\n,no\n".as_bytes(), "t", &CsvOptions::new("churned")).unwrap_err();
    assert!(matches!(err, ChurnError::NoFeatures { .. }));
}

#[test]
fn scoring_csv_non_number_in_numeric_column_names_line_and_column() {
    let model = small_model();
    let err =
        FeatureTable::from_csv_path_with_schema(&fixture("score_bad_numeric.csv"), model.schema(), Some("account"))
            .unwrap_err();
    match &err {
        ChurnError::NotNumeric { line, column, value } => {
            assert_eq!((*line, column.as_str(), value.as_str()), (3, "seats", "lots"))
        }
        other => panic!("unexpected {other:?}"),
    }
    // A scoring file without a model column is refused by name.
    let err =
        FeatureTable::from_csv_reader_with_schema("plan,seats\nbasic,1\n".as_bytes(), "t", model.schema(), None, b',')
            .unwrap_err();
    assert!(
        matches!(err, ChurnError::MissingColumn { ref column } if column == "monthly_fee"),
        "{err:?}"
    );
}

// ---------- encoding ----------

#[test]
fn imputation_is_learned_from_training_rows_stored_and_applied() {
    let data = small();
    // Without the refit on every row, the shipped preprocessing is the evaluated one: training rows only.
    let config = TrainConfig {
        refit_on_all: false,
        ..small_config()
    };
    let outcome = churn::train(&data, &config).unwrap();
    let model = &outcome.model;
    let spec = model
        .schema()
        .features
        .iter()
        .find(|f| f.name == "monthly_fee")
        .unwrap();
    let FeatureEncoding::Numeric {
        impute,
        missing_in_training,
        ..
    } = spec.encoding
    else {
        panic!("not numeric")
    };

    // The stored value is the median of the non-blank training cells.
    let ColumnData::Numeric(fees) = &data.features().column("monthly_fee").unwrap().data else {
        unreachable!()
    };
    let mut present: Vec<f64> = outcome.split.train.iter().filter_map(|&r| fees[r]).collect();
    present.sort_by(f64::total_cmp);
    let n = present.len();
    let median = if n % 2 == 1 {
        present[n / 2]
    } else {
        (present[n / 2 - 1] + present[n / 2]) / 2.0
    };
    assert_eq!(impute, median);
    let blanks_in_train = outcome.split.train.iter().filter(|&&r| fees[r].is_none()).count();
    assert_eq!(missing_in_training, blanks_in_train);

    // Missing scores exactly like the median, whether absent, null or blank text.
    let mut base: Record = Record::new();
    base.insert("plan".into(), "pro".into());
    base.insert("seats".into(), 10.0.into());
    base.insert("region".into(), "north".into());
    base.insert("tier".into(), "2".into());
    let mut with_median = base.clone();
    with_median.insert("monthly_fee".into(), impute.into());
    let mut with_null = base.clone();
    with_null.insert("monthly_fee".into(), FieldValue::Missing);
    let mut with_blank = base.clone();
    with_blank.insert("monthly_fee".into(), FieldValue::Text("  ".into()));
    let p = model
        .score_records(&[base, with_median, with_null, with_blank])
        .unwrap();
    assert_eq!(p[0], p[1]);
    assert_eq!(p[0], p[2]);
    assert_eq!(p[0], p[3]);
}

#[test]
fn standardisation_uses_training_rows_only() {
    let data = small();
    let rows: Vec<usize> = (0..10).collect();
    let schema = FeatureSchema::fit(data.features(), &rows).unwrap();
    let ColumnData::Numeric(seats) = &data.features().column("seats").unwrap().data else {
        unreachable!()
    };
    let first: Vec<f64> = rows.iter().map(|&r| seats[r].unwrap()).collect();
    let mean = first.iter().sum::<f64>() / 10.0;
    let std = (first.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 10.0).sqrt();
    let spec = schema.features.iter().find(|f| f.name == "seats").unwrap();
    let FeatureEncoding::Numeric { mean: m, std: s, .. } = spec.encoding else {
        panic!()
    };
    assert!((m - mean).abs() < 1e-12 && (s - std).abs() < 1e-12);
    // Levels come from the training rows, sorted.
    let plan = schema.features.iter().find(|f| f.name == "plan").unwrap();
    assert_eq!(
        plan.encoding,
        FeatureEncoding::Categorical {
            levels: vec!["basic".into(), "enterprise".into(), "pro".into()]
        }
    );
    assert_eq!(
        schema.encoded_names()[..3],
        ["plan=basic", "plan=enterprise", "plan=pro"]
    );
}

#[test]
fn unknown_category_encodes_as_all_zeros() {
    let model = small_model();
    let table =
        FeatureTable::from_csv_path_with_schema(&fixture("score_new.csv"), model.schema(), Some("account")).unwrap();
    assert_eq!(table.ids().unwrap(), ["B001", "B002", "B003"]);
    let x = model.schema().encode_table(&table).unwrap();
    let names = model.encoded_features();
    let plan_cols: Vec<usize> = (0..names.len()).filter(|&i| names[i].starts_with("plan=")).collect();
    let region_cols: Vec<usize> = (0..names.len()).filter(|&i| names[i].starts_with("region=")).collect();
    let tier_cols: Vec<usize> = (0..names.len()).filter(|&i| names[i].starts_with("tier=")).collect();
    // Row 0 is ordinary: exactly one plan level set.
    assert_eq!(plan_cols.iter().map(|&c| x[[0, c]]).sum::<f64>(), 1.0);
    // Row 1: "platinum" never seen → all plan inputs 0. Row 2: "west" unseen, tier blank → zeros.
    assert!(plan_cols.iter().all(|&c| x[[1, c]] == 0.0));
    assert!(region_cols.iter().all(|&c| x[[2, c]] == 0.0));
    assert!(tier_cols.iter().all(|&c| x[[2, c]] == 0.0));

    // Unknown scores like missing, and the explanation says so with a zero contribution.
    let p = model.score_table(&table).unwrap();
    let mut rec: Record = Record::new();
    rec.insert("seats".into(), 4.0.into());
    rec.insert("region".into(), "south".into());
    rec.insert("tier".into(), "1".into());
    let mut unknown = rec.clone();
    unknown.insert("plan".into(), "platinum".into());
    let q = model.score_records(&[rec, unknown.clone()]).unwrap();
    assert_eq!(q[0], q[1]);
    assert!((p[1] - q[1]).abs() < 1e-12, "table {} vs record {}", p[1], q[1]);
    let why = model.explain_record(&unknown, 10).unwrap();
    let plan = why.factors.iter().find(|f| f.feature == "plan");
    // A zero contribution may be cut by top-k only if k is small; with k=10 all 5 features are present.
    let plan = plan.unwrap();
    assert_eq!(plan.contribution, 0.0);
    assert!(plan.value.contains("not seen in training"));
}

// ---------- the artifact ----------

#[test]
fn save_load_round_trip_is_exact_and_load_validates() {
    let data = small();
    let model = small_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/model.json");
    model.save(&path).unwrap();
    let loaded = ChurnModel::load(&path).unwrap();
    assert_eq!(loaded, model);
    assert_eq!(
        loaded.score_table(data.features()).unwrap(),
        model.score_table(data.features()).unwrap()
    );
    assert_eq!(loaded.version(), "t1");
    assert_eq!(loaded.training().dataset, "accounts_small");
    assert_eq!(loaded.training().rows, 30);
    assert_eq!(loaded.training().seed, 3);

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["format"], "kairos.churn-model");
    assert_eq!(json["kind"], "logistic_regression");

    let tamper = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        f(&mut j);
        ChurnModel::from_json(&serde_json::to_vec(&j).unwrap())
    };
    let err = tamper(&|j| {
        j["coefficients"].as_array_mut().unwrap().pop();
    })
    .unwrap_err();
    assert!(
        matches!(err, ChurnError::InvalidModel(ref m) if m.contains("coefficients")),
        "{err:?}"
    );
    // Plain serde deserialisation validates too.
    let mut short = json.clone();
    short["coefficients"].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<ChurnModel>(short).is_err());
    assert!(serde_json::from_value::<ChurnModel>(json.clone()).is_ok());
    let err = tamper(&|j| j["format_version"] = 99.into()).unwrap_err();
    assert!(
        matches!(err, ChurnError::InvalidModel(ref m) if m.contains("format version")),
        "{err:?}"
    );
    let err = tamper(&|j| j["format"] = "something-else".into()).unwrap_err();
    assert!(matches!(err, ChurnError::InvalidModel(_)));
    let err = tamper(&|j| j["risk_thresholds"]["medium"] = 0.9.into()).unwrap_err();
    assert!(matches!(err, ChurnError::InvalidModel(_)));
    let err = tamper(&|j| j["schema"]["features"][1]["std"] = 0.0.into()).unwrap_err();
    assert!(matches!(err, ChurnError::InvalidModel(_)), "{err:?}");

    std::fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
    let err = ChurnModel::load(&dir.path().join("junk.json")).unwrap_err();
    assert!(
        matches!(err, ChurnError::Json { ref path, .. } if path.ends_with("junk.json")),
        "{err:?}"
    );
}

#[test]
fn explanation_decomposes_the_logit() {
    let data = small();
    let model = small_model();
    let p = model.score_table(data.features()).unwrap();
    for row in [0, 4, 7] {
        let all = model.explain_table_row(data.features(), row, usize::MAX).unwrap();
        let sum: f64 = all.intercept + all.factors.iter().map(|f| f.contribution).sum::<f64>();
        assert!((sum - all.logit).abs() < 1e-12);
        assert!((all.probability - p[row]).abs() < 1e-12);
        assert_eq!(all.risk, model.risk_level(p[row]));
        // Sorted by magnitude; top-k is a prefix.
        assert!(all
            .factors
            .windows(2)
            .all(|w| w[0].contribution.abs() >= w[1].contribution.abs()));
        let top2 = model.explain_table_row(data.features(), row, 2).unwrap();
        assert_eq!(top2.factors[..], all.factors[..2]);
        assert!(top2.risk_factors().all(|f| f.contribution > 0.0));
    }
    // Row 4 (line 6) has a blank fee.
    let why = model.explain_table_row(data.features(), 4, usize::MAX).unwrap();
    assert!(why.factors.iter().any(|f| f.feature == "monthly_fee" && f.missing));
    assert!(model.explain_table_row(data.features(), 30, 3).is_err());
}

#[test]
fn bad_record_values_name_the_record_and_feature() {
    let model = small_model();
    let mut ok: Record = Record::new();
    ok.insert("seats".into(), "12".into()); // numeric text is accepted
    let mut bad = ok.clone();
    bad.insert("seats".into(), "twelve".into());
    let err = model.score_records(&[ok, bad]).unwrap_err();
    assert!(
        matches!(err, ChurnError::BadValue { row: 1, ref column, .. } if column == "seats"),
        "{err:?}"
    );
}

#[test]
fn thresholds_and_version_can_be_changed_but_not_broken() {
    let model = small_model();
    assert!(model.clone().with_threshold(1.5).is_err());
    let m = model.clone().with_threshold(0.9).unwrap();
    assert!(!m.predict_churn(0.9) && m.predict_churn(0.91));
    assert!(model.clone().with_version(" ").is_err());
    let m = model
        .with_risk_thresholds(churn::RiskThresholds::new(0.1, 0.2, 0.3).unwrap())
        .unwrap();
    assert_eq!(m.risk_level(0.25), RiskLevel::High);
}

// ---------- metrics and split ----------

#[test]
fn auc_matches_hand_computed_values() {
    // scikit-learn's documented example: 3 of 4 positive/negative pairs ordered correctly.
    assert_eq!(
        churn::roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
        0.75
    );
    // Ties count one half: pairs (0.5>0.2)=1, (0.5=0.5)=½, (0.9>0.2)=1, (0.9>0.5)=1 → 3.5/4.
    assert_eq!(
        churn::roc_auc(&[0.2, 0.5, 0.5, 0.9], &[false, true, false, true]).unwrap(),
        0.875
    );
    assert_eq!(churn::roc_auc(&[0.5; 4], &[false, true, false, true]).unwrap(), 0.5);
    assert_eq!(churn::roc_auc(&[0.1, 0.2, 0.3], &[false, true, true]).unwrap(), 1.0);
    assert_eq!(churn::roc_auc(&[0.3, 0.2, 0.1], &[false, true, true]).unwrap(), 0.0);
    // 2 positives × 3 negatives with a three-way tie: pos {0.8, 0.4}, neg {0.4, 0.4, 0.1}:
    // 0.8 beats all 3 → 3; 0.4 ties two (1) and beats 0.1 (1) → 2; total 5/6.
    let auc = churn::roc_auc(&[0.8, 0.4, 0.4, 0.4, 0.1], &[true, true, false, false, false]).unwrap();
    assert!((auc - 5.0 / 6.0).abs() < 1e-15);
    assert!(matches!(
        churn::roc_auc(&[0.1, 0.2], &[true, true]),
        Err(ChurnError::SingleClass { .. })
    ));
    assert!(churn::roc_auc(&[0.1], &[true, false]).is_err());
    assert!(churn::roc_auc(&[f64::NAN, 0.2], &[true, false]).is_err());
}

#[test]
fn brier_confusion_and_reliability() {
    let scores = [0.1, 0.9, 0.5, 0.75];
    let labels = [false, true, true, false];
    // (0.01 + 0.01 + 0.25 + 0.5625) / 4 = 0.8325 / 4
    assert!((churn::brier_score(&scores, &labels).unwrap() - 0.208125).abs() < 1e-12);
    // p > 0.5 is churn: 0.5 is not.
    let c = Confusion::at_threshold(&scores, &labels, 0.5).unwrap();
    assert_eq!(
        (c.true_positives, c.false_positives, c.true_negatives, c.false_negatives),
        (1, 1, 1, 1)
    );
    assert_eq!(c.accuracy(), 0.5);
    assert_eq!(c.precision(), Some(0.5));
    assert_eq!(
        Confusion::at_threshold(&scores, &labels, 0.95).unwrap().precision(),
        None
    );
    let bins = churn::reliability_table(&scores, &labels, 10).unwrap();
    assert_eq!(bins.len(), 10);
    assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 4);
    assert_eq!(bins[1].count, 1); // 0.1 falls in [0.1, 0.2)
    assert_eq!(bins[9].observed_rate, Some(1.0));
    assert_eq!(bins[3].mean_predicted, None);
    let all_one = churn::reliability_table(&[1.0], &[true], 10).unwrap();
    assert_eq!(all_one[9].count, 1);
}

#[test]
fn stratified_split_keeps_the_class_ratio_and_is_seeded() {
    let labels: Vec<bool> = (0..1000).map(|i| i % 100 < 27).collect(); // 270 positives
    let s = Split::stratified(&labels, 0.2, 42).unwrap();
    assert_eq!(s.test.len(), 200);
    assert_eq!(s.test.iter().filter(|&&r| labels[r]).count(), 54);
    assert_eq!(s.train.iter().filter(|&&r| labels[r]).count(), 216);
    let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    assert_eq!(Split::stratified(&labels, 0.2, 42).unwrap(), s);
    assert_ne!(Split::stratified(&labels, 0.2, 43).unwrap().test, s.test);
    assert!(Split::stratified(&labels, 1.0, 42).is_err());
    // Tiny classes still get a member on each side.
    let tiny = [true, true, false, false, false, false, false, false, false, false];
    let s = Split::stratified(&tiny, 0.2, 1).unwrap();
    assert_eq!(s.test.iter().filter(|&&r| tiny[r]).count(), 1);

    let mut out = Vec::new();
    s.write_csv(&mut out, None, None).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("row,line,id,set\n0,,,"));
    assert_eq!(text.lines().count(), 11);
}

// ---------- training ----------

#[test]
fn progress_events_arrive_in_order() {
    let mut events = Vec::new();
    let config = TrainConfig {
        cv_folds: 2,
        alphas: vec![1.0, 10.0],
        ..small_config()
    };
    let outcome = churn::train_with_progress(&small(), &config, &mut |e| events.push(e.clone())).unwrap();
    assert!(matches!(events.first(), Some(TrainEvent::Split { train: 22, test: 8 })));
    assert!(matches!(events.last(), Some(TrainEvent::Done { .. })));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TrainEvent::SearchStep { .. }))
            .count(),
        4
    );
    assert_eq!(outcome.model.training().alpha_search.len(), 2);
    assert_eq!(outcome.model.training().cv_folds, 2);
    assert_eq!(outcome.test_probabilities.len(), outcome.split.test.len());
}

#[test]
fn the_shipped_model_is_refitted_on_every_row_and_keeps_its_held_out_metrics() {
    let data = small();
    let refit = churn::train(&data, &small_config()).unwrap();
    let held = churn::train(
        &data,
        &TrainConfig {
            refit_on_all: false,
            ..small_config()
        },
    )
    .unwrap();
    // Same split, same evaluation…
    assert_eq!(refit.split, held.split);
    assert_eq!(refit.test_probabilities, held.test_probabilities);
    assert_eq!(refit.model.metrics(), held.model.metrics());
    // …but the shipped model saw the held-out rows too.
    assert_eq!(refit.model.training().final_fit_rows, data.len());
    assert_eq!(held.model.training().final_fit_rows, held.split.train.len());
    assert_ne!(refit.model.coefficients(), held.model.coefficients());
    // The refit's preprocessing is learned on every row (a level seen only in held-out rows appears).
    let all_rows: Vec<usize> = (0..data.len()).collect();
    assert_eq!(
        refit.model.schema(),
        &churn::FeatureSchema::fit(data.features(), &all_rows).unwrap()
    );
}

#[test]
fn a_strength_at_the_edge_of_the_grid_is_flagged() {
    let mut events = Vec::new();
    // Two strengths: whichever wins is at an edge.
    let config = TrainConfig {
        cv_folds: 2,
        alphas: vec![0.5, 5.0],
        ..small_config()
    };
    let model = churn::train_with_progress(&small(), &config, &mut |e| events.push(e.clone()))
        .unwrap()
        .model;
    assert!(model.training().alpha_at_edge);
    assert!(model.training().warnings.iter().any(|w| w.contains("edge")));
    assert!(events.iter().any(|e| matches!(e, TrainEvent::AlphaAtEdge { .. })));
    // Without a search nothing is claimed about the grid.
    let model = churn::train(&small(), &small_config()).unwrap().model;
    assert!(!model.training().alpha_at_edge);
    assert!(model.training().warnings.is_empty());
}

#[test]
fn the_auc_interval_brackets_the_estimate_and_is_reproducible() {
    let scores = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.55, 0.3, 0.65, 0.05, 0.45];
    let labels = [
        false, false, true, true, true, false, true, false, false, true, false, true,
    ];
    let auc = churn::roc_auc(&scores, &labels).unwrap();
    let a = churn::auc_bootstrap_interval(&scores, &labels, 2000, 7).unwrap();
    assert!(a.lower <= auc && auc <= a.upper, "{a:?} vs {auc}");
    assert!(a.upper - a.lower > 0.1, "12 rows cannot give a narrow interval: {a:?}");
    assert_eq!(Some(a), churn::auc_bootstrap_interval(&scores, &labels, 2000, 7));
    // Perfect separation: every resample has AUC 1.
    let perfect = churn::auc_bootstrap_interval(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true], 500, 1).unwrap();
    assert_eq!((perfect.lower, perfect.upper), (1.0, 1.0));
    // One class only: no interval.
    assert_eq!(churn::auc_bootstrap_interval(&[0.1, 0.2], &[true, true], 500, 1), None);
    // Training records it on the model.
    let m = churn::train(&small(), &small_config()).unwrap().model;
    assert!(m.metrics().auc_interval.is_some());
}

#[test]
fn a_separate_test_set_is_appended_and_held_out() {
    let train = small();
    // `tier` is text in the training file (`high`) and only numbers here: read like the training file.
    let options = CsvOptions::new("churned").like(&train);
    let test = Dataset::from_csv_reader(
        "account,plan,seats,monthly_fee,region,tier,churned,extra\nB1,basic,3,10.5,north,1,yes,x\nB2,pro,30,,south,2,no,x\nB3,gold,12,99,north,3,no,z\nB4,gold,12,99,south,3,no,z\n"
            .as_bytes(),
        "holdout",
        &options,
    )
    .unwrap();
    let n = train.len();
    let (data, split) = train.with_test_set(test, 5).unwrap();
    assert_eq!(data.len(), n + 4);
    assert_eq!(split.train, (0..n).collect::<Vec<_>>());
    assert_eq!(split.test, vec![n, n + 1, n + 2, n + 3]);
    assert_eq!(&data.labels()[n..], &[true, false, false, false]);
    // A column that changes kind between the files is refused by name.
    let bad = Dataset::from_csv_reader(
        "account,plan,seats,monthly_fee,region,tier,churned\nB1,basic,many,10.5,north,1,yes\nB2,basic,3,1,north,2,no\nB3,pro,3,1,south,2,no\n"
            .as_bytes(),
        "bad",
        &options,
    )
    .unwrap();
    let err = small().with_test_set(bad, 5).unwrap_err().to_string();
    assert!(err.contains("seats"), "{err}");
    // A missing column too.
    let missing = Dataset::from_csv_reader(
        "plan,churned\nbasic,yes\nbasic,no\npro,no\n".as_bytes(),
        "m",
        &CsvOptions::new("churned"),
    )
    .unwrap();
    assert!(matches!(
        small().with_test_set(missing, 5),
        Err(ChurnError::MissingColumn { .. })
    ));
}

#[test]
fn bad_training_configs_are_refused() {
    let data = small();
    for config in [
        TrainConfig {
            alphas: vec![],
            ..small_config()
        },
        TrainConfig {
            alphas: vec![-1.0],
            ..small_config()
        },
        TrainConfig {
            cv_folds: 1,
            ..small_config()
        },
        TrainConfig {
            threshold: 2.0,
            ..small_config()
        },
        TrainConfig {
            test_fraction: 0.0,
            ..small_config()
        },
        // 10 folds need 10 churned training rows; the fixture has 6.
        TrainConfig {
            cv_folds: 10,
            alphas: vec![1.0, 2.0],
            ..small_config()
        },
    ] {
        assert!(
            matches!(churn::train(&data, &config), Err(ChurnError::InvalidConfig(_))),
            "{config:?}"
        );
    }
    let one_class = Dataset::from_csv_reader(
        "a,churned\n1,no\n2,no\n3,no\n".as_bytes(),
        "t",
        &CsvOptions::new("churned"),
    )
    .unwrap();
    assert!(matches!(
        churn::train(&one_class, &small_config()),
        Err(ChurnError::SingleClass { .. })
    ));
}

#[test]
fn synthetic_training_recovers_the_ground_truth() {
    let accounts = synthetic::generate(&synthetic::SyntheticConfig {
        accounts: 8000,
        seed: 11,
        missing_rate: 0.02,
    })
    .unwrap();
    assert_eq!(accounts.len(), 8000);
    assert_eq!(
        accounts,
        synthetic::generate(&synthetic::SyntheticConfig {
            accounts: 8000,
            seed: 11,
            missing_rate: 0.02
        })
        .unwrap()
    );
    let rate = accounts.iter().filter(|a| a.churned).count() as f64 / 8000.0;
    assert!((0.15..0.45).contains(&rate), "churn rate {rate}");

    let data = synthetic::to_dataset("synthetic", &accounts).unwrap();
    let config = TrainConfig {
        cv_folds: 0,
        alphas: vec![1.0],
        ..Default::default()
    };
    let outcome = churn::train(&data, &config).unwrap();
    let model = &outcome.model;

    // The oracle (true probabilities) bounds what any model can reach on this held-out set.
    let truth: Vec<f64> = outcome
        .split
        .test
        .iter()
        .map(|&r| accounts[r].churn_probability)
        .collect();
    let y: Vec<bool> = outcome.split.test.iter().map(|&r| accounts[r].churned).collect();
    let oracle = churn::roc_auc(&truth, &y).unwrap();
    let auc = model.metrics().auc;
    assert!(auc > 0.7, "held-out AUC {auc}");
    assert!(auc > oracle - 0.03, "held-out AUC {auc} vs oracle {oracle}");

    for (name, _, coef) in synthetic::GROUND_TRUTH {
        let fitted = model.coefficient(name).unwrap();
        assert_eq!(fitted.signum(), coef.signum(), "{name}: fitted {fitted}, truth {coef}");
    }
    // Features outside the truth get clearly smaller weights than the weakest true one… on average.
    let truth_names: Vec<&str> = synthetic::GROUND_TRUTH.iter().map(|t| t.0).collect();
    let noise: Vec<f64> = AccountFeatures::FEATURE_NAMES
        .iter()
        .filter(|n| !truth_names.contains(n))
        .map(|n| model.coefficient(n).unwrap().abs())
        .collect();
    let mean_noise = noise.iter().sum::<f64>() / noise.len() as f64;
    let min_truth = truth_names
        .iter()
        .map(|n| model.coefficient(n).unwrap().abs())
        .fold(f64::INFINITY, f64::min);
    assert!(
        mean_noise < min_truth,
        "noise {mean_noise} vs weakest truth {min_truth}"
    );

    // The three scoring paths agree.
    let features: Vec<AccountFeatures> = accounts.iter().take(500).map(|a| a.features.clone()).collect();
    let fast = model.score_accounts(&features).unwrap();
    let table = model
        .score_table(&FeatureTable::from_accounts("x", &features, None).unwrap())
        .unwrap();
    let matrix = ndarray::Array2::from_shape_fn((features.len(), 15), |(i, j)| {
        features[i].values()[j].unwrap_or(f64::NAN)
    });
    let numeric = model.score_numeric(matrix.view()).unwrap();
    for i in 0..features.len() {
        assert!((fast[i] - table[i]).abs() < 1e-12 && (numeric[i] - table[i]).abs() < 1e-12);
    }
    let why = model.explain_account(&features[0], 5).unwrap();
    assert_eq!(why.factors.len(), 5);
    assert!((why.probability - fast[0]).abs() < 1e-12);

    // The CSV written for demos reads back through the CSV path with the same labels.
    let mut csv = Vec::new();
    synthetic::write_csv(&mut csv, &accounts[..200]).unwrap();
    let back = Dataset::from_csv_reader(
        &csv[..],
        "synthetic",
        &CsvOptions::new("churned").id_column("account_id"),
    )
    .unwrap();
    assert_eq!(back.labels(), &data.labels()[..200]);
    assert_eq!(back.features().columns().len(), 15);
}

#[test]
fn categorical_models_refuse_the_numeric_fast_path() {
    let model = small_model();
    let x = ndarray::Array2::<f64>::zeros((1, 5));
    assert!(matches!(
        model.score_numeric(x.view()),
        Err(ChurnError::SchemaMismatch(_))
    ));
    assert!(matches!(
        model.score_accounts(&[AccountFeatures::default()]),
        Err(ChurnError::SchemaMismatch(_))
    ));
    assert!(matches!(
        model.predict_encoded(x.view()),
        Err(ChurnError::SchemaMismatch(_))
    ));
}

/// Trains on the real Telco file (run `scripts/fetch-churn-data` first; path overridable with
/// `KAIROS_TELCO_CSV`): `cargo nextest run -p kairos-models --run-ignored only`.
#[test]
#[ignore = "needs .cache/data/telco/Customer_Churn.csv (scripts/fetch-churn-data)"]
fn telco_reaches_auc_0_84() {
    let path = std::env::var_os("KAIROS_TELCO_CSV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/data/telco/Customer_Churn.csv"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-churn-data",
        path.display()
    );
    let data = Dataset::from_csv_path(&path, &CsvOptions::new("Churn")).unwrap();
    assert_eq!((data.len(), data.positives()), (7043, 1869));
    // The default grid (11 strengths, 5 folds), 20 % held out, then the refit on all 7,043 rows.
    let model = churn::train(&data, &TrainConfig::default()).unwrap().model;
    let m = model.metrics();
    let ci = m.auc_interval.expect("a bootstrap interval");
    let t = model.training();
    println!(
        "Telco held-out ({} rows): AUC {:.4} (95 % CI {:.4}–{:.4}), accuracy {:.4}, alpha {} (edge: {}), refit on {} rows",
        m.rows, m.auc, ci.lower, ci.upper, m.accuracy, t.alpha, t.alpha_at_edge, t.final_fit_rows
    );
    assert!(m.auc >= 0.84, "Telco held-out AUC {}", m.auc);
    assert!(m.accuracy >= 0.78, "accuracy {}", m.accuracy);
    assert!(
        ci.lower <= m.auc && m.auc <= ci.upper && ci.upper - ci.lower < 0.06,
        "{ci:?}"
    );
    assert_eq!(t.final_fit_rows, 7043);
    assert!(!t.alpha_at_edge, "alpha {} at the edge of the default grid", t.alpha);
}
