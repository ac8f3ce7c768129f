//! Running the real `carat` binary.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// `carat` with no configuration from the environment.
pub fn carat() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_carat"));
    c.env_remove("CARAT_CONFIG").env_remove("RUST_LOG");
    c
}

/// `carat check-config -c <config>`, run to its end.
pub fn check_config(config: &Path) -> Output {
    carat()
        .arg("check-config")
        .arg("-c")
        .arg(config)
        .output()
        .expect("run carat check-config")
}

/// Waits for `child` to exit within `limit`, killing it and failing
/// otherwise.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("carat did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
