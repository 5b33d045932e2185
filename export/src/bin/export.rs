//! `export onnx …`: the name `cargo run -p wgan-export` and `target/*/export` use.
/// Out of memory is an `error:` line and exit status 2, not an abort (see
/// `wgan_models::cli::ExitOnOutOfMemory`).
#[global_allocator]
static ALLOC: wgan_models::cli::ExitOnOutOfMemory = wgan_models::cli::ExitOnOutOfMemory;

fn main() -> std::process::ExitCode {
    wgan_export::cli::main()
}
