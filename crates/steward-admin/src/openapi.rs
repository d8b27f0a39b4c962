//! The OpenAPI 3.1 document of the admin API, generated from the route table.

use axum::Json;
use serde_json::{Map, Value, json};

use crate::auth::{ROUTES, Role, RouteAccess};

fn roles(access: RouteAccess) -> &'static str {
    match access {
        RouteAccess::Admin => "admin",
        RouteAccess::Approve => "admin, approver",
        RouteAccess::Read => "admin, auditor, approver",
        RouteAccess::Owner => "admin, owner (own identities only)",
        RouteAccess::Any => "any admin role",
    }
}

/// The media types of a route's success response: JSON, and NDJSON for exports.
fn ok_content(path: &str) -> Value {
    if path.ends_with("/export") {
        json!({"application/x-ndjson": {"schema": {}}, "application/json": {"schema": {}}})
    } else {
        json!({"application/json": {"schema": {}}})
    }
}

/// Builds the document.
pub fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, access, summary) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "description": format!("Roles: {}.", roles(*access)),
            "operationId": format!("{}{}", method.to_lowercase(), path.replace(['/', '{', '}'], "_")),
            "parameters": params,
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "OK", "content": ok_content(path)},
                "400": {"$ref": "#/components/responses/Problem"},
                "401": {"$ref": "#/components/responses/Problem"},
                "403": {"$ref": "#/components/responses/Problem"},
                "404": {"$ref": "#/components/responses/Problem"},
                "409": {"$ref": "#/components/responses/Problem"},
                "415": {"$ref": "#/components/responses/Problem"},
                "422": {"$ref": "#/components/responses/Problem"},
                "503": {"$ref": "#/components/responses/Problem"}
            }
        });
        // Machine-readable role list, derived from the same check the middleware runs.
        let roles: Vec<&str> = [Role::Admin, Role::Approver, Role::Auditor, Role::Owner]
            .into_iter()
            .filter(|r| access.allows(*r))
            .map(Role::as_str)
            .collect();
        set_field(&mut op, "x-steward-roles", json!(roles));
        if matches!(*method, "POST" | "PUT" | "PATCH") {
            set_field(
                &mut op,
                "requestBody",
                json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}}),
            );
        }
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(method.to_lowercase(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Steward admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Problem": {"description": "RFC 9457 problem", "content": {"application/problem+json": {"schema": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}},
                "required": ["type", "title", "status"]
            }}}}}
        }
    })
}

/// `GET /admin/v1/openapi.json`.
pub async fn document() -> Json<Value> {
    Json(build())
}

/// Sets `key` on a JSON object (a no-op on anything else), without panicking indexing.
fn set_field(target: &mut Value, key: &str, value: impl Into<Value>) {
    if let Some(obj) = target.as_object_mut() {
        obj.insert(key.to_owned(), value.into());
    }
}
