//! Connections open at once per client address, bounded: one host holding idle or
//! half-finished connections (a slow TLS handshake, a request head that never ends) cannot
//! take every slot of a listener from everybody else.
//!
//! An IPv6 client counts by its /64, as the rate limits count it: one host usually holds
//! the whole prefix.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open connections of each address on one listener; `max = 0` counts nothing.
#[derive(Debug)]
pub struct AddressSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of an address; the count goes down when it is dropped.
#[derive(Debug)]
pub struct AddressSlot {
    /// `None` under no limit: nothing was counted.
    held: Option<(Arc<AddressSlots>, IpAddr)>,
}

impl AddressSlots {
    /// At most `max` connections per address at once; 0: no limit.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `ip`, or `None` when that address already holds `max`.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        if self.max == 0 {
            return Some(AddressSlot { held: None });
        }
        let key = key_of(ip);
        // Holds no invariant a panic could break: use the table as it is.
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            held: Some((Arc::clone(self), key)),
        })
    }

    /// Addresses with a connection open now.
    pub fn addresses(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or_default()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some((slots, key)) = self.held.take() else {
            return;
        };
        let mut open = slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // The table holds only addresses with a connection open.
                open.remove(&key);
            }
        }
    }
}

/// The key an address counts under: itself, or for IPv6 its /64 (an IPv4-mapped address
/// counts as the IPv4 address).
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_gets_max_slots_and_its_own_back_when_one_closes() {
        let slots = AddressSlots::new(2);
        let a1 = slots.take(ip("192.0.2.1")).expect("first");
        let _a2 = slots.take(ip("192.0.2.1")).expect("second");
        assert!(
            slots.take(ip("192.0.2.1")).is_none(),
            "third from the same address"
        );
        let _b = slots.take(ip("192.0.2.2")).expect("another address");
        drop(a1);
        assert!(slots.take(ip("192.0.2.1")).is_some(), "a slot came back");
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let slots = AddressSlots::new(1);
        let _a = slots.take(ip("2001:db8:1:2::1")).expect("first");
        assert!(slots.take(ip("2001:db8:1:2::ffff")).is_none(), "same /64");
        assert!(slots.take(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _v4 = slots.take(ip("192.0.2.9")).expect("IPv4");
        assert!(
            slots.take(ip("::ffff:192.0.2.9")).is_none(),
            "mapped is the same"
        );
    }

    #[test]
    fn the_table_forgets_addresses_with_nothing_open() {
        let slots = AddressSlots::new(3);
        let taken: Vec<_> = (1..=50)
            .map(|i| slots.take(ip(&format!("198.51.100.{i}"))))
            .collect();
        assert_eq!(slots.addresses(), 50);
        drop(taken);
        assert_eq!(slots.addresses(), 0);
    }

    #[test]
    fn zero_means_no_limit() {
        let slots = AddressSlots::new(0);
        let held: Vec<_> = (0..1000)
            .map(|_| slots.take(ip("192.0.2.1")).expect("no limit"))
            .collect();
        assert_eq!(held.len(), 1000);
        assert_eq!(slots.addresses(), 0, "nothing counted");
    }
}
