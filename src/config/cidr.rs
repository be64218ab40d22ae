//! `trusted_proxies` entries: an address block written as CIDR (`10.0.0.0/8`,
//! `2001:db8::/32`) or a single address (read as `/32` or `/128`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

/// One block of addresses. Host bits set below the prefix (`10.1.2.3/8`) are refused: such
/// an entry is usually a typo for a narrower block, and trusting the wider one by accident
/// would let unintended peers assert client addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a `trusted_proxies` entry is not a CIDR block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or CIDR block")]
    Syntax(String),
    #[error("{0:?}: the prefix length is too long for the address family")]
    Prefix(String),
    #[error("{0:?}: address bits are set past the prefix length (did you mean {1}?)")]
    HostBits(String, String),
    #[error("{0:?} trusts every address to name the client's; list the load balancers' addresses")]
    Everything(String),
    #[error(
        "{0:?} is wider than a /{BROADEST_V4} (IPv4) or /{BROADEST_V6} (IPv6) block: no load \
         balancer fleet spans that much; list the load balancers' addresses or their subnet"
    )]
    TooBroad(String),
    #[error(
        "{0:?} is or starts at the unspecified address (0.0.0.0 or ::), which no peer connects from"
    )]
    Unspecified(String),
}

/// The widest blocks accepted. A `/1` is half of all addresses: it trusts strangers to name
/// the client as surely as `/0` does, and no set of load balancers needs it.
const BROADEST_V4: u8 = 8;
const BROADEST_V6: u8 = 16;

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| syntax())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only (`u8::from_str` would take a leading `+`), no leading zero (`/08`
            // reads as 8 here and as octal or an error elsewhere).
            Some(p)
                if !p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0')) =>
            {
                p.parse::<u8>().map_err(|_| syntax())?
            }
            Some(_) => return Err(syntax()),
        };
        if prefix > max {
            return Err(CidrError::Prefix(s.to_owned()));
        }
        let masked = mask(network, prefix);
        if masked != network {
            return Err(CidrError::HostBits(
                s.to_owned(),
                format!("{masked}/{prefix}"),
            ));
        }
        // `::ffff:10.0.0.0/104` is how a dual-stack socket would show 10.0.0.0/8; peers are
        // compared as IPv4 (see `contains`), so the block is kept as IPv4 too.
        let (network, prefix) = match network {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (network, prefix),
            },
            _ => (network, prefix),
        };
        // Judged after the mapping: `::ffff:0.0.0.0/96` is every IPv4 address too.
        if prefix == 0 {
            return Err(CidrError::Everything(s.to_owned()));
        }
        let broadest = if network.is_ipv4() {
            BROADEST_V4
        } else {
            BROADEST_V6
        };
        if prefix < broadest {
            return Err(CidrError::TooBroad(s.to_owned()));
        }
        if network.is_unspecified() {
            return Err(CidrError::Unspecified(s.to_owned()));
        }
        Ok(Self { network, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, CidrError> {
        s.parse()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` lies in the block. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what
    /// a dual-stack socket reports for an IPv4 peer) is compared as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }

    /// Whether every address of `other` lies in this block (a block covers itself).
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let widest: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(widest.contains(ip("10.0.0.1")) && !widest.contains(ip("::2")));
    }

    #[test]
    fn a_block_covers_its_narrower_blocks_only() {
        let wide: Cidr = "10.0.0.0/8".parse().unwrap();
        let narrow: Cidr = "10.1.0.0/16".parse().unwrap();
        let other: Cidr = "11.0.0.0/16".parse().unwrap();
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(wide.covers(&narrow) && wide.covers(&wide));
        assert!(!narrow.covers(&wide) && !wide.covers(&other) && !wide.covers(&v6));
        assert!(v6.covers(&"2001:db8:1::1".parse().unwrap()));
    }

    #[test]
    fn mapped_entries_are_kept_as_ipv4() {
        let one: Cidr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && one.contains(ip("::ffff:127.0.0.1")));
        let block: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(block.to_string(), "10.0.0.0/8");
        assert!(block.contains(ip("10.9.8.7")) && block.contains(ip("::ffff:10.9.8.7")));
        assert!(!block.contains(ip("11.0.0.1")));
    }

    #[test]
    fn bad_blocks_are_refused_with_the_reason() {
        for bad in [
            "",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/x",
            "host/8",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.0/08".parse::<Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        for all in ["0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96"] {
            assert_eq!(
                all.parse::<Cidr>(),
                Err(CidrError::Everything(all.into())),
                "{all}"
            );
        }
        for wide in [
            "0.0.0.0/1",
            "128.0.0.0/1",
            "8.0.0.0/7",
            "::/1",
            "2000::/3",
            "::ffff:0.0.0.0/97",
        ] {
            assert_eq!(
                wide.parse::<Cidr>(),
                Err(CidrError::TooBroad(wide.into())),
                "{wide}"
            );
        }
        for none in ["0.0.0.0", "0.0.0.0/32", "::", "::/128", "::ffff:0.0.0.0"] {
            assert_eq!(
                none.parse::<Cidr>(),
                Err(CidrError::Unspecified(none.into())),
                "{none}"
            );
        }
        let e = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e,
            CidrError::HostBits("10.1.2.3/8".into(), "10.0.0.0/8".into())
        );
    }
}
