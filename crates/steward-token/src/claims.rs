//! What a token says: the [`Claims`] Steward signs, the [`Restriction`]s holders append,
//! and the [`VerifiedToken`] the verifier returns.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use steward_core::OperationName;

use crate::error::{TokenError, clip};

/// Longest id, audience or name accepted inside a token.
pub const MAX_FIELD_LEN: usize = 256;
/// Most actors recorded in a delegation chain.
pub const MAX_ACTORS: usize = 16;
/// Most services or operations in one restriction.
pub const MAX_RESTRICTION_ENTRIES: usize = 256;

/// The signed content of block 0, minted by Steward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Unique id of this token; attenuated copies share it, so revoking it revokes them all.
    pub token_id: String,
    /// The identity the token acts for (the subject).
    pub identity_id: String,
    /// The deployment the token is valid for.
    pub audience: String,
    /// Issue time, milliseconds since the Unix epoch.
    pub issued_at_ms: i64,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    /// Delegation chain from token exchange (RFC 8693 `act`): identity ids of the actors,
    /// the current actor first, then the actor that delegated to it, and so on.
    pub actor_chain: Vec<String>,
    /// Restriction applied from the start (e.g. from the `scope` of the token request).
    pub scope: Restriction,
}

impl Claims {
    /// Claims with no delegation chain and no scope restriction.
    pub fn new(
        token_id: impl Into<String>,
        identity_id: impl Into<String>,
        audience: impl Into<String>,
        issued_at_ms: i64,
        expires_at_ms: i64,
    ) -> Self {
        Self {
            token_id: token_id.into(),
            identity_id: identity_id.into(),
            audience: audience.into(),
            issued_at_ms,
            expires_at_ms,
            actor_chain: Vec::new(),
            scope: Restriction::default(),
        }
    }

    /// Checks the claims are mintable: ids present, bounded sizes, expiry after issue.
    pub fn validate(&self) -> Result<(), TokenError> {
        check_field("token_id", &self.token_id).map_err(TokenError::InvalidClaims)?;
        check_field("identity_id", &self.identity_id).map_err(TokenError::InvalidClaims)?;
        check_field("audience", &self.audience).map_err(TokenError::InvalidClaims)?;
        if self.expires_at_ms <= self.issued_at_ms {
            return Err(TokenError::InvalidClaims(
                "expiry must be after issue time".into(),
            ));
        }
        if self.actor_chain.len() > MAX_ACTORS {
            return Err(TokenError::InvalidClaims(format!(
                "more than {MAX_ACTORS} actors"
            )));
        }
        for actor in &self.actor_chain {
            check_field("actor", actor).map_err(TokenError::InvalidClaims)?;
        }
        self.scope.validate().map_err(TokenError::InvalidClaims)
    }
}

/// A narrowing of a token's rights. `None` means "no limit on this axis"; an empty set
/// allows nothing. Restrictions only ever intersect, so appending one cannot widen rights.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Restriction {
    /// Services the token may call (`github`), or `None` for any.
    pub services: Option<BTreeSet<String>>,
    /// Operations the token may perform (`github:issues.create`), or `None` for any.
    pub operations: Option<BTreeSet<OperationName>>,
    /// A shorter expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: Option<i64>,
}

impl Restriction {
    /// Limits the token to these services.
    pub fn services<I, S>(mut self, services: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.services = Some(services.into_iter().map(Into::into).collect());
        self
    }

    /// Limits the token to these operations.
    pub fn operations<I>(mut self, operations: I) -> Self
    where
        I: IntoIterator<Item = OperationName>,
    {
        self.operations = Some(operations.into_iter().collect());
        self
    }

    /// Limits the token to these operations written `service:operation`.
    pub fn operations_from_strs<'a, I>(self, operations: I) -> Result<Self, TokenError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let parsed = operations
            .into_iter()
            .map(|op| {
                op.parse::<OperationName>()
                    .map_err(TokenError::InvalidRestriction)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.operations(parsed))
    }

    /// Shortens the token's lifetime to `expires_at_ms`.
    pub fn expires_at_ms(mut self, expires_at_ms: i64) -> Self {
        self.expires_at_ms = Some(expires_at_ms);
        self
    }

    /// Whether this restriction limits nothing.
    pub fn is_unrestricted(&self) -> bool {
        self.services.is_none() && self.operations.is_none() && self.expires_at_ms.is_none()
    }

    /// Whether this restriction, on its own, lets `op` through (expiry is checked elsewhere).
    pub fn allows(&self, op: &OperationName) -> bool {
        let service_ok = self
            .services
            .as_ref()
            .is_none_or(|services| services.contains(&op.service));
        let operation_ok = self
            .operations
            .as_ref()
            .is_none_or(|operations| operations.contains(op));
        service_ok && operation_ok
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(services) = &self.services {
            if services.len() > MAX_RESTRICTION_ENTRIES {
                return Err(format!("more than {MAX_RESTRICTION_ENTRIES} services"));
            }
            for service in services {
                check_field("service", service)?;
                if service.contains(':') {
                    return Err(format!("service `{}` contains `:`", clip(service)));
                }
            }
        }
        if let Some(operations) = &self.operations {
            if operations.len() > MAX_RESTRICTION_ENTRIES {
                return Err(format!("more than {MAX_RESTRICTION_ENTRIES} operations"));
            }
            for op in operations {
                check_field("service", &op.service)?;
                check_field("operation", &op.operation)?;
                if op.service.contains(':') {
                    return Err(format!("service `{}` contains `:`", clip(&op.service)));
                }
            }
        }
        Ok(())
    }
}

/// A token whose signatures, audience and validity period checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Block 0, as minted.
    pub claims: Claims,
    /// Id of the Steward key that signed block 0.
    pub key_id: String,
    /// The earliest expiry over the claims and every restriction.
    pub effective_expires_ms: i64,
    /// Restrictions appended by holders, oldest first.
    pub restrictions: Vec<Restriction>,
    /// True if the token was attenuated or carries a delegation chain.
    pub delegated: bool,
    /// SHA-256 of the token text: the cache key, and a safe way to name the token in logs.
    pub token_hash: [u8; 32],
}

impl VerifiedToken {
    /// Whether every block (the claims' scope and each restriction) allows `op`: the
    /// effective rights are the intersection, applied on top of policy.
    pub fn allows(&self, op: &OperationName) -> bool {
        self.claims.scope.allows(op) && self.restrictions.iter().all(|r| r.allows(op))
    }

    /// Whether the token was narrowed in any way (scope or attenuation).
    pub fn is_restricted(&self) -> bool {
        !self.claims.scope.is_unrestricted()
            || self.restrictions.iter().any(|r| !r.is_unrestricted())
    }

    /// The token id (shared by attenuated copies).
    pub fn token_id(&self) -> &str {
        &self.claims.token_id
    }

    /// The identity the token acts for.
    pub fn identity_id(&self) -> &str {
        &self.claims.identity_id
    }

    /// Whether the token is still within its lifetime at `now_ms`, with clock-skew tolerance.
    pub fn is_live_at(&self, now_ms: i64) -> bool {
        now_ms
            < self
                .effective_expires_ms
                .saturating_add(crate::CLOCK_SKEW_MS)
    }
}

fn check_field(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > MAX_FIELD_LEN {
        return Err(format!("{what} is longer than {MAX_FIELD_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{what} `{}` contains control characters",
            clip(value)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(s: &str) -> OperationName {
        s.parse().unwrap()
    }

    #[test]
    fn unrestricted_allows_everything() {
        let r = Restriction::default();
        assert!(r.is_unrestricted());
        assert!(r.allows(&op("github:issues.create")));
    }

    #[test]
    fn services_and_operations_both_apply() {
        let r = Restriction::default()
            .services(["github"])
            .operations_from_strs(["github:issues.read", "slack:chat.post"])
            .unwrap();
        assert!(r.allows(&op("github:issues.read")));
        assert!(!r.allows(&op("github:issues.create")));
        // Listed as an operation, but its service is not allowed.
        assert!(!r.allows(&op("slack:chat.post")));
        let none = Restriction::default().services(Vec::<String>::new());
        assert!(!none.allows(&op("github:issues.read")));
    }

    #[test]
    fn claims_validation_rejects_bad_input() {
        let good = Claims::new("tok_1", "idn_1", "steward.test", 1_000, 2_000);
        assert!(good.validate().is_ok());
        let mut bad = good.clone();
        bad.expires_at_ms = 1_000;
        assert!(matches!(bad.validate(), Err(TokenError::InvalidClaims(_))));
        let mut bad = good.clone();
        bad.identity_id.clear();
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.actor_chain = vec!["a".into(); MAX_ACTORS + 1];
        assert!(bad.validate().is_err());
        let mut bad = good;
        bad.audience = "x\u{0}".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn restriction_validation_rejects_bad_names() {
        assert!(Restriction::default().services(["a:b"]).validate().is_err());
        assert!(Restriction::default().services([""]).validate().is_err());
        assert!(
            Restriction::default()
                .operations_from_strs(["nocolon"])
                .is_err()
        );
        assert!(Restriction::default().services(["ok"]).validate().is_ok());
    }
}
