//! A real PostgreSQL 15 server (Debian package `postgresql`) started by a
//! test: a private cluster in a temporary directory, listening on 127.0.0.1
//! and a free port.
//!
//! ```ignore
//! mod support;
//! use support::postgres::Postgres;
//!
//! let mut pg = Postgres::start();
//! pg.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
//! // ... point the collector at pg.url() ...
//! pg.restart(); // same port, same data
//! ```
//!
//! Behaviour worth knowing when writing a test:
//!
//! * [`Postgres::start`] takes 0.8–2 s on two cores, nearly all of it
//!   `initdb` (the server itself is ready 40–130 ms after it is spawned); a
//!   restart (fast shutdown, start) 0.1–0.3 s; `Drop` 50–150 ms. Call the
//!   blocking methods through `tokio::task::block_in_place`.
//! * Users: the superuser `postgres` (password [`ADMIN_PASSWORD`],
//!   [`Postgres::admin_url`]) and `carat` (password [`PASSWORD`], LOGIN, no
//!   other privileges), which owns the database `carat` ([`Postgres::url`]).
//!   Over TCP (127.0.0.1 only) every user needs its password
//!   (scram-sha-256); over the Unix socket, which is in the fixture's private
//!   directory, everyone is trusted: that is how [`Postgres::psql`] connects.
//! * The cluster is private: its own data directory, configuration and Unix
//!   socket directory; the system's cluster (`/etc/postgresql`, port 5432)
//!   is not touched. Durability is off (`fsync`, `synchronous_commit` and
//!   `full_page_writes`), which is safe as long as the server is stopped
//!   cleanly, as the fixture does.
//! * PostgreSQL refuses to run as root: when the test runs as root, `initdb`
//!   and `postgres` run as the `postgres` system user (created by the
//!   package), which owns the fixture's directory; the clients (`psql`) run
//!   as the test's user. The directory is under `$TMPDIR` when that user can
//!   reach it, else under `/tmp`.
//! * The server is stopped by PID: SIGINT to the postmaster (PostgreSQL's
//!   "fast" shutdown, which ends open sessions, unlike SIGTERM's "smart"
//!   one), then SIGTERM and SIGKILL to its process group. It runs under the
//!   watchdog of [`super::supervised`]: if the test process dies without
//!   running `Drop`, the server gets SIGTERM (a smart shutdown, fine since
//!   the test's connections died with it) and, 15 s later, its whole group
//!   SIGKILL.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::server::{self, tail, StartFailed};
use super::supervised::{self, ServerFixture, ServerSpec, SupervisedServer};

/// The server binaries of the Debian package `postgresql-15`.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The server.
pub const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";
/// Creates a cluster.
pub const INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";
/// The client of the same version (package `postgresql-client-15`), not
/// Debian's `/usr/bin/psql` wrapper, which picks a version of its own.
pub const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// The user the collector logs in as.
pub const USER: &str = "carat";
/// Its password.
pub const PASSWORD: &str = "carat-secret-pw";
/// The database `carat` owns.
pub const DATABASE: &str = "carat";
/// The superuser.
pub const ADMIN_USER: &str = "postgres";
/// The superuser's password.
pub const ADMIN_PASSWORD: &str = "postgres-admin-pw";

/// How long a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown, and then SIGTERM to the group, each get before
/// SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long one `psql` call may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Names the fixture in messages.
const FIXTURE: &str = "postgres";
const INSTALL_HINT: &str =
    "install it with `apt-get install postgresql` (or run .ci/install-test-deps)";

/// The system user the server runs as when the test runs as root.
const SYSTEM_USER: &str = "postgres";

/// The postmaster, stopped with SIGINT: PostgreSQL's "fast" shutdown, which
/// ends open sessions (SIGTERM's "smart" one waits for them).
static SERVER: ServerSpec = ServerSpec {
    fixture: FIXTURE,
    name: "postgres",
    program: POSTGRES,
    binaries: &[POSTGRES, INITDB, PSQL],
    install_hint: INSTALL_HINT,
    log_name: "postgres.log",
    start_timeout: START_TIMEOUT,
    shutdown_signal: Some("INT"),
    stop_grace: STOP_GRACE,
};

/// A running PostgreSQL cluster for one test. Dropping it stops the server
/// and removes its directory.
pub struct Postgres {
    /// The postmaster, in the fixture's directory; its PID comes from
    /// `postmaster.pid`.
    server: SupervisedServer,
    port: u16,
    /// The UID and GID of [`SYSTEM_USER`] when the test runs as root.
    run_as: Option<(u32, u32)>,
}

impl Postgres {
    /// Creates a cluster, starts it on 127.0.0.1 and a free port, creates
    /// the user and database `carat`, and returns once clients can log in.
    ///
    /// Panics, with the server's log, when it does not come up within
    /// [`START_TIMEOUT`]; panics with installation instructions when
    /// PostgreSQL 15 is not installed.
    pub fn start() -> Postgres {
        SERVER.require_installed();
        let run_as = system_user();
        let pg = server::start_with_retries(FIXTURE, || {
            let mut pg = Postgres {
                server: SupervisedServer::new(&SERVER, scratch_dir(run_as)),
                port: server::free_ports(1, 0)[0],
                run_as,
            };
            pg.init();
            pg.spawn_and_wait().map(|()| pg)
        });
        pg.psql_in(
            "postgres",
            &format!(
                "CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}';\n\
                 CREATE DATABASE {DATABASE} OWNER {USER};\n"
            ),
        );
        pg
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`USER`].
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// `postgres://carat:carat-secret-pw@127.0.0.1:<port>/carat`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// [`Postgres::url`] without the password (which the server requires).
    pub fn url_without_password(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The superuser's URL, to the maintenance database `postgres`:
    /// `postgres://postgres:postgres-admin-pw@127.0.0.1:<port>/postgres`.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The fixture's temporary directory (data, socket, log), removed when
    /// the fixture is dropped.
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    /// The directory of the server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        self.server.dir()
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.server.dir().join("data")
    }

    /// Runs `sql` (any number of statements, each in a transaction of its
    /// own unless the SQL says otherwise) as the superuser in the database
    /// `carat`, over the Unix socket, with `psql -X -q -A -t -v
    /// ON_ERROR_STOP=1`: unaligned rows, `|` between columns, one line per
    /// row, no headers and no command tags. Returns the output; panics with
    /// psql's error when a statement fails or the server is down.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// [`Postgres::psql`] in another database, e.g. `postgres`.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let mut command = self.psql_command(database);
        command
            .arg("--host")
            .arg(self.socket_dir())
            .arg("--username")
            .arg(ADMIN_USER);
        run_psql(command, sql)
    }

    /// [`Postgres::psql`] as the user `carat`, over TCP with its password,
    /// as the collector connects.
    pub fn psql_as_carat(&self, sql: &str) -> String {
        let mut command = self.psql_command(DATABASE);
        command
            .args(["--host", "127.0.0.1", "--username", USER])
            .env("PGPASSWORD", PASSWORD);
        run_psql(command, sql)
    }

    /// Runs `command` as [`SYSTEM_USER`] when the test runs as root; in the
    /// fixture's directory, since the test's own working directory may be
    /// closed to that user.
    fn as_server_user(&self, command: &mut Command) {
        if let Some((uid, gid)) = self.run_as {
            // std drops root's supplementary groups before setuid.
            command.uid(uid).gid(gid);
        }
        command.current_dir(self.server.dir());
        clear_pg_env(command);
    }

    /// Creates the cluster and writes its configuration.
    fn init(&mut self) {
        let dir = self.server.dir().to_owned();
        let pwfile = dir.join("admin-password");
        write_file(&pwfile, ADMIN_PASSWORD);
        if let Some((uid, gid)) = self.run_as {
            for path in [&dir, &pwfile] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
            }
        }
        let (log, log_err, offset) = self.server.open_log();
        let mut command = Command::new(INITDB);
        command
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["--username", ADMIN_USER])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            // C: no dependency on the locales installed; UTF8 as usual.
            .args(["--locale=C", "--encoding=UTF8"])
            .args(["--no-sync", "--no-instructions"])
            .stdout(log)
            .stderr(log_err);
        self.as_server_user(&mut command);
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("cannot run {INITDB}: {e} ({INSTALL_HINT})"));
        if !status.success() {
            panic!(
                "initdb failed ({status}); its output:\n{}",
                tail(&self.server.log_since(offset), 40)
            );
        }
        let _ = fs::remove_file(&pwfile);

        // Password authentication over TCP on 127.0.0.1, the only address
        // listened on; trust on the socket, which only the fixture's user
        // (and root) can reach.
        write_file(
            &self.data_dir().join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        );
        let config = self.data_dir().join("postgresql.conf");
        let mut text = fs::read_to_string(&config)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", config.display()));
        // Later settings win over initdb's.
        text.push_str(&format!(
            "
# carat test fixture
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
unix_socket_permissions = 0700
password_encryption = scram-sha-256
max_connections = 40
# Speed over durability: the fixture always stops the server cleanly.
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
wal_level = minimal
max_wal_senders = 0
huge_pages = off
# Everything to stderr, which the fixture keeps in postgres.log.
logging_collector = off
log_destination = stderr
log_line_prefix = '%m [%p] %q%u@%d '
",
            port = self.port,
            socket_dir = self.socket_dir().display(),
        ));
        write_file(&config, &text);
    }

    /// Spawns the postmaster and waits until it accepts clients.
    fn spawn_and_wait(&mut self) -> Result<(), StartFailed> {
        // A pidfile left by a killed server would say "ready" too early.
        let pid_file = self.data_dir().join("postmaster.pid");
        server::remove_file_if_exists(&pid_file);
        let mut command = self.server.command();
        command.arg("-D").arg(self.data_dir());
        self.as_server_user(&mut command);
        self.server.start(
            command,
            &[self.port],
            Duration::from_millis(20),
            // The postmaster writes "ready" into its pidfile once it takes
            // clients; until then it answers "the database system is
            // starting up".
            |_| match postmaster_status(&pid_file) {
                Some((pid, status)) if status == "ready" => Ok(Some(pid)),
                Some((_, status)) => Err(format!("the postmaster's status is {status:?}")),
                None => Err("no postmaster.pid yet".to_owned()),
            },
        )
    }

    /// `psql` against `database` on this server, with none of the user's
    /// settings (`-X`, and no `PG*` variables).
    fn psql_command(&self, database: &str) -> Command {
        let mut command = Command::new(PSQL);
        clear_pg_env(&mut command);
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["--port", &self.port.to_string(), "--dbname", database])
            .env("PGCONNECT_TIMEOUT", "10");
        command
    }
}

impl ServerFixture for Postgres {
    fn server(&self) -> &SupervisedServer {
        &self.server
    }

    fn server_mut(&mut self) -> &mut SupervisedServer {
        &mut self.server
    }

    fn url(&self) -> String {
        Postgres::url(self)
    }

    fn start_again(&mut self) {
        if let Err(e) = self.spawn_and_wait() {
            panic!("postgres did not start again: {}", e.message);
        }
    }
}

/// Runs psql with `sql` on its stdin; its stdout, or a panic with stderr.
fn run_psql(command: Command, sql: &str) -> String {
    supervised::run_client(command, "psql", sql, CLIENT_TIMEOUT)
}

/// The PID and status ("starting", "ready", "stopping", …) on the first and
/// eighth lines of a `postmaster.pid`, once the postmaster has written both.
fn postmaster_status(pid_file: &Path) -> Option<(u32, String)> {
    let text = fs::read_to_string(pid_file).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines.first()?.trim().parse().ok()?;
    let status = lines.get(7)?.trim().to_owned();
    Some((pid, status))
}

/// Removes the variables libpq and the server read (`PGHOST`, `PGDATA`,
/// `PGPASSWORD`, …).
fn clear_pg_env(command: &mut Command) {
    supervised::clear_env_prefixed(command, "PG");
}

fn write_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The UID and GID of [`SYSTEM_USER`] when this process runs as root, else
/// `None`.
fn system_user() -> Option<(u32, u32)> {
    if !server::running_as_root() {
        return None;
    }
    let missing = || -> ! {
        panic!(
            "the tests run as root, and PostgreSQL refuses to: it runs as the system user \
             `{SYSTEM_USER}`, which does not exist; {INSTALL_HINT}"
        )
    };
    let output = Command::new("getent")
        .args(["passwd", SYSTEM_USER])
        .output()
        .unwrap_or_else(|e| panic!("cannot run getent: {e}"));
    if !output.status.success() {
        missing();
    }
    // name:password:uid:gid:...
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(':').collect();
    match (
        fields.get(2).and_then(|f| f.parse().ok()),
        fields.get(3).and_then(|f| f.parse().ok()),
    ) {
        (Some(uid), Some(gid)) => Some((uid, gid)),
        _ => panic!("cannot read the UID and GID of {SYSTEM_USER} from getent: {line:?}"),
    }
}

/// The fixture's directory. When the server runs as another user, every
/// directory above it must let that user through; the default temporary
/// directory (`$TMPDIR`) may not, `/tmp` does.
fn scratch_dir(run_as: Option<(u32, u32)>) -> tempfile::TempDir {
    if run_as.is_none() || reachable_by_others(&std::env::temp_dir()) {
        return server::temp_dir(FIXTURE);
    }
    tempfile::Builder::new()
        .prefix("carat-postgres-")
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("cannot create a temporary directory in /tmp: {e}"))
}

/// Whether `dir` and all directories above it are searchable by anyone.
fn reachable_by_others(dir: &Path) -> bool {
    dir.ancestors().all(|d| {
        fs::metadata(d)
            .map(|m| m.mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}
