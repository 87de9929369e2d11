//! `POST /v1/sentiment:analyze` with the shipped model: it answers what the
//! `sentiment` job stores for the same text (label, calibrated
//! probabilities, language, urgency, chunks, alert) and stores nothing;
//! "no está mal" / "not bad" are not complaints; the schema's limits are
//! enforced; the tenant's rate applies; an API-only process loads the model
//! on the first request.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::sentiment::{sentiment_config_with, NEGATIVE_ES};

async fn analyze(app: &TestApp, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = app
        .http
        .post(format!("{}/v1/sentiment:analyze", app.base))
        .bearer_auth(&app.key)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

async fn stored_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sentiment_scores")
        .fetch_one(app.store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_answers_what_the_job_stores_for_the_same_text_and_stores_nothing() {
    let app = spawn_app(Deployment::Embedded, &sentiment_config_with("", "")).await;
    let praise = "I have used this product for two years and it has been wonderful for our whole team. \
                  The onboarding was smooth and the documentation is clear. ";
    let long = format!(
        "{} UPDATE: since yesterday everything is broken and I want a refund. This is unacceptable.",
        praise.repeat(8)
    );
    let texts = [
        NEGATIVE_ES.to_string(),
        "How do I change the billing address on our account?".to_string(),
        "¡Gracias! El soporte resolvió todo en una hora.".to_string(),
        "Hallo, ich möchte bitte die Rechnungsadresse für unser Konto ändern.".to_string(),
        long,
    ];
    let events: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            event(
                &format!("an-{i}"),
                "comment.created",
                &format!("acct-an-{i}"),
                json!({"text": t}),
            )
        })
        .collect();
    let (status, body) = app.post_events(&json!(events)).await;
    assert_eq!(status, 202, "{body}");
    let jobs = app.wait_settled(&job_ids(&body), Duration::from_secs(90)).await;
    assert!(
        jobs.iter().all(|j| j.state == kairos_core::store::JobState::Succeeded),
        "{jobs:?}"
    );
    let before = stored_rows(&app).await;
    assert_eq!(before, texts.len() as i64);

    let (status, answer, _) = analyze(&app, &json!({"texts": texts})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored_rows(&app).await, before, "analyze stored something");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), texts.len());
    for (i, r) in results.iter().enumerate() {
        type Row = (String, f64, f64, String, Option<String>, i64, String, i64, String);
        let (label, score, polarity, probabilities, language, urgency, keywords, chunks, version): Row =
            sqlx::query_as(
                "SELECT label, score, polarity, probabilities, language, urgency, keywords, chunks, model_version \
             FROM sentiment_scores WHERE event_id = $1",
            )
            .bind(format!("an-{i}"))
            .fetch_one(app.store.pool())
            .await
            .unwrap();
        let probabilities: Value = serde_json::from_str(&probabilities).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert_eq!(r["label"], label, "text {i}: {r}");
        assert!(close(r["score"].as_f64().unwrap(), score), "text {i}: {r} vs {score}");
        assert!(close(r["polarity"].as_f64().unwrap(), polarity), "text {i}");
        for l in ["negative", "neutral", "positive"] {
            assert!(
                close(
                    r["probabilities"][l].as_f64().unwrap(),
                    probabilities[l].as_f64().unwrap()
                ),
                "text {i} {l}: {r} vs {probabilities}"
            );
        }
        assert_eq!(r["language"].as_str(), language.as_deref(), "text {i}");
        assert_eq!(r["urgency"], urgency, "text {i}");
        assert_eq!(
            r["keywords"],
            serde_json::from_str::<Value>(&keywords).unwrap(),
            "text {i}"
        );
        assert_eq!(r["chunks"], chunks, "text {i}");
        assert_eq!(r["chunked"], chunks > 1, "text {i}");
        assert_eq!(answer["model_version"], version);
        let alerted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alerts WHERE event_id = $1")
            .bind(format!("an-{i}"))
            .fetch_one(app.store.pool())
            .await
            .unwrap();
        assert_eq!(r["alert"], alerted > 0, "text {i}: {r}");
    }
    // What the texts are: a complaint alerted, a question neutral, French `und`, the long one chunked.
    assert_eq!(results[0]["alert"], true, "{}", results[0]);
    assert_eq!(results[1]["label"], "neutral", "{}", results[1]);
    assert_eq!(results[1]["alert"], false);
    assert_eq!(results[4]["chunked"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_bad_and_no_problem_are_not_complaints() {
    let app = spawn_app(Deployment::Embedded, &sentiment_config_with("", "")).await;
    let texts = [
        "Not bad.",
        "Not bad at all, thanks.",
        "No problem, it works now.",
        "Ningún problema, ya funciona.",
        "No está mal.",
        "No está nada mal, la verdad.",
    ];
    let (status, answer, _) = analyze(&app, &json!({"texts": texts})).await;
    assert_eq!(status, 200, "{answer}");
    for (text, r) in texts.iter().zip(answer["results"].as_array().unwrap()) {
        assert_ne!(r["label"], "negative", "{text}: {r}");
        assert_eq!(r["alert"], false, "{text}: {r}");
    }
    // And their negative counterparts are complaints.
    let (_, answer, _) = analyze(
        &app,
        &json!({"texts": ["Está mal, no funciona nada.", "Bad. Nothing works."]}),
    )
    .await;
    for r in answer["results"].as_array().unwrap() {
        assert_eq!(r["label"], "negative", "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_only_process_loads_the_model_on_first_use_enforces_the_limits_and_the_tenant_rate() {
    let api_only = kairos::Roles {
        api: true,
        scheduler: false,
        worker: false,
    };
    let config = sentiment_config_with(
        "[sentiment.alert_thresholds]\ntenant-a = 0.95",
        "[api]\nrate_per_second = 1\nrate_burst = 3\n",
    );
    let app = spawn_app_with_roles(Deployment::Embedded, &config, api_only).await;
    // Refused before any cost: what the schema refuses.
    let too_many: Vec<&str> = vec!["ok"; 101];
    for (body, field) in [
        (json!({"texts": []}), "texts"),
        (json!({"texts": too_many}), "texts"),
        (json!({"texts": ["fine", " \n\t "]}), "texts[1]"),
        (json!({"texts": ["x".repeat(20_001)]}), "texts[0]"),
        (json!({"texts": ["fine"], "store": true}), "body"),
        (json!({"text": "fine"}), "body"),
    ] {
        let (status, answer, _) = analyze(&app, &body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    // The first request loads the model (the default head is registered) and answers.
    let (status, answer, _) = analyze(&app, &json!({"texts": [NEGATIVE_ES, "Gracias", "Thanks"]})).await;
    assert_eq!(status, 200, "{answer}");
    // The tenant's own threshold: the complaint's probability is reported, but below 0.95 it raises no alert.
    assert_eq!(answer["alert_threshold"], 0.95);
    let complaint = &answer["results"][0];
    assert_eq!(complaint["label"], "negative", "{complaint}");
    assert_eq!(
        complaint["alert"],
        complaint["alert_probability"].as_f64().unwrap() >= 0.95,
        "{complaint}"
    );
    // The model is loaded now. Once the bucket holds 3 tokens again (a
    // refused request costs nothing, so wait for the first 200), two bursts
    // of 3 texts in a row: the second is over the tenant's rate.
    let three = json!({"texts": ["uno", "dos", "tres"]});
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, answer, _) = analyze(&app, &three).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 429, "{answer}");
        assert!(
            std::time::Instant::now() < deadline,
            "the tenant's bucket never refilled"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, answer, headers) = analyze(&app, &three).await;
    assert_eq!(status, 429, "{answer}");
    assert!(headers.contains_key("retry-after"));
}
