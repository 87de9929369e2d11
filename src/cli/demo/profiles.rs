//! The demo's profiles: every demo account gets a profile (bulk upsert) and
//! an executive and an admin (PUT), all through the real HTTP API; one
//! account is then shown as a product backend would read it.

use anyhow::Context;
use kairos_core::store::ApiKey;
use serde_json::{json, Value};

const NAMES: [&str; 10] = [
    "Northwind",
    "Clínica Norte",
    "Blue Harbor",
    "Andes Coaching",
    "Lumen Labs",
    "Café Origen",
    "Vector Retail",
    "Sierra Salud",
    "Pixel Forge",
    "Mar Azul",
];
const FIRST: [&str; 6] = ["Ana", "Luis", "Grace", "Marta", "Tom", "Sofía"];
const PLANS: [&str; 3] = ["starter", "pro", "enterprise"];

/// Creates the profiles of `accounts` accounts per tenant and prints one.
pub async fn run(base: &str, keys: &[ApiKey], accounts: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut people = 0;
    for key in keys {
        let spanish = key.tenant.name == "coachly";
        let zones: &[&str] = if spanish {
            &["America/Bogota", "America/Mexico_City", "Europe/Madrid"]
        } else {
            &["Europe/London", "America/New_York", "Europe/Madrid"]
        };
        let batch: Vec<Value> = (0..accounts)
            .map(|i| {
                json!({
                    "id": format!("acct-{i:03}"),
                    "display_name": format!("{} {}", NAMES[i % NAMES.len()], i / NAMES.len() + 1),
                    "plan": PLANS[i % PLANS.len()],
                    "renewal_date": format!("2027-{:02}-15", i % 12 + 1),
                    "owner": if spanish { "csm@coachly.example" } else { "success@acme.example" },
                    // Every third account leaves zone and language to the tenant's defaults.
                    "time_zone": (i % 3 != 2).then(|| zones[i % zones.len()]),
                    "attributes": { "seats": 5 + (i * 7) % 60 },
                })
            })
            .collect();
        for chunk in batch.chunks(1000) {
            send(
                &http,
                reqwest::Method::POST,
                &format!("{base}/v1/accounts:batch"),
                &key.secret,
                &json!({ "accounts": chunk }),
            )
            .await?;
        }
        for i in 0..accounts {
            let account = format!("acct-{i:03}");
            for (n, role) in [(1, "executive"), (2, "admin")] {
                let first = FIRST[(i + n) % FIRST.len()];
                let body = json!({
                    "name": format!("{first} {}", NAMES[i % NAMES.len()].split(' ').next().unwrap_or("Demo")),
                    "email": format!("{}.{account}-u{n}@example.com", first.to_lowercase().replace('í', "i")),
                    "role": role,
                    "language": (spanish && n == 2).then_some("en"),
                    "channels": ["email", "in_app"],
                    "consent": { "email": { "granted": n == 1, "given_at": "2026-10-01T09:00:00Z" } },
                });
                let url = format!("{base}/v1/accounts/{account}/people/{account}-u{n}");
                send(&http, reqwest::Method::PUT, &url, &key.secret, &body).await?;
                people += 1;
            }
        }
    }
    println!(
        "Profiles: {} accounts (POST /v1/accounts:batch) and {people} people (PUT .../people/ID), executives for the reports",
        accounts * keys.len()
    );
    let Some(key) = keys.iter().find(|k| k.tenant.name == "coachly").or(keys.first()) else {
        return Ok(());
    };
    let account = send(
        &http,
        reqwest::Method::GET,
        &format!("{base}/v1/accounts/acct-002"),
        &key.secret,
        &Value::Null,
    )
    .await?;
    let execs = send(
        &http,
        reqwest::Method::GET,
        &format!("{base}/v1/accounts/acct-002/people?role=executive"),
        &key.secret,
        &Value::Null,
    )
    .await?;
    println!(
        "  {} / {}: \"{}\", plan {}, renews {}; no zone of its own, so {} / {} (the tenant's, from [profiles.tenants])",
        key.tenant.name,
        account["id"].as_str().unwrap_or("?"),
        account["display_name"].as_str().unwrap_or("?"),
        account["plan"].as_str().unwrap_or("?"),
        account["renewal_date"].as_str().unwrap_or("?"),
        account["resolved"]["language"].as_str().unwrap_or("?"),
        account["resolved"]["time_zone"].as_str().unwrap_or("?"),
    );
    for p in execs["items"].as_array().into_iter().flatten() {
        println!(
            "  executive {} <{}>: writes in {}, lives in {}, email consent {}",
            p["name"].as_str().unwrap_or("?"),
            p["email"].as_str().unwrap_or("?"),
            p["resolved"]["language"].as_str().unwrap_or("?"),
            p["resolved"]["time_zone"].as_str().unwrap_or("?"),
            p["consent"]["email"]["granted"].as_bool().unwrap_or(false),
        );
    }
    Ok(())
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut req = http.request(method.clone(), url).bearer_auth(key);
    if !body.is_null() {
        req = req.json(body);
    }
    let resp = req.send().await.with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!("{method} {url}: {status}: {value}");
    }
    Ok(value)
}
