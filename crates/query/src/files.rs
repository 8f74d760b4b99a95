//! Reading SQL files as root without trusting them: how much is read, what
//! kind of file it is, and who could have written it.
//!
//! Two kinds of read:
//! - [`Read::Named`]: a file the operator named (`-f FILE`, `\i FILE`):
//!   symlinks are followed (the operator chose the path), but only a
//!   regular file or a pipe is read, never more than the size bound, and a
//!   file whose first token is no SQL keyword is refused without quoting
//!   any of it (`-f /etc/shadow` under a restricted sudo rule must not
//!   print the file's first word in a syntax error).
//! - [`Read::Discovered`]: a saved query found by searching a directory.
//!   Nobody named it, so it must be a regular file (not a symlink), and it
//!   and its directory must be owned by a trusted user and not writable by
//!   group or others; see [`trusted_owner`].

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::bail;
use crate::error::Context;

use super::statements::MAX_SQL_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Named,
    Discovered,
}

/// Owners whose files sockql runs: root, this process's real and effective
/// user, and, when root was reached through sudo, the user who ran sudo
/// (SUDO_UID): whoever can run sockql as root can already choose its SQL.
pub fn trusted_owner(uid: u32) -> bool {
    let (real, effective) = (nix::unistd::getuid().as_raw(), nix::unistd::geteuid().as_raw());
    if uid == 0 || uid == real || uid == effective {
        return true;
    }
    real == 0 && std::env::var("SUDO_UID").ok().and_then(|s| s.parse::<u32>().ok()) == Some(uid)
}

/// Why `meta` (of `path`) is not trusted, if it is not.
pub fn untrusted(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    if !trusted_owner(meta.uid()) {
        return Some(format!("{} is owned by uid {}, not by root or you", path.display(), meta.uid()));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Some(format!("{} is writable by group or others", path.display()));
    }
    None
}

/// May saved queries be read from `dir`? `Err` says why not; a missing
/// directory is `Ok(false)`.
pub fn trusted_dir(dir: &Path) -> crate::Result<bool> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    // A symlinked directory is judged by where it leads (the link itself
    // can only be made by whoever owns its parent).
    let meta = if meta.file_type().is_symlink() { std::fs::metadata(dir)? } else { meta };
    if !meta.is_dir() {
        return Ok(false);
    }
    match untrusted(dir, &meta) {
        Some(why) => bail!("{why}"),
        None => Ok(true),
    }
}

/// Statement keywords a SQL file may begin with.
fn starts_like_sql(text: &str) -> bool {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize() else { return false };
    let first = tokens.iter().find(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon));
    match first {
        None => true,
        Some(Token::LParen) => true,
        Some(Token::Word(w)) => matches!(
            w.keyword,
            Keyword::SELECT
                | Keyword::WITH
                | Keyword::VALUES
                | Keyword::TABLE
                | Keyword::EXPLAIN
                | Keyword::SHOW
                | Keyword::DESCRIBE
                | Keyword::DESC
                | Keyword::CREATE
                | Keyword::DROP
                | Keyword::SET
                | Keyword::RESET
                | Keyword::COPY
                | Keyword::INSERT
                | Keyword::PREPARE
                | Keyword::EXECUTE
                | Keyword::DEALLOCATE
                | Keyword::BEGIN
                | Keyword::START
                | Keyword::COMMIT
                | Keyword::ROLLBACK
        ),
        _ => false,
    }
}

/// Read at most [`MAX_SQL_BYTES`] from `r`; more is an error.
pub fn read_bounded(mut r: impl std::io::Read, what: &str) -> crate::Result<String> {
    let mut bytes = Vec::new();
    r.by_ref().take(MAX_SQL_BYTES as u64 + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {what}"))?;
    if bytes.len() > MAX_SQL_BYTES {
        bail!("{what}: too large for SQL (more than {} KiB)", MAX_SQL_BYTES / 1024);
    }
    if bytes.contains(&0) {
        bail!("{what}: not a text file (it contains NUL bytes)");
    }
    String::from_utf8(bytes).map_err(|_| crate::err!("{what}: not a text file (not UTF-8)"))
}

/// Read a SQL file under the rules of `kind` (see the module doc).
pub fn read_sql_file(path: &Path, kind: Read) -> crate::Result<String> {
    let text = read_text_file(path, kind, "query file")?;
    if !starts_like_sql(&text) {
        bail!("{}: not SQL (its first word is no SQL statement keyword)", path.display());
    }
    Ok(text)
}

/// Read a text file (a `noun`: "query file", "--pg-tls-cert file") under
/// the rules of `kind`, within the bound of any text sockql reads.
pub fn read_text_file(path: &Path, kind: Read, noun: &str) -> crate::Result<String> {
    let what = path.display().to_string();
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    if kind == Read::Discovered {
        flags |= libc::O_NOFOLLOW;
    }
    // O_NONBLOCK: opening a FIFO nobody writes must not hang, nor reading
    // a /proc file that blocks (/proc/kmsg).
    let file = File::options()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .with_context(|| format!("cannot read {noun} {what}"))?;
    let meta = file.metadata().with_context(|| format!("cannot read {noun} {what}"))?;
    let kind_ok = match kind {
        Read::Discovered => meta.is_file(),
        Read::Named => meta.is_file() || meta.file_type().is_fifo(),
    };
    if !kind_ok {
        bail!("{what}: not a regular file");
    }
    if kind == Read::Discovered {
        if let Some(why) = untrusted(path, &meta) {
            bail!("{why}");
        }
    }
    if !meta.is_file() {
        // A pipe the operator named (-f <(...)): wait for its writer.
        let _ = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()));
    }
    if meta.len() > MAX_SQL_BYTES as u64 {
        bail!("{what}: {} bytes is too large for a {noun} (at most {} KiB)", meta.len(), MAX_SQL_BYTES / 1024);
    }
    read_bounded(file, &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_files_start_with_a_statement_keyword() {
        assert!(starts_like_sql("-- name: x\n\nSELECT 1"));
        assert!(starts_like_sql("  with a as (select 1) select * from a"));
        assert!(starts_like_sql("(SELECT 1)"));
        assert!(starts_like_sql(""));
        assert!(!starts_like_sql("root:$y$j9T$abc:19000:0:99999:7:::"));
        assert!(!starts_like_sql("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"));
        assert!(!starts_like_sql("'unterminated"));
    }

    #[test]
    fn bounded_reads() {
        assert_eq!(read_bounded(&b"SELECT 1"[..], "x").unwrap(), "SELECT 1");
        let big = vec![b' '; MAX_SQL_BYTES + 1];
        assert!(read_bounded(&big[..], "x").unwrap_err().to_string().contains("too large"));
        assert!(read_bounded(&b"a\0b"[..], "x").unwrap_err().to_string().contains("NUL"));
    }
}
