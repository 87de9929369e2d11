//! `{{root.path}}` templates: the variables a rule's message may use, and
//! rendering them from a JSON context (`person`, `account`, `event`,
//! `alert`, `score`, `rule`). A missing value renders empty, so a profile
//! without a name still gets a message; config validation checks roots.

use serde_json::Value;

/// The variables of `text` in order; an unclosed `{{` is an error.
pub fn variables(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` is never closed by `}}`".to_string())?;
        let var = after[..end].trim();
        if var.is_empty() || var.split('.').any(str::is_empty) {
            return Err(format!("`{{{{{var}}}}}` is not a dotted path"));
        }
        out.push(var);
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// `text` with each variable replaced by its value in `context` (strings
/// as they are, other values as JSON, missing or null as nothing).
pub fn render(text: &str, context: &Value) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let path = after[..end].trim();
        match path.split('.').try_fold(context, |v, k| v.get(k)) {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => {}
            Some(v) => out.push_str(&v.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_strings_numbers_and_missing_values() {
        let ctx = serde_json::json!({"person": {"name": "Ana"}, "score": {"probability": 0.8}});
        assert_eq!(
            render("Hola {{person.name}} ({{ score.probability }}){{person.phone}}!", &ctx),
            "Hola Ana (0.8)!"
        );
        assert_eq!(variables("{{a.b}} x {{c}}").unwrap(), ["a.b", "c"]);
        assert!(variables("{{a").is_err());
        assert!(variables("{{a..b}}").is_err());
    }
}
