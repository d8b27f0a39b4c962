//! OpenAPI 3.0/3.1 import into a catalog of named, classed, typed operations, request
//! matching against that catalog, and typed argument extraction for policy.
//!
//! # Naming
//! An operation is named by its `operationId`. Without one, its name is the upper-case
//! method, a space, and the path template exactly as written in the spec, e.g.
//! `GET /repos/{owner}/{repo}`. The full policy name is then `github:GET /repos/{owner}/{repo}`
//! (`OperationName` splits on the first `:`, and service names contain none).
//!
//! # Paths
//! Templates are relative to the service's base URL: `servers` is ignored, so a spec whose
//! server is `https://api.stripe.com` and path `/v1/refunds` matches `/gw/stripe/v1/refunds`.
//! Literal segments win over templated ones; a segment mixing text and a parameter
//! (`{name}.json`, `{id}:cancel`) wins over a bare `{param}`.
//!
//! # Arguments
//! Path and query parameters (header and cookie parameters are not policy arguments), and
//! the top-level properties of the `application/json` (or `+json`, or
//! `application/x-www-form-urlencoded`) request body schema, merged through `allOf`
//! (required kept) and `oneOf`/`anyOf` (never required). A body field may not share a name
//! with a parameter: policy sees one flat object and must not have to guess.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use steward_core::OperationClass;

use crate::path::{NormalizedPath, PathError, parse_query};

/// Bounds on what an import will process, so a hostile spec cannot exhaust memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Largest spec text, in bytes.
    pub max_bytes: usize,
    /// Most operations.
    pub max_operations: usize,
    /// Most arguments in one operation.
    pub max_args: usize,
    /// Longest chain of `$ref`s followed for one value.
    pub max_ref_hops: usize,
    /// Deepest `allOf`/`oneOf`/`anyOf` nesting in a body schema.
    pub max_schema_depth: usize,
    /// Most segments in a path template.
    pub max_template_segments: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
            max_operations: 5_000,
            max_args: 256,
            max_ref_hops: 32,
            max_schema_depth: 16,
            max_template_segments: 64,
        }
    }
}

/// Where an argument comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgLocation {
    /// A templated path segment.
    Path,
    /// A query-string parameter.
    Query,
    /// A top-level field of the request body.
    Body,
}

/// The declared type of an argument, from its JSON schema `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgType {
    /// `string`.
    String,
    /// `integer` (a 64-bit signed integer in policy).
    Integer,
    /// `number`.
    Number,
    /// `boolean`.
    Boolean,
    /// `array`.
    Array,
    /// `object`.
    Object,
    /// No single declared type: the value is passed through as it is.
    Any,
}

impl ArgType {
    /// The JSON schema name, e.g. `integer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
            Self::Any => "any",
        }
    }
}

impl std::fmt::Display for ArgType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One typed argument of an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgSpec {
    /// The parameter or field name; the key in the extracted arguments object.
    pub name: String,
    /// Where it comes from.
    pub location: ArgLocation,
    /// Its declared type.
    pub ty: ArgType,
    /// For arrays, the declared item type (`Any` if undeclared).
    #[serde(default = "any_type")]
    pub item_ty: ArgType,
    /// Whether a request must carry it.
    pub required: bool,
    /// Whether it must be redacted from audit records (`x-steward-sensitive: true` or
    /// `format: password`).
    pub sensitive: bool,
    /// Whether `null` is a valid value (`nullable: true` or a `null` type).
    #[serde(default)]
    pub nullable: bool,
    /// For array query parameters: `true` means `?a=1&a=2`, `false` means `?a=1,2`.
    #[serde(default = "default_true")]
    pub explode: bool,
}

fn any_type() -> ArgType {
    ArgType::Any
}

fn default_true() -> bool {
    true
}

/// How the request body is encoded, when the operation declares one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// `application/json` or `application/*+json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// Any other media type: no body arguments.
    Other,
}

/// One API operation: what policy names, classifies and inspects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The operation name (see the module docs).
    pub name: String,
    /// The upper-case HTTP method.
    pub method: String,
    /// The path template as written in the spec, e.g. `/repos/{owner}/{repo}/issues`.
    pub path_template: String,
    /// Read, write or delete.
    pub class: OperationClass,
    /// Typed arguments, in declaration order: path, query, then body.
    pub args: Vec<ArgSpec>,
    /// The declared body encoding, if the operation has a request body.
    pub body: Option<BodyFormat>,
}

impl Operation {
    /// The names of sensitive arguments.
    pub fn sensitive_args(&self) -> impl Iterator<Item = &str> {
        self.args
            .iter()
            .filter(|a| a.sensitive)
            .map(|a| a.name.as_str())
    }

    /// Whether policy needs the body buffered (the operation declares body arguments).
    pub fn needs_body(&self) -> bool {
        self.args.iter().any(|a| a.location == ArgLocation::Body)
    }
}

/// Why a spec could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenApiError {
    /// The spec text is larger than the limit.
    #[error("spec is larger than {0} bytes")]
    TooLarge(usize),
    /// The text is not valid JSON or YAML.
    #[error("spec is not valid json or yaml: {0}")]
    Syntax(String),
    /// The document is not OpenAPI 3.0 or 3.1.
    #[error("unsupported spec version `{0}`: expected openapi 3.0 or 3.1")]
    UnsupportedVersion(String),
    /// A field is missing or has the wrong shape.
    #[error("invalid spec at `{at}`: {reason}")]
    Invalid {
        /// Where, e.g. `paths./repos.get.parameters.0`.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A `$ref` points outside the document.
    #[error("unsupported `$ref` `{0}`: only local references (`#/...`) are supported")]
    UnsupportedRef(String),
    /// A `$ref` points at nothing.
    #[error("unresolved `$ref` `{0}`")]
    UnresolvedRef(String),
    /// `$ref`s form a cycle, or a chain longer than the limit.
    #[error("`$ref` cycle or chain too long at `{0}`")]
    RefCycle(String),
    /// Schema composition nests deeper than the limit (or loops).
    #[error("schema at `{0}` nests too deeply")]
    TooDeep(String),
    /// More operations than the limit.
    #[error("spec has more than {0} operations")]
    TooManyOperations(usize),
    /// An operation has more arguments than the limit.
    #[error("operation `{operation}` has more than {limit} arguments")]
    TooManyArgs {
        /// The operation.
        operation: String,
        /// The limit.
        limit: usize,
    },
    /// Two operations have the same name.
    #[error("duplicate operation name `{0}`")]
    DuplicateOperation(String),
    /// Two operations have the same method and path shape.
    #[error(
        "`{method} {path}` conflicts with another operation with the same method and path shape"
    )]
    DuplicateRoute {
        /// The method.
        method: String,
        /// The path template.
        path: String,
    },
    /// A path template is malformed.
    #[error("invalid path template `{path}`: {reason}")]
    InvalidPathTemplate {
        /// The template.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// `x-steward-class` is not `read`, `write` or `delete`.
    #[error("operation `{operation}` has invalid `x-steward-class` `{value}`")]
    InvalidClass {
        /// The operation.
        operation: String,
        /// The value given.
        value: String,
    },
    /// A body field has the same name as a path or query parameter.
    #[error("operation `{operation}` declares `{name}` both as a parameter and a body field")]
    ArgNameConflict {
        /// The operation.
        operation: String,
        /// The argument name.
        name: String,
    },
}

/// Why a request's arguments do not fit its operation. Every variant means `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A required argument is absent.
    #[error("missing required argument `{0}`")]
    Missing(String),
    /// A value does not have its declared type.
    #[error("argument `{name}` must be {expected}, got {found}")]
    Type {
        /// The argument.
        name: String,
        /// The declared type.
        expected: ArgType,
        /// What was sent (a JSON kind, or the text in backticks).
        found: String,
    },
    /// A scalar argument appears more than once (parameter pollution).
    #[error("argument `{0}` is given more than once")]
    Duplicate(String),
    /// The operation declares body fields but the body is not a JSON object.
    #[error("request body must be a json object")]
    BodyNotObject,
    /// The query string or form body is malformed.
    #[error("malformed query or form body: {0}")]
    Malformed(#[from] PathError),
    /// The JSON body does not parse, or repeats a key.
    #[error("invalid json body: {0}")]
    InvalidJson(String),
}

/// A request body as handed to [`extract_args_from`].
#[derive(Debug, Clone, Copy)]
pub enum RequestBody<'a> {
    /// No body, or one that was not read.
    None,
    /// A parsed JSON body (see [`parse_json_body`]).
    Json(&'a Value),
    /// A raw `application/x-www-form-urlencoded` body.
    Form(&'a str),
}

/// An operation a request matched, with its path parameters (decoded) in template order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedOperation<'a> {
    /// The operation.
    pub operation: &'a Operation,
    /// `(name, decoded value)` for each path parameter.
    pub path_params: Vec<(String, String)>,
}

/// A service's operations with a precompiled router.
#[derive(Debug, Clone)]
pub struct ServiceCatalog {
    operations: Vec<Operation>,
    /// One routing trie per method.
    routes: HashMap<String, RouteNode>,
}

impl ServiceCatalog {
    /// Imports an OpenAPI 3.0/3.1 spec in JSON or YAML with the default limits.
    pub fn from_openapi(text: &str) -> Result<Self, OpenApiError> {
        Self::from_openapi_with_limits(text, &ImportLimits::default())
    }

    /// Imports an OpenAPI 3.0/3.1 spec in JSON or YAML.
    pub fn from_openapi_with_limits(
        text: &str,
        limits: &ImportLimits,
    ) -> Result<Self, OpenApiError> {
        let doc = parse_document(text, limits)?;
        let operations = Importer { root: &doc, limits }.operations()?;
        Self::build(operations, limits)
    }

    /// Builds a catalog from operations defined elsewhere (config, or stored after import).
    pub fn new(operations: Vec<Operation>) -> Result<Self, OpenApiError> {
        Self::build(operations, &ImportLimits::default())
    }

    fn build(operations: Vec<Operation>, limits: &ImportLimits) -> Result<Self, OpenApiError> {
        if operations.len() > limits.max_operations {
            return Err(OpenApiError::TooManyOperations(limits.max_operations));
        }
        let mut routes: HashMap<String, RouteNode> = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (index, op) in operations.iter().enumerate() {
            if !names.insert(op.name.as_str()) {
                return Err(OpenApiError::DuplicateOperation(op.name.clone()));
            }
            let template = parse_template(&op.path_template, limits)?;
            let method = op.method.to_ascii_uppercase();
            let mut node = routes.entry(method.clone()).or_default();
            for segment in &template.segments {
                node = match segment {
                    SegmentPattern::Literal(text) => node.literal.entry(text.clone()).or_default(),
                    pattern => {
                        let pos = match node.patterns.iter().position(|(p, _)| p == pattern) {
                            Some(pos) => pos,
                            None => {
                                // Keep most specific first; equal specificity keeps spec order.
                                let rank = pattern.specificity();
                                let pos = node
                                    .patterns
                                    .iter()
                                    .position(|(p, _)| p.specificity() < rank)
                                    .unwrap_or(node.patterns.len());
                                node.patterns
                                    .insert(pos, (pattern.clone(), RouteNode::default()));
                                pos
                            }
                        };
                        let Some((_, child)) = node.patterns.get_mut(pos) else {
                            return Err(OpenApiError::InvalidPathTemplate {
                                path: op.path_template.clone(),
                                reason: "internal routing error".into(),
                            });
                        };
                        child
                    }
                };
            }
            if node.leaf.is_some() {
                return Err(OpenApiError::DuplicateRoute {
                    method,
                    path: op.path_template.clone(),
                });
            }
            node.leaf = Some(Leaf {
                operation: index,
                param_names: template.param_names,
            });
        }
        Ok(Self { operations, routes })
    }

    /// All operations, in spec order.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The operation with this name.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|op| op.name == name)
    }

    /// Gives the operations back, e.g. to apply class overrides from config and rebuild.
    pub fn into_operations(self) -> Vec<Operation> {
        self.operations
    }

    /// Finds the operation for a method and normalised path.
    ///
    /// Routing is per method, as in most server frameworks: `DELETE /pets/mine` matches
    /// `DELETE /pets/{id}` even if only `GET` declares `/pets/mine`. Within a method, literal
    /// segments are preferred over mixed ones (`{id}.json`), and those over bare
    /// parameters, backtracking when a preferred branch fails deeper. Each trie node is
    /// visited at most once, so the cost is bounded by the catalog's size and is
    /// O(segments) for typical APIs. A `HEAD` request with no `HEAD` operation matches `GET`.
    pub fn match_request(
        &self,
        method: &str,
        path: &NormalizedPath,
    ) -> Option<MatchedOperation<'_>> {
        let method = method.to_ascii_uppercase();
        let found = self.match_method(&method, &path.segments);
        let found = match found {
            None if method == "HEAD" => self.match_method("GET", &path.segments),
            other => other,
        };
        let (leaf, values) = found?;
        let operation = self.operations.get(leaf.operation)?;
        let path_params = leaf.param_names.iter().cloned().zip(values).collect();
        Some(MatchedOperation {
            operation,
            path_params,
        })
    }

    fn match_method(&self, method: &str, segments: &[String]) -> Option<(&Leaf, Vec<String>)> {
        let root = self.routes.get(method)?;
        let mut values = Vec::new();
        let leaf = match_node(root, segments, &mut values)?;
        Some((leaf, values))
    }
}

/// Imports a spec with the default limits (shorthand for [`ServiceCatalog::from_openapi`]).
pub fn import(text: &str) -> Result<ServiceCatalog, OpenApiError> {
    ServiceCatalog::from_openapi(text)
}

// ---------------------------------------------------------------------------------------
// Routing

#[derive(Debug, Clone, Default)]
struct RouteNode {
    literal: HashMap<String, RouteNode>,
    /// Sorted most specific first.
    patterns: Vec<(SegmentPattern, RouteNode)>,
    leaf: Option<Leaf>,
}

#[derive(Debug, Clone)]
struct Leaf {
    operation: usize,
    param_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Param,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SegmentPattern {
    Literal(String),
    /// A whole segment `{name}`.
    Param,
    /// Text mixed with parameters; no two parameters are adjacent.
    Mixed(Vec<Piece>),
}

impl SegmentPattern {
    /// Higher is preferred: mixed patterns by literal length, then bare parameters.
    fn specificity(&self) -> usize {
        match self {
            Self::Literal(_) => usize::MAX,
            Self::Param => 0,
            Self::Mixed(pieces) => {
                1 + pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Literal(t) => t.len(),
                        Piece::Param => 0,
                    })
                    .sum::<usize>()
            }
        }
    }

    /// Matches one decoded segment, pushing captured values.
    fn capture(&self, segment: &str, values: &mut Vec<String>) -> bool {
        match self {
            Self::Literal(text) => text == segment,
            Self::Param => {
                if segment.is_empty() {
                    return false;
                }
                values.push(segment.to_owned());
                true
            }
            Self::Mixed(pieces) => capture_mixed(pieces, segment, values),
        }
    }
}

/// Matches text/parameter pieces left to right. A parameter followed by the last literal
/// takes everything up to that literal as a suffix; followed by an inner literal, it
/// stops at the literal's first occurrence. Parameters never match the empty string.
fn capture_mixed(pieces: &[Piece], segment: &str, values: &mut Vec<String>) -> bool {
    let mark = values.len();
    let mut rest = segment;
    for (i, piece) in pieces.iter().enumerate() {
        let step = match piece {
            Piece::Literal(text) => rest.strip_prefix(text.as_str()).map(|r| (None, r)),
            Piece::Param => {
                let end = match pieces.get(i + 1) {
                    None => Some(rest.len()),
                    Some(Piece::Literal(text)) if i + 2 == pieces.len() => {
                        rest.strip_suffix(text.as_str()).map(str::len)
                    }
                    Some(Piece::Literal(text)) => {
                        // The parameter takes at least one character.
                        let skip = rest.chars().next().map_or(0, char::len_utf8);
                        rest.get(skip..)
                            .and_then(|r| r.find(text.as_str()))
                            .map(|at| at + skip)
                    }
                    Some(Piece::Param) => None,
                };
                end.and_then(|e| Some((rest.get(..e)?, rest.get(e..)?)))
                    .filter(|(value, _)| !value.is_empty())
                    .map(|(value, r)| (Some(value), r))
            }
        };
        match step {
            Some((captured, r)) => {
                if let Some(value) = captured {
                    values.push(value.to_owned());
                }
                rest = r;
            }
            None => {
                values.truncate(mark);
                return false;
            }
        }
    }
    if rest.is_empty() {
        true
    } else {
        values.truncate(mark);
        false
    }
}

fn match_node<'n>(
    node: &'n RouteNode,
    segments: &[String],
    values: &mut Vec<String>,
) -> Option<&'n Leaf> {
    let Some((first, rest)) = segments.split_first() else {
        return node.leaf.as_ref();
    };
    if let Some(child) = node.literal.get(first.as_str())
        && let Some(leaf) = match_node(child, rest, values)
    {
        return Some(leaf);
    }
    for (pattern, child) in &node.patterns {
        let mark = values.len();
        if pattern.capture(first, values)
            && let Some(leaf) = match_node(child, rest, values)
        {
            return Some(leaf);
        }
        values.truncate(mark);
    }
    None
}

struct Template {
    segments: Vec<SegmentPattern>,
    param_names: Vec<String>,
}

fn parse_template(path: &str, limits: &ImportLimits) -> Result<Template, OpenApiError> {
    let bad = |reason: &str| OpenApiError::InvalidPathTemplate {
        path: path.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    let body = path
        .strip_prefix('/')
        .ok_or_else(|| bad("must start with `/`"))?;
    let mut segments = Vec::new();
    let mut param_names: Vec<String> = Vec::new();
    if body.is_empty() {
        return Ok(Template {
            segments,
            param_names,
        });
    }
    let raw: Vec<&str> = body.split('/').collect();
    if raw.len() > limits.max_template_segments {
        return Err(bad("too many segments"));
    }
    let last = raw.len().saturating_sub(1);
    for (i, seg) in raw.iter().enumerate() {
        if seg.is_empty() && i != last {
            return Err(bad("empty segment"));
        }
        if seg.chars().any(char::is_control) {
            return Err(bad("control character"));
        }
        let mut pieces = Vec::new();
        let mut rest = *seg;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let close = after.find('}').ok_or_else(|| bad("unclosed `{`"))?;
                let name = after.get(..close).unwrap_or_default();
                if name.is_empty() || name.contains('{') {
                    return Err(bad("empty or nested parameter name"));
                }
                if param_names.iter().any(|n| n == name) {
                    return Err(bad("repeated parameter name"));
                }
                if matches!(pieces.last(), Some(Piece::Param)) {
                    return Err(bad("two adjacent parameters are ambiguous"));
                }
                param_names.push(name.to_owned());
                pieces.push(Piece::Param);
                rest = after.get(close + 1..).unwrap_or_default();
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let text = rest.get(..end).unwrap_or_default();
                if text.contains('}') {
                    return Err(bad("unmatched `}`"));
                }
                pieces.push(Piece::Literal(text.to_owned()));
                rest = rest.get(end..).unwrap_or_default();
            }
        }
        let pattern = match pieces.as_slice() {
            [] => SegmentPattern::Literal(String::new()),
            [Piece::Literal(text)] => SegmentPattern::Literal(text.clone()),
            [Piece::Param] => SegmentPattern::Param,
            _ => {
                if pieces.iter().filter(|p| **p == Piece::Param).count() > 4 {
                    return Err(bad("more than 4 parameters in one segment"));
                }
                SegmentPattern::Mixed(pieces)
            }
        };
        segments.push(pattern);
    }
    Ok(Template {
        segments,
        param_names,
    })
}

// ---------------------------------------------------------------------------------------
// Import

fn parse_document(text: &str, limits: &ImportLimits) -> Result<Value, OpenApiError> {
    if text.len() > limits.max_bytes {
        return Err(OpenApiError::TooLarge(limits.max_bytes));
    }
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let doc: Value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| OpenApiError::Syntax(e.to_string()))?
    } else {
        serde_yaml_ng::from_str(trimmed).map_err(|e| OpenApiError::Syntax(e.to_string()))?
    };
    if !doc.is_object() {
        return Err(OpenApiError::Invalid {
            at: "/".into(),
            reason: "the document is not an object".into(),
        });
    }
    if let Some(v) = doc.get("swagger") {
        return Err(OpenApiError::UnsupportedVersion(value_text(v)));
    }
    let version = doc.get("openapi").ok_or_else(|| OpenApiError::Invalid {
        at: "openapi".into(),
        reason: "missing the `openapi` version field".into(),
    })?;
    let version_text = value_text(version);
    let supported = version.as_str().is_some_and(|v| {
        v.starts_with("3.0.") || v.starts_with("3.1.") || v == "3.0" || v == "3.1"
    });
    if !supported {
        return Err(OpenApiError::UnsupportedVersion(version_text));
    }
    Ok(doc)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.chars().take(40).collect(),
        other => other.to_string().chars().take(40).collect(),
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

struct Importer<'a> {
    root: &'a Value,
    limits: &'a ImportLimits,
}

/// What we learn about a body field from its schema.
#[derive(Debug, Clone)]
struct FieldInfo {
    ty: ArgType,
    item_ty: ArgType,
    required: bool,
    sensitive: bool,
    nullable: bool,
}

fn invalid(at: &str, reason: &str) -> OpenApiError {
    OpenApiError::Invalid {
        at: at.chars().take(200).collect(),
        reason: reason.to_owned(),
    }
}

fn is_sensitive(v: &Value) -> bool {
    v.get("x-steward-sensitive").and_then(Value::as_bool) == Some(true)
        || v.get("format").and_then(Value::as_str) == Some("password")
}

impl<'a> Importer<'a> {
    /// Follows `$ref` chains to the referenced value.
    fn resolve(&self, mut value: &'a Value) -> Result<&'a Value, OpenApiError> {
        let mut seen: Vec<&str> = Vec::new();
        while let Some(reference) = value.get("$ref") {
            let reference = reference
                .as_str()
                .ok_or_else(|| invalid("$ref", "`$ref` must be a string"))?;
            if seen.contains(&reference) || seen.len() >= self.limits.max_ref_hops {
                return Err(OpenApiError::RefCycle(
                    reference.chars().take(200).collect(),
                ));
            }
            seen.push(reference);
            let pointer = reference
                .strip_prefix('#')
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| {
                    OpenApiError::UnsupportedRef(reference.chars().take(200).collect())
                })?;
            let pointer = crate::path::form_decode(&pointer.replace('+', "%2B"))
                .map_err(|_| OpenApiError::UnresolvedRef(reference.chars().take(200).collect()))?;
            value = self.root.pointer(&pointer).ok_or_else(|| {
                OpenApiError::UnresolvedRef(reference.chars().take(200).collect())
            })?;
        }
        Ok(value)
    }

    fn operations(&self) -> Result<Vec<Operation>, OpenApiError> {
        let Some(paths) = self.root.get("paths") else {
            return Ok(Vec::new());
        };
        let paths = paths
            .as_object()
            .ok_or_else(|| invalid("paths", "must be an object"))?;
        let mut out = Vec::new();
        for (template, item) in paths {
            let at = format!("paths.{template}");
            let item = self.resolve(item)?;
            let item = item
                .as_object()
                .ok_or_else(|| invalid(&at, "path item must be an object"))?;
            let shared = match item.get("parameters") {
                Some(p) => self.parameters(p, &format!("{at}.parameters"))?,
                None => Vec::new(),
            };
            for method in METHODS {
                let Some(op) = item.get(method) else {
                    continue;
                };
                if out.len() >= self.limits.max_operations {
                    return Err(OpenApiError::TooManyOperations(self.limits.max_operations));
                }
                out.push(self.operation(
                    template,
                    method,
                    op,
                    &shared,
                    &format!("{at}.{method}"),
                )?);
            }
        }
        Ok(out)
    }

    fn operation(
        &self,
        template: &str,
        method: &str,
        op: &'a Value,
        shared: &[ArgSpec],
        at: &str,
    ) -> Result<Operation, OpenApiError> {
        let op = op
            .as_object()
            .ok_or_else(|| invalid(at, "operation must be an object"))?;
        let method_upper = method.to_ascii_uppercase();
        let name = match op.get("operationId") {
            Some(Value::String(id)) => {
                let id = id.trim();
                if id.is_empty()
                    || id.len() > 128
                    || id.chars().any(|c| c.is_control() || c.is_whitespace())
                {
                    return Err(invalid(
                        &format!("{at}.operationId"),
                        "must be 1-128 characters without spaces or control characters",
                    ));
                }
                id.to_owned()
            }
            Some(_) => return Err(invalid(&format!("{at}.operationId"), "must be a string")),
            None => format!("{method_upper} {template}"),
        };
        let class = match op.get("x-steward-class") {
            None => OperationClass::from_http_method(&method_upper),
            Some(v) => v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                OpenApiError::InvalidClass {
                    operation: name.clone(),
                    value: value_text(v),
                }
            })?,
        };
        let template_info = parse_template(template, self.limits)?;

        // Parameters: path-level first, overridden by operation-level (same name and `in`).
        let mut params: Vec<ArgSpec> = shared.to_vec();
        if let Some(p) = op.get("parameters") {
            for spec in self.parameters(p, &format!("{at}.parameters"))? {
                match params
                    .iter_mut()
                    .find(|s| s.name == spec.name && s.location == spec.location)
                {
                    Some(existing) => *existing = spec,
                    None => params.push(spec),
                }
            }
        }
        let mut args: Vec<ArgSpec> = Vec::new();
        // Path arguments follow the template; undeclared ones are required strings.
        for pname in &template_info.param_names {
            let declared = params
                .iter()
                .find(|s| s.location == ArgLocation::Path && &s.name == pname);
            let mut spec = declared.cloned().unwrap_or(ArgSpec {
                name: pname.clone(),
                location: ArgLocation::Path,
                ty: ArgType::String,
                item_ty: ArgType::Any,
                required: true,
                sensitive: false,
                nullable: false,
                explode: false,
            });
            spec.required = true;
            args.push(spec);
        }
        args.extend(
            params
                .into_iter()
                .filter(|s| s.location == ArgLocation::Query),
        );

        let mut body = None;
        if let Some(rb) = op.get("requestBody") {
            let (format, fields) = self.request_body(rb, &format!("{at}.requestBody"))?;
            body = Some(format);
            for (field, info) in fields {
                if args.iter().any(|a| a.name == field) {
                    return Err(OpenApiError::ArgNameConflict {
                        operation: name,
                        name: field,
                    });
                }
                args.push(ArgSpec {
                    name: field,
                    location: ArgLocation::Body,
                    ty: info.ty,
                    item_ty: info.item_ty,
                    required: info.required,
                    sensitive: info.sensitive,
                    nullable: info.nullable,
                    explode: true,
                });
            }
        }
        if args.len() > self.limits.max_args {
            return Err(OpenApiError::TooManyArgs {
                operation: name,
                limit: self.limits.max_args,
            });
        }
        Ok(Operation {
            name,
            method: method_upper,
            path_template: template.to_owned(),
            class,
            args,
            body,
        })
    }

    fn parameters(&self, list: &'a Value, at: &str) -> Result<Vec<ArgSpec>, OpenApiError> {
        let list = list
            .as_array()
            .ok_or_else(|| invalid(at, "must be an array"))?;
        if list.len() > self.limits.max_args {
            return Err(invalid(at, "too many parameters"));
        }
        let mut out: Vec<ArgSpec> = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            let at = format!("{at}.{i}");
            let param = self.resolve(raw)?;
            let name = param
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&at, "parameter needs a string `name`"))?;
            let location = match param.get("in").and_then(Value::as_str) {
                Some("path") => ArgLocation::Path,
                Some("query") => ArgLocation::Query,
                Some("header" | "cookie") => continue,
                _ => return Err(invalid(&at, "`in` must be path, query, header or cookie")),
            };
            if name.is_empty() || name.len() > 128 {
                return Err(invalid(&at, "parameter name must be 1-128 characters"));
            }
            let raw_schema = param.get("schema");
            let schema = raw_schema.map(|s| self.resolve(s)).transpose()?;
            let (ty, nullable) = match schema {
                Some(s) => self.schema_type(s, 0, &at)?,
                None => (ArgType::String, false),
            };
            let item_ty = match schema.and_then(|s| s.get("items")) {
                Some(items) => self.schema_type(self.resolve(items)?, 0, &at)?.0,
                None => ArgType::Any,
            };
            let sensitive = is_sensitive(raw)
                || is_sensitive(param)
                || raw_schema.is_some_and(is_sensitive)
                || schema.is_some_and(is_sensitive);
            let style_form = param
                .get("style")
                .and_then(Value::as_str)
                .is_none_or(|s| s == "form");
            let explode = param
                .get("explode")
                .and_then(Value::as_bool)
                .unwrap_or(style_form);
            let spec = ArgSpec {
                name: name.to_owned(),
                location,
                ty,
                item_ty,
                required: location == ArgLocation::Path
                    || param.get("required").and_then(Value::as_bool) == Some(true),
                sensitive,
                nullable,
                explode,
            };
            if out
                .iter()
                .any(|s| s.name == spec.name && s.location == spec.location)
            {
                return Err(invalid(&at, "parameter declared twice"));
            }
            out.push(spec);
        }
        Ok(out)
    }

    /// The declared type of a (resolved) schema, and whether it admits `null`.
    fn schema_type(
        &self,
        schema: &'a Value,
        depth: usize,
        at: &str,
    ) -> Result<(ArgType, bool), OpenApiError> {
        if depth > self.limits.max_schema_depth {
            return Err(OpenApiError::TooDeep(at.chars().take(200).collect()));
        }
        let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
        let named = |t: &str| match t {
            "string" => Some(ArgType::String),
            "integer" => Some(ArgType::Integer),
            "number" => Some(ArgType::Number),
            "boolean" => Some(ArgType::Boolean),
            "array" => Some(ArgType::Array),
            "object" => Some(ArgType::Object),
            _ => None,
        };
        match schema.get("type") {
            Some(Value::String(t)) => {
                Ok((named(t).unwrap_or(ArgType::Any), nullable || t == "null"))
            }
            Some(Value::Array(types)) => {
                let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
                let has_null = names.contains(&"null");
                let non_null: Vec<ArgType> = names
                    .iter()
                    .filter(|t| **t != "null")
                    .filter_map(|t| named(t))
                    .collect();
                let ty = match non_null.as_slice() {
                    [one] => *one,
                    _ => ArgType::Any,
                };
                Ok((ty, nullable || has_null))
            }
            Some(_) => Err(invalid(at, "`type` must be a string or an array")),
            None => {
                if let Some(Value::Array(all)) = schema.get("allOf")
                    && let [only] = all.as_slice()
                {
                    let (ty, n) = self.schema_type(self.resolve(only)?, depth + 1, at)?;
                    return Ok((ty, nullable || n));
                }
                if schema.get("properties").is_some() {
                    Ok((ArgType::Object, nullable))
                } else if schema.get("items").is_some() {
                    Ok((ArgType::Array, nullable))
                } else {
                    Ok((ArgType::Any, nullable))
                }
            }
        }
    }

    fn request_body(
        &self,
        raw: &'a Value,
        at: &str,
    ) -> Result<(BodyFormat, Vec<(String, FieldInfo)>), OpenApiError> {
        let body = self.resolve(raw)?;
        let body_required = body.get("required").and_then(Value::as_bool) == Some(true);
        let Some(content) = body.get("content") else {
            return Ok((BodyFormat::Other, Vec::new()));
        };
        let content = content
            .as_object()
            .ok_or_else(|| invalid(at, "`content` must be an object"))?;
        let essence = |media: &str| {
            media
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        };
        let json = content.iter().find(|(media, _)| {
            let m = essence(media);
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
        let form = content
            .iter()
            .find(|(media, _)| essence(media) == "application/x-www-form-urlencoded");
        let (format, media) = match (json, form) {
            (Some((_, m)), _) => (BodyFormat::Json, m),
            (None, Some((_, m))) => (BodyFormat::Form, m),
            (None, None) => return Ok((BodyFormat::Other, Vec::new())),
        };
        let mut fields: Vec<(String, FieldInfo)> = Vec::new();
        if let Some(schema) = media.get("schema") {
            self.collect_fields(
                schema,
                0,
                body_required,
                &mut fields,
                &format!("{at}.schema"),
            )?;
        }
        Ok((format, fields))
    }

    /// Collects top-level properties of a body schema, through `allOf`/`oneOf`/`anyOf`.
    fn collect_fields(
        &self,
        raw: &'a Value,
        depth: usize,
        required_ctx: bool,
        out: &mut Vec<(String, FieldInfo)>,
        at: &str,
    ) -> Result<(), OpenApiError> {
        if depth > self.limits.max_schema_depth {
            return Err(OpenApiError::TooDeep(at.chars().take(200).collect()));
        }
        let schema = self.resolve(raw)?;
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = schema.get("properties") {
            let props = props
                .as_object()
                .ok_or_else(|| invalid(at, "`properties` must be an object"))?;
            for (name, raw_prop) in props {
                let prop = self.resolve(raw_prop)?;
                let (ty, nullable) = self.schema_type(prop, depth, at)?;
                let item_ty = match prop.get("items") {
                    Some(items) => self.schema_type(self.resolve(items)?, depth, at)?.0,
                    None => ArgType::Any,
                };
                let info = FieldInfo {
                    ty,
                    item_ty,
                    required: required_ctx && required.contains(&name.as_str()),
                    sensitive: is_sensitive(raw_prop) || is_sensitive(prop),
                    nullable,
                };
                merge_field(out, name, info);
                if out.len() > self.limits.max_args {
                    return Err(invalid(at, "too many body fields"));
                }
            }
        }
        for (key, keeps_required) in [("allOf", true), ("oneOf", false), ("anyOf", false)] {
            if let Some(list) = schema.get(key) {
                let list = list
                    .as_array()
                    .ok_or_else(|| invalid(at, "schema composition must be an array"))?;
                for (i, sub) in list.iter().enumerate() {
                    self.collect_fields(
                        sub,
                        depth + 1,
                        required_ctx && keeps_required,
                        out,
                        &format!("{at}.{key}.{i}"),
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn merge_field(out: &mut Vec<(String, FieldInfo)>, name: &str, info: FieldInfo) {
    match out.iter_mut().find(|(n, _)| n == name) {
        Some((_, existing)) => {
            if existing.ty != info.ty {
                existing.ty = ArgType::Any;
            }
            if existing.item_ty != info.item_ty {
                existing.item_ty = ArgType::Any;
            }
            existing.required |= info.required;
            existing.sensitive |= info.sensitive;
            existing.nullable |= info.nullable;
        }
        None => out.push((name.to_owned(), info)),
    }
}

// ---------------------------------------------------------------------------------------
// Argument extraction

/// Extracts typed arguments from a matched request with an optional JSON body.
///
/// Returns a JSON object keyed by argument name. Undeclared query parameters and body
/// fields are not included. See [`extract_args_from`] for form bodies.
pub fn extract_args(
    matched: &MatchedOperation<'_>,
    query: Option<&str>,
    json_body: Option<&Value>,
) -> Result<Value, ArgError> {
    let body = match json_body {
        Some(v) => RequestBody::Json(v),
        None => RequestBody::None,
    };
    extract_args_from(matched, query, body)
}

/// Extracts typed arguments from a matched request.
///
/// Strings from the path, query and form bodies are converted to the declared type
/// (`"42"` to `42` for an integer); JSON values must already have it (an integral float such
/// as `5.0` is accepted as the integer `5`). A scalar given twice in the query or a form
/// body is an error, since servers disagree on which copy wins.
pub fn extract_args_from(
    matched: &MatchedOperation<'_>,
    query: Option<&str>,
    body: RequestBody<'_>,
) -> Result<Value, ArgError> {
    let op = matched.operation;
    let mut out = Map::new();

    for (name, value) in &matched.path_params {
        let spec = op
            .args
            .iter()
            .find(|a| a.location == ArgLocation::Path && &a.name == name);
        let ty = spec.map_or(ArgType::String, |s| s.ty);
        out.insert(name.clone(), coerce_text(name, value, ty)?);
    }

    let query_pairs = match query {
        Some(q) if op.args.iter().any(|a| a.location == ArgLocation::Query) => parse_query(q)?,
        _ => Vec::new(),
    };
    for spec in op.args.iter().filter(|a| a.location == ArgLocation::Query) {
        if let Some(v) = text_arg(spec, &query_pairs)? {
            out.insert(spec.name.clone(), v);
        }
    }

    let body_args = op.args.iter().filter(|a| a.location == ArgLocation::Body);
    match body {
        RequestBody::Json(value) if op.needs_body() => {
            let object = value.as_object().ok_or(ArgError::BodyNotObject)?;
            for spec in body_args {
                match object.get(&spec.name) {
                    Some(v) => {
                        out.insert(spec.name.clone(), check_json(spec, v)?);
                    }
                    None if spec.required => return Err(ArgError::Missing(spec.name.clone())),
                    None => {}
                }
            }
        }
        RequestBody::Form(text) if op.needs_body() => {
            let pairs = parse_query(text)?;
            for spec in body_args {
                if let Some(v) = text_arg(spec, &pairs)? {
                    out.insert(spec.name.clone(), v);
                }
            }
        }
        _ => {
            if let Some(spec) = body_args.into_iter().find(|a| a.required) {
                return Err(ArgError::Missing(spec.name.clone()));
            }
        }
    }
    Ok(Value::Object(out))
}

/// An argument carried as text (`key=value` pairs from a query or form body).
fn text_arg(spec: &ArgSpec, pairs: &[(String, String)]) -> Result<Option<Value>, ArgError> {
    let bracketed = format!("{}[]", spec.name);
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| *k == spec.name || (spec.ty == ArgType::Array && *k == bracketed))
        .map(|(_, v)| v.as_str())
        .collect();
    if values.is_empty() {
        return if spec.required {
            Err(ArgError::Missing(spec.name.clone()))
        } else {
            Ok(None)
        };
    }
    if spec.ty == ArgType::Array {
        let items: Vec<&str> = if spec.explode {
            values
        } else {
            match values.as_slice() {
                [one] => one.split(',').collect(),
                _ => return Err(ArgError::Duplicate(spec.name.clone())),
            }
        };
        let items = items
            .into_iter()
            .map(|item| coerce_text(&spec.name, item, spec.item_ty))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Some(Value::Array(items)));
    }
    match values.as_slice() {
        [one] => coerce_text(&spec.name, one, spec.ty).map(Some),
        _ => Err(ArgError::Duplicate(spec.name.clone())),
    }
}

fn shown(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    format!("`{short}`")
}

/// Converts text to a declared scalar type, strictly.
fn coerce_text(name: &str, text: &str, ty: ArgType) -> Result<Value, ArgError> {
    let mismatch = || ArgError::Type {
        name: name.to_owned(),
        expected: ty,
        found: shown(text),
    };
    match ty {
        ArgType::String | ArgType::Any | ArgType::Object | ArgType::Array => {
            Ok(Value::String(text.to_owned()))
        }
        ArgType::Integer => parse_integer(text).map(Value::from).ok_or_else(mismatch),
        ArgType::Number => {
            if let Some(i) = parse_integer(text) {
                return Ok(Value::from(i));
            }
            if !is_decimal_literal(text) {
                return Err(mismatch());
            }
            text.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(mismatch)
        }
        ArgType::Boolean => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(mismatch()),
        },
    }
}

/// `-?[0-9]+` fitting in i64; no `+`, spaces, or hex.
fn parse_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A JSON-style number: `-?digits(.digits)?([eE][+-]?digits)?`, at most 64 characters.
fn is_decimal_literal(text: &str) -> bool {
    if text.is_empty() || text.len() > 64 {
        return false;
    }
    let body = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (body.get(..i).unwrap_or_default(), body.get(i + 1..)),
        None => (body, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => all_digits(int) && all_digits(frac),
        None => all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        all_digits(e)
    });
    mantissa_ok && exponent_ok
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Largest integer an f64 holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

fn check_json(spec: &ArgSpec, v: &Value) -> Result<Value, ArgError> {
    if v.is_null() {
        return if spec.nullable || spec.ty == ArgType::Any {
            Ok(Value::Null)
        } else {
            Err(ArgError::Type {
                name: spec.name.clone(),
                expected: spec.ty,
                found: "null".into(),
            })
        };
    }
    let checked = check_json_type(&spec.name, spec.ty, v)?;
    if let (ArgType::Array, Value::Array(items)) = (spec.ty, &checked)
        && spec.item_ty != ArgType::Any
    {
        let items = items
            .iter()
            .map(|item| check_json_type(&spec.name, spec.item_ty, item))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Value::Array(items));
    }
    Ok(checked)
}

fn check_json_type(name: &str, ty: ArgType, v: &Value) -> Result<Value, ArgError> {
    let mismatch = || ArgError::Type {
        name: name.to_owned(),
        expected: ty,
        found: json_kind(v).to_owned(),
    };
    let ok = match ty {
        ArgType::Any => true,
        ArgType::String => v.is_string(),
        ArgType::Number => v.is_number(),
        ArgType::Boolean => v.is_boolean(),
        ArgType::Array => v.is_array(),
        ArgType::Object => v.is_object(),
        ArgType::Integer => {
            if let Some(i) = v.as_i64() {
                return Ok(Value::from(i));
            }
            let integral = v
                .as_f64()
                .filter(|f| v.is_f64() && f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER);
            return match integral {
                // INVARIANT: |f| <= 2^53, so the cast is exact.
                #[allow(clippy::cast_possible_truncation)]
                Some(f) => Ok(Value::from(f as i64)),
                None => Err(mismatch()),
            };
        }
    };
    if ok { Ok(v.clone()) } else { Err(mismatch()) }
}

/// Replaces the values of sensitive arguments with `"<redacted>"`, for audit records.
pub fn redact_args(operation: &Operation, args: &mut Value) {
    let Some(object) = args.as_object_mut() else {
        return;
    };
    for name in operation.sensitive_args() {
        if let Some(v) = object.get_mut(name) {
            *v = Value::String("<redacted>".into());
        }
    }
}

/// Parses a JSON request body, rejecting duplicate object keys at any depth.
///
/// `{"amount": 1, "amount": 100000}` is refused: policy would see one value and the
/// upstream might act on the other.
pub fn parse_json_body(bytes: &[u8]) -> Result<Value, ArgError> {
    serde_json::from_slice::<StrictValue>(bytes)
        .map(|StrictValue(v)| v)
        .map_err(|e| ArgError::InvalidJson(e.to_string()))
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a json value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let short: String = key.chars().take(40).collect();
                return Err(serde::de::Error::custom(format!("duplicate key `{short}`")));
            }
            let StrictValue(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog(text: &str) -> ServiceCatalog {
        ServiceCatalog::from_openapi(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn path(rest: &str) -> NormalizedPath {
        NormalizedPath::from_parts("svc", rest).unwrap()
    }

    fn matched_name<'c>(c: &'c ServiceCatalog, method: &str, rest: &str) -> Option<&'c str> {
        c.match_request(method, &path(rest))
            .map(|m| m.operation.name.as_str())
    }

    fn arg<'o>(op: &'o Operation, name: &str) -> &'o ArgSpec {
        op.args
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no arg {name}"))
    }

    const PETS: &str = r##"
openapi: 3.0.3
info: { title: pets, version: "1" }
paths:
  /pets:
    get:
      parameters:
        - { name: limit, in: query, schema: { type: integer } }
        - { name: tags, in: query, schema: { type: array, items: { type: string } } }
        - { name: ids, in: query, explode: false, schema: { type: array, items: { type: integer } } }
        - { name: X-Trace, in: header, schema: { type: string } }
    post:
      operationId: pets.create
      requestBody:
        $ref: "#/components/requestBodies/NewPet"
  /pets/mine:
    get: { operationId: pets.mine }
  /pets/{petId}:
    parameters:
      - { name: petId, in: path, required: true, schema: { type: string } }
      - { name: verbose, in: query, schema: { type: boolean } }
    get:
      operationId: pets.get
      parameters:
        - { name: petId, in: path, required: true, schema: { type: integer } }
    delete:
      operationId: pets.delete
    head:
      operationId: pets.head
      x-steward-class: write
  /pets/{petId}.json:
    get: { operationId: pets.getJson }
  /v1/{name}:cancel:
    post: { operationId: ops.cancel }
  /pets/{petId}/photos/{photoId}:
    put: { operationId: photos.put }
  /login:
    post:
      operationId: login
      parameters:
        - { name: token, in: query, x-steward-sensitive: true, schema: { type: string } }
      requestBody:
        required: true
        content:
          application/json:
            schema:
              allOf:
                - $ref: "#/components/schemas/Credentials"
                - type: object
                  properties:
                    remember: { type: boolean }
components:
  requestBodies:
    NewPet:
      required: true
      content:
        application/json:
          schema: { $ref: "#/components/schemas/Pet" }
  schemas:
    Pet:
      type: object
      required: [name]
      properties:
        name: { type: string }
        age: { type: integer }
        weight: { type: number, nullable: true }
        tags: { type: array, items: { type: string } }
        owner: { $ref: "#/components/schemas/Owner" }
        api_key: { type: string, x-steward-sensitive: true }
    Owner:
      type: object
      properties: { id: { type: integer } }
    Credentials:
      type: object
      required: [user, password]
      properties:
        user: { type: string }
        password: { type: string, format: password }
"##;

    #[test]
    fn operations_get_names_classes_and_typed_args() {
        let c = catalog(PETS);
        let names: Vec<&str> = c.operations().iter().map(|o| o.name.as_str()).collect();
        assert!(names.contains(&"GET /pets"), "{names:?}");
        assert!(names.contains(&"pets.create"));

        let list = c.operation("GET /pets").unwrap();
        assert_eq!(list.class, OperationClass::Read);
        assert_eq!(list.method, "GET");
        assert_eq!(list.path_template, "/pets");
        assert_eq!(arg(list, "limit").ty, ArgType::Integer);
        assert_eq!(arg(list, "limit").location, ArgLocation::Query);
        assert!(!arg(list, "limit").required);
        assert_eq!(arg(list, "tags").item_ty, ArgType::String);
        assert!(!arg(list, "ids").explode);
        assert!(
            list.args.iter().all(|a| a.name != "X-Trace"),
            "header params are not args"
        );
        assert!(!list.needs_body());

        assert_eq!(
            c.operation("pets.create").unwrap().class,
            OperationClass::Write
        );
        assert_eq!(
            c.operation("pets.delete").unwrap().class,
            OperationClass::Delete
        );
        assert_eq!(
            c.operation("pets.head").unwrap().class,
            OperationClass::Write,
            "x-steward-class overrides"
        );
        assert_eq!(
            c.operation("ops.cancel").unwrap().class,
            OperationClass::Write
        );
    }

    #[test]
    fn path_level_parameters_merge_and_operation_level_wins() {
        let c = catalog(PETS);
        let get = c.operation("pets.get").unwrap();
        assert_eq!(
            arg(get, "petId").ty,
            ArgType::Integer,
            "operation-level override"
        );
        assert!(arg(get, "petId").required);
        assert_eq!(
            arg(get, "verbose").ty,
            ArgType::Boolean,
            "inherited from the path item"
        );
        let delete = c.operation("pets.delete").unwrap();
        assert_eq!(
            arg(delete, "petId").ty,
            ArgType::String,
            "path-level definition"
        );
        // Undeclared template parameters become required strings.
        let put = c.operation("photos.put").unwrap();
        assert_eq!(arg(put, "photoId").ty, ArgType::String);
        assert!(arg(put, "photoId").required);
    }

    #[test]
    fn body_fields_come_from_refs_and_compositions() {
        let c = catalog(PETS);
        let create = c.operation("pets.create").unwrap();
        assert_eq!(create.body, Some(BodyFormat::Json));
        assert!(arg(create, "name").required);
        assert!(!arg(create, "age").required);
        assert_eq!(arg(create, "age").ty, ArgType::Integer);
        assert!(arg(create, "weight").nullable);
        assert_eq!(arg(create, "owner").ty, ArgType::Object);
        assert!(arg(create, "api_key").sensitive);
        assert!(!arg(create, "name").sensitive);
        assert_eq!(create.sensitive_args().collect::<Vec<_>>(), ["api_key"]);

        let login = c.operation("login").unwrap();
        assert!(arg(login, "password").sensitive, "format: password");
        assert!(arg(login, "password").required, "allOf keeps required");
        assert!(
            arg(login, "token").sensitive,
            "x-steward-sensitive on a parameter"
        );
        assert_eq!(arg(login, "remember").ty, ArgType::Boolean);
    }

    #[test]
    fn literal_segments_beat_mixed_which_beat_parameters() {
        let c = catalog(PETS);
        assert_eq!(matched_name(&c, "GET", "/pets/mine"), Some("pets.mine"));
        assert_eq!(matched_name(&c, "GET", "/pets/42"), Some("pets.get"));
        assert_eq!(
            matched_name(&c, "GET", "/pets/42.json"),
            Some("pets.getJson")
        );
        assert_eq!(matched_name(&c, "get", "/pets"), Some("GET /pets"));
        let m = c.match_request("POST", &path("/v1/job-7:cancel")).unwrap();
        assert_eq!(m.operation.name, "ops.cancel");
        assert_eq!(m.path_params, [("name".to_string(), "job-7".to_string())]);
        let m = c
            .match_request("PUT", &path("/pets/a%20b/photos/p1"))
            .unwrap();
        assert_eq!(
            m.path_params,
            [
                ("petId".to_string(), "a b".to_string()),
                ("photoId".to_string(), "p1".to_string())
            ]
        );
        // No match: unknown path, wrong method, extra or missing segments, trailing slash.
        assert_eq!(matched_name(&c, "GET", "/cats"), None);
        assert_eq!(matched_name(&c, "PATCH", "/pets/1"), None);
        assert_eq!(matched_name(&c, "GET", "/pets/1/photos"), None);
        assert_eq!(matched_name(&c, "GET", "/pets/"), None);
        assert_eq!(matched_name(&c, "GET", ""), None);
        // Routing is per method: HEAD uses HEAD operations first (even a templated one),
        // and falls back to GET only when no HEAD operation matches.
        assert_eq!(matched_name(&c, "HEAD", "/pets/1"), Some("pets.head"));
        assert_eq!(matched_name(&c, "HEAD", "/pets/mine"), Some("pets.head"));
        assert_eq!(matched_name(&c, "HEAD", "/pets"), Some("GET /pets"));
        // Per method, a templated route answers where another method has a literal one.
        assert_eq!(
            matched_name(&c, "DELETE", "/pets/mine"),
            Some("pets.delete")
        );
    }

    #[test]
    fn matching_backtracks_from_a_literal_dead_end() {
        let c = catalog(
            r#"{"openapi":"3.1.0","paths":{
              "/a/b/c":{"get":{"operationId":"abc"}},
              "/a/{x}/d":{"get":{"operationId":"axd"}},
              "/{y}/b/e":{"get":{"operationId":"ybe"}}}}"#,
        );
        assert_eq!(matched_name(&c, "GET", "/a/b/c"), Some("abc"));
        assert_eq!(matched_name(&c, "GET", "/a/b/d"), Some("axd"));
        assert_eq!(matched_name(&c, "GET", "/a/b/e"), Some("ybe"));
        let m = c.match_request("GET", &path("/a/b/e")).unwrap();
        assert_eq!(
            m.path_params,
            [("y".to_string(), "a".to_string())],
            "no stale captures"
        );
    }

    #[test]
    fn mixed_segments_capture_suffixes_and_inner_literals() {
        let c = catalog(
            r#"{"openapi":"3.0.0","paths":{
              "/f/{name}.{ext}":{"get":{"operationId":"file"}},
              "/g/{name}.json":{"get":{"operationId":"json"}}}}"#,
        );
        let m = c.match_request("GET", &path("/f/a.tar.gz")).unwrap();
        assert_eq!(m.path_params[0].1, "a");
        assert_eq!(m.path_params[1].1, "tar.gz");
        let m = c.match_request("GET", &path("/g/a.b.json")).unwrap();
        assert_eq!(m.path_params[0].1, "a.b");
        assert!(
            c.match_request("GET", &path("/g/.json")).is_none(),
            "parameters are never empty"
        );
        assert!(c.match_request("GET", &path("/f/noext")).is_none());
    }

    #[test]
    fn typed_args_from_path_query_and_json_body() {
        let c = catalog(PETS);
        let m = c.match_request("GET", &path("/pets/7")).unwrap();
        let args = extract_args(&m, Some("verbose=true&other=x"), None).unwrap();
        assert_eq!(args, json!({"petId": 7, "verbose": true}));

        let m = c.match_request("GET", &path("/pets")).unwrap();
        let args = extract_args(&m, Some("limit=10&tags=a&tags=b+c&ids=1,2,3"), None).unwrap();
        assert_eq!(
            args,
            json!({"limit": 10, "tags": ["a", "b c"], "ids": [1, 2, 3]})
        );
        assert_eq!(extract_args(&m, None, None).unwrap(), json!({}));

        let m = c.match_request("POST", &path("/pets")).unwrap();
        let body = json!({"name": "rex", "age": 3.0, "weight": null, "tags": ["x"], "extra": 1});
        let args = extract_args(&m, None, Some(&body)).unwrap();
        assert_eq!(
            args,
            json!({"name": "rex", "age": 3, "weight": null, "tags": ["x"]})
        );
        assert!(args["age"].is_i64());
    }

    #[test]
    fn type_mismatches_duplicates_and_missing_args_are_errors() {
        let c = catalog(PETS);
        let m = c.match_request("GET", &path("/pets/abc")).unwrap();
        let e = extract_args(&m, None, None).unwrap_err();
        assert_eq!(e.to_string(), "argument `petId` must be integer, got `abc`");

        let m = c.match_request("GET", &path("/pets")).unwrap();
        for q in [
            "limit=1&limit=1000",
            "limit=+5",
            "limit=0x10",
            "limit=1.5",
            "limit=99999999999999999999",
            "ids=1,x",
        ] {
            assert!(extract_args(&m, Some(q), None).is_err(), "{q}");
        }
        assert_eq!(
            extract_args(&m, Some("limit=1&limit=2"), None),
            Err(ArgError::Duplicate("limit".into()))
        );
        assert!(matches!(
            extract_args(&m, Some("limit=%zz"), None),
            Err(ArgError::Malformed(_))
        ));

        let m = c.match_request("POST", &path("/pets")).unwrap();
        assert_eq!(
            extract_args(&m, None, None),
            Err(ArgError::Missing("name".into()))
        );
        assert_eq!(
            extract_args(&m, None, Some(&json!([1]))),
            Err(ArgError::BodyNotObject)
        );
        assert_eq!(
            extract_args(&m, None, Some(&json!({}))),
            Err(ArgError::Missing("name".into()))
        );
        for body in [
            json!({"name": 5}),
            json!({"name": "a", "age": "3"}),
            json!({"name": "a", "age": 3.5}),
            json!({"name": "a", "age": 1e300}),
            json!({"name": "a", "tags": "x"}),
            json!({"name": "a", "tags": [1]}),
            json!({"name": null}),
            json!({"name": "a", "owner": []}),
        ] {
            assert!(
                matches!(
                    extract_args(&m, None, Some(&body)),
                    Err(ArgError::Type { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn form_bodies_are_typed_like_queries() {
        let c = catalog(include_str!(
            "../../../examples/services/stripe-refunds.yaml"
        ));
        let m = c.match_request("POST", &path("/v1/refunds")).unwrap();
        assert_eq!(m.operation.body, Some(BodyFormat::Form));
        let args = extract_args_from(
            &m,
            None,
            RequestBody::Form("amount=500&currency=usd&charge=ch_1&metadata[k]=v"),
        )
        .unwrap();
        assert_eq!(
            args,
            json!({"amount": 500, "currency": "usd", "charge": "ch_1"})
        );
        assert_eq!(
            extract_args_from(&m, None, RequestBody::Form("amount=500&amount=50000")),
            Err(ArgError::Duplicate("amount".into()))
        );
        assert!(extract_args_from(&m, None, RequestBody::Form("amount=5.00")).is_err());
    }

    #[test]
    fn sensitive_args_are_redacted() {
        let c = catalog(PETS);
        let m = c.match_request("POST", &path("/login")).unwrap();
        let body = json!({"user": "u", "password": "hunter2", "remember": true});
        let mut args = extract_args(&m, Some("token=abc"), Some(&body)).unwrap();
        assert_eq!(args["password"], "hunter2");
        redact_args(m.operation, &mut args);
        assert_eq!(
            args,
            json!({"user": "u", "password": "<redacted>", "token": "<redacted>", "remember": true})
        );
    }

    #[test]
    fn json_bodies_with_duplicate_keys_are_refused() {
        assert_eq!(
            parse_json_body(br#"{"a":[1,{"b":null}]}"#).unwrap(),
            json!({"a": [1, {"b": null}]})
        );
        let e = parse_json_body(br#"{"amount":1,"amount":100000}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key `amount`"), "{e}");
        assert!(parse_json_body(br#"{"x":{"k":1,"k":2}}"#).is_err());
        assert!(parse_json_body(b"{").is_err());
        let deep = "[".repeat(10_000);
        assert!(
            parse_json_body(deep.as_bytes()).is_err(),
            "recursion limit holds"
        );
    }

    #[test]
    fn malformed_specs_give_clear_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid spec"),
            ("[1, 2]", "not an object"),
            ("{\"swagger\": \"2.0\"}", "unsupported spec version `2.0`"),
            (
                "{\"openapi\": \"4.0.0\"}",
                "unsupported spec version `4.0.0`",
            ),
            ("{\"openapi\": 3.1}", "unsupported spec version `3.1`"),
            (
                "{\"openapi\": \"3.1.0\", \"paths\": []}",
                "`paths`: must be an object",
            ),
            (
                "openapi: 3.1.0\npaths: {/a: {get: {parameters: [{$ref: '#/nope'}]}}}",
                "unresolved `$ref` `#/nope`",
            ),
            (
                "openapi: 3.1.0\npaths: {/a: {get: {parameters: [{$ref: 'other.yaml#/x'}]}}}",
                "unsupported `$ref`",
            ),
            (
                "openapi: 3.1.0\npaths: {/a: {$ref: '#/paths/~1a'}}",
                "`$ref` cycle",
            ),
            (
                "openapi: 3.1.0\npaths: {/a: {get: {operationId: x}}, /b: {get: {operationId: x}}}",
                "duplicate operation name `x`",
            ),
            (
                r#"{"openapi": "3.1.0", "paths": {"/a/{x}": {"get": {}}, "/a/{y}": {"get": {}}}}"#,
                "conflicts with another operation",
            ),
            (
                r#"{"openapi": "3.1.0", "paths": {"/a/{x": {"get": {}}}}"#,
                "unclosed",
            ),
            (
                "openapi: 3.1.0\npaths: {a: {get: {}}}",
                "must start with `/`",
            ),
            ("openapi: 3.1.0\npaths: {/a//b: {get: {}}}", "empty segment"),
            (
                r#"{"openapi": "3.1.0", "paths": {"/a/{x}{y}": {"get": {}}}}"#,
                "adjacent",
            ),
            (
                "openapi: 3.1.0\npaths: {/a: {get: {x-steward-class: admin}}}",
                "invalid `x-steward-class` `admin`",
            ),
            (
                "openapi: 3.1.0\npaths: {/a: {get: {operationId: 'has space'}}}",
                "operationId",
            ),
            (
                "openapi: 3.1.0\npaths: {/a: {get: {parameters: [{name: q}]}}}",
                "`in` must be",
            ),
            (
                r#"{"openapi": "3.1.0", "paths": {"/a/{id}": {"post": {"requestBody": {"content": {"application/json": {"schema": {"properties": {"id": {"type": "string"}}}}}}}}}}"#,
                "declares `id` both as a parameter and a body field",
            ),
            (
                "openapi: 3.1.0\npaths: {/a: {post: {requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/A'}}}}}}}\ncomponents: {schemas: {A: {allOf: [{$ref: '#/components/schemas/A'}]}}}",
                "nests too deeply",
            ),
        ];
        for (text, want) in cases {
            match ServiceCatalog::from_openapi(text) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => assert!(
                    e.to_string().contains(want),
                    "{text}\n  got: {e}\n  want: {want}"
                ),
            }
        }
    }

    #[test]
    fn size_and_count_limits_hold() {
        let limits = ImportLimits {
            max_bytes: 100,
            ..ImportLimits::default()
        };
        let big = format!("openapi: 3.1.0\ninfo: {{title: '{}'}}", "x".repeat(200));
        assert_eq!(
            ServiceCatalog::from_openapi_with_limits(&big, &limits).unwrap_err(),
            OpenApiError::TooLarge(100)
        );
        let limits = ImportLimits {
            max_operations: 2,
            ..ImportLimits::default()
        };
        let three = "openapi: 3.1.0\npaths: {/a: {get: {}, put: {}, post: {}}}";
        assert_eq!(
            ServiceCatalog::from_openapi_with_limits(three, &limits).unwrap_err(),
            OpenApiError::TooManyOperations(2)
        );
        // A YAML alias bomb must fail (or stay small), never blow up.
        let bomb = "openapi: 3.1.0\na: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
        assert!(matches!(
            ServiceCatalog::from_openapi(bomb),
            Err(OpenApiError::Syntax(_))
        ));
        let deep = format!(
            "openapi: 3.1.0\nx: {}{}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(ServiceCatalog::from_openapi(&deep).is_err());
    }

    #[test]
    fn catalog_round_trips_through_serde_and_new() {
        let c = catalog(PETS);
        let stored = serde_json::to_string(c.operations()).unwrap();
        let ops: Vec<Operation> = serde_json::from_str(&stored).unwrap();
        let rebuilt = ServiceCatalog::new(ops).unwrap();
        assert_eq!(rebuilt.operations(), c.operations());
        assert_eq!(
            matched_name(&rebuilt, "GET", "/pets/mine"),
            Some("pets.mine")
        );
    }

    #[test]
    fn example_github_issues_spec_imports() {
        let c = catalog(include_str!(
            "../../../examples/services/github-issues.yaml"
        ));
        let classes: Vec<(&str, OperationClass)> = c
            .operations()
            .iter()
            .map(|o| (o.name.as_str(), o.class))
            .collect();
        for want in [
            ("issues.list", OperationClass::Read),
            ("issues.create", OperationClass::Write),
            ("issues.get", OperationClass::Read),
            ("issues.update", OperationClass::Write),
            ("issues.createComment", OperationClass::Write),
        ] {
            assert!(classes.contains(&want), "{want:?} in {classes:?}");
        }
        assert_eq!(c.operations().len(), 5);
        let m = c
            .match_request("POST", &path("/repos/octo/hello/issues"))
            .unwrap();
        assert_eq!(m.operation.name, "issues.create");
        let args = extract_args(
            &m,
            None,
            Some(&json!({"title": "bug", "labels": ["p1"], "milestone": null})),
        )
        .unwrap();
        assert_eq!(
            args,
            json!({"owner": "octo", "repo": "hello", "title": "bug", "labels": ["p1"], "milestone": null})
        );
        let m = c
            .match_request("PATCH", &path("/repos/octo/hello/issues/12"))
            .unwrap();
        assert_eq!(m.operation.name, "issues.update");
        let args = extract_args(&m, None, Some(&json!({"state": "closed"}))).unwrap();
        assert_eq!(args["issue_number"], 12);
        let m = c
            .match_request("GET", &path("/repos/octo/hello/issues"))
            .unwrap();
        assert_eq!(
            extract_args(&m, Some("state=open&per_page=50"), None).unwrap()["per_page"],
            50
        );
    }

    #[test]
    fn example_slack_spec_imports() {
        let c = catalog(include_str!("../../../examples/services/slack-chat.yaml"));
        let op = c.operation("chat.postMessage").unwrap();
        assert_eq!(op.class, OperationClass::Write);
        assert_eq!(op.body, Some(BodyFormat::Json));
        assert!(arg(op, "channel").required);
        assert_eq!(arg(op, "text").ty, ArgType::String);
        let m = c.match_request("POST", &path("/chat.postMessage")).unwrap();
        let args = extract_args(&m, None, Some(&json!({"channel": "C1", "text": "hi"}))).unwrap();
        assert_eq!(args, json!({"channel": "C1", "text": "hi"}));
    }

    #[test]
    fn example_stripe_spec_imports() {
        let c = catalog(include_str!(
            "../../../examples/services/stripe-refunds.yaml"
        ));
        let create = c.operation("refunds.create").unwrap();
        assert_eq!(create.class, OperationClass::Write);
        assert_eq!(arg(create, "amount").ty, ArgType::Integer);
        assert_eq!(arg(create, "currency").ty, ArgType::String);
        assert_eq!(arg(create, "charge").location, ArgLocation::Body);
        assert_eq!(
            c.operation("refunds.list").unwrap().class,
            OperationClass::Read
        );
        assert_eq!(
            c.operation("refunds.retrieve").unwrap().class,
            OperationClass::Read
        );
        assert_eq!(matched_name(&c, "GET", "/v1/refunds"), Some("refunds.list"));
        assert_eq!(
            matched_name(&c, "GET", "/v1/refunds/re_123"),
            Some("refunds.retrieve")
        );
    }

    #[test]
    fn example_sendgrid_spec_imports() {
        let c = catalog(include_str!(
            "../../../examples/services/sendgrid-mail.yaml"
        ));
        let op = c.operation("mail.send").unwrap();
        assert_eq!(op.class, OperationClass::Write);
        assert_eq!(op.path_template, "/v3/mail/send");
        assert_eq!(arg(op, "personalizations").ty, ArgType::Array);
        assert_eq!(arg(op, "personalizations").item_ty, ArgType::Object);
        assert_eq!(arg(op, "from").ty, ArgType::Object);
        assert!(arg(op, "subject").required);
        assert_eq!(arg(op, "send_at").ty, ArgType::Integer);
    }
}
