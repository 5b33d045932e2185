//! `wgan-export onnx …`: the installed name (a bare `export` in a shell is the builtin).
fn main() -> std::process::ExitCode {
    wgan_export::cli::main()
}
