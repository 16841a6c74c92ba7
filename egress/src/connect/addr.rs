//! Which resolved addresses a tunnel may reach: public unicast only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Decides whether a resolved address may be connected to. The daemon always uses
/// [`AddressFilter::public_only`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressFilter {
    loopback: bool,
}

impl Default for AddressFilter {
    fn default() -> Self {
        AddressFilter::public_only()
    }
}

impl AddressFilter {
    /// Public unicast addresses only (see [`is_public`]).
    pub fn public_only() -> AddressFilter {
        AddressFilter { loopback: false }
    }

    /// **Tests only**: public addresses plus loopback (127.0.0.0/8, `::1`), so a test can reach
    /// a fake upstream on this machine. Every other non-public address is still refused. Never
    /// use this in the daemon: it would let the agent reach local services through the proxy.
    pub fn public_and_loopback_for_tests() -> AddressFilter {
        AddressFilter { loopback: true }
    }

    /// True when a tunnel may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.loopback && canonical(ip).is_loopback() {
            return true;
        }
        is_public(ip)
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// True for a public unicast address. Refused: unspecified, loopback, private (RFC 1918),
/// shared/CGNAT 100.64/10, link-local 169.254/16 (the cloud metadata address 169.254.169.254
/// included), 0/8, IETF protocol assignments 192.0.0/24, documentation and benchmarking ranges,
/// 6to4 relay anycast, multicast, reserved 240/4 and broadcast; in IPv6 everything outside
/// global unicast 2000::/3, unique-local fc00::/7 (AWS metadata fd00:ec2::254 included),
/// link-local fe80::/10, site-local, multicast, documentation 2001:db8::/32 and 3fff::/20,
/// Teredo and the other IETF assignments in 2001::/23, 6to4 2002::/16; the IPv4-mapped
/// (`::ffff:0:0/96`) and NAT64 (`64:ff9b::/96`) forms are judged by the IPv4 address they
/// embed, and the deprecated IPv4-compatible form and local-use NAT64 are refused.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    // NAT64 well-known prefix: judged by the embedded IPv4 address.
    if [s0, s1, s2, s3, s4, s5] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s6.to_be_bytes();
        let [c, d] = s7.to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    // Outside global unicast 2000::/3: unspecified, loopback, IPv4-compatible, local-use
    // NAT64 (64:ff9b:1::/48), discard 100::/64, unique-local, link-local, site-local, multicast.
    if s0 & 0xe000 != 0x2000 {
        return false;
    }
    let refused = match s0 {
        // IETF protocol assignments (Teredo included) and documentation.
        0x2001 => s1 < 0x0200 || s1 == 0x0db8,
        // 6to4.
        0x2002 => true,
        // Documentation (RFC 9637).
        0x3fff => s1 < 0x1000,
        _ => false,
    };
    !refused
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn address_classes() {
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.7",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::ffff:0.0.0.0",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::1",
            "100::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001::1",
            "2001:db8::1",
            "2002:a00:1::1",
            "3fff::1",
        ];
        for a in refused {
            let ip: IpAddr = a.parse().unwrap();
            assert!(!is_public(ip), "{a}");
            assert!(!AddressFilter::public_only().permits(ip), "{a}");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.254",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
        ];
        for a in public {
            let ip: IpAddr = a.parse().unwrap();
            assert!(is_public(ip), "{a}");
        }
    }

    #[test]
    fn the_test_filter_adds_loopback_only() {
        let f = AddressFilter::public_and_loopback_for_tests();
        for a in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "8.8.8.8"] {
            assert!(f.permits(a.parse().unwrap()), "{a}");
        }
        for a in [
            "10.0.0.1",
            "169.254.169.254",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
        ] {
            assert!(!f.permits(a.parse().unwrap()), "{a}");
        }
        assert_eq!(AddressFilter::default(), AddressFilter::public_only());
    }
}
