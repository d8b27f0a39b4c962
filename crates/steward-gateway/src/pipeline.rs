//! The request phase pipeline shared by the HTTP proxy and the MCP gateway.
//!
//! Phases, in order (documented once, here):
//! 1. **authenticate**: the bearer token is verified (cached) and its identity must be active;
//! 2. **resolve**: the protocol adapter names the operation and extracts typed arguments;
//! 3. **authorize**: the token's own restrictions, then Cedar (with rates, time, risk);
//!    approval-required calls create or consume a human approval;
//! 4. **audit intent**: the decision record is durable before anything else happens; if it
//!    cannot be written the call fails with 503 and the upstream is never contacted;
//! 5. **inject**: the adapter fetches the upstream credential with the `Permit`;
//! 6. **forward**: the adapter calls the upstream;
//! 7. **audit outcome**: the outcome record is durable before the agent gets the response.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use steward_audit::{Actor, ActorKind, AuditEvent, Decision as AuditDecision, EventKind, Outcome};
use steward_core::{ErrorCode, OperationClass, OperationName};
use steward_policy::{Decision, Effect, IdentityAttrs, Permit, Request};
use steward_store::models::{ApprovalRecord, Identity};
use steward_token::VerifiedToken;

use crate::problem::Problem;
use crate::runtime::{Runtime, RuntimeError};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified token.
    pub token: Arc<VerifiedToken>,
    /// The identity it names.
    pub identity: Arc<Identity>,
    /// The client address.
    pub source_ip: Option<IpAddr>,
}

impl Caller {
    /// The audit actor for this caller, with its delegation chain.
    pub fn actor(&self) -> Actor {
        let mut actor = Actor::new(ActorKind::Identity, self.identity.id.clone());
        actor.name = Some(self.identity.name.clone());
        actor.delegation_chain = self.token.claims.actor_chain.clone();
        actor
    }
}

/// A named operation with its arguments, produced by a protocol adapter.
#[derive(Debug, Clone)]
pub struct ResolvedCall {
    /// `service:operation`.
    pub operation: OperationName,
    /// Read, write or delete.
    pub class: OperationClass,
    /// Typed arguments for policy.
    pub args: Value,
    /// Arguments to hash in the audit record.
    pub sensitive: Vec<String>,
    /// SHA-256 over the canonical request (binds approvals).
    pub digest: String,
}

/// Caller-supplied request metadata.
#[derive(Debug, Clone, Default)]
pub struct CallMeta {
    /// Per-request id.
    pub request_id: String,
    /// `Steward-Reason`.
    pub reason: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// `Steward-Approval: <id>` on a retry.
    pub approval_id: Option<String>,
    /// `Prefer: wait=N`.
    pub wait: Option<Duration>,
    /// Watched while the call is held: a held call whose agent hung up ends without
    /// running, whatever a human decides later.
    pub hangup: crate::peer::Hangup,
}

/// A call that may proceed.
#[derive(Debug)]
pub struct Admitted {
    /// Proof of authorization.
    pub permit: Permit,
    /// The decision.
    pub decision: Decision,
    /// The approval consumed, if any.
    pub approval_id: Option<String>,
}

/// Extracts the single bearer token; several Authorization headers are refused.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Problem> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let first = values
        .next()
        .ok_or_else(|| Problem::invalid_token("missing bearer token"))?;
    if values.next().is_some() {
        return Err(Problem::invalid_token("more than one Authorization header"));
    }
    let text = first
        .to_str()
        .map_err(|_| Problem::invalid_token("malformed Authorization header"))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| Problem::invalid_token("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Problem::invalid_token(
            "Authorization must use the Bearer scheme",
        ));
    }
    Ok(token.trim())
}

/// Phase 1: authenticate.
pub async fn authenticate(
    rt: &Runtime,
    headers: &HeaderMap,
    source_ip: Option<IpAddr>,
) -> Result<Caller, Problem> {
    let token = bearer(headers)?;
    let now = rt.now_ms();
    let verified = rt.tokens.verify(token, now).map_err(|e| {
        metrics::counter!("steward_auth_failures_total").increment(1);
        Problem::invalid_token(e.to_string())
    })?;
    let identity = rt
        .identity(verified.identity_id())
        .await
        .map_err(|e| e.to_problem())?
        .ok_or_else(|| Problem::invalid_token("the token's identity no longer exists"))?;
    if identity.status != "active" {
        return Err(Problem::invalid_token(format!(
            "identity is {}",
            identity.status
        )));
    }
    Ok(Caller {
        token: verified,
        identity,
        source_ip,
    })
}

fn audit_decision(effect: Effect) -> AuditDecision {
    match effect {
        Effect::Allow => AuditDecision::Allow,
        Effect::Deny => AuditDecision::Deny,
        Effect::ApprovalRequired => AuditDecision::ApprovalRequired,
    }
}

/// The decision record for a call.
pub fn decision_event(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    decision: Option<&Decision>,
) -> AuditEvent {
    let mut event = AuditEvent::new(EventKind::Decision, caller.actor());
    event.request_id = Some(meta.request_id.clone());
    event.operation = Some(call.operation.to_string());
    event.resource = Some(format!("Service::\"{}\"", call.operation.service));
    event.request_digest = Some(call.digest.clone());
    event.args = rt.redactor.redact(&call.args, &call.sensitive);
    event.reason = meta.reason.clone();
    event.traceparent = meta.traceparent.clone();
    if let Some(d) = decision {
        event.decision = Some(audit_decision(d.effect()));
        event.policy_ids = d.determining_policies().to_vec();
        event.policy_set_version = Some(d.policy_version().to_string());
        if !d.errors().is_empty() {
            event.detail = json!({"errors": d.errors()});
        }
    }
    event
}

/// What an approval-required decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approvals {
    /// Ask a human (or use a matching approval or grant).
    Request,
    /// Refuse: the request is an aid (an MCP completion) that must not page a human.
    Refuse,
}

/// Phases 3 and 4: authorize (with approvals) and write the durable decision record.
pub async fn admit(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
) -> Result<Admitted, Problem> {
    admit_as(rt, caller, call, meta, Approvals::Request).await
}

/// [`admit`], choosing what an approval-required decision does.
pub async fn admit_as(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    approvals: Approvals,
) -> Result<Admitted, Problem> {
    let now = rt.now_ms();
    let rid = meta.request_id.as_str();
    // The token's own attenuation applies before policy: effective rights are the intersection.
    if !caller.token.allows(&call.operation) {
        let mut event = decision_event(rt, caller, call, meta, None);
        event.decision = Some(AuditDecision::Deny);
        event.detail = json!({"reason": "token_restriction"});
        rt.audit(event)
            .await
            .map_err(|e| e.to_problem().request_id(rid))?;
        observe(rt, caller, call, steward_monitor::Outcome::Denied, 0, rid);
        return Err(Problem::forbidden(format!(
            "this token is restricted and does not allow `{}`",
            call.operation
        ))
        .request_id(rid));
    }
    let policy = rt.active_policy();
    let identity = &caller.identity;
    let mut request = Request::new(
        IdentityAttrs {
            id: identity.id.clone(),
            kind: identity.kind.clone(),
            owner: identity.owner.clone(),
            labels: identity.labels.clone(),
        },
        call.operation.clone(),
        policy.compiled.catalog(),
        steward_core::time::from_millis(now),
    );
    request.class = call.class;
    request.args = call.args.clone();
    request.tz = rt.settings.timezone.clone();
    request.source_ip = caller.source_ip;
    request.rate = rt.rates.counts(
        &identity.id,
        &call.operation.service,
        &call.operation.operation,
        now,
    );
    request.risk_score = i64::from(rt.monitor.risk_score(&identity.id, now));
    request.delegated = caller.token.delegated;
    let decision = steward_policy::authorize(&policy.compiled, &request);
    metrics::counter!("steward_decisions_total", "effect" => decision.effect().as_str())
        .increment(1);

    match decision.effect() {
        Effect::Allow => {
            let permit = decision
                .permit()
                .ok_or_else(|| Problem::forbidden("denied").request_id(rid))?;
            let event = decision_event(rt, caller, call, meta, Some(&decision));
            rt.audit(event)
                .await
                .map_err(|e| e.to_problem().request_id(rid))?;
            rt.rates.record(
                &identity.id,
                &call.operation.service,
                &call.operation.operation,
                now,
            );
            Ok(Admitted {
                permit,
                decision,
                approval_id: None,
            })
        }
        Effect::Deny => {
            let event = decision_event(rt, caller, call, meta, Some(&decision));
            rt.audit(event)
                .await
                .map_err(|e| e.to_problem().request_id(rid))?;
            observe(rt, caller, call, steward_monitor::Outcome::Denied, 0, rid);
            let detail = match decision.deny_reason() {
                Some(steward_policy::DenyReason::InvalidRequest) => {
                    format!(
                        "`{}` was denied: the request does not match the operation's declared arguments",
                        call.operation
                    )
                }
                Some(steward_policy::DenyReason::EvaluationError) => {
                    format!(
                        "`{}` was denied: a policy could not be evaluated",
                        call.operation
                    )
                }
                _ => format!(
                    "policy does not allow `{}` for this identity",
                    call.operation
                ),
            };
            Err(Problem::forbidden(detail)
                .with("operation", call.operation.to_string())
                .request_id(rid))
        }
        Effect::ApprovalRequired if approvals == Approvals::Request => {
            approval_gate(rt, caller, call, meta, decision).await
        }
        Effect::ApprovalRequired => {
            let mut event = decision_event(rt, caller, call, meta, Some(&decision));
            event.detail = json!({"approval": "not_requested"});
            rt.audit(event)
                .await
                .map_err(|e| e.to_problem().request_id(rid))?;
            Err(Problem::forbidden(format!(
                "`{}` needs a human approval, which this request does not ask for",
                call.operation
            ))
            .with("operation", call.operation.to_string())
            .request_id(rid))
        }
    }
}

async fn approval_gate(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    decision: Decision,
) -> Result<Admitted, Problem> {
    let rid = meta.request_id.as_str();
    // A retry presenting an approval: consume it if it matches this exact request.
    if let Some(approval_id) = &meta.approval_id {
        return consume_approval(rt, caller, call, meta, decision, approval_id).await;
    }
    // "Approve similar for T": a live grant of this identity whose argument constraints
    // match stands in for a fresh human approval (its policy already checked the expiry).
    match crate::grants::pre_approval(rt, &caller.identity.id, &decision).await {
        Ok(Some(grant)) => {
            let permit = decision
                .permit_after_approval()
                .ok_or_else(|| Problem::forbidden("denied").request_id(rid))?;
            let mut event = decision_event(rt, caller, call, meta, Some(&decision));
            event.decision = Some(AuditDecision::Allow);
            event.detail = json!({"approval": "pre_approved", "grant_id": grant.id, "granted_by_approval": grant.body.get("approval_id")});
            rt.audit(event)
                .await
                .map_err(|e| e.to_problem().request_id(rid))?;
            let now = rt.now_ms();
            rt.rates.record(
                &caller.identity.id,
                &call.operation.service,
                &call.operation.operation,
                now,
            );
            return Ok(Admitted {
                permit,
                decision,
                approval_id: None,
            });
        }
        Ok(None) => {}
        Err(e) => return Err(e.to_problem().request_id(rid)),
    }
    // The approval request is created (or coalesced) first so the decision record can name it.
    let requested = crate::approvals::request(rt, caller, call, meta, &decision).await;
    let mut event = decision_event(rt, caller, call, meta, Some(&decision));
    match &requested {
        Ok(approval) => event.approval_id = Some(approval.id.clone()),
        Err(e) => {
            event.detail = json!({"approval": "not_requested", "why": e.to_string()});
        }
    }
    rt.audit(event)
        .await
        .map_err(|e| e.to_problem().request_id(rid))?;
    observe(
        rt,
        caller,
        call,
        steward_monitor::Outcome::ApprovalRequired,
        0,
        rid,
    );
    let approval = requested.map_err(|e| e.to_problem().request_id(rid))?;
    if let Some(wait) = meta.wait {
        let wait = wait.min(Duration::from_millis(rt.settings.max_approval_wait_ms));
        let decided = tokio::select! {
            decided = crate::approvals::wait_for_decision(rt, &approval.id, wait) => decided,
            () = meta.hangup.gone() => {
                tracing::info!(
                    request_id = %rid,
                    approval_id = %approval.id,
                    "the agent hung up while its call was held; the call was dropped"
                );
                return Err(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "client_closed_request",
                    "The client went away while the call was held",
                )
                .with("approval_id", approval.id.clone())
                .request_id(rid));
            }
        };
        if let Some(status) = decided {
            if status == "approved" {
                return consume_approval(rt, caller, call, meta, decision, &approval.id).await;
            }
            return Err(
                Problem::forbidden(format!("the approval request was {status}"))
                    .with("approval_id", approval.id.clone())
                    .request_id(rid),
            );
        }
    }
    Err(approval_required_problem(&approval).request_id(rid))
}

/// The 403 problem that tells an agent a human must approve.
pub fn approval_required_problem(approval: &ApprovalRecord) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "approval_required",
        "Approval required",
    )
    .detail(format!(
        "`{}` needs human approval; retry with `Steward-Approval: {}` once approved",
        approval.operation, approval.id
    ))
    .with("approval_id", approval.id.clone())
    .with("poll_url", format!("/v1/approvals/{}", approval.id))
    .with("expires_at", approval.expires_at)
    .with("status", approval.status.clone())
}

async fn consume_approval(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    decision: Decision,
    approval_id: &str,
) -> Result<Admitted, Problem> {
    let rid = meta.request_id.as_str();
    let outcome =
        crate::approvals::consume(rt, approval_id, &caller.identity.id, &call.digest).await;
    let mut event = decision_event(rt, caller, call, meta, Some(&decision));
    event.approval_id = Some(approval_id.to_owned());
    match outcome {
        Ok(()) => {
            let permit = decision
                .permit_after_approval()
                .ok_or_else(|| Problem::forbidden("denied").request_id(rid))?;
            event.decision = Some(AuditDecision::Allow);
            event.detail = json!({"approval": "consumed"});
            rt.audit(event)
                .await
                .map_err(|e| e.to_problem().request_id(rid))?;
            let now = rt.now_ms();
            rt.rates.record(
                &caller.identity.id,
                &call.operation.service,
                &call.operation.operation,
                now,
            );
            Ok(Admitted {
                permit,
                decision,
                approval_id: Some(approval_id.to_owned()),
            })
        }
        Err(reason) => {
            event.decision = Some(AuditDecision::Deny);
            event.detail = json!({"approval": "rejected", "why": reason.to_string()});
            rt.audit(event)
                .await
                .map_err(|e| e.to_problem().request_id(rid))?;
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "approval_invalid",
                "Approval not valid for this request",
            )
            .detail(reason.to_string())
            .with("approval_id", approval_id.to_owned())
            .request_id(rid))
        }
    }
}

/// Phase 7: the outcome record, durable before the response is released.
pub async fn audit_outcome(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    admitted: &Admitted,
    outcome: Outcome,
    detail: Value,
) -> Result<(), RuntimeError> {
    let mut event = AuditEvent::new(EventKind::Outcome, caller.actor());
    event.request_id = Some(meta.request_id.clone());
    event.operation = Some(call.operation.to_string());
    event.request_digest = Some(call.digest.clone());
    event.decision = Some(AuditDecision::Allow);
    event.policy_set_version = Some(admitted.decision.policy_version().to_string());
    event.approval_id = admitted.approval_id.clone();
    event.traceparent = meta.traceparent.clone();
    let bytes = outcome.bytes_out;
    event.outcome = Some(outcome);
    event.detail = detail;
    rt.audit(event).await?;
    observe(
        rt,
        caller,
        call,
        steward_monitor::Outcome::Allowed,
        bytes,
        &meta.request_id,
    );
    Ok(())
}

/// Feeds monitoring and applies the circuit breaker.
pub fn observe(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    outcome: steward_monitor::Outcome,
    bytes: u64,
    rid: &str,
) {
    let event = steward_monitor::CallEvent {
        request_id: Some(rid.to_owned()),
        identity_id: caller.identity.id.clone(),
        credential_id: caller.token.token_id().to_owned(),
        service: call.operation.service.clone(),
        operation: call.operation.operation.clone(),
        source_ip: caller.source_ip,
        outcome,
        response_bytes: bytes,
        at_ms: rt.now_ms(),
    };
    let observation = rt.monitor.observe(&event);
    crate::monitoring::handle(rt, &caller.identity, observation);
}

/// The request id the outer HTTP layer assigned, as a request extension; handlers reuse it
/// so every log line and the response header carry the same id.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A fresh request id: time-ordered with 80 random bits, so the audit log's request-id
/// index on PostgreSQL grows at its end (a random key dirtied one index page per record).
pub fn request_id() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    steward_core::id::time_ordered("req", now_ms, crate::runtime::random_bytes::<10>())
}

/// Maps a failure to fetch the upstream credential to a problem (fail closed).
pub fn credential_problem(e: &RuntimeError, rid: &str) -> Problem {
    match e {
        RuntimeError::NotFound(_) => Problem::unavailable(
            ErrorCode::VAULT_DECRYPT_FAILED,
            "the upstream credential is not configured",
        ),
        other => other.to_problem(),
    }
    .request_id(rid)
}
