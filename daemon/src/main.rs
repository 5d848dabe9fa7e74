//! The `pkid` binary.

fn main() -> std::process::ExitCode {
    pkid::cli::main()
}
