//! MCP sessions (`Mcp-Session-Id`) of the handshake protocol versions, bound to the identity.
//!
//! A session id is 256 random bits from the system generator, base64url-encoded. It names
//! the negotiated protocol version and nothing else: identity always comes from the bearer
//! token. A request presenting a session created by another identity is refused.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;

use crate::lock;
use crate::runtime::random_bytes;

/// Sessions idle longer than this are forgotten.
pub const IDLE_EXPIRY_MS: i64 = 60 * 60 * 1000;
/// At most this many live sessions per gateway instance (oldest idle evicted first).
pub const MAX_SESSIONS: usize = 100_000;

/// One live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The identity that created it.
    pub identity_id: String,
    /// The negotiated protocol version.
    pub protocol_version: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last use (ms).
    pub last_seen: i64,
    /// The least severe log level relayed to it (`logging/setLevel`), as an index into
    /// [`super::LOG_LEVELS`]; `None` (no `logging/setLevel` yet) relays none.
    pub log_level: Option<usize>,
}

/// Why a session id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRejection {
    /// Unknown or expired: the client must initialize again (HTTP 404).
    Unknown,
    /// The session belongs to another identity (HTTP 403).
    WrongIdentity,
}

/// The session `id` if it is live and belongs to `identity_id`, touched; an expired one is
/// dropped.
fn live<'m>(
    map: &'m mut HashMap<String, Session>,
    id: &str,
    identity_id: &str,
    now: i64,
) -> Result<&'m mut Session, SessionRejection> {
    let last_seen = map.get(id).ok_or(SessionRejection::Unknown)?.last_seen;
    if now.saturating_sub(last_seen) >= IDLE_EXPIRY_MS {
        map.remove(id);
        return Err(SessionRejection::Unknown);
    }
    let session = map.get_mut(id).ok_or(SessionRejection::Unknown)?;
    // INVARIANT: the identity comes from the verified token; a session id alone never
    // grants anything, and another identity's id is refused rather than adopted.
    if session.identity_id != identity_id {
        return Err(SessionRejection::WrongIdentity);
    }
    session.last_seen = now;
    Ok(session)
}

/// The live sessions of this instance.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Creates a session for `identity_id`; returns its id.
    pub fn create(&self, identity_id: &str, protocol_version: &str, now: i64) -> String {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let session = Session {
            identity_id: identity_id.to_owned(),
            protocol_version: protocol_version.to_owned(),
            created_at: now,
            last_seen: now,
            log_level: None,
        };
        let mut map = lock(&self.inner);
        map.retain(|_, s| now.saturating_sub(s.last_seen) < IDLE_EXPIRY_MS);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session);
        id
    }

    /// Checks that `id` is live and belongs to `identity_id`, and touches it; returns the
    /// least severe log level it relays (see [`Session::log_level`]).
    pub fn check(
        &self,
        id: &str,
        identity_id: &str,
        now: i64,
    ) -> Result<Option<usize>, SessionRejection> {
        let mut map = lock(&self.inner);
        Ok(live(&mut map, id, identity_id, now)?.log_level)
    }

    /// Sets the least severe log level relayed to a session owned by `identity_id`.
    pub fn set_log_level(
        &self,
        id: &str,
        identity_id: &str,
        level: usize,
        now: i64,
    ) -> Result<(), SessionRejection> {
        let mut map = lock(&self.inner);
        live(&mut map, id, identity_id, now)?.log_level = Some(level);
        Ok(())
    }

    /// Ends a session owned by `identity_id`.
    pub fn remove(&self, id: &str, identity_id: &str, now: i64) -> Result<(), SessionRejection> {
        let mut map = lock(&self.inner);
        live(&mut map, id, identity_id, now)?;
        map.remove(id);
        Ok(())
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// Whether there are no live sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bound_to_their_identity() {
        let sessions = Sessions::default();
        let id = sessions.create("idn_a", "2025-11-25", 0);
        assert_eq!(id.len(), 43, "256 bits, base64url without padding");
        assert!(sessions.check(&id, "idn_a", 1).is_ok());
        assert_eq!(sessions.check(&id, "idn_a", 1), Ok(None));
        assert_eq!(
            sessions.set_log_level(&id, "idn_b", 4, 1).unwrap_err(),
            SessionRejection::WrongIdentity
        );
        sessions.set_log_level(&id, "idn_a", 4, 1).unwrap();
        assert_eq!(sessions.check(&id, "idn_a", 1), Ok(Some(4)));
        assert_eq!(
            sessions.check(&id, "idn_b", 1).unwrap_err(),
            SessionRejection::WrongIdentity
        );
        assert_eq!(
            sessions.remove(&id, "idn_b", 1).unwrap_err(),
            SessionRejection::WrongIdentity
        );
        assert_eq!(
            sessions.check("nope", "idn_a", 1).unwrap_err(),
            SessionRejection::Unknown
        );
        assert_ne!(sessions.create("idn_a", "2025-11-25", 0), id);
        sessions.remove(&id, "idn_a", 2).unwrap();
        assert_eq!(
            sessions.check(&id, "idn_a", 3).unwrap_err(),
            SessionRejection::Unknown
        );
    }

    #[test]
    fn idle_sessions_expire() {
        let sessions = Sessions::default();
        let id = sessions.create("idn_a", "2025-06-18", 0);
        assert_eq!(
            sessions.check(&id, "idn_a", IDLE_EXPIRY_MS).unwrap_err(),
            SessionRejection::Unknown
        );
    }
}
