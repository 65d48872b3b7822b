//! The daemon's messages to systemd, received on a test NOTIFY_SOCKET.
//! (Its own test binary: it sets process environment variables.)

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use hbad::daemon::notify;

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn ready_reloading_and_watchdog_follow_the_notify_reload_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &path);

    notify::ready("2/2 vHBAs active, 6 hosts watched");
    assert_eq!(
        recv(&sock),
        "READY=1\nSTATUS=2/2 vHBAs active, 6 hosts watched\n"
    );

    notify::reloading();
    let msg = recv(&sock);
    let mut lines = msg.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"));
    let usec = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC follows RELOADING=1");
    assert!(usec.parse::<u64>().unwrap() > 0);

    notify::watchdog();
    assert_eq!(recv(&sock), "WATCHDOG=1\n");

    // Half of WATCHDOG_USEC, and only for this process.
    std::env::set_var("WATCHDOG_USEC", "20000000");
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    assert_eq!(notify::watchdog_interval(), Some(Duration::from_secs(10)));
    std::env::set_var("WATCHDOG_PID", "1");
    assert_eq!(notify::watchdog_interval(), None);
}
