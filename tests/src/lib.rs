//! The FerroLB test environment.
