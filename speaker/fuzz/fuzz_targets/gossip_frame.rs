//! Gossip datagrams: the envelope (HMAC verify) and the decoders it guards,
//! foca's and the reach report's. Raw input only gets past the envelope if it
//! was sealed with the fixture key (the seeds are); every input is also
//! sealed as foca's and as a reach report and delivered as a key holder would
//! send it, so both payload decoders are fuzzed too.
#![no_main]

use ferrolb_speaker::membership::auth::{Envelope, OpenError};
use ferrolb_speaker::membership::reach::{MAX_NAMES, ReachReport};
use ferrolb_speaker::membership::inbound::{Inbound, receive};
use ferrolb_speaker_fuzz::gossip::{authenticator, member, us};
use foca::AccumulatingRuntime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let auth = authenticator();
    let mut runtime = AccumulatingRuntime::new();

    // As received. Only a datagram the key sealed opens, and it re-seals to itself.
    let mut foca = member(us());
    if !matches!(
        receive(&auth, &mut foca, data, &mut runtime),
        Inbound::Refused(_)
    ) {
        let (envelope, payload) = auth.open_any(data).expect("receive opened it");
        assert_eq!(
            auth.seal_as(envelope, payload),
            data,
            "open/seal is not a round trip"
        );
    }

    // As a key holder would send it.
    let sealed = auth.seal(data);
    assert_eq!(auth.open(&sealed), Ok(data));
    let mut foca = member(us());
    let outcome = receive(&auth, &mut foca, &sealed, &mut runtime);
    assert!(!matches!(outcome, Inbound::Refused(_)), "{outcome:?}");
    // As a reach report: decoded within bounds, or refused by name; what
    // decodes encodes to a report that decodes to itself.
    let as_report = auth.seal_as(Envelope::Reach, data);
    match receive(&auth, &mut member(us()), &as_report, &mut runtime) {
        Inbound::Reach(report) => {
            assert!(report.unusable.len() <= MAX_NAMES);
            let encoded = report.encode().expect("a decoded report is within bounds");
            assert_eq!(ReachReport::decode(&encoded), Ok(report));
        }
        Inbound::BadReport(_) => {}
        other => panic!("a reach envelope reached foca: {other:?}"),
    }
    // One flipped bit anywhere in the sealed datagram is caught.
    let mut tampered = sealed;
    let bit = data.iter().fold(0usize, |acc, byte| {
        acc.wrapping_mul(31).wrapping_add(usize::from(*byte))
    }) % (tampered.len() * 8);
    tampered[bit / 8] ^= 1 << (bit % 8);
    assert_eq!(auth.open(&tampered), Err(OpenError::BadTag));
});
