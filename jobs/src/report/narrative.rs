//! The narrative of a report, in one fixed structure whatever writes it:
//! an executive summary of two or three paragraphs, highlights, areas of
//! attention and next steps. This module writes the deterministic template
//! version (es / en) from the facts alone; it is what a report says when
//! no language model is configured, it is down or over quota, or what it
//! wrote failed grounding, and the report says so.

use serde::{Deserialize, Serialize};

use super::config::Format;
use super::facts::{Facts, Scope};
use super::metrics::MetricFact;

/// Who wrote the narrative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The deterministic template.
    Template,
    /// A language model (grounded in the facts).
    Llm,
}

impl Source {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Template => "template",
            Source::Llm => "llm",
        }
    }
}

/// A narrative in the fixed structure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Narrative {
    /// Executive summary, 2–3 paragraphs; the first one is the email's opening.
    pub summary: Vec<String>,
    /// What went well.
    pub highlights: Vec<String>,
    /// What needs attention, with its impact.
    pub attention: Vec<String>,
    /// What to do next.
    pub next_steps: Vec<String>,
    /// Who wrote it.
    pub source: Source,
    /// Why the template was used although a model is configured (down, over
    /// quota, failed grounding), for the report's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// Formats a number the way the narrative and the tables show it: integers
/// without decimals, others with up to 2 — the same digits as the facts.
pub fn num(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A metric's value with its unit.
pub fn value(m: &MetricFact, v: Option<f64>, es: bool) -> String {
    match (v, m.format) {
        (None, _) => if es { "sin datos" } else { "no data" }.to_owned(),
        (Some(x), Format::Percent) => format!("{}%", num(x)),
        (Some(x), Format::Number) => num(x),
    }
}

fn level_word(level: &str, es: bool) -> &'static str {
    match (level, es) {
        ("CRITICAL", true) => "crítico",
        ("HIGH", true) => "alto",
        ("MEDIUM", true) => "medio",
        ("LOW", true) => "bajo",
        ("CRITICAL", false) => "critical",
        ("HIGH", false) => "high",
        ("MEDIUM", false) => "medium",
        _ => {
            if es {
                "bajo"
            } else {
                "low"
            }
        }
    }
}

/// The note a template narrative carries, in the report's language.
pub fn template_note(language: &str) -> &'static str {
    if language == "es" {
        "Este resumen se generó con una plantilla a partir de los datos del periodo (sin modelo de lenguaje)."
    } else {
        "This summary was generated from a template using the period's data (no language model)."
    }
}

/// The deterministic narrative for `facts`, in `facts.language`.
pub fn template(facts: &Facts) -> Narrative {
    let es = facts.language == "es";
    let who = match facts.scope {
        Scope::Account => facts
            .subject
            .account_name
            .clone()
            .unwrap_or_else(|| facts.subject.account_id.clone().unwrap_or_default()),
        Scope::Tenant => facts.subject.tenant_name.clone(),
    };
    let p = &facts.period;
    let a = &facts.activity;
    let s = &facts.sentiment;
    let mut summary = Vec::new();

    // 1. What happened.
    let change = match a.events_change_pct {
        Some(c) if c > 0.0 => {
            if es {
                format!(", un {}% más que el periodo anterior ({})", num(c), a.previous_events)
            } else {
                format!(", {}% more than the previous period ({})", num(c), a.previous_events)
            }
        }
        Some(c) if c < 0.0 => {
            if es {
                format!(
                    ", un {}% menos que el periodo anterior ({})",
                    num(-c),
                    a.previous_events
                )
            } else {
                format!(", {}% fewer than the previous period ({})", num(-c), a.previous_events)
            }
        }
        _ => {
            if es {
                format!(" (periodo anterior: {})", a.previous_events)
            } else {
                format!(" (previous period: {})", a.previous_events)
            }
        }
    };
    let mut first = if es {
        format!(
            "Del {} al {}, {} registró {} eventos{}",
            p.first_day, p.last_day, who, a.events, change
        )
    } else {
        format!(
            "From {} to {}, {} recorded {} events{}",
            p.first_day, p.last_day, who, a.events, change
        )
    };
    if facts.scope == Scope::Tenant {
        first.push_str(&if es {
            format!(", con {} cuentas activas.", a.active_accounts)
        } else {
            format!(", across {} active accounts.", a.active_accounts)
        });
    } else {
        first.push('.');
    }
    let moved: Vec<String> = facts
        .metrics
        .iter()
        .filter(|m| m.current.is_some())
        .take(3)
        .map(|m| format!("{}: {}", m.label, value(m, m.current, es)))
        .collect();
    if !moved.is_empty() {
        first.push(' ');
        first.push_str(&if es {
            format!("Indicadores clave — {}.", moved.join("; "))
        } else {
            format!("Key figures — {}.", moved.join("; "))
        });
    }
    summary.push(first);

    // 2. How customers feel and what is at risk.
    let mut second = if s.scored == 0 {
        if es {
            "No hubo comentarios ni tickets analizados en el periodo.".to_owned()
        } else {
            "No comments or tickets were analysed in the period.".to_owned()
        }
    } else if es {
        format!(
            "Se analizaron {} comentarios y tickets: {} positivos, {} neutros y {} negativos.",
            s.scored, s.positive, s.neutral, s.negative
        )
    } else {
        format!(
            "{} comments and tickets were analysed: {} positive, {} neutral and {} negative.",
            s.scored, s.positive, s.neutral, s.negative
        )
    };
    if facts.alerts.total > 0 {
        second.push(' ');
        second.push_str(&if es {
            format!(
                "Se generaron {} alertas (periodo anterior: {}).",
                facts.alerts.total, facts.alerts.previous_total
            )
        } else {
            format!(
                "{} alerts were raised (previous period: {}).",
                facts.alerts.total, facts.alerts.previous_total
            )
        });
    }
    let at_risk = facts
        .churn
        .distribution
        .iter()
        .filter(|c| c.name == "HIGH" || c.name == "CRITICAL")
        .map(|c| c.count)
        .sum::<i64>();
    match facts.scope {
        Scope::Tenant if at_risk > 0 => second.push_str(&if es {
            format!(" {at_risk} cuentas están en riesgo alto o crítico de abandono.")
        } else {
            format!(" {at_risk} accounts are at high or critical risk of churn.")
        }),
        Scope::Account => {
            if let Some(r) = facts.churn.top_at_risk.first() {
                second.push_str(&if es {
                    format!(
                        " El riesgo de abandono de la cuenta es {} (probabilidad {}).",
                        level_word(&r.risk_level, true),
                        num(r.probability)
                    )
                } else {
                    format!(
                        " The account's churn risk is {} (probability {}).",
                        level_word(&r.risk_level, false),
                        num(r.probability)
                    )
                });
            }
        }
        Scope::Tenant => {}
    }
    summary.push(second);

    // Highlights and attention: metrics by direction of change.
    let mut highlights = Vec::new();
    let mut attention = Vec::new();
    for m in &facts.metrics {
        let Some(c) = m.change_pct else { continue };
        if c == 0.0 {
            continue;
        }
        let good = (c > 0.0) == m.higher_is_better;
        let text = if es {
            format!(
                "{}: {} frente a {} ({}{}%).",
                m.label,
                value(m, m.current, true),
                value(m, m.previous, true),
                if c > 0.0 { "+" } else { "" },
                num(c)
            )
        } else {
            format!(
                "{}: {} vs {} ({}{}%).",
                m.label,
                value(m, m.current, false),
                value(m, m.previous, false),
                if c > 0.0 { "+" } else { "" },
                num(c)
            )
        };
        if good {
            highlights.push(text);
        } else {
            attention.push(text);
        }
    }
    if let (Some(now), Some(before)) = (s.average_polarity, s.previous_average_polarity) {
        if now > before {
            highlights.push(if es {
                format!("El sentimiento medio mejoró de {} a {}.", num(before), num(now))
            } else {
                format!("Average sentiment improved from {} to {}.", num(before), num(now))
            });
        } else if now < before {
            attention.push(if es {
                format!("El sentimiento medio empeoró de {} a {}.", num(before), num(now))
            } else {
                format!("Average sentiment worsened from {} to {}.", num(before), num(now))
            });
        }
    }
    for c in s.most_negative.iter().take(2) {
        attention.push(if es {
            format!("Comentario negativo (urgencia {}): «{}»", c.urgency, c.excerpt)
        } else {
            format!("Negative comment (urgency {}): “{}”", c.urgency, c.excerpt)
        });
    }
    for m in facts.churn.moved_up.iter().take(3) {
        attention.push(if es {
            format!(
                "La cuenta {} pasó de riesgo {} a {}.",
                m.account_id,
                level_word(&m.from, true),
                level_word(&m.to, true)
            )
        } else {
            format!(
                "Account {} moved from {} to {} churn risk.",
                m.account_id,
                level_word(&m.from, false),
                level_word(&m.to, false)
            )
        });
    }
    if let Some(j) = &facts.jobs {
        if j.dead > 0 {
            attention.push(if es {
                format!("{} trabajos fallaron definitivamente de {} creados.", j.dead, j.total)
            } else {
                format!("{} of {} jobs failed permanently.", j.dead, j.total)
            });
        }
    }
    if highlights.is_empty() {
        highlights.push(if es {
            "Sin cambios destacables respecto al periodo anterior.".to_owned()
        } else {
            "No notable changes from the previous period.".to_owned()
        });
    }
    if attention.is_empty() {
        attention.push(if es {
            "Nada requiere atención inmediata.".to_owned()
        } else {
            "Nothing needs immediate attention.".to_owned()
        });
    }

    // Next steps: the recommended actions, then the follow-ups the facts call for.
    let mut next_steps: Vec<String> = Vec::new();
    for r in facts.churn.top_at_risk.iter().take(3) {
        for action in r.actions.iter().take(1) {
            next_steps.push(if es {
                format!(
                    "{} — cuenta {} (riesgo {}).",
                    action,
                    r.account_id,
                    level_word(&r.risk_level, true)
                )
            } else {
                format!(
                    "{} — account {} ({} risk).",
                    action,
                    r.account_id,
                    level_word(&r.risk_level, false)
                )
            });
        }
    }
    if s.negative > 0 {
        next_steps.push(if es {
            "Responder a los comentarios negativos más urgentes esta semana.".to_owned()
        } else {
            "Answer the most urgent negative comments this week.".to_owned()
        });
    }
    if next_steps.is_empty() {
        next_steps.push(if es {
            "Mantener el seguimiento habitual y revisar el próximo informe.".to_owned()
        } else {
            "Keep the usual follow-up and review the next report.".to_owned()
        });
    }

    // 3. Why it matters.
    summary.push(format!(
        "{} {}",
        if es {
            format!(
                "Prioridades: {} punto(s) de atención y {} próximo(s) paso(s) se detallan abajo.",
                attention.len(),
                next_steps.len()
            )
        } else {
            format!(
                "Priorities: {} area(s) of attention and {} next step(s) are listed below.",
                attention.len(),
                next_steps.len()
            )
        },
        template_note(&facts.language)
    ));

    Narrative {
        summary,
        highlights,
        attention,
        next_steps,
        source: Source::Template,
        fallback_reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_the_facts_hold_them() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(0.333), "0.33");
        assert_eq!(num(-12.0), "-12");
    }
}

/// A narrative and what writing it cost.
#[derive(Debug, Clone)]
pub struct Written {
    /// The narrative (the LLM's, or the template with `fallback_reason`).
    pub narrative: Narrative,
    /// Tokens used, when an LLM was called (also when its text was refused).
    pub usage: Option<crate::llm::Usage>,
    /// The model called.
    pub model: Option<String>,
}

/// What the LLM is asked to return.
#[derive(Debug, serde::Deserialize)]
struct LlmText {
    summary: Vec<String>,
    highlights: Vec<String>,
    attention: Vec<String>,
    next_steps: Vec<String>,
}

fn system_prompt(facts: &Facts) -> String {
    let weekly = facts.period.label.contains("-W");
    if facts.language == "es" {
        format!(
            "Redactas el informe ejecutivo {} para los directivos de {}. Escribe en español, con un tono \
             profesional pero cercano: explica el porqué y el impacto en el negocio, no solo el qué. Usa solo \
             los datos que se te dan: cada cifra que escribas debe aparecer en los datos (puedes redondear). \
             No inventes cifras, fechas ni nombres. Responde con un objeto JSON: {{\"summary\": [2 o 3 \
             párrafos], \"highlights\": [...], \"attention\": [...], \"next_steps\": [...]}}. `summary` es el \
             resumen ejecutivo (su primer párrafo se lee solo, como apertura de un correo); `highlights`, lo \
             que fue bien; `attention`, los riesgos con su impacto; `next_steps`, acciones concretas.",
            if weekly { "semanal" } else { "mensual" },
            subject_name(facts)
        )
    } else {
        format!(
            "You write the {} executive report for the executives of {}. Write in English, professional but \
             accessible: explain the why and the business impact, not just the what. Use only the facts \
             given: every number you write must appear in the facts (you may round). Do not invent figures, \
             dates or names. Answer with one JSON object: {{\"summary\": [2 or 3 paragraphs], \
             \"highlights\": [...], \"attention\": [...], \"next_steps\": [...]}}. `summary` is the executive \
             summary (its first paragraph stands alone as an email's opening); `highlights`, what went well; \
             `attention`, the risks with their impact; `next_steps`, concrete actions.",
            if weekly { "weekly" } else { "monthly" },
            subject_name(facts)
        )
    }
}

fn subject_name(facts: &Facts) -> String {
    match facts.scope {
        Scope::Account => facts
            .subject
            .account_name
            .clone()
            .unwrap_or_else(|| facts.subject.account_id.clone().unwrap_or_default()),
        Scope::Tenant => facts.subject.tenant_name.clone(),
    }
}

/// Why an LLM text is refused: the structure, or numbers not in the facts.
fn check(t: &LlmText, facts: &serde_json::Value) -> Option<String> {
    if !(2..=3).contains(&t.summary.len()) {
        return Some(format!(
            "the summary has {} paragraphs; it must have 2 or 3",
            t.summary.len()
        ));
    }
    if t.highlights.is_empty() || t.attention.is_empty() || t.next_steps.is_empty() {
        return Some("highlights, attention and next_steps must each have at least one item".into());
    }
    let all: Vec<&str> = t
        .summary
        .iter()
        .chain(&t.highlights)
        .chain(&t.attention)
        .chain(&t.next_steps)
        .map(String::as_str)
        .collect();
    let bad = crate::llm::ungrounded_numbers(&all.join("\n"), facts);
    (!bad.is_empty()).then(|| format!("numbers not in the facts: {}", bad.join(", ")))
}

/// The narrative for `facts`: the LLM's if it is configured, answers, and
/// what it wrote passes the checks — a refused text is asked for once more,
/// with the reason — else the template, with the reason recorded.
pub async fn write(llm: &crate::llm::Llm, facts: &Facts) -> Written {
    if !llm.is_configured() {
        return Written {
            narrative: template(facts),
            usage: None,
            model: None,
        };
    }
    let facts_json = serde_json::to_value(facts).unwrap_or_default();
    let system = system_prompt(facts);
    let mut user = format!("FACTS (JSON):\n{facts_json}");
    let mut usage = crate::llm::Usage::default();
    let mut reason = String::new();
    for _ in 0..2 {
        match llm.chat_json::<LlmText>(&system, &user).await {
            Ok((t, u)) => {
                usage = usage + u;
                match check(&t, &facts_json) {
                    None => {
                        return Written {
                            narrative: Narrative {
                                summary: t.summary,
                                highlights: t.highlights,
                                attention: t.attention,
                                next_steps: t.next_steps,
                                source: Source::Llm,
                                fallback_reason: None,
                            },
                            usage: Some(usage),
                            model: llm.model().map(str::to_owned),
                        }
                    }
                    Some(problem) => {
                        user.push_str(&format!(
                            "\n\nYour previous answer was refused ({problem}). Write it again; use only numbers \
                             that appear in the facts."
                        ));
                        reason = format!("grounding: {problem}");
                    }
                }
            }
            Err(e) => {
                usage = usage + e.usage();
                reason = e.to_string();
                break;
            }
        }
    }
    llm.record_fallback(super::KIND, &reason);
    let mut narrative = template(facts);
    narrative.fallback_reason = Some(reason);
    Written {
        narrative,
        usage: (usage.total() > 0).then_some(usage),
        model: llm.model().map(str::to_owned),
    }
}
