//! Who sent a request: the socket peer, or, behind a trusted proxy, the address the
//! proxy reports.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::{HeaderMap, FORWARDED};
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer, Serialize};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Which header carries the client address behind a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ForwardedHeader {
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

pub struct SourcePolicy {
    allowed: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    header: ForwardedHeader,
}

impl SourcePolicy {
    pub fn new(allowed: Vec<IpNet>, trusted_proxies: Vec<IpNet>, header: ForwardedHeader) -> Self {
        let canonical = |nets: Vec<IpNet>| nets.into_iter().map(canonical_network).collect();
        Self {
            allowed: canonical(allowed),
            trusted_proxies: canonical(trusted_proxies),
            header,
        }
    }

    pub fn is_allowed(&self, client: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&client))
    }

    fn is_trusted_proxy(&self, addr: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&addr))
    }

    /// The client's address. Forwarding headers count only when the peer itself is a
    /// trusted proxy; then the right-most address that is not a trusted proxy is the
    /// client. `None` when a forwarded address cannot be read (the request is refused
    /// rather than guessed at).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        if !self.is_trusted_proxy(peer) {
            return Some(peer);
        }
        let chain = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for_chain(headers),
            ForwardedHeader::Forwarded => forwarded_chain(headers),
        };
        let mut farthest = peer;
        for hop in chain.iter().rev() {
            let addr = parse_node(hop)?.to_canonical();
            if !self.is_trusted_proxy(addr) {
                return Some(addr);
            }
            farthest = addr;
        }
        Some(farthest)
    }
}

/// A network as addresses are compared: an IPv4-mapped IPv6 network (`::ffff:a.b.c.d/p`,
/// `p` ≥ 96) becomes the IPv4 network it denotes (`a.b.c.d/(p − 96)`), because a peer
/// that connects as `::ffff:a.b.c.d` is checked as `a.b.c.d`. Written as IPv6, the
/// entry would match nothing.
pub fn canonical_network(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// Reads a list of networks from the configuration in their [`canonical_network`] form,
/// so that what `check-config` prints is what is compared.
pub(crate) fn canonical_networks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    let nets = Vec::<IpNet>::deserialize(deserializer)?;
    Ok(nets.into_iter().map(canonical_network).collect())
}

/// Addresses from `X-Forwarded-For`, nearest hop last.
fn x_forwarded_for_chain(headers: &HeaderMap) -> Vec<&str> {
    let mut chain = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        let Ok(value) = value.to_str() else {
            // An unreadable header must not be skipped over: it may hide the real client.
            chain.push("");
            continue;
        };
        chain.extend(value.split(',').map(str::trim).filter(|s| !s.is_empty()));
    }
    chain
}

/// Addresses from `Forwarded`'s `for=` parameters, nearest hop last.
fn forwarded_chain(headers: &HeaderMap) -> Vec<&str> {
    let mut chain = Vec::new();
    for value in headers.get_all(FORWARDED) {
        let Ok(value) = value.to_str() else {
            chain.push("");
            continue;
        };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then_some(value.trim())
            });
            chain.push(node.unwrap_or(""));
        }
    }
    chain
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`, optionally quoted.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn policy_reading(header: ForwardedHeader) -> SourcePolicy {
        SourcePolicy::new(
            vec!["54.164.144.86/32".parse().unwrap()],
            vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            header,
        )
    }

    fn policy() -> SourcePolicy {
        policy_reading(ForwardedHeader::XForwardedFor)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The client `policy` sees in a request from `peer` carrying `pairs`.
    fn client(
        policy: &SourcePolicy,
        peer: &str,
        pairs: &[(&'static str, &'static str)],
    ) -> Option<IpAddr> {
        policy.client_address(ip(peer), &headers(pairs))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = [("x-forwarded-for", "54.164.144.86")];
        assert_eq!(
            client(&policy(), "203.0.113.9", &h),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let h = [("x-forwarded-for", "1.1.1.1, 54.164.144.86, 10.1.2.3")];
        assert_eq!(client(&policy(), "10.0.0.1", &h), Some(ip("54.164.144.86")));
    }

    #[test]
    fn repeated_forwarded_for_headers_form_one_chain() {
        let h = [
            ("x-forwarded-for", "54.164.144.86"),
            ("x-forwarded-for", "10.9.9.9"),
        ];
        assert_eq!(client(&policy(), "10.0.0.1", &h), Some(ip("54.164.144.86")));
    }

    #[test]
    fn the_forwarded_header_is_read_when_configured() {
        let h = [(
            "forwarded",
            "for=\"[2001:db8::7]:4711\";proto=https, for=fd00::1",
        )];
        let policy = policy_reading(ForwardedHeader::Forwarded);
        assert_eq!(client(&policy, "10.0.0.1", &h), Some(ip("2001:db8::7")));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // The proxy writes one header and passes the other through from the client.
        let h = [
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "54.164.144.86"),
        ];
        let forwarded = policy_reading(ForwardedHeader::Forwarded);
        assert_eq!(client(&forwarded, "10.0.0.1", &h), Some(ip("6.6.6.6")));
        let h = [
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=54.164.144.86"),
        ];
        assert_eq!(client(&policy(), "10.0.0.1", &h), Some(ip("6.6.6.6")));
    }

    #[test]
    fn an_unreadable_hop_refuses_rather_than_guesses() {
        let h = [("x-forwarded-for", "54.164.144.86, garbage")];
        assert_eq!(client(&policy(), "10.0.0.1", &h), None);
        let h = [("forwarded", "for=unknown")];
        let policy = policy_reading(ForwardedHeader::Forwarded);
        assert_eq!(client(&policy, "10.0.0.1", &h), None);
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_are_seen_as_ipv4() {
        assert_eq!(
            policy().client_address(ip("::ffff:54.164.144.86"), &HeaderMap::new()),
            Some(ip("54.164.144.86"))
        );
    }

    #[test]
    fn ipv4_mapped_networks_become_ipv4_networks() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        for (written, canonical) in [
            ("::ffff:127.0.0.1/128", "127.0.0.1/32"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            // Not IPv4-mapped, or wider than the mapped range: kept as written.
            ("::ffff:0:0/95", "::ffff:0:0/95"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::1/128", "::1/128"),
            ("54.164.144.86/32", "54.164.144.86/32"),
        ] {
            assert_eq!(canonical_network(net(written)), net(canonical), "{written}");
        }
    }

    #[test]
    fn an_ipv4_mapped_entry_admits_and_trusts_ipv4_peers() {
        let policy = SourcePolicy::new(
            vec!["::ffff:54.164.144.86/128".parse().unwrap()],
            vec!["::ffff:10.0.0.0/104".parse().unwrap()],
            ForwardedHeader::XForwardedFor,
        );
        assert!(policy.is_allowed(ip("54.164.144.86")));
        let h = headers(&[("x-forwarded-for", "54.164.144.86")]);
        assert_eq!(
            policy.client_address(ip("::ffff:10.1.2.3"), &h),
            Some(ip("54.164.144.86"))
        );
    }

    #[test]
    fn ports_are_ignored_in_forwarded_addresses() {
        assert_eq!(parse_node("54.164.144.86:443"), Some(ip("54.164.144.86")));
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
    }
}
