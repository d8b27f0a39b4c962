//! SSRF guard: classifies upstream addresses and parses every spelling of an IP in a URL host.
//!
//! # How the proxy must use this (DNS rebinding)
//! Checking a *name* and then letting the HTTP client resolve it again is unsafe: the
//! second lookup can return `127.0.0.1` (DNS rebinding). The proxy must:
//! 1. parse the upstream host with [`parse_host`] (an IP literal in any spelling is
//!    recognised here, and well-known metadata names are refused by [`check_host`]);
//! 2. resolve a name once itself;
//! 3. pass every resolved address to [`filter_resolved`], which fails if *any* address is
//!    blocked (a name that mixes public and private answers is an attack, not a fallback);
//! 4. connect to one of the returned, checked [`SocketAddr`]s (pin it), sending the original
//!    name only as `Host`/SNI. Never hand the name back to a resolver after the check.
//!
//! IPv6 addresses that embed an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are classified by the embedded address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What kind of address an IP is, for egress decisions. Most specific class wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    /// Globally routable: allowed by default.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), `fc00::/7`, deprecated site-local
    /// `fec0::/10`, local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud instance metadata and platform endpoints: `169.254.169.254`, `169.254.170.2`,
    /// `169.254.169.253`, `fd00:ec2::254`, `100.100.100.200`, `168.63.129.16`, `192.0.0.192`.
    Metadata,
    /// Carrier-grade NAT shared space `100.64/10`.
    SharedCgnat,
    /// `0.0.0.0/8`, `::`: on Linux, connecting to `0.0.0.0` reaches the local host.
    Unspecified,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Reserved, documentation, benchmarking and protocol-assignment ranges
    /// (`240/4`, `192.0.0/24`, `192.0.2/24`, `198.18/15`, `198.51.100/24`, `203.0.113/24`,
    /// `2001::/23`, `2001:db8::/32`, `3fff::/20`, `100::/64`, other IPv6 outside `2000::/3`).
    Reserved,
}

impl AddrClass {
    /// A short lowercase name, e.g. `loopback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::Metadata => "metadata",
            Self::SharedCgnat => "shared (cgnat)",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which non-public destinations a service may reach. The default allows only public ones.
///
/// Unspecified, multicast and broadcast addresses are always blocked: no upstream lives
/// there. Metadata addresses are blocked even when link-local or private are allowed;
/// only `allow_metadata` opens them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allow `127/8` and `::1` (tests, sidecars).
    pub allow_loopback: bool,
    /// Allow RFC 1918 and unique-local IPv6.
    pub allow_private: bool,
    /// Allow link-local (metadata excluded).
    pub allow_link_local: bool,
    /// Allow carrier-grade NAT shared space.
    pub allow_shared_cgnat: bool,
    /// Allow reserved and documentation ranges.
    pub allow_reserved: bool,
    /// Allow cloud metadata endpoints. Almost never right.
    pub allow_metadata: bool,
}

impl EgressPolicy {
    /// Public addresses only (the default).
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Whether this policy allows an address class.
    pub fn allows(&self, class: AddrClass) -> bool {
        match class {
            AddrClass::Public => true,
            AddrClass::Loopback => self.allow_loopback,
            AddrClass::Private => self.allow_private,
            AddrClass::LinkLocal => self.allow_link_local,
            AddrClass::Metadata => self.allow_metadata,
            AddrClass::SharedCgnat => self.allow_shared_cgnat,
            AddrClass::Reserved => self.allow_reserved,
            AddrClass::Unspecified | AddrClass::Multicast | AddrClass::Broadcast => false,
        }
    }
}

/// Why an upstream destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// The address is in a class the service's policy does not allow.
    #[error("upstream address `{addr}` is {class} and not allowed for this service")]
    Blocked {
        /// The refused address (as given, before unwrapping any embedded IPv4).
        addr: IpAddr,
        /// Its class.
        class: AddrClass,
    },
    /// The host name is a well-known metadata or loopback name.
    #[error("upstream host `{host}` is {class} and not allowed for this service")]
    BlockedName {
        /// The normalised name.
        host: String,
        /// The class the name implies.
        class: AddrClass,
    },
    /// The host is not a valid URL host.
    #[error("invalid upstream host `{0}`")]
    InvalidHost(String),
    /// The name resolved to no address.
    #[error("upstream host resolved to no address")]
    NoAddresses,
}

/// The IPv4 address embedded in an IPv6 address, if it is one of the embedding forms
/// (mapped, compatible, SIIT-translated, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = |a: usize| -> Option<Ipv4Addr> {
        Some(Ipv4Addr::new(
            *o.get(a)?,
            *o.get(a + 1)?,
            *o.get(a + 2)?,
            *o.get(a + 3)?,
        ))
    };
    match s {
        // ::ffff:a.b.c.d (mapped)
        [0, 0, 0, 0, 0, 0xffff, _, _] => tail(12),
        // ::ffff:0:a.b.c.d (SIIT translated, RFC 2765)
        [0, 0, 0, 0, 0xffff, 0, _, _] => tail(12),
        // ::a.b.c.d (compatible, deprecated); `::` and `::1` are not embeddings.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => tail(12),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix, RFC 6052)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => tail(12),
        // 2002:AABB:CCDD::/48 (6to4)
        [0x2002, _, _, _, _, _, _, _] => tail(2),
        _ => None,
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// Classifies an IPv4 address.
pub fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    const METADATA: [[u8; 4]; 6] = [
        [169, 254, 169, 254], // AWS, GCP, Azure, OpenStack, DigitalOcean...
        [169, 254, 170, 2],   // AWS ECS task metadata
        [169, 254, 169, 253], // AWS VPC DNS / time
        [100, 100, 100, 200], // Alibaba Cloud
        [168, 63, 129, 16],   // Azure WireServer
        [192, 0, 0, 192],     // Oracle Cloud
    ];
    if METADATA.iter().any(|m| ip.octets() == *m) {
        return AddrClass::Metadata;
    }
    let v4 = |net, p| in_v4(ip, net, p);
    if ip == Ipv4Addr::BROADCAST {
        AddrClass::Broadcast
    } else if v4([0, 0, 0, 0], 8) {
        AddrClass::Unspecified
    } else if v4([127, 0, 0, 0], 8) {
        AddrClass::Loopback
    } else if v4([10, 0, 0, 0], 8) || v4([172, 16, 0, 0], 12) || v4([192, 168, 0, 0], 16) {
        AddrClass::Private
    } else if v4([169, 254, 0, 0], 16) {
        AddrClass::LinkLocal
    } else if v4([100, 64, 0, 0], 10) {
        AddrClass::SharedCgnat
    } else if v4([224, 0, 0, 0], 4) {
        AddrClass::Multicast
    } else if v4([240, 0, 0, 0], 4)
        || v4([192, 0, 0, 0], 24)
        || v4([192, 0, 2, 0], 24)
        || v4([192, 88, 99, 0], 24)
        || v4([198, 18, 0, 0], 15)
        || v4([198, 51, 100, 0], 24)
        || v4([203, 0, 113, 0], 24)
    {
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

/// Classifies an IPv6 address; embedded IPv4 addresses are classified as IPv4.
pub fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    if let Some(v4) = embedded_ipv4(ip) {
        return classify_v4(v4);
    }
    let v6 = |net, p| in_v6(ip, net, p);
    if ip == Ipv6Addr::from([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254]) {
        AddrClass::Metadata
    } else if ip.is_unspecified() {
        AddrClass::Unspecified
    } else if ip.is_loopback() {
        AddrClass::Loopback
    } else if v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7)
        || v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10)
        || v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48)
    {
        AddrClass::Private
    } else if v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10) {
        AddrClass::LinkLocal
    } else if v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8) {
        AddrClass::Multicast
    } else if v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32)
        || v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20)
        || v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23)
        || v6([0x0100, 0, 0, 0, 0, 0, 0, 0], 64)
        || !v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
    {
        // Everything outside global unicast 2000::/3 that is not named above is reserved.
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

/// Classifies an address.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Refuses an address the policy does not allow.
pub fn check_addr(policy: &EgressPolicy, addr: IpAddr) -> Result<(), SsrfError> {
    let class = classify(addr);
    if policy.allows(class) {
        Ok(())
    } else {
        Err(SsrfError::Blocked { addr, class })
    }
}

/// Checks every resolved address; returns them (deduplicated, order kept) if all pass.
///
/// Fails if the list is empty or if *any* address is blocked: a name that resolves to both
/// a public and an internal address is treated as hostile rather than filtered. The proxy
/// connects only to addresses returned here (see the module docs).
pub fn filter_resolved(
    policy: &EgressPolicy,
    addrs: &[SocketAddr],
) -> Result<Vec<SocketAddr>, SsrfError> {
    if addrs.is_empty() {
        return Err(SsrfError::NoAddresses);
    }
    let mut checked: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        check_addr(policy, addr.ip())?;
        if !checked.contains(addr) {
            checked.push(*addr);
        }
    }
    Ok(checked)
}

/// An upstream host after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal, whatever its spelling in the URL.
    Ip(IpAddr),
    /// A DNS name: lowercased, IDNA-mapped to ASCII, one trailing dot removed.
    Name(String),
}

/// Longest host accepted.
const MAX_HOST_BYTES: usize = 255;

/// Parses a URL host the way browsers (WHATWG URL) and libc `inet_aton` read it.
///
/// Recognises `[v6]` literals (zone ids are refused), IPv4 in dotted, shortened (`127.1`),
/// hex (`0x7f000001`, `0x7f.1`), octal (`0177.0.0.1`) and decimal (`2130706433`) forms, a
/// trailing dot, percent-encoded hosts and full-width digits. A host whose last label is
/// numeric but is not a valid IPv4 address (`1.2.3.256`) is invalid, as in browsers, rather
/// than a name. Accepts an optional `:port` only inside the caller: pass the bare host.
pub fn parse_host(input: &str) -> Result<Host, SsrfError> {
    let invalid = || SsrfError::InvalidHost(input.chars().take(80).collect());
    if input.is_empty()
        || input.len() > MAX_HOST_BYTES
        || input.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid());
    }
    if let Some(inner) = input.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(invalid)?;
        if inner.contains('%') {
            return Err(invalid());
        }
        return inner
            .parse::<Ipv6Addr>()
            .map(|v6| Host::Ip(IpAddr::V6(v6)))
            .map_err(|_| invalid());
    }
    // The WHATWG host parser: percent-decoding, IDNA mapping (full-width digits and dots),
    // and its IPv4 number parser (hex, octal, shortened and single-number forms).
    match url::Host::parse(input).map_err(|_| invalid())? {
        url::Host::Ipv4(v4) => Ok(Host::Ip(IpAddr::V4(v4))),
        url::Host::Ipv6(v6) => Ok(Host::Ip(IpAddr::V6(v6))),
        url::Host::Domain(domain) => {
            let name = domain
                .strip_suffix('.')
                .unwrap_or(&domain)
                .to_ascii_lowercase();
            if name.is_empty() || name.contains("..") {
                return Err(invalid());
            }
            // Defence in depth: a name that reads as IPv4 to libc `inet_aton` is an IP.
            match parse_ipv4_lenient(&name) {
                Some(Some(v4)) => Ok(Host::Ip(IpAddr::V4(v4))),
                Some(None) => Err(invalid()),
                None => Ok(Host::Name(name)),
            }
        }
    }
}

/// WHATWG/`inet_aton` IPv4 parsing.
///
/// Returns `None` if the host is a name (its last label is not numeric), `Some(None)` if it
/// looks numeric but is not a valid address, and `Some(Some(addr))` otherwise.
pub fn parse_ipv4_lenient(host: &str) -> Option<Option<Ipv4Addr>> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = trimmed.split('.').collect();
    let last = parts.last()?;
    let ends_in_number = (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || parse_ipv4_part(last).is_some();
    if !ends_in_number {
        // Not "ends in a number": a domain name (or garbage left to the name checks).
        return None;
    }
    if parts.len() > 4 {
        return Some(None);
    }
    let mut numbers = Vec::with_capacity(4);
    for part in &parts {
        match parse_ipv4_part(part) {
            Some(n) => numbers.push(n),
            None => return Some(None),
        }
    }
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return Some(None);
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if rest_bits < 64 && *last >= (1u64 << rest_bits) {
        return Some(None);
    }
    let mut value: u64 = *last;
    for (i, &n) in init.iter().enumerate() {
        value |= n << (24 - 8 * i as u32);
    }
    Some(u32::try_from(value).ok().map(Ipv4Addr::from))
}

/// One IPv4 part: decimal, `0x` hex (an empty `0x` is 0) or leading-zero octal.
fn parse_ipv4_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            if hex.is_empty() {
                return Some(0);
            }
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (part.get(1..)?, 8)
        } else {
            (part, 10)
        };
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Saturate instead of overflowing: any huge value is invalid anyway.
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 16 {
        return Some(u64::MAX);
    }
    if trimmed.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(trimmed, radix).ok()
}

/// Well-known names of metadata services and the local host.
pub fn classify_name(name: &str) -> Option<AddrClass> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    const METADATA_NAMES: [&str; 6] = [
        "metadata.google.internal",
        "metadata",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    ];
    if METADATA_NAMES.contains(&name.as_str()) {
        Some(AddrClass::Metadata)
    } else if name == "localhost"
        || name.ends_with(".localhost")
        || name == "localhost.localdomain"
        || name == "ip6-localhost"
        || name == "ip6-loopback"
    {
        Some(AddrClass::Loopback)
    } else {
        None
    }
}

/// Parses a host and applies the policy to what can be known before DNS: IP literals in
/// any spelling and well-known names. A [`Host::Name`] must still be resolved and passed
/// through [`filter_resolved`].
pub fn check_host(policy: &EgressPolicy, host: &str) -> Result<Host, SsrfError> {
    let parsed = parse_host(host)?;
    match &parsed {
        Host::Ip(ip) => check_addr(policy, *ip)?,
        Host::Name(name) => {
            if let Some(class) = classify_name(name)
                && !policy.allows(class)
            {
                return Err(SsrfError::BlockedName {
                    host: name.clone(),
                    class,
                });
            }
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_ranges_are_classified() {
        let cases = [
            ("8.8.8.8", AddrClass::Public),
            ("1.1.1.1", AddrClass::Public),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.255.254", AddrClass::Loopback),
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("172.32.0.1", AddrClass::Public),
            ("192.168.1.1", AddrClass::Private),
            ("169.254.1.1", AddrClass::LinkLocal),
            ("169.254.169.254", AddrClass::Metadata),
            ("169.254.170.2", AddrClass::Metadata),
            ("100.100.100.200", AddrClass::Metadata),
            ("168.63.129.16", AddrClass::Metadata),
            ("100.64.0.1", AddrClass::SharedCgnat),
            ("100.127.255.255", AddrClass::SharedCgnat),
            ("100.128.0.1", AddrClass::Public),
            ("0.0.0.0", AddrClass::Unspecified),
            ("0.1.2.3", AddrClass::Unspecified),
            ("224.0.0.1", AddrClass::Multicast),
            ("239.255.255.250", AddrClass::Multicast),
            ("255.255.255.255", AddrClass::Broadcast),
            ("240.0.0.1", AddrClass::Reserved),
            ("192.0.2.1", AddrClass::Reserved),
            ("198.18.0.1", AddrClass::Reserved),
            ("203.0.113.9", AddrClass::Reserved),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn ipv6_ranges_and_embeddings_are_classified() {
        let cases = [
            ("2606:4700::1111", AddrClass::Public),
            ("::1", AddrClass::Loopback),
            ("::", AddrClass::Unspecified),
            ("fc00::1", AddrClass::Private),
            ("fd12:3456::1", AddrClass::Private),
            ("fec0::1", AddrClass::Private),
            ("fe80::1", AddrClass::LinkLocal),
            ("febf::1", AddrClass::LinkLocal),
            ("fd00:ec2::254", AddrClass::Metadata),
            ("ff02::1", AddrClass::Multicast),
            ("2001:db8::1", AddrClass::Reserved),
            ("100::1", AddrClass::Reserved),
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("::ffff:7f00:1", AddrClass::Loopback),
            ("::ffff:169.254.169.254", AddrClass::Metadata),
            ("::ffff:10.0.0.1", AddrClass::Private),
            ("::ffff:8.8.8.8", AddrClass::Public),
            ("::127.0.0.1", AddrClass::Loopback),
            ("::ffff:0:127.0.0.1", AddrClass::Loopback),
            ("64:ff9b::7f00:1", AddrClass::Loopback),
            ("64:ff9b::169.254.169.254", AddrClass::Metadata),
            ("64:ff9b::8.8.8.8", AddrClass::Public),
            ("64:ff9b:1::1", AddrClass::Private),
            ("2002:7f00:1::", AddrClass::Loopback),
            ("2002:a9fe:a9fe::1", AddrClass::Metadata),
            ("2002:c0a8:0101::1", AddrClass::Private),
            ("2002:0808:0808::1", AddrClass::Public),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn policy_allows_only_what_it_names_and_never_metadata_implicitly() {
        let public = EgressPolicy::public_only();
        assert!(check_addr(&public, ip("8.8.8.8")).is_ok());
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.1.1",
            "169.254.169.254",
            "::ffff:127.0.0.1",
        ] {
            assert!(check_addr(&public, ip(a)).is_err(), "{a}");
        }
        let local = EgressPolicy {
            allow_loopback: true,
            allow_private: true,
            allow_link_local: true,
            allow_shared_cgnat: true,
            allow_reserved: true,
            allow_metadata: false,
        };
        assert!(check_addr(&local, ip("127.0.0.1")).is_ok());
        assert!(check_addr(&local, ip("169.254.1.1")).is_ok());
        assert_eq!(
            check_addr(&local, ip("169.254.169.254")),
            Err(SsrfError::Blocked {
                addr: ip("169.254.169.254"),
                class: AddrClass::Metadata
            })
        );
        assert!(check_addr(&local, ip("fd00:ec2::254")).is_err());
        assert!(check_addr(&local, ip("100.100.100.200")).is_err());
        // Never allowed, whatever the policy says.
        let all = EgressPolicy {
            allow_metadata: true,
            ..local
        };
        for a in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255"] {
            assert!(check_addr(&all, ip(a)).is_err(), "{a}");
        }
        let msg = check_addr(&public, ip("127.0.0.1"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "upstream address `127.0.0.1` is loopback and not allowed for this service"
        );
    }

    #[test]
    fn ipv4_spellings_are_recognised_like_browsers_and_libc() {
        let loopback = Host::Ip(ip("127.0.0.1"));
        for h in [
            "127.0.0.1",
            "127.0.0.1.",
            "0x7f000001",
            "0X7F000001",
            "2130706433",
            "0177.0.0.1",
            "0177.0000.0000.0001",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0x7f.0.0.0x1",
            "017700000001",
            "%31%32%37.0.0.1",
            "１２７.０.０.１",
            "127。0。0。1",
        ] {
            assert_eq!(parse_host(h), Ok(loopback.clone()), "{h}");
        }
        assert_eq!(parse_host("0"), Ok(Host::Ip(ip("0.0.0.0"))));
        assert_eq!(parse_host("0x"), Ok(Host::Ip(ip("0.0.0.0"))));
        assert_eq!(
            parse_host("0xa9fea9fe"),
            Ok(Host::Ip(ip("169.254.169.254")))
        );
        assert_eq!(
            parse_host("169.254.43518"),
            Ok(Host::Ip(ip("169.254.169.254")))
        );
        // Numeric-looking but invalid: an error, not a name.
        for h in [
            "1.2.3.256",
            "256.1.1.1",
            "1.2.3.4.5",
            "0x100000000",
            "4294967296",
            "1.2.3.09",
            "99999999999999999999999",
        ] {
            assert!(
                matches!(parse_host(h), Err(SsrfError::InvalidHost(_))),
                "{h}"
            );
        }
    }

    #[test]
    fn ipv6_literals_and_names_parse() {
        assert_eq!(parse_host("[::1]"), Ok(Host::Ip(ip("::1"))));
        assert_eq!(
            parse_host("[::ffff:127.0.0.1]"),
            Ok(Host::Ip(ip("::ffff:7f00:1")))
        );
        assert_eq!(
            parse_host("[::ffff:7f00:1]"),
            Ok(Host::Ip(ip("::ffff:127.0.0.1")))
        );
        for h in [
            "[fe80::1%25eth0]",
            "[fe80::1%eth0]",
            "[::1",
            "[zz::1]",
            "::1",
            "",
            "a b",
            "a\nb",
        ] {
            assert!(parse_host(h).is_err(), "{h}");
        }
        assert_eq!(
            parse_host("API.GitHub.com."),
            Ok(Host::Name("api.github.com".into()))
        );
        assert_eq!(parse_host("a.1b"), Ok(Host::Name("a.1b".into())));
        assert_eq!(
            parse_host("1.2.3.example"),
            Ok(Host::Name("1.2.3.example".into()))
        );
    }

    #[test]
    fn every_spelling_of_a_blocked_address_is_blocked() {
        let public = EgressPolicy::public_only();
        for h in [
            "0x7f000001",
            "2130706433",
            "0177.0.0.1",
            "127.1",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[64:ff9b::7f00:1]",
            "[2002:7f00:1::]",
            "[::127.0.0.1]",
            "0xa9.0xfe.0xa9.0xfe",
            "0",
            "localhost",
            "LOCALHOST.",
            "foo.localhost",
            "metadata.google.internal",
            "metadata.google.internal.",
            "Metadata.Google.Internal",
        ] {
            assert!(check_host(&public, h).is_err(), "{h}");
        }
        assert_eq!(
            check_host(&public, "api.github.com"),
            Ok(Host::Name("api.github.com".into()))
        );
        assert!(check_host(&public, "8.8.8.8").is_ok());
        let loopback_ok = EgressPolicy {
            allow_loopback: true,
            ..EgressPolicy::default()
        };
        assert!(check_host(&loopback_ok, "localhost").is_ok());
        assert!(check_host(&loopback_ok, "127.1").is_ok());
        assert!(check_host(&loopback_ok, "metadata.google.internal").is_err());
    }

    #[test]
    fn resolved_addresses_fail_closed() {
        let public = EgressPolicy::public_only();
        let a: SocketAddr = "8.8.8.8:443".parse().unwrap();
        let b: SocketAddr = "[2606:4700::1111]:443".parse().unwrap();
        let bad: SocketAddr = "[::ffff:169.254.169.254]:80".parse().unwrap();
        assert_eq!(filter_resolved(&public, &[a, b, a]), Ok(vec![a, b]));
        assert!(matches!(
            filter_resolved(&public, &[a, bad]),
            Err(SsrfError::Blocked {
                class: AddrClass::Metadata,
                ..
            })
        ));
        assert_eq!(filter_resolved(&public, &[]), Err(SsrfError::NoAddresses));
    }
}
