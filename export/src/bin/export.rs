//! `export onnx …`: the name `cargo run -p wgan-export` and `target/*/export` use.
fn main() -> std::process::ExitCode {
    wgan_export::cli::main()
}
