//! The `certgate` binary: parses the command line and hands over to [`certgate::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    certgate::cli::main()
}
