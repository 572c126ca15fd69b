//! The client's IP address behind reverse proxies.
//!
//! Each proxy that forwards a request *appends* the address it received the
//! request from to `X-Forwarded-For` (or to RFC 7239 `Forwarded`), so the
//! list reads client-first, and only its right-hand part was written by
//! machines we know. Whatever stands left of the first hop we do not trust
//! was written by the client itself and can be anything. So:
//!
//! 1. With no [`TrustedProxies`] configured (the default), forwarding headers
//!    change nothing: the client is the socket peer.
//! 2. When the socket peer is not a trusted proxy, the headers are likewise
//!    ignored: the request did not come through our proxies.
//! 3. Otherwise the chain `header entries…, socket peer` is walked from the
//!    right, skipping trusted proxies; the first address *not* in the trusted
//!    networks is the client (RFC 7239 §5.2; §8.1 on forged values). If
//!    every hop is trusted, the left-most one is the client (an internal
//!    caller).
//! 4. An entry that is not an IP address (RFC 7239 `unknown` or an
//!    obfuscated `_name`, or junk) ends the walk: the client is then the
//!    last trusted hop, the nearest address we can vouch for. Rate limits then
//!    group such clients under their proxy rather than under a name an
//!    attacker picked.
//!
//! Only one header is read, the one named by [`ForwardedHeader`]: a
//! proxy that maintains `X-Forwarded-For` passes a client's own `Forwarded`
//! header through untouched (and the other way round), so reading both would
//! let the client write the part we trust.
//!
//! The address found here is what the sign-in limiter counts per IP, what
//! audit lines carry and what the device list shows.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Which forwarding header the trusted proxies maintain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx
    /// `$proxy_add_x_forwarded_for`, Traefik, Caddy, most load balancers).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (the `for` parameter of
    /// each element).
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// The networks of the reverse proxies in front of the server, in CIDR
/// notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is one host).
///
/// ```
/// use std::net::SocketAddr;
/// use axum::http::{HeaderMap, HeaderValue};
/// use tessera_server::proxy::{ForwardedHeader, TrustedProxies};
///
/// let proxies: TrustedProxies = "10.0.0.0/8, 127.0.0.1".parse()?;
/// let mut headers = HeaderMap::new();
/// // The client wrote 203.0.113.9; the proxy appended the real peer.
/// headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 198.51.100.7"));
/// let peer: SocketAddr = "10.1.2.3:40000".parse()?;
/// let ip = proxies.client_ip(&headers, Some(peer), ForwardedHeader::XForwardedFor);
/// assert_eq!(ip.map(|ip| ip.to_string()).as_deref(), Some("198.51.100.7"));
///
/// // With no trusted proxies the header changes nothing.
/// let none = TrustedProxies::default();
/// let ip = none.client_ip(&headers, Some(peer), ForwardedHeader::XForwardedFor);
/// assert_eq!(ip.map(|ip| ip.to_string()).as_deref(), Some("10.1.2.3"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A trusted-proxy entry that is neither a CIDR network nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "trusted proxy {0:?} is not a network in CIDR notation (10.0.0.0/8, fd00::/8) or an IP address"
)]
pub struct BadNetwork(pub String);

impl std::str::FromStr for TrustedProxies {
    type Err = BadNetwork;

    /// A comma-separated list (the form of `TESSERA_TRUSTED_PROXIES`).
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        Self::from_entries(list.split(','))
    }
}

impl TrustedProxies {
    /// Parses each entry as a network or a single address; blank entries
    /// are skipped.
    ///
    /// # Errors
    ///
    /// [`BadNetwork`] naming the first entry that is neither.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, BadNetwork> {
        let mut nets = Vec::new();
        for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => entry
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| BadNetwork(entry.to_owned()))?,
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// True when no proxy is trusted (forwarding headers are ignored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The configured networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// True if `ip` is in one of the trusted networks. An IPv4-mapped IPv6
    /// address (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4
    /// peers) is compared as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, by the rules of the [module docs](self);
    /// `None` only when there is no socket peer at all.
    pub fn client_ip(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        header: ForwardedHeader,
    ) -> Option<IpAddr> {
        let peer = peer?.ip().to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for entry in forwarded_chain(headers, header).iter().rev() {
            match entry {
                Some(ip) => {
                    client = ip.to_canonical();
                    if !self.contains(client) {
                        break;
                    }
                }
                // Not an address: stop at the last hop we can vouch for.
                None => break,
            }
        }
        Some(client)
    }
}

impl Serialize for TrustedProxies {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    /// A list of strings, or one comma-separated string (environment).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let parsed = match OneOrMany::deserialize(d)? {
            OneOrMany::One(list) => list.parse(),
            OneOrMany::Many(v) => Self::from_entries(v.iter().map(String::as_str)),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

/// Upper bound on the entries read from the forwarding headers: a chain
/// longer than this is not a real proxy path, and the walk only needs its
/// right-hand end.
const MAX_HOPS: usize = 32;

/// The entries of the chosen header, left to right, over all its field
/// lines (RFC 9110 §5.3: several lines are one comma-separated list). Each
/// entry is its address, or `None` when it is not one. Only the right-most
/// [`MAX_HOPS`] entries are kept.
fn forwarded_chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let mut chain: Vec<Option<IpAddr>> = Vec::new();
    for line in headers.get_all(name) {
        // A line that is not text cannot be vouched for: one unknown hop.
        let Ok(line) = line.to_str() else {
            chain.push(None);
            continue;
        };
        match header {
            ForwardedHeader::XForwardedFor => {
                chain.extend(line.split(',').map(|e| parse_node(e.trim())));
            }
            ForwardedHeader::Forwarded => {
                chain.extend(forwarded_elements(line).map(|e| forwarded_for(&e)));
            }
        }
    }
    let excess = chain.len().saturating_sub(MAX_HOPS);
    chain.drain(..excess);
    chain
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`,
/// `192.0.2.1:8080`, `[2001:db8::1]` or `[2001:db8::1]:8080`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .and_then(|n| n.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The elements of one `Forwarded` line (RFC 7239 §4: `element *( ","
/// element )`), split at commas outside quoted strings.
fn forwarded_elements(line: &str) -> impl Iterator<Item = String> + '_ {
    let mut elements = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in line.chars() {
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => elements.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    elements.push(current);
    elements.into_iter()
}

/// The node of the `for` parameter of one `Forwarded` element (`for=…;
/// proto=…; by=…`), unquoted; `None` when absent or not an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        // RFC 7239 §4: parameter names are case-insensitive.
        if name.trim().eq_ignore_ascii_case("for") {
            // Two `for` parameters in one element make it meaningless.
            if found.is_some() {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            found = Some(value.to_owned());
        }
    }
    parse_node(&found?)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(proxies: &str, name: &str, values: &[&str], peer: &str) -> IpAddr {
        let proxies: TrustedProxies = proxies.parse().unwrap();
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let header = if name == "forwarded" {
            ForwardedHeader::Forwarded
        } else {
            ForwardedHeader::XForwardedFor
        };
        proxies
            .client_ip(&headers, Some(SocketAddr::new(ip(peer), 1)), header)
            .unwrap()
    }

    #[test]
    fn without_trusted_proxies_headers_change_nothing() {
        let xff = ["198.51.100.1, 10.0.0.1"];
        assert_eq!(
            client("", "x-forwarded-for", &xff, "10.0.0.2"),
            ip("10.0.0.2")
        );
        let fwd = ["for=198.51.100.1"];
        assert_eq!(client("", "forwarded", &fwd, "10.0.0.2"), ip("10.0.0.2"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let xff = ["198.51.100.1"];
        assert_eq!(
            client("10.0.0.0/8", "x-forwarded-for", &xff, "192.0.2.50"),
            ip("192.0.2.50")
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        // The client forged the two left entries; our proxies appended the rest.
        let xff = ["1.2.3.4, 5.6.7.8, 203.0.113.9, 10.0.0.5"];
        assert_eq!(
            client("10.0.0.0/8", "x-forwarded-for", &xff, "10.0.0.1"),
            ip("203.0.113.9")
        );
        // Field lines are one list, in order.
        let lines = ["1.2.3.4", "203.0.113.9", "10.0.0.5"];
        assert_eq!(
            client("10.0.0.0/8", "x-forwarded-for", &lines, "10.0.0.1"),
            ip("203.0.113.9")
        );
        // Every hop trusted: the left-most is the (internal) client.
        let inner = ["10.9.9.9, 10.0.0.5"];
        assert_eq!(
            client("10.0.0.0/8", "x-forwarded-for", &inner, "10.0.0.1"),
            ip("10.9.9.9")
        );
        // No header at all: the proxy itself.
        assert_eq!(
            client("10.0.0.0/8", "x-forwarded-for", &[], "10.0.0.1"),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn junk_ends_the_walk_at_the_last_trusted_hop() {
        let xff = ["203.0.113.9, not-an-ip, 10.0.0.5"];
        assert_eq!(
            client("10.0.0.0/8", "x-forwarded-for", &xff, "10.0.0.1"),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ports_and_brackets_are_understood() {
        let xff = ["[2001:db8::7]:443, 10.0.0.5:8080"];
        assert_eq!(
            client("10.0.0.0/8", "x-forwarded-for", &xff, "10.0.0.1"),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn rfc7239_forwarded_is_read_from_the_right() {
        let fwd = [
            r#"for=1.2.3.4, For="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.5;by=10.0.0.1"#,
        ];
        assert_eq!(
            client("10.0.0.0/8", "forwarded", &fwd, "10.0.0.1"),
            ip("2001:db8:cafe::17")
        );
        // A comma inside a quoted string does not start an element.
        let quoted = [r#"for="1.2.3.4, for=5.6.7.8", for=10.0.0.5"#];
        assert_eq!(
            client("10.0.0.0/8", "forwarded", &quoted, "10.0.0.1"),
            ip("10.0.0.5")
        );
        // `unknown` and obfuscated identifiers are not addresses.
        let unknown = ["for=unknown, for=10.0.0.5"];
        assert_eq!(
            client("10.0.0.0/8", "forwarded", &unknown, "10.0.0.1"),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        assert_eq!(
            client(
                "127.0.0.1",
                "x-forwarded-for",
                &["203.0.113.9"],
                "::ffff:127.0.0.1"
            ),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn bad_networks_are_named() {
        let err = "10.0.0.0/8, nope".parse::<TrustedProxies>().unwrap_err();
        assert_eq!(err, BadNetwork("nope".into()));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        let ok: TrustedProxies = "10.1.2.3/8, ::1".parse().unwrap();
        assert_eq!(ok.networks()[0].to_string(), "10.0.0.0/8");
        assert_eq!(ok.networks()[1].to_string(), "::1/128");
    }

    #[test]
    fn long_chains_keep_their_right_hand_end() {
        let mut long = vec!["203.0.113.1"; 100].join(", ");
        long.push_str(", 198.51.100.2");
        assert_eq!(
            client(
                "10.0.0.0/8",
                "x-forwarded-for",
                &[long.as_str()],
                "10.0.0.1"
            ),
            ip("198.51.100.2")
        );
    }
}
