//! How long one watch request of either binary may stay open.
//!
//! A watch is a long response the client only reads. If its connection dies
//! without a FIN or RST reaching the client, nothing tells the client: it
//! waits, blind to every change, until kube's watcher gives up on the
//! silence, which happens [`WATCH_TIMEOUT_SECS`] plus 5 s after the last
//! event (the server ends a healthy watch at [`WATCH_TIMEOUT_SECS`], so a
//! longer silence means the connection is dead).
//!
//! Such deaths are common on a node whose link goes down and up again: the
//! kernel drops the masqueraded connection-tracking entries of the device
//! when it goes down, so kube-proxy's NAT for the API's ClusterIP is gone.
//! The API server's next event then reaches the node unrecognised and is
//! answered with a reset that never reaches the pod, and the pod's socket
//! stays established forever. Requests that send (a Lease renewal, a status
//! write) notice at once; a watch that only reads does not. With kube's
//! default of 290 s a controller on such a node assigned no IP to a new
//! Service for nearly five minutes (seen in the real-node fault tests);
//! with 45 s it is blind for at most 50 s.
//!
//! The price is one re-watch per watch every 45 s, from the last
//! resourceVersion (bookmarks keep it current), which the API server's
//! watch cache serves without a list.

use kube::runtime::watcher;

/// The server-side timeout of every watch request, in seconds.
pub const WATCH_TIMEOUT_SECS: u32 = 45;
// Shorter than kube's default, or there was no point.
const _: () = assert!(WATCH_TIMEOUT_SECS < 290);

/// The watcher configuration both binaries use: kube's defaults with
/// [`WATCH_TIMEOUT_SECS`].
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_use_the_short_timeout_and_keep_bookmarks() {
        let config = watch_config();
        assert_eq!(config.timeout, Some(WATCH_TIMEOUT_SECS));
        assert!(
            config.bookmarks,
            "a re-watch needs a current resourceVersion"
        );
    }
}
