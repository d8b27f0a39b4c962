//! Strict normalisation of gateway request paths (`/gw/{service}/{rest}`) and query strings.
//!
//! Steward authorises exactly the bytes it forwards. A path that different servers could
//! read differently (dot segments, encoded slashes, double encoding, backslashes, empty
//! segments, `;params`, control characters, lookalike Unicode) is rejected with a
//! [`PathError`], never rewritten: rewriting after authorisation is how gateways get
//! bypassed. The lead maps every [`PathError`] to `400 Bad Request`.
//!
//! Accepted bytes in a path segment are RFC 3986 `pchar` minus `;`: unreserved characters,
//! `!$&'()*+,=:@`, and percent-encodings of anything except `.`, `/`, `\`, `;`, `%`
//! followed by hex (double encoding) and control characters.

use std::fmt;

/// Prefix of every gateway path.
pub const GATEWAY_PREFIX: &str = "/gw/";

/// Longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Most segments accepted after the service name.
pub const MAX_SEGMENTS: usize = 128;

/// Longest query string accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// Longest service name accepted.
pub const MAX_SERVICE_NAME: usize = 64;

/// Why a path or query string was rejected. Every variant means `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/gw/`.
    #[error("path does not start with `/gw/`")]
    NotGatewayPath,
    /// The service name is missing or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid service name `{0}`")]
    InvalidServiceName(String),
    /// The path or query string is longer than the limit.
    #[error("path or query is longer than {0} bytes")]
    TooLong(usize),
    /// The path has more segments than the limit.
    #[error("path has more than {0} segments")]
    TooManySegments(usize),
    /// A `.` or `..` segment.
    #[error("dot segment `{0}` is not allowed")]
    DotSegment(String),
    /// A percent-encoded dot (`%2e`).
    #[error("percent-encoded dot in segment `{0}`")]
    EncodedDot(String),
    /// A percent-encoded slash (`%2f`).
    #[error("percent-encoded slash in segment `{0}`")]
    EncodedSlash(String),
    /// A `%25` that decodes to another percent-encoding (`%252f`).
    #[error("double percent-encoding in `{0}`")]
    DoubleEncoding(String),
    /// A backslash, raw or encoded (`%5c`).
    #[error("backslash in segment `{0}`")]
    Backslash(String),
    /// An empty segment (`//`).
    #[error("empty path segment")]
    EmptySegment,
    /// A `;` in a segment (matrix parameters), raw or encoded.
    #[error("`;` in segment `{0}`")]
    Semicolon(String),
    /// A control character (raw or encoded), or an encoded NUL in a query.
    #[error("control character in `{0}`")]
    ControlCharacter(String),
    /// `%` not followed by two hex digits.
    #[error("invalid percent-encoding in `{0}`")]
    InvalidPercentEncoding(String),
    /// A raw byte outside printable ASCII, or a character that is not allowed unencoded.
    #[error("character not allowed unencoded in `{0}`")]
    DisallowedCharacter(String),
    /// Decoded bytes are not valid UTF-8 (including overlong encodings such as `%c0%ae`).
    #[error("percent-encoded bytes are not valid utf-8 in `{0}`")]
    InvalidUtf8(String),
    /// A Unicode character that some servers fold into `.`, `/` or `\`.
    #[error("lookalike of `.`, `/` or `\\` in segment `{0}`")]
    LookalikeCharacter(String),
}

/// A gateway path that passed every check.
///
/// INVARIANT: `raw_rest` is byte-for-byte what the client sent after `/gw/{service}`, and
/// `segments` is its unambiguous decoding, so authorising `segments` authorises `raw_rest`.
#[derive(Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// The service name, as sent (only `[A-Za-z0-9._-]`).
    pub service: String,
    /// The decoded segments after the service. Empty for `/gw/svc` and `/gw/svc/`.
    /// A trailing slash (`/gw/svc/a/`) gives a final empty segment: `["a", ""]`.
    pub segments: Vec<String>,
    /// The exact bytes to append to the upstream base URL: empty, or starting with `/`.
    pub raw_rest: String,
}

impl fmt::Debug for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NormalizedPath")
            .field("service", &self.service)
            .field("segments", &self.segments)
            .field("raw_rest", &self.raw_rest)
            .finish()
    }
}

impl NormalizedPath {
    /// Normalises a request path (without the query string) of the form `/gw/{service}/{rest}`.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if path.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(MAX_PATH_BYTES));
        }
        let after = path
            .strip_prefix(GATEWAY_PREFIX)
            .ok_or(PathError::NotGatewayPath)?;
        let (service, raw_rest) = match after.find('/') {
            Some(i) => after.split_at(i),
            None => (after, ""),
        };
        validate_service_name(service)?;
        let segments = parse_rest(raw_rest)?;
        Ok(Self {
            service: service.to_owned(),
            segments,
            raw_rest: raw_rest.to_owned(),
        })
    }

    /// Builds a path from a service and the rest (e.g. `/repos/a/b`), with the same checks.
    pub fn from_parts(service: &str, raw_rest: &str) -> Result<Self, PathError> {
        if raw_rest.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(MAX_PATH_BYTES));
        }
        validate_service_name(service)?;
        if !raw_rest.is_empty() && !raw_rest.starts_with('/') {
            return Err(PathError::NotGatewayPath);
        }
        let segments = parse_rest(raw_rest)?;
        Ok(Self {
            service: service.to_owned(),
            segments,
            raw_rest: raw_rest.to_owned(),
        })
    }
}

fn validate_service_name(service: &str) -> Result<(), PathError> {
    let ok = !service.is_empty()
        && service.len() <= MAX_SERVICE_NAME
        && service != "."
        && service != ".."
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PathError::InvalidServiceName(truncate_for_error(service)))
    }
}

/// Parses the part after the service name: empty, or `/seg/seg...`.
fn parse_rest(raw_rest: &str) -> Result<Vec<String>, PathError> {
    let Some(body) = raw_rest.strip_prefix('/') else {
        return if raw_rest.is_empty() {
            Ok(Vec::new())
        } else {
            Err(PathError::NotGatewayPath)
        };
    };
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let raw_segments: Vec<&str> = body.split('/').collect();
    if raw_segments.len() > MAX_SEGMENTS {
        return Err(PathError::TooManySegments(MAX_SEGMENTS));
    }
    let last = raw_segments.len().saturating_sub(1);
    let mut segments = Vec::with_capacity(raw_segments.len());
    for (i, raw) in raw_segments.iter().enumerate() {
        if raw.is_empty() {
            // A trailing slash is kept as a final empty segment; any other empty one is `//`.
            if i == last {
                segments.push(String::new());
                continue;
            }
            return Err(PathError::EmptySegment);
        }
        segments.push(decode_segment(raw)?);
    }
    Ok(segments)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` sequences, failing on any `%` not followed by two hex digits.
fn percent_decode_strict(raw: &str) -> Result<Vec<u8>, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_val);
            let lo = bytes.get(i + 2).copied().and_then(hex_val);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi * 16 + lo),
                _ => return Err(PathError::InvalidPercentEncoding(truncate_for_error(raw))),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// True if `bytes` contains `%` followed by two hex digits.
fn contains_percent_hex(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| match w {
        [b'%', a, b] => hex_val(*a).is_some() && hex_val(*b).is_some(),
        _ => false,
    })
}

/// Characters that NFKC or "best fit" mappings on some servers turn into `.`, `/` or `\`.
const LOOKALIKES: &[char] = &[
    '\u{2024}', // ONE DOT LEADER -> .
    '\u{2025}', // TWO DOT LEADER -> ..
    '\u{2026}', // HORIZONTAL ELLIPSIS -> ...
    '\u{FE52}', // SMALL FULL STOP
    '\u{FF0E}', // FULLWIDTH FULL STOP
    '\u{3002}', // IDEOGRAPHIC FULL STOP
    '\u{FF61}', // HALFWIDTH IDEOGRAPHIC FULL STOP
    '\u{FF0F}', // FULLWIDTH SOLIDUS
    '\u{2215}', // DIVISION SLASH
    '\u{2044}', // FRACTION SLASH
    '\u{29F8}', // BIG SOLIDUS
    '\u{FE68}', // SMALL REVERSE SOLIDUS
    '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS
    '\u{2216}', // SET MINUS
    '\u{29F9}', // BIG REVERSE SOLIDUS
];

/// Validates one raw segment and returns its decoded form.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    let shown = || truncate_for_error(raw);
    if raw == "." || raw == ".." {
        return Err(PathError::DotSegment(raw.to_owned()));
    }
    for b in raw.bytes() {
        match b {
            b'\\' => return Err(PathError::Backslash(shown())),
            b';' => return Err(PathError::Semicolon(shown())),
            0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter(shown())),
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
            | b',' | b'=' | b':' | b'@' | b'%' => {}
            _ => return Err(PathError::DisallowedCharacter(shown())),
        }
    }
    let decoded = percent_decode_strict(raw)?;
    if raw.contains('%') {
        for &b in &decoded {
            match b {
                b'.' => return Err(PathError::EncodedDot(shown())),
                b'/' => return Err(PathError::EncodedSlash(shown())),
                b'\\' => return Err(PathError::Backslash(shown())),
                b';' => return Err(PathError::Semicolon(shown())),
                0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter(shown())),
                _ => {}
            }
        }
        if contains_percent_hex(&decoded) {
            return Err(PathError::DoubleEncoding(shown()));
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8(shown()))?;
    if text.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter(shown()));
    }
    if text.chars().any(|c| LOOKALIKES.contains(&c)) {
        return Err(PathError::LookalikeCharacter(shown()));
    }
    Ok(text)
}

/// Checks that a query string (without the leading `?`) is well formed.
///
/// Rejected: control characters, raw non-ASCII bytes, raw space and `#`, invalid
/// percent-encoding, an encoded NUL (`%00`), and overlong input. Encoded newlines and
/// tabs are allowed: they are ordinary data in a message text.
pub fn check_query(query: &str) -> Result<(), PathError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(PathError::TooLong(MAX_QUERY_BYTES));
    }
    let shown = || truncate_for_error(query);
    for b in query.bytes() {
        match b {
            0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter(shown())),
            b' ' | b'#' | 0x80..=0xff => return Err(PathError::DisallowedCharacter(shown())),
            _ => {}
        }
    }
    let decoded = percent_decode_strict(query)?;
    if decoded.contains(&0) {
        return Err(PathError::ControlCharacter(shown()));
    }
    Ok(())
}

/// Splits a well-formed query string into decoded `(key, value)` pairs, in order.
///
/// Uses `application/x-www-form-urlencoded` rules (`+` is a space), as most servers do.
/// Empty pairs (`a=1&&b=2`) are skipped; a key without `=` has an empty value. Decoded
/// text must be UTF-8. Duplicate keys are kept; the caller decides what they mean.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, PathError> {
    check_query(query)?;
    let mut pairs = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((form_decode(key)?, form_decode(value)?));
    }
    Ok(pairs)
}

/// Decodes one form-encoded component: `+` is a space, then strict percent-decoding.
pub fn form_decode(component: &str) -> Result<String, PathError> {
    let spaced = component.replace('+', " ");
    let bytes = percent_decode_strict(&spaced)?;
    String::from_utf8(bytes).map_err(|_| PathError::InvalidUtf8(truncate_for_error(component)))
}

/// Shortens user input for error messages so a huge path cannot bloat logs.
fn truncate_for_error(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> NormalizedPath {
        NormalizedPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn err(path: &str) -> PathError {
        match NormalizedPath::parse(path) {
            Ok(p) => panic!("{path} was accepted as {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_paths_split_into_service_segments_and_raw_rest() {
        let p = ok("/gw/github/repos/octo/hello-world/issues");
        assert_eq!(p.service, "github");
        assert_eq!(p.segments, ["repos", "octo", "hello-world", "issues"]);
        assert_eq!(p.raw_rest, "/repos/octo/hello-world/issues");

        let root = ok("/gw/github");
        assert!(root.segments.is_empty());
        assert_eq!(root.raw_rest, "");
        let slash = ok("/gw/github/");
        assert!(slash.segments.is_empty());
        assert_eq!(slash.raw_rest, "/");

        let trailing = ok("/gw/api/items/");
        assert_eq!(trailing.segments, ["items", ""]);
        assert_eq!(trailing.raw_rest, "/items/");
    }

    #[test]
    fn percent_encoded_data_is_decoded_but_forwarded_verbatim() {
        let p = ok("/gw/svc/files/hello%20world/caf%C3%A9/a%3Fb%23c/x:y@z/a+b");
        assert_eq!(
            p.segments,
            ["files", "hello world", "café", "a?b#c", "x:y@z", "a+b"]
        );
        assert_eq!(
            p.raw_rest,
            "/files/hello%20world/caf%C3%A9/a%3Fb%23c/x:y@z/a+b"
        );
        // A percent sign as data (`%25` not followed by hex) is fine.
        assert_eq!(ok("/gw/svc/100%25").segments, ["100%"]);
        assert_eq!(ok("/gw/svc/100%25zz").segments, ["100%zz"]);
        // Dots inside a segment are ordinary.
        assert_eq!(
            ok("/gw/svc/v1.2/file.tar.gz/...").segments,
            ["v1.2", "file.tar.gz", "..."]
        );
    }

    #[test]
    fn dot_segments_are_rejected_raw_and_encoded() {
        for p in ["/gw/svc/..", "/gw/svc/a/../b", "/gw/svc/./a", "/gw/svc/a/."] {
            assert!(matches!(err(p), PathError::DotSegment(_)), "{p}");
        }
        for p in [
            "/gw/svc/%2e%2e/admin",
            "/gw/svc/%2E%2E/admin",
            "/gw/svc/.%2e/admin",
            "/gw/svc/%2e./admin",
            "/gw/svc/%2e",
            "/gw/svc/a%2eb",
        ] {
            assert!(matches!(err(p), PathError::EncodedDot(_)), "{p}");
        }
    }

    #[test]
    fn encoded_slashes_and_double_encoding_are_rejected() {
        for p in ["/gw/svc/a%2Fb", "/gw/svc/a%2fb", "/gw/svc/%2F..%2Fadmin"] {
            assert!(matches!(err(p), PathError::EncodedSlash(_)), "{p}");
        }
        for p in [
            "/gw/svc/a%252Fb",
            "/gw/svc/a%252fb",
            "/gw/svc/%252e%252e",
            "/gw/svc/%2541",
            "/gw/svc/%25%32%46",
            "/gw/svc/%255c",
        ] {
            assert!(matches!(err(p), PathError::DoubleEncoding(_)), "{p}");
        }
    }

    #[test]
    fn backslashes_semicolons_and_empty_segments_are_rejected() {
        for p in [
            "/gw/svc/a\\b",
            "/gw/svc/..\\admin",
            "/gw/svc/a%5Cb",
            "/gw/svc/a%5cb",
        ] {
            assert!(matches!(err(p), PathError::Backslash(_)), "{p}");
        }
        for p in [
            "/gw/svc/a;b",
            "/gw/svc/admin;jsessionid=1",
            "/gw/svc/..;/admin",
            "/gw/svc/a%3Bb",
            "/gw/svc/%3b",
        ] {
            let e = err(p);
            assert!(
                matches!(e, PathError::Semicolon(_) | PathError::DotSegment(_)),
                "{p}: {e:?}"
            );
        }
        for p in ["/gw/svc//a", "/gw/svc/a//b", "/gw/svc/a///"] {
            assert_eq!(err(p), PathError::EmptySegment, "{p}");
        }
    }

    #[test]
    fn control_non_ascii_and_bad_encoding_are_rejected() {
        for p in [
            "/gw/svc/a%00b",
            "/gw/svc/a%0Ab",
            "/gw/svc/a%0d%0aHost:x",
            "/gw/svc/a%7f",
            "/gw/svc/a\u{0}b",
            "/gw/svc/a\tb",
            "/gw/svc/a\nb",
            "/gw/svc/a%C2%85b",
        ] {
            assert!(matches!(err(p), PathError::ControlCharacter(_)), "{p}");
        }
        for p in [
            "/gw/svc/café",
            "/gw/svc/a b",
            "/gw/svc/a\"b",
            "/gw/svc/a<b",
            "/gw/svc/{x}",
            "/gw/svc/a|b",
            "/gw/svc/a?b",
            "/gw/svc/a#b",
        ] {
            assert!(matches!(err(p), PathError::DisallowedCharacter(_)), "{p}");
        }
        for p in [
            "/gw/svc/a%",
            "/gw/svc/a%2",
            "/gw/svc/a%zz",
            "/gw/svc/%g0",
            "/gw/svc/%%32%65",
        ] {
            assert!(
                matches!(err(p), PathError::InvalidPercentEncoding(_)),
                "{p}"
            );
        }
        // Overlong UTF-8 for `.` and `/`, and a lone continuation byte.
        for p in [
            "/gw/svc/%c0%ae%c0%ae",
            "/gw/svc/%c0%af",
            "/gw/svc/%80",
            "/gw/svc/%ff",
        ] {
            assert!(matches!(err(p), PathError::InvalidUtf8(_)), "{p}");
        }
        for p in [
            "/gw/svc/%EF%BC%8F",
            "/gw/svc/%EF%BC%8E%EF%BC%8E",
            "/gw/svc/a%E2%88%95b",
            "/gw/svc/%E2%80%A5",
        ] {
            assert!(matches!(err(p), PathError::LookalikeCharacter(_)), "{p}");
        }
    }

    #[test]
    fn service_name_and_prefix_are_strict() {
        assert_eq!(err("/api/x"), PathError::NotGatewayPath);
        assert_eq!(err("/gw"), PathError::NotGatewayPath);
        assert_eq!(err("/GW/svc/x"), PathError::NotGatewayPath);
        for p in [
            "/gw/",
            "/gw//x",
            "/gw/../x",
            "/gw/./x",
            "/gw/gh%69thub/x",
            "/gw/a;b/x",
            "/gw/a\\b/x",
        ] {
            assert!(matches!(err(p), PathError::InvalidServiceName(_)), "{p}");
        }
        assert_eq!(ok("/gw/my-svc_2.v1/x").service, "my-svc_2.v1");
    }

    #[test]
    fn limits_are_enforced() {
        let long = format!("/gw/svc/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(err(&long), PathError::TooLong(MAX_PATH_BYTES));
        let many = format!("/gw/svc{}", "/a".repeat(MAX_SEGMENTS + 1));
        assert_eq!(err(&many), PathError::TooManySegments(MAX_SEGMENTS));
        let at_limit = format!("/gw/svc{}", "/a".repeat(MAX_SEGMENTS));
        assert_eq!(ok(&at_limit).segments.len(), MAX_SEGMENTS);
    }

    #[test]
    fn from_parts_applies_the_same_checks() {
        let p = NormalizedPath::from_parts("github", "/repos/a/b").unwrap();
        assert_eq!(p.segments, ["repos", "a", "b"]);
        assert!(NormalizedPath::from_parts("github", "repos").is_err());
        assert!(NormalizedPath::from_parts("github", "/a/%2e%2e").is_err());
        assert!(NormalizedPath::from_parts("git/hub", "/a").is_err());
    }

    #[test]
    fn error_messages_truncate_user_input() {
        let e = err(&format!("/gw/svc/{}%2f", "a".repeat(500)));
        assert!(e.to_string().len() < 150, "{e}");
    }

    #[test]
    fn query_strings_are_checked() {
        for q in [
            "",
            "a=1&b=2",
            "text=hello%0Aworld",
            "expand[]=x&q=a+b",
            "a=%25",
            "flag",
            "a=1;b=2",
        ] {
            assert_eq!(check_query(q), Ok(()), "{q}");
        }
        assert!(matches!(
            check_query("a=%00"),
            Err(PathError::ControlCharacter(_))
        ));
        assert!(matches!(
            check_query("a=\n"),
            Err(PathError::ControlCharacter(_))
        ));
        assert!(matches!(
            check_query("a=b c"),
            Err(PathError::DisallowedCharacter(_))
        ));
        assert!(matches!(
            check_query("a=b#c"),
            Err(PathError::DisallowedCharacter(_))
        ));
        assert!(matches!(
            check_query("a=é"),
            Err(PathError::DisallowedCharacter(_))
        ));
        assert!(matches!(
            check_query("a=%zz"),
            Err(PathError::InvalidPercentEncoding(_))
        ));
        assert!(matches!(
            check_query("a=%4"),
            Err(PathError::InvalidPercentEncoding(_))
        ));
        let long = "a".repeat(MAX_QUERY_BYTES + 1);
        assert_eq!(check_query(&long), Err(PathError::TooLong(MAX_QUERY_BYTES)));
    }

    #[test]
    fn query_pairs_decode_form_style() {
        let pairs = parse_query("state=open&labels=bug&labels=ui&q=a+b%2Bc&flag&&x=").unwrap();
        let want: Vec<(String, String)> = [
            ("state", "open"),
            ("labels", "bug"),
            ("labels", "ui"),
            ("q", "a b+c"),
            ("flag", ""),
            ("x", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(pairs, want);
        assert!(matches!(
            parse_query("a=%ff"),
            Err(PathError::InvalidUtf8(_))
        ));
    }
}
