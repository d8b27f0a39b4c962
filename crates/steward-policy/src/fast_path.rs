//! The fast path: one concrete evaluation of each policy condition of a slice, sharing one
//! evaluator, instead of Cedar's per-policy `Authorizer` loop.
//!
//! Cedar's `Authorizer` rebuilds each policy's condition and runs the partial evaluator on
//! it. For a slice, `compile` instead keeps each policy's condition as one expression: its
//! principal and resource scope, its `when` bodies and its negated `unless` bodies joined with
//! `&&` in Cedar's order. The action scope is left out (slicing guarantees it holds), and so is
//! a `principal == Identity::"<id>"` scope in the slice of that identity. `authorize`
//! evaluates them all with the engine's `Evaluator`.
//!
//! The fast path reports exactly the policies Cedar would find satisfied whenever no policy
//! errors. On any error, or anything unexpected, `authorize` falls back to Cedar's
//! `Authorizer` on the same slice, which attributes errors to policies. The
//! sliced-versus-full-scan proptest compares the two.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{EntityUid, Policy, PrincipalConstraint, ResourceConstraint};
use cedar_policy_core::ast::{self, Literal, SlotEnv, ValueKind};
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use serde_json::{Value, json};

use crate::request::CedarInputs;

/// A slice's conditions, each with the id of its policy.
#[derive(Debug)]
pub(crate) struct FastPath {
    conditions: Vec<(ast::Expr, String)>,
}

/// Parsed conditions shared by every slice a policy is filed in: by policy id, whether the
/// principal scope was dropped.
pub(crate) type ParsedConditions = HashMap<(String, bool), ast::Expr>;

impl FastPath {
    /// Builds the slice's conditions from each policy's [`Condition`]; `None` if any is
    /// missing (the slice then always takes Cedar's path). `identity` is the identity the slice
    /// is for, if any.
    pub(crate) fn build<'a>(
        policies: impl Iterator<Item = &'a Policy>,
        conditions: &HashMap<String, Option<Condition>>,
        identity: Option<&EntityUid>,
        parsed: &mut ParsedConditions,
    ) -> Option<Self> {
        let mut out = Vec::new();
        for policy in policies {
            let id = policy.id().to_string();
            let condition = conditions.get(&id)?.as_ref()?;
            let skip = identity.is_some() && condition.principal_eq.as_ref() == identity;
            let key = (id, skip);
            let expr = match parsed.get(&key) {
                Some(expr) => expr.clone(),
                None => {
                    let expr = ast::Expr::from_str(&condition.text(skip)).ok()?;
                    parsed.insert(key.clone(), expr.clone());
                    expr
                }
            };
            out.push((expr, key.0));
        }
        Some(Self { conditions: out })
    }

    /// The ids of the satisfied policies, or `None` to fall back to Cedar's path.
    pub(crate) fn satisfied(&self, inputs: &CedarInputs) -> Option<Vec<&str>> {
        let evaluator = Evaluator::new(
            inputs.request.clone(),
            &inputs.entities,
            Extensions::all_available(),
        );
        let slots = SlotEnv::new();
        let mut satisfied = Vec::new();
        for (expr, id) in &self.conditions {
            let value = evaluator.interpret(expr, &slots).ok()?;
            match value.value_kind() {
                ValueKind::Lit(Literal::Bool(true)) => satisfied.push(id.as_str()),
                ValueKind::Lit(Literal::Bool(false)) => {}
                _ => return None,
            }
        }
        Some(satisfied)
    }
}

/// A policy's condition without its action scope, as Cedar text in parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    /// The entity of a `principal == …` scope.
    principal_eq: Option<EntityUid>,
    /// The principal scope as text, if it constrains anything.
    principal: Option<String>,
    /// The resource scope and the `when`/`unless` bodies.
    rest: Vec<String>,
}

impl Condition {
    /// The whole condition, without the principal scope if `skip_principal`.
    pub(crate) fn text(&self, skip_principal: bool) -> String {
        let principal = self.principal.as_ref().filter(|_| !skip_principal);
        let parts: Vec<&str> = principal
            .into_iter()
            .chain(&self.rest)
            .map(String::as_str)
            .collect();
        if parts.is_empty() {
            "true".into()
        } else {
            parts.join(" && ")
        }
    }
}

/// A policy's condition without its action scope; `None` if it cannot be rendered.
pub(crate) fn condition_text(policy: &Policy, json: &Value) -> Option<Condition> {
    let (principal_eq, principal) = match policy.principal_constraint() {
        PrincipalConstraint::Any => (None, None),
        PrincipalConstraint::Eq(u) => {
            let text = format!("principal == {u}");
            (Some(u), Some(text))
        }
        PrincipalConstraint::In(u) => (None, Some(format!("principal in {u}"))),
        PrincipalConstraint::Is(t) => (None, Some(format!("principal is {t}"))),
        PrincipalConstraint::IsIn(t, u) => (None, Some(format!("principal is {t} in {u}"))),
    };
    let mut rest = Vec::new();
    match policy.resource_constraint() {
        ResourceConstraint::Any => {}
        ResourceConstraint::Eq(u) => rest.push(format!("resource == {u}")),
        ResourceConstraint::In(u) => rest.push(format!("resource in {u}")),
        ResourceConstraint::Is(t) => rest.push(format!("resource is {t}")),
        ResourceConstraint::IsIn(t, u) => rest.push(format!("resource is {t} in {u}")),
    }
    for condition in json.get("conditions")?.as_array()? {
        let negate = match condition.get("kind")?.as_str()? {
            "when" => false,
            "unless" => true,
            _ => return None,
        };
        let body = condition.get("body")?;
        let text = body_text(body)?;
        rest.push(if negate {
            format!("!({text})")
        } else {
            format!("({text})")
        });
    }
    Some(Condition {
        principal_eq,
        principal,
        rest,
    })
}

/// Renders one condition body through Cedar's own printer, via a scope-less policy.
fn body_text(body: &Value) -> Option<String> {
    let dummy = json!({
        "effect": "permit",
        "principal": {"op": "All"},
        "action": {"op": "All"},
        "resource": {"op": "All"},
        "conditions": [{"kind": "when", "body": body}],
    });
    let text = Policy::from_json(None, dummy).ok()?.to_cedar()?;
    let start = text.find("when")?;
    let open = start + text.get(start..)?.find('{')?;
    let close = text.rfind('}')?;
    text.get(open + 1..close).map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_render_scopes_and_negations() {
        let p = Policy::parse(
            None,
            r#"permit (principal == Identity::"a\"b", action, resource is Service) when { context.x == {a: 1} } unless { context.y };"#,
        )
        .unwrap();
        let condition = condition_text(&p, &p.to_json().unwrap()).unwrap();
        let text = condition.text(false);
        assert!(
            text.starts_with(r#"principal == Identity::"a\"b" && resource is Service && ("#),
            "{text}"
        );
        assert!(text.ends_with("&& !(context.y)"), "{text}");
        assert!(ast::Expr::from_str(&text).is_ok(), "{text}");
        let without = condition.text(true);
        assert!(without.starts_with("resource is Service && ("), "{without}");
        let p = Policy::parse(None, "forbid (principal, action, resource);").unwrap();
        let condition = condition_text(&p, &p.to_json().unwrap()).unwrap();
        assert_eq!(condition.text(false), "true");
        assert_eq!(condition.text(true), "true");
    }
}
