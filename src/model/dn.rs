//! Distinguished names as compared: one normal form (RFC 4514) for a user's DN, a member value and a rule's
//! group DN, so that spelling differences never decide who is in a group.

/// Normalizes a DN for comparison (RFC 4514): RDNs split on unescaped commas, spaces around separators
/// dropped, escapes (`\,` and `\2C`) decoded and re-escaped uniformly, case folded.
///
/// Called for every user DN and every member value (hundreds of thousands per large snapshot), so plain ASCII
/// DNs without escapes take a single-pass fast path; anything else takes the general one.
pub fn normalize_dn(dn: &str) -> String {
    fast_normalize_dn(dn).unwrap_or_else(|| slow_normalize_dn(dn))
}

fn fast_normalize_dn(dn: &str) -> Option<String> {
    if !dn.is_ascii() || dn.bytes().any(|b| matches!(b, b'\\' | b'"' | b'+' | b'<' | b'>')) {
        return None;
    }
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in dn.split([',', ';']).enumerate() {
        let (ty, val) = rdn.split_once('=')?;
        if val.contains('=') {
            return None;
        }
        if i > 0 {
            out.push(',');
        }
        // ASCII only here: each byte is a char, lower-cased as it is copied.
        out.extend(ty.trim_matches(' ').bytes().map(|b| char::from(b.to_ascii_lowercase())));
        out.push('=');
        out.extend(val.trim_matches(' ').bytes().map(|b| char::from(b.to_ascii_lowercase())));
    }
    Some(out)
}

fn slow_normalize_dn(dn: &str) -> String {
    let mut rdns: Vec<String> = Vec::new();
    let mut cur = String::new();
    // (char, was_escaped)
    let mut chars: Vec<(char, bool)> = Vec::new();
    let bytes: Vec<char> = dn.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '\\' && i + 1 < bytes.len() {
            let (a, b) = (bytes[i + 1], bytes.get(i + 2).copied().unwrap_or(' '));
            if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() {
                // Collect a run of hex escapes (a UTF-8 sequence) and decode it.
                let mut raw = Vec::new();
                while bytes.get(i) == Some(&'\\')
                    && bytes.get(i + 1).is_some_and(char::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(char::is_ascii_hexdigit)
                {
                    let h: String = bytes[i + 1..i + 3].iter().collect();
                    raw.push(u8::from_str_radix(&h, 16).unwrap_or(b'?'));
                    i += 3;
                }
                for ch in String::from_utf8_lossy(&raw).chars() {
                    chars.push((ch, true));
                }
                continue;
            }
            chars.push((a, true));
            i += 2;
            continue;
        }
        chars.push((c, false));
        i += 1;
    }
    let flush = |cur: &mut String, rdns: &mut Vec<String>| {
        rdns.push(normalize_rdn(cur));
        cur.clear();
    };
    for (c, esc) in chars {
        if !esc && (c == ',' || c == ';') {
            flush(&mut cur, &mut rdns);
        } else if esc {
            cur.push('\u{0}');
            cur.push(c);
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() || !rdns.is_empty() {
        flush(&mut cur, &mut rdns);
    }
    rdns.join(",")
}

/// One RDN (escaped characters arrive prefixed with NUL): `type=value` with type and value trimmed and
/// lower-cased, and special characters escaped.
fn normalize_rdn(raw: &str) -> String {
    let mut out = String::new();
    let mut it = raw.chars().peekable();
    let mut text = String::new();
    let mut escaped_positions = Vec::new();
    while let Some(c) = it.next() {
        if c == '\u{0}' {
            if let Some(n) = it.next() {
                escaped_positions.push(text.chars().count());
                text.push(n);
            }
        } else {
            text.push(c);
        }
    }
    let chars: Vec<char> = text.chars().collect();
    // Trim unescaped spaces at both ends.
    let (mut s, mut e) = (0, chars.len());
    while s < e && chars[s] == ' ' && !escaped_positions.contains(&s) {
        s += 1;
    }
    while e > s && chars[e - 1] == ' ' && !escaped_positions.contains(&(e - 1)) {
        e -= 1;
    }
    let mut seen_eq = false;
    let mut pending_space = false;
    for (idx, c) in chars.iter().enumerate().take(e).skip(s) {
        let esc = escaped_positions.contains(&idx);
        if !esc && *c == '=' && !seen_eq {
            seen_eq = true;
            while out.ends_with(' ') {
                out.pop();
            }
            out.push('=');
            pending_space = true;
            continue;
        }
        if pending_space && *c == ' ' && !esc {
            continue;
        }
        pending_space = false;
        let lc: String = c.to_lowercase().collect();
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push_str(&lc);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        for dn in [
            "CN=Alice Smith , OU=People,DC=Example,DC=ORG",
            "uid=user00042,ou=people,dc=example,dc=org",
            "cn = a ,ou= b",
            "cn=a;dc=x",
            " cn=a , dc=x ",
            "CN=Group With  Two  Spaces,DC=x",
        ] {
            assert_eq!(fast_normalize_dn(dn), Some(slow_normalize_dn(dn)), "{dn:?}");
        }
        for dn in ["cn=a,,dc=x", "cn=a=b,dc=x", "cn=a\\,b", "cn=\"q\"", "cn=a+uid=b", "cn=jürgen", "nodn", ""] {
            assert_eq!(fast_normalize_dn(dn), None, "{dn:?} must take the general path");
        }
    }

    #[test]
    fn dns_normalize() {
        assert_eq!(
            normalize_dn("CN=Alice Smith , OU=People,DC=Example,DC=ORG"),
            "cn=alice smith,ou=people,dc=example,dc=org"
        );
        assert_eq!(normalize_dn("cn = a ,ou= b"), "cn=a,ou=b");
        // An escaped comma stays inside the value, in either spelling.
        assert_eq!(normalize_dn("CN=Smith\\, John,OU=x"), normalize_dn("cn=smith\\2C john,ou=x"));
        assert_eq!(normalize_dn("CN=Smith\\, John,OU=x"), "cn=smith\\, john,ou=x");
        // Escaped trailing space is significant; hex-escaped UTF-8 decodes.
        assert_ne!(normalize_dn("cn=a\\ ,dc=x"), normalize_dn("cn=a,dc=x"));
        assert_eq!(normalize_dn("cn=J\\C3\\BCrgen,dc=x"), "cn=jürgen,dc=x");
        assert_eq!(normalize_dn("cn=a;dc=x"), "cn=a,dc=x");
        assert_eq!(normalize_dn(""), "");
        assert_eq!(normalize_dn("cn=trailing\\"), "cn=trailing\\\\", "a dangling backslash is kept, escaped");
    }
}
