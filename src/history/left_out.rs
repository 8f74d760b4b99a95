//! The files `--history` leaves out, said on stderr: each named in one
//! warning line up to a few, then one line counting the rest, so a
//! directory of 100,000 bad files costs six lines, not 100,000.

/// Files named one by one before the rest are only counted.
const NAMED: usize = 5;

#[derive(Debug, Default)]
pub struct LeftOut {
    named: usize,
    more: usize,
}

impl LeftOut {
    /// `what` (a path) is left out because of `why`.
    pub fn add(&mut self, what: &str, why: &str) {
        if self.named < NAMED {
            self.named += 1;
            crate::notice::warn_once(&format!("history-skip:{what}"), format!("history: leaving out {what}: {why}"));
        } else {
            self.more += 1;
        }
    }

    /// How many were left out in all.
    pub fn count(&self) -> usize {
        self.named + self.more
    }

    /// Say how many were only counted.
    pub fn finish(self) {
        if self.more > 0 {
            crate::notice::warn_once("history-skip-more", format!("history: … and {} more files left out", self.more));
        }
    }
}
