//! Warnings and notes ("warning:", "note:"), kept per statement.
//!
//! A statement run by the engine has its own [`Notices`]: the layers below
//! (readers, tables) report into it through [`warn_once`] and
//! [`note_once`] without being handed anything, because the engine makes
//! it the current collector of the thread that plans the statement, and a
//! scan carries it to the threads that read for it ([`Notices::current`],
//! [`Notices::enter`]). A statement says each thing once however many
//! scans hit it; the next statement says it again. Where the collector
//! sends them is the front end's choice ([`Mode`]): the command line
//! prints them on stderr as they come (a stream's lost events while it
//! runs), the PostgreSQL server keeps them for its client, a scrape or a
//! recorder prints each once per process.
//!
//! Reported outside any statement (startup, the server's own accept
//! loop), a notice is printed on stderr once per process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// `eprintln!` that does not panic when stderr is closed (`sockql record
/// ... 2>&1 | head -1`): std's macro panics on a failed write, and a lost
/// diagnostic is better than a crash. Every line sockql writes to stderr
/// goes through this or [`stderr!`].
#[macro_export]
macro_rules! stderrln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` that does not panic when stderr is closed; flushed.
#[macro_export]
macro_rules! stderr {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut e = std::io::stderr().lock();
        let _ = write!(e, $($arg)*);
        let _ = e.flush();
    }};
}

/// Text with control characters shown as escapes (`\n`, `\t`, `\x1b`):
/// a process name, command line or file content must not move the
/// cursor, clear the screen or break a table when printed to a terminal.
/// C1 controls (U+0080..U+009F, such as the one-character CSI) count too.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn seen() -> &'static Mutex<HashSet<String>> {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// Print `sockql: {kind}: {message}` unless `key` was printed before in
/// this process (whatever statement said it).
pub fn once(key: &str, kind: &str, message: impl std::fmt::Display) {
    let first = seen().lock().map(|mut s| s.insert(key.to_string())).unwrap_or(true);
    if first {
        crate::stderrln!("sockql: {kind}: {}", escape_controls(&message.to_string()));
    }
}

/// Say `message` once in the current statement (see the module), or once
/// in the process outside any statement.
pub fn warn_once(key: &str, message: impl std::fmt::Display) {
    report(Level::Warning, key, message)
}

pub fn note_once(key: &str, message: impl std::fmt::Display) {
    report(Level::Note, key, message)
}

fn report(level: Level, key: &str, message: impl std::fmt::Display) {
    match Notices::current() {
        Some(notices) => notices.report(level, key, &message.to_string()),
        None => once(key, level.word(), message),
    }
}

/// How grave a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Something the operator should act on: an answer may be wrong or
    /// partial (a state name no socket has, lost events, a fallback).
    Warning,
    /// Worth knowing (how long a stream runs, what a column hides).
    Note,
}

impl Level {
    /// As the command line prints it: `sockql: warning: ...`.
    pub fn word(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Note => "note",
        }
    }
}

/// One thing a statement said. The text has its control characters
/// escaped already.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

impl Notice {
    /// The line the command line prints on stderr.
    pub fn line(&self) -> String {
        format!("sockql: {}: {}", self.level.word(), self.text)
    }

    pub fn print(&self) {
        crate::stderrln!("{}", self.line());
    }
}

/// Distinct notices one statement keeps; past it one more says how many
/// were left out. Each is one line, so a statement holds a few KiB of them
/// whatever it hits.
pub const MAX_PER_STATEMENT: usize = 32;

/// Where a statement's notices go.
#[derive(Debug, Clone, Default)]
pub enum Mode {
    /// Printed on stderr as they are reported (the command line).
    #[default]
    Print,
    /// Printed on stderr the first time this process sees each (a scrape
    /// or a recorder, which run the same statements again and again).
    PrintOnce,
    /// Kept in this list, for the front end to take and send (the
    /// PostgreSQL server, watch).
    Keep(Heard),
}

/// Notices kept for a front end, in the order they were said (clones
/// share the list).
#[derive(Debug, Clone, Default)]
pub struct Heard(Arc<Mutex<Vec<Notice>>>);

impl Heard {
    /// Everything kept so far, leaving the list empty.
    pub fn take(&self) -> Vec<Notice> {
        self.0.lock().map(|mut k| std::mem::take(&mut *k)).unwrap_or_default()
    }

    fn push(&self, notice: Notice) {
        if let Ok(mut kept) = self.0.lock() {
            kept.push(notice);
        }
    }
}

/// One statement's notices (cheap to clone: clones share them).
#[derive(Debug, Clone)]
pub struct Notices(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    mode: Mode,
    /// Keys said so far in this statement, and how many were left out.
    said: Mutex<(HashSet<String>, usize)>,
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Notices>> = const { std::cell::RefCell::new(None) };
}

/// While alive, the notices this thread reports go to a statement (see
/// [`Notices::enter`]); dropping it restores what was current before.
#[must_use]
pub struct Entered {
    before: Option<Notices>,
    /// Current is per thread: the guard must be dropped where it was made.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let before = self.before.take();
        CURRENT.with(|c| *c.borrow_mut() = before);
    }
}

impl Notices {
    /// A new statement's notices, sent as `mode` says.
    pub fn new(mode: Mode) -> Self {
        Notices(Arc::new(Inner { mode, said: Mutex::new((HashSet::new(), 0)) }))
    }

    /// The statement this thread reports to, if any: a scan takes it to
    /// the threads that read for it.
    pub fn current() -> Option<Notices> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Make these the current notices of this thread until the guard drops.
    pub fn enter(&self) -> Entered {
        let before = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        Entered { before, _not_send: std::marker::PhantomData }
    }

    /// Run `f` with `notices` current, if there are any.
    pub fn within<T>(notices: Option<&Notices>, f: impl FnOnce() -> T) -> T {
        let _entered = notices.map(Notices::enter);
        f()
    }

    fn report(&self, level: Level, key: &str, message: &str) {
        let notice = {
            let Ok(mut said) = self.0.said.lock() else { return };
            let (keys, left_out) = &mut *said;
            if keys.contains(key) {
                return;
            }
            if keys.len() >= MAX_PER_STATEMENT {
                *left_out += 1;
                // Said once, when the first is left out.
                if *left_out > 1 {
                    return;
                }
                Notice {
                    level: Level::Warning,
                    text: format!("more than {MAX_PER_STATEMENT} notices in one statement; the rest are left out"),
                }
            } else {
                keys.insert(key.to_string());
                Notice { level, text: escape_controls(message).into_owned() }
            }
        };
        match &self.0.mode {
            Mode::Print => notice.print(),
            Mode::PrintOnce => once(&format!("{}:{key}", level.word()), level.word(), &notice.text),
            Mode::Keep(heard) => heard.push(notice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(f: impl FnOnce()) -> Vec<Notice> {
        let heard = Heard::default();
        let notices = Notices::new(Mode::Keep(heard.clone()));
        {
            let _in = notices.enter();
            f();
        }
        heard.take()
    }

    #[test]
    fn a_statement_says_each_thing_once_and_the_next_says_it_again() {
        let say = || {
            warn_once("k", "bad\nname");
            warn_once("k", "bad\nname");
            note_once("n", "a note");
        };
        let first = kept(say);
        assert_eq!(
            first,
            [
                Notice { level: Level::Warning, text: "bad\\nname".into() },
                Notice { level: Level::Note, text: "a note".into() }
            ]
        );
        assert_eq!(kept(say), first, "a new statement says it again");
        assert_eq!(first[0].line(), "sockql: warning: bad\\nname");
    }

    #[test]
    fn the_current_statement_is_per_thread_and_restored_after() {
        let outer = Notices::new(Mode::Keep(Heard::default()));
        let inner = Notices::new(Mode::Keep(Heard::default()));
        let _o = outer.enter();
        {
            let _i = inner.enter();
            assert!(Arc::ptr_eq(&Notices::current().unwrap().0, &inner.0));
            // Another thread has none unless a scan hands them over.
            assert!(std::thread::spawn(|| Notices::current().is_none()).join().unwrap());
            let carried = Notices::current();
            std::thread::spawn(move || Notices::within(carried.as_ref(), || warn_once("t", "from a reader")))
                .join()
                .unwrap();
        }
        assert!(Arc::ptr_eq(&Notices::current().unwrap().0, &outer.0));
        let Mode::Keep(heard) = &inner.0.mode else { unreachable!() };
        assert_eq!(heard.take().len(), 1);
    }

    #[test]
    fn a_statement_keeps_a_bounded_number() {
        let all = kept(|| (0..1000).for_each(|i| warn_once(&i.to_string(), format!("w{i}"))));
        assert_eq!(all.len(), MAX_PER_STATEMENT + 1);
        assert!(all[MAX_PER_STATEMENT].text.contains("left out"), "{:?}", all.last());
    }
}
