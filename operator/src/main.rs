use std::process::ExitCode;

fn main() -> ExitCode {
    imagestack_operator::cli::main()
}
