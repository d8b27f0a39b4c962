//! The matcher: an Aho-Corasick keyword prefilter selects rules, then per-rule regexes run
//! on the buffer (provider rules) or on candidate lines only (generic assignments).

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use regex::bytes::{Regex, RegexBuilder};

use crate::ScanError;
use crate::checksum::{
    B64_LENIENT, crc32_base62_suffix_ok, jwt_ok, private_key_ok, pypi_ok, shannon_entropy,
    steward_key_ok,
};
use crate::fingerprint::{fingerprint, redact};
use crate::report::Finding;
use crate::rules::{Check, Confidence, RULES, Rule};

/// Inline marker that suppresses findings on its line.
pub const ALLOW_MARKER: &[u8] = b"steward:allow";

/// Documented example credentials that must never be reported.
const DOCUMENTED_EXAMPLES: &[&[u8]] = &[
    b"AKIAIOSFODNN7EXAMPLE",
    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    b"je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    b"AKIAI44QH8DHBEXAMPLE",
];

/// Words that mark a value as a placeholder rather than a credential.
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "your",
    "xxxx",
    "****",
    "dummy",
    "redacted",
    "sample",
    "todo",
    "replace",
    "fake",
    "insert",
    "enter_",
    "<",
    ">",
    "undefined",
    "secret",
    "password",
    "passwd",
    "token",
    "mock",
    "test",
    "demo",
    "default",
    "hunter2",
    "letmein",
    "qwerty",
    "12345",
    "abcdef",
    "notreal",
    "not_real",
    "not-a-",
];

/// Values that are placeholders when they make up the whole value.
const PLACEHOLDER_EXACT: &[&str] = &[
    "none",
    "null",
    "nil",
    "true",
    "false",
    "admin",
    "root",
    "guest",
    "user",
    "pass",
    "string",
    "required",
    "optional",
    "empty",
    "postgres",
    "mysql",
    "redis",
    "rabbitmq",
    "mongo",
    "dev",
    "local",
    "localhost",
    "foo",
    "bar",
    "baz",
    "secret",
    "password",
    "changeit",
];

/// Key words that make a generic name refer to something other than a secret value.
const NON_SECRET_KEY_TOKENS: &[&str] = &[
    "hash",
    "hashed",
    "digest",
    "checksum",
    "sha",
    "sha1",
    "sha256",
    "sha512",
    "md5",
    "integrity",
    "fingerprint",
    "salt",
    "url",
    "uri",
    "endpoint",
    "type",
    "expiry",
    "expires",
    "expiration",
    "ttl",
    "length",
    "len",
    "count",
    "max",
    "min",
    "limit",
    "file",
    "path",
    "name",
    "id",
    "header",
    "field",
    "prefix",
    "format",
    "mode",
    "policy",
    "enabled",
    "required",
    "usage",
    "timeout",
    "version",
    "public",
    "pub",
    "ref",
    "arn",
    "label",
    "description",
    "hint",
    "regex",
    "pattern",
    "placeholder",
    "example",
    "size",
    "env",
    "variable",
    "var",
    "key_id",
    "kid",
    "algorithm",
    "alg",
    "scope",
    "scopes",
    "store",
    "manager",
    "provider",
    "rotation",
    "location",
    "dir",
    "sample",
    "test",
    "mock",
];

/// A compiled rule.
struct CompiledRule {
    rule: Rule,
    regex: Regex,
}

/// A validated match, still holding the location of the raw secret in the buffer.
#[derive(Debug, Clone)]
struct RawMatch {
    rule: usize,
    secret: Range<usize>,
    confidence: Confidence,
    /// Bytes of the secret when it differs from `secret` in the buffer (decoded values).
    decoded: Option<Vec<u8>>,
}

/// The secret detector. Build once, share across threads (`Sync`).
pub struct Scanner {
    rules: Vec<CompiledRule>,
    prefilter: AhoCorasick,
    /// For each prefilter pattern, the rules it enables.
    keyword_rules: Vec<Vec<usize>>,
    generic: Option<usize>,
    aws_key_id: Option<usize>,
    aws_secret: Option<usize>,
    aws_candidate: Regex,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

fn compile(id: &str, pattern: &str) -> Result<Regex, ScanError> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .map_err(|e| ScanError::Rule {
            rule: id.to_owned(),
            message: e.to_string(),
        })
}

impl Scanner {
    /// Compiles the built-in rule table.
    pub fn new() -> Result<Self, ScanError> {
        let mut rules = Vec::with_capacity(RULES.len());
        let mut keywords: Vec<&'static str> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        for (index, rule) in RULES.iter().enumerate() {
            rules.push(CompiledRule {
                rule: *rule,
                regex: compile(rule.id, rule.pattern)?,
            });
            for keyword in rule.keywords {
                match keywords.iter().position(|k| k == keyword) {
                    Some(pos) => {
                        if let Some(list) = keyword_rules.get_mut(pos) {
                            list.push(index);
                        }
                    }
                    None => {
                        keywords.push(keyword);
                        keyword_rules.push(vec![index]);
                    }
                }
            }
        }
        let prefilter = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            .map_err(|e| ScanError::Rule {
                rule: "prefilter".into(),
                message: e.to_string(),
            })?;
        let position = |id: &str| RULES.iter().position(|r| r.id == id);
        Ok(Self {
            rules,
            prefilter,
            keyword_rules,
            generic: RULES.iter().position(|r| r.check == Check::Generic),
            aws_key_id: position("aws-access-key-id"),
            aws_secret: position("aws-secret-access-key"),
            aws_candidate: compile(
                "aws-secret-candidate",
                r"(?:^|[^A-Za-z0-9/+=])(?P<s>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
            )?,
        })
    }

    /// Number of rules in the table.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Scans one buffer and returns its findings (lines counted from 1 in `data`).
    pub fn scan(&self, path: &str, data: &[u8]) -> Vec<Finding> {
        let matches = self.detect(path, data);
        if matches.is_empty() {
            return Vec::new();
        }
        let lines = LineIndex::new(data);
        let mut findings = Vec::with_capacity(matches.len());
        for found in matches {
            let Some(rule) = self.rules.get(found.rule).map(|r| r.rule) else {
                continue;
            };
            let (line, column) = lines.position(found.secret.start);
            if lines.line_has_allow(data, line) {
                continue;
            }
            let (end_line, _) =
                lines.position(found.secret.end.saturating_sub(1).max(found.secret.start));
            let secret: &[u8] = match &found.decoded {
                Some(decoded) => decoded,
                None => data.get(found.secret.clone()).unwrap_or_default(),
            };
            let secret = normalise_secret(secret);
            findings.push(Finding {
                path: path.to_owned(),
                line,
                column,
                end_line,
                commit: None,
                rule_id: rule.id.to_owned(),
                provider: rule.provider.to_owned(),
                kind: rule.kind.to_owned(),
                confidence: found.confidence,
                fingerprint: fingerprint(&secret),
                redacted: redact(&secret),
            });
        }
        findings
    }

    /// Runs the detectors and returns deduplicated matches.
    fn detect(&self, path: &str, data: &[u8]) -> Vec<RawMatch> {
        let mut enabled = vec![false; self.rules.len()];
        let mut generic_lines: Vec<Range<usize>> = Vec::new();
        let generic_allowed = generic_allowed_for(path);
        for hit in self.prefilter.find_overlapping_iter(data) {
            let Some(targets) = self.keyword_rules.get(hit.pattern().as_usize()) else {
                continue;
            };
            for &target in targets {
                if Some(target) == self.generic {
                    if generic_allowed {
                        let range = line_around(data, hit.start());
                        if generic_lines.last() != Some(&range) {
                            generic_lines.push(range);
                        }
                    }
                } else if let Some(slot) = enabled.get_mut(target) {
                    *slot = true;
                }
            }
        }
        let mut matches: Vec<RawMatch> = Vec::new();
        // Spans a rule matched but rejected (bad checksum, example key): later, less specific
        // rules must not report them either.
        let mut rejected: Vec<(usize, Range<usize>)> = Vec::new();
        for (index, compiled) in self.rules.iter().enumerate() {
            if !enabled.get(index).copied().unwrap_or(false) {
                continue;
            }
            for caps in compiled.regex.captures_iter(data) {
                let Some(secret) = caps.name("s") else {
                    continue;
                };
                let user = caps.name("u").map(|m| m.as_bytes());
                match validate(&compiled.rule, secret.as_bytes(), user, data) {
                    Some(_)
                        if rejected
                            .iter()
                            .any(|(rule, r)| *rule < index && overlaps(r, &secret.range())) => {}
                    Some((confidence, decoded)) => matches.push(RawMatch {
                        rule: index,
                        secret: secret.range(),
                        confidence,
                        decoded,
                    }),
                    None => rejected.push((index, secret.range())),
                }
            }
        }
        self.pair_aws(data, &mut matches);
        if let Some(generic) = self.generic.and_then(|g| self.rules.get(g).map(|r| (g, r))) {
            let (index, compiled) = generic;
            generic_lines.dedup();
            for range in generic_lines {
                let Some(line) = data.get(range.clone()) else {
                    continue;
                };
                for caps in compiled.regex.captures_iter(line) {
                    let (Some(key), Some(value)) = (caps.name("key"), caps.name("s")) else {
                        continue;
                    };
                    let quoted = caps.name("q").is_some_and(|q| !q.as_bytes().is_empty());
                    let value_range = trim_value(value.as_bytes(), quoted);
                    let start = range.start + value.start() + value_range.start;
                    let end = range.start + value.start() + value_range.end;
                    let Some(value_bytes) = data.get(start..end) else {
                        continue;
                    };
                    if let Some(confidence) = generic_score(key.as_bytes(), value_bytes) {
                        if rejected.iter().any(|(_, r)| overlaps(r, &(start..end))) {
                            continue;
                        }
                        matches.push(RawMatch {
                            rule: index,
                            secret: start..end,
                            confidence,
                            decoded: None,
                        });
                    }
                }
            }
        }
        dedupe(matches)
    }

    /// Pairs AWS access key ids with a nearby secret access key (within four lines).
    fn pair_aws(&self, data: &[u8], matches: &mut Vec<RawMatch>) {
        let (Some(key_rule), Some(secret_rule)) = (self.aws_key_id, self.aws_secret) else {
            return;
        };
        let key_positions: Vec<usize> = matches
            .iter()
            .filter(|m| m.rule == key_rule)
            .map(|m| m.secret.start)
            .collect();
        if key_positions.is_empty() {
            return;
        }
        let mut found_secrets: Vec<usize> = matches
            .iter()
            .filter(|m| m.rule == secret_rule)
            .map(|m| m.secret.start)
            .collect();
        for &position in &key_positions {
            let window = lines_window(data, position, 4);
            let Some(slice) = data.get(window.clone()) else {
                continue;
            };
            for caps in self.aws_candidate.captures_iter(slice) {
                let Some(secret) = caps.name("s") else {
                    continue;
                };
                let start = window.start + secret.start();
                if found_secrets.contains(&start) || !aws_secret_ok(secret.as_bytes()) {
                    continue;
                }
                found_secrets.push(start);
                matches.push(RawMatch {
                    rule: secret_rule,
                    secret: start..window.start + secret.end(),
                    confidence: Confidence::High,
                    decoded: None,
                });
            }
        }
        // A key id with its secret nearby is a usable credential pair.
        for found in matches.iter_mut().filter(|m| m.rule == key_rule) {
            let window = lines_window(data, found.secret.start, 4);
            if found_secrets.iter().any(|s| window.contains(s)) {
                found.confidence = Confidence::High;
            }
        }
    }
}

/// Drops matches overlapping an earlier (more specific) rule's match. O(n log n): kept
/// spans never overlap, so only the kept span starting last before a candidate's end can.
fn dedupe(mut matches: Vec<RawMatch>) -> Vec<RawMatch> {
    matches.sort_by_key(|m| (m.rule, m.secret.start));
    let mut spans: std::collections::BTreeMap<usize, usize> = std::collections::BTreeMap::new();
    let mut kept: Vec<RawMatch> = Vec::with_capacity(matches.len());
    for candidate in matches {
        let (start, end) = (candidate.secret.start, candidate.secret.end);
        let clash = spans
            .range(..end.max(start + 1))
            .next_back()
            .is_some_and(|(kept_start, kept_end)| *kept_start >= start || *kept_end > start);
        if !clash {
            spans.insert(start, end);
            kept.push(candidate);
        }
    }
    kept.sort_by_key(|m| m.secret.start);
    kept
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Secrets captured inside JSON strings carry escaped newlines; fingerprint the real value.
fn normalise_secret(secret: &[u8]) -> Vec<u8> {
    if secret.windows(2).any(|w| w == b"\\n") {
        String::from_utf8_lossy(secret)
            .replace("\\n", "\n")
            .into_bytes()
    } else {
        secret.to_vec()
    }
}

/// Line range (without the newline) containing `offset`.
fn line_around(data: &[u8], offset: usize) -> Range<usize> {
    let start = data
        .get(..offset)
        .and_then(|d| d.iter().rposition(|b| *b == b'\n'))
        .map_or(0, |p| p + 1);
    let end = data
        .get(offset..)
        .and_then(|d| d.iter().position(|b| *b == b'\n'))
        .map_or(data.len(), |p| offset + p);
    start..end
}

/// The byte range spanning `radius` lines before and after the line containing `offset`.
fn lines_window(data: &[u8], offset: usize, radius: usize) -> Range<usize> {
    let mut start = line_around(data, offset).start;
    for _ in 0..radius {
        if start == 0 {
            break;
        }
        start = line_around(data, start - 1).start;
    }
    let mut end = line_around(data, offset).end;
    for _ in 0..radius {
        if end >= data.len() {
            break;
        }
        end = line_around(data, end + 1).end;
    }
    start..end
}

/// Lockfiles and minified bundles are full of integrity hashes: generic scoring skips them.
fn generic_allowed_for(path: &str) -> bool {
    let name = path.rsplit(['/', '\\', '!']).next().unwrap_or(path);
    !matches!(
        name,
        "package-lock.json"
            | "npm-shrinkwrap.json"
            | "yarn.lock"
            | "pnpm-lock.yaml"
            | "Cargo.lock"
            | "poetry.lock"
            | "Pipfile.lock"
            | "composer.lock"
            | "Gemfile.lock"
            | "go.sum"
            | "uv.lock"
            | "bun.lock"
    ) && !name.ends_with(".min.js")
}

/// Offsets of line starts, built only for buffers with findings.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(data: &[u8]) -> Self {
        let mut starts = vec![0];
        starts.extend(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self { starts }
    }

    /// 1-based (line, column) of a byte offset.
    fn position(&self, offset: usize) -> (u32, u32) {
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(offset - start + 1).unwrap_or(u32::MAX),
        )
    }

    fn line_has_allow(&self, data: &[u8], line: u32) -> bool {
        let index = line as usize;
        let start = self
            .starts
            .get(index.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let end = self.starts.get(index).copied().unwrap_or(data.len());
        data.get(start..end)
            .is_some_and(|l| l.windows(ALLOW_MARKER.len()).any(|w| w == ALLOW_MARKER))
    }
}

/// Validates a captured secret for its rule. `None` rejects the match.
fn validate(
    rule: &Rule,
    secret: &[u8],
    user: Option<&[u8]>,
    data: &[u8],
) -> Option<(Confidence, Option<Vec<u8>>)> {
    if is_documented_example(secret) {
        return None;
    }
    let ok = match rule.check {
        Check::Sane => token_sane(secret),
        Check::Crc32Suffix => crc32_base62_suffix_ok(secret),
        Check::StewardKey => steward_key_ok(secret),
        Check::Jwt => jwt_ok(secret),
        Check::Pypi => pypi_ok(secret),
        Check::PrivateKey => private_key_ok(secret),
        Check::Base64PrivateKey => {
            let decoded = B64_LENIENT.decode(secret).ok()?;
            return private_key_ok(&decoded).then_some((rule.confidence, Some(decoded)));
        }
        Check::DockerAuth => {
            let decoded = B64_LENIENT.decode(secret).ok()?;
            let colon = decoded.iter().position(|b| *b == b':')?;
            let (name, password) = (decoded.get(..colon)?, decoded.get(colon + 1..)?);
            password_ok(password, Some(name))
        }
        Check::Password => password_ok(secret, user),
        Check::AwsSecret => aws_secret_ok(secret),
        Check::KubeToken => {
            let kubeconfig = contains(data, b"kind: Config")
                || (contains(data, b"clusters:") && contains(data, b"users:"));
            kubeconfig && token_sane(secret) && shannon_entropy(secret) >= 3.5
        }
        Check::Generic => false,
    };
    ok.then_some((rule.confidence, None))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_documented_example(secret: &[u8]) -> bool {
    DOCUMENTED_EXAMPLES.iter().any(|e| contains(secret, e)) || contains(secret, b"EXAMPLE")
}

/// Longest run of one repeated byte.
fn longest_run(data: &[u8]) -> usize {
    let (mut best, mut run, mut prev) = (0usize, 0usize, None);
    for byte in data {
        run = if Some(byte) == prev { run + 1 } else { 1 };
        prev = Some(byte);
        best = best.max(run);
    }
    best
}

/// Format-only tokens: reject obvious fillers (`xxxx…`, `0000…`) and low entropy.
fn token_sane(secret: &[u8]) -> bool {
    if longest_run(secret) >= 6 {
        return false;
    }
    let lower = String::from_utf8_lossy(secret).to_ascii_lowercase();
    if [
        "xxxxx",
        "example",
        "your_",
        "placeholder",
        "redacted",
        "dummy",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        return false;
    }
    secret.len() < 16 || shannon_entropy(secret) >= 3.0
}

fn aws_secret_ok(secret: &[u8]) -> bool {
    let has = |f: fn(&u8) -> bool| secret.iter().any(f);
    secret.len() == 40
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_digit)
        && shannon_entropy(secret) >= 4.0
        && !is_documented_example(secret)
}

/// Is a value an environment or template lookup rather than a literal?
fn is_lookup(value: &str) -> bool {
    let first = value.chars().next().unwrap_or(' ');
    // `%(name)s`, `%{name}`, `%NAME%` are lookups; a password may start with `%`.
    let percent_lookup = value.starts_with("%(")
        || value.starts_with("%{")
        || (value.len() > 2 && value.ends_with('%') && value.starts_with('%'));
    percent_lookup
        || matches!(
            first,
            '$' | '{'
                | '<'
                | '['
                | '('
                | '@'
                | '&'
                | '*'
                | '!'
                | '#'
                | '='
                | '/'
                | '.'
                | '\\'
                | '?'
                | '|'
        )
        || [
            "${",
            "{{",
            "}}",
            "(",
            ")",
            "os.environ",
            "process.env",
            "getenv",
            "env.",
            "env[",
            "secrets.",
        ]
        .iter()
        .any(|m| value.contains(m))
}

fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    PLACEHOLDER_EXACT.contains(&lower.as_str())
        || PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w))
        || longest_run(value.as_bytes()) >= 4
        || lower
            .chars()
            .all(|c| c == '*' || c == 'x' || c == '.' || c == '-')
}

/// Passwords from URLs, DSNs and config files.
fn password_ok(password: &[u8], user: Option<&[u8]>) -> bool {
    let Ok(text) = std::str::from_utf8(password) else {
        return false;
    };
    let text = text.trim_matches(|c| c == '\'' || c == '"');
    // Templates only: unlike generic values, a URL or config password may start with `.` or `#`.
    let template = text.starts_with('$')
        || text.starts_with('<')
        || text.starts_with("%(")
        || text.starts_with("%{")
        || ["${", "{{", "}}"].iter().any(|m| text.contains(m));
    text.len() >= 4
        && !template
        && !is_placeholder(text)
        && user.is_none_or(|u| u != text.as_bytes())
        && !is_documented_example(text.as_bytes())
}

/// Strips quotes and trailing punctuation from a generic value.
fn trim_value(value: &[u8], quoted: bool) -> Range<usize> {
    let mut end = value.len();
    while end > 0 {
        match value.get(end - 1) {
            Some(b',' | b';' | b')' | b'}' | b']' | b'\\') => end -= 1,
            Some(b'>') if !quoted => end -= 1,
            _ => break,
        }
    }
    0..end
}

/// Splits a key into lowercase words (snake, kebab, dotted and camelCase).
fn key_words(key: &[u8]) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for &byte in key {
        let c = char::from(byte);
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Scores a generic `name = value` assignment. `None` when it is not a credential.
fn generic_score(key: &[u8], value: &[u8]) -> Option<Confidence> {
    let words = key_words(key);
    let joined: String = words.concat();
    const STRONG: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "accesskey",
        "authkey",
        "privatekey",
        "credential",
        "signingkey",
        "encryptionkey",
        "masterkey",
    ];
    let strong = STRONG.iter().any(|s| joined.contains(s))
        || words
            .iter()
            .any(|w| matches!(w.as_str(), "pass" | "pwd" | "pw" | "passwd" | "pword"));
    if !strong
        || words
            .iter()
            .any(|w| NON_SECRET_KEY_TOKENS.contains(&w.as_str()))
    {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    if text.len() < 8 || is_lookup(text) || is_placeholder(text) || is_documented_example(value) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    // Hashes, images and identifiers.
    if [
        "sha1-",
        "sha256-",
        "sha384-",
        "sha512-",
        "sha256:",
        "sha1:",
        "md5:",
        "$2a$",
        "$2b$",
        "$2y$",
        "$argon2",
        "pbkdf2",
        "data:",
        "ivborw0kggo",
        "/9j/",
        "r0lgod",
        "http://",
        "https://",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
    {
        return None;
    }
    if is_uuid(text) || is_identifier(text) {
        return None;
    }
    let classes = [
        value.iter().any(u8::is_ascii_lowercase),
        value.iter().any(u8::is_ascii_uppercase),
        value.iter().any(u8::is_ascii_digit),
        value.iter().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|c| **c)
    .count();
    let entropy = shannon_entropy(value);
    let accepted =
        (classes >= 3 && entropy >= 3.0) || (classes >= 2 && value.len() >= 16 && entropy >= 3.5);
    if !accepted {
        return None;
    }
    Some(if classes >= 3 && value.len() >= 12 && entropy >= 3.3 {
        Confidence::Medium
    } else {
        Confidence::Low
    })
}

fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// `config.db.password`, `DB_PASSWORD_VAR`, `dbPassword`: references, not values.
fn is_identifier(text: &str) -> bool {
    let ident_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if !ident_chars {
        return false;
    }
    let has_digit = text.chars().any(|c| c.is_ascii_digit());
    let dotted = text.contains('.')
        && text.split('.').all(|p| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        });
    let snake = (text.contains('_') || text.contains('-'))
        && (text.chars().all(|c| !c.is_ascii_lowercase())
            || text.chars().all(|c| !c.is_ascii_uppercase()))
        && !has_digit;
    let camel = !has_digit && text.chars().all(|c| c.is_ascii_alphabetic()) && text.len() < 24;
    dotted || snake || camel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_words_split_all_styles() {
        assert_eq!(key_words(b"dbPassword"), vec!["db", "password"]);
        assert_eq!(key_words(b"AWS_SECRET_KEY"), vec!["aws", "secret", "key"]);
        assert_eq!(key_words(b"api-token.value"), vec!["api", "token", "value"]);
    }

    #[test]
    fn generic_scorer_accepts_random_and_rejects_references() {
        assert!(generic_score(b"DB_PASSWORD", b"Xk9#mQ2$vL8pRt").is_some());
        assert!(generic_score(b"password", b"changeme123").is_none());
        assert!(generic_score(b"password", b"settings.DB_PASSWORD").is_none());
        assert!(generic_score(b"api_token", b"550e8400-e29b-41d4-a716-446655440000").is_none());
        assert!(generic_score(b"password_hash", b"Xk9#mQ2$vL8pRt").is_none());
        assert!(generic_score(b"compass", b"Xk9#mQ2$vL8pRt").is_none());
        assert!(generic_score(b"secret", b"${VAULT_SECRET}").is_none());
    }

    #[test]
    fn line_index_reports_one_based_positions() {
        let index = LineIndex::new(b"ab\ncd\n");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(4), (2, 2));
    }
}
