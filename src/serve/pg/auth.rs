//! Who may connect to the PostgreSQL endpoint, decided before any query.
//!
//! - Unix socket: the peer's credentials from the kernel (SO_PEERCRED).
//!   Root, the user sockql runs as, and members of `--pg-group` are
//!   admitted; anyone else is told why and disconnected.
//! - TCP: SCRAM-SHA-256 with the password in `--pg-password-file` (any
//!   user name); off loopback, only over TLS (`--pg-tls-cert/-key`).

use std::fmt::Debug;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::admission::{Gate, SessionSlot, Waiting};

/// The largest password file read (a password is a line).
const MAX_PASSWORD_FILE: u64 = 4096;

/// SCRAM iterations: PostgreSQL's own default.
const SCRAM_ITERATIONS: usize = 4096;

/// Who is admitted on the unix socket besides root.
#[derive(Debug, Clone)]
pub struct PeerRule {
    /// The user sockql runs as (admitted: it could run sockql itself).
    pub own_uid: u32,
    /// `--pg-group`: its gid and name.
    pub group: Option<(u32, String)>,
}

impl PeerRule {
    pub fn new(group: Option<&str>) -> anyhow::Result<Self> {
        let group = match group {
            None => None,
            Some(name) => {
                let g = nix::unistd::Group::from_name(name)
                    .with_context(|| format!("cannot look up group '{name}'"))?
                    .with_context(|| format!("--pg-group: no group named '{name}'"))?;
                Some((g.gid.as_raw(), g.name))
            }
        };
        Ok(PeerRule { own_uid: nix::unistd::geteuid().as_raw(), group })
    }

    /// Admit the peer with these credentials, or say why not.
    pub fn admit(&self, uid: u32, gid: u32) -> Result<(), String> {
        if uid == 0 || uid == self.own_uid {
            return Ok(());
        }
        let user = nix::unistd::User::from_uid(uid.into()).ok().flatten();
        if let Some((group_gid, group_name)) = &self.group {
            if gid == *group_gid {
                return Ok(());
            }
            // Supplementary groups, as login would set them (NSS).
            if let Some(user) = &user {
                if let Ok(name) = std::ffi::CString::new(user.name.as_bytes()) {
                    if let Ok(groups) = nix::unistd::getgrouplist(&name, user.gid) {
                        if groups.iter().any(|g| g.as_raw() == *group_gid) {
                            return Ok(());
                        }
                    }
                }
            }
            let who = user.map_or_else(|| format!("uid {uid}"), |u| format!("user {} (uid {uid})", u.name));
            return Err(format!(
                "peer authentication failed: {who} is not root and not in group {group_name} (--pg-group)"
            ));
        }
        let who = user.map_or_else(|| format!("uid {uid}"), |u| format!("user {} (uid {uid})", u.name));
        Err(format!(
            "peer authentication failed: {who} is not root (start sockql serve with --pg-group to admit a group)"
        ))
    }
}

/// The password from `--pg-password-file`: its first line. The file must
/// be a regular file that only its owner can read, as ~/.pgpass must.
pub fn read_password_file(path: &Path) -> anyhow::Result<String> {
    read_password_file_for(path, "--pg-password-file")
}

/// [`read_password_file`] for the option `flag` (--flight-password-file
/// too), which errors name. The file must also be owned by the user
/// sockql runs as (or root): another user's file could be swapped.
pub fn read_password_file_for(path: &Path, flag: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot open {flag} {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        anyhow::bail!("{flag} {} is not a regular file", path.display());
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        anyhow::bail!("{flag} {} is owned by uid {}, not by this user or root", path.display(), meta.uid());
    }
    if meta.mode() & 0o077 != 0 {
        anyhow::bail!("{flag} {} can be read by others (mode {:o}); chmod 600 it", path.display(), meta.mode() & 0o777);
    }
    let mut text = String::new();
    file.take(MAX_PASSWORD_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > MAX_PASSWORD_FILE {
        anyhow::bail!("{flag} {} is larger than {MAX_PASSWORD_FILE} bytes", path.display());
    }
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        anyhow::bail!("{flag} {} holds no password (its first line is empty)", path.display());
    }
    Ok(password)
}

/// The one password, salted once at start.
#[derive(Debug)]
pub struct PasswordSource {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl PasswordSource {
    pub fn new(password: &str) -> anyhow::Result<Self> {
        let salt = random_salt()?.to_vec();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Ok(PasswordSource { salt, salted })
    }
}

/// A salt from the kernel's random pool (ring's `SystemRandom`:
/// getrandom(2)), as the connections' cancel keys are made.
fn random_salt() -> anyhow::Result<[u8; 16]> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| anyhow::anyhow!("cannot get random bytes for the SCRAM salt"))?;
    Ok(salt)
}

#[async_trait]
impl AuthSource for PasswordSource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

/// Connections the kernel or the listener already vouched for; `key`
/// gives the connection its BackendKeyData (cancel.rs).
pub struct Trusted {
    pub key: Arc<super::cancel::Key>,
}

#[async_trait]
impl NoopStartupHandler for Trusted {
    fn pid_secret_key_generator(&self) -> &dyn PidSecretKeyGenerator {
        self.key.as_ref()
    }

    /// pgwire's no-auth path sends its default parameters; these follow
    /// them and replace them (a client keeps a parameter's last value),
    /// so both paths report the same server_version, DateStyle, TimeZone.
    async fn post_startup<C>(&self, client: &mut C, _message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        use pgwire::api::auth::ServerParameterProvider;
        let ours = super::catalog::server_parameters().server_parameters(client).unwrap_or_default();
        for (name, value) in ours {
            if matches!(name.as_str(), "server_version" | "DateStyle" | "TimeZone" | "default_transaction_read_only") {
                client
                    .feed(PgWireBackendMessage::ParameterStatus(pgwire::messages::startup::ParameterStatus::new(
                        name, value,
                    )))
                    .await?;
            }
        }
        Ok(())
    }
}

/// A connection's place: pre-auth until it logs in, then a session.
pub struct Places {
    gate: Arc<Gate>,
    waiting: Mutex<Option<Waiting>>,
    slot: Mutex<Option<SessionSlot>>,
}

impl Places {
    pub fn new(gate: Arc<Gate>, waiting: Waiting) -> Self {
        Places { gate, waiting: Mutex::new(Some(waiting)), slot: Mutex::new(None) }
    }

    /// Trade the pre-auth place for a session (once), or refuse the
    /// login with PostgreSQL's too_many_connections.
    fn session(&self) -> PgWireResult<()> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Ok(());
        }
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).take();
        let waiting = waiting.ok_or_else(|| fatal("53300", "too many connections are logging in".into()))?;
        *slot = Some(self.gate.session(waiting).map_err(|why| fatal("53300", why))?);
        Ok(())
    }
}

/// How one connection is admitted.
pub enum Admission {
    /// Admitted by its peer credentials (checked at accept).
    Peer { trusted: Trusted, places: Places },
    /// Refused before startup: the client is told why.
    Refused(String),
    /// SCRAM over TCP; `require_tls` off loopback. `started`: the first
    /// password message (SASLInitialResponse) was taken.
    Password {
        scram: SASLAuthStartupHandler<DefaultServerParameterProvider>,
        require_tls: bool,
        places: Places,
        started: AtomicBool,
    },
}

impl Admission {
    pub fn password(
        source: Arc<PasswordSource>,
        cert_pem: Option<&[u8]>,
        key: Arc<super::cancel::Key>,
        require_tls: bool,
        places: Places,
    ) -> PgWireResult<Self> {
        let mut scram = ScramAuth::new(source);
        scram.set_iterations(SCRAM_ITERATIONS);
        if let Some(pem) = cert_pem {
            // SCRAM-SHA-256-PLUS: the password exchange is bound to the TLS
            // channel, so a man in the middle cannot relay it.
            scram.configure_certificate(pem)?;
        }
        let handler = SASLAuthStartupHandler::new(Arc::new(super::catalog::server_parameters()))
            .with_scram(scram)
            .with_pid_secret_key_generator(key);
        Ok(Admission::Password { scram: handler, require_tls, places, started: AtomicBool::new(false) })
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".to_string(), code.to_string(), message)))
}

#[async_trait]
impl StartupHandler for Admission {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Admission::Peer { trusted, places } => {
                // The kernel vouched for the peer at accept: the startup
                // packet logs it in, if there is a session for it.
                if matches!(message, PgWireFrontendMessage::Startup(_)) {
                    places.session()?;
                }
                trusted.on_startup(client, message).await
            }
            // 28000: invalid_authorization_specification, as PostgreSQL's
            // own peer authentication failure.
            Admission::Refused(why) => Err(fatal("28000", why.clone())),
            Admission::Password { scram, require_tls, places, started } => {
                if *require_tls && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "this endpoint is not on loopback: connect with TLS (sslmode=require)".to_string(),
                    ));
                }
                let mut first = false;
                if let PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(body)) = &message {
                    if started.load(Ordering::Acquire) {
                        // The proof: a session must be there for it.
                        places.session()?;
                    } else {
                        // pgwire reads this one trusting its lengths.
                        super::framing::check_sasl_initial(body).map_err(|f| fatal(f.code, f.message))?;
                        first = true;
                    }
                }
                // SCRAM's own user name is empty (psql) or "*" (pgjdbc):
                // a failure names the one of the startup packet.
                let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                let result = scram.on_startup(client, message).await;
                if first && result.is_ok() {
                    started.store(true, Ordering::Release);
                }
                result.map_err(|e| match e {
                    PgWireError::InvalidPassword(_) => PgWireError::InvalidPassword(user),
                    other => other,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_own_user_are_admitted_others_are_told_why() {
        let rule = PeerRule { own_uid: 1234, group: None };
        assert!(rule.admit(0, 0).is_ok());
        assert!(rule.admit(1234, 99).is_ok());
        let why = rule.admit(4321, 4321).unwrap_err();
        assert!(why.contains("uid 4321") && why.contains("--pg-group"), "{why}");
    }

    #[test]
    fn the_group_admits_by_primary_gid() {
        let rule = PeerRule { own_uid: 0, group: Some((777, "sockql".into())) };
        assert!(rule.admit(4321, 777).is_ok());
        let why = rule.admit(4321, 4321).unwrap_err();
        assert!(why.contains("not in group sockql"), "{why}");
    }

    #[test]
    fn password_files_must_be_private_small_and_not_empty() {
        let dir = std::env::temp_dir().join(format!("sockql-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert!(read_password_file(&file).unwrap_err().to_string().contains("chmod 600"));
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert_eq!(read_password_file(&file).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_password_file(&file).unwrap_err().to_string().contains("no password"));
        std::fs::write(&file, "x".repeat(5000)).unwrap();
        assert!(read_password_file(&file).unwrap_err().to_string().contains("larger"));
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_password_file(&link).is_err(), "a symlink is not followed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
