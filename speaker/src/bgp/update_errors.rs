//! RFC 7606: which errors in a received UPDATE still reset the session, and which the
//! session survives. The speaker keeps no RIB, so "treat-as-withdraw" and "attribute
//! discard" only change the decoded [`Update`] (its announced prefixes become withdrawn
//! ones, or the attribute is left out) and are logged and counted by the session; a
//! session reset is a [`DecodeError`] answered with its NOTIFICATION, as before.

use super::codec::DecodeError;
use super::message::{MpNlri, PathAttribute, Update, attribute_type};

/// The approaches of RFC 7606 §2, weakest first: when one UPDATE has several errors,
/// the strongest applies (§3 g).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpdateAction {
    /// The malformed attribute is dropped; the rest of the UPDATE stands.
    AttributeDiscard,
    /// The UPDATE's announced prefixes are taken as withdrawn.
    TreatAsWithdraw,
    /// NOTIFICATION and close: the message cannot be trusted to be read correctly.
    SessionReset,
}

impl UpdateAction {
    /// The name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            UpdateAction::AttributeDiscard => "attribute-discard",
            UpdateAction::TreatAsWithdraw => "treat-as-withdraw",
            UpdateAction::SessionReset => "session-reset",
        }
    }

    /// What RFC 7606 (§3, §4, §5.3 and §7; RFC 6793 §6 for the AS4 attributes)
    /// prescribes for `error` found in a received UPDATE.
    pub fn for_error(error: &DecodeError) -> UpdateAction {
        use DecodeError::*;
        use UpdateAction::*;
        use attribute_type::{
            AGGREGATOR, AS4_AGGREGATOR, AS4_PATH, ATOMIC_AGGREGATE, MP_REACH_NLRI, MP_UNREACH_NLRI,
        };
        // The MP attributes carry NLRI: without them read correctly there is nothing
        // to withdraw (§3 i, §7.11). We do not try to salvage one with bad flags either.
        let carries_nlri = |type_code: &u8| matches!(*type_code, MP_REACH_NLRI | MP_UNREACH_NLRI);
        match error {
            DuplicateAttribute { type_code }
            | AttributeFlags { type_code, .. }
            | AttributeLength { type_code, .. }
            | OptionalAttribute { type_code, .. }
                if carries_nlri(type_code) =>
            {
                SessionReset
            }
            // §3 f: every occurrence after the first is discarded.
            DuplicateAttribute { .. } => AttributeDiscard,
            // §7.6, §7.7; RFC 6793 §6.
            AttributeLength {
                type_code: ATOMIC_AGGREGATE | AGGREGATOR | AS4_AGGREGATOR,
                ..
            }
            | OptionalAttribute {
                type_code: AS4_PATH,
                ..
            } => AttributeDiscard,
            // §4: the Total Attribute Length still locates the NLRI. §3 c, §3 d, §7.1 to
            // §7.5, §7.8. RFC 7606 does not revise an unrecognized well-known attribute:
            // we cannot know what it would have meant for the routes, so we withdraw them.
            MalformedAttributeList { .. }
            | UnrecognizedWellKnownAttribute { .. }
            | MissingWellKnownAttribute { .. }
            | AttributeFlags { .. }
            | AttributeLength { .. }
            | InvalidOrigin { .. }
            | InvalidNextHop { .. }
            | OptionalAttribute { .. }
            | MalformedAsPath { .. } => TreatAsWithdraw,
            // Framing, OPEN errors, an NLRI that cannot be located (§4) or read (§5.3).
            ConnectionNotSynchronized
            | BadMessageLength { .. }
            | BadMessageType { .. }
            | UnsupportedVersion { .. }
            | UnsupportedOptionalParameter { .. }
            | MalformedOpen { .. }
            | NlriNotLocatable { .. }
            | InvalidNetworkField => SessionReset,
        }
    }
}

impl std::fmt::Display for UpdateAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An error in a received UPDATE that the session survives, with the action taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action}: {error}")]
pub struct UpdateError {
    /// [`UpdateAction::AttributeDiscard`] or [`UpdateAction::TreatAsWithdraw`], never a reset.
    pub action: UpdateAction,
    /// What is wrong (its NOTIFICATION is not sent).
    pub error: DecodeError,
}

/// Records `error` in `errors` when the session survives it; returns it when it calls
/// for a session reset.
pub(crate) fn tolerate(
    errors: &mut Vec<UpdateError>,
    error: DecodeError,
) -> Result<(), DecodeError> {
    match UpdateAction::for_error(&error) {
        UpdateAction::SessionReset => Err(error),
        action => {
            errors.push(UpdateError { action, error });
            Ok(())
        }
    }
}

/// Applies `errors` to a decoded UPDATE: under treat-as-withdraw, every prefix it
/// announces (NLRI and MP_REACH_NLRI) joins the withdrawn ones and only withdrawals
/// remain. Discarded attributes were never added.
pub(crate) fn apply(mut update: Update, errors: Vec<UpdateError>) -> Update {
    if errors
        .iter()
        .any(|error| error.action == UpdateAction::TreatAsWithdraw)
    {
        update.withdrawn.append(&mut update.nlri);
        let mut unreach: Vec<MpNlri> = Vec::new();
        for attribute in std::mem::take(&mut update.attributes) {
            match attribute {
                PathAttribute::MpReach(reach) => merge(&mut unreach, reach.nlri),
                PathAttribute::MpUnreach(nlri) => merge(&mut unreach, nlri),
                _ => {}
            }
        }
        update.attributes = unreach.into_iter().map(PathAttribute::MpUnreach).collect();
    }
    update.errors = errors;
    update
}

/// Adds `nlri` to the withdrawal of its family in `into`.
fn merge(into: &mut Vec<MpNlri>, nlri: MpNlri) {
    let same_family = into.iter_mut().find(|held| held.family() == nlri.family());
    match (same_family, nlri) {
        (Some(MpNlri::Ipv4(held)), MpNlri::Ipv4(mut more)) => held.append(&mut more),
        (Some(MpNlri::Ipv6(held)), MpNlri::Ipv6(mut more)) => held.append(&mut more),
        (_, nlri) => into.push(nlri),
    }
}

#[cfg(test)]
#[path = "update_errors_tests.rs"]
mod tests;
