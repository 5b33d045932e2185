//! The `runtime` binary's command line (the library is [`wgan_runtime`]): the arguments
//! ([`args`]), the model-loading flags every command shares ([`engine`]), then one module per
//! command.

mod args;
mod bench;
mod engine;
mod gen;
mod info;
#[cfg(feature = "serve")]
mod serve;

use anyhow::Result;
pub(crate) use args::Cli;
use args::Command;

pub(crate) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gen(args) => gen::gen(args),
        Command::Info { model, file } => info::info(model.or(file).as_deref()),
        Command::Bench(args) => bench::bench(args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::serve(args),
        Command::Completions(args) => Ok(wgan_models::cli::print_completions::<Cli>(&args)?),
    }
}
