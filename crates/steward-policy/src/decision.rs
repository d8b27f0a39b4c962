//! Decisions as values, and `Permit`, the proof of authorization only this crate can make.

use serde::Serialize;
use steward_core::OperationName;

/// The outcome of an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The call may proceed.
    Allow,
    /// The call is refused.
    Deny,
    /// The call may proceed once humans approve this exact request.
    ApprovalRequired,
}

impl Effect {
    /// `allow`, `deny` or `approval_required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::ApprovalRequired => "approval_required",
        }
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// A `forbid` without `@approval` matched.
    Forbidden,
    /// No `permit` matched.
    NoPermit,
    /// A policy failed to evaluate (Steward denies where Cedar would skip the policy).
    EvaluationError,
    /// The request itself is malformed: unknown operation, class mismatch, bad arguments.
    InvalidRequest,
}

/// A matching `@approval` forbid: what a human must approve, and how many of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRequirement {
    /// The forbid's policy id.
    pub policy_id: String,
    /// Its `@approval("why")` text.
    pub reason: String,
    /// Its `@approvals("N")` quorum (default 1).
    pub approvals: u32,
}

/// The result of `authorize`. Fields are private so a `Deny` cannot be edited into an `Allow`;
/// read them with the accessors. Serializes for audit records and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub(crate) effect: Effect,
    pub(crate) deny_reason: Option<DenyReason>,
    pub(crate) determining: Vec<String>,
    pub(crate) matched_permits: Vec<String>,
    pub(crate) matched_forbids: Vec<String>,
    pub(crate) approvals: Vec<ApprovalRequirement>,
    pub(crate) errors: Vec<String>,
    pub(crate) version: u64,
    pub(crate) identity_id: String,
    pub(crate) operation: OperationName,
}

impl Decision {
    /// Allow, Deny or ApprovalRequired.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Why it is a Deny; `None` otherwise.
    pub fn deny_reason(&self) -> Option<DenyReason> {
        self.deny_reason
    }

    /// The policies that determined the outcome, sorted: the matching permits for Allow; the
    /// matching `@approval` forbids for ApprovalRequired; for Deny the matching forbids without
    /// `@approval`, or the erroring policies, or none when no permit matched.
    pub fn determining_policies(&self) -> &[String] {
        &self.determining
    }

    /// Every matching permit, sorted.
    pub fn matched_permits(&self) -> &[String] {
        &self.matched_permits
    }

    /// Every matching forbid, sorted.
    pub fn matched_forbids(&self) -> &[String] {
        &self.matched_forbids
    }

    /// The approvals needed (ApprovalRequired only), sorted by policy id.
    pub fn approval_requirements(&self) -> &[ApprovalRequirement] {
        &self.approvals
    }

    /// The `@approval` reasons (ApprovalRequired only).
    pub fn approval_reasons(&self) -> Vec<&str> {
        self.approvals.iter().map(|a| a.reason.as_str()).collect()
    }

    /// Distinct approvers needed: the largest quorum of the matching `@approval` forbids
    /// (0 unless ApprovalRequired).
    pub fn required_approvals(&self) -> u32 {
        self.approvals
            .iter()
            .map(|a| a.approvals)
            .max()
            .unwrap_or(0)
    }

    /// Evaluation or request errors; any of them makes the decision a Deny.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// The version of the policy set that decided.
    pub fn policy_version(&self) -> u64 {
        self.version
    }

    /// The identity the decision is about.
    pub fn identity_id(&self) -> &str {
        &self.identity_id
    }

    /// The operation the decision is about.
    pub fn operation(&self) -> &OperationName {
        &self.operation
    }

    /// Whether the decision is Allow.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// A `Permit` if the decision is Allow.
    pub fn permit(&self) -> Option<Permit> {
        (self.effect == Effect::Allow).then(|| self.make_permit(false))
    }

    /// A `Permit` for an ApprovalRequired decision. Call it only after verifying that
    /// `required_approvals()` distinct humans approved this exact request (digest-bound,
    /// single use; see the approvals workflow). Returns `None` for Allow and Deny.
    pub fn permit_after_approval(&self) -> Option<Permit> {
        (self.effect == Effect::ApprovalRequired).then(|| self.make_permit(true))
    }

    fn make_permit(&self, approved: bool) -> Permit {
        Permit {
            identity_id: self.identity_id.clone(),
            operation: self.operation.clone(),
            policy_version: self.version,
            human_approved: approved,
        }
    }
}

/// Proof that a call was authorized. Only this crate can construct one (its fields are
/// private), from an Allow decision or an approved ApprovalRequired decision.
///
/// Every function that forwards a call upstream or injects a credential takes `&Permit`, e.g.
/// `fn forward(req: Request<Body>, permit: &Permit)`, so an unauthorized call does not compile.
/// It is neither `Clone` nor `Deserialize`.
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    identity_id: String,
    operation: OperationName,
    policy_version: u64,
    human_approved: bool,
}

impl Permit {
    /// The authorized identity.
    pub fn identity_id(&self) -> &str {
        &self.identity_id
    }

    /// The authorized operation.
    pub fn operation(&self) -> &OperationName {
        &self.operation
    }

    /// The policy-set version that authorized it.
    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// Whether it came from a human approval rather than a plain Allow.
    pub fn human_approved(&self) -> bool {
        self.human_approved
    }
}
