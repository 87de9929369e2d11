//! LLM personalisation of a nudge's text, for rules with `personalise =
//! true`: the rendered template is the draft and the fallback. The LLM is
//! the shared [`crate::llm::Llm`] (the account's quota is the one reports
//! use, shared by every worker) and its text passes the same grounding
//! check as a report's narrative ([`crate::llm::ungrounded_numbers`]): a
//! number that is not in the facts sends the template, with the reason
//! recorded on the nudge (`text_note`), as does any [`crate::llm::LlmError`].

use serde::Deserialize;
use serde_json::{json, Value};

use crate::llm::Llm;

/// Who wrote the text that goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// `template` or `llm`.
    pub source: &'static str,
    /// Why the template was used on a personalised rule.
    pub note: Option<String>,
}

/// What the LLM is asked to return.
#[derive(Debug, Deserialize)]
struct Reply {
    subject: String,
    body: String,
}

/// The facts the LLM may use: what the template may name, minus contact
/// details and consent (never needed to write a message).
pub fn facts(context: &Value, draft_subject: &str, draft_body: &str) -> Value {
    let mut facts = context.clone();
    if let Some(p) = facts.get_mut("person").and_then(Value::as_object_mut) {
        for private in ["email", "phone", "consent", "channels", "attributes"] {
            p.remove(private);
        }
    }
    json!({"context": facts, "draft": {"subject": draft_subject, "body": draft_body}})
}

fn system_prompt(language: &str) -> String {
    if language == "es" {
        "Reescribes un mensaje breve de una empresa para una persona concreta, en español, con un tono cercano y \
         profesional. Parte del borrador y usa solo los datos que se te dan: cada cifra que escribas debe aparecer \
         en los datos. No inventes cifras, fechas, nombres ni ofertas. Responde con un objeto JSON: \
         {\"subject\": \"...\", \"body\": \"...\"} (asunto de una línea; cuerpo de 1 a 3 frases)."
            .to_owned()
    } else {
        "You rewrite a short message from a company for one person, in English, warm but professional. Start from \
         the draft and use only the facts given: every number you write must appear in the facts. Do not invent \
         figures, dates, names or offers. Answer with one JSON object: {\"subject\": \"...\", \"body\": \"...\"} \
         (a one-line subject; a body of 1 to 3 sentences)."
            .to_owned()
    }
}

/// Why an LLM text is refused: empty parts, or numbers not in the facts.
fn check(r: &Reply, facts: &Value) -> Option<String> {
    if r.subject.trim().is_empty() || r.body.trim().is_empty() {
        return Some("grounding: an empty subject or body".into());
    }
    let bad = crate::llm::ungrounded_numbers(&format!("{}\n{}", r.subject, r.body), facts);
    (!bad.is_empty()).then(|| format!("grounding: numbers not in the facts: {}", bad.join(", ")))
}

/// The text of a nudge: the template's when the rule does not ask for
/// personalisation; else the LLM's if it answers and passes the checks,
/// else the template with the reason (also counted by
/// [`Llm::record_fallback`]). One call: a nudge is short and a refused
/// text costs less as the template than as a second round trip.
pub async fn write(
    llm: &Llm,
    personalise: bool,
    language: &str,
    context: &Value,
    subject: String,
    body: String,
) -> Text {
    let template = |note: Option<String>| Text {
        subject: subject.clone(),
        body: body.clone(),
        source: "template",
        note,
    };
    if !personalise {
        return template(None);
    }
    if !llm.is_configured() {
        return template(Some("llm: not configured".into()));
    }
    let facts = facts(context, &subject, &body);
    let user = format!("FACTS (JSON):\n{facts}");
    let why = match llm.chat_json::<Reply>(&system_prompt(language), &user).await {
        Ok((reply, _usage)) => match check(&reply, &facts) {
            None => {
                return Text {
                    subject: reply.subject.trim().to_owned(),
                    body: reply.body.trim().to_owned(),
                    source: "llm",
                    note: None,
                }
            }
            Some(problem) => problem,
        },
        Err(e) => e.to_string(),
    };
    llm.record_fallback(super::KIND, &why);
    template(Some(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_details_never_reach_the_prompt() {
        let ctx = json!({"person": {"name": "Ana", "email": "ana@x.test", "phone": "+34600000000",
            "consent": {"email": {"granted": true}}}, "account": {"display_name": "Acme"}});
        let f = facts(&ctx, "Hola", "Tu pago falló");
        assert_eq!(f["context"]["person"], json!({"name": "Ana"}));
        assert_eq!(f["draft"]["body"], "Tu pago falló");
    }

    #[test]
    fn numbers_must_be_facts() {
        let ctx = json!({"score": {"probability": 0.82}, "event": {"data": {"amount": 49}}});
        let f = facts(&ctx, "s", "b");
        let ok = Reply {
            subject: "Your payment of 49".into(),
            body: "Risk 82%.".into(),
        };
        assert_eq!(check(&ok, &f), None);
        let bad = Reply {
            subject: "Your payment of 59".into(),
            body: "b".into(),
        };
        assert!(check(&bad, &f).unwrap().contains("59"));
    }
}
