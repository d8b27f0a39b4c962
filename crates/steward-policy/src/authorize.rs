//! `authorize`: evaluates the relevant slice of a compiled set and applies Steward's semantics.
//!
//! Every policy is evaluated as a `permit` (forbids are rewritten at compile time), so one
//! Cedar call reports every matching policy; the original effect and annotations are then
//! looked up. Semantics, stricter than Cedar's:
//! - any evaluation error denies (Cedar would skip the erroring policy);
//! - a matching forbid without `@approval`, or no matching permit, denies;
//! - a permit with only `@approval` forbids matching requires approval;
//! - otherwise the request is allowed.

use std::collections::BTreeSet;

use cedar_policy::{AuthorizationError, PolicySet};

use crate::compile::{CompiledPolicies, PolicyEffect, class_matches};
use crate::decision::{ApprovalRequirement, Decision, DenyReason, Effect};
use crate::needs::Needs;
use crate::request::{CedarInputs, Request, cedar_inputs};

/// What the Cedar calls reported.
#[derive(Default)]
struct Outcome {
    /// Satisfied policies; may repeat until `decide` sorts them.
    matched: Vec<String>,
    erroring: BTreeSet<String>,
    errors: Vec<String>,
}

/// Authorizes a request against the slice of policies that can apply to it.
pub fn authorize(compiled: &CompiledPolicies, request: &Request) -> Decision {
    evaluate(compiled, request, false)
}

/// Authorizes by evaluating every policy: the reference that slicing must agree with, kept for
/// tests and benchmarks. Same result as [`authorize`], only slower on large sets.
pub fn authorize_full_scan(compiled: &CompiledPolicies, request: &Request) -> Decision {
    evaluate(compiled, request, true)
}

fn evaluate(compiled: &CompiledPolicies, request: &Request, full_scan: bool) -> Decision {
    let invalid = |message: String| decide(compiled, request, Outcome::default(), Some(message));
    let (service, operation) = (&request.operation.service, &request.operation.operation);
    let mut key = String::with_capacity(service.len() + 1 + operation.len());
    key.push_str(service);
    key.push(':');
    key.push_str(operation);
    let Some(entry) = compiled.operations.get(&key) else {
        return invalid(format!("unknown operation `{key}`"));
    };
    if !class_matches(entry, request.class) {
        return invalid(format!(
            "operation `{key}` is `{}` in the catalog, not `{}`",
            entry.def.class, request.class
        ));
    }
    let specific = entry.slice.by_identity.get(&request.identity.id);
    // A merged identity set already holds the general policies.
    let general = entry
        .slice
        .any_identity
        .as_ref()
        .filter(|_| specific.is_none() || !entry.slice.merged);
    let needs = if full_scan {
        Needs::ALL
    } else {
        [general, specific]
            .into_iter()
            .flatten()
            .fold(Needs::default(), |n, s| n.union(s.needs))
    };
    let inputs = match cedar_inputs(compiled, entry, request, needs) {
        Ok(inputs) => inputs,
        Err(message) => return invalid(message),
    };
    let mut outcome = Outcome::default();
    if full_scan {
        run(compiled, &inputs, &compiled.all_as_permits, &mut outcome);
    } else {
        for slice_set in [general, specific].into_iter().flatten() {
            match slice_set.fast.as_ref().and_then(|f| f.satisfied(&inputs)) {
                Some(ids) => outcome.matched.extend(ids.into_iter().map(str::to_owned)),
                None => run(compiled, &inputs, &slice_set.set, &mut outcome),
            }
        }
    }
    decide(compiled, request, outcome, None)
}

fn run(compiled: &CompiledPolicies, inputs: &CedarInputs, set: &PolicySet, outcome: &mut Outcome) {
    let (request, entities) = inputs.api();
    let response = compiled.authorizer.is_authorized(&request, set, &entities);
    let diagnostics = response.diagnostics();
    outcome
        .matched
        .extend(diagnostics.reason().map(ToString::to_string));
    for error in diagnostics.errors() {
        match error {
            AuthorizationError::PolicyEvaluationError(e) => {
                outcome.erroring.insert(e.policy_id().to_string());
            }
        }
        outcome.errors.push(error.to_string());
    }
}

fn decide(
    compiled: &CompiledPolicies,
    request: &Request,
    outcome: Outcome,
    invalid: Option<String>,
) -> Decision {
    let mut permits = Vec::new();
    let mut forbids = Vec::new();
    let mut hard_forbids = Vec::new();
    let mut approvals = Vec::new();
    let mut matched = outcome.matched;
    matched.sort_unstable();
    matched.dedup();
    for id in matched {
        // INVARIANT: every evaluated policy has an entry in `info` (both come from `compile`).
        let Some(info) = compiled.info.get(&id) else {
            continue;
        };
        match info.effect {
            PolicyEffect::Permit => permits.push(id),
            PolicyEffect::Forbid => {
                match &info.approval {
                    Some(reason) => approvals.push(ApprovalRequirement {
                        policy_id: id.clone(),
                        reason: reason.clone(),
                        approvals: info.approvals,
                    }),
                    None => hard_forbids.push(id.clone()),
                }
                forbids.push(id);
            }
        }
    }
    let mut errors = outcome.errors;
    let (effect, deny_reason, determining) = if let Some(message) = invalid {
        errors.push(message);
        (Effect::Deny, Some(DenyReason::InvalidRequest), Vec::new())
    } else if !outcome.erroring.is_empty() || !errors.is_empty() {
        let erroring = outcome.erroring.into_iter().collect();
        (Effect::Deny, Some(DenyReason::EvaluationError), erroring)
    } else if !hard_forbids.is_empty() {
        (Effect::Deny, Some(DenyReason::Forbidden), hard_forbids)
    } else if permits.is_empty() {
        (Effect::Deny, Some(DenyReason::NoPermit), Vec::new())
    } else if !approvals.is_empty() {
        let ids = approvals.iter().map(|a| a.policy_id.clone()).collect();
        (Effect::ApprovalRequired, None, ids)
    } else {
        (Effect::Allow, None, permits.clone())
    };
    if effect != Effect::ApprovalRequired {
        approvals.clear();
    }
    errors.sort();
    Decision {
        effect,
        deny_reason,
        determining,
        matched_permits: permits,
        matched_forbids: forbids,
        approvals,
        errors,
        version: compiled.version,
        identity_id: request.identity.id.clone(),
        operation: request.operation.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::compile::{PolicySource, compile};
    use crate::request::IdentityAttrs;

    #[test]
    fn slices_take_the_fast_path_unless_a_policy_errors() {
        let catalog = Catalog::from_yaml(
            "services: [{name: s, operations: [{name: o, class: read, args: [{name: n, type: long}]}]}]",
        )
        .unwrap();
        let set = compile(
            &catalog,
            &[
                PolicySource::new("p", r#"permit (principal == Identity::"a", action, resource) when { context.args.n < 5 };"#),
                PolicySource::new("f", "forbid (principal, action, resource) when { context.args.n * 9223372036854775807 > 1 };"),
            ],
            1,
        )
        .unwrap();
        let entry = set.operations.get("s:o").unwrap();
        let slice_set = entry.slice.by_identity.get("a").unwrap();
        let fast = slice_set.fast.as_ref().expect("fast path built");
        let mut request = Request::new(
            IdentityAttrs {
                id: "a".into(),
                ..Default::default()
            },
            "s:o".parse().unwrap(),
            &catalog,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        request.args = serde_json::json!({"n": 0});
        let inputs = cedar_inputs(&set, entry, &request, slice_set.needs).unwrap();
        assert_eq!(fast.satisfied(&inputs), Some(vec!["p"]));
        request.args = serde_json::json!({"n": 2});
        let inputs = cedar_inputs(&set, entry, &request, slice_set.needs).unwrap();
        assert_eq!(fast.satisfied(&inputs), None, "an error falls back");
        assert_eq!(
            authorize(&set, &request).deny_reason(),
            Some(DenyReason::EvaluationError)
        );
    }

    #[test]
    fn the_principal_cache_sees_every_change_of_the_identity() {
        let catalog = Catalog::from_yaml(
            "identity_labels: [env]\nservices: [{name: s, operations: [{name: o, class: read}]}]",
        )
        .unwrap();
        let set = compile(
            &catalog,
            &[
                PolicySource::new(
                    "p",
                    r#"permit (principal, action, resource) when { principal.labels.env == "prod" && principal.risk_score < 50 && principal.kind == "agent" };"#,
                ),
                PolicySource::new(
                    "q",
                    r#"forbid (principal, action, resource) when { principal.hasTag("quarantine") };"#,
                ),
            ],
            1,
        )
        .unwrap();
        let identity = |env: &str, kind: &str, extra: Option<(&str, &str)>| IdentityAttrs {
            id: "a".into(),
            kind: kind.into(),
            owner: "ops".into(),
            labels: std::iter::once(("env".to_owned(), env.to_owned()))
                .chain(extra.map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect(),
        };
        let decide = |identity: IdentityAttrs, risk: i64| {
            let mut request = Request::new(
                identity,
                "s:o".parse().unwrap(),
                &catalog,
                "2026-01-01T00:00:00Z".parse().unwrap(),
            );
            request.risk_score = risk;
            authorize(&set, &request).effect()
        };
        // Each call reuses the compiled set (and its cache); each change must show.
        assert_eq!(decide(identity("prod", "agent", None), 10), Effect::Allow);
        assert_eq!(decide(identity("prod", "agent", None), 10), Effect::Allow);
        assert_eq!(decide(identity("dev", "agent", None), 10), Effect::Deny);
        assert_eq!(decide(identity("prod", "agent", None), 60), Effect::Deny);
        assert_eq!(decide(identity("prod", "bot", None), 10), Effect::Deny);
        assert_eq!(
            decide(identity("prod", "agent", Some(("quarantine", "x"))), 10),
            Effect::Deny
        );
        assert_eq!(decide(identity("prod", "agent", None), 10), Effect::Allow);
    }
}
