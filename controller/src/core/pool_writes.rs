//! Pool status writes and their retries, without I/O.
//!
//! Per pool the newest desired status wins: ordering a new one drops the
//! retry an older, failed one was waiting for, and reports about older
//! orders are ignored. A failed write of the newest status is retried after
//! a delay that doubles from [`FIRST_RETRY`] up to [`MAX_RETRY`], until it
//! is written, superseded, or the pool is gone.

use std::collections::HashMap;
use std::time::Duration;

use ferrolb_crds::pool::IPAddressPoolStatus;
use k8s_openapi::jiff::Timestamp;

use super::effect::{PoolStatusOrder, Ticket};

/// Delay before the first retry of a failed pool status write.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest delay between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// How a pool status write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolWriteOutcome {
    /// The apiserver accepted the status.
    Written,
    /// The apiserver refused or could not be reached: worth a retry.
    Failed,
    /// The pool no longer exists: nothing to retry.
    Gone,
}

/// The report of one pool status write, stamped when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatusWritten {
    /// Name of the pool written.
    pub pool: String,
    /// The order this report is about; reports of superseded orders are ignored.
    pub ticket: Ticket,
    /// How the write ended.
    pub outcome: PoolWriteOutcome,
    /// When the report arrived; a retry is scheduled from this time.
    pub at: Timestamp,
}

#[derive(Debug)]
struct Order {
    ticket: Ticket,
    /// Failed writes in a row, of whichever status was newest.
    failures: u32,
    retry_at: Option<Timestamp>,
}

/// What we decided each pool's status should be, and where its write stands.
#[derive(Debug, Default)]
pub struct PoolStatusWrites {
    /// The status last decided per pool: written, being written, or
    /// waiting for a retry.
    decided: HashMap<String, IPAddressPoolStatus>,
    orders: HashMap<String, Order>,
    tickets: u64,
}

impl PoolStatusWrites {
    /// The status last decided for `pool`.
    pub fn decided(&self, pool: &str) -> Option<&IPAddressPoolStatus> {
        self.decided.get(pool)
    }

    /// Makes `status` the newest desired status of `pool` and returns its
    /// write order; a retry waiting for an older status is dropped.
    pub fn order(&mut self, pool: &str, status: IPAddressPoolStatus) -> PoolStatusOrder {
        self.decided.insert(pool.to_string(), status.clone());
        let ticket = Ticket::take(&mut self.tickets);
        let order = self.orders.entry(pool.to_string()).or_insert(Order {
            ticket,
            failures: 0,
            retry_at: None,
        });
        order.ticket = ticket;
        order.retry_at = None;
        PoolStatusOrder {
            pool: pool.to_string(),
            status,
            ticket,
        }
    }

    /// Records how a write ended: a failure of the newest order schedules
    /// its retry.
    pub fn report(&mut self, report: &PoolStatusWritten) {
        let Some(order) = self.orders.get_mut(&report.pool) else {
            return;
        };
        if order.ticket != report.ticket {
            return;
        }
        match report.outcome {
            PoolWriteOutcome::Written => {
                order.failures = 0;
                order.retry_at = None;
            }
            PoolWriteOutcome::Gone => order.retry_at = None,
            PoolWriteOutcome::Failed => {
                order.failures += 1;
                let delay = retry_delay(order.failures);
                order.retry_at = Some(report.at.checked_add(delay).unwrap_or(Timestamp::MAX));
            }
        }
    }

    /// Write orders for the retries due at `now`.
    pub fn due(&mut self, now: Timestamp) -> Vec<PoolStatusOrder> {
        let mut due = Vec::new();
        for (pool, order) in &mut self.orders {
            let Some(status) = self.decided.get(pool) else {
                continue;
            };
            if order.retry_at.is_some_and(|at| at <= now) {
                order.retry_at = None;
                order.ticket = Ticket::take(&mut self.tickets);
                due.push(PoolStatusOrder {
                    pool: pool.clone(),
                    status: status.clone(),
                    ticket: order.ticket,
                });
            }
        }
        due.sort_by(|a, b| a.pool.cmp(&b.pool));
        due
    }

    /// Forgets a deleted pool.
    pub fn forget(&mut self, pool: &str) {
        self.decided.remove(pool);
        self.orders.remove(pool);
    }
}

/// The delay after the `failures`-th failure in a row.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn status(assigned: u128) -> IPAddressPoolStatus {
        let mut status = IPAddressPoolStatus::default();
        status.set_counts(ferrolb_crds::pool::AddressCounts {
            assigned_ipv4: assigned,
            ..Default::default()
        });
        status
    }

    fn report(
        order: &PoolStatusOrder,
        outcome: PoolWriteOutcome,
        second: i64,
    ) -> PoolStatusWritten {
        PoolStatusWritten {
            pool: order.pool.clone(),
            ticket: order.ticket,
            outcome,
            at: at(second),
        }
    }

    #[test]
    fn a_failed_write_is_retried_with_a_doubling_bounded_delay() {
        let mut writes = PoolStatusWrites::default();
        let mut order = writes.order("p", status(1));
        let mut now = 100;
        let mut delays = Vec::new();
        for _ in 0..8 {
            writes.report(&report(&order, PoolWriteOutcome::Failed, now));
            let mut waited = 0;
            let retry = loop {
                assert!(waited <= 30, "no retry within the longest delay");
                if let [retry] = writes.due(at(now + waited)).as_slice() {
                    break retry.clone();
                }
                waited += 1;
            };
            assert_eq!(retry.status, status(1));
            assert_ne!(retry.ticket, order.ticket);
            delays.push(waited);
            now += waited;
            order = retry;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        writes.report(&report(&order, PoolWriteOutcome::Written, now));
        assert!(writes.due(at(now + 3600)).is_empty(), "written: no retry");
    }

    #[test]
    fn a_newer_status_supersedes_the_pending_retry() {
        let mut writes = PoolStatusWrites::default();
        let old = writes.order("p", status(1));
        writes.report(&report(&old, PoolWriteOutcome::Failed, 100));
        let new = writes.order("p", status(2));
        assert!(writes.due(at(200)).is_empty(), "the old retry is dropped");
        // The old order failing again says nothing about the new one.
        writes.report(&report(&old, PoolWriteOutcome::Failed, 101));
        assert!(writes.due(at(200)).is_empty());
        writes.report(&report(&new, PoolWriteOutcome::Failed, 102));
        let retry = writes.due(at(200));
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].status, status(2));
        assert_eq!(writes.decided("p"), Some(&status(2)));
    }

    #[test]
    fn a_gone_or_forgotten_pool_is_not_retried() {
        let mut writes = PoolStatusWrites::default();
        let gone = writes.order("gone", status(1));
        writes.report(&report(&gone, PoolWriteOutcome::Gone, 100));
        let deleted = writes.order("deleted", status(1));
        writes.report(&report(&deleted, PoolWriteOutcome::Failed, 100));
        writes.forget("deleted");
        assert!(writes.due(at(200)).is_empty());
        assert_eq!(writes.decided("deleted"), None);
    }
}
