//! MCP sessions (`Mcp-Session-Id`) of the handshake protocol versions, bound to the identity.
//!
//! A session id is 256 random bits from the system generator, base64url-encoded. It names
//! the negotiated protocol version and nothing else: identity always comes from the bearer
//! token. A request presenting a session created by another identity is refused.
//!
//! A session also holds its resource subscriptions (which upstream service, which URI)
//! and, while the client keeps it open, its standalone event stream (GET `/mcp`), on which
//! the upstreams' `notifications/resources/updated` for those subscriptions are passed on.
//! Updates go to the sessions that subscribed, and to no other.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::lock;
use crate::runtime::random_bytes;

/// Sessions idle longer than this are forgotten.
pub const IDLE_EXPIRY_MS: i64 = 60 * 60 * 1000;
/// At most this many live sessions per gateway instance (oldest idle evicted first).
pub const MAX_SESSIONS: usize = 100_000;
/// At most this many resource subscriptions per session.
pub const MAX_SUBSCRIPTIONS: usize = 1_000;

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
    /// Resource subscriptions: (service, URI).
    pub subscriptions: HashSet<(String, String)>,
    /// The standalone event stream, while the client holds it open.
    pub stream: Option<mpsc::Sender<Bytes>>,
    /// The client declared the `elicitation` capability in `initialize`.
    pub elicitation: bool,
}

/// What a request learns from its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// See [`Session::log_level`].
    pub log_level: Option<usize>,
    /// See [`Session::elicitation`].
    pub elicitation: bool,
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
            subscriptions: HashSet::new(),
            stream: None,
            elicitation: false,
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

    /// Checks that `id` is live and belongs to `identity_id`, and touches it; returns what
    /// it relays (see [`SessionInfo`]).
    pub fn check(
        &self,
        id: &str,
        identity_id: &str,
        now: i64,
    ) -> Result<SessionInfo, SessionRejection> {
        self.with_live(id, identity_id, now, |session| SessionInfo {
            log_level: session.log_level,
            elicitation: session.elicitation,
        })
    }

    /// Runs `f` on session `id` if it is live and belongs to `identity_id`, touching it.
    fn with_live<R>(
        &self,
        id: &str,
        identity_id: &str,
        now: i64,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Result<R, SessionRejection> {
        live(&mut lock(&self.inner), id, identity_id, now).map(f)
    }

    /// Records that the client of session `id` (just created) takes elicitation requests.
    pub fn accept_elicitation(&self, id: &str) {
        if let Some(session) = lock(&self.inner).get_mut(id) {
            session.elicitation = true;
        }
    }

    /// Sets the least severe log level relayed to a session owned by `identity_id`.
    pub fn set_log_level(
        &self,
        id: &str,
        identity_id: &str,
        level: usize,
        now: i64,
    ) -> Result<(), SessionRejection> {
        self.with_live(id, identity_id, now, |session| {
            session.log_level = Some(level);
        })
    }

    /// Records that a session owned by `identity_id` subscribed to `uri` of `service`;
    /// `Ok(false)`: the session holds [`MAX_SUBSCRIPTIONS`] already.
    pub fn subscribe(
        &self,
        id: &str,
        identity_id: &str,
        service: &str,
        uri: &str,
        now: i64,
    ) -> Result<bool, SessionRejection> {
        self.with_live(id, identity_id, now, |session| {
            let key = (service.to_owned(), uri.to_owned());
            if session.subscriptions.contains(&key) {
                return true;
            }
            if session.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                return false;
            }
            session.subscriptions.insert(key)
        })
    }

    /// Whether a session owned by `identity_id` may subscribe to `uri` (it holds it
    /// already, or fewer than [`MAX_SUBSCRIPTIONS`]); asked before the subscription is
    /// relayed, so a full session never subscribes an upstream it would not record.
    pub fn has_room(
        &self,
        id: &str,
        identity_id: &str,
        uri: &str,
        now: i64,
    ) -> Result<bool, SessionRejection> {
        self.with_live(id, identity_id, now, |session| {
            session.subscriptions.len() < MAX_SUBSCRIPTIONS
                || session.subscriptions.iter().any(|(_, u)| u == uri)
        })
    }

    /// Drops a session's subscriptions to `uri`; returns the services they were with.
    pub fn unsubscribe(
        &self,
        id: &str,
        identity_id: &str,
        uri: &str,
        now: i64,
    ) -> Result<Vec<String>, SessionRejection> {
        self.with_live(id, identity_id, now, |session| {
            let mut services = Vec::new();
            session.subscriptions.retain(|(service, u)| {
                let hit = u == uri;
                if hit {
                    services.push(service.clone());
                }
                !hit
            });
            services
        })
    }

    /// Whether any live session is subscribed to `uri` of `service`.
    pub fn subscribed(&self, service: &str, uri: &str) -> bool {
        let key = (service.to_owned(), uri.to_owned());
        lock(&self.inner)
            .values()
            .any(|s| s.subscriptions.contains(&key))
    }

    /// The URIs of `service` that some live session is subscribed to, each once: to
    /// subscribe again upstream after the server restarted or forgot its session.
    pub fn subscribed_uris(&self, service: &str) -> Vec<String> {
        let uris: std::collections::BTreeSet<String> = lock(&self.inner)
            .values()
            .flat_map(|s| s.subscriptions.iter())
            .filter(|(svc, _)| svc == service)
            .map(|(_, uri)| uri.clone())
            .collect();
        uris.into_iter().collect()
    }

    /// Makes `stream` the standalone event stream of a session owned by `identity_id`,
    /// replacing (and so ending) any earlier one.
    pub fn open_stream(
        &self,
        id: &str,
        identity_id: &str,
        stream: mpsc::Sender<Bytes>,
        now: i64,
    ) -> Result<(), SessionRejection> {
        self.with_live(id, identity_id, now, |session| {
            session.stream = Some(stream);
        })
    }

    /// Passes `event` (a resource update of `uri` at `service`) to the open streams of the
    /// live sessions subscribed to it; returns how many took it. Never waits: a stream whose
    /// buffer is full misses the update, and a closed one is forgotten.
    pub fn resource_updated(&self, service: &str, uri: &str, event: &Bytes, now: i64) -> usize {
        let key = (service.to_owned(), uri.to_owned());
        self.deliver(event, now, |s| s.subscriptions.contains(&key))
    }

    /// Passes `event` to the open stream of every live session; returns how many took it.
    pub fn broadcast(&self, event: &Bytes, now: i64) -> usize {
        self.deliver(event, now, |_| true)
    }

    /// Passes `event` to the open streams of the live sessions that `wanted` picks, without
    /// waiting: a full stream misses it, a closed one is forgotten.
    fn deliver(&self, event: &Bytes, now: i64, wanted: impl Fn(&Session) -> bool) -> usize {
        let mut delivered = 0;
        for session in lock(&self.inner).values_mut() {
            if now.saturating_sub(session.last_seen) >= IDLE_EXPIRY_MS || !wanted(session) {
                continue;
            }
            let Some(stream) = &session.stream else {
                continue;
            };
            match stream.try_send(event.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => session.stream = None,
            }
        }
        delivered
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
        assert_eq!(sessions.check(&id, "idn_a", 1).unwrap().log_level, None);
        assert!(!sessions.check(&id, "idn_a", 1).unwrap().elicitation);
        sessions.accept_elicitation(&id);
        assert!(sessions.check(&id, "idn_a", 1).unwrap().elicitation);
        assert_eq!(
            sessions.set_log_level(&id, "idn_b", 4, 1).unwrap_err(),
            SessionRejection::WrongIdentity
        );
        sessions.set_log_level(&id, "idn_a", 4, 1).unwrap();
        assert_eq!(sessions.check(&id, "idn_a", 1).unwrap().log_level, Some(4));
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
    fn updates_reach_only_the_open_streams_of_subscribed_sessions() {
        let sessions = Sessions::default();
        let a = sessions.create("idn_a", "2025-11-25", 0);
        let b = sessions.create("idn_b", "2025-11-25", 0);
        let quiet = sessions.create("idn_a", "2025-11-25", 0);
        let (tx_a, mut rx_a) = mpsc::channel(4);
        let (tx_b, mut rx_b) = mpsc::channel(4);
        let (tx_q, mut rx_q) = mpsc::channel(4);
        sessions.open_stream(&a, "idn_a", tx_a, 1).unwrap();
        sessions.open_stream(&b, "idn_b", tx_b, 1).unwrap();
        sessions.open_stream(&quiet, "idn_a", tx_q, 1).unwrap();
        assert_eq!(
            sessions.open_stream(&a, "idn_b", mpsc::channel(1).0, 1),
            Err(SessionRejection::WrongIdentity)
        );
        assert_eq!(sessions.subscribe(&a, "idn_a", "svc", "u://1", 2), Ok(true));
        assert_eq!(sessions.subscribe(&b, "idn_b", "svc", "u://2", 2), Ok(true));
        assert_eq!(
            sessions.subscribe(&a, "idn_b", "svc", "u://1", 2),
            Err(SessionRejection::WrongIdentity)
        );
        let event = Bytes::from_static(b"update");
        assert_eq!(sessions.resource_updated("svc", "u://1", &event, 3), 1);
        assert_eq!(rx_a.try_recv().unwrap(), event);
        assert!(rx_b.try_recv().is_err() && rx_q.try_recv().is_err());
        // Another service's resource of the same URI is another resource.
        assert_eq!(sessions.resource_updated("other", "u://1", &event, 3), 0);
        assert!(sessions.subscribed("svc", "u://1"));
        assert_eq!(sessions.subscribed_uris("svc"), vec!["u://1", "u://2"]);
        assert!(sessions.subscribed_uris("other").is_empty());
        assert_eq!(
            sessions.unsubscribe(&a, "idn_a", "u://1", 4),
            Ok(vec!["svc".to_owned()])
        );
        assert!(!sessions.subscribed("svc", "u://1"));
        assert_eq!(sessions.resource_updated("svc", "u://1", &event, 5), 0);
        // A list change goes to every open stream.
        assert_eq!(sessions.broadcast(&event, 5), 3);
        assert!(rx_a.try_recv().is_ok() && rx_b.try_recv().is_ok() && rx_q.try_recv().is_ok());
        // A closed stream is forgotten; a session idle past expiry gets nothing.
        drop(rx_b);
        assert_eq!(sessions.resource_updated("svc", "u://2", &event, 6), 0);
        assert_eq!(
            sessions.resource_updated("svc", "u://2", &event, IDLE_EXPIRY_MS + 2),
            0
        );
    }

    #[test]
    fn subscriptions_per_session_are_bounded() {
        let sessions = Sessions::default();
        let a = sessions.create("idn_a", "2025-11-25", 0);
        for i in 0..MAX_SUBSCRIPTIONS {
            assert_eq!(
                sessions.subscribe(&a, "idn_a", "svc", &format!("u://{i}"), 1),
                Ok(true)
            );
        }
        assert_eq!(
            sessions.subscribe(&a, "idn_a", "svc", "u://more", 1),
            Ok(false)
        );
        assert_eq!(sessions.has_room(&a, "idn_a", "u://more", 1), Ok(false));
        assert_eq!(sessions.has_room(&a, "idn_a", "u://0", 1), Ok(true));
        assert_eq!(
            sessions.has_room(&a, "idn_b", "u://0", 1),
            Err(SessionRejection::WrongIdentity)
        );
        assert_eq!(sessions.subscribe(&a, "idn_a", "svc", "u://0", 1), Ok(true));
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
