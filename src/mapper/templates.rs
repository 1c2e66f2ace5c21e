//! The templates that name things: a new user's `user_id`, a team's id and alias, and the normalised forms
//! (e-mail addresses, slugs). Pure; the mapper calls these and nothing else does the naming.

use crate::config::SourceConfig;
use crate::model::{Group, Identity};

/// E-mail addresses are sent lower-cased and trimmed: LiteLLM's duplicate check is case-insensitive while its
/// e-mail lookups are not (litellm-api.md §2.2).
pub fn normalize_email(e: &str) -> String {
    e.trim().to_lowercase()
}

/// Renders a source's `user_id_template` for one identity.
pub fn render_user_id(src: &SourceConfig, ident: &Identity) -> Result<String, String> {
    let email = ident.email.as_deref().map(normalize_email).filter(|e| !e.is_empty());
    if src.user_id_template.contains("{email}") && email.is_none() {
        return Err(format!(
            "user_id_template {:?} needs an e-mail address and the user has none",
            src.user_id_template
        ));
    }
    let id = src
        .user_id_template
        .replace("{user_name}", &ident.user_name)
        .replace("{email}", email.as_deref().unwrap_or(""))
        .replace("{id}", &ident.external_id)
        .replace("{source}", &src.name);
    if id.trim().is_empty() {
        return Err("the rendered user_id is empty".into());
    }
    if id.len() > 512 {
        return Err(format!("the rendered user_id is {} bytes long; LiteLLM accepts at most 512", id.len()));
    }
    if id.chars().any(char::is_control) {
        return Err("the rendered user_id contains control characters".into());
    }
    Ok(id)
}

/// Renders a team id or alias template. For ids, substituted values are slugified so that a group named
/// "LLM Users (EU)" gives the team id "llm-users-eu".
pub(super) fn render_group_template(t: &str, source: &str, g: &Group, slug: bool) -> String {
    if !slug {
        return t.replace("{group_name}", &g.name).replace("{group_id}", &g.external_id).replace("{source}", source);
    }
    // A name with nothing to transliterate (only symbols) falls back to a stable hash of the group's id, so two
    // such groups never render one team.
    let name = match slugify(&g.name) {
        s if s.is_empty() => format!("g-{}", short_hash(&g.external_id)),
        s => s,
    };
    let id = match slugify(&g.external_id) {
        s if s.is_empty() => format!("g-{}", short_hash(&g.external_id)),
        s => s,
    };
    t.replace("{group_name}", &name).replace("{group_id}", &id).replace("{source}", &slugify(source))
}

/// Lower-case ASCII letters, digits, `_` and `.`, other runs as one `-`. Other scripts are transliterated first
/// ("研发" → "yan-fa", "Продажи" → "prodazhi"), so teams of non-Latin group names get readable, distinct ids.
pub fn slugify(s: &str) -> String {
    let ascii = deunicode::deunicode_with_tofu(s, "-");
    let mut out = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// 12 hex digits of SHA-256: stable across runs and versions.
fn short_hash(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref().iter().take(6).map(|b| format!("{b:02x}")).collect()
}
