//! A notify socket that takes nothing more never holds up the caller (the event
//! loop): what it could not take is kept, in order, and sent with the next
//! watchdog ping. (Its own test binary: it sets NOTIFY_SOCKET for the process.)

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use hbad::daemon::notify;

fn drain(sock: &UnixDatagram) -> Vec<String> {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    out
}

#[test]
fn a_full_notify_socket_never_blocks_and_what_it_dropped_goes_with_the_next_ping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &path);

    // Nobody reads: the socket's queue fills. A blocking send would wait here for
    // ever; the guard turns that into a failure instead of a hung test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = 0u32;
        while notify::backlog() == 0 && sent < 1_000_000 {
            notify::status(&format!("busy {sent}"));
            sent += 1;
        }
        notify::ready("2/2 vHBAs active");
        let _ = tx.send(sent);
    });
    let sent = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a send to a full notify socket returned");
    assert!(
        notify::backlog() > 0,
        "the socket never filled after {sent} sends"
    );

    let before = drain(&sock);
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|m| m.starts_with("STATUS=busy")),
        "{before:?}"
    );
    // The socket takes again: the next ping sends what was kept first, in order.
    notify::watchdog();
    let after = drain(&sock);
    assert_eq!(notify::backlog(), 0);
    let n = after.len();
    assert!(n >= 2, "{after:?}");
    assert_eq!(after[n - 2], "READY=1\nSTATUS=2/2 vHBAs active\n");
    assert_eq!(after[n - 1], "WATCHDOG=1\n");
    // The status kept is the last one said, not every one.
    assert!(n <= 3, "{after:?}");
}
