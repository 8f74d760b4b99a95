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
    // The process ends here, with the runtime as it is (stdout is flushed
    // by exit). A run may leave a query thread running until its next
    // check (--timeout, a closed stdout, the shell's Ctrl-C just before it
    // quits): it is not waited for, and dropping the runtime under it would
    // shut down the timers it polls, which tokio answers with a panic in
    // that thread, on stderr.
    let code = match runtime.block_on(sockql::cli::run(args)) {
        Ok(()) => 0,
        Err(e) => error_code(&e),
    };
    std::process::exit(code.into())
}

/// The exit status of a run that failed, its line printed if it has one.
fn error_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<sockql::cli::fleet::Partial>().is_some() {
        // A fleet answer some hosts are missing from: its line is printed.
        return sockql::cli::fleet::PARTIAL_EXIT;
    }
    // A closed stdout (`sockql ... | head`) is not an error worth a
    // message. Each cause as its own type: the query layer keeps a sink's
    // error as it was.
    if sockql::query::error::causes(e.as_ref())
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
    {
        return 0;
    }
    sockql::stderrln!("sockql: error: {}", sockql::cli::error_line(e));
    1
}
