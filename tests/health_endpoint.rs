//! The health endpoint of the real binary under clients that misbehave.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::agent::{rss_kib, AgentProcess, FakeProc};

#[test]
fn many_slow_clients_do_not_make_the_agent_hold_memory() {
    const CLIENTS: usize = 1500;
    let proc = FakeProc::new(0);
    let agent = AgentProcess::start(&format!(
        r#"
[agent]
hostname = "health"
interval = 1
splay = 0
proc_root = "{}"
health_listen = "{}"

[collector.memory]

[output.stdout]
"#,
        proc.root().display(),
        AgentProcess::HEALTH
    ));
    assert!(
        agent.wait_for(Duration::from_secs(10), |a| a.try_health().is_some()),
        "the health endpoint never answered:\n{}",
        agent.stderr()
    );
    let before = rss_kib(agent.pid());

    // Slow clients: each sends half a request and waits.
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", agent.health_port)) else {
            continue;
        };
        let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n");
        clients.push(c);
    }
    assert!(
        clients.len() >= CLIENTS / 2,
        "{} clients connected",
        clients.len()
    );
    std::thread::sleep(Duration::from_secs(1));
    let during = rss_kib(agent.pid());
    drop(clients);
    std::thread::sleep(Duration::from_millis(500));

    let (status, body) = agent.health();
    assert!(status == 200 || status == 500, "{status}: {body}");
    assert!(body.contains("collector memory"), "{body}");
    let grown = during.saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "resident memory grew by {grown} KiB ({before} → {during}) for {CLIENTS} idle clients"
    );
    assert!(
        agent
            .stderr()
            .contains("connections at once; closing the extra ones"),
        "the refusal is logged"
    );
}
