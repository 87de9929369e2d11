#!/usr/bin/env python3
"""Trains scikit-learn on the SAME split as the Rust churn model and compares held-out AUCs.

Inputs (written by `cargo run --release -p kairos-models --example train_telco`):
  ARTIFACTS/model.json            the Rust model: feature kinds, label column, chosen L2 alpha, its metrics
  ARTIFACTS/split.csv             row,line,id,set  (set = train | test), row = 0-based data row of the CSV
  ARTIFACTS/test_predictions.csv  row,probability  (the Rust model's held-out probabilities)

Preprocessing mirrors the Rust pipeline, fitted on the training rows only: cells trimmed, blank = missing;
numeric columns (as the Rust model inferred them) -> median imputation + StandardScaler; categorical columns
-> one-hot over the non-blank training levels, unknown/blank -> all zeros. Labels: yes/true/1/churned -> 1.

Printed: the Rust AUC (recomputed here from its predictions with sklearn's roc_auc_score), sklearn
LogisticRegression with the same L2 strength (C = 1/alpha), sklearn with its default C=1, and, as a cheap check
of whether tree ensembles would help, a random forest and gradient boosting on the same split.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

POSITIVE = {"1", "yes", "y", "true", "t", "churned", "churn", "positive"}
NEGATIVE = {"0", "no", "n", "false", "f", "retained", "stayed", "not churned", "active", "negative"}


def label(cell: str) -> int:
    c = cell.strip().lower()
    if c in POSITIVE:
        return 1
    if c in NEGATIVE:
        return 0
    raise ValueError(f"unreadable label {cell!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--artifacts", required=True)
    args = ap.parse_args()
    art = Path(args.artifacts)

    model = json.loads((art / "model.json").read_text())
    features = model["schema"]["features"]
    numeric = [f["name"] for f in features if f["kind"] == "numeric"]
    categorical = [f["name"] for f in features if f["kind"] == "categorical"]
    label_column = model["training"]["label_column"]
    alpha = model["training"]["alpha"]

    raw = pd.read_csv(args.csv, dtype=str, keep_default_na=False).apply(lambda s: s.str.strip())
    y = raw[label_column].map(label).to_numpy()
    X = pd.DataFrame(index=raw.index)
    for c in numeric:
        X[c] = pd.to_numeric(raw[c].replace("", np.nan), errors="raise").astype(float)
    for c in categorical:
        X[c] = raw[c]

    split = pd.read_csv(art / "split.csv", dtype={"row": int, "set": str}, keep_default_na=False)
    train = split.loc[split["set"] == "train", "row"].to_numpy()
    test = split.loc[split["set"] == "test", "row"].to_numpy()
    assert len(train) + len(test) == len(raw), "split does not cover the CSV"

    rust = pd.read_csv(art / "test_predictions.csv")
    rust = rust.set_index("row").loc[test, "probability"].to_numpy()

    # One-hot over the non-blank training levels (blank / unseen -> all zeros), as in Rust.
    levels = [sorted(set(X[c].iloc[train]) - {""}) for c in categorical]
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            ("cat", OneHotEncoder(categories=levels, handle_unknown="ignore"), categorical),
        ]
    )

    def fit_lr(C: float):
        pipe = Pipeline([("pre", pre), ("lr", LogisticRegression(C=C, max_iter=10000, tol=1e-8))])
        t = time.perf_counter()
        pipe.fit(X.iloc[train], y[train])
        secs = time.perf_counter() - t
        return pipe.predict_proba(X.iloc[test])[:, 1], secs

    y_test = y[test]
    rust_auc = roc_auc_score(y_test, rust)
    same_c, secs_same = fit_lr(1.0 / alpha)
    default_c, _ = fit_lr(1.0)
    sk_auc = roc_auc_score(y_test, same_c)

    print(f"Telco churn, held-out {len(test)} rows ({y_test.sum()} churned), train {len(train)}; "
          f"split seed {model['training']['seed']}")
    print(f"{'model':<52} {'AUC':>7} {'Brier':>7}")
    print(f"{'Rust kairos-models LR (alpha=%g, linfa L-BFGS)' % alpha:<52} {rust_auc:7.4f} "
          f"{brier_score_loss(y_test, rust):7.4f}")
    print(f"{'sklearn LogisticRegression, same L2 (C=%.4g)' % (1 / alpha):<52} {sk_auc:7.4f} "
          f"{brier_score_loss(y_test, same_c):7.4f}")
    print(f"{'sklearn LogisticRegression, default C=1':<52} {roc_auc_score(y_test, default_c):7.4f} "
          f"{brier_score_loss(y_test, default_c):7.4f}")
    print(f"AUC ratio Rust / sklearn (same L2): {rust_auc / sk_auc:.4f}")
    print(f"max |p_rust - p_sklearn| on held-out rows (same L2): {np.max(np.abs(rust - same_c)):.2e}")
    print(f"Rust AUC stored in model.json: {model['metrics']['auc']:.4f}; sklearn LR fit time {secs_same:.3f}s")

    # Would tree ensembles help? (scikit-learn as a proxy; linfa-trees 0.8 has single trees only.)
    onehot_pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), numeric),
            ("cat", OneHotEncoder(categories=levels, handle_unknown="ignore"), categorical),
        ]
    )
    for name, est in [
        ("sklearn RandomForest (500 trees, min_samples_leaf=10)",
         RandomForestClassifier(n_estimators=500, min_samples_leaf=10, random_state=0, n_jobs=-1)),
        ("sklearn HistGradientBoosting (defaults)", HistGradientBoostingClassifier(random_state=0)),
    ]:
        pipe = Pipeline([("pre", onehot_pre), ("m", est)]).fit(X.iloc[train], y[train])
        p = pipe.predict_proba(X.iloc[test])[:, 1]
        print(f"{name:<52} {roc_auc_score(y_test, p):7.4f} {brier_score_loss(y_test, p):7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
