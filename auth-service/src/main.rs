//! `auth-service`: parses the command line and hands it to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    auth_service::cli::main(auth_service::cli::Cli::parse())
}
