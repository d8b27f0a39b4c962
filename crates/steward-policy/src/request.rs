//! The authorization request and its translation into Cedar's principal, entities and context.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, RwLock};

use cedar_policy_core::ast::{self, EntityUIDEntry, Name, PartialValue, Value};
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
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
        date_text(dt.year(), dt.month(), dt.day()),
    )
}

/// `YYYY-MM-DD`, written without the formatting machinery (this runs on every decision).
fn date_text(year: i16, month: i8, day: i8) -> String {
    let (Ok(year), Ok(month), Ok(day)) =
        (u16::try_from(year), u8::try_from(month), u8::try_from(day))
    else {
        return format!("{year:04}-{month:02}-{day:02}");
    };
    if year > 9999 {
        return format!("{year:04}-{month:02}-{day:02}");
    }
    let digit = |n: u16| char::from(b'0' + (n % 10) as u8);
    let mut text = String::with_capacity(10);
    for n in [year / 1000, year / 100, year / 10, year] {
        text.push(digit(n));
    }
    text.push('-');
    text.push(digit(u16::from(month) / 10));
    text.push(digit(u16::from(month)));
    text.push('-');
    text.push(digit(u16::from(day) / 10));
    text.push(digit(u16::from(day)));
    text
}

fn long(n: u64) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The extension constructors Steward calls, parsed once (Cedar parses a name with its full
/// expression parser).
static EXTENSION_NAMES: LazyLock<Vec<(&'static str, Name)>> = LazyLock::new(|| {
    ["ip", "decimal", "datetime"]
        .into_iter()
        .filter_map(|f| f.parse().ok().map(|name| (f, name)))
        .collect()
});

/// Calls a one-argument Cedar extension constructor (`ip`, `decimal`, `datetime`) on text.
fn extension(function: &str, text: &str) -> Result<Value, String> {
    let name = EXTENSION_NAMES
        .iter()
        .find_map(|(f, name)| (*f == function).then_some(name))
        .ok_or_else(|| format!("unknown extension function `{function}`"))?;
    let value = Extensions::all_available()
        .func(name)
        .map_err(|e| e.to_string())?
        .call(&[Value::from(text)])
        .map_err(|e| e.to_string())?;
    match value {
        PartialValue::Value(v) => Ok(v),
        PartialValue::Residual(_) => Err(format!("`{function}(\"{text}\")` did not evaluate")),
    }
}

/// Converts one JSON argument to its declared Cedar type.
fn arg_value(def: &ArgDef, value: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    let wrong = || {
        format!(
            "argument `{}` must be a {:?} value, got `{}`",
            def.name,
            def.arg_type,
            truncate(value)
        )
    };
    let checked = |r: Result<Value, String>| r.map_err(|e| format!("{}: {e}", wrong()));
    Ok(match (def.arg_type, value) {
        (ArgType::String, J::String(s)) => Value::from(s.as_str()),
        (ArgType::Long, J::Number(n)) => Value::from(n.as_i64().ok_or_else(wrong)?),
        (ArgType::Bool, J::Bool(b)) => Value::from(*b),
        (ArgType::Decimal, J::Number(n)) => {
            let text = n.to_string();
            let text = if text.contains(['.', 'e', 'E']) {
                text
            } else {
                format!("{text}.0")
            };
            checked(decimal(&text).ok_or_else(wrong)?)?
        }
        (ArgType::Decimal, J::String(s)) => checked(decimal(s).ok_or_else(wrong)?)?,
        (ArgType::SetOfString, J::Array(items)) => Value::set(
            items
                .iter()
                .map(|i| i.as_str().map(Value::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(wrong)?,
            None,
        ),
        (ArgType::SetOfLong, J::Array(items)) => Value::set(
            items
                .iter()
                .map(|i| i.as_i64().map(Value::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(wrong)?,
            None,
        ),
        (ArgType::Ipaddr, J::String(s)) if s.len() <= 64 => checked(extension("ip", s))?,
        (ArgType::Datetime, J::String(s)) if s.len() <= 64 => checked(extension("datetime", s))?,
        _ => return Err(wrong()),
    })
}

/// A Cedar decimal from text, checked for Cedar's syntax (digits, `.`, 1–4 fractional digits).
fn decimal(text: &str) -> Option<Result<Value, String>> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(fraction) && fraction.len() <= 4 && whole.len() <= 15)
        .then(|| extension("decimal", text))
}

fn truncate(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", text.get(..i).unwrap_or_default()),
        None => text,
    }
}

/// The principal entity: attributes `kind`, `owner`, `risk_score` and `labels` (the catalog's
/// label keys, missing ones as `""`), and every label as a tag.
fn principal_entity(
    compiled: &CompiledPolicies,
    uid: ast::EntityUID,
    identity: &IdentityAttrs,
    risk_score: i64,
) -> ast::Entity {
    let labels = compiled.catalog.identity_labels.iter().map(|k| {
        let v = identity.labels.get(k).map_or("", String::as_str);
        (SmolStr::new(k), Value::from(v))
    });
    let attrs = [
        ("kind", Value::from(identity.kind.as_str())),
        ("owner", Value::from(identity.owner.as_str())),
        ("risk_score", Value::from(risk_score)),
        ("labels", Value::record(labels, None)),
    ]
    .map(|(k, v)| (SmolStr::new_static(k), PartialValue::Value(v)));
    let tags = identity.labels.iter().map(|(k, v)| {
        (
            SmolStr::new(k),
            PartialValue::Value(Value::from(v.as_str())),
        )
    });
    ast::Entity::new_with_attr_partial_value(uid, attrs, HashSet::new(), HashSet::new(), tags)
}

/// Most identities a [`PrincipalCache`] holds; past it the cache starts over.
const PRINCIPAL_CACHE_LIMIT: usize = 4_096;

/// Principal entities built for one compiled set, by identity id. An entry is reused only
/// while the identity's attributes and risk score are exactly those it was built from, so a
/// changed label or score is seen on the next call. A new compiled set starts empty.
#[derive(Debug, Default)]
pub(crate) struct PrincipalCache {
    entries: RwLock<HashMap<String, CachedPrincipal>>,
}

#[derive(Debug)]
struct CachedPrincipal {
    identity: IdentityAttrs,
    risk_score: i64,
    /// An entity store holding only the principal.
    entities: Arc<CoreEntities>,
}

impl PrincipalCache {
    /// The entity store holding only this principal, from the cache or built now.
    fn get_or_build(
        &self,
        identity: &IdentityAttrs,
        risk_score: i64,
        build: impl FnOnce() -> ast::Entity,
    ) -> Result<Arc<CoreEntities>, String> {
        // A poisoned lock only costs the cache: the entity is then built every time.
        if let Ok(entries) = self.entries.read()
            && let Some(hit) = entries.get(&identity.id)
            && hit.risk_score == risk_score
            && hit.identity == *identity
        {
            return Ok(Arc::clone(&hit.entities));
        }
        let entities = Arc::new(entities_of(vec![Arc::new(build())])?);
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= PRINCIPAL_CACHE_LIMIT && !entries.contains_key(&identity.id) {
                entries.clear();
            }
            entries.insert(
                identity.id.clone(),
                CachedPrincipal {
                    identity: identity.clone(),
                    risk_score,
                    entities: Arc::clone(&entities),
                },
            );
        }
        Ok(entities)
    }
}

/// The Cedar inputs for a request on a known operation, as the engine's own values.
pub(crate) struct CedarInputs {
    pub(crate) request: ast::Request,
    pub(crate) entities: Arc<CoreEntities>,
}

impl CedarInputs {
    /// The same inputs as `cedar-policy` API values, for its `Authorizer`.
    pub(crate) fn api(&self) -> (cedar_policy::Request, cedar_policy::Entities) {
        (
            self.request.clone().into(),
            CoreEntities::clone(&self.entities).into(),
        )
    }
}

/// An entity store of entities whose ancestors are already complete.
fn entities_of(entities: Vec<Arc<ast::Entity>>) -> Result<CoreEntities, String> {
    CoreEntities::new()
        .add_entities(
            entities,
            None::<&NoEntitiesSchema>,
            TCComputation::AssumeAlreadyComputed,
            Extensions::all_available(),
        )
        .map_err(|e| e.to_string())
}

/// A record with static keys. Inserted one by one: `Value::record` collects, sorts and
/// bulk-builds, which costs more for the handful of fields here.
fn record<const N: usize>(pairs: [(&'static str, Value); N]) -> Value {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        map.insert(SmolStr::new_static(k), v);
    }
    Value::record_arc(Arc::new(map), None)
}

/// Builds principal, entities and context; an `Err` explains why the request is malformed.
///
/// Arguments and the time are always checked; parts no policy of the slice reads (`needs`)
/// are left out of the Cedar inputs. Values are built directly as the engine's `Value`s:
/// going through `RestrictedExpression` would build an expression per literal and then
/// evaluate it, which cost more than evaluating a small slice.
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
    let mut args = BTreeMap::new();
    for def in &entry.def.args {
        match args_object.get(&def.name) {
            None | Some(serde_json::Value::Null) if def.optional => {}
            None | Some(serde_json::Value::Null) => {
                return Err(format!("required argument `{}` is missing", def.name));
            }
            Some(value) => {
                args.insert(SmolStr::new(&def.name), arg_value(def, value)?);
            }
        }
    }
    // Checked whether or not `now` is built, so every slice denies the same out-of-range times.
    if !in_cedar_range(request.now) {
        return Err(format!("time `{}` is out of range", request.now));
    }
    let mut context = BTreeMap::new();
    let mut put = |key: &'static str, value: Value| {
        context.insert(SmolStr::new_static(key), value);
    };
    if needs.context_attr("args") || entry.args_always_built {
        put("args", Value::record_arc(Arc::new(args), None));
    }
    if needs.context_attr("time") {
        let (hour, minute, weekday, date) = local_time(request.now, &request.tz);
        put(
            "time",
            record([
                ("hour", Value::from(hour)),
                ("minute", Value::from(minute)),
                ("weekday", Value::from(weekday)),
                ("date", Value::from(date)),
            ]),
        );
    }
    if needs.context_attr("now") {
        let now = cedar_datetime(request.now)
            .ok_or_else(|| format!("time `{}` is out of range", request.now))?;
        put("now", extension("datetime", &now)?);
    }
    if needs.context_attr("now_ms") {
        put("now_ms", Value::from(request.now.as_millisecond()));
    }
    if needs.context_attr("rate") {
        let rate = &request.rate;
        put(
            "rate",
            record([
                ("op_per_minute", long(rate.op_per_minute)),
                ("op_per_hour", long(rate.op_per_hour)),
                ("op_per_day", long(rate.op_per_day)),
                ("service_per_minute", long(rate.service_per_minute)),
                ("service_per_hour", long(rate.service_per_hour)),
                ("service_per_day", long(rate.service_per_day)),
            ]),
        );
    }
    if needs.context_attr("risk_score") {
        put("risk_score", Value::from(request.risk_score));
    }
    if needs.context_attr("delegated") {
        put("delegated", Value::from(request.delegated));
    }
    if let Some(ip) = request
        .source_ip
        .filter(|_| needs.context_attr("source_ip"))
    {
        put("source_ip", extension("ip", &ip.to_string())?);
    }

    let identity = &request.identity;
    let principal = ast::EntityUID::from_components(
        compiled.identity_type.as_ref().clone(),
        ast::Eid::new(identity.id.as_str()),
        None,
    );
    let principal_only = needs
        .principal
        .then(|| {
            compiled
                .principals
                .get_or_build(identity, request.risk_score, || {
                    principal_entity(compiled, principal.clone(), identity, request.risk_score)
                })
        })
        .transpose()?;
    let entities = match principal_only {
        Some(entities) if !needs.action => entities,
        principal_only => {
            let mut all = Vec::with_capacity(4);
            if let Some(entities) = principal_only {
                all.extend(entities.iter().map(|e| Arc::new(e.clone())));
            }
            if needs.action {
                all.extend(entry.action_entities.iter().cloned());
            }
            Arc::new(entities_of(all)?)
        }
    };
    let request = ast::Request::new_unchecked(
        EntityUIDEntry::known(principal, None),
        EntityUIDEntry::known(entry.action.as_ref().clone(), None),
        EntityUIDEntry::known(entry.resource.as_ref().clone(), None),
        Some(ast::Context::Value(Arc::new(context))),
    );
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
    fn dates_are_zero_padded() {
        assert_eq!(date_text(2026, 3, 9), "2026-03-09");
        assert_eq!(date_text(7, 12, 31), "0007-12-31");
        assert_eq!(date_text(-1, 12, 31), "-001-12-31");
    }

    #[test]
    fn decimal_syntax_is_checked() {
        assert!(decimal("12.5").unwrap().is_ok());
        assert!(decimal("-0.0001").unwrap().is_ok());
        assert!(decimal("12").is_none());
        assert!(decimal("1.23456").is_none());
        assert!(decimal("1e5").is_none());
    }
}
