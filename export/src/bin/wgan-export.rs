//! `wgan-export onnx …`: the installed name (a bare `export` in a shell is the builtin).
fn main() {
    wgan_export::cli::main()
}
