//! Gossip datagrams: the envelope (HMAC verify) and the foca decoding it
//! guards. Raw input only gets past the envelope if it was sealed with the
//! fixture key (the seeds are); every input is also sealed and delivered as a
//! key holder would send it, so the payload decoder is fuzzed too.
#![no_main]

use ferrolb_speaker::membership::auth::OpenError;
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
        let payload = auth.open(data).expect("receive opened it");
        assert_eq!(auth.seal(payload), data, "open/seal is not a round trip");
    }

    // As a key holder would send it.
    let sealed = auth.seal(data);
    assert_eq!(auth.open(&sealed), Ok(data));
    let mut foca = member(us());
    let outcome = receive(&auth, &mut foca, &sealed, &mut runtime);
    assert!(!matches!(outcome, Inbound::Refused(_)), "{outcome:?}");
    // One flipped bit anywhere in the sealed datagram is caught.
    let mut tampered = sealed;
    let bit = data.iter().fold(0usize, |acc, byte| {
        acc.wrapping_mul(31).wrapping_add(usize::from(*byte))
    }) % (tampered.len() * 8);
    tampered[bit / 8] ^= 1 << (bit % 8);
    assert_eq!(auth.open(&tampered), Err(OpenError::BadTag));
});
