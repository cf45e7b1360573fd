//! BGP message decoder: never panics; a decoded message encodes (no longer
//! than it came) and, unless RFC 7606 errors were applied to it, decodes back
//! to itself; every decode error's
//! NOTIFICATION fits the wire format.
#![no_main]

use ferrolb_speaker::bgp::codec::{CodecOptions, decode_message, encode_message};
use ferrolb_speaker::bgp::message::{HEADER_LEN, MAX_MESSAGE_LEN, Message, PathAttribute};
use ferrolb_speaker::bgp::update_errors::UpdateAction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, buffer)) = data.split_first() else {
        return;
    };
    let options = CodecOptions {
        four_octet_as: flags & 1 != 0,
    };
    match decode_message(buffer, options) {
        Ok(Some((message, used))) => {
            assert!((HEADER_LEN..=MAX_MESSAGE_LEN.min(buffer.len())).contains(&used));
            let encoded = encode_message(&message, options).unwrap_or_else(|error| {
                panic!("a decoded {} does not encode: {error}", message.kind())
            });
            assert!(
                encoded.len() <= used,
                "{} grew from {used} to {} bytes",
                message.kind(),
                encoded.len()
            );
            if let Message::Update(update) = &message {
                if !update.errors.is_empty() {
                    // RFC 7606 errors were applied by the decoder: what is left
                    // is our reading of a malformed UPDATE (withdrawals of
                    // several families may stand side by side), not a message
                    // to send, so it need not round-trip. It must not announce
                    // anything the router's errors made doubtful.
                    let withdraw = update
                        .errors
                        .iter()
                        .any(|e| e.action == UpdateAction::TreatAsWithdraw);
                    if withdraw {
                        assert!(update.nlri.is_empty(), "treat-as-withdraw kept NLRI");
                        assert!(
                            !update
                                .attributes
                                .iter()
                                .any(|a| matches!(a, PathAttribute::MpReach(_))),
                            "treat-as-withdraw kept MP_REACH_NLRI"
                        );
                    }
                    return;
                }
            }
            let again = decode_message(&encoded, options);
            assert_eq!(again, Ok(Some((message, encoded.len()))), "no round trip");
        }
        Ok(None) => assert!(buffer.len() < MAX_MESSAGE_LEN),
        Err(error) => {
            let notification = Message::Notification(error.notification());
            let encoded = encode_message(&notification, options).unwrap_or_else(|failure| {
                panic!("the NOTIFICATION for {error:?} does not encode: {failure}")
            });
            let again = decode_message(&encoded, options);
            assert_eq!(again, Ok(Some((notification, encoded.len()))));
        }
    }
});
