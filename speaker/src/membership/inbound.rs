//! The receive path of a gossip datagram, without the socket: open the
//! envelope ([`auth`](super::auth)), then hand the authentic payload to foca,
//! which decodes it and updates the membership, or decode it as a reach
//! report ([`reach`](super::reach)), which the shell keeps. The shell calls
//! [`receive`] for every datagram; fuzzing and tests call it directly.

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, PostcardCodec};
use rand_foca::SeedableRng;
use rand_foca::rngs::SmallRng;

use super::auth::{Authenticator, Envelope, OpenError};
use super::identity::SpeakerId;
use super::reach::{ReachReport, ReportError};

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
    /// An authentic reach report, for the shell to keep.
    Reach(ReachReport),
    /// An authentic reach envelope whose report does not decode or is out of bounds.
    BadReport(ReportError),
}

/// Opens `datagram` and, if it is authentic, hands its payload to `foca`;
/// what foca wants done (send, schedule, notify) accumulates in `runtime`.
pub fn receive(
    authenticator: &Authenticator,
    foca: &mut SpeakerFoca,
    datagram: &[u8],
    runtime: &mut AccumulatingRuntime<SpeakerId>,
) -> Inbound {
    let payload = match authenticator.open_any(datagram) {
        Ok((Envelope::Gossip, payload)) => payload,
        Ok((Envelope::Reach, payload)) => {
            return match ReachReport::decode(payload) {
                Ok(report) => Inbound::Reach(report),
                Err(error) => Inbound::BadReport(error),
            };
        }
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

    #[test]
    fn reach_reports_are_decoded_apart_from_foca() {
        let auth = Authenticator::new(&[b"the inbound test key"]).expect("a key");
        let (_, mut ours) = member("a", "198.51.100.1:7946");
        let mut runtime = AccumulatingRuntime::new();
        let report = ReachReport {
            node_name: "b".to_owned(),
            generation: 7,
            no_suitable: false,
            unusable: vec!["eth1".to_owned()],
        };
        let sealed = auth.seal_as(Envelope::Reach, &report.encode().expect("in bounds"));
        let outcome = receive(&auth, &mut ours, &sealed, &mut runtime);
        assert!(
            matches!(&outcome, Inbound::Reach(got) if *got == report),
            "{outcome:?}"
        );
        assert!(runtime.to_send().is_none(), "foca never saw it");

        let garbage = auth.seal_as(Envelope::Reach, &[0xff; 8]);
        let outcome = receive(&auth, &mut ours, &garbage, &mut runtime);
        assert!(matches!(outcome, Inbound::BadReport(_)), "{outcome:?}");
    }
}
