//! JSON-RPC 2.0 messages as MCP uses them: strict parsing of untrusted bytes, with limits.
//!
//! One message per body (MCP removed batching in 2025-06-18); `jsonrpc` must be `"2.0"`;
//! ids are strings or integers, never null; `params` is an object when present. Anything
//! else is refused with the JSON-RPC error code that names the defect.

use serde_json::{Map, Value, json};

/// Largest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Deepest nesting accepted (serde_json also stops at 128).
pub const MAX_DEPTH: usize = 64;

/// `-32700`: the bytes are not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// `-32600`: JSON, but not a valid JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;
/// `-32601`: the method does not exist here.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// `-32602`: bad parameters (also: unknown tool).
pub const INVALID_PARAMS: i64 = -32602;
/// `-32603`: internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// `-32020`: a routing header disagrees with the body (2026-07-28).
pub const HEADER_MISMATCH: i64 = -32020;
/// `-32022`: the requested protocol version is not served (2026-07-28).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// A request id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl Id {
    /// The id as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Number(n) => json!(n),
            Self::String(s) => json!(s),
        }
    }

    fn from_json(value: &Value) -> Result<Self, RpcError> {
        match value {
            Value::String(s) if s.len() <= 256 => Ok(Self::String(s.clone())),
            Value::Number(n) => n.as_i64().map(Self::Number).ok_or_else(|| {
                RpcError::new(INVALID_REQUEST, "the id must be a string or an integer")
            }),
            _ => Err(RpcError::new(
                INVALID_REQUEST,
                "the id must be a string (at most 256 bytes) or an integer",
            )),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The code.
    pub code: i64,
    /// A short message; never internal details.
    pub message: String,
    /// Optional structured data.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The error object as JSON.
    pub fn to_json(&self) -> Value {
        let mut obj = json!({"code": self.code, "message": self.message});
        if let (Some(data), Some(map)) = (&self.data, obj.as_object_mut()) {
            map.insert("data".into(), data.clone());
        }
        obj
    }
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request, which expects a response.
    Request {
        /// Its id.
        id: Id,
        /// The method.
        method: String,
        /// Parameters (an empty object when absent).
        params: Map<String, Value>,
    },
    /// A notification (no id, no response).
    Notification {
        /// The method.
        method: String,
        /// Parameters (an empty object when absent).
        params: Map<String, Value>,
    },
    /// A successful response.
    Response {
        /// The id it answers.
        id: Id,
        /// The result.
        result: Value,
    },
    /// An error response (the id is absent when the request could not be read).
    Error {
        /// The id it answers.
        id: Option<Id>,
        /// The error.
        error: RpcError,
    },
}

fn depth(value: &Value) -> usize {
    // Iterative, so hostile nesting cannot exhaust the stack.
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    max
}

/// Parses one message from untrusted bytes.
pub fn parse(bytes: &[u8]) -> Result<Message, RpcError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(RpcError::new(
            INVALID_REQUEST,
            format!("the message exceeds {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| RpcError::new(PARSE_ERROR, "the body is not valid JSON"))?;
    from_value(value)
}

/// Checks a decoded value is one valid message.
pub fn from_value(value: Value) -> Result<Message, RpcError> {
    if depth(&value) > MAX_DEPTH {
        return Err(RpcError::new(
            INVALID_REQUEST,
            format!("the message nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    let mut obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err(RpcError::new(INVALID_REQUEST, "batches are not supported")),
        _ => {
            return Err(RpcError::new(
                INVALID_REQUEST,
                "a message must be a JSON object",
            ));
        }
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(INVALID_REQUEST, "`jsonrpc` must be \"2.0\""));
    }
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "jsonrpc" | "id" | "method" | "params" | "result" | "error"
        ) {
            return Err(RpcError::new(
                INVALID_REQUEST,
                format!("unexpected member `{}`", truncate(key, 64)),
            ));
        }
    }
    let id = match obj.remove("id") {
        None => None,
        Some(Value::Null) => {
            // Only an error response may carry a null id (the request was unreadable).
            if obj.contains_key("error") && !obj.contains_key("method") {
                None
            } else {
                return Err(RpcError::new(INVALID_REQUEST, "the id must not be null"));
            }
        }
        Some(v) => Some(Id::from_json(&v)?),
    };
    let has_method = obj.contains_key("method");
    let has_result = obj.contains_key("result");
    let has_error = obj.contains_key("error");
    match (has_method, has_result, has_error) {
        (true, false, false) => {
            let method = match obj.remove("method") {
                Some(Value::String(m)) if !m.is_empty() && m.len() <= 256 => m,
                _ => {
                    return Err(RpcError::new(
                        INVALID_REQUEST,
                        "`method` must be a non-empty string of at most 256 bytes",
                    ));
                }
            };
            let params = match obj.remove("params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(p)) => p,
                Some(_) => return Err(RpcError::new(INVALID_PARAMS, "`params` must be an object")),
            };
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        (false, true, false) => {
            let id = id.ok_or_else(|| RpcError::new(INVALID_REQUEST, "a response needs an id"))?;
            if obj.contains_key("params") {
                return Err(RpcError::new(INVALID_REQUEST, "a response has no params"));
            }
            Ok(Message::Response {
                id,
                result: obj.remove("result").unwrap_or(Value::Null),
            })
        }
        (false, false, true) => {
            if obj.contains_key("params") {
                return Err(RpcError::new(INVALID_REQUEST, "a response has no params"));
            }
            let error = obj.remove("error").unwrap_or(Value::Null);
            let code = error.get("code").and_then(Value::as_i64);
            let message = error.get("message").and_then(Value::as_str);
            match (code, message) {
                (Some(code), Some(message)) => Ok(Message::Error {
                    id,
                    error: RpcError {
                        code,
                        message: message.to_owned(),
                        data: error.get("data").cloned(),
                    },
                }),
                _ => Err(RpcError::new(
                    INVALID_REQUEST,
                    "an error needs an integer code and a string message",
                )),
            }
        }
        _ => Err(RpcError::new(
            INVALID_REQUEST,
            "a message is exactly one of request, notification, result or error",
        )),
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The wire form of a request, serialized straight from borrowed parts (no `Value` tree
/// is built, and the parameters are not copied).
pub fn request_bytes(
    id: i64,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Request<'a> {
        jsonrpc: &'static str,
        id: i64,
        method: &'a str,
        params: &'a Map<String, Value>,
    }
    serde_json::to_vec(&Request {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
}

impl Message {
    /// The message as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Request { id, method, params } => {
                json!({"jsonrpc": "2.0", "id": id.to_json(), "method": method, "params": params})
            }
            Self::Notification { method, params } => {
                json!({"jsonrpc": "2.0", "method": method, "params": params})
            }
            Self::Response { id, result } => {
                json!({"jsonrpc": "2.0", "id": id.to_json(), "result": result})
            }
            Self::Error { id, error } => json!({
                "jsonrpc": "2.0",
                "id": id.as_ref().map(Id::to_json).unwrap_or(Value::Null),
                "error": error.to_json(),
            }),
        }
    }
}

/// A success response body.
pub fn response(id: &Id, result: Value) -> Value {
    Message::Response {
        id: id.clone(),
        result,
    }
    .to_json()
}

/// An error response body.
pub fn error_response(id: Option<&Id>, error: &RpcError) -> Value {
    Message::Error {
        id: id.cloned(),
        error: error.clone(),
    }
    .to_json()
}

/// JSON with object keys sorted at every level: the canonical form hashed into digests.
pub fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    if let Some(v) = map.get(k) {
                        out.insert(k.clone(), sorted(v));
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // With serde_json's default map (a BTreeMap) insertion order is already sorted; with
    // `preserve_order` the explicit sort above keeps the form canonical either way.
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_and_responses_parse() {
        let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(matches!(
            m,
            Message::Request {
                id: Id::Number(1),
                ..
            }
        ));
        let m = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(m, Message::Notification { .. }));
        let m = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(m, Message::Response { .. }));
        let m =
            parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).unwrap();
        assert!(matches!(m, Message::Error { id: None, .. }));
    }

    #[test]
    fn malformed_messages_are_refused_with_the_right_code() {
        let code = |b: &[u8]| parse(b).unwrap_err().code;
        assert_eq!(code(b"{"), PARSE_ERROR);
        assert_eq!(
            code(br#"[{"jsonrpc":"2.0","id":1,"method":"x"}]"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#),
            INVALID_PARAMS
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"x","extra":1}"#),
            INVALID_REQUEST
        );
        let deep = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{{\"a\":{}1{}}}}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(code(deep.as_bytes()), INVALID_REQUEST);
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(code(&big), INVALID_REQUEST);
    }

    #[test]
    fn canonical_form_sorts_keys() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        assert_eq!(canonical(&a), r#"{"a":{"c":3,"d":2},"b":1}"#);
    }

    #[test]
    fn messages_round_trip() {
        for text in [
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a__b"}}"#,
            r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no"}}"#,
        ] {
            let m = parse(text.as_bytes()).unwrap();
            assert_eq!(from_value(m.to_json()).unwrap(), m);
        }
    }

    #[test]
    fn request_bytes_are_the_request_message() {
        let params = json!({"name": "a__b", "arguments": {"n": 1, "s": "é\"x"}});
        let Value::Object(params) = params else {
            unreachable!()
        };
        let bytes = request_bytes(9, "tools/call", &params).unwrap();
        let expected = Message::Request {
            id: Id::Number(9),
            method: "tools/call".into(),
            params,
        };
        assert_eq!(parse(&bytes).unwrap(), expected);
    }
}
