//! What the gateway reports about each call, and the source-network key derived from it.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The policy outcome of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Policy allowed the call and it was forwarded.
    Allowed,
    /// Policy denied the call.
    Denied,
    /// Policy required a human approval before the call may proceed.
    ApprovalRequired,
}

impl Outcome {
    /// The lowercase name: `allowed`, `denied` or `approval_required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::ApprovalRequired => "approval_required",
        }
    }
}

/// One call as the monitor sees it. The gateway builds one per request after the policy
/// decision (and after the upstream response, so `response_bytes` is known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// The audit/request id, quoted in alert evidence when present.
    pub request_id: Option<String>,
    /// The identity that made the call.
    pub identity_id: String,
    /// The token or key the identity authenticated with.
    pub credential_id: String,
    /// The upstream service, e.g. `github`.
    pub service: String,
    /// The operation within the service, e.g. `issues.create`.
    pub operation: String,
    /// The client address, when known.
    pub source_ip: Option<IpAddr>,
    /// The policy outcome.
    pub outcome: Outcome,
    /// Bytes returned to the caller (0 when nothing was forwarded).
    pub response_bytes: u64,
    /// When the call happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A source network: the /24 of an IPv4 address or the /48 of an IPv6 address.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetworkKey(u64);

const V4_TAG: u64 = 1 << 62;
const V6_TAG: u64 = 2 << 62;

impl NetworkKey {
    /// The network `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::v4(v4.octets()),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return Self::v4(v4.octets());
                }
                let prefix = u128::from(v6) >> 80; // the first 48 bits
                Self(V6_TAG | (prefix as u64))
            }
        }
    }

    fn v4(octets: [u8; 4]) -> Self {
        let [a, b, c, _] = octets;
        Self(V4_TAG | (u64::from(a) << 16) | (u64::from(b) << 8) | u64::from(c))
    }

    /// The raw key as stored in baselines.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds a key from [`NetworkKey::as_u64`].
    pub fn from_u64(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Display for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = self.0 & !(3 << 62);
        if self.0 & V6_TAG == V6_TAG {
            write!(
                f,
                "{:x}:{:x}:{:x}::/48",
                (body >> 32) & 0xffff,
                (body >> 16) & 0xffff,
                body & 0xffff
            )
        } else {
            write!(
                f,
                "{}.{}.{}.0/24",
                (body >> 16) & 0xff,
                (body >> 8) & 0xff,
                body & 0xff
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_groups_by_slash_24() {
        let a = NetworkKey::of("203.0.113.7".parse().unwrap());
        let b = NetworkKey::of("203.0.113.250".parse().unwrap());
        let c = NetworkKey::of("203.0.114.7".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "203.0.113.0/24");
    }

    #[test]
    fn ipv6_groups_by_slash_48() {
        let a = NetworkKey::of("2001:db8:aa::1".parse().unwrap());
        let b = NetworkKey::of("2001:db8:aa:ffff::9".parse().unwrap());
        let c = NetworkKey::of("2001:db8:ab::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:aa::/48");
    }

    #[test]
    fn mapped_ipv4_is_ipv4_and_families_never_collide() {
        let mapped = NetworkKey::of("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(mapped, NetworkKey::of("10.1.2.99".parse().unwrap()));
        let v6 = NetworkKey::of("0:a01:200::".parse().unwrap());
        assert_ne!(v6, mapped);
    }
}
