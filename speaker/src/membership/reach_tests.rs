use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn down(names: &[&str]) -> Reach {
    Reach {
        no_suitable: false,
        unusable: names.iter().map(|name| (*name).to_owned()).collect(),
    }
}

fn report(node: &str, generation: u64, reach: &Reach) -> ReachReport {
    ReachReport::new(node, generation, reach)
}

#[test]
fn a_report_round_trips() {
    let sent = report("node-a", 1_700_000_000_000, &down(&["eth1", "bond0"]));
    let bytes = sent.encode().expect("within bounds");
    assert_eq!(ReachReport::decode(&bytes), Ok(sent.clone()));
    assert_eq!(sent.reach(), down(&["eth1", "bond0"]));
}

#[test]
fn out_of_bounds_reports_are_named_and_never_sent() {
    let too_many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("eth{i}")).collect();
    let mut many = report("node-a", 1, &Reach::FULL);
    many.unusable = too_many;
    assert_eq!(many.encode(), Err(ReportError::TooManyNames(MAX_NAMES + 1)));

    let long = report("node-a", 1, &down(&["sixteen-bytes-xx"]));
    assert_eq!(long.encode(), Err(ReportError::BadInterfaceName(16)));
    let empty = report("node-a", 1, &down(&[""]));
    assert_eq!(empty.encode(), Err(ReportError::BadInterfaceName(0)));
    let nameless = report("", 1, &Reach::FULL);
    assert_eq!(nameless.encode(), Err(ReportError::BadNodeName(0)));

    // The same reports crafted by hand are refused on receipt.
    let mut buffer = [0u8; 2048];
    let crafted = postcard::to_slice(&many, &mut buffer).expect("fits");
    assert_eq!(
        ReachReport::decode(crafted),
        Err(ReportError::TooManyNames(MAX_NAMES + 1))
    );
    let crafted = postcard::to_slice(&long, &mut buffer).expect("fits");
    assert_eq!(
        ReachReport::decode(crafted),
        Err(ReportError::BadInterfaceName(16))
    );
}

#[test]
fn garbage_and_trailing_bytes_are_refused() {
    assert!(matches!(
        ReachReport::decode(&[]),
        Err(ReportError::Decode(_))
    ));
    assert!(matches!(
        ReachReport::decode(&[0xff; 12]),
        Err(ReportError::Decode(_))
    ));
    let mut bytes = report("node-a", 1, &Reach::FULL).encode().expect("fits");
    bytes.push(0);
    assert_eq!(
        ReachReport::decode(&bytes),
        Err(ReportError::TrailingBytes(1))
    );
}

#[test]
fn the_book_keeps_the_newest_report_and_publishes_what_is_not_full() {
    let now = Instant::now();
    let mut book = ReachBook::new("node-a".to_owned());
    assert!(book.reaches().is_empty());
    assert_eq!(
        book.receive(&report("node-b", 5, &down(&["eth1"])), now),
        Received::Changed
    );
    assert_eq!(
        book.receive(&report("node-b", 5, &down(&["eth1"])), now),
        Received::Refreshed
    );
    assert_eq!(
        book.receive(&report("node-b", 4, &Reach::FULL), now),
        Received::Stale
    );
    assert_eq!(
        book.reaches(),
        Reaches::from([("node-b".to_owned(), down(&["eth1"]))])
    );
    assert_eq!(
        book.receive(&report("node-b", 6, &Reach::FULL), now),
        Received::Changed
    );
    assert!(book.reaches().is_empty());
    assert_eq!(
        book.receive(&report("node-a", 9, &down(&["eth9"])), now),
        Received::Ours
    );

    assert!(book.set_own(down(&["eth2"])));
    assert!(!book.set_own(down(&["eth2"])));
    assert_eq!(
        book.reaches(),
        Reaches::from([("node-a".to_owned(), down(&["eth2"]))])
    );
}

#[test]
fn a_report_expires_unless_refreshed_so_a_lost_all_good_heals() {
    let start = Instant::now();
    let mut book = ReachBook::new("node-a".to_owned());
    book.receive(&report("node-b", 1, &down(&["eth1"])), start);
    assert_eq!(book.next_expiry(), Some(start + REPORT_TTL));
    let refreshed = start + Duration::from_secs(1);
    book.receive(&report("node-b", 1, &down(&["eth1"])), refreshed);
    assert!(!book.expire(start + REPORT_TTL));
    assert_eq!(book.reaches().len(), 1);
    assert!(book.expire(refreshed + REPORT_TTL));
    assert!(book.reaches().is_empty());
    assert_eq!(book.next_expiry(), None);
}

#[test]
fn a_gone_node_is_forgotten() {
    let now = Instant::now();
    let mut book = ReachBook::new("node-a".to_owned());
    book.receive(&report("node-b", 1, &down(&["eth1"])), now);
    assert!(book.forget("node-b"));
    assert!(!book.forget("node-b"));
    assert!(book.reaches().is_empty());
}

#[test]
fn a_change_is_sent_three_times_then_refreshed_while_not_full() {
    let start = Instant::now();
    let mut outbox = ReachOutbox::new("node-a", 100);
    assert_eq!(outbox.next_due(), None);
    assert_eq!(outbox.for_newcomer(), None);
    assert!(
        !outbox.set(&Reach::FULL, start),
        "no change, nothing to send"
    );

    assert!(outbox.set(&down(&["eth1"]), start));
    assert_eq!(outbox.report().generation, 101);
    assert_eq!(outbox.for_newcomer(), Some(outbox.report()));
    let mut sent_at = Vec::new();
    let mut now = start;
    while now < start + Duration::from_millis(3100) {
        if outbox.due(now) {
            sent_at.push(now.duration_since(start).as_millis());
        }
        now += Duration::from_millis(50);
    }
    assert_eq!(sent_at, vec![200, 400, 1400, 2400]);

    // Back to full: three sends, then silence.
    let back = start + Duration::from_secs(10);
    assert!(outbox.set(&Reach::FULL, back));
    assert_eq!(outbox.report().generation, 102);
    assert_eq!(outbox.for_newcomer(), None);
    let mut repeats = 0;
    let mut now = back;
    while now < back + Duration::from_secs(5) {
        repeats += usize::from(outbox.due(now));
        now += Duration::from_millis(50);
    }
    assert_eq!(repeats, 2);
    assert_eq!(outbox.next_due(), None);
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(report) = ReachReport::decode(&bytes) {
            prop_assert!(report.unusable.len() <= MAX_NAMES);
            prop_assert_eq!(ReachReport::decode(&report.encode().expect("in bounds")), Ok(report));
        }
    }

    #[test]
    fn reports_within_bounds_round_trip(
        node in "[a-z0-9.-]{1,253}",
        generation in any::<u64>(),
        no_suitable in any::<bool>(),
        names in proptest::collection::btree_set("[a-z0-9]{1,15}", 0..=MAX_NAMES),
    ) {
        let reach = Reach { no_suitable, unusable: names.into_iter().collect::<BTreeSet<_>>() };
        let sent = ReachReport::new(&node, generation, &reach);
        prop_assert_eq!(ReachReport::decode(&sent.encode().expect("in bounds")), Ok(sent));
    }
}
