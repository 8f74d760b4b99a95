//! A capture file read so that the query can stop it: a pipe is read
//! without blocking, waiting for data in poll(2) a tenth of a second at a
//! time, and every read first asks whether the reader should stop (the
//! query timed out, was abandoned, or met its LIMIT). A blocking read of a
//! pipe whose writer never writes would hold the reading thread, and with
//! it the process, past --timeout for as long as the writer lived.

use std::io::Read;
use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// How long one wait for a pipe's data lasts before asking again.
const WAIT_MS: u16 = 100;

/// What a read answers once the reader was asked to stop.
pub fn stopped() -> std::io::Error {
    std::io::Error::other("reading stopped: the query ended")
}

/// `file` (opened O_NONBLOCK) read until `stop()` says otherwise.
pub struct Stoppable<'a> {
    file: std::fs::File,
    stop: &'a (dyn Fn() -> bool + Sync),
}

impl<'a> Stoppable<'a> {
    pub fn new(file: std::fs::File, stop: &'a (dyn Fn() -> bool + Sync)) -> Self {
        Stoppable { file, stop }
    }
}

impl Read for Stoppable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if (self.stop)() {
                return Err(stopped());
            }
            match self.file.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Its answer does not matter: the next read says what came
                    // (an interrupted or failed wait just asks again sooner).
                    let _ = poll(&mut [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)], PollTimeout::from(WAIT_MS));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}
