//! OTTL tokens. Positions are byte offsets into the condition text; the
//! parent module turns them into 1-based character columns for messages.

use super::{OttlError, MAX_CONDITION_LEN};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A word: `[A-Za-z_][A-Za-z0-9_]*` (paths, keywords, converters, enums).
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`.
    Cmp(CmpOp),
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Dot,
    Colon,
    Equal,
    Eof,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

impl Tok {
    /// How the token is named in "expected ..., found ..." messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(i) => format!("number {i}"),
            Tok::Float(f) => format!("number {f}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Bytes(_) => "a byte literal".to_string(),
            Tok::Cmp(op) => format!("`{}`", op.as_str()),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Colon => "`:`".into(),
            Tok::Equal => "`=`".into(),
            Tok::Eof => "the end of the condition".into(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Splits `text` into tokens (the last one is [`Tok::Eof`]).
pub(crate) fn lex(text: &str) -> Result<Vec<Token>, OttlError> {
    if text.len() > MAX_CONDITION_LEN {
        return Err(OttlError::at(
            text,
            MAX_CONDITION_LEN,
            format!(
                "condition is too long ({} bytes, the limit is {MAX_CONDITION_LEN})",
                text.len()
            ),
        ));
    }
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'0' if b.get(i + 1) == Some(&b'x') => {
                i += 2;
                let hs = i;
                while i < b.len() && b[i].is_ascii_hexdigit() {
                    i += 1;
                }
                let hex = &text[hs..i];
                if hex.is_empty() || hex.len() & 1 == 1 {
                    return Err(OttlError::at(
                        text,
                        start,
                        "invalid byte literal: needs an even, non-zero number of hex digits after 0x",
                    ));
                }
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).unwrap_or(0))
                    .collect();
                Tok::Bytes(bytes)
            }
            b'0'..=b'9' => number(text, &mut i)?,
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => number(text, &mut i)?,
            b'"' => Tok::Str(string(text, &mut i)?),
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Ident(text[start..i].to_string())
            }
            _ => {
                let two = text.get(i..i + 2);
                let (tok, len) = match (two, c) {
                    (Some("=="), _) => (Tok::Cmp(CmpOp::Eq), 2),
                    (Some("!="), _) => (Tok::Cmp(CmpOp::Ne), 2),
                    (Some("<="), _) => (Tok::Cmp(CmpOp::Le), 2),
                    (Some(">="), _) => (Tok::Cmp(CmpOp::Ge), 2),
                    (_, b'<') => (Tok::Cmp(CmpOp::Lt), 1),
                    (_, b'>') => (Tok::Cmp(CmpOp::Gt), 1),
                    (_, b'+') => (Tok::Plus, 1),
                    (_, b'-') => (Tok::Minus, 1),
                    (_, b'*') => (Tok::Star, 1),
                    (_, b'/') => (Tok::Slash, 1),
                    (_, b'(') => (Tok::LParen, 1),
                    (_, b')') => (Tok::RParen, 1),
                    (_, b'[') => (Tok::LBracket, 1),
                    (_, b']') => (Tok::RBracket, 1),
                    (_, b'{') => (Tok::LBrace, 1),
                    (_, b'}') => (Tok::RBrace, 1),
                    (_, b',') => (Tok::Comma, 1),
                    (_, b'.') => (Tok::Dot, 1),
                    (_, b':') => (Tok::Colon, 1),
                    (_, b'=') => (Tok::Equal, 1),
                    _ => {
                        let ch = text[i..].chars().next().unwrap_or('?');
                        return Err(OttlError::at(text, start, format!("unexpected character {ch:?}")));
                    }
                };
                i += len;
                tok
            }
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: text.len(),
    });
    Ok(out)
}

/// `\d+`, `\d*\.\d+([eE][-+]?\d+)?` (as upstream: `1.` is not a float).
fn number(text: &str, i: &mut usize) -> Result<Tok, OttlError> {
    let b = text.as_bytes();
    let start = *i;
    while *i < b.len() && b[*i].is_ascii_digit() {
        *i += 1;
    }
    let mut float = false;
    if *i + 1 < b.len() && b[*i] == b'.' && b[*i + 1].is_ascii_digit() {
        float = true;
        *i += 1;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        if *i < b.len() && (b[*i] == b'e' || b[*i] == b'E') {
            let mut j = *i + 1;
            if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                *i = j;
            }
        }
    }
    if *i < b.len() && (b[*i].is_ascii_alphabetic() || b[*i] == b'_') {
        return Err(OttlError::at(text, start, "invalid number"));
    }
    let s = &text[start..*i];
    if float {
        s.parse::<f64>()
            .map(Tok::Float)
            .map_err(|_| OttlError::at(text, start, format!("invalid number {s}")))
    } else {
        s.parse::<i64>()
            .map(Tok::Int)
            .map_err(|_| OttlError::at(text, start, format!("integer {s} does not fit in 64 bits")))
    }
}

/// A double-quoted string with Go's escapes (`strconv.Unquote`, as
/// upstream): `\a \b \f \n \r \t \v \\ \"`, `\xHH`, `\ooo`, `\uHHHH`,
/// `\UHHHHHHHH`; any other escape is an error.
fn string(text: &str, i: &mut usize) -> Result<String, OttlError> {
    let start = *i;
    *i += 1; // opening quote
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new(); // pending \x / octal bytes (may form UTF-8)
    let flush = |bytes: &mut Vec<u8>, out: &mut String, at: usize| -> Result<(), OttlError> {
        if !bytes.is_empty() {
            let s = std::str::from_utf8(bytes)
                .map_err(|_| OttlError::at(text, at, "string escapes do not form valid UTF-8"))?;
            out.push_str(s);
            bytes.clear();
        }
        Ok(())
    };
    let mut chars = text[*i..].char_indices();
    while let Some((off, c)) = chars.next() {
        let at = *i + off;
        match c {
            '"' => {
                flush(&mut bytes, &mut out, at)?;
                *i = at + 1;
                return Ok(out);
            }
            '\n' => return Err(OttlError::at(text, at, "newline in string")),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                let hex = |chars: &mut std::str::CharIndices<'_>, n: usize| -> Result<u32, OttlError> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        match chars.next().and_then(|(_, d)| d.to_digit(16)) {
                            Some(d) => v = v * 16 + d,
                            None => return Err(OttlError::at(text, at, "invalid escape in string")),
                        }
                    }
                    Ok(v)
                };
                match e {
                    'x' => {
                        let v = hex(&mut chars, 2)?;
                        bytes.push(v as u8);
                        continue;
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match chars.next().and_then(|(_, d)| d.to_digit(8)) {
                                Some(d) => v = v * 8 + d,
                                None => return Err(OttlError::at(text, at, "invalid escape in string")),
                            }
                        }
                        if v > 255 {
                            return Err(OttlError::at(text, at, "invalid escape in string"));
                        }
                        bytes.push(v as u8);
                        continue;
                    }
                    _ => {}
                }
                flush(&mut bytes, &mut out, at)?;
                let ch = match e {
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    '\\' => '\\',
                    '"' => '"',
                    'u' => char::from_u32(hex(&mut chars, 4)?)
                        .ok_or_else(|| OttlError::at(text, at, "invalid escape in string"))?,
                    'U' => char::from_u32(hex(&mut chars, 8)?)
                        .ok_or_else(|| OttlError::at(text, at, "invalid escape in string"))?,
                    other => {
                        return Err(OttlError::at(
                            text,
                            at,
                            format!("invalid escape `\\{other}` in string (write `\\\\` for a backslash)"),
                        ))
                    }
                };
                out.push(ch);
            }
            c => {
                flush(&mut bytes, &mut out, at)?;
                out.push(c);
            }
        }
    }
    Err(OttlError::at(text, start, "unterminated string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_operators_numbers_strings() {
        assert_eq!(
            toks(r#"attributes["k"] >= -1.5e3 and 0x0a0B != "a\"b\\n\u00e9""#),
            vec![
                Tok::Ident("attributes".into()),
                Tok::LBracket,
                Tok::Str("k".into()),
                Tok::RBracket,
                Tok::Cmp(CmpOp::Ge),
                Tok::Minus,
                Tok::Float(1.5e3),
                Tok::Ident("and".into()),
                Tok::Bytes(vec![10, 11]),
                Tok::Cmp(CmpOp::Ne),
                Tok::Str("a\"b\\n\u{e9}".into()),
                Tok::Eof,
            ]
        );
        assert_eq!(toks(".5"), vec![Tok::Float(0.5), Tok::Eof]);
        assert_eq!(toks(r#""\x41\101""#), vec![Tok::Str("AA".into()), Tok::Eof]);
    }

    #[test]
    fn lexer_errors_have_positions() {
        let e = lex(r#"name == "a\d""#).unwrap_err();
        assert_eq!(e.column, 11, "{e:?}");
        assert!(e.message.contains("invalid escape"), "{e:?}");
        assert_eq!(lex(r#"name == "abc"#).unwrap_err().column, 9);
        assert_eq!(lex("name == 0x1").unwrap_err().column, 9);
        assert_eq!(lex("kind == 99999999999999999999").unwrap_err().column, 9);
        assert_eq!(lex("name ~ 1").unwrap_err().column, 6);
        assert_eq!(lex("név ~ 1").unwrap_err().column, 2, "columns count characters");
        assert!(lex(&"a".repeat(MAX_CONDITION_LEN + 1)).is_err());
    }
}
