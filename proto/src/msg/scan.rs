//! Small lexical helpers shared by the message and typed-header parsers (RFC 3261 §25.1).

use super::error::ParseError;

/// A parameter list as written: names and optional values, in order.
pub(crate) type Params = Vec<(String, Option<String>)>;

/// True for characters of the RFC 3261 `token` rule.
pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True when `s` is a non-empty RFC 3261 `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// True for space and horizontal tab.
pub(crate) fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Skips spaces and tabs.
pub(crate) fn skip_ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// Splits off the longest prefix of token characters.
pub(crate) fn take_token(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(|&c| is_token_char(c)).count();
    s.split_at(n)
}

/// Parses a quoted string at the start of `s` (which must begin with `"`).
///
/// Returns the raw text including the quotes, the unescaped content and the rest of `s`.
pub(crate) fn take_quoted(s: &str) -> Result<(&str, String, &str), String> {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, '"')) => {}
        _ => return Err("expected a quoted string".to_string()),
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let end = i + 1;
                return Ok((&s[..end], out, &s[end..]));
            }
            '\\' => match chars.next() {
                Some((_, '\r' | '\n')) | None => {
                    return Err("bad escape in quoted string".to_string());
                }
                Some((_, e)) => out.push(e),
            },
            '\r' | '\n' => return Err("line break in quoted string".to_string()),
            _ => out.push(c),
        }
    }
    Err("unterminated quoted string".to_string())
}

/// Quotes `s` as an RFC 3261 quoted-string, escaping `"` and `\`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits `s` on top-level `sep` characters: separators inside quoted strings or `<...>` do not
/// count. Pieces are trimmed; empty pieces are dropped.
pub(crate) fn split_top_level(s: &str, sep: u8) -> Vec<&str> {
    top_level(s, sep).collect()
}

/// The pieces of [`split_top_level`] one by one, without collecting them.
pub(crate) fn top_level(s: &str, sep: u8) -> TopLevel<'_> {
    TopLevel { rest: Some(s), sep }
}

/// Iterator over the trimmed, non-empty top-level pieces of a header value.
pub(crate) struct TopLevel<'a> {
    /// The text not yet split; `None` once the last piece was returned.
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for TopLevel<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let s = self.rest?;
            let (piece, rest) = match find_top_level(s, self.sep) {
                Some(i) => (&s[..i], Some(&s[i + 1..])),
                None => (s, None),
            };
            self.rest = rest;
            let piece = piece.trim_matches([' ', '\t']);
            if !piece.is_empty() {
                return Some(piece);
            }
        }
    }
}

/// Position of the first top-level `sep` (outside quotes and `<...>`), if any.
pub(crate) fn find_top_level(s: &str, sep: u8) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut in_quote = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_quote {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_quote = false;
            }
        } else if c == b'"' {
            in_quote = true;
        } else if c == b'<' {
            in_angle = true;
        } else if c == b'>' {
            in_angle = false;
        } else if c == sep && !in_angle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// True for characters allowed unquoted in a header parameter value: `token`, plus what a
/// `host` may hold (`:` and IPv6 brackets).
fn is_param_value_char(c: u8) -> bool {
    is_token_char(c) || matches!(c, b':' | b'[' | b']')
}

/// Parses `*( SEMI generic-param )` (header parameters, with optional whitespace around `;` and
/// `=`). Quoted values are kept with their quotes.
#[cfg(test)]
pub(crate) fn parse_header_params(s: &str) -> Result<Params, String> {
    let mut params = Params::new();
    for_each_header_param(s, |name, value| {
        params.push((name.to_string(), value.map(str::to_string)));
    })?;
    Ok(params)
}

/// Walks `*( SEMI generic-param )` like [`parse_header_params`] (same grammar, same errors),
/// handing each parameter to `f` as borrowed text instead of building owned strings.
pub(crate) fn for_each_header_param<'a>(
    mut s: &'a str,
    mut f: impl FnMut(&'a str, Option<&'a str>),
) -> Result<(), String> {
    loop {
        s = skip_ws(s);
        if s.is_empty() {
            return Ok(());
        }
        s = s
            .strip_prefix(';')
            .ok_or_else(|| format!("unexpected {:?} where ';' expected", first_char(s)))?;
        s = skip_ws(s);
        let (name, rest) = take_token(s);
        if name.is_empty() {
            return Err("empty parameter name".to_string());
        }
        s = skip_ws(rest);
        if let Some(rest) = s.strip_prefix('=') {
            s = skip_ws(rest);
            let value;
            if s.starts_with('"') {
                let (raw, rest) = skip_quoted(s)?;
                value = raw;
                s = rest;
            } else {
                let n = s.bytes().take_while(|&c| is_param_value_char(c)).count();
                if n == 0 {
                    return Err(format!("empty value for parameter {name}"));
                }
                let (v, rest) = s.split_at(n);
                value = v;
                s = rest;
            }
            f(name, Some(value));
        } else {
            f(name, None);
        }
    }
}

/// Checks a quoted string at the start of `s` like [`take_quoted`] (same errors) without
/// unescaping it: returns the raw text including the quotes and the rest of `s`.
pub(crate) fn skip_quoted(s: &str) -> Result<(&str, &str), String> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return Err("expected a quoted string".to_string());
    }
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => return Ok((&s[..i + 1], &s[i + 1..])),
            // Skipping one byte after a backslash skips a whole escaped character: the
            // continuation bytes of a multi-byte character are never a quote, a backslash, CR or LF.
            b'\\' => match b.get(i + 1) {
                Some(b'\r' | b'\n') | None => {
                    return Err("bad escape in quoted string".to_string());
                }
                Some(_) => i += 2,
            },
            b'\r' | b'\n' => return Err("line break in quoted string".to_string()),
            _ => i += 1,
        }
    }
    Err("unterminated quoted string".to_string())
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or(' ')
}

/// Prints parameters as `;name=value` in order.
pub(crate) fn write_params(f: &mut impl std::fmt::Write, params: &Params) -> std::fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

/// Finds a parameter by case-insensitive name.
pub(crate) fn find_param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// Replaces the first parameter of that name (dropping later duplicates) or appends it.
pub(crate) fn set_param(params: &mut Params, name: &str, value: Option<&str>) {
    let value = value.map(str::to_string);
    match params
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(i) => {
            params[i].1 = value;
            let mut seen = 0usize;
            params.retain(|(n, _)| {
                if n.eq_ignore_ascii_case(name) {
                    seen += 1;
                    seen == 1
                } else {
                    true
                }
            });
        }
        None => params.push((name.to_string(), value)),
    }
}

/// Removes every parameter of that name.
pub(crate) fn remove_param(params: &mut Params, name: &str) {
    params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
}

/// Parses a decimal number of up to `u64` range made only of digits.
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are allowed (RFC 4475 wsinv); strip them before the range check.
    let t = s.trim_start_matches('0');
    if t.len() > 19 {
        return None;
    }
    if t.is_empty() {
        return Some(0);
    }
    t.parse().ok()
}

/// True when `s` consists only of digits (any length).
pub(crate) fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// Decodes `%HH` escapes.
pub(crate) fn unescape_bytes(s: &str) -> Result<Vec<u8>, ParseError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).and_then(|c| (*c as char).to_digit(16));
            let lo = b.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => return Err(ParseError::Uri(format!("bad escape in {s:?}"))),
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Checks that `%` escapes in `s` are well formed and every other byte satisfies `allowed`.
pub(crate) fn check_escaped(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else if allowed(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// RFC 3261 `unreserved`.
pub(crate) fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_angles() {
        let v = split_top_level(r#""a, \"b" <sip:x@y;p=1,2>, sip:z , "#, b',');
        assert_eq!(v, vec![r#""a, \"b" <sip:x@y;p=1,2>"#, "sip:z"]);
    }

    #[test]
    fn quoted_roundtrip() {
        let (raw, un, rest) = take_quoted(r#""J \"R\" \\" x"#).unwrap();
        assert_eq!(raw, r#""J \"R\" \\""#);
        assert_eq!(un, r#"J "R" \"#);
        assert_eq!(rest, " x");
        assert_eq!(quote(&un), raw);
        assert!(take_quoted("\"abc").is_err());
    }

    #[test]
    fn header_params() {
        let p = parse_header_params(" ;  tag = 98asjd8 ;lr; x=\"a;b\"").unwrap();
        assert_eq!(
            p,
            vec![
                ("tag".to_string(), Some("98asjd8".to_string())),
                ("lr".to_string(), None),
                ("x".to_string(), Some("\"a;b\"".to_string())),
            ]
        );
        assert!(parse_header_params(";=x").is_err());
        assert!(parse_header_params("x").is_err());
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits("0009"), Some(9));
        assert_eq!(parse_digits("-1"), None);
        assert_eq!(parse_digits("36893488147419103232"), None);
        assert_eq!(unescape_bytes("a%41%00").unwrap(), b"aA\0");
        assert!(unescape_bytes("%4").is_err());
    }
}
