//! Starting the command as its own process group, and ending that group.
//!
//! Every command runs in a process group of its own (its pid is the
//! group's id), so that a timeout or a stop ends the command *and*
//! everything it started (a `sleep` under a shell, a pipeline), not only
//! the process carat started. Its standard input is `/dev/null`; its
//! standard output and error are pipes to the agent; every other
//! descriptor of the agent is closed on exec, so the command inherits
//! none of the agent's sockets or files.

use std::ffi::CString;
use std::io;
use std::process::Stdio;

use carat_collector::CollectorError;
use tokio::process::{Child, Command};

use crate::config::ExecConfig;

/// A user the command runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The user's name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// Its home directory.
    pub home: String,
}

impl Account {
    /// Looks `name` up in the user database: a user that does not exist is
    /// a configuration error. (Whether the agent may switch to it is known
    /// only where it runs: [`Launcher::spawn`] checks.)
    pub fn for_option(name: &str) -> Result<Account, CollectorError> {
        lookup(name)
            .map_err(|e| CollectorError::option("user", format!("cannot look up {name:?}: {e}")))?
            .ok_or_else(|| CollectorError::option("user", format!("no user {name:?} on this host")))
    }

    /// Only root may run a command as another user.
    fn check_switch(&self) -> Result<(), CollectorError> {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 || euid == self.uid {
            return Ok(());
        }
        Err(CollectorError::config(format!(
            "user = {:?}: running the command as another user needs the agent to run as root (it runs as uid {euid})",
            self.name
        )))
    }
}

/// The user database entry of `name` (`getpwnam_r(3)`).
fn lookup(name: &str) -> io::Result<Option<Account>> {
    let c_name = CString::new(name).map_err(|_| io::Error::other("a user name holds no NUL"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is valid (null pointers, zero ids);
        // getpwnam_r fills it with pointers into `buf`, which outlives
        // every use of them below.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, `buf.len()` is
        // the size of the buffer it points to.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if found.is_null() {
            return Ok(None);
        }
        let home = if entry.pw_dir.is_null() {
            "/".to_owned()
        } else {
            // SAFETY: getpwnam_r set pw_dir to a NUL-terminated string
            // in `buf`.
            unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) }
                .to_string_lossy()
                .into_owned()
        };
        return Ok(Some(Account {
            name: name.to_owned(),
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home,
        }));
    }
}

/// How to start the command: built once from the options.
#[derive(Clone, Debug)]
pub struct Launcher {
    config: ExecConfig,
    account: Option<Account>,
}

impl Launcher {
    /// A launcher for `config`'s command, run as `account` if set.
    pub fn new(config: ExecConfig, account: Option<Account>) -> Self {
        Launcher { config, account }
    }

    /// Starts the command in a process group of its own, with its output
    /// piped. The caller owns the group from now on: [`Group`].
    pub fn spawn(&self) -> Result<(Child, Group), CollectorError> {
        let (program, args) = self
            .config
            .command
            .split_first()
            .ok_or_else(|| CollectorError::option("command", "empty"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // The group is killed by `Group`; this also covers a panic
            // between spawn and the guard.
            .kill_on_drop(true);
        if let Some(account) = &self.account {
            account.check_switch()?;
            command
                .uid(account.uid)
                .gid(account.gid)
                .env("USER", &account.name)
                .env("LOGNAME", &account.name)
                .env("HOME", &account.home);
        }
        command.envs(&self.config.env);
        if let Some(dir) = &self.config.working_dir {
            command.current_dir(dir);
        }
        // SAFETY: the closure runs in the child between fork and exec and
        // makes one system call, which is async-signal-safe, and touches no
        // memory of the parent.
        unsafe {
            command.pre_exec(|| {
                mark_descriptors_close_on_exec();
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| {
            let what = match e.kind() {
                io::ErrorKind::NotFound => format!(
                    "cannot start {}: {e} (is the program installed, and in the agent's PATH when not an absolute path?)",
                    self.config.display()
                ),
                io::ErrorKind::PermissionDenied => format!(
                    "cannot start {}: {e} (is it executable by the user the command runs as?)",
                    self.config.display()
                ),
                _ => format!("cannot start {}: {e}", self.config.display()),
            };
            CollectorError::config(what)
        })?;
        let group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
        Ok((child, group))
    }

    /// The command for messages.
    pub fn display(&self) -> String {
        self.config.display()
    }
}

/// Marks every descriptor above standard error close-on-exec in the child:
/// the agent opens its own with `O_CLOEXEC` already, this also covers one a
/// library opened without. Marking rather than closing keeps the
/// descriptor through which the standard library learns that exec failed.
/// Kernels before 5.11 lack the flag: there, `O_CLOEXEC` alone applies.
fn mark_descriptors_close_on_exec() {
    // SAFETY: close_range(2) with flags only changes descriptor flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// A command's process group; killed (SIGKILL, the whole group) when
/// dropped, so a run abandoned at its timeout, or a collector dropped by a
/// reload or a stop, leaves no process behind.
///
/// The group's id is the command's pid, which the kernel does not give to
/// another process while the group has a member; once the group is empty a
/// kill finds nothing (`ESRCH`). Pids are handed out in increasing order,
/// so the id being reused by a new group in the moment between the last
/// member's exit and the kill would take the whole pid space to wrap.
#[derive(Debug)]
pub struct Group(Option<i32>);

impl Group {
    /// Sends `signal` to every process of the group; true when there was
    /// one to send it to.
    pub fn signal(&self, signal: i32) -> bool {
        match self.0 {
            // SAFETY: kill(2) with a negative pid signals the group; the
            // group is the command's own, never the agent's (pid > 1).
            Some(pgid) if pgid > 1 => unsafe { libc::kill(-pgid, signal) == 0 },
            _ => false,
        }
    }

    /// Kills every process of the group.
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}
