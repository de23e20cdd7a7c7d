//! The daemon: accepts connections on its socket, learns who is asking from the kernel
//! (`SO_PEERCRED`), checks the [`Policy`], and runs the same use cases a single-user `envctl`
//! runs, as the store's owner, one thread per connection. The store's own locks order what runs
//! at once (see the store's `lock.rs`).
//!
//! Nothing a client sends is trusted beyond what it asks for itself: an apply's sources must be
//! remote or a mirror or index the daemon's configuration names (the daemon reads no file of the
//! client's machine on its behalf), and every artifact is checked against the sha256 the client's
//! own lock states, so a client can only put into the store what its lock names. Builds run in
//! the sandbox (required: a daemon refuses to build without one), which also hides the socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use envctl_store::{NoReporter, Store, TempRoot};

use super::policy::Policy;
use super::protocol::{Answer, ApplyRequest, Envelope, PROTOCOL, Pong, Request};
use crate::apply::{Action, ApplyOptions, Plan};
use crate::error::{Failure, Result, StoreContext};
use crate::profiles::{Owner, ProfileRef};
use crate::settings::{DAEMON_MARKER, DaemonHome, Settings};
use crate::users::User;

/// The most a request may be (a lock and a manifest of the largest stacks are well below it).
const MAX_REQUEST: u64 = 64 << 20;

/// A daemon ready to serve its home.
pub struct Daemon {
    settings: Settings,
    policy: Policy,
    listener: UnixListener,
    socket: PathBuf,
}

/// The listening socket systemd handed over (`LISTEN_FDS`, `LISTEN_PID`), if any.
fn activated_listener() -> Option<UnixListener> {
    use std::os::fd::FromRawFd;
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    (pid == std::process::id() && fds >= 1).then(|| {
        // SAFETY: systemd passes the listening socket as descriptor 3 and nothing else owns it.
        unsafe { UnixListener::from_raw_fd(3) }
    })
}

impl Daemon {
    /// Prepares to serve `settings.home`: makes the home's directories, binds the socket (or
    /// takes the one systemd activated), and writes `<home>/daemon.toml`, which sends every
    /// other command's changes here.
    pub fn bind(mut settings: Settings, socket: Option<&Path>) -> Result<Daemon> {
        settings.serving = true;
        let socket = socket.map(Path::to_path_buf).unwrap_or_else(|| settings.config.daemon.socket.clone());
        let home = settings.home.clone();
        for dir in
            [home.clone(), home.join("store"), home.join("profiles/per-user"), home.join("profiles/per-team")]
        {
            fs_err::create_dir_all(&dir).map_err(|e| Failure::new("cannot prepare the daemon's home", e))?;
        }
        let listener = match activated_listener() {
            Some(l) => l,
            None => {
                if let Some(dir) = socket.parent() {
                    fs_err::create_dir_all(dir).map_err(|e| Failure::new("cannot prepare the socket", e))?;
                }
                // A socket left by a daemon that died: nobody answers on it any more.
                if UnixStream::connect(&socket).is_err() {
                    let _ = std::fs::remove_file(&socket);
                }
                let l = UnixListener::bind(&socket).map_err(|e| {
                    Failure::new(format!("cannot listen on `{}`", socket.display()), e)
                        .hint("another daemon may be serving it; `--socket PATH` picks another")
                })?;
                // Everyone may connect; the policy decides what each may do.
                use std::os::unix::fs::PermissionsExt;
                fs_err::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
                    .map_err(|e| Failure::new("cannot open the socket to users", e))?;
                l
            }
        };
        let marker = toml::to_string(&DaemonHome { socket: socket.clone() }).expect("a path serializes");
        let tmp = home.join(format!(".{DAEMON_MARKER}.tmp{}", std::process::id()));
        fs_err::write(&tmp, marker)
            .and_then(|()| fs_err::rename(&tmp, home.join(DAEMON_MARKER)))
            .map_err(|e| Failure::new("cannot mark the home as the daemon's", e))?;
        let d = &settings.config.daemon;
        let policy = Policy {
            allowed: d.allowed_users.clone(),
            trusted: d.trusted_users.clone(),
            config: settings.config_file(),
        };
        Ok(Daemon { settings, policy, listener, socket })
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Serves until the process ends.
    pub fn serve(self) -> Result<()> {
        let daemon = std::sync::Arc::new(self);
        // A look at the GPUs once a minute (where there is a driver), so that `envctl gpus
        // --idle` can tell every user for how long a process has held memory without computing,
        // and the idle policy, if the configuration sets one.
        let policy = crate::gpus::policy::IdlePolicy::from_config(&daemon.settings.config.daemon)?;
        let home = daemon.settings.home.clone();
        let every = std::time::Duration::from_secs(daemon.settings.config.daemon.gpu_sample_secs.max(1));
        std::thread::spawn(move || {
            let mut policy = policy;
            while let Ok(nvml) = crate::gpus::Nvml::load() {
                match crate::gpus::snapshot(&nvml, &home) {
                    Ok(snapshot) => {
                        if let Some(p) = &mut policy {
                            p.apply(&snapshot, &home);
                        }
                    }
                    Err(e) => tracing::warn!("cannot look at the GPUs: {e}"),
                }
                drop(nvml);
                std::thread::sleep(every);
            }
        });
        for conn in daemon.listener.incoming() {
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    continue;
                }
            };
            let d = daemon.clone();
            std::thread::spawn(move || d.handle(conn));
        }
        Ok(())
    }

    fn handle(&self, conn: UnixStream) {
        let Ok(user) = peer(&conn) else {
            tracing::warn!("a connection without credentials was dropped");
            return;
        };
        let mut reader = BufReader::new(std::io::Read::take(&conn, MAX_REQUEST));
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            return;
        }
        let answer = match serde_json::from_str::<Envelope>(&line) {
            Ok(e) if e.protocol != PROTOCOL => failed(
                Failure::new(
                    "refused: the client speaks another protocol",
                    format!("it speaks {}, this daemon {PROTOCOL}", e.protocol),
                )
                .hint("use the envctl that matches the daemon's"),
            ),
            Ok(Envelope { request: Request::HoldRoots { paths }, .. }) => {
                return self.hold_roots(&user, paths, &conn, reader);
            }
            Ok(Envelope { request: Request::LeaseGpus { count, wait, profile, pid }, .. }) => {
                let holder = crate::gpus::lease::Holder {
                    pid,
                    user: user.name.clone(),
                    profile,
                    since: crate::gpus::now(),
                };
                return self.lease_gpus(&user, count, wait, holder, &conn, reader);
            }
            Ok(Envelope { request, .. }) => {
                tracing::info!(user = %user.name, request = ?kind(&request), "request");
                self.answer(&user, request)
            }
            Err(e) => failed(Failure::new("refused: the request does not parse", e)),
        };
        send(&conn, &answer);
    }

    fn answer(&self, user: &User, request: Request) -> Answer {
        if let Err(f) = self.policy.check_allowed(user) {
            return failed(f);
        }
        let home = &self.settings.home;
        let done = |value: serde_json::Value| Answer::Done { value, lock: None };
        match request {
            Request::Ping => done(
                serde_json::to_value(Pong {
                    user: user.name.clone(),
                    groups: user.groups.clone(),
                    trusted: self.policy.trusted(user),
                    home: home.clone(),
                })
                .expect("a pong serializes"),
            ),
            Request::Apply(req) => self.apply(user, *req),
            Request::Rollback { profile, to } => {
                let run = || -> Result<serde_json::Value> {
                    self.check_profile(user, &profile)?;
                    let (target, was) = crate::generations::rollback(
                        &profile.profiles(home),
                        &profile.name,
                        &profile.to_string(),
                        to,
                    )?;
                    Ok(serde_json::json!({ "generation": target, "was": was }))
                };
                run().map_or_else(failed, done)
            }
            Request::DeleteGenerations { profile, what } => {
                let run = || -> Result<serde_json::Value> {
                    self.check_profile(user, &profile)?;
                    let deleted = crate::generations::delete(
                        &profile.profiles(home),
                        &profile.name,
                        &profile.to_string(),
                        &what,
                    )?;
                    Ok(serde_json::json!({ "deleted": deleted }))
                };
                run().map_or_else(failed, done)
            }
            Request::DeleteProfile { profile, dry_run } => {
                let run = || -> Result<serde_json::Value> {
                    self.check_profile(user, &profile)?;
                    let deleted = crate::generations::delete_profile(
                        &profile.profiles(home),
                        &profile.name,
                        &profile.to_string(),
                        dry_run,
                    )?;
                    Ok(serde_json::json!({ "deleted": deleted }))
                };
                run().map_or_else(failed, done)
            }
            Request::Gc { dry_run } => {
                let run = || -> Result<serde_json::Value> {
                    let dir = self.settings.store_dir();
                    let store = Store::open_collector(&dir, self.store_options())
                        .context(|| format!("cannot open the store at `{}`", dir.display()))?;
                    let report = store.gc(home, dry_run).context(|| "cannot collect garbage".into())?;
                    Ok(serde_json::to_value(report).expect("a report serializes"))
                };
                run().map_or_else(failed, done)
            }
            Request::Repair => {
                let run = || -> Result<serde_json::Value> {
                    self.policy.check_trusted(user, "repair the store")?;
                    let store = self.store()?;
                    let report = store.verify().context(|| "cannot verify the store".into())?;
                    let mut repaired = Vec::new();
                    for c in &report.corrupted {
                        match c.damage {
                            envctl_store::Damage::Modes => store.repair_modes(&c.name).map(|_| ()),
                            _ => store.repair(&c.name, &NoReporter),
                        }
                        .context(|| format!("cannot repair `{}`", c.name))?;
                        repaired.push(c.name.clone());
                    }
                    Ok(serde_json::json!({ "checked": report.checked, "repaired": repaired }))
                };
                run().map_or_else(failed, done)
            }
            Request::Optimise => {
                let run = || -> Result<serde_json::Value> {
                    self.policy.check_trusted(user, "optimise the store")?;
                    let report = self.store()?.optimise().context(|| "cannot optimise the store".into())?;
                    Ok(serde_json::to_value(report).expect("a report serializes"))
                };
                run().map_or_else(failed, done)
            }
            Request::HoldRoots { .. } | Request::LeaseGpus { .. } => {
                unreachable!("handled with its connection")
            }
        }
    }

    /// A profile a user may change, with a name that passes the rules.
    fn check_profile(&self, user: &User, profile: &ProfileRef) -> Result<()> {
        envctl_store::check_profile_name(&profile.name).context(|| "refused: the profile's name".into())?;
        if let Owner::User(who) | Owner::Team(who) = &profile.owner {
            envctl_store::check_profile_name(who).context(|| "refused: the profile's owner".into())?;
        }
        self.policy.check_change(user, profile)
    }

    fn store(&self) -> Result<Store> {
        let dir = self.settings.store_dir();
        Store::open(&dir, self.store_options())
            .context(|| format!("cannot open the store at `{}`", dir.display()))
    }

    /// The store's options in the daemon: builds must be sandboxed, and the sandbox hides the
    /// socket's directory.
    fn store_options(&self) -> envctl_store::StoreOptions {
        let mut o = self.settings.store_options();
        o.require_sandbox = true;
        o.build_timeout = std::time::Duration::from_secs(self.settings.config.daemon.build_timeout_secs);
        if let Some(dir) = self.socket.parent() {
            o.hidden.push(dir.to_path_buf());
        }
        o
    }

    fn apply(&self, user: &User, req: ApplyRequest) -> Answer {
        let lock_back = std::sync::Mutex::new(None);
        let run = || -> Result<serde_json::Value> {
            self.check_profile(user, &req.profile)?;
            check_sources(&req)?;
            for key in req.manifest.env.keys() {
                if !envctl_recipes::is_variable_name(key) {
                    return Err(Failure::new(
                        "refused: the generation's environment",
                        format!("`{}` is not a variable name", key.escape_debug()),
                    ));
                }
            }
            let profiles = req.profile.profiles(&self.settings.home);
            let current = profiles
                .current(&req.profile.name)
                .context(|| format!("cannot read profile `{}`", req.profile))?;
            let current_manifest =
                current.as_ref().and_then(|g| crate::manifest::Manifest::load(&g.path).ok());
            let mut manifest = req.manifest.clone();
            manifest.profile = req.profile.to_string();
            let plan = Plan {
                name: req.profile.to_string(),
                profile: req.profile.clone(),
                file: req.file.clone(),
                lock_path: req.lock_path.clone(),
                // The client writes the lock file.
                environment: None,
                action: Action::Build,
                lock: req.lock.clone(),
                old_lock: req.old_lock.clone(),
                current,
                current_manifest,
                manifest,
                changes: Vec::new(),
                fetch: Vec::new(),
                unconfigured_mirrors: Vec::new(),
                priorities: req.priorities.clone(),
                options: ApplyOptions {
                    offline: req.offline,
                    adhoc: req.adhoc.clone(),
                    ..Default::default()
                },
                warnings: Vec::new(),
                // The daemon fetches through its own configuration only.
                recipe_dirs: Vec::new(),
                indexes: Default::default(),
            };
            let settings = self.settings_for_store();
            let write = |lock: &envctl_recipes::LockFile| {
                *lock_back.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock.clone());
                Ok(())
            };
            let applied = crate::apply::execute(plan, &settings, &NoReporter, &write)?;
            Ok(serde_json::to_value(applied).expect("an outcome serializes"))
        };
        let result = run();
        let lock = lock_back.into_inner().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(value) => Answer::Done { value, lock },
            Err(f) => {
                let (context, cause, hints) = f.parts();
                Answer::Failed { context, cause, hints, lock }
            }
        }
    }

    /// Settings whose store options are the daemon's (sandbox required).
    fn settings_for_store(&self) -> Settings {
        let mut s = self.settings.clone();
        s.store_overrides = Some(self.store_options());
        s
    }

    /// Holds a temporary GC root for the client's session while its connection is open.
    fn hold_roots(&self, user: &User, paths: Vec<String>, conn: &UnixStream, mut reader: impl BufRead) {
        let held = self.policy.check_allowed(user).and_then(|()| {
            for p in &paths {
                envctl_store::StorePathName::parse(p)
                    .context(|| "refused: a root names a store path".into())?;
            }
            TempRoot::create(&self.settings.home, &paths)
                .context(|| "cannot register the session's GC root".into())
        });
        match held {
            Ok(root) => {
                send(conn, &Answer::Done { value: serde_json::json!({ "root": root.path() }), lock: None });
                // Until the session's program (which holds the connection) ends.
                let mut rest = Vec::new();
                let _ = std::io::Read::read_to_end(&mut reader, &mut rest);
                drop(root);
            }
            Err(f) => send(conn, &failed(f)),
        }
    }
}

impl Daemon {
    /// Leases GPUs for a user's session, held until the session's program (which holds the
    /// connection) ends; a waiter whose session ends leaves the line.
    fn lease_gpus(
        &self,
        user: &User,
        count: usize,
        wait: bool,
        holder: crate::gpus::lease::Holder,
        conn: &UnixStream,
        mut reader: impl BufRead,
    ) {
        let gone = || {
            // A peek of one byte that reads end-of-file: the client hung up.
            let mut byte = [0u8; 1];
            let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
            matches!(rustix::net::recv(conn, &mut byte, flags), Ok((_, 0)))
        };
        let leased = self.policy.check_allowed(user).and_then(|()| {
            let nvml = crate::gpus::Nvml::load()
                .map_err(|e| Failure::new(format!("cannot lease {count} GPU(s)"), e))?;
            let dir = crate::gpus::dir(&self.settings.home);
            crate::gpus::lease::acquire(&nvml, &dir, count, wait, &holder, &mut |_| {}, &gone)
                .map_err(|e| Failure::new(format!("cannot lease {count} GPU(s)"), e))
        });
        match leased {
            Ok(lease) => {
                tracing::info!(user = %user.name, gpus = ?lease.uuids, "leased");
                send(conn, &Answer::Done { value: serde_json::json!({ "uuids": lease.uuids }), lock: None });
                let mut rest = Vec::new();
                let _ = std::io::Read::read_to_end(&mut reader, &mut rest);
                tracing::info!(user = %user.name, gpus = ?lease.uuids, "lease ended");
                drop(lease);
            }
            Err(f) => send(conn, &failed(f)),
        }
    }
}

/// Sources a daemon fetches for a client: remote, or through its own configuration (mirrors,
/// indexes); never a path on this machine the client names.
fn check_sources(req: &ApplyRequest) -> Result<()> {
    for p in &req.lock.packages {
        let url = &p.source.url;
        let remote = ["http://", "https://", "mirror://", "index://"].iter().any(|s| url.starts_with(s));
        if !remote && url != envctl_store::EMPTY_URL {
            return Err(Failure::new(
                format!("refused: `{} {}` comes from `{url}`", p.name, p.version),
                "the daemon fetches nothing from a path a client names: it reads as the store's owner, not as you",
            )
            .hint("serve the file over HTTP, or ask an administrator for a mirror or an index in the daemon's configuration")
            .hint("`envctl store import` brings a signed export in; `envctl cache push` publishes one"));
        }
    }
    Ok(())
}

/// The user at the other end of `conn`, as the kernel says, with their groups as the user
/// database says (remembered for a minute: every session's start asks, and NSS is not free).
fn peer(conn: &UnixStream) -> std::io::Result<User> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    /// (uid, gid) -> the user, and when they were looked up.
    type Known = HashMap<(u32, u32), (User, Instant)>;
    static KNOWN: Mutex<Option<Known>> = Mutex::new(None);
    let (uid, gid) = peer_ids(conn)?;
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    let known = known.get_or_insert_with(HashMap::new);
    if let Some((user, at)) = known.get(&(uid, gid))
        && at.elapsed() < std::time::Duration::from_secs(60)
    {
        return Ok(user.clone());
    }
    let user = User::from_ids(uid, gid);
    known.insert((uid, gid), (user.clone(), Instant::now()));
    Ok(user)
}

/// The uid and gid at the other end of `conn` (`SO_PEERCRED`).
fn peer_ids(conn: &UnixStream) -> std::io::Result<(u32, u32)> {
    let cred = rustix::net::sockopt::socket_peercred(conn)?;
    Ok((cred.uid.as_raw(), cred.gid.as_raw()))
}

fn failed(f: Failure) -> Answer {
    let (context, cause, hints) = f.parts();
    Answer::Failed { context, cause, hints, lock: None }
}

fn send(mut conn: &UnixStream, answer: &Answer) {
    let mut line = serde_json::to_vec(answer).expect("an answer serializes");
    line.push(b'\n');
    // A client that went away gets nothing; what it asked for is done or undone all the same.
    let _ = conn.write_all(&line);
}

fn kind(request: &Request) -> &'static str {
    match request {
        Request::Ping => "ping",
        Request::Apply(_) => "apply",
        Request::Rollback { .. } => "rollback",
        Request::DeleteGenerations { .. } => "delete-generations",
        Request::DeleteProfile { .. } => "delete-profile",
        Request::Gc { .. } => "gc",
        Request::Repair => "repair",
        Request::Optimise => "optimise",
        Request::HoldRoots { .. } => "hold-roots",
        Request::LeaseGpus { .. } => "lease-gpus",
    }
}
