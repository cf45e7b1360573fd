//! (filled in by the gossip work)
