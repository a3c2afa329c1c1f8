//! Drives an app with signed webhooks while a proxy in front of its broker is cut and
//! restored, and checks what every outage test checks.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::*;

pub struct Outcome {
    pub id: String,
    pub status: u16,
    pub sent: Instant,
    pub took: Duration,
}

pub struct Outage {
    pub outcomes: Vec<Outcome>,
    pub cut_at: Instant,
    pub restored_at: Instant,
}

/// 8 clients post distinct updates, one after the other, for 2 s, through a 5 s cut,
/// and for 12 s after the restore.
pub async fn run(app: Arc<TestApp>, proxy: &TcpProxy, prefix: &str) -> Outage {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (app, stop, next, outcomes) =
            (app.clone(), stop.clone(), next.clone(), outcomes.clone());
        let prefix = prefix.to_owned();
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let id = format!("{prefix}-{}", next.fetch_add(1, Ordering::Relaxed));
                let sent = Instant::now();
                let status = app.post_signed(&update_body(&id)).await.status().as_u16();
                outcomes.lock().unwrap().push(Outcome {
                    id,
                    status,
                    sent,
                    took: sent.elapsed(),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut_at = Instant::now();
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restored_at = Instant::now();
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.unwrap();
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    Outage {
        outcomes,
        cut_at,
        restored_at,
    }
}

impl Outage {
    pub fn accepted_ids(&self) -> HashSet<&str> {
        self.outcomes
            .iter()
            .filter(|o| o.status == 200)
            .map(|o| o.id.as_str())
            .collect()
    }

    /// Accepted before the cut, only 200 or 503 (never a hang beyond `deadline`), and
    /// accepted again within `recovery` of the restore, for good.
    pub fn assert_answers(&self, deadline: Duration, recovery: Duration) -> Duration {
        let accepted: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.status == 200).collect();
        assert!(
            accepted.iter().any(|o| o.sent < self.cut_at),
            "webhooks were accepted before the cut"
        );
        assert!(
            self.outcomes
                .iter()
                .all(|o| o.status == 200 || o.status == 503),
            "only 200 or 503: {:?}",
            self.outcomes
                .iter()
                .map(|o| o.status)
                .collect::<HashSet<_>>()
        );
        let slowest = self.outcomes.iter().map(|o| o.took).max().unwrap();
        assert!(
            slowest < deadline,
            "no request hung: the slowest took {slowest:?}"
        );
        let recovered = accepted
            .iter()
            .filter(|o| o.sent > self.restored_at)
            .map(|o| o.sent + o.took)
            .min()
            .expect("webhooks were accepted again after the broker came back");
        let after = recovered - self.restored_at;
        assert!(
            after < recovery,
            "recovered {after:?} after the broker came back"
        );
        if let Some(last_failure) = self
            .outcomes
            .iter()
            .filter(|o| o.status != 200)
            .map(|o| o.sent)
            .max()
        {
            assert!(
                accepted.iter().any(|o| o.sent > last_failure),
                "after recovery, webhooks stay accepted"
            );
        }
        after
    }

    pub fn during_cut(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| {
            o.sent > self.cut_at + Duration::from_millis(500) && o.sent < self.restored_at
        })
    }

    pub fn count(&self, status: u16) -> usize {
        self.outcomes.iter().filter(|o| o.status == status).count()
    }
}

/// Fails with the ids of accepted updates that `delivered` lacks.
pub fn assert_all_delivered(accepted: &HashSet<&str>, delivered: &HashSet<&str>) {
    let lost: Vec<&&str> = accepted.difference(delivered).collect();
    assert!(
        lost.is_empty(),
        "{} of {} accepted updates are missing from the broker: {:?}",
        lost.len(),
        accepted.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
}
