//! Who the client is: the TCP peer, or, when the peer is a trusted reverse
//! proxy (`http.trusted_proxies`), the address the proxies forwarded. Login
//! throttling and logs use it, so that people behind one proxy are not one
//! person to them.

use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The client's address (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(Self(client_ip(
            peer,
            &parts.headers,
            &state.trusted_proxies,
        )))
    }
}

/// Walks the forwarding chain from the peer back towards the client and
/// returns the first address that is not a trusted proxy. Only trusted
/// proxies' headers are believed: a client cannot name itself someone else
/// (what it writes lands left of what the proxy appends).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut current = peer;
    for hop in forwarded_chain(headers).into_iter().rev() {
        // A hop that does not parse ends the trust: keep the last proxy.
        let Some(ip) = hop else { return current };
        current = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    current
}

/// The addresses in `Forwarded` (`for=`), or else `X-Forwarded-For`,
/// leftmost first; `None` for an entry that is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .collect()
    };
    let forwarded: Vec<Option<IpAddr>> = values("forwarded")
        .iter()
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(value.trim().trim_matches('"')))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    values("x-forwarded-for")
        .iter()
        .map(|v| parse_node(v))
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:443` or a
/// bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|ip| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    const PROXY: [u8; 4] = [10, 0, 0, 5];

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            client_ip([9, 9, 9, 9].into(), &h, &nets(&["10.0.0.0/8"])),
            IpAddr::from([9, 9, 9, 9])
        );
        assert_eq!(
            client_ip(PROXY.into(), &h, &[]),
            IpAddr::from(PROXY),
            "nothing trusted"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxy appended the real one.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(
            client_ip(PROXY.into(), &h, &trusted),
            IpAddr::from([203, 0, 113, 9])
        );
        let h = headers(&[(
            "forwarded",
            "for=198.51.100.2;proto=https, for=\"[2001:db8::7]:443\"",
        )]);
        assert_eq!(
            client_ip(PROXY.into(), &h, &trusted),
            "2001:db8::7".parse::<IpAddr>().expect("v6")
        );
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(client_ip(PROXY.into(), &h, &trusted), IpAddr::from(PROXY));
        assert_eq!(
            client_ip(PROXY.into(), &HeaderMap::new(), &trusted),
            IpAddr::from(PROXY)
        );
    }
}
