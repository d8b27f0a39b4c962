//! `explain`: a human-readable account of a decision, for `steward policy eval` and audits.

use std::fmt::Write;

use crate::compile::CompiledPolicies;
use crate::decision::{Decision, DenyReason, Effect};

/// Explains a decision: outcome, version, determining policies and why they decided.
///
/// Pass the compiled set to add each policy's `@description` and source; without it only the
/// ids are named.
pub fn explain(decision: &Decision, compiled: Option<&CompiledPolicies>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} `{}` for identity `{}` (policy set version {})",
        decision.effect().as_str().to_uppercase(),
        decision.operation(),
        decision.identity_id(),
        decision.policy_version()
    );
    let why = match (decision.effect(), decision.deny_reason()) {
        (Effect::Allow, _) => "allowed: a permit matched and no forbid matched",
        (Effect::ApprovalRequired, _) => {
            "approval required: a permit matched, and every matching forbid can be lifted by approval"
        }
        (Effect::Deny, Some(DenyReason::Forbidden)) => "denied: a forbid matched",
        (Effect::Deny, Some(DenyReason::NoPermit)) => "denied: no permit matched (default deny)",
        (Effect::Deny, Some(DenyReason::EvaluationError)) => {
            "denied: a policy failed to evaluate (Steward fails closed)"
        }
        (Effect::Deny, Some(DenyReason::InvalidRequest)) => "denied: the request is invalid",
        (Effect::Deny, None) => "denied",
    };
    let _ = writeln!(out, "{why}");
    let describe = |out: &mut String, id: &str| {
        let info = compiled.and_then(|c| c.policy(id));
        let _ = write!(out, "  - `{id}`");
        if let Some(info) = info {
            let effect = match info.effect {
                crate::compile::PolicyEffect::Permit => "permit",
                crate::compile::PolicyEffect::Forbid => "forbid",
            };
            let _ = write!(out, " ({effect}, from `{}`)", info.source_id);
            if let Some(description) = &info.description {
                let _ = write!(out, ": {description}");
            }
        }
        out.push('\n');
    };
    if !decision.determining_policies().is_empty() {
        out.push_str("determining policies:\n");
        for id in decision.determining_policies() {
            describe(&mut out, id);
        }
    }
    for requirement in decision.approval_requirements() {
        let _ = writeln!(
            out,
            "approval from {} approver(s) required by `{}`: {}",
            requirement.approvals, requirement.policy_id, requirement.reason
        );
    }
    let others: Vec<&String> = decision
        .matched_permits()
        .iter()
        .chain(decision.matched_forbids())
        .filter(|id| !decision.determining_policies().contains(id))
        .collect();
    if !others.is_empty() {
        out.push_str("also matched:\n");
        for id in others {
            describe(&mut out, id);
        }
    }
    for error in decision.errors() {
        let _ = writeln!(out, "error: {error}");
    }
    out
}
