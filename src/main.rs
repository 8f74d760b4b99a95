use std::process::ExitCode;

fn main() -> ExitCode {
    let args = sockql::cli::args::Args::parse_checked();
    // Worker threads poll DataFusion streams, whose expression evaluation
    // recurses on expression depth: give them room (virtual memory only).
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(16 << 20).build() {
        Ok(rt) => rt,
        Err(e) => {
            sockql::stderrln!("sockql: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sockql::cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // A fleet answer some hosts are missing from: its line is printed.
        Err(e) if e.downcast_ref::<sockql::cli::fleet::Partial>().is_some() => {
            ExitCode::from(sockql::cli::fleet::PARTIAL_EXIT)
        }
        Err(e) => {
            // A closed stdout (`sockql ... | head`) is not an error worth a message.
            // Each cause as its own type: the query layer keeps a sink's
            // error as it was.
            if sockql::query::error::causes(e.as_ref()).any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            sockql::stderrln!("sockql: error: {}", sockql::cli::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
