//! Pod IP allocation from the pod CIDR (pure).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Hands out addresses of an IPv4 network, never the network, broadcast or reserved addresses.
#[derive(Debug)]
pub struct Ipam {
    network: u32,
    prefix: u8,
    reserved: BTreeSet<u32>,
    used: BTreeSet<u32>,
}

impl Ipam {
    /// `cidr` like `10.244.0.0/16`; `reserved` addresses (the bridge) are never handed out.
    pub fn new(cidr: &str, reserved: &[Ipv4Addr]) -> Result<Self, String> {
        let (addr, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR {cidr:?}: expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|e| format!("invalid CIDR {cidr:?}: {e}"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("invalid CIDR {cidr:?}: prefix must be 8..30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            network: u32::from(addr) & mask,
            prefix,
            reserved: reserved.iter().map(|a| u32::from(*a)).collect(),
            used: BTreeSet::new(),
        })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn range(&self) -> std::ops::RangeInclusive<u32> {
        let size = 1u32 << (32 - self.prefix);
        (self.network + 1)..=(self.network + size - 2)
    }

    fn contains(&self, ip: u32) -> bool {
        self.range().contains(&ip)
    }

    /// Takes `preferred` when it is free and in range (a pod keeps its IP across node agent
    /// restarts), else the lowest free address.
    pub fn allocate(&mut self, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(ip) = preferred.map(u32::from)
            && self.contains(ip)
            && !self.reserved.contains(&ip)
            && self.used.insert(ip)
        {
            return Some(Ipv4Addr::from(ip));
        }
        let free = self
            .range()
            .find(|ip| !self.reserved.contains(ip) && !self.used.contains(ip))?;
        self.used.insert(free);
        Some(Ipv4Addr::from(free))
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_and_skips_reserved() {
        let bridge = Ipv4Addr::new(10, 244, 0, 1);
        let mut ipam = Ipam::new("10.244.0.0/16", &[bridge]).expect("valid cidr");
        assert_eq!(ipam.allocate(None), Some(Ipv4Addr::new(10, 244, 0, 2)));
        assert_eq!(ipam.allocate(None), Some(Ipv4Addr::new(10, 244, 0, 3)));
        ipam.release(Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(ipam.allocate(None), Some(Ipv4Addr::new(10, 244, 0, 2)));
    }

    #[test]
    fn honours_a_free_preferred_address_only() {
        let mut ipam = Ipam::new("10.244.0.0/16", &[Ipv4Addr::new(10, 244, 0, 1)]).expect("valid");
        let want = Ipv4Addr::new(10, 244, 3, 7);
        assert_eq!(ipam.allocate(Some(want)), Some(want));
        // Taken, reserved or out of range: fall back to the lowest free address.
        assert_eq!(
            ipam.allocate(Some(want)),
            Some(Ipv4Addr::new(10, 244, 0, 2))
        );
        assert_eq!(
            ipam.allocate(Some(Ipv4Addr::new(10, 244, 0, 1))),
            Some(Ipv4Addr::new(10, 244, 0, 3))
        );
        assert_eq!(
            ipam.allocate(Some(Ipv4Addr::new(192, 168, 0, 5))),
            Some(Ipv4Addr::new(10, 244, 0, 4))
        );
    }

    #[test]
    fn exhausts_small_networks_and_never_hands_out_broadcast() {
        let mut ipam = Ipam::new("10.0.0.0/30", &[]).expect("valid");
        assert_eq!(ipam.allocate(None), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(ipam.allocate(None), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(ipam.allocate(None), None);
    }

    #[test]
    fn rejects_bad_cidrs() {
        assert!(Ipam::new("10.244.0.0", &[]).is_err());
        assert!(Ipam::new("10.244.0.0/33", &[]).is_err());
        assert!(Ipam::new("nope/16", &[]).is_err());
    }
}
