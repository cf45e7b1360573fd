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
