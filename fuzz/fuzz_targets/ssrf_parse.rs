//! Fuzzes the SSRF host parser and address classifier.
//!
//! Checks that an IPv4 address and its IPv6-mapped form always get the same class, and
//! that a host accepted under the public-only policy is never a loopback, private,
//! link-local or metadata address, whatever its spelling.

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use steward_gateway::ssrf::{AddrClass, EgressPolicy, Host, check_host, classify, parse_host};

fuzz_target!(|data: &[u8]| {
    if let [a, b, c, d, ..] = *data {
        let v4 = std::net::Ipv4Addr::new(a, b, c, d);
        assert_eq!(
            classify(IpAddr::V4(v4)),
            classify(IpAddr::V6(v4.to_ipv6_mapped()))
        );
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Host::Ip(ip)) = parse_host(text) {
        let _ = classify(ip);
    }
    if let Ok(Host::Ip(ip)) = check_host(&EgressPolicy::public_only(), text) {
        assert_eq!(classify(ip), AddrClass::Public, "{text:?} passed as {ip}");
    }
});
