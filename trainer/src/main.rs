fn main() {
    wgan_trainer::cli::main()
}
