//! Splitting a session's TCP byte stream into BGP messages, whatever sizes the
//! reads come in. Pure: the session shell pushes what it reads and pulls whole
//! messages out.

use super::codec::{CodecOptions, DecodeError, decode_message};
use super::message::Message;

/// Reassembles BGP messages from the bytes of one TCP connection.
///
/// After the first malformed message the stream is dead: RFC 4271 closes the
/// connection after the NOTIFICATION, and nothing that follows the bad bytes
/// can be framed reliably. The framer then drops everything and yields no more
/// messages, so what it yields never depends on how the reads were cut.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    failed: bool,
}

impl Framer {
    /// A framer for a new connection.
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Appends bytes read from the connection (ignored after a decode error).
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// The next whole message, `Ok(None)` until more bytes arrive, or the
    /// error of the first malformed message (once; `Ok(None)` ever after).
    /// `options` may change between calls: an OPEN changes how the next
    /// messages are decoded.
    pub fn next_message(&mut self, options: CodecOptions) -> Result<Option<Message>, DecodeError> {
        if self.failed {
            return Ok(None);
        }
        match decode_message(&self.buffer, options) {
            Ok(Some((message, used))) => {
                self.buffer.drain(..used.min(self.buffer.len()));
                Ok(Some(message))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                self.failed = true;
                self.buffer = Vec::new();
                Err(error)
            }
        }
    }

    /// Bytes received but not yet framed: never more than one message's worth
    /// once [`Framer::next_message`] has returned `Ok(None)`.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether a malformed message ended the stream.
    pub fn failed(&self) -> bool {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::codec::encode_message;
    use crate::bgp::message::Notification;

    fn all_messages(framer: &mut Framer) -> Vec<Result<Message, DecodeError>> {
        let mut out = Vec::new();
        loop {
            match framer.next_message(CodecOptions::default()) {
                Ok(Some(message)) => out.push(Ok(message)),
                Ok(None) => return out,
                Err(error) => out.push(Err(error)),
            }
        }
    }

    fn two_messages() -> Vec<u8> {
        let options = CodecOptions::default();
        let mut bytes = encode_message(&Message::Keepalive, options).expect("encodes");
        let notification = Message::Notification(Notification::cease(2));
        bytes.extend(encode_message(&notification, options).expect("encodes"));
        bytes
    }

    #[test]
    fn messages_cut_anywhere_come_out_whole() {
        let bytes = two_messages();
        let mut whole = Framer::new();
        whole.push(&bytes);
        let expected = all_messages(&mut whole);
        assert_eq!(expected.len(), 2);
        for cut in 0..=bytes.len() {
            let mut framer = Framer::new();
            let mut got = Vec::new();
            for part in [&bytes[..cut], &bytes[cut..]] {
                framer.push(part);
                got.extend(all_messages(&mut framer));
            }
            assert_eq!(got, expected, "cut at {cut}");
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn nothing_is_framed_after_a_malformed_message() {
        let mut bad = two_messages();
        bad[0] = 0; // breaks the first marker
        let good = two_messages();
        // All at once, or the good messages in a later read: same outcome.
        let mut at_once = Framer::new();
        at_once.push(&bad);
        at_once.push(&good);
        let mut later = Framer::new();
        later.push(&bad[..19]);
        let mut got_later = all_messages(&mut later);
        later.push(&bad[19..]);
        later.push(&good);
        got_later.extend(all_messages(&mut later));
        let got_at_once = all_messages(&mut at_once);
        assert_eq!(
            got_at_once,
            vec![Err(DecodeError::ConnectionNotSynchronized)]
        );
        assert_eq!(got_later, got_at_once);
        assert!(later.failed());
        assert_eq!(later.buffered(), 0);
    }
}
