//! The `airlock` command: the upload service and the plugin authors' tools.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The compile jail's child: limits itself and compiles one component,
    // before any runtime, logging or argument parsing of the service.
    let mut raw = std::env::args_os().skip(1);
    if raw.next().as_deref() == Some(std::ffi::OsStr::new(airlock::runtime::jail::SUBCOMMAND)) {
        let spec = raw.next().map(|s| s.to_string_lossy().into_owned());
        return airlock::runtime::jail::child_main(spec.as_deref().unwrap_or_default());
    }
    let args = cli::Cli::parse();
    cli::init_tracing(args.log_format, args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
