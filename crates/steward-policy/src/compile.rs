//! Compiling policy sources and grants into a validated, sliced policy set.
//!
//! Policy ids: a policy's `@id("…")` annotation if present, else the source id when the source
//! holds one policy, else `<source id>#<n>` (n counts from 1 in source order). A grant becomes
//! the policy `grant:<grant id>`.
//!
//! Slicing: every policy is filed under each catalog action its action scope can match, and
//! under the identity its principal scope names (or under "any identity"). A request then
//! evaluates only the policies filed under its action for any identity, plus those for its
//! identity. A policy left out cannot match (its scope is false, and Cedar evaluates the scope
//! before the conditions, so it cannot error either), which keeps decisions identical to a
//! full scan; a proptest checks this against `authorize_full_scan`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Authorizer, Effect as CedarEffect, Entity, EntityId, EntityTypeName,
    EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint, ValidationMode, Validator,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use steward_core::{OperationClass, OperationName};

use crate::catalog::{ArgType, Catalog, OperationDef};
use crate::error::{PolicyDiagnostic, PolicyError};
use crate::fast_path::{FastPath, ParsedConditions, condition_text};
use crate::needs::Needs;
use crate::request::PrincipalCache;

/// One named policy text (a file, or a row of the policy store). It may hold several policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    /// The source's id (file name or stored policy id); names its policies in diagnostics.
    pub id: String,
    /// Cedar policy text.
    pub text: String,
}

impl PolicySource {
    /// Builds a source.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            text: text.into(),
        }
    }
}

/// A time-bound grant (just-in-time elevation or "approve similar"): a permit for one identity
/// on some operations and/or whole services that stops matching at `expires_at`.
///
/// It compiles to the policy `grant:<id>`:
/// `permit (principal == Identity::"<identity>", action in [..], resource) when { context.now_ms <
/// <expires_at in ms> && <argument constraints> };`, so an expired grant no longer
/// matches even if nobody removes it. It cannot lift a forbid: an `@approval` forbid still asks
/// for approval (the approver decides whether a grant should pre-approve; see issue 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The grant's id.
    pub id: String,
    /// The identity it elevates.
    pub identity_id: String,
    /// Single operations it covers.
    #[serde(default)]
    pub operations: Vec<OperationName>,
    /// Whole services it covers.
    #[serde(default)]
    pub services: Vec<String>,
    /// The instant it stops matching.
    pub expires_at: Timestamp,
    /// Argument equality constraints (`string`, `long` or `bool` arguments): the grant only
    /// matches requests whose argument has exactly this value.
    #[serde(default)]
    pub arg_equals: BTreeMap<String, serde_json::Value>,
}

/// Whether a policy permits or forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyEffect {
    /// `permit`.
    Permit,
    /// `forbid`.
    Forbid,
}

/// What Steward knows about one compiled policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    /// The policy id.
    pub id: String,
    /// The source (or `grant:<id>`) it came from.
    pub source_id: String,
    /// Permit or forbid.
    pub effect: PolicyEffect,
    /// The `@approval("why")` reason of a forbid that a human approval can lift.
    pub approval: Option<String>,
    /// Distinct approvers required (`@approvals("N")`, default 1).
    pub approvals: u32,
    /// The `@description("…")` annotation, used by `explain`.
    pub description: Option<String>,
    /// The policy's Cedar text, as written.
    pub text: String,
}

/// Policies filed under one action.
#[derive(Debug, Default)]
pub(crate) struct Slice {
    /// Policies that do not constrain the principal.
    pub(crate) any_identity: Option<SliceSet>,
    /// Policies constraining the principal to one identity, by identity id.
    pub(crate) by_identity: HashMap<String, SliceSet>,
    /// Whether each `by_identity` set also holds the `any_identity` policies, so one Cedar
    /// call suffices (done when `any_identity` is small, to bound memory).
    pub(crate) merged: bool,
}

/// One evaluable group of policies.
#[derive(Debug, Default)]
pub(crate) struct SliceSet {
    /// The policies, as permits without action scope.
    pub(crate) set: PolicySet,
    /// What they read.
    pub(crate) needs: Needs,
    /// Their combined condition, when it could be built.
    pub(crate) fast: Option<FastPath>,
}

/// Everything needed to evaluate one catalog operation.
#[derive(Debug)]
pub(crate) struct OperationEntry {
    pub(crate) def: OperationDef,
    pub(crate) action: EntityUid,
    pub(crate) resource: EntityUid,
    /// The action, its service group and its class group, with parents set.
    pub(crate) action_entities: Vec<Arc<cedar_policy_core::ast::Entity>>,
    /// Arguments whose validity only Cedar checks (decimal, ipaddr, datetime) are always built.
    pub(crate) args_always_built: bool,
    pub(crate) slice: Slice,
}

/// A validated policy set, ready for `authorize`. Build it with [`compile`] and swap it
/// atomically (e.g. behind an `ArcSwap` or `RwLock<Arc<_>>`) for hot reload.
#[derive(Debug)]
pub struct CompiledPolicies {
    pub(crate) version: u64,
    pub(crate) catalog: Catalog,
    pub(crate) info: HashMap<String, PolicyInfo>,
    pub(crate) operations: HashMap<String, OperationEntry>,
    /// Every policy with its effect turned into `permit` (see `authorize`).
    pub(crate) all_as_permits: PolicySet,
    /// Every policy as written.
    pub(crate) original: PolicySet,
    pub(crate) identity_type: EntityTypeName,
    pub(crate) authorizer: Authorizer,
    /// Principal entities already built for this set, reused while the identity is unchanged.
    pub(crate) principals: PrincipalCache,
}

impl CompiledPolicies {
    /// The policy-set version given to `compile`.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The catalog the set was validated against.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Number of policies (grants included).
    pub fn len(&self) -> usize {
        self.info.len()
    }

    /// Whether there is no policy at all (which denies everything).
    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }

    /// Metadata of one policy.
    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.info.get(id)
    }

    /// All policies' metadata, sorted by id.
    pub fn policies(&self) -> Vec<&PolicyInfo> {
        let mut all: Vec<&PolicyInfo> = self.info.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The Cedar request and entities `authorize` would evaluate, for comparisons with bare
    /// Cedar in tests and benchmarks; `None` if the request is invalid.
    pub fn cedar_inputs(
        &self,
        request: &crate::request::Request,
    ) -> Option<(cedar_policy::Request, cedar_policy::Entities)> {
        let entry = self.operations.get(&request.operation.to_string())?;
        crate::request::cedar_inputs(self, entry, request, Needs::ALL)
            .ok()
            .map(|i| i.api())
    }

    /// The unsliced Cedar policy set as written, for comparisons and debugging.
    pub fn cedar_policy_set(&self) -> &PolicySet {
        &self.original
    }
}

/// Compiles policy sources against the catalog's schema (strict validation).
pub fn compile(
    catalog: &Catalog,
    sources: &[PolicySource],
    version: u64,
) -> Result<CompiledPolicies, PolicyError> {
    compile_with_grants(catalog, sources, &[], version)
}

/// Compiles policy sources plus time-bound grants against the catalog's schema.
pub fn compile_with_grants(
    catalog: &Catalog,
    sources: &[PolicySource],
    grants: &[Grant],
    version: u64,
) -> Result<CompiledPolicies, PolicyError> {
    let schema = catalog.cedar_schema()?;
    let mut diagnostics = Vec::new();
    let mut parsed: Vec<(Policy, PolicySource)> = Vec::new();
    for source in sources {
        match parse_source(source) {
            Ok(policies) => parsed.extend(policies.into_iter().map(|p| (p, source.clone()))),
            Err(mut d) => diagnostics.append(&mut d),
        }
    }
    for grant in grants {
        let source = grant_source(catalog, grant)?;
        match Policy::parse(Some(PolicyId::new(&source.id)), &source.text) {
            Ok(policy) => parsed.push((policy, source)),
            Err(e) => {
                return Err(PolicyError::InvalidGrant {
                    id: grant.id.clone(),
                    message: e.to_string(),
                });
            }
        }
    }
    if !diagnostics.is_empty() {
        return Err(PolicyError::Rejected(diagnostics));
    }

    let mut original = PolicySet::new();
    let mut info = HashMap::new();
    let mut texts: HashMap<String, PolicySource> = HashMap::new();
    for (policy, source) in &parsed {
        let id = policy.id().to_string();
        let diag = |message: String| PolicyDiagnostic {
            policy_id: id.clone(),
            source_id: source.id.clone(),
            line: None,
            column: None,
            message,
        };
        match policy_info(policy, source) {
            Ok(i) => {
                info.insert(id.clone(), i);
            }
            Err(m) => diagnostics.push(diag(m)),
        }
        if original.add(policy.clone()).is_err() {
            diagnostics.push(diag(format!("duplicate policy id `{id}`")));
        }
        texts.insert(id, source.clone());
    }
    if !diagnostics.is_empty() {
        return Err(PolicyError::Rejected(diagnostics));
    }

    let validation = Validator::new(schema).validate(&original, ValidationMode::Strict);
    for error in validation.validation_errors() {
        let id = error.policy_id().to_string();
        let source = texts.get(&id);
        let (line, column) = source
            .and_then(|s| first_offset(error).map(|o| line_column(&s.text, o)))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        diagnostics.push(PolicyDiagnostic {
            source_id: source.map_or_else(|| id.clone(), |s| s.id.clone()),
            policy_id: id,
            line,
            column,
            message: error.to_string(),
        });
    }
    if !diagnostics.is_empty() {
        return Err(PolicyError::Rejected(diagnostics));
    }

    build(catalog, parsed, original, info, version)
}

/// Builds the entries and slices of a validated set.
fn build(
    catalog: &Catalog,
    parsed: Vec<(Policy, PolicySource)>,
    original: PolicySet,
    info: HashMap<String, PolicyInfo>,
    version: u64,
) -> Result<CompiledPolicies, PolicyError> {
    let internal = |m: String| PolicyError::Schema(m);
    let action_type = type_name("Action")?;
    let identity_type = type_name("Identity")?;
    let service_type = type_name("Service")?;
    let uid = |t: &EntityTypeName, id: &str| {
        EntityUid::from_type_name_and_id(t.clone(), EntityId::new(id))
    };

    let mut operations = HashMap::new();
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for (service, operation) in catalog.operations() {
        let key = OperationName::new(&service.name, &operation.name).to_string();
        let action = uid(&action_type, &key);
        let service_group = uid(&action_type, &service.name);
        let class_group = uid(&action_type, operation.class.as_str());
        let action_entities = [
            Entity::new_no_attrs(
                action.clone(),
                [service_group.clone(), class_group.clone()].into(),
            ),
            Entity::new_no_attrs(service_group, Default::default()),
            Entity::new_no_attrs(class_group, Default::default()),
        ]
        .map(|e| Arc::new(e.as_ref().clone()))
        .into();
        groups
            .entry(service.name.clone())
            .or_default()
            .push(key.clone());
        groups
            .entry(operation.class.as_str().to_owned())
            .or_default()
            .push(key.clone());
        operations.insert(
            key,
            OperationEntry {
                def: operation.clone(),
                action,
                resource: uid(&service_type, &service.name),
                action_entities,
                args_always_built: operation.args.iter().any(|a| {
                    matches!(
                        a.arg_type,
                        ArgType::Decimal | ArgType::Ipaddr | ArgType::Datetime
                    )
                }),
                slice: Slice::default(),
            },
        );
    }

    let mut all_as_permits = PolicySet::new();
    let mut conditions = HashMap::new();
    for (policy, _) in parsed {
        // `to_json` re-parses the policy text, so it runs once per policy.
        let json = policy.to_json().map_err(|e| internal(e.to_string()))?;
        conditions.insert(policy.id().to_string(), condition_text(&policy, &json));
        let (as_permit, sliced, needs) = rewrite(&policy, json).map_err(internal)?;
        all_as_permits
            .add(as_permit)
            .map_err(|e| internal(e.to_string()))?;
        let actions: Vec<String> = match covered_actions(&policy.action_constraint(), &groups) {
            Some(list) => list,
            None => operations.keys().cloned().collect(),
        };
        let identity = match policy.principal_constraint() {
            PrincipalConstraint::Eq(u)
            | PrincipalConstraint::In(u)
            | PrincipalConstraint::IsIn(_, u)
                if u.type_name() == &identity_type =>
            {
                Some(u.id().unescaped().to_owned())
            }
            _ => None,
        };
        for action in actions {
            let Some(entry) = operations.get_mut(&action) else {
                continue;
            };
            let SliceSet {
                set,
                needs: set_needs,
                ..
            } = match &identity {
                Some(id) => entry.slice.by_identity.entry(id.clone()).or_default(),
                None => entry
                    .slice
                    .any_identity
                    .get_or_insert_with(Default::default),
            };
            *set_needs = set_needs.union(needs);
            // A policy naming the same action twice is filed once.
            if set.policy(sliced.id()).is_none() {
                set.add(sliced.clone())
                    .map_err(|e| internal(e.to_string()))?;
            }
        }
    }

    let mut parsed = ParsedConditions::new();
    for entry in operations.values_mut() {
        merge_small_general_sets(&mut entry.slice).map_err(internal)?;
        let slice = &mut entry.slice;
        if let Some(set) = slice.any_identity.as_mut() {
            set.fast = FastPath::build(set.set.policies(), &conditions, None, &mut parsed);
        }
        for (id, set) in &mut slice.by_identity {
            let principal = uid(&identity_type, id);
            set.fast = FastPath::build(
                set.set.policies(),
                &conditions,
                Some(&principal),
                &mut parsed,
            );
        }
    }

    Ok(CompiledPolicies {
        version,
        catalog: catalog.clone(),
        info,
        operations,
        all_as_permits,
        original,
        identity_type,
        authorizer: Authorizer::new(),
        principals: PrincipalCache::default(),
    })
}

fn type_name(name: &str) -> Result<EntityTypeName, PolicyError> {
    EntityTypeName::from_str(name).map_err(|e| PolicyError::Schema(e.to_string()))
}

/// Largest general set copied into every identity's set of the same action.
const MERGE_LIMIT: usize = 64;

/// Copies a small general set into each identity set, so `authorize` makes one Cedar call.
fn merge_small_general_sets(slice: &mut Slice) -> Result<(), String> {
    let Some(SliceSet {
        set: general,
        needs: general_needs,
        ..
    }) = &slice.any_identity
    else {
        slice.merged = true;
        return Ok(());
    };
    if general.num_of_policies() > MERGE_LIMIT {
        return Ok(());
    }
    for SliceSet { set, needs, .. } in slice.by_identity.values_mut() {
        for policy in general.policies() {
            if set.policy(policy.id()).is_none() {
                set.add(policy.clone()).map_err(|e| e.to_string())?;
            }
        }
        *needs = needs.union(*general_needs);
    }
    slice.merged = true;
    Ok(())
}

/// The catalog actions an action scope can match; `None` means all of them.
fn covered_actions(
    constraint: &ActionConstraint,
    groups: &HashMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    let expand = |uid: &EntityUid, include_groups: bool| -> Option<Vec<String>> {
        if uid.type_name().to_string() != "Action" {
            return None;
        }
        let id = uid.id().unescaped();
        if id.contains(':') {
            Some(vec![id.to_owned()])
        } else if include_groups {
            Some(groups.get(id).cloned().unwrap_or_default())
        } else {
            // `action == Action::"read"`: a group is never the request's action.
            Some(Vec::new())
        }
    };
    match constraint {
        ActionConstraint::Any => None,
        ActionConstraint::Eq(uid) => expand(uid, false),
        ActionConstraint::In(uids) => {
            let mut all = Vec::new();
            for uid in uids {
                all.extend(expand(uid, true)?);
            }
            all.sort();
            all.dedup();
            Some(all)
        }
    }
}

/// The policy with effect `permit` (so one Cedar call reports every matching policy), the
/// same without its action scope (for slices, which already guarantee the scope holds), and
/// what its conditions read.
fn rewrite(
    policy: &Policy,
    mut json: serde_json::Value,
) -> Result<(Policy, Policy, Needs), String> {
    let needs = Needs::of_policy_json(&json);
    if let Some(obj) = json.as_object_mut() {
        obj.insert("effect".into(), serde_json::json!("permit"));
    }
    let as_permit =
        Policy::from_json(Some(policy.id().clone()), json.clone()).map_err(|e| e.to_string())?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("action".into(), serde_json::json!({"op": "All"}));
    }
    let sliced = Policy::from_json(Some(policy.id().clone()), json).map_err(|e| e.to_string())?;
    Ok((as_permit, sliced, needs))
}

/// Reads Steward's annotations of one policy.
fn policy_info(policy: &Policy, source: &PolicySource) -> Result<PolicyInfo, String> {
    let effect = match policy.effect() {
        CedarEffect::Permit => PolicyEffect::Permit,
        CedarEffect::Forbid => PolicyEffect::Forbid,
    };
    let approval = policy.annotation("approval").map(str::to_owned);
    let approvals = match policy.annotation("approvals") {
        None => 1,
        Some(n) => match n.trim().parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(format!(
                    "`@approvals(\"{n}\")` is not a whole number of at least 1"
                ));
            }
        },
    };
    if approval.is_some() && effect == PolicyEffect::Permit {
        return Err("`@approval` only applies to `forbid` policies".into());
    }
    if approval.is_none() && policy.annotation("approvals").is_some() {
        return Err("`@approvals` needs an `@approval(\"why\")` annotation".into());
    }
    let text = policy.to_cedar().unwrap_or_else(|| source.text.clone());
    Ok(PolicyInfo {
        id: policy.id().to_string(),
        source_id: source.id.clone(),
        effect,
        approval,
        approvals,
        description: policy.annotation("description").map(str::to_owned),
        text,
    })
}

/// Parses one source into policies with Steward's ids.
fn parse_source(source: &PolicySource) -> Result<Vec<Policy>, Vec<PolicyDiagnostic>> {
    let diag = |policy_id: &str, offset: Option<usize>, message: String| {
        let (line, column) = offset
            .map(|o| line_column(&source.text, o))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        PolicyDiagnostic {
            policy_id: policy_id.to_owned(),
            source_id: source.id.clone(),
            line,
            column,
            message,
        }
    };
    let set = PolicySet::from_str(&source.text).map_err(|errors| {
        errors
            .iter()
            .map(|e| diag(&source.id, first_offset(e), e.to_string()))
            .collect::<Vec<_>>()
    })?;
    if let Some(template) = set.templates().next() {
        return Err(vec![diag(
            &source.id,
            None,
            format!(
                "template `{}` is not supported here; use grants",
                template.id()
            ),
        )]);
    }
    let mut policies: Vec<(usize, &Policy)> = set
        .policies()
        .map(|p| {
            let n = p
                .id()
                .to_string()
                .strip_prefix("policy")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            (n, p)
        })
        .collect();
    policies.sort_by_key(|(n, _)| *n);
    let single = policies.len() == 1;
    Ok(policies
        .into_iter()
        .enumerate()
        .map(|(i, (_, p))| {
            let id = match p.annotation("id") {
                Some(id) => id.to_owned(),
                None if single => source.id.clone(),
                None => format!("{}#{}", source.id, i + 1),
            };
            p.new_id(PolicyId::new(id))
        })
        .collect())
}

/// The byte offset of a diagnostic's first labelled span.
fn first_offset(diagnostic: &dyn miette::Diagnostic) -> Option<usize> {
    diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// The Cedar text of a grant.
fn grant_source(catalog: &Catalog, grant: &Grant) -> Result<PolicySource, PolicyError> {
    let bad = |message: String| PolicyError::InvalidGrant {
        id: grant.id.clone(),
        message,
    };
    if grant.operations.is_empty() && grant.services.is_empty() {
        return Err(bad("names no operation and no service".into()));
    }
    // The expiry compares with `context.now_ms`: a Long is far cheaper to build per request
    // than a `datetime`, which Cedar parses with regular expressions.
    let expiry = grant.expires_at.as_millisecond();
    let mut actions: Vec<String> = Vec::new();
    let mut covered: Vec<&OperationDef> = Vec::new();
    for op in &grant.operations {
        let def = catalog
            .operation(op)
            .ok_or_else(|| bad(format!("unknown operation `{op}`")))?;
        covered.push(def);
        actions.push(format!("Action::{:?}", op.to_string()));
    }
    for service in &grant.services {
        let def = catalog
            .services
            .iter()
            .find(|s| &s.name == service)
            .ok_or_else(|| bad(format!("unknown service `{service}`")))?;
        covered.extend(def.operations.iter());
        actions.push(format!("Action::{service:?}"));
    }
    let mut conditions = vec![format!("context.now_ms < {expiry}")];
    for (name, value) in &grant.arg_equals {
        let literal = match value {
            serde_json::Value::String(s) => format!("{s:?}"),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) if n.is_i64() => n.to_string(),
            other => {
                return Err(bad(format!(
                    "constraint on `{name}` has unsupported value `{other}`"
                )));
            }
        };
        for def in &covered {
            let declared = def.args.iter().find(|a| &a.name == name);
            match declared.map(|a| a.arg_type) {
                Some(ArgType::String | ArgType::Long | ArgType::Bool) => {}
                _ => {
                    return Err(bad(format!(
                        "argument `{name}` is not a string, long or bool argument of `{}`",
                        def.name
                    )));
                }
            }
        }
        conditions.push(format!(
            "context.args has {name:?} && context.args[{name:?}] == {literal}"
        ));
    }
    let text = format!(
        "@grant({id:?})\n@expires_at({expires:?})\npermit (principal == Identity::{who:?}, action in [{actions}], resource)\nwhen {{ {conds} }};",
        id = grant.id,
        expires = grant.expires_at.to_string(),
        who = grant.identity_id,
        actions = actions.join(", "),
        conds = conditions.join(" && "),
    );
    Ok(PolicySource {
        id: format!("grant:{}", grant.id),
        text,
    })
}

/// Checks an operation class against the catalog's; used by `authorize`.
pub(crate) fn class_matches(entry: &OperationEntry, class: OperationClass) -> bool {
    entry.def.class == class
}
