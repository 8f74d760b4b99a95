//! The shell's history file, `<state home>/sockql/history`, read and
//! written as root without trusting the path to it.
//!
//! Under `sudo -E`, HOME is a user's: that user may swap any directory of
//! it for a link, at any moment, so a check made once at start proves
//! nothing about the next save. So:
//! - the directory is opened by `query::safe_dir`, which judges every
//!   component from `/` (root's or this user's, not writable by others
//!   unless sticky, links only if trusted, never at the end), again
//!   before every save; a state home that fails is passed over for the
//!   home of the user sockql runs as (NSS), and if that fails too there is
//!   no history, with one warning;
//! - the file is read with O_NOFOLLOW relative to that directory's
//!   descriptor, and only if it is a regular file of this user with one
//!   link (a link or another user's file at start means no history);
//! - a save writes a new file (O_EXCL, O_NOFOLLOW, mode set with fchmod
//!   on its descriptor) and renames it over the old one within the same
//!   directory descriptor: nothing is ever written or chmodded through a
//!   name another user could have pointed elsewhere.
//!
//! The format is rustyline's (`#V2`, then one entry a line with `\n` and
//! `\\` escaped), so existing history files keep working; rustyline's own
//! load and save take a path and follow links, so they are not used.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::query::safe_dir::{self, Create};

const NAME: &str = "history";
const V2: &str = "#V2";
/// At most this much of a history file is read (10,000 entries of
/// ordinary statements fit many times over).
const LOAD_BYTES: u64 = 32 << 20;

/// Where the history lives; every use opens the directory anew.
#[derive(Debug, Clone)]
pub struct HistoryFile {
    dir: PathBuf,
}

impl HistoryFile {
    /// The first state home whose `sockql` directory opens safely (made
    /// 0700 if missing); None, with one warning, when none does.
    pub fn locate() -> Option<HistoryFile> {
        let mut refused = None;
        for base in crate::query::dirs::state_home_candidates() {
            let dir = base.join("sockql");
            match safe_dir::open_dir(&dir, Create::All(0o700)) {
                Ok(_) => return Some(HistoryFile { dir }),
                Err(e) => refused = refused.or(Some(e)),
            }
        }
        let why = refused.map(|e| e.to_string()).unwrap_or_else(|| "no home directory".into());
        crate::notice::warn_once("history", format!("no shell history: {why}"));
        None
    }

    /// The file, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.join(NAME)
    }

    fn open_dir(&self) -> anyhow::Result<OwnedFd> {
        Ok(safe_dir::open_dir(&self.dir, Create::All(0o700))?)
    }

    /// The entries saved so far, oldest first. `Err` when the file may not
    /// be used (a link, another user's, not a regular file).
    pub fn load(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.open_dir()?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = match openat(&dir, NAME, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(Vec::new()),
            Err(Errno::ELOOP) => bail!("{} is a symbolic link", self.path().display()),
            Err(e) => bail!("cannot read {}: {e}", self.path().display()),
        };
        let st = fstat(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            bail!("{} is not a regular file", self.path().display());
        }
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            bail!("{} belongs to another user", self.path().display());
        }
        if st.st_nlink != 1 {
            bail!("{} has other hard links", self.path().display());
        }
        let mut bytes = Vec::new();
        File::from(fd)
            .take(LOAD_BYTES)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", self.path().display()))?;
        Ok(parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Replace the file with `entries`, checking the whole path again.
    pub fn save<'a>(&self, entries: impl Iterator<Item = &'a String>) -> anyhow::Result<()> {
        let dir = self.open_dir()?;
        let tmp = format!(".{NAME}.{}", std::process::id());
        // A temporary file left by a killed shell of the same pid.
        let _ = unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = openat(&dir, tmp.as_str(), flags, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("cannot write {}", self.dir.join(&tmp).display()))?;
        fchmod(&fd, Mode::from_bits_truncate(0o600))?;
        let written = (|| -> std::io::Result<()> {
            let mut w = BufWriter::new(File::from(fd));
            writeln!(w, "{V2}")?;
            for e in entries {
                w.write_all(escape(e).as_bytes())?;
                w.write_all(b"\n")?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_data()
        })();
        let renamed = written
            .map_err(anyhow::Error::from)
            .and_then(|()| renameat(&dir, tmp.as_str(), &dir, NAME).map_err(anyhow::Error::from));
        if renamed.is_err() {
            let _ = unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        renamed.with_context(|| format!("cannot save {}", self.path().display()))
    }
}

/// One entry as a line: `\` and newlines escaped.
fn escape(entry: &str) -> String {
    entry.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Entries from a file's text: `#V2` files are escaped, older ones hold
/// one entry a line as it is.
fn parse(text: &str) -> Vec<String> {
    let mut lines = text.lines();
    let Some(first) = lines.next() else { return Vec::new() };
    if first != V2 {
        return std::iter::once(first).chain(lines).filter(|l| !l.is_empty()).map(str::to_string).collect();
    }
    lines.filter(|l| !l.is_empty()).map(unescape).collect()
}

fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            // Not written by a save: kept as it was.
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_the_rustyline_format() {
        let entries = vec!["SELECT 1;".to_string(), "SELECT\n  'a\\b';".to_string(), "x\\n".to_string()];
        let text = format!("{V2}\n{}\n", entries.iter().map(|e| escape(e)).collect::<Vec<_>>().join("\n"));
        assert_eq!(parse(&text), entries);
        assert_eq!(parse("SELECT 1;\n\nSELECT 2;\n"), vec!["SELECT 1;", "SELECT 2;"], "a file from before #V2");
        assert_eq!(parse(""), Vec::<String>::new());
    }
}
