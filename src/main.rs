use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(strata::run(std::env::args_os()))
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
