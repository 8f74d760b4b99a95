//! Where a user's files live (XDG base directories), read once here for
//! every front end: saved queries under the config home, the shell's
//! history under the state home.

use std::path::PathBuf;

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

/// Where the state home may be, best first: $XDG_STATE_HOME, else
/// ~/.local/state; then the home of the user sockql runs as, from the
/// user database (NSS). Under `sudo -E` or `su` without `-`, HOME still
/// names the invoking user's home while sockql runs as root: whoever
/// writes there must take the second, which `query::safe_dir` decides by
/// judging every component of the first (the user's home is not root's).
pub fn state_home_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = xdg("XDG_STATE_HOME", ".local/state").into_iter().collect();
    if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::geteuid()) {
        let own = user.dir.join(".local").join("state");
        if !out.contains(&own) {
            out.push(own);
        }
    }
    out
}
