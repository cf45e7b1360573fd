//! The FerroLB test environment: real etcd + kube-apiserver + kubectl built
//! from the Go module proxy, and helpers to run our components against them.

pub mod arp_probe;
pub mod bgplab;
pub mod cluster;
pub mod env;
pub mod forward;
pub mod l2lab;
pub mod metallb;
pub mod metallb_source;
pub mod metrics_text;
pub mod netns;
pub mod ns_probe;
pub mod packet_socket;
pub mod process;
pub mod realnodes;
pub mod router;
pub mod scenario;
pub mod service_watch;
pub mod tools;
pub mod webhook;

pub use cluster::Cluster;
pub use tools::Tools;
