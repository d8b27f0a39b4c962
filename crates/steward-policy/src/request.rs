//! The authorization request and its translation into Cedar's principal, entities and context.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cedar_policy::{Context, Entities, Entity, EntityId, EntityUid, RestrictedExpression};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use steward_core::{OperationClass, OperationName};

use crate::catalog::{ArgDef, ArgType, Catalog};
use crate::compile::{CompiledPolicies, OperationEntry};
use crate::needs::Needs;

/// The calling identity, as policies see it in `principal`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityAttrs {
    /// The identity id: the principal is `Identity::"<id>"`.
    pub id: String,
    /// Its kind, e.g. `agent`, `bot`, `pipeline`.
    #[serde(default)]
    pub kind: String,
    /// Its owner (a human or team).
    #[serde(default)]
    pub owner: String,
    /// Its labels. Catalog-declared keys appear in `principal.labels` (missing ones as `""`);
    /// all of them are entity tags.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Call counts, as seen by `context.rate`; they include the call being authorized or not,
/// as the caller decides (document it where the counts are produced).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateCounts {
    /// Calls of this operation by this identity in the last minute.
    pub op_per_minute: u64,
    /// … in the last hour.
    pub op_per_hour: u64,
    /// … in the last day.
    pub op_per_day: u64,
    /// Calls to this service (any operation) by this identity in the last minute.
    pub service_per_minute: u64,
    /// … in the last hour.
    pub service_per_hour: u64,
    /// … in the last day.
    pub service_per_day: u64,
}

/// One authorization request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The caller.
    pub identity: IdentityAttrs,
    /// The operation, `service:operation`.
    pub operation: OperationName,
    /// Its class; must match the catalog's or the request is denied.
    pub class: OperationClass,
    /// The operation's arguments: a JSON object. Undeclared members are ignored (no policy
    /// can name them); a declared one of the wrong type, or a missing required one, denies.
    pub args: serde_json::Value,
    /// The instant of the call.
    pub now: Timestamp,
    /// The deployment time zone for `context.time`.
    pub tz: TimeZone,
    /// The caller's address, if known.
    pub source_ip: Option<IpAddr>,
    /// Call counts for `context.rate`.
    pub rate: RateCounts,
    /// The monitoring risk score (0–100): both `principal.risk_score` and `context.risk_score`.
    pub risk_score: i64,
    /// Whether the caller holds an attenuated or exchanged token.
    pub delegated: bool,
}

impl Request {
    /// A request with empty args, UTC, no source address, zero rates and zero risk.
    pub fn new(
        identity: IdentityAttrs,
        operation: OperationName,
        catalog: &Catalog,
        now: Timestamp,
    ) -> Self {
        let class = catalog
            .operation(&operation)
            .map_or(OperationClass::Write, |o| o.class);
        Self {
            identity,
            operation,
            class,
            args: serde_json::Value::Object(Default::default()),
            now,
            tz: TimeZone::UTC,
            source_ip: None,
            rate: RateCounts::default(),
            risk_score: 0,
            delegated: false,
        }
    }
}

/// Whether Cedar's `datetime` can represent the instant (years 0 to 9999).
fn in_cedar_range(ts: Timestamp) -> bool {
    (0..=9999).contains(&TimeZone::UTC.to_datetime(ts).year())
}

/// Formats an instant as a Cedar `datetime` literal in UTC with milliseconds.
pub(crate) fn cedar_datetime(ts: Timestamp) -> Option<String> {
    if !in_cedar_range(ts) {
        return None;
    }
    let dt = TimeZone::UTC.to_datetime(ts);
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1_000_000
    ))
}

/// The civil time of the request in its time zone: hour, minute, weekday (1 = Monday), date.
pub(crate) fn local_time(now: Timestamp, tz: &TimeZone) -> (i64, i64, i64, String) {
    let dt = tz.to_datetime(now);
    (
        i64::from(dt.hour()),
        i64::from(dt.minute()),
        i64::from(dt.weekday().to_monday_one_offset()),
        format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day()),
    )
}

fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Converts one JSON argument to its declared Cedar type.
fn arg_value(def: &ArgDef, value: &serde_json::Value) -> Result<RestrictedExpression, String> {
    use serde_json::Value as J;
    let wrong = || {
        format!(
            "argument `{}` must be a {:?} value, got `{}`",
            def.name,
            def.arg_type,
            truncate(value)
        )
    };
    Ok(match (def.arg_type, value) {
        (ArgType::String, J::String(s)) => RestrictedExpression::new_string(s.clone()),
        (ArgType::Long, J::Number(n)) => {
            RestrictedExpression::new_long(n.as_i64().ok_or_else(wrong)?)
        }
        (ArgType::Bool, J::Bool(b)) => RestrictedExpression::new_bool(*b),
        (ArgType::Decimal, J::Number(n)) => {
            let text = n.to_string();
            let text = if text.contains(['.', 'e', 'E']) {
                text
            } else {
                format!("{text}.0")
            };
            decimal(&text).ok_or_else(wrong)?
        }
        (ArgType::Decimal, J::String(s)) => decimal(s).ok_or_else(wrong)?,
        (ArgType::SetOfString, J::Array(items)) => RestrictedExpression::new_set(
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(|s| RestrictedExpression::new_string(s.to_owned()))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(wrong)?,
        ),
        (ArgType::SetOfLong, J::Array(items)) => RestrictedExpression::new_set(
            items
                .iter()
                .map(|i| i.as_i64().map(RestrictedExpression::new_long))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(wrong)?,
        ),
        (ArgType::Ipaddr, J::String(s)) if s.len() <= 64 => RestrictedExpression::new_ip(s),
        (ArgType::Datetime, J::String(s)) if s.len() <= 64 => RestrictedExpression::new_datetime(s),
        _ => return Err(wrong()),
    })
}

/// A Cedar decimal from text, checked for Cedar's syntax (digits, `.`, 1–4 fractional digits).
fn decimal(text: &str) -> Option<RestrictedExpression> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(fraction) && fraction.len() <= 4 && whole.len() <= 15)
        .then(|| RestrictedExpression::new_decimal(text))
}

fn truncate(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", text.get(..i).unwrap_or_default()),
        None => text,
    }
}

/// The Cedar inputs for a request on a known operation.
pub(crate) struct CedarInputs {
    pub(crate) request: cedar_policy::Request,
    pub(crate) entities: Entities,
}

/// Builds principal, entities and context; an `Err` explains why the request is malformed.
///
/// Arguments and the time are always checked; parts no policy of the slice reads (`needs`)
/// are left out of the Cedar inputs.
pub(crate) fn cedar_inputs(
    compiled: &CompiledPolicies,
    entry: &OperationEntry,
    request: &Request,
    needs: Needs,
) -> Result<CedarInputs, String> {
    let args_object = request.args.as_object().ok_or_else(|| {
        format!(
            "arguments must be a JSON object, got `{}`",
            truncate(&request.args)
        )
    })?;
    let mut args = Vec::with_capacity(entry.def.args.len());
    for def in &entry.def.args {
        match args_object.get(&def.name) {
            None | Some(serde_json::Value::Null) if def.optional => {}
            None | Some(serde_json::Value::Null) => {
                return Err(format!("required argument `{}` is missing", def.name));
            }
            Some(value) => args.push((def.name.clone(), arg_value(def, value)?)),
        }
    }
    // Checked whether or not `now` is built, so every slice denies the same out-of-range times.
    if !in_cedar_range(request.now) {
        return Err(format!("time `{}` is out of range", request.now));
    }
    let record = |pairs: Vec<(String, RestrictedExpression)>| {
        RestrictedExpression::new_record(pairs).map_err(|e| e.to_string())
    };
    let mut context = Vec::with_capacity(8);
    if needs.context_attr("args") || entry.args_always_built {
        context.push(("args".to_owned(), record(args)?));
    }
    if needs.context_attr("time") {
        let (hour, minute, weekday, date) = local_time(request.now, &request.tz);
        context.push((
            "time".to_owned(),
            record(vec![
                ("hour".into(), RestrictedExpression::new_long(hour)),
                ("minute".into(), RestrictedExpression::new_long(minute)),
                ("weekday".into(), RestrictedExpression::new_long(weekday)),
                ("date".into(), RestrictedExpression::new_string(date)),
            ])?,
        ));
    }
    if needs.context_attr("now") {
        let now = cedar_datetime(request.now)
            .ok_or_else(|| format!("time `{}` is out of range", request.now))?;
        context.push(("now".to_owned(), RestrictedExpression::new_datetime(now)));
    }
    if needs.context_attr("now_ms") {
        context.push((
            "now_ms".to_owned(),
            RestrictedExpression::new_long(request.now.as_millisecond()),
        ));
    }
    if needs.context_attr("rate") {
        let rate = &request.rate;
        context.push((
            "rate".to_owned(),
            record(vec![
                ("op_per_minute".into(), long(rate.op_per_minute)),
                ("op_per_hour".into(), long(rate.op_per_hour)),
                ("op_per_day".into(), long(rate.op_per_day)),
                ("service_per_minute".into(), long(rate.service_per_minute)),
                ("service_per_hour".into(), long(rate.service_per_hour)),
                ("service_per_day".into(), long(rate.service_per_day)),
            ])?,
        ));
    }
    if needs.context_attr("risk_score") {
        context.push((
            "risk_score".to_owned(),
            RestrictedExpression::new_long(request.risk_score),
        ));
    }
    if needs.context_attr("delegated") {
        context.push((
            "delegated".to_owned(),
            RestrictedExpression::new_bool(request.delegated),
        ));
    }
    if let Some(ip) = request
        .source_ip
        .filter(|_| needs.context_attr("source_ip"))
    {
        context.push((
            "source_ip".to_owned(),
            RestrictedExpression::new_ip(ip.to_string()),
        ));
    }
    let context = Context::from_pairs(context).map_err(|e| e.to_string())?;

    let identity = &request.identity;
    let principal = EntityUid::from_type_name_and_id(
        compiled.identity_type.clone(),
        EntityId::new(&identity.id),
    );
    let mut entities = Vec::with_capacity(4);
    if needs.principal {
        let labels = compiled.catalog.identity_labels.iter().map(|k| {
            let v = identity.labels.get(k).cloned().unwrap_or_default();
            (k.clone(), RestrictedExpression::new_string(v))
        });
        let attrs = [
            (
                "kind".to_owned(),
                RestrictedExpression::new_string(identity.kind.clone()),
            ),
            (
                "owner".to_owned(),
                RestrictedExpression::new_string(identity.owner.clone()),
            ),
            (
                "risk_score".to_owned(),
                RestrictedExpression::new_long(request.risk_score),
            ),
            ("labels".to_owned(), record(labels.collect())?),
        ];
        let tags = identity
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
        entities.push(
            Entity::new_with_tags(principal.clone(), attrs, [], tags).map_err(|e| e.to_string())?,
        );
    }
    if needs.action {
        entities.extend(entry.action_entities.iter().cloned());
    }
    let entities = if entities.is_empty() {
        Entities::empty()
    } else {
        Entities::from_entities(entities, None).map_err(|e| e.to_string())?
    };
    let request = cedar_policy::Request::new(
        principal,
        entry.action.clone(),
        entry.resource.clone(),
        context,
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok(CedarInputs { request, entities })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cedar_datetime_has_millis_in_utc() {
        let ts: Timestamp = "2026-03-29T01:30:00.123456+01:00".parse().unwrap();
        assert_eq!(cedar_datetime(ts).unwrap(), "2026-03-29T00:30:00.123Z");
    }

    #[test]
    fn berlin_time_follows_daylight_saving() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // Sunday 2026-03-29: 01:59:59 CET is followed by 03:00 CEST.
        let before: Timestamp = "2026-03-29T00:59:00Z".parse().unwrap();
        let after: Timestamp = "2026-03-29T01:00:00Z".parse().unwrap();
        assert_eq!(local_time(before, &berlin), (1, 59, 7, "2026-03-29".into()));
        assert_eq!(local_time(after, &berlin), (3, 0, 7, "2026-03-29".into()));
        // Sunday 2026-10-25: 02:59:59 CEST is followed by 02:00 CET, so 02:30 happens twice.
        let first: Timestamp = "2026-10-25T00:30:00Z".parse().unwrap();
        let second: Timestamp = "2026-10-25T01:30:00Z".parse().unwrap();
        assert_eq!(local_time(first, &berlin), (2, 30, 7, "2026-10-25".into()));
        assert_eq!(local_time(second, &berlin), (2, 30, 7, "2026-10-25".into()));
        // Monday 08:30 UTC is 09:30 in winter and 10:30 in summer.
        let winter: Timestamp = "2026-01-05T08:30:00Z".parse().unwrap();
        let summer: Timestamp = "2026-07-06T08:30:00Z".parse().unwrap();
        assert_eq!(local_time(winter, &berlin).0, 9);
        assert_eq!(local_time(summer, &berlin).0, 10);
        assert_eq!(local_time(summer, &berlin).2, 1);
    }

    #[test]
    fn decimal_syntax_is_checked() {
        assert!(decimal("12.5").is_some());
        assert!(decimal("-0.0001").is_some());
        assert!(decimal("12").is_none());
        assert!(decimal("1.23456").is_none());
        assert!(decimal("1e5").is_none());
    }
}
