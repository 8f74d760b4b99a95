//! uid → user name through the C library's user database (NSS: files,
//! LDAP, sssd, ...), as `ps` and `ls` show it, cached per reader: one
//! lookup per distinct uid of a scan.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Users(Mutex<HashMap<u32, Option<String>>>);

impl Users {
    pub fn new() -> Self {
        Self::default()
    }

    /// The name of `uid`, `None` if the database has none.
    pub fn name(&self, uid: u32) -> Option<String> {
        let lookup = || nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
        match self.0.lock() {
            Ok(mut cache) => cache.entry(uid).or_insert_with(lookup).clone(),
            Err(_) => lookup(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_users_from_the_database() {
        let users = super::Users::new();
        assert_eq!(users.name(0).as_deref(), Some("root"));
        assert_eq!(users.name(0).as_deref(), Some("root"), "cached");
        assert_eq!(users.name(4_000_000_000), None);
    }
}
