//! Where a user's files live (XDG base directories), read once here for
//! every front end: saved queries under the config home, the shell's
//! history under the state home.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `$VAR` if set and not empty, else `$HOME/<under_home>`.
fn xdg(var: &str, under_home: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))
}

/// $XDG_CONFIG_HOME, else ~/.config.
pub fn config_home() -> Option<PathBuf> {
    xdg("XDG_CONFIG_HOME", ".config")
}

/// The state home sockql may write to: $XDG_STATE_HOME, else
/// ~/.local/state, but only when it (or, while it does not exist yet, the
/// nearest directory above it) belongs to the user sockql runs as. Under
/// `sudo -E` or `su` without `-`, HOME still names the invoking user's home
/// while sockql runs as root: root must not create files there. Then the
/// home of the user sockql runs as, from the user database (NSS), is used.
pub fn own_state_home() -> Option<PathBuf> {
    let euid = nix::unistd::geteuid();
    let owned = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.uid() == euid.as_raw());
    let trusted = |base: &PathBuf| {
        let mut p = base.as_path();
        while !p.exists() {
            p = p.parent()?;
        }
        owned(p).then_some(())
    };
    match xdg("XDG_STATE_HOME", ".local/state").filter(|b| trusted(b).is_some()) {
        Some(b) => Some(b),
        None => Some(nix::unistd::User::from_uid(euid).ok().flatten()?.dir.join(".local").join("state")),
    }
}
