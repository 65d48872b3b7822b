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

mod common;

use hbad::uevent::fc_event::{
    FcEvent, FcEventCode, FcEventSource, FcItem, FcRejection, DEFAULT_FC_RECV_BUFFER,
    FC_EVENTS_BIND_MASK, NETLINK_SCSITRANSPORT,
};
use hbad::uevent::kernel::{AsyncKernelSource, KernelOptions, KernelSource};
use hbad::uevent::source::{EventSource, ReplaySource};
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

/// Root forges FC transport events (well formed, then with a lying length) on the
/// FC event group: the source rejects both as not from the kernel, counts them, and
/// keeps its socket. The kernel's own events need an FC driver (the VM tier).
#[test]
fn netns_fc_event_source_drops_and_counts_forged_link_events() {
    in_private_netns(
        "netns_fc_event_source_drops_and_counts_forged_link_events",
        || {
            let mut source = match FcEventSource::open(DEFAULT_FC_RECV_BUFFER) {
                Ok(s) => s,
                Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {
                    println!("skipping: this kernel has no SCSI netlink (scsi_mod not loaded)");
                    return;
                }
                Err(e) => panic!("open the FC event socket: {e}"),
            };
            recv_timeout(&source, Duration::from_secs(10));
            let mut forger = Socket::new(NETLINK_SCSITRANSPORT).unwrap();
            let forger_port = forger.bind_auto().unwrap().port_number();
            assert_ne!(forger_port, 0);
            let linkup = FcEvent::new(3, FcEventCode::LinkUp, 1, 0).to_bytes();
            let mut lying = FcEvent::new(3, FcEventCode::LinkDown, 2, 0).to_bytes();
            lying[0..4].copy_from_slice(&4096u32.to_ne_bytes());
            let to_group = SocketAddr::new(0, FC_EVENTS_BIND_MASK);
            forger.send_to(&linkup, &to_group, 0).unwrap();
            forger.send_to(&lying, &to_group, 0).unwrap();
            for _ in 0..2 {
                assert_eq!(
                    source.recv().unwrap(),
                    FcItem::Rejected(FcRejection::NotKernel(forger_port))
                );
            }
            let counts = source.counters().snapshot();
            assert_eq!((counts.received, counts.events), (2, 0));
            assert_eq!(counts.rejected_not_kernel, 2);
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
            // One loss, reported once, after the events that were queued before it:
            // the source emptied the queue (which re-arms the kernel's delivery) before
            // saying Overflow, so nothing after it can have been dropped silently.
            assert_eq!(overflows, 1, "{items:?}");
            assert_eq!(items.last(), Some(&SourceItem::Overflow), "{items:?}");
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

#[test]
fn netns_async_kernel_source_serves_the_daemon_loop() {
    in_private_netns("netns_async_kernel_source_serves_the_daemon_loop", || {
        let rt = runtime();
        rt.block_on(async {
            let kernel = AsyncKernelSource::open(&KernelOptions::default()).unwrap();
            let counters = kernel.counters();
            let mut source = EventSource::Kernel(kernel);

            let mut forger = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
            let forger_port = forger.bind_auto().unwrap().port_number();
            let fake = Uevent::new(Action::Add, "/devices/virtual/net/hba0", "net")
                .with_prop("INTERFACE", "hba0");
            forger
                .send_to(&fake.to_kernel_bytes(), &SocketAddr::new(0, 1), 0)
                .unwrap();
            ip(&[
                "link", "add", "hba0", "type", "veth", "peer", "name", "hba1",
            ]);

            let mut rejected = Vec::new();
            loop {
                let item = tokio::time::timeout(Duration::from_secs(10), source.next())
                    .await
                    .expect("no event within 10 s")
                    .expect("the kernel source never ends")
                    .unwrap();
                match item {
                    SourceItem::Event(ev) if is_link_add(&ev, "hba0") => {
                        // The genuine one carries what the forged one lacked.
                        assert!(ev.seqnum.is_some() && ev.prop("IFINDEX").is_some());
                        break;
                    }
                    SourceItem::Event(_) => {}
                    other => rejected.push(other),
                }
            }
            assert_eq!(
                rejected,
                [SourceItem::Rejected(Rejection::NotKernel(forger_port))]
            );
            assert_eq!(counters.snapshot().rejected_not_kernel, 1);
        });
    });
}

#[test]
fn async_kernel_source_outside_a_runtime_is_an_error_not_a_panic() {
    // Binding to group 1 needs no privilege (the kernel lets anyone listen).
    let err = AsyncKernelSource::open(&KernelOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[test]
fn replay_source_yields_every_event_of_the_kernel_capture_in_order() {
    let path = common::kernel_capture().join("events.bin");
    let want = hbad::uevent::replay::read_file(&path).unwrap();
    let source = ReplaySource::open(&path).unwrap();
    let counters = source.counters();
    let got: Vec<Uevent> = source
        .map(|item| match item.unwrap() {
            SourceItem::Event(ev) => ev,
            other => panic!("the capture holds only kernel events, got {other:?}"),
        })
        .collect();
    assert_eq!(got, want);
    assert!(got.len() > 50, "{} events", got.len());
    let seqnums: Vec<u64> = got.iter().map(|e| e.seqnum.unwrap()).collect();
    assert!(
        seqnums.windows(2).all(|w| w[0] < w[1]),
        "SEQNUM out of order"
    );
    assert_eq!(counters.snapshot().events, got.len() as u64);
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
        let mut events = Vec::with_capacity(pairs * 20);
        loop {
            match source.recv() {
                Ok(SourceItem::Event(ev)) => events.push(ev),
                Ok(item) => panic!("unexpected {item:?} with a 128 MiB buffer"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let drain = start.elapsed();
        let bytes: usize = events.iter().map(|e| e.to_kernel_bytes().len()).sum();
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

// ---------------------------------------------------------------------------------
// The udev source. There is no udevd here, so these tests play udevd: root in the
// private namespace sends libudev-format messages to group 2, which is what udevd
// does after running its rules. libudev listens on group 2 only when udevd's control
// socket exists or /dev is devtmpfs; otherwise the tests skip.

use hbad::uevent::udev::{UdevEvents, UdevOptions, UdevSource};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, NetlinkAddr, UnixCredentials};

/// udevd's multicast group, as a bitmask.
const UDEV_GROUP_MASK: u32 = 1 << 1;

/// Whether libudev will join group 2 at all (systemd's `device_monitor_new_full`).
fn libudev_listens() -> bool {
    Path::new("/run/udev/control").exists()
        || std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| {
                m.lines().any(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    f.get(4) == Some(&"/dev") && l.contains(" - devtmpfs ")
                })
            })
            .unwrap_or(false)
}

/// MurmurHash2 with seed 0, as libudev hashes subsystem and devtype for its
/// in-kernel (BPF) filter.
fn murmur2(s: &str) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let data = s.as_bytes();
    let mut h = data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate() {
            h ^= (*b as u32) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// A message as udevd sends it: the 40-byte libudev header, then KEY=VALUE\0...
fn udev_message(props: &[(&str, &str)]) -> Vec<u8> {
    let get = |key: &str| props.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let mut body = Vec::new();
    for (k, v) in props {
        body.extend_from_slice(format!("{k}={v}\0").as_bytes());
    }
    let mut m = Vec::new();
    m.extend_from_slice(b"libudev\0");
    m.extend_from_slice(&0xfeed_cafe_u32.to_be_bytes());
    m.extend_from_slice(&40u32.to_ne_bytes()); // header_size
    m.extend_from_slice(&40u32.to_ne_bytes()); // properties_off
    m.extend_from_slice(&(body.len() as u32).to_ne_bytes());
    m.extend_from_slice(&murmur2(get("SUBSYSTEM").unwrap()).to_be_bytes());
    m.extend_from_slice(&get("DEVTYPE").map(murmur2).unwrap_or(0).to_be_bytes());
    m.extend_from_slice(&[0; 8]); // tag bloom filter: no tags
    m.extend_from_slice(&body);
    m
}

/// Root pretending to be udevd. With `as_uid`, the credentials attached to the
/// message claim another user (root may do that), as a non-root sender would show.
fn send_as_udevd(sender: &Socket, message: &[u8], as_uid: Option<u32>) {
    let iov = [io::IoSlice::new(message)];
    let to = NetlinkAddr::new(0, UDEV_GROUP_MASK);
    let creds;
    let mut cmsgs = Vec::new();
    if let Some(uid) = as_uid {
        creds = UnixCredentials::from(libc::ucred {
            pid: std::process::id() as libc::pid_t,
            uid,
            gid: uid,
        });
        cmsgs.push(ControlMessage::ScmCredentials(&creds));
    }
    sendmsg(
        sender.as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::empty(),
        Some(&to),
    )
    .unwrap();
}

fn scsi_host_add(host: u32, seqnum: u64) -> Vec<u8> {
    let devpath = format!("/devices/pseudo_0/adapter0/host{host}");
    udev_message(&[
        ("ACTION", "add"),
        ("DEVPATH", &devpath),
        ("SUBSYSTEM", "scsi"),
        ("DEVTYPE", "scsi_host"),
        ("SEQNUM", &seqnum.to_string()),
    ])
}

/// Awaits the next item from the udev channel, with a safety bound.
fn next_udev(rt: &tokio::runtime::Runtime, events: &mut UdevEvents) -> SourceItem {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("nothing from the udev source within 10 s")
            .expect("udev channel closed")
            .expect("udev monitor failed")
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn udev_sender() -> Socket {
    let mut sender = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
    sender.bind_auto().unwrap();
    sender
}

#[test]
fn udev_source_starts_and_shuts_down_cleanly() {
    // Listening needs no privilege and sends nothing, so this runs anywhere; with no
    // udevd (and /dev not devtmpfs) libudev joins no group and the source is silent.
    let (source, events) = UdevSource::spawn(UdevOptions::default()).unwrap();
    let rb = source.recv_buffer();
    assert!(rb.effective > 0, "{rb:?}");
    source.shutdown().unwrap();
    // The thread is gone, so the channel ends (after anything already queued).
    for item in events {
        item.unwrap();
    }
}

#[test]
fn udev_source_that_cannot_start_says_why() {
    let err = UdevSource::spawn(UdevOptions {
        subsystems: vec!["sc\0si".into()],
        ..UdevOptions::default()
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}

#[test]
fn netns_udev_source_delivers_owned_events_and_relies_on_libudev_checks() {
    if !libudev_listens() {
        println!(
            "skipping: no udevd control socket and /dev is not devtmpfs, so libudev joins no group"
        );
        return;
    }
    in_private_netns(
        "netns_udev_source_delivers_owned_events_and_relies_on_libudev_checks",
        || {
            let rt = runtime();
            let (source, mut events) = UdevSource::spawn(UdevOptions::default()).unwrap();
            let sender = udev_sender();
            let links = "/dev/disk/by-path/pci-0000:00:01.0-fc-0x500a0981891b8dc5-lun-3 \
                         /dev/disk/by-id/wwn-0x600a098038304437";
            let disk = udev_message(&[
                ("ACTION", "add"),
                (
                    "DEVPATH",
                    "/devices/pci0000:00/0000:00:01.0/host4/rport-4:0-1/target4:0:0/4:0:0:3/block/sdc",
                ),
                ("SUBSYSTEM", "block"),
                ("DEVTYPE", "disk"),
                ("DEVNAME", "/dev/sdc"),
                ("MAJOR", "8"),
                ("MINOR", "32"),
                ("ID_WWN", "0x600a098038304437"),
                ("DEVLINKS", links),
                ("SEQNUM", "4711"),
            ]);
            send_as_udevd(&sender, &disk, None);
            // Not a subsystem we asked for: the BPF filter drops it in the kernel.
            send_as_udevd(
                &sender,
                &udev_message(&[
                    ("ACTION", "add"),
                    ("DEVPATH", "/devices/virtual/net/hbx0"),
                    ("SUBSYSTEM", "net"),
                    ("INTERFACE", "hbx0"),
                    ("SEQNUM", "4712"),
                ]),
                None,
            );
            // Claims to come from uid 65534: libudev must drop it (CVE-2009-1185).
            send_as_udevd(&sender, &scsi_host_add(66, 4713), Some(65534));
            // A sentinel: whatever arrives before it is all that got through.
            send_as_udevd(&sender, &scsi_host_add(7, 4714), None);

            let SourceItem::Event(ev) = next_udev(&rt, &mut events) else {
                panic!("expected the disk event first")
            };
            assert_eq!(ev.action, Action::Add);
            assert_eq!(ev.subsystem, "block");
            assert_eq!(ev.devtype.as_deref(), Some("disk"));
            assert_eq!(ev.seqnum, Some(4711));
            assert!(ev.devpath.ends_with("/4:0:0:3/block/sdc"), "{}", ev.devpath);
            assert_eq!(ev.prop("DEVNAME"), Some("/dev/sdc"));
            assert_eq!(ev.prop("ID_WWN"), Some("0x600a098038304437"));
            // libudev keeps links as a set: compare them as one.
            let mut got: Vec<&str> = ev.prop("DEVLINKS").unwrap().split(' ').collect();
            let mut want: Vec<&str> = links.split_whitespace().collect();
            got.sort();
            want.sort();
            assert_eq!(got, want);

            let SourceItem::Event(ev) = next_udev(&rt, &mut events) else {
                panic!("expected the sentinel")
            };
            assert_eq!(
                (ev.devpath.as_str(), ev.seqnum),
                ("/devices/pseudo_0/adapter0/host7", Some(4714)),
                "the net event or the non-root one got through"
            );
            let counts = source.counters().snapshot();
            assert_eq!((counts.events, counts.rejected()), (2, 0));
            source.shutdown().unwrap();
        },
    );
}

#[test]
fn netns_udev_source_reports_overflow_and_shuts_down_behind_a_full_channel() {
    if !libudev_listens() {
        println!(
            "skipping: no udevd control socket and /dev is not devtmpfs, so libudev joins no group"
        );
        return;
    }
    in_private_netns(
        "netns_udev_source_reports_overflow_and_shuts_down_behind_a_full_channel",
        || {
            let rt = runtime();
            // A one-item channel and the smallest socket buffer: while nobody reads the
            // channel the thread stops reading the socket, which then overflows.
            let (source, mut events) = UdevSource::spawn(UdevOptions {
                recv_buffer: 0,
                channel_capacity: 1,
                ..UdevOptions::default()
            })
            .unwrap();
            let sender = udev_sender();
            for i in 0..50 {
                send_as_udevd(&sender, &scsi_host_add(10 + i, 100 + i as u64), None);
            }
            let mut seen = Vec::new();
            loop {
                let item = next_udev(&rt, &mut events);
                let overflow = item == SourceItem::Overflow;
                seen.push(item);
                if overflow {
                    break;
                }
                assert!(seen.len() < 50, "50 events and no overflow: {seen:?}");
            }
            assert_eq!(source.counters().snapshot().overflows, 1);

            // Receiving goes on: drain what survived, then new events arrive. After an
            // overrun the kernel drops broadcasts to the socket, silently, until a
            // receive finds its queue empty; a marker sent before the monitor thread
            // has emptied it is lost with no second report. So markers are sent until
            // one comes through (bounded), which is what "goes on" means.
            while events.try_recv().is_some() {}
            let mut arrived = false;
            'markers: for i in 0..50u64 {
                send_as_udevd(&sender, &scsi_host_add(99, 900 + i), None);
                let deadline = std::time::Instant::now() + Duration::from_millis(200);
                while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                    let item = rt.block_on(async {
                        tokio::time::timeout(left, events.recv())
                            .await
                            .ok()
                            .flatten()
                    });
                    match item {
                        Some(Ok(SourceItem::Event(ev))) if ev.seqnum >= Some(900) => {
                            arrived = true;
                            break 'markers;
                        }
                        Some(Ok(SourceItem::Event(_))) | Some(Ok(SourceItem::Overflow)) => {}
                        Some(other) => panic!("unexpected {other:?}"),
                        None => break,
                    }
                }
            }
            assert!(arrived, "no event got through after the overflow");

            // Fill the channel again and stop while the thread waits on it: shutdown
            // must not hang behind a consumer that stopped reading.
            for i in 0..5 {
                send_as_udevd(&sender, &scsi_host_add(200 + i, 2000 + i as u64), None);
            }
            source.shutdown().unwrap();
            drop(events);
        },
    );
}
