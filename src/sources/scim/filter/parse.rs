//! The filter grammar (RFC 7644 §3.4.2.2, Figure 1) and the PATCH path rule (§3.5.2, Figure 7), by recursive
//! descent over a token list. Recursion happens only at `(`, `not (` and `[`, each of which counts against
//! [`MAX_DEPTH`], so the stack depth is bounded whatever the input. Paths come out unresolved; the caller binds
//! them to a schema.

use super::{CompValue, CompareOp, Filter, Path, MAX_DEPTH, MAX_FILTER_LEN};
use crate::sources::scim::error::ScimError;

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A `.` at the start of a token: only after `]`, in `emails[type eq "work"].value`.
    Dot,
    Str(String),
    /// Anything else up to whitespace or punctuation: a path, an operator, a keyword, a number, a bare value.
    Word(&'a str),
}

fn describe(t: Option<&(usize, Tok<'_>)>) -> String {
    match t {
        None => "the end of the filter".to_string(),
        Some((at, t)) => {
            let what = match t {
                Tok::LParen => "\"(\"".to_string(),
                Tok::RParen => "\")\"".to_string(),
                Tok::LBracket => "\"[\"".to_string(),
                Tok::RBracket => "\"]\"".to_string(),
                Tok::Dot => "\".\"".to_string(),
                Tok::Str(s) => format!("the string {s:?}"),
                Tok::Word(w) => format!("{w:?}"),
            };
            format!("{what} at offset {at}")
        }
    }
}

fn lex(input: &str) -> Result<Vec<(usize, Tok<'_>)>, String> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => out.push((start, Tok::LParen)),
            b')' => out.push((start, Tok::RParen)),
            b'[' => out.push((start, Tok::LBracket)),
            b']' => out.push((start, Tok::RBracket)),
            b'.' => out.push((start, Tok::Dot)),
            b'"' => {
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return Err(format!("unterminated string starting at offset {start}")),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                let lit = input.get(start..=j).ok_or_else(|| format!("bad string at offset {start}"))?;
                let s: String = serde_json::from_str(lit)
                    .map_err(|e| format!("bad string at offset {start}: {e} (strings use JSON escapes)"))?;
                out.push((start, Tok::Str(s)));
                i = j + 1;
                continue;
            }
            _ => {
                let mut j = i;
                while j < bytes.len()
                    && !matches!(bytes[j], b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'[' | b']' | b'"')
                {
                    j += 1;
                }
                // Splitting only at ASCII bytes keeps `j` on a char boundary.
                out.push((start, Tok::Word(&input[i..j])));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(usize, Tok<'a>)>,
    pos: usize,
}

type PResult<T> = Result<T, String>;

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn peek2(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos + 1).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Tok<'a>> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn here(&self) -> String {
        describe(self.toks.get(self.pos))
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, want: Tok<'static>, what: &str) -> PResult<()> {
        if self.peek() == Some(&want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {what}, found {}", self.here()))
        }
    }

    fn enter(depth: usize) -> PResult<usize> {
        if depth >= MAX_DEPTH {
            Err(format!("the filter is nested more than {MAX_DEPTH} levels deep"))
        } else {
            Ok(depth + 1)
        }
    }

    /// FILTER = term *("or" term), flattened into one `Or`.
    fn or(&mut self, depth: usize, in_value: bool) -> PResult<Filter> {
        let first = self.and(depth, in_value)?;
        if !self.peek_keyword("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek_keyword("or") {
            self.pos += 1;
            items.push(self.and(depth, in_value)?);
        }
        Ok(Filter::Or(items))
    }

    fn and(&mut self, depth: usize, in_value: bool) -> PResult<Filter> {
        let first = self.unary(depth, in_value)?;
        if !self.peek_keyword("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek_keyword("and") {
            self.pos += 1;
            items.push(self.unary(depth, in_value)?);
        }
        Ok(Filter::And(items))
    }

    fn unary(&mut self, depth: usize, in_value: bool) -> PResult<Filter> {
        if self.peek_keyword("not") && self.peek2() == Some(&Tok::LParen) {
            self.pos += 2;
            let inner = self.or(Self::enter(depth)?, in_value)?;
            self.expect(Tok::RParen, "\")\" closing \"not (\"")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.peek() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.or(Self::enter(depth)?, in_value)?;
                self.expect(Tok::RParen, "\")\"")?;
                Ok(inner)
            }
            Some(Tok::Word(_)) => self.attr_exp(depth, in_value),
            _ => Err(format!("expected an attribute name, \"(\" or \"not (\", found {}", self.here())),
        }
    }

    fn path(&mut self) -> PResult<Path> {
        match self.next() {
            Some(Tok::Word(w)) if is_path(w) => Ok(Path { text: w.to_string(), resolved: None, relative: false }),
            _ => {
                self.pos -= 1;
                Err(format!("expected an attribute name, found {}", self.here()))
            }
        }
    }

    fn attr_exp(&mut self, depth: usize, in_value: bool) -> PResult<Filter> {
        let path = self.path()?;
        if self.peek() == Some(&Tok::LBracket) {
            if in_value {
                return Err(format!("a value filter cannot contain another one, at {}", self.here()));
            }
            self.pos += 1;
            let inner = self.or(Self::enter(depth)?, true)?;
            self.expect(Tok::RBracket, "\"]\" closing the value filter")?;
            if self.peek() != Some(&Tok::Dot) {
                return Ok(Filter::ValuePath { attr: path, filter: Box::new(inner) });
            }
            // Entra: `emails[type eq "work"].value eq "x"` = some element with type work has value x.
            self.pos += 1;
            let sub = self.path()?;
            let cond = self.condition(sub)?;
            let filter = match inner {
                Filter::And(mut items) => {
                    items.push(cond);
                    Filter::And(items)
                }
                other => Filter::And(vec![other, cond]),
            };
            return Ok(Filter::ValuePath { attr: path, filter: Box::new(filter) });
        }
        self.condition(path)
    }

    /// `pr`, or an operator and a value, after a path.
    fn condition(&mut self, path: Path) -> PResult<Filter> {
        let op = match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("pr") => return Ok(Filter::Present(path)),
            Some(Tok::Word(w)) => CompareOp::parse(w),
            _ => None,
        };
        let Some(op) = op else {
            self.pos -= 1;
            return Err(format!(
                "expected an operator (eq ne co sw ew gt ge lt le pr) after {:?}, found {}",
                path.text,
                self.here()
            ));
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => CompValue::Str(s),
            Some(Tok::Word(w)) => word_value(w),
            _ => {
                self.pos -= 1;
                return Err(format!("expected a value after {:?} {}, found {}", path.text, op.as_str(), self.here()));
            }
        };
        Ok(Filter::Compare { path, op, value })
    }
}

/// ATTRNAME = ALPHA *(nameChar), with an optional URN prefix and sub-attribute; `$ref` is a name too.
fn is_path(w: &str) -> bool {
    let first = w.as_bytes().first().copied().unwrap_or(b'0');
    (first.is_ascii_alphabetic() || first == b'$')
        && w.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.' | b'$'))
}

fn word_value(w: &str) -> CompValue {
    if w.eq_ignore_ascii_case("true") {
        CompValue::Bool(true)
    } else if w.eq_ignore_ascii_case("false") {
        CompValue::Bool(false)
    } else if w.eq_ignore_ascii_case("null") {
        CompValue::Null
    } else if let Ok(n) = serde_json::from_str::<serde_json::Number>(w) {
        CompValue::Number(n)
    } else {
        // Not JSON: the Microsoft tutorial's `externalId eq jyoung`. Read it as the string it plainly is.
        CompValue::Str(w.to_string())
    }
}

fn checked_len(input: &str) -> Result<(), String> {
    if input.len() > MAX_FILTER_LEN {
        return Err(format!("the filter is longer than {MAX_FILTER_LEN} bytes"));
    }
    if input.trim().is_empty() {
        return Err("the filter is empty".to_string());
    }
    Ok(())
}

/// Parses a filter (unresolved paths). Errors are `invalidFilter`.
pub(super) fn parse_filter(input: &str) -> Result<Filter, ScimError> {
    let run = || -> PResult<Filter> {
        checked_len(input)?;
        let mut p = Parser { toks: lex(input)?, pos: 0 };
        let f = p.or(0, false)?;
        if p.pos < p.toks.len() {
            return Err(format!("expected \"and\", \"or\" or the end of the filter, found {}", p.here()));
        }
        Ok(f)
    };
    run().map_err(|e| ScimError::invalid_filter(format!("invalid filter: {e}")))
}

/// A PATCH path as written: `attrPath`, or `attrPath "[" valFilter "]" ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawPatchPath {
    /// `members`, `name.givenName`, `urn:…:enterprise:2.0:User:manager.value`.
    pub attr: String,
    /// The value filter, paths unresolved.
    pub filter: Option<Filter>,
    /// The sub-attribute after the value filter: `value` in `emails[type eq "work"].value`.
    pub sub: Option<String>,
}

/// Parses a PATCH path (RFC 7644 §3.5.2, Figure 7). Errors are `invalidPath`.
pub(crate) fn parse_patch_path(input: &str) -> Result<RawPatchPath, ScimError> {
    let run = || -> PResult<RawPatchPath> {
        checked_len(input)?;
        let mut p = Parser { toks: lex(input)?, pos: 0 };
        let attr = p.path()?.text;
        let mut out = RawPatchPath { attr, filter: None, sub: None };
        if p.peek() == Some(&Tok::LBracket) {
            p.pos += 1;
            out.filter = Some(p.or(1, true)?);
            p.expect(Tok::RBracket, "\"]\" closing the value filter")?;
            if p.peek() == Some(&Tok::Dot) {
                p.pos += 1;
                match p.next() {
                    Some(Tok::Word(w)) if is_path(w) && !w.contains(['.', ':']) => out.sub = Some(w.to_string()),
                    _ => {
                        p.pos -= 1;
                        return Err(format!("expected a sub-attribute name after \"].\", found {}", p.here()));
                    }
                }
            }
        }
        if p.pos < p.toks.len() {
            return Err(format!("unexpected {} in the path", p.here()));
        }
        Ok(out)
    };
    run().map_err(|e| ScimError::invalid_path(format!("invalid path {input:?}: {e}")))
}
