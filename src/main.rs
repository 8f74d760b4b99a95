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
    let e = match runtime.block_on(sockql::cli::run(args)) {
        Ok(()) => return ExitCode::SUCCESS,
        Err(e) => e,
    };
    // A run that ended in an error (--timeout, a closed stdout) may leave
    // its query thread running until its next check: it is not waited for.
    // Dropping the runtime under it would shut down the timers it polls,
    // and tokio panics in that thread ("being shutdown"), on stderr. So the
    // process ends here, with the runtime as it is (stdout is flushed).
    let code = if e.downcast_ref::<sockql::cli::fleet::Partial>().is_some() {
        // A fleet answer some hosts are missing from: its line is printed.
        sockql::cli::fleet::PARTIAL_EXIT
    } else if sockql::query::error::causes(e.as_ref()).any(|c| {
        // A closed stdout (`sockql ... | head`) is not an error worth a
        // message. Each cause as its own type: the query layer keeps a
        // sink's error as it was.
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        0
    } else {
        sockql::stderrln!("sockql: error: {}", sockql::cli::error_line(&e));
        1
    };
    std::process::exit(code.into())
}
