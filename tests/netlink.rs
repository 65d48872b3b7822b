//! The uevent sources against the real kernel, each test inside a private network
//! namespace so nothing it does reaches the host's network.
//!
//! Each test body runs on a thread of its own that first calls
//! `unshare(CLONE_NEWNET)`: only that thread (and the `ip` processes and threads it
//! starts, which inherit its namespaces) moves, so the test binary's other tests are
//! untouched and the namespace vanishes with the thread. Creating a veth pair there
//! makes the kernel emit genuine `add@/devices/virtual/net/...` uevents with sender
//! portid 0, and root there may also send forged ones — exactly what the sources must
//! tell apart (KERNEL.md, "Uevents on the wire").
//!
//! Tests skip with a printed reason when not root, when `ip` is missing, or when the
//! namespace cannot be made; they never fall back to the host's namespace.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hbad::uevent::kernel::{KernelOptions, KernelSource};
use hbad::uevent::{Action, Rejection, SourceItem, Uevent};
use netlink_sys::protocols::NETLINK_KOBJECT_UEVENT;
use netlink_sys::{Socket, SocketAddr};

/// Runs `body` on a fresh thread moved into a new network namespace, or prints why
/// it cannot and returns. Panics in `body` fail the test.
fn in_private_netns(test: &str, body: impl FnOnce() + Send + 'static) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping {test}: needs root (a network namespace and veth pairs)");
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        println!("skipping {test}: `ip` (iproute2) is not installed");
        return;
    }
    let thread = std::thread::spawn(move || -> Result<(), String> {
        let host = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        // SAFETY: unshare(CLONE_NEWNET) only changes which network namespace this
        // thread belongs to; it touches no memory of ours.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET) failed: {}",
                io::Error::last_os_error()
            ));
        }
        let mine = std::fs::read_link("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
        if mine == host {
            return Err("the thread is still in the host's network namespace".into());
        }
        body();
        Ok(())
    });
    match thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => println!("skipping {test}: {reason}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `ip` with these arguments (in the caller's namespace) and insists it worked.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Feeds `ip -batch -` one command per line: one process for many links, so the
/// kernel emits events faster than a reader that is not reading.
fn ip_batch(lines: &[String]) {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ip -batch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip -batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bound on how long a test waits for something the kernel does synchronously: a
/// safety net against hanging forever, not a timing assertion.
fn recv_timeout(fd: &impl AsFd, timeout: Duration) {
    use nix::sys::socket::{setsockopt, sockopt};
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as _, 0);
    setsockopt(fd, sockopt::ReceiveTimeout, &tv).unwrap();
}

fn set_nonblocking(fd: &impl AsRawFd, on: bool) {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own, with flag arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert!(flags >= 0);
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags), 0);
    }
}

fn is_link_add(ev: &Uevent, name: &str) -> bool {
    ev.action == Action::Add && ev.subsystem == "net" && ev.prop("INTERFACE") == Some(name)
}

/// Receives until an event matching `want` arrives; other events (the host's
/// non-network uevents also reach a private namespace) are passed over. Anything
/// else is returned to the caller's check through `other`.
fn wait_for_event(
    source: &mut KernelSource,
    mut want: impl FnMut(&Uevent) -> bool,
    mut other: impl FnMut(SourceItem),
) -> Uevent {
    loop {
        match source.recv() {
            Ok(SourceItem::Event(ev)) if want(&ev) => return ev,
            Ok(SourceItem::Event(_)) => {}
            Ok(item) => other(item),
            Err(e) => panic!("no matching event before the receive timeout: {e}"),
        }
    }
}

#[test]
fn netns_kernel_source_receives_a_genuine_veth_add() {
    in_private_netns("netns_kernel_source_receives_a_genuine_veth_add", || {
        let mut source = KernelSource::open(&KernelOptions::default()).unwrap();
        recv_timeout(&source, Duration::from_secs(10));
        ip(&[
            "link", "add", "hbk0", "type", "veth", "peer", "name", "hbk1",
        ]);
        // The pair lives in the private namespace only: the host's sysfs view
        // (tagged by the host namespace) does not show it.
        assert!(!Path::new("/sys/class/net/hbk0").exists());

        let ev = wait_for_event(
            &mut source,
            |ev| is_link_add(ev, "hbk0"),
            |item| panic!("unexpected {item:?}"),
        );
        assert_eq!(ev.devpath, "/devices/virtual/net/hbk0");
        assert!(ev.seqnum.is_some(), "kernel events carry SEQNUM: {ev:?}");
        assert!(ev.prop("IFINDEX").is_some(), "{ev:?}");

        let counts = source.counters().snapshot();
        assert!(counts.events >= 1);
        assert_eq!(counts.rejected(), 0);
        assert_eq!(counts.overflows, 0);
    });
}

#[test]
fn netns_kernel_source_drops_and_counts_a_message_forged_by_root() {
    in_private_netns(
        "netns_kernel_source_drops_and_counts_a_message_forged_by_root",
        || {
            let mut source = KernelSource::open(&KernelOptions::default()).unwrap();
            recv_timeout(&source, Duration::from_secs(10));

            // Root's own netlink socket, sending a perfectly formed uevent to group 1:
            // the kernel delivers it, with the forger's portid as the sender.
            let mut forger = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
            let forger_addr = forger.bind_auto().unwrap();
            assert_ne!(forger_addr.port_number(), 0);
            let mut fake = Uevent::new(
                Action::Change,
                "/devices/pseudo_0/adapter0/host2/target2:0:0/2:0:0:0",
                "scsi",
            )
            .with_devtype("scsi_device")
            .with_prop("SDEV_UA", "REPORTED_LUNS_DATA_HAS_CHANGED");
            fake.seqnum = Some(1);
            forger
                .send_to(&fake.to_kernel_bytes(), &SocketAddr::new(0, 1), 0)
                .unwrap();

            // Then a genuine event, to show the socket goes on after a rejection.
            ip(&[
                "link", "add", "hbf0", "type", "veth", "peer", "name", "hbf1",
            ]);
            let mut rejected = Vec::new();
            wait_for_event(
                &mut source,
                |ev| {
                    assert_ne!(ev, &fake, "a forged event was accepted");
                    is_link_add(ev, "hbf0")
                },
                |item| rejected.push(item),
            );
            assert_eq!(
                rejected,
                [SourceItem::Rejected(Rejection::NotKernel(
                    forger_addr.port_number()
                ))]
            );
            let counts = source.counters().snapshot();
            assert_eq!(counts.rejected_not_kernel, 1);
            assert_eq!(counts.rejected(), 1);
        },
    );
}

#[test]
fn netns_kernel_source_reports_overflow_and_keeps_receiving() {
    in_private_netns(
        "netns_kernel_source_reports_overflow_and_keeps_receiving",
        || {
            // Asking for nothing gets the kernel's minimum (a few KiB): a handful of
            // uevents fill it.
            let mut source = KernelSource::open(&KernelOptions { recv_buffer: 0 }).unwrap();
            assert!(
                source.recv_buffer().effective < 64 * 1024,
                "{:?}",
                source.recv_buffer()
            );
            // Flood without reading: every veth pair is several uevents (two links
            // and their rx/tx queues), all broadcast before `ip` returns.
            let adds: Vec<String> = (0..40)
                .map(|i| format!("link add hbo{i} type veth peer name hbp{i}"))
                .collect();
            ip_batch(&adds);

            // Everything the kernel will queue is queued now; drain without blocking.
            set_nonblocking(&source, true);
            let mut items = Vec::new();
            loop {
                match source.recv() {
                    Ok(item) => items.push(item),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("receive failed instead of reporting loss: {e}"),
                }
            }
            let overflows = items.iter().filter(|i| **i == SourceItem::Overflow).count();
            let events = items
                .iter()
                .filter(|i| matches!(i, SourceItem::Event(_)))
                .count();
            assert!(overflows >= 1, "no overflow reported in {items:?}");
            // Fewer events than were sent: 40 pairs make at least 80 link adds.
            assert!(events < 80, "{events} events: nothing was lost?");
            assert_eq!(source.counters().snapshot().overflows, overflows as u64);

            // The socket is not dead: the next genuine event arrives whole. It has
            // to be a single uevent — a new veth pair would overflow this tiny buffer
            // again — so rename a link: one `move` with DEVPATH_OLD.
            set_nonblocking(&source, false);
            recv_timeout(&source, Duration::from_secs(10));
            ip(&["link", "set", "dev", "hbo5", "name", "hbr5"]);
            let ev = wait_for_event(
                &mut source,
                |ev| ev.subsystem == "net" && ev.prop("INTERFACE") == Some("hbr5"),
                |item| panic!("unexpected {item:?}"),
            );
            assert_eq!(ev.action, Action::Move);
            assert_eq!(ev.devpath, "/devices/virtual/net/hbr5");
            assert_eq!(ev.prop("DEVPATH_OLD"), Some("/devices/virtual/net/hbo5"));
        },
    );
}

/// Receive throughput of the kernel source: the kernel queues a flood of genuine
/// uevents into a 128 MiB buffer while nobody reads, then the source drains it.
/// Run with `cargo test --release --test netlink -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check: run by hand with --ignored --nocapture"]
fn netns_kernel_source_drain_throughput() {
    in_private_netns("netns_kernel_source_drain_throughput", || {
        let pairs = 1000;
        let mut source = KernelSource::open(&KernelOptions::default()).unwrap();
        println!("receive buffer: {:?}", source.recv_buffer());
        let adds: Vec<String> = (0..pairs)
            .map(|i| format!("link add hbt{i} type veth peer name hbu{i}"))
            .collect();
        let dels: Vec<String> = (0..pairs).map(|i| format!("link del hbt{i}")).collect();
        let start = Instant::now();
        ip_batch(&adds);
        ip_batch(&dels);
        let produce = start.elapsed();

        set_nonblocking(&source, true);
        let start = Instant::now();
        let mut bytes = 0usize;
        loop {
            match source.recv() {
                Ok(SourceItem::Event(ev)) => bytes += ev.to_kernel_bytes().len(),
                Ok(item) => panic!("unexpected {item:?} with a 128 MiB buffer"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let drain = start.elapsed();
        let counts = source.counters().snapshot();
        println!(
            "kernel produced {} uevents ({} KiB) for {pairs} veth pairs added and deleted in {:.2?} ({:.0} events/s)",
            counts.events,
            bytes / 1024,
            produce,
            counts.events as f64 / produce.as_secs_f64()
        );
        println!(
            "KernelSource drained {} events in {:.2?}: {:.0} events/s (recvfrom + portid check + parse)",
            counts.events,
            drain,
            counts.events as f64 / drain.as_secs_f64()
        );
        assert_eq!(counts.overflows, 0);
    });
}
