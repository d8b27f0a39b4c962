//! Export of audit records as OCSF events of the API Activity class (`class_uid` 6003).
//!
//! # Mapping
//!
//! | OCSF attribute | From |
//! |---|---|
//! | `class_uid` 6003, `class_name` "API Activity", `category_uid` 6, `category_name` "Application Activity" | constant |
//! | `activity_id` / `activity_name` | the operation's last verb: `create`/`add`/`post` → 1 Create, `get`/`read`/`list`/`search`/`query` → 2 Read, `update`/`edit`/`patch`/`set` → 3 Update, `delete`/`remove` → 4 Delete, else 99 Other (or 0 Unknown with no operation) |
//! | `type_uid` | `600300 + activity_id` |
//! | `time` | `time_ms` |
//! | `severity_id` / `severity` | 1 Informational; `deny` decision or `suspension` → 3 Medium; `alert` → 4 High |
//! | `status_id` / `status` | 1 Success for `allow` or an outcome status below 400; 2 Failure for `deny` or a status of 400 and above; 0 Unknown for `approval_required`, `outcome_unknown` and the rest |
//! | `status_code` | outcome status |
//! | `status_detail` | decision (`allow` / `deny` / `approval_required`) |
//! | `duration` | outcome `latency_ms` |
//! | `message` | `"<kind> <operation> <decision>"` |
//! | `actor.user` | `uid` = actor id, `name` = actor name, `type_id`/`type`: identity → 99 "Non-human identity", admin → 2 "Admin", system → 3 "System" |
//! | `actor.authorizations[]` | one per policy id: `{decision, policy: {uid, version: policy_set_version}}` |
//! | `api.operation` | operation |
//! | `api.request.uid` | request id |
//! | `api.response.code` | outcome status |
//! | `resources[]` | `{uid: resource}` |
//! | `metadata` | `version` "1.1.0", `product` {name "Steward", vendor_name "Steward"}, `uid` = record hash (hex), `sequence` = seq, `log_name` "audit", `correlation_uid` = trace id from `traceparent` |
//! | `unmapped.steward` | everything else, verbatim: `kind`, `instance_id`, `prev_hash`, `hash`, `request_digest`, `args` (already redacted), `reason`, `traceparent`, `delegation_chain`, `approval_id`, `bytes_in`, `bytes_out`, `outcome_unknown`, `detail` |

use serde_json::{Map, Value, json};

use crate::event::{ActorKind, AuditRecord, Decision, EventKind};

/// API Activity.
pub const CLASS_UID: u64 = 6003;

/// The OCSF form of `record`; see the module docs for the mapping.
pub fn to_ocsf(record: &AuditRecord) -> Value {
    let event = &record.event;
    let kind = serde_json::to_value(&event.kind).unwrap_or(Value::Null);
    let kind_name = kind.as_str().unwrap_or("unknown").to_owned();
    let (activity_id, activity_name) = activity(event.operation.as_deref());
    let status_code = event.outcome.as_ref().and_then(|outcome| outcome.status);
    let outcome_unknown = event
        .outcome
        .as_ref()
        .is_some_and(|outcome| outcome.outcome_unknown);

    let (status_id, status) = match (event.decision, status_code) {
        _ if outcome_unknown => (0, "Unknown"),
        (Some(Decision::Deny), _) => (2, "Failure"),
        (_, Some(code)) if code >= 400 => (2, "Failure"),
        (_, Some(_)) | (Some(Decision::Allow), None) => (1, "Success"),
        _ => (0, "Unknown"),
    };
    let (severity_id, severity) = match (&event.kind, event.decision) {
        (EventKind::Alert, _) => (4, "High"),
        (EventKind::Suspension, _) | (_, Some(Decision::Deny)) => (3, "Medium"),
        _ => (1, "Informational"),
    };
    let (user_type_id, user_type) = match event.actor.kind {
        ActorKind::Identity => (99, "Non-human identity"),
        ActorKind::Admin => (2, "Admin"),
        ActorKind::System => (3, "System"),
    };

    let mut user = Map::new();
    user.insert("uid".into(), json!(event.actor.id));
    if let Some(name) = &event.actor.name {
        user.insert("name".into(), json!(name));
    }
    user.insert("type_id".into(), json!(user_type_id));
    user.insert("type".into(), json!(user_type));
    let mut actor = Map::new();
    actor.insert("user".into(), Value::Object(user));
    if !event.policy_ids.is_empty() {
        let authorizations: Vec<Value> = event
            .policy_ids
            .iter()
            .map(|policy| {
                let mut policy_obj = Map::new();
                policy_obj.insert("uid".into(), json!(policy));
                if let Some(version) = &event.policy_set_version {
                    policy_obj.insert("version".into(), json!(version));
                }
                json!({
                    "decision": event.decision.map(Decision::as_str),
                    "policy": policy_obj,
                })
            })
            .collect();
        actor.insert("authorizations".into(), Value::Array(authorizations));
    }

    let mut api = Map::new();
    if let Some(operation) = &event.operation {
        api.insert("operation".into(), json!(operation));
    }
    if let Some(request_id) = &event.request_id {
        api.insert("request".into(), json!({"uid": request_id}));
    }
    if let Some(code) = status_code {
        api.insert("response".into(), json!({"code": code}));
    }

    let mut metadata = Map::new();
    metadata.insert("version".into(), json!("1.1.0"));
    metadata.insert(
        "product".into(),
        json!({"name": "Steward", "vendor_name": "Steward"}),
    );
    metadata.insert("uid".into(), json!(hex::encode(record.hash)));
    metadata.insert("sequence".into(), json!(record.seq));
    metadata.insert("log_name".into(), json!("audit"));
    if let Some(trace_id) = event.traceparent.as_deref().and_then(trace_id) {
        metadata.insert("correlation_uid".into(), json!(trace_id));
    }

    let mut steward = Map::new();
    steward.insert("kind".into(), kind);
    steward.insert("prev_hash".into(), json!(hex::encode(record.prev_hash)));
    steward.insert("hash".into(), json!(hex::encode(record.hash)));
    if !event.instance_id.is_empty() {
        steward.insert("instance_id".into(), json!(event.instance_id));
    }
    let optional = [
        ("request_digest", &event.request_digest),
        ("reason", &event.reason),
        ("traceparent", &event.traceparent),
        ("approval_id", &event.approval_id),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            steward.insert(key.into(), json!(value));
        }
    }
    if !event.args.is_null() {
        steward.insert("args".into(), event.args.clone());
    }
    if !event.detail.is_null() {
        steward.insert("detail".into(), event.detail.clone());
    }
    if !event.actor.delegation_chain.is_empty() {
        steward.insert(
            "delegation_chain".into(),
            json!(event.actor.delegation_chain),
        );
    }
    if let Some(outcome) = &event.outcome {
        steward.insert("bytes_in".into(), json!(outcome.bytes_in));
        steward.insert("bytes_out".into(), json!(outcome.bytes_out));
        steward.insert("outcome_unknown".into(), json!(outcome.outcome_unknown));
    }

    let mut out = Map::new();
    out.insert("class_uid".into(), json!(CLASS_UID));
    out.insert("class_name".into(), json!("API Activity"));
    out.insert("category_uid".into(), json!(6));
    out.insert("category_name".into(), json!("Application Activity"));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity_name));
    out.insert("type_uid".into(), json!(CLASS_UID * 100 + activity_id));
    out.insert("time".into(), json!(record.time_ms));
    out.insert("severity_id".into(), json!(severity_id));
    out.insert("severity".into(), json!(severity));
    out.insert("status_id".into(), json!(status_id));
    out.insert("status".into(), json!(status));
    if let Some(code) = status_code {
        out.insert("status_code".into(), json!(code.to_string()));
    }
    if let Some(decision) = event.decision {
        out.insert("status_detail".into(), json!(decision.as_str()));
    }
    if let Some(outcome) = &event.outcome {
        out.insert("duration".into(), json!(outcome.latency_ms));
    }
    let message = [
        Some(kind_name.as_str()),
        event.operation.as_deref(),
        event.decision.map(Decision::as_str),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    out.insert("message".into(), json!(message));
    out.insert("actor".into(), Value::Object(actor));
    out.insert("api".into(), Value::Object(api));
    if let Some(resource) = &event.resource {
        out.insert("resources".into(), json!([{"uid": resource}]));
    }
    out.insert("metadata".into(), Value::Object(metadata));
    out.insert("unmapped".into(), json!({"steward": steward}));
    Value::Object(out)
}

fn activity(operation: Option<&str>) -> (u64, &'static str) {
    let Some(operation) = operation else {
        return (0, "Unknown");
    };
    let verb_part = operation
        .rsplit([':', '.', '/'])
        .next()
        .unwrap_or(operation);
    let verb = verb_part
        .split(['_', '-'])
        .next()
        .unwrap_or(verb_part)
        .to_ascii_lowercase();
    match verb.as_str() {
        "create" | "add" | "post" | "insert" | "new" => (1, "Create"),
        "get" | "read" | "list" | "search" | "query" | "fetch" | "describe" => (2, "Read"),
        "update" | "edit" | "patch" | "set" | "put" | "modify" => (3, "Update"),
        "delete" | "remove" | "destroy" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// Trace id (32 hex) from a W3C `traceparent` `version-traceid-parentid-flags`.
fn trace_id(traceparent: &str) -> Option<&str> {
    let trace = traceparent.split('-').nth(1)?;
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::sample_event;
    use crate::event::{GENESIS_HASH, Outcome};

    #[test]
    fn decision_maps_to_api_activity() {
        let record = AuditRecord::chain(7, 1234, GENESIS_HASH, sample_event(7)).unwrap();
        let ocsf = to_ocsf(&record);
        assert_eq!(ocsf["class_uid"], 6003);
        assert_eq!(ocsf["activity_id"], 1, "issues.create is a Create");
        assert_eq!(ocsf["type_uid"], 600301);
        assert_eq!(ocsf["time"], 1234);
        assert_eq!(ocsf["status_id"], 1);
        assert_eq!(ocsf["actor"]["user"]["uid"], "id_7");
        assert_eq!(ocsf["actor"]["user"]["type_id"], 99);
        assert_eq!(ocsf["actor"]["authorizations"][0]["policy"]["uid"], "p1");
        assert_eq!(
            ocsf["actor"]["authorizations"][0]["policy"]["version"],
            "v7"
        );
        assert_eq!(ocsf["api"]["operation"], "github:issues.create");
        assert_eq!(ocsf["api"]["request"]["uid"], "req_7");
        assert_eq!(ocsf["resources"][0]["uid"], "repo:acme/api");
        assert_eq!(ocsf["metadata"]["sequence"], 7);
        assert_eq!(ocsf["metadata"]["uid"], hex::encode(record.hash));
        assert_eq!(
            ocsf["metadata"]["correlation_uid"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(ocsf["unmapped"]["steward"]["reason"], "triage");
        assert_eq!(
            ocsf["unmapped"]["steward"]["delegation_chain"][0],
            "user:alice"
        );
    }

    #[test]
    fn deny_and_failed_outcomes_are_failures() {
        let mut event = sample_event(1);
        event.decision = Some(Decision::Deny);
        event.operation = Some("github:repos.delete".to_owned());
        let ocsf = to_ocsf(&AuditRecord::chain(0, 0, GENESIS_HASH, event).unwrap());
        assert_eq!(
            (ocsf["status_id"].clone(), ocsf["severity_id"].clone()),
            (json!(2), json!(3))
        );
        assert_eq!(ocsf["activity_id"], 4);

        let mut event = sample_event(2);
        event.kind = EventKind::Outcome;
        event.decision = None;
        event.outcome = Some(Outcome {
            status: Some(502),
            latency_ms: 40,
            ..Outcome::default()
        });
        let ocsf = to_ocsf(&AuditRecord::chain(0, 0, GENESIS_HASH, event).unwrap());
        assert_eq!(ocsf["status_id"], 2);
        assert_eq!(ocsf["status_code"], "502");
        assert_eq!(ocsf["api"]["response"]["code"], 502);
        assert_eq!(ocsf["duration"], 40);
    }
}
