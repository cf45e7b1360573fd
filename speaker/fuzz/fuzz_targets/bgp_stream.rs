//! The session's stream reassembly: never panics, never holds more than a
//! message's worth, and yields the same messages however the reads are cut.
#![no_main]

use ferrolb_speaker_fuzz::stream::{frame, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = split(data) else {
        return;
    };
    let whole = frame(input.stream, &[input.stream.len().max(1)], input.options);
    let chunked = frame(input.stream, &input.chunk_sizes, input.options);
    assert_eq!(
        chunked, whole,
        "chunks {:?} change the messages",
        input.chunk_sizes
    );
    if !input.chunk_sizes.is_empty() {
        let bytewise = frame(input.stream, &[], input.options);
        assert_eq!(bytewise, whole, "byte-by-byte reads change the messages");
    }
});
