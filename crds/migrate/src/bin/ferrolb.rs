//! `ferrolb`: FerroLB's command-line tools (`ferrolb migrate`).

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
