//! A report as HTML (tenant branding, inline CSS and inline SVG charts, a
//! single fluid column that reads in a browser and in email clients from
//! 375 px phones up), Markdown, and plain text (the email's text part).
//! The executive summary comes first in every form.

use std::fmt::Write as _;

use super::charts;
use super::config::Branding;
use super::facts::{Facts, Scope};
use super::metrics::MetricFact;
use super::narrative::{num, template_note, value, Narrative, Source};

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A word in the report's language.
fn t(key: &str, es: bool) -> &'static str {
    match (key, es) {
        ("weekly", false) => "Weekly report",
        ("weekly", true) => "Informe semanal",
        ("monthly", false) => "Monthly report",
        ("monthly", true) => "Informe mensual",
        ("portfolio", false) => "Portfolio",
        ("portfolio", true) => "Cartera de clientes",
        ("summary", false) => "Executive summary",
        ("summary", true) => "Resumen ejecutivo",
        ("metrics", false) => "Key metrics",
        ("metrics", true) => "Métricas clave",
        ("metric", false) => "Metric",
        ("metric", true) => "Métrica",
        ("this", false) => "This period",
        ("this", true) => "Este periodo",
        ("prev", false) => "Previous",
        ("prev", true) => "Anterior",
        ("change", false) => "Change",
        ("change", true) => "Cambio",
        ("highlights", false) => "Highlights",
        ("highlights", true) => "Aspectos destacados",
        ("attention", false) => "Areas of attention",
        ("attention", true) => "Áreas de atención",
        ("next", false) => "Next steps",
        ("next", true) => "Próximos pasos",
        ("sentiment", false) => "Customer sentiment",
        ("sentiment", true) => "Sentimiento de los clientes",
        ("negative", false) => "Most negative comments",
        ("negative", true) => "Comentarios más negativos",
        ("urgency", false) => "urgency",
        ("urgency", true) => "urgencia",
        ("alerts", false) => "Alerts raised",
        ("alerts", true) => "Alertas generadas",
        ("churn", false) => "Churn risk",
        ("churn", true) => "Riesgo de abandono",
        ("moved", false) => "Moved up a risk level",
        ("moved", true) => "Subieron de nivel de riesgo",
        ("atrisk", false) => "Accounts at risk",
        ("atrisk", true) => "Cuentas en riesgo",
        ("jobs", false) => "Job health",
        ("jobs", true) => "Salud de los trabajos",
        ("activity", false) => "Activity",
        ("activity", true) => "Actividad",
        ("events", false) => "events",
        ("events", true) => "eventos",
        ("active", false) => "active accounts",
        ("active", true) => "cuentas activas",
        ("none", false) => "None this period.",
        ("none", true) => "Ninguno en este periodo.",
        ("positive", false) => "Positive",
        ("positive", true) => "Positivo",
        ("neutral", false) => "Neutral",
        ("neutral", true) => "Neutro",
        ("neg", false) => "Negative",
        ("neg", true) => "Negativo",
        ("dist", false) => "Sentiment distribution",
        ("dist", true) => "Distribución del sentimiento",
        ("riskdist", false) => "Accounts per risk level",
        ("riskdist", true) => "Cuentas por nivel de riesgo",
        ("polarity", false) => "Average sentiment",
        ("polarity", true) => "Sentimiento medio",
        ("succeeded", false) => "succeeded",
        ("succeeded", true) => "correctos",
        ("dead", false) => "failed",
        ("dead", true) => "fallidos",
        ("llm", false) => "Written by a language model from the period's data; every number was checked against it.",
        ("llm", true) => {
            "Redactado por un modelo de lenguaje a partir de los datos del periodo; cada cifra se comprobó con ellos."
        }
        _ => "",
    }
}

fn title(f: &Facts) -> String {
    let es = f.language == "es";
    let kind = if f.period.label.contains("-W") {
        "weekly"
    } else {
        "monthly"
    };
    let who = match f.scope {
        Scope::Account => f
            .subject
            .account_name
            .clone()
            .or_else(|| f.subject.account_id.clone())
            .unwrap_or_default(),
        Scope::Tenant => format!("{} — {}", t("portfolio", es), f.subject.tenant_name),
    };
    format!("{} · {} · {}", t(kind, es), who, f.period.label)
}

/// The subject line of the email.
pub fn subject(f: &Facts) -> String {
    title(f)
}

fn change_cell(m: &MetricFact) -> (String, &'static str) {
    match m.change_pct {
        None => ("—".into(), "#666666"),
        Some(0.0) => ("0%".into(), "#666666"),
        Some(c) => {
            let good = (c > 0.0) == m.higher_is_better;
            (
                format!(
                    "{} {}{}%",
                    if c > 0.0 { "▲" } else { "▼" },
                    if c > 0.0 { "+" } else { "" },
                    num(c)
                ),
                if good { "#2e7d32" } else { "#c62828" },
            )
        }
    }
}

fn note(n: &Narrative, language: &str) -> String {
    match n.source {
        Source::Llm => t("llm", language == "es").to_owned(),
        Source::Template => template_note(language).to_owned(),
    }
}

const RISK_COLORS: [&str; 4] = ["#2e7d32", "#f9a825", "#ef6c00", "#c62828"];

/// The report as one HTML document.
pub fn html(f: &Facts, n: &Narrative, brand: &Branding) -> String {
    let es = f.language == "es";
    let accent = &brand.accent_color;
    let primary = &brand.primary_color;
    let mut h = String::with_capacity(64 * 1024);
    let h2 = |s: &str| {
        format!("<h2 style=\"margin:28px 0 10px;font-size:18px;line-height:24px;color:{primary};border-bottom:2px solid {accent};padding-bottom:4px\">{}</h2>", esc(s))
    };
    let list = |items: &[String]| {
        let mut s = String::from("<ul style=\"margin:0 0 8px;padding-left:20px\">");
        for i in items {
            let _ = write!(s, "<li style=\"margin:0 0 6px\">{}</li>", esc(i));
        }
        s.push_str("</ul>");
        s
    };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title></head>\
         <body style=\"margin:0;padding:0;background:#f3f4f6;font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1f2933;font-size:15px;line-height:22px\">\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f3f4f6\"><tr><td align=\"center\" style=\"padding:16px 8px\">\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:680px;background:#ffffff;border-radius:6px;overflow:hidden\">\
         <tr><td style=\"background:{primary};padding:18px 20px;color:#ffffff\">",
        lang = esc(&f.language),
        title = esc(&title(f)),
    );
    if let Some(logo) = &brand.logo_url {
        let _ = write!(
            h,
            "<img src=\"{}\" alt=\"{}\" height=\"32\" style=\"height:32px;max-width:160px;display:block;margin-bottom:8px;border:0\">",
            esc(logo),
            esc(&brand.sender_name)
        );
    }
    let (d0, d1) = (&f.period.first_day, &f.period.last_day);
    let _ = write!(
        h,
        "<div style=\"font-size:13px;opacity:.85\">{}</div>\
         <div style=\"font-size:22px;line-height:28px;font-weight:bold;margin-top:2px\">{}</div>\
         <div style=\"font-size:13px;opacity:.85;margin-top:4px\">{d0} → {d1} · {tz}</div></td></tr>\
         <tr><td style=\"padding:4px 20px 24px\">",
        esc(&brand.sender_name),
        esc(&title(f)),
        tz = esc(&f.period.time_zone),
    );
    h.push_str(&h2(t("summary", es)));
    for p in &n.summary {
        let _ = write!(h, "<p style=\"margin:0 0 12px\">{}</p>", esc(p));
    }
    // A template says so in its own last paragraph; an LLM's text gets the note.
    if n.source == Source::Llm {
        let _ = write!(
            h,
            "<p style=\"margin:0 0 8px;font-size:12px;color:#6b7280\">{}</p>",
            esc(&note(n, &f.language))
        );
    }

    if !f.metrics.is_empty() {
        h.push_str(&h2(t("metrics", es)));
        let _ = write!(
            h,
            "<table role=\"presentation\" width=\"100%\" cellpadding=\"6\" cellspacing=\"0\" style=\"border-collapse:collapse;font-size:14px\">\
             <tr style=\"background:#f9fafb;text-align:left\"><th style=\"text-align:left\">{}</th><th style=\"text-align:right\">{}</th><th style=\"text-align:right\">{}</th><th style=\"text-align:right\">{}</th></tr>",
            t("metric", es), t("this", es), t("prev", es), t("change", es)
        );
        for m in &f.metrics {
            let (c, color) = change_cell(m);
            let _ = write!(
                h,
                "<tr style=\"border-top:1px solid #e5e7eb\"><td>{}</td><td style=\"text-align:right;font-weight:bold\">{}</td>\
                 <td style=\"text-align:right\">{}</td><td style=\"text-align:right;color:{color};white-space:nowrap\">{}</td></tr>",
                esc(&m.label),
                esc(&value(m, m.current, es)),
                esc(&value(m, m.previous, es)),
                esc(&c)
            );
        }
        h.push_str("</table>");
        for m in f.metrics.iter().take(4) {
            match charts::trend(&m.label, &f.period.trend_labels, &m.trend, accent) {
                Ok(svg) => {
                    let _ = write!(h, "<div style=\"margin:14px 0 0\">{svg}</div>");
                }
                Err(e) => tracing::warn!(error = %e, metric = %m.name, "report chart failed"),
            }
        }
    }

    h.push_str(&h2(t("highlights", es)));
    h.push_str(&list(&n.highlights));
    h.push_str(&h2(t("attention", es)));
    h.push_str(&list(&n.attention));
    h.push_str(&h2(t("next", es)));
    h.push_str(&list(&n.next_steps));

    h.push_str(&h2(t("activity", es)));
    let _ = write!(
        h,
        "<p style=\"margin:0 0 8px\"><b>{}</b> {} · <b>{}</b> {}</p>",
        f.activity.events,
        t("events", es),
        f.activity.active_accounts,
        t("active", es)
    );

    let s = &f.sentiment;
    h.push_str(&h2(t("sentiment", es)));
    let dist = [
        (t("positive", es).to_owned(), s.positive as f64, "#2e7d32".to_owned()),
        (t("neutral", es).to_owned(), s.neutral as f64, "#9e9e9e".to_owned()),
        (t("neg", es).to_owned(), s.negative as f64, "#c62828".to_owned()),
    ];
    if let Ok(svg) = charts::bars(t("dist", es), &dist) {
        let _ = write!(h, "<div style=\"margin:6px 0\">{svg}</div>");
    }
    if s.trend.iter().any(Option::is_some) {
        if let Ok(svg) = charts::trend(t("polarity", es), &f.period.trend_labels, &s.trend, primary) {
            let _ = write!(h, "<div style=\"margin:6px 0\">{svg}</div>");
        }
    }
    let _ = write!(
        h,
        "<h3 style=\"font-size:15px;margin:14px 0 6px\">{}</h3>",
        t("negative", es)
    );
    if s.most_negative.is_empty() {
        let _ = write!(h, "<p style=\"margin:0;color:#6b7280\">{}</p>", t("none", es));
    }
    for c in &s.most_negative {
        let _ = write!(
            h,
            "<div style=\"border-left:4px solid #c62828;background:#fdf2f2;padding:8px 10px;margin:0 0 8px\">\
             <div style=\"font-size:12px;color:#6b7280\">{} · {} {} · {}</div><div>{}</div></div>",
            esc(&c.account_id),
            t("urgency", es),
            c.urgency,
            esc(&c.at[..10.min(c.at.len())]),
            esc(&c.excerpt)
        );
    }

    h.push_str(&h2(t("alerts", es)));
    if f.alerts.items.is_empty() {
        let _ = write!(h, "<p style=\"margin:0;color:#6b7280\">{}</p>", t("none", es));
    } else {
        let _ = write!(
            h,
            "<p style=\"margin:0 0 6px\"><b>{}</b></p><ul style=\"margin:0;padding-left:20px\">",
            f.alerts.total
        );
        for a in &f.alerts.items {
            let _ = write!(
                h,
                "<li style=\"margin:0 0 6px\"><b>{}</b> ({}) — {} · {}</li>",
                esc(&a.kind),
                esc(&a.severity),
                esc(&a.account_id),
                esc(&a.reason)
            );
        }
        h.push_str("</ul>");
    }

    let c = &f.churn;
    h.push_str(&h2(t("churn", es)));
    if f.scope == Scope::Tenant {
        let items: Vec<(String, f64, String)> = c
            .distribution
            .iter()
            .zip(RISK_COLORS)
            .map(|(d, col)| (d.name.clone(), d.count as f64, col.to_owned()))
            .collect();
        if let Ok(svg) = charts::bars(t("riskdist", es), &items) {
            let _ = write!(h, "<div style=\"margin:6px 0\">{svg}</div>");
        }
    }
    if !c.moved_up.is_empty() {
        let _ = write!(
            h,
            "<h3 style=\"font-size:15px;margin:14px 0 6px\">{}</h3><ul style=\"margin:0;padding-left:20px\">",
            t("moved", es)
        );
        for m in &c.moved_up {
            let _ = write!(
                h,
                "<li>{}: {} → <b>{}</b> ({})</li>",
                esc(&m.account_id),
                esc(&m.from),
                esc(&m.to),
                num(m.probability)
            );
        }
        h.push_str("</ul>");
    }
    let _ = write!(
        h,
        "<h3 style=\"font-size:15px;margin:14px 0 6px\">{}</h3>",
        t("atrisk", es)
    );
    if c.top_at_risk.is_empty() {
        let _ = write!(h, "<p style=\"margin:0;color:#6b7280\">{}</p>", t("none", es));
    }
    for r in &c.top_at_risk {
        let color = match r.risk_level.as_str() {
            "CRITICAL" => RISK_COLORS[3],
            "HIGH" => RISK_COLORS[2],
            _ => RISK_COLORS[1],
        };
        let _ = write!(
            h,
            "<div style=\"border:1px solid #e5e7eb;border-left:4px solid {color};padding:8px 10px;margin:0 0 8px\">\
             <div><b>{}</b> · {} · {}</div>",
            esc(&r.account_id),
            esc(&r.risk_level),
            num(r.probability)
        );
        if !r.factors.is_empty() {
            let _ = write!(
                h,
                "<div style=\"font-size:13px;color:#4b5563\">{}</div>",
                esc(&r.factors.join(" · "))
            );
        }
        if !r.actions.is_empty() {
            let _ = write!(
                h,
                "<div style=\"font-size:13px;margin-top:4px\">→ {}</div>",
                esc(&r.actions.join(" · "))
            );
        }
        h.push_str("</div>");
    }

    if let Some(j) = &f.jobs {
        h.push_str(&h2(t("jobs", es)));
        let _ = write!(
            h,
            "<p style=\"margin:0 0 6px\"><b>{}</b> · {} {} · {} {}{}</p>",
            j.total,
            j.succeeded,
            t("succeeded", es),
            j.dead,
            t("dead", es),
            j.success_rate_pct
                .map(|r| format!(" · {}%", num(r)))
                .unwrap_or_default()
        );
    }
    let _ = write!(
        h,
        "</td></tr><tr><td style=\"padding:14px 20px;background:#f9fafb;font-size:12px;color:#6b7280\">{} · {}</td></tr>\
         </table></td></tr></table></body></html>",
        esc(&brand.sender_name),
        esc(&f.period.label)
    );
    h
}

/// The email's plain-text part: the executive summary first, then the
/// whole report as Markdown.
pub fn text(f: &Facts, n: &Narrative) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{}\n", title(f));
    for p in &n.summary {
        let _ = writeln!(t, "{p}\n");
    }
    let _ = writeln!(t, "----\n");
    t.push_str(&markdown(f, n));
    t
}

/// The report as Markdown.
pub fn markdown(f: &Facts, n: &Narrative) -> String {
    let es = f.language == "es";
    let mut m = String::new();
    let _ = writeln!(m, "# {}\n", title(f));
    let _ = writeln!(
        m,
        "_{} → {} ({})_\n",
        f.period.first_day, f.period.last_day, f.period.time_zone
    );
    let _ = writeln!(m, "## {}\n", t("summary", es));
    for p in &n.summary {
        let _ = writeln!(m, "{p}\n");
    }
    if n.source == Source::Llm {
        let _ = writeln!(m, "_{}_\n", note(n, &f.language));
    }
    if !f.metrics.is_empty() {
        let _ = writeln!(m, "## {}\n", t("metrics", es));
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} |\n|---|---:|---:|---:|",
            t("metric", es),
            t("this", es),
            t("prev", es),
            t("change", es)
        );
        for x in &f.metrics {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} |",
                x.label,
                value(x, x.current, es),
                value(x, x.previous, es),
                change_cell(x).0
            );
        }
        m.push('\n');
    }
    for (key, items) in [
        ("highlights", &n.highlights),
        ("attention", &n.attention),
        ("next", &n.next_steps),
    ] {
        let _ = writeln!(m, "## {}\n", t(key, es));
        for i in items {
            let _ = writeln!(m, "- {i}");
        }
        m.push('\n');
    }
    let s = &f.sentiment;
    let _ = writeln!(
        m,
        "## {}\n\n{}: {} · {}: {} · {}: {}\n",
        t("sentiment", es),
        t("positive", es),
        s.positive,
        t("neutral", es),
        s.neutral,
        t("neg", es),
        s.negative
    );
    for c in &s.most_negative {
        let _ = writeln!(
            m,
            "- ({} {}) {}: {}",
            t("urgency", es),
            c.urgency,
            c.account_id,
            c.excerpt
        );
    }
    let _ = writeln!(m, "\n## {}\n\n{}\n", t("alerts", es), f.alerts.total);
    let _ = writeln!(m, "## {}\n", t("churn", es));
    for r in &f.churn.top_at_risk {
        let _ = writeln!(
            m,
            "- **{}** {} ({}) — {}",
            r.account_id,
            r.risk_level,
            num(r.probability),
            r.actions.join("; ")
        );
    }
    if let Some(j) = &f.jobs {
        let _ = writeln!(
            m,
            "\n## {}\n\n{} · {} {} · {} {}",
            t("jobs", es),
            j.total,
            j.succeeded,
            t("succeeded", es),
            j.dead,
            t("dead", es)
        );
    }
    m
}

/// The HTML printed to PDF by headless Chromium (`chromium`: its binary),
/// for tenants that want the report attached to the email.
pub async fn pdf(chromium: &str, html: &str) -> Result<Vec<u8>, String> {
    let dir = std::env::temp_dir().join(format!("kairos-report-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("pdf: {}: {e}", dir.display()))?;
    let page = dir.join("report.html");
    let out = dir.join("report.pdf");
    let result = async {
        std::fs::write(&page, html).map_err(|e| format!("pdf: {e}"))?;
        let run = tokio::process::Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--print-to-pdf={}", out.display()))
            .arg(format!("file://{}", page.display()))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
            .await
            .map_err(|_| "pdf: chromium took longer than 60 s".to_owned())?
            .map_err(|e| format!("pdf: running {chromium}: {e}"))?;
        std::fs::read(&out).map_err(|e| {
            format!(
                "pdf: chromium wrote no PDF ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            )
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
