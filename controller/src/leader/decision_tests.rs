//! Every case of the Lease decision (create, acquire, renew, wait, take over), the
//! freshness rules, the observer, and the Lease specs we write.

use super::*;
use kube::api::ObjectMeta;

const D15: Duration = Duration::from_secs(15);

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("a valid test timestamp")
}

fn held(holder: &str, renewed: i64) -> LeaseState {
    LeaseState {
        holder: Some(holder.to_owned()),
        acquire_time: Some(ts(0)),
        renew_time: Some(ts(renewed)),
        lease_duration: Some(D15),
        transitions: 3,
        observed_at: None,
    }
}

#[test]
fn no_lease_creates() {
    assert_eq!(decide(None, "a", ts(0), D15), LeaseAction::Create);
}

#[test]
fn released_lease_with_no_holder_is_acquired_at_once() {
    let state = LeaseState {
        holder: None,
        renew_time: Some(ts(100)),
        transitions: 4,
        ..Default::default()
    };
    assert_eq!(
        decide(Some(&state), "a", ts(100), D15),
        LeaseAction::Acquire {
            previous_holder: None,
            transitions: 5
        }
    );
}

#[test]
fn released_lease_with_empty_holder_is_acquired_at_once() {
    // client-go releases by writing holderIdentity "".
    let mut state = held("", 100);
    state.observed_at = Some(ts(100));
    assert_eq!(
        decide(Some(&state), "a", ts(100), D15),
        LeaseAction::Acquire {
            previous_holder: None,
            transitions: 4
        }
    );
}

#[test]
fn empty_spec_is_acquired() {
    let state = LeaseState::from_spec(None);
    assert_eq!(
        decide(Some(&state), "a", ts(0), D15),
        LeaseAction::Acquire {
            previous_holder: None,
            transitions: 1
        }
    );
}

#[test]
fn held_by_me_renews_fresh_or_not() {
    assert_eq!(
        decide(Some(&held("a", 0)), "a", ts(1), D15),
        LeaseAction::Renew
    );
    assert_eq!(
        decide(Some(&held("a", 0)), "a", ts(1000), D15),
        LeaseAction::Renew
    );
}

#[test]
fn held_by_other_and_fresh_waits_until_expiry() {
    assert_eq!(
        decide(Some(&held("b", 10)), "a", ts(20), D15),
        LeaseAction::Wait {
            holder: "b".into(),
            until: ts(25)
        }
    );
}

#[test]
fn held_by_other_expires_exactly_at_the_deadline() {
    assert!(matches!(
        decide(Some(&held("b", 10)), "a", ts(24), D15),
        LeaseAction::Wait { .. }
    ));
    assert_eq!(
        decide(Some(&held("b", 10)), "a", ts(25), D15),
        LeaseAction::Acquire {
            previous_holder: Some("b".into()),
            transitions: 4
        }
    );
}

#[test]
fn held_by_other_and_expired_is_taken_over() {
    assert_eq!(
        decide(Some(&held("b", 10)), "a", ts(100), D15),
        LeaseAction::Acquire {
            previous_holder: Some("b".into()),
            transitions: 4
        }
    );
}

#[test]
fn holder_declared_duration_wins_over_ours() {
    let mut state = held("b", 10);
    state.lease_duration = Some(Duration::from_secs(60));
    assert_eq!(
        decide(Some(&state), "a", ts(40), D15),
        LeaseAction::Wait {
            holder: "b".into(),
            until: ts(70)
        }
    );
}

#[test]
fn missing_duration_falls_back_to_ours() {
    let mut state = held("b", 10);
    state.lease_duration = None;
    assert_eq!(
        decide(Some(&state), "a", ts(12), Duration::from_secs(5)),
        LeaseAction::Wait {
            holder: "b".into(),
            until: ts(15)
        }
    );
    assert!(matches!(
        decide(Some(&state), "a", ts(15), Duration::from_secs(5)),
        LeaseAction::Acquire { .. }
    ));
}

#[test]
fn nonpositive_declared_duration_is_ignored() {
    let spec = LeaseSpec {
        holder_identity: Some("b".into()),
        renew_time: Some(MicroTime(ts(10))),
        lease_duration_seconds: Some(0),
        ..Default::default()
    };
    let state = LeaseState::from_spec(Some(&spec));
    assert_eq!(state.lease_duration, None);
    assert!(matches!(
        decide(Some(&state), "a", ts(11), D15),
        LeaseAction::Wait { .. }
    ));
    let spec = LeaseSpec {
        lease_duration_seconds: Some(-5),
        ..spec
    };
    assert_eq!(LeaseState::from_spec(Some(&spec)).lease_duration, None);
}

#[test]
fn holder_without_any_time_is_expired() {
    let state = LeaseState {
        holder: Some("b".into()),
        transitions: 2,
        ..Default::default()
    };
    assert_eq!(
        decide(Some(&state), "a", ts(0), D15),
        LeaseAction::Acquire {
            previous_holder: Some("b".into()),
            transitions: 3
        }
    );
}

#[test]
fn acquire_time_is_the_last_fallback() {
    let state = LeaseState {
        holder: Some("b".into()),
        acquire_time: Some(ts(10)),
        ..Default::default()
    };
    assert_eq!(state.expires_at(D15), Some(ts(25)));
}

#[test]
fn observed_time_beats_an_old_renew_time() {
    // The holder's clock is 1000 s behind ours: by renewTime the lease
    // looks long expired, but we only saw it just now.
    let state = held("b", -1000).observed_at(ts(0));
    assert_eq!(
        decide(Some(&state), "a", ts(5), D15),
        LeaseAction::Wait {
            holder: "b".into(),
            until: ts(15)
        }
    );
    assert!(matches!(
        decide(Some(&state), "a", ts(15), D15),
        LeaseAction::Acquire { .. }
    ));
}

#[test]
fn transitions_saturate() {
    let mut state = held("b", 0);
    state.transitions = i32::MAX;
    assert_eq!(
        decide(Some(&state), "a", ts(100), D15),
        LeaseAction::Acquire {
            previous_holder: Some("b".into()),
            transitions: i32::MAX
        }
    );
}

#[test]
fn from_spec_reads_every_field() {
    let spec = LeaseSpec {
        holder_identity: Some("b".into()),
        acquire_time: Some(MicroTime(ts(1))),
        renew_time: Some(MicroTime(ts(2))),
        lease_duration_seconds: Some(7),
        lease_transitions: Some(9),
        ..Default::default()
    };
    assert_eq!(
        LeaseState::from_spec(Some(&spec)),
        LeaseState {
            holder: Some("b".into()),
            acquire_time: Some(ts(1)),
            renew_time: Some(ts(2)),
            lease_duration: Some(Duration::from_secs(7)),
            transitions: 9,
            observed_at: None,
        }
    );
    let negative = LeaseSpec {
        lease_transitions: Some(-3),
        ..spec
    };
    assert_eq!(LeaseState::from_spec(Some(&negative)).transitions, 0);
}

fn lease(rv: &str, holder: &str, renewed: i64) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("l".into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(ts(renewed))),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    }
}

#[test]
fn observer_keeps_first_sight_of_an_unchanged_record() {
    let mut obs = Observer::default();
    let l1 = lease("1", "b", 0);
    assert_eq!(obs.observe(&l1, ts(100)).observed_at, Some(ts(100)));
    assert_eq!(obs.observe(&l1, ts(105)).observed_at, Some(ts(100)));
    // Unchanged for a lease duration: expired.
    let state = obs.observe(&l1, ts(115));
    assert!(matches!(
        decide(Some(&state), "a", ts(115), D15),
        LeaseAction::Acquire { .. }
    ));
    // The holder renews: a new resourceVersion restarts the clock.
    let l2 = lease("2", "b", 5);
    assert_eq!(obs.observe(&l2, ts(116)).observed_at, Some(ts(116)));
}

#[test]
fn observer_notices_changes_without_resource_version() {
    let mut obs = Observer::default();
    let mut l = lease("1", "b", 0);
    l.metadata.resource_version = None;
    assert_eq!(obs.observe(&l, ts(0)).observed_at, Some(ts(0)));
    assert_eq!(obs.observe(&l, ts(3)).observed_at, Some(ts(0)));
    let mut renewed = lease("1", "b", 3);
    renewed.metadata.resource_version = None;
    assert_eq!(obs.observe(&renewed, ts(4)).observed_at, Some(ts(4)));
}

#[test]
fn duration_seconds_rounds_up_and_clamps() {
    assert_eq!(duration_seconds(Duration::from_secs(15)), 15);
    assert_eq!(duration_seconds(Duration::from_millis(15_001)), 16);
    assert_eq!(duration_seconds(Duration::ZERO), 1);
    assert_eq!(duration_seconds(Duration::from_millis(1)), 1);
    assert_eq!(duration_seconds(Duration::MAX), i32::MAX);
}

#[test]
fn claimed_spec_sets_holder_times_and_transitions() {
    let base = LeaseSpec {
        holder_identity: Some("b".into()),
        acquire_time: Some(MicroTime(ts(0))),
        renew_time: Some(MicroTime(ts(1))),
        lease_duration_seconds: Some(60),
        lease_transitions: Some(3),
        strategy: Some("OldestEmulationVersion".into()),
        preferred_holder: None,
    };
    let spec = claimed_spec(Some(&base), "a", ts(50), D15, 4);
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.acquire_time, Some(MicroTime(ts(50))));
    assert_eq!(spec.renew_time, Some(MicroTime(ts(50))));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(4));
    assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));

    let fresh = claimed_spec(None, "a", ts(0), D15, 0);
    assert_eq!(fresh.lease_transitions, Some(0));
    assert_eq!(fresh.holder_identity.as_deref(), Some("a"));
}

#[test]
fn renewed_spec_only_moves_renew_time() {
    let base = LeaseSpec {
        holder_identity: Some("a".into()),
        acquire_time: Some(MicroTime(ts(0))),
        renew_time: Some(MicroTime(ts(5))),
        lease_duration_seconds: Some(15),
        lease_transitions: Some(7),
        ..Default::default()
    };
    let spec = renewed_spec(Some(&base), "a", ts(10), D15);
    assert_eq!(
        spec,
        LeaseSpec {
            renew_time: Some(MicroTime(ts(10))),
            ..base
        }
    );
    let bare = renewed_spec(None, "a", ts(10), D15);
    assert_eq!(bare.acquire_time, Some(MicroTime(ts(10))));
    assert_eq!(bare.lease_transitions, Some(0));
}

#[test]
fn released_spec_clears_holder_and_is_free_for_everyone() {
    let base = claimed_spec(None, "a", ts(0), D15, 2);
    let spec = released_spec(Some(&base), ts(9));
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.acquire_time, None);
    assert_eq!(spec.renew_time, Some(MicroTime(ts(9))));
    assert_eq!(spec.lease_transitions, Some(2));
    let state = LeaseState::from_spec(Some(&spec)).observed_at(ts(9));
    assert_eq!(
        decide(Some(&state), "b", ts(9), D15),
        LeaseAction::Acquire {
            previous_holder: None,
            transitions: 3
        }
    );
}
