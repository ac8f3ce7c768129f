//! A real MariaDB 10.11 server (Debian package `mariadb-server`) started by
//! a test: a private data directory in a temporary directory, listening on
//! 127.0.0.1 and a free port.
//!
//! ```ignore
//! mod support;
//! use support::mariadb::MariaDb;
//!
//! let mut db = MariaDb::start();
//! db.sql("CREATE TABLE carat.t (n int); INSERT INTO carat.t VALUES (1)");
//! // ... point the collector at db.url() ...
//! db.restart(); // same port, same data
//! ```
//!
//! Behaviour worth knowing when writing a test:
//!
//! * [`MariaDb::start`] takes 0.6–2 s on two cores, most of it
//!   `mariadb-install-db` (the server itself is ready 0.1–0.4 s after it is
//!   spawned); a restart 0.15–0.3 s; `Drop` 30–100 ms. Call the blocking
//!   methods through `tokio::task::block_in_place`.
//! * Readiness is checked with a bare TCP connection first, which the
//!   server counts as an aborted connection ("closed normally without
//!   authentication" in its log): `Aborted_connects` is not 0 after a
//!   start.
//! * Users: `root` (over TCP from 127.0.0.1 with the password
//!   [`ADMIN_PASSWORD`], [`MariaDb::admin_url`]; over the Unix socket, which
//!   is in the fixture's private directory, without one: that is how
//!   [`MariaDb::sql`] connects) and `carat`@`%` (password [`PASSWORD`]),
//!   which has all privileges on the database `carat` and PROCESS, so that
//!   `SHOW PROCESSLIST` and `information_schema.PROCESSLIST` show the
//!   sessions of other users too ([`MariaDb::url`]).
//! * The server is private: `--no-defaults` (the system's `/etc/mysql` is
//!   not read), its own data directory, socket, pidfile and temporary
//!   directory, no binary log, `--skip-name-resolve` (hosts are IP
//!   addresses: `127.0.0.1` over TCP, `localhost` over the socket). Every
//!   sync call is off (`--debug-no-sync`): `mariadb-install-db` alone makes
//!   about 1,000 of them, and takes 0.5–1.7 s instead of 3–4.5 s on this
//!   disk. That is safe as long as the server is stopped cleanly, as the
//!   fixture does.
//! * When the test runs as root, the server does too (`--user=root`).
//! * The server is stopped by PID: SIGTERM to `mariadbd` (a clean shutdown),
//!   then SIGTERM and SIGKILL to its process group. It runs under the
//!   watchdog of [`super::supervised`]: if the test process dies without
//!   running `Drop`, the server gets SIGTERM and, 15 s later, its whole
//!   group SIGKILL.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::server::{self, tail, StartFailed};
use super::supervised::{self, ServerFixture, ServerSpec, SupervisedServer};

/// The server.
pub const MARIADBD: &str = "/usr/sbin/mariadbd";
/// Creates the system tables of a new data directory.
pub const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
/// The command-line client (package `mariadb-client`).
pub const MARIADB: &str = "/usr/bin/mariadb";

/// The user the collector logs in as.
pub const USER: &str = "carat";
/// Its password.
pub const PASSWORD: &str = "carat-secret-pw";
/// The database `carat` has all privileges on.
pub const DATABASE: &str = "carat";
/// The administrator.
pub const ADMIN_USER: &str = "root";
/// `root`'s password over TCP.
pub const ADMIN_PASSWORD: &str = "mariadb-admin-pw";

/// How many times mariadb-install-db is tried ([`MariaDb::init`]).
const INIT_ATTEMPTS: u32 = 3;

/// How long a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean shutdown, and then SIGTERM to the group, each get
/// before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long one `mariadb` client call may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Names the fixture in messages.
const FIXTURE: &str = "mariadb";
const INSTALL_HINT: &str =
    "install it with `apt-get install mariadb-server` (or run .ci/install-test-deps)";

/// Options of both `mariadb-install-db` (which passes them on to the
/// `mariadbd --bootstrap` it runs) and the server: small, and no sync calls.
const SERVER_OPTIONS: [&str; 5] = [
    "--debug-no-sync",
    "--innodb-buffer-pool-size=16M",
    // The default, 96 MB, is written out in full when it is created.
    "--innodb-log-file-size=8M",
    "--skip-name-resolve",
    "--skip-log-bin",
];

/// `mariadbd`, stopped with SIGTERM: a clean shutdown.
static SERVER: ServerSpec = ServerSpec {
    fixture: FIXTURE,
    name: "mariadbd",
    program: MARIADBD,
    binaries: &[MARIADBD, INSTALL_DB, MARIADB],
    install_hint: INSTALL_HINT,
    log_name: "mariadbd.log",
    start_timeout: START_TIMEOUT,
    shutdown_signal: Some("TERM"),
    stop_grace: STOP_GRACE,
};

/// A running MariaDB server for one test. Dropping it stops the server and
/// removes its directory.
pub struct MariaDb {
    /// `mariadbd`, in the fixture's directory; its PID comes from its
    /// pidfile.
    server: SupervisedServer,
    port: u16,
}

impl MariaDb {
    /// Creates a data directory, starts the server on 127.0.0.1 and a free
    /// port, creates the user and database `carat`, and returns once clients
    /// can log in.
    ///
    /// Panics, with the server's log, when it does not come up within
    /// [`START_TIMEOUT`]; panics with installation instructions when
    /// mariadb-server is not installed.
    pub fn start() -> MariaDb {
        SERVER.require_installed();
        let db = server::start_with_retries(FIXTURE, || {
            let mut db = MariaDb {
                server: SupervisedServer::new(&SERVER, server::temp_dir(FIXTURE)),
                port: server::free_ports(1, 0)[0],
            };
            db.init();
            db.spawn_and_wait().map(|()| db)
        });
        // mariadb-install-db made root@localhost, root@127.0.0.1 and
        // root@::1 without passwords, and root@<hostname>, which
        // --skip-name-resolve ignores with a warning at every start.
        db.sql(&format!(
            "DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');\n\
             DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');\n\
             FLUSH PRIVILEGES;\n\
             ALTER USER '{ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY '{ADMIN_PASSWORD}';\n\
             ALTER USER '{ADMIN_USER}'@'::1' IDENTIFIED BY '{ADMIN_PASSWORD}';\n\
             CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';\n\
             CREATE DATABASE {DATABASE};\n\
             GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';\n\
             GRANT PROCESS ON *.* TO '{USER}'@'%';\n"
        ));
        db
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`USER`].
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// `mysql://carat:carat-secret-pw@127.0.0.1:<port>/carat`.
    pub fn url(&self) -> String {
        format!(
            "mysql://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// [`MariaDb::url`] without the password (which the server requires).
    pub fn url_without_password(&self) -> String {
        format!("mysql://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// `root`'s URL, without a default database:
    /// `mysql://root:mariadb-admin-pw@127.0.0.1:<port>`.
    pub fn admin_url(&self) -> String {
        format!(
            "mysql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{}",
            self.port
        )
    }

    /// The fixture's temporary directory (data, socket, log), removed when
    /// the fixture is dropped.
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.server.dir().join("mariadbd.sock")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.server.dir().join("data")
    }

    /// Runs `sql` (any number of statements, `;`-terminated) as `root` over
    /// the Unix socket, without a default database, with `mariadb -N -B`:
    /// one line per row, tabs between columns, no column names, NULL as
    /// `NULL`. Returns the output; panics with the client's error when a
    /// statement fails (the ones after it do not run) or the server is down.
    pub fn sql(&self, sql: &str) -> String {
        let mut command = client_command();
        command
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--user={ADMIN_USER}"));
        run_client(command, sql)
    }

    /// [`MariaDb::sql`] as the user `carat` in the database `carat`, over
    /// TCP with its password, as the collector connects.
    pub fn sql_as_carat(&self, sql: &str) -> String {
        let mut command = client_command();
        command
            .args(["--protocol=tcp", "--host=127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={USER}"))
            .arg(format!("--database={DATABASE}"))
            // Not on the command line, where the client warns about it.
            .env("MYSQL_PWD", PASSWORD);
        run_client(command, sql)
    }

    fn pid_file(&self) -> PathBuf {
        self.server.dir().join("mariadbd.pid")
    }

    /// `--user=root` when the test runs as root (mariadbd refuses to run as
    /// root without it); nothing otherwise, since only root can switch.
    fn user_option() -> Option<&'static str> {
        server::running_as_root().then_some("--user=root")
    }

    /// Creates the data directory and its system tables.
    ///
    /// The bootstrap server that mariadb-install-db runs crashed
    /// (segmentation fault) in about one start in ten here when two
    /// fixtures started at once; a fresh attempt then succeeds, so it gets
    /// up to [`INIT_ATTEMPTS`].
    fn init(&mut self) {
        let tmp = self.server.dir().join("tmp");
        fs::create_dir(&tmp).unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
        for attempt in 1..=INIT_ATTEMPTS {
            let (log, log_err, offset) = self.server.open_log();
            let mut command = Command::new(INSTALL_DB);
            // --no-defaults has to come first.
            command
                .arg("--no-defaults")
                .arg(format!("--datadir={}", self.data_dir().display()))
                .args(Self::user_option())
                // root without a password (it gets one for TCP at the first
                // start); "socket" would tie root to the OS user.
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .args(SERVER_OPTIONS)
                .current_dir(self.server.dir())
                .stdout(log)
                .stderr(log_err);
            let status = command
                .status()
                .unwrap_or_else(|e| panic!("cannot run {INSTALL_DB}: {e} ({INSTALL_HINT})"));
            if status.success() {
                return;
            }
            let output = tail(&self.server.log_since(offset), 40);
            if attempt == INIT_ATTEMPTS {
                panic!("mariadb-install-db failed {INIT_ATTEMPTS} times, the last ({status}) with:\n{output}");
            }
            eprintln!("mariadb fixture: mariadb-install-db failed ({status}), trying again");
            let _ = fs::remove_dir_all(self.data_dir());
        }
    }

    /// Spawns `mariadbd` and waits until it accepts clients.
    fn spawn_and_wait(&mut self) -> Result<(), StartFailed> {
        // A pidfile left by a killed server would name the wrong process.
        let pid_file = self.pid_file();
        server::remove_file_if_exists(&pid_file);
        let log_file = self.server.log_file();
        let dir = self.server.dir();
        let mut command = self.server.command();
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", pid_file.display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .args(Self::user_option())
            .args(SERVER_OPTIONS)
            // Faster stops and starts: no buffer pool dump to load.
            .arg("--innodb-buffer-pool-dump-at-shutdown=OFF")
            .arg("--innodb-buffer-pool-load-at-startup=OFF")
            .arg("--max-connections=50")
            .current_dir(dir);
        self.server.start(
            command,
            &[self.port],
            Duration::from_millis(20),
            // The TCP listener opens before the server takes clients.
            |offset| {
                if !server::read_log_since(&log_file, offset).contains("ready for connections") {
                    return Err("mariadbd has not logged \"ready for connections\" yet".to_owned());
                }
                let text = fs::read_to_string(&pid_file).unwrap_or_default();
                match text.trim().parse() {
                    Ok(pid) => Ok(Some(pid)),
                    Err(_) => Err(format!(
                        "{} does not hold a PID: {text:?}",
                        pid_file.display()
                    )),
                }
            },
        )
    }
}

impl ServerFixture for MariaDb {
    fn server(&self) -> &SupervisedServer {
        &self.server
    }

    fn server_mut(&mut self) -> &mut SupervisedServer {
        &mut self.server
    }

    fn url(&self) -> String {
        MariaDb::url(self)
    }

    fn start_again(&mut self) {
        if let Err(e) = self.spawn_and_wait() {
            panic!("mariadbd did not start again: {}", e.message);
        }
    }
}

/// The `mariadb` client in batch mode, reading no option files and no
/// `MYSQL_*` variables of whoever runs the tests.
fn client_command() -> Command {
    let mut command = Command::new(MARIADB);
    supervised::clear_env_prefixed(&mut command, "MYSQL");
    // --no-defaults has to come first.
    command.args([
        "--no-defaults",
        "--batch",
        "--skip-column-names",
        "--connect-timeout=10",
    ]);
    command
}

/// Runs the client with `sql` on its stdin; its stdout, or a panic with
/// stderr.
fn run_client(command: Command, sql: &str) -> String {
    supervised::run_client(command, "mariadb", sql, CLIENT_TIMEOUT)
}
