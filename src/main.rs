use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(strata::run(std::env::args_os()))
}
