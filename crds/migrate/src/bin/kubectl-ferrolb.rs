//! `kubectl-ferrolb`: the same tools as a kubectl plugin (`kubectl ferrolb migrate`).

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
