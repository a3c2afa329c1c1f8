//! The bound on requests still sending their body: in all, and per client, so that one
//! client's slow bodies cannot take every place and hold up the others' webhooks.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use prometheus::IntGauge;

/// Which bound refused a body read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyReadsFull {
    /// Every place is taken.
    All,
    /// This client holds its whole share.
    ClientShare,
}

impl std::fmt::Display for BodyReadsFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyReadsFull::All => "too many requests are still sending their body",
            BodyReadsFull::ClientShare => {
                "too many requests from this client are still sending their body"
            }
        })
    }
}

pub struct BodyReads {
    limit: usize,
    per_client: usize,
    held: Mutex<Held>,
    /// `vizion_bridge_body_reads_in_progress`.
    in_progress: IntGauge,
}

#[derive(Default)]
struct Held {
    total: usize,
    by_client: HashMap<ClientKey, usize>,
}

/// Whose share a body read counts against. An IPv6 client counts by its /64, the
/// smallest network a single host is usually given, so that it cannot take a share per
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(IpAddr);

impl ClientKey {
    fn of(client: IpAddr) -> Self {
        match client {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !(u128::MAX >> 64);
                    ClientKey(IpAddr::V6(Ipv6Addr::from(network)))
                }
            },
        }
    }
}

/// A place taken by a body being read; given back when dropped.
pub struct BodyRead {
    reads: Arc<BodyReads>,
    key: ClientKey,
}

impl BodyReads {
    pub fn new(limit: usize, per_client: usize, in_progress: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            limit,
            per_client,
            held: Mutex::default(),
            in_progress,
        })
    }

    /// Takes a place for a body from `client`, or says which bound is reached. Never
    /// waits: a sender refused now is told to come back later.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<BodyRead, BodyReadsFull> {
        let key = ClientKey::of(client);
        let mut held = self.held.lock().expect("body reads lock poisoned");
        if held.total >= self.limit {
            return Err(BodyReadsFull::All);
        }
        let of_client = held.by_client.entry(key).or_default();
        if *of_client >= self.per_client {
            return Err(BodyReadsFull::ClientShare);
        }
        *of_client += 1;
        held.total += 1;
        self.in_progress.inc();
        Ok(BodyRead {
            reads: self.clone(),
            key,
        })
    }
}

impl Drop for BodyRead {
    fn drop(&mut self) {
        let mut held = self.reads.held.lock().expect("body reads lock poisoned");
        held.total -= 1;
        if let Some(of_client) = held.by_client.get_mut(&self.key) {
            *of_client -= 1;
            if *of_client == 0 {
                held.by_client.remove(&self.key);
            }
        }
        self.reads.in_progress.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(limit: usize, per_client: usize) -> Arc<BodyReads> {
        BodyReads::new(limit, per_client, IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn a_client_beyond_its_share_is_refused_while_another_is_admitted() {
        let reads = reads(10, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = reads.admit(a).unwrap();
        let _second = reads.admit(a).unwrap();
        assert_eq!(reads.admit(a).err(), Some(BodyReadsFull::ClientShare));
        assert!(reads.admit(b).is_ok());
        drop(first);
        assert!(reads.admit(a).is_ok(), "a place given back is free again");
    }

    #[test]
    fn the_total_bounds_every_client_together() {
        let reads = reads(3, 3);
        let held: Vec<_> = (1..=3)
            .map(|n| reads.admit(IpAddr::from([10, 0, 0, n])).unwrap())
            .collect();
        assert_eq!(
            reads.admit("10.0.0.9".parse().unwrap()).err(),
            Some(BodyReadsFull::All)
        );
        assert_eq!(reads.in_progress.get(), 3);
        drop(held);
        assert_eq!(reads.in_progress.get(), 0);
        assert!(reads.held.lock().unwrap().by_client.is_empty());
    }

    #[test]
    fn ipv6_clients_share_by_their_64_and_mapped_ipv4_by_its_address() {
        let reads = reads(10, 1);
        let _held = reads.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            reads.admit("2001:db8:1:2::ffff".parse().unwrap()).err(),
            Some(BodyReadsFull::ClientShare)
        );
        assert!(reads.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _v4 = reads.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert_eq!(
            reads.admit("::ffff:192.0.2.7".parse().unwrap()).err(),
            Some(BodyReadsFull::ClientShare)
        );
    }
}
