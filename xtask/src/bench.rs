//! End-to-end benchmarks against the real apiserver: see BENCHMARKS.md.

use anyhow::{Result, bail};

pub fn run(services: &[usize], latency_samples: usize) -> Result<()> {
    if services.is_empty() || latency_samples == 0 {
        bail!("nothing to measure");
    }
    ferrolb_tests::bench::run(services, latency_samples)
}
