//! ARP decoder: never panics, and what it accepts serialises back byte for
//! byte (every field it checks has one valid encoding, padding aside).
#![no_main]

use ferrolb_speaker::l2::arp::{ArpFrame, FRAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = ArpFrame::parse(data) else {
        return;
    };
    let bytes = frame.to_bytes();
    assert_eq!(Some(&bytes[..]), data.get(..FRAME_LEN), "not byte-exact");
    assert_eq!(ArpFrame::parse(&bytes), Ok(frame));
    // Our answer to it reads back as what we meant to send.
    let reply = ArpFrame::reply_to(&frame, frame.target_mac);
    assert_eq!(ArpFrame::parse(&reply.to_bytes()), Ok(reply));
});
