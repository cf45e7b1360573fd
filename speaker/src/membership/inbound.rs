//! The receive path of a gossip datagram, without the socket: open the
//! envelope ([`auth`](super::auth)), then hand the authentic payload to foca,
//! which decodes it and updates the membership. The shell calls
//! [`receive`] for every datagram; fuzzing and tests call it directly.

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, PostcardCodec};
use rand_foca::SeedableRng;
use rand_foca::rngs::SmallRng;

use super::auth::{Authenticator, OpenError};
use super::identity::SpeakerId;

/// The SWIM member a speaker runs: our identities, foca's postcard wire format.
pub type SpeakerFoca = Foca<SpeakerId, PostcardCodec, SmallRng, NoCustomBroadcast>;

/// A [`SpeakerFoca`] whose random choices (probe order, gossip targets)
/// follow `seed`, so that a run repeats: for tests and fuzzing. The shell
/// seeds its RNG from the operating system instead.
pub fn seeded_foca(identity: SpeakerId, config: foca::Config, seed: u64) -> SpeakerFoca {
    Foca::new(
        identity,
        config,
        SmallRng::seed_from_u64(seed),
        PostcardCodec,
    )
}

/// What became of a received datagram.
#[derive(Debug)]
pub enum Inbound {
    /// Authentic and understood; foca's reaction is in the runtime.
    Handled,
    /// Not authentic, or not an envelope we read: the payload was never looked at.
    Refused(OpenError),
    /// Authentic, but the payload does not decode (or is too big).
    Malformed(foca::Error),
    /// Authentic and decoded, but foca did not act on it (e.g. not for us).
    NotHandled(foca::Error),
}

/// Opens `datagram` and, if it is authentic, hands its payload to `foca`;
/// what foca wants done (send, schedule, notify) accumulates in `runtime`.
pub fn receive(
    authenticator: &Authenticator,
    foca: &mut SpeakerFoca,
    datagram: &[u8],
    runtime: &mut AccumulatingRuntime<SpeakerId>,
) -> Inbound {
    let payload = match authenticator.open(datagram) {
        Ok(payload) => payload,
        Err(error) => return Inbound::Refused(error),
    };
    match foca.handle_data(payload, runtime) {
        Ok(()) => Inbound::Handled,
        Err(
            error @ (foca::Error::Decode(_)
            | foca::Error::MalformedPacket
            | foca::Error::DataTooBig),
        ) => Inbound::Malformed(error),
        Err(other) => Inbound::NotHandled(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::GossipTimings;

    fn member(name: &str, addr: &str) -> (SpeakerId, SpeakerFoca) {
        let identity = SpeakerId {
            node_name: name.to_owned(),
            addr: addr.parse().expect("an address"),
            generation: 1,
        };
        let config = GossipTimings::default().foca_config().expect("valid");
        (identity.clone(), seeded_foca(identity, config, 1))
    }

    #[test]
    fn only_authentic_payloads_reach_foca_and_garbage_is_malformed() {
        let auth = Authenticator::new(&[b"the inbound test key"]).expect("a key");
        let (us, mut ours) = member("a", "198.51.100.1:7946");
        let (_, mut theirs) = member("b", "198.51.100.2:7946");
        let mut their_runtime = AccumulatingRuntime::new();
        theirs.announce(us, &mut their_runtime).expect("announces");
        let (_, announce) = their_runtime.to_send().expect("an announce to send");
        let mut runtime = AccumulatingRuntime::new();

        let forged = Authenticator::new(&[b"a forger's other key!"])
            .expect("a key")
            .seal(&announce);
        let outcome = receive(&auth, &mut ours, &forged, &mut runtime);
        assert!(
            matches!(outcome, Inbound::Refused(OpenError::BadTag)),
            "{outcome:?}"
        );
        assert!(
            runtime.to_send().is_none(),
            "a forged datagram got an answer"
        );

        let garbage = auth.seal(&[0xff; 40]);
        let outcome = receive(&auth, &mut ours, &garbage, &mut runtime);
        assert!(matches!(outcome, Inbound::Malformed(_)), "{outcome:?}");

        let outcome = receive(&auth, &mut ours, &auth.seal(&announce), &mut runtime);
        assert!(matches!(outcome, Inbound::Handled), "{outcome:?}");
        assert!(runtime.to_send().is_some(), "the announce is answered");
    }
}
