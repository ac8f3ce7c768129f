//! Self-test of the SQL server fixtures in `tests/support/postgres.rs` and
//! `tests/support/mariadb.rs`: a real server takes a table and rows through
//! its command-line client, requires the password over TCP, keeps the rows
//! across a restart on the same port, and leaves no process and no directory
//! behind once the fixture is dropped.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::mariadb::{self, MariaDb};
use support::postgres::{self, Postgres};
use support::supervised::{process_alive, ServerFixture};

/// Panics unless every one of `pids` is gone.
fn assert_exited(what: &str, pids: &[u32]) {
    let alive: Vec<u32> = pids.iter().copied().filter(|&p| process_alive(p)).collect();
    assert!(
        alive.is_empty(),
        "{what} processes {alive:?} are still running"
    );
}

/// Panics unless every one of `pids` is gone and `dir` was removed.
fn assert_gone(what: &str, pids: &[u32], dir: &Path) {
    assert_exited(what, pids);
    assert!(!dir.exists(), "{} outlived the fixture", dir.display());
}

#[test]
fn postgres_keeps_rows_across_a_restart_and_is_gone_after_drop() {
    let started = Instant::now();
    let mut pg = Postgres::start();
    eprintln!(
        "postgres: ready in {:?} (the server's start {:?}), pid {}, port {}",
        started.elapsed(),
        pg.last_start(),
        pg.pid(),
        pg.port()
    );
    let first_pids = pg.pids();
    assert!(first_pids.contains(&pg.pid()), "{first_pids:?}");

    // carat owns the database, so it may create tables in its public schema.
    pg.psql_as_carat(
        "CREATE TABLE fixture (n int PRIMARY KEY, name text);\n\
         INSERT INTO fixture VALUES (1, 'one'), (2, 'two');",
    );
    let rows = "1|one\n2|two\n";
    assert_eq!(pg.psql("SELECT n, name FROM fixture ORDER BY n"), rows);
    assert_eq!(pg.psql("SELECT current_user").trim(), "postgres");
    assert_eq!(pg.psql_as_carat("SELECT current_user").trim(), "carat");

    // Over TCP the password is required.
    let refused = Command::new(postgres::PSQL)
        .args(["-X", "--no-password", "--dbname"])
        .arg(pg.url_without_password())
        .args(["--command", "SELECT 1"])
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .stdin(Stdio::null())
        .output()
        .expect("psql runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("password"), "{stderr}");
    // The superuser's URL works over TCP.
    let admin = Command::new(postgres::PSQL)
        .args(["-X", "-A", "-t", "--no-password", "--dbname"])
        .arg(pg.admin_url())
        .args(["--command", "SELECT current_user, current_database()"])
        .stdin(Stdio::null())
        .output()
        .expect("psql runs");
    assert_eq!(
        String::from_utf8_lossy(&admin.stdout),
        "postgres|postgres\n",
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );

    let restarting = Instant::now();
    pg.restart();
    eprintln!(
        "postgres: restart took {:?} (the start {:?})",
        restarting.elapsed(),
        pg.last_start()
    );
    assert_exited("the first postgres's", &first_pids);
    assert_eq!(
        pg.psql_as_carat("SELECT n, name FROM fixture ORDER BY n"),
        rows
    );

    pg.stop();
    assert!(!pg.is_running());
    pg.start_again();
    assert_eq!(pg.psql("SELECT count(*) FROM fixture").trim(), "2");

    let pids = pg.pids();
    let dir = pg.dir().to_owned();
    let dropping = Instant::now();
    drop(pg);
    eprintln!("postgres: drop took {:?}", dropping.elapsed());
    assert_gone("postgres", &pids, &dir);
    eprintln!("postgres: whole test took {:?}", started.elapsed());
}

#[test]
fn mariadb_keeps_rows_across_a_restart_and_is_gone_after_drop() {
    let started = Instant::now();
    let mut db = MariaDb::start();
    eprintln!(
        "mariadb: ready in {:?} (the server's start {:?}), pid {}, port {}",
        started.elapsed(),
        db.last_start(),
        db.pid(),
        db.port()
    );
    let first_pids = db.pids();
    assert!(first_pids.contains(&db.pid()), "{first_pids:?}");

    db.sql_as_carat(
        "CREATE TABLE fixture (n int PRIMARY KEY, name text);\n\
         INSERT INTO fixture VALUES (1, 'one'), (2, 'two');",
    );
    let rows = "1\tone\n2\ttwo\n";
    assert_eq!(db.sql("SELECT n, name FROM carat.fixture ORDER BY n"), rows);
    assert_eq!(db.sql("SELECT current_user()").trim(), "root@localhost");
    assert_eq!(db.sql_as_carat("SELECT current_user()").trim(), "carat@%");
    let grants = db.sql_as_carat("SHOW GRANTS");
    assert!(grants.contains("GRANT PROCESS ON *.*"), "{grants}");

    // Over TCP the password is required.
    let refused = Command::new(mariadb::MARIADB)
        .args(["--no-defaults", "--protocol=tcp", "--host=127.0.0.1"])
        .arg(format!("--port={}", db.port()))
        .args(["--user=carat", "--execute=SELECT 1"])
        .env_remove("MYSQL_PWD")
        .stdin(Stdio::null())
        .output()
        .expect("mariadb runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Access denied"), "{stderr}");
    // root logs in over TCP with the password of admin_url().
    assert!(db.admin_url().contains(mariadb::ADMIN_PASSWORD));
    let admin = Command::new(mariadb::MARIADB)
        .args([
            "--no-defaults",
            "--protocol=tcp",
            "--host=127.0.0.1",
            "-N",
            "-B",
        ])
        .arg(format!("--port={}", db.port()))
        .args(["--user=root", "--execute=SELECT current_user()"])
        .env("MYSQL_PWD", mariadb::ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .expect("mariadb runs");
    assert_eq!(
        String::from_utf8_lossy(&admin.stdout),
        "root@127.0.0.1\n",
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );

    let restarting = Instant::now();
    db.restart();
    eprintln!(
        "mariadb: restart took {:?} (the start {:?})",
        restarting.elapsed(),
        db.last_start()
    );
    assert_exited("the first mariadbd's", &first_pids);
    assert_eq!(
        db.sql_as_carat("SELECT n, name FROM fixture ORDER BY n"),
        rows
    );

    db.stop();
    assert!(!db.is_running());
    db.start_again();
    assert_eq!(db.sql("SELECT count(*) FROM carat.fixture").trim(), "2");

    let pids = db.pids();
    let dir = db.dir().to_owned();
    let dropping = Instant::now();
    drop(db);
    eprintln!("mariadb: drop took {:?}", dropping.elapsed());
    assert_gone("mariadb", &pids, &dir);
    eprintln!("mariadb: whole test took {:?}", started.elapsed());
}
