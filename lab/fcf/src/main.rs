//! hbad-lab-fcf: a small FCoE Forwarder for hbad's real-kernel lab. It plays the FC
//! switch between the guest's FCoE ports (one veth end each), so that the kernel's
//! fcoe/libfc initiators and the LIO tcm_fc target run in Fabric mode: FLOGI, NPIV
//! FDISC, name server, RSCN, zoning. Everything a scenario changes at run time goes
//! through the control socket.
//!
//!   hbad-lab-fcf serve [--fabric-name WWN] [--switch-name WWN] [--mac MAC] [--domain N]
//!                      [--fka-ms MS] [--control PATH] [--init FILE] IFACE...
//!   hbad-lab-fcf ctl PATH REQUEST...
//!   hbad-lab-fcf fc-event [--shape well-formed|truncated|oversized] [--group N]
//!                         [--num N] HOST_NO CODE
//!
//! One thread, one poll loop, raw AF_PACKET sockets: it must run in a busybox guest.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hbad_lab_fcf::control;
use hbad_lab_fcf::fabric::{self, Config, Fabric, Out};
use hbad_lab_fcf::fip::FcfIdentity;
use hbad_lab_fcf::wire::{Mac, ETH_P_FCOE, ETH_P_FIP};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => Options::parse(&args[1..]).and_then(serve),
        Some("ctl") => client(&args[1..]),
        Some("fc-event") => forge_fc_event(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hbad-lab-fcf: {e}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: hbad-lab-fcf serve [--fabric-name WWN] [--switch-name WWN] [--mac MAC] \
[--domain N] [--fka-ms MS] [--control PATH] [--init FILE] IFACE...\n       hbad-lab-fcf ctl PATH REQUEST...\n       \
hbad-lab-fcf fc-event [--shape well-formed|truncated|oversized] [--group N] [--num N] HOST_NO CODE";

/// Sends one forged FC transport event to the FC event group, as root can, and
/// says which portid it came from (what a listener sees as its sender).
fn forge_fc_event(args: &[String]) -> Result<ExitCode, String> {
    use hbad_lab_fcf::fc_event::{self, Shape};
    let (mut shape, mut group, mut num) = (Shape::WellFormed, fc_event::FC_EVENTS_GROUP, 1u32);
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--shape" => shape = Shape::parse(value()?)?,
            "--group" => {
                let v = value()?;
                group = v.parse().map_err(|_| format!("--group {v}: a number"))?;
            }
            "--num" => {
                let v = value()?;
                num = v.parse().map_err(|_| format!("--num {v}: a number"))?;
            }
            _ => positional.push(arg.as_str()),
        }
    }
    let [host, code] = positional[..] else {
        return Err(USAGE.to_owned());
    };
    let host_no: u16 = host
        .trim_start_matches("host")
        .parse()
        .map_err(|_| format!("host {host:?}: hostN or N (16 bits)"))?;
    let code = fc_event::parse_code(code)?;
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let datagram = fc_event::shaped(fc_event::event(host_no, code, num, seconds, 0), shape);
    let portid =
        fc_event::send(&datagram, group).map_err(|e| format!("send to group {group}: {e}"))?;
    println!(
        "sent {} bytes ({shape:?} event {code:#x} on host{host_no}) from portid {portid} to group {group}",
        datagram.len()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug)]
struct Options {
    identity: FcfIdentity,
    domain: u8,
    control: Option<PathBuf>,
    init: Option<PathBuf>,
    links: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut mac = Mac([0x02, 0xfc, 0xf0, 0, 0, 1]);
        let (mut fabric_name, mut switch_name) = (None, None);
        let (mut domain, mut fka_ms) = (1u8, 8000u32);
        let (mut control, mut init) = (None, None);
        let mut links = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--fabric-name" => fabric_name = Some(control::parse_wwpn(value()?)?),
                "--switch-name" => switch_name = Some(control::parse_wwpn(value()?)?),
                "--mac" => {
                    let v = value()?;
                    mac = Mac::parse(v)
                        .filter(|m| !m.is_multicast())
                        .ok_or(format!("--mac {v}: not a unicast MAC"))?;
                }
                "--domain" => {
                    let v = value()?;
                    domain = v
                        .parse()
                        .ok()
                        .filter(|d| (1..=0xef).contains(d))
                        .ok_or(format!("--domain {v}: 1..239"))?;
                }
                "--fka-ms" => {
                    let v = value()?;
                    fka_ms = v
                        .parse()
                        .ok()
                        .filter(|f| (250..=90_000).contains(f))
                        .ok_or(format!("--fka-ms {v}: 250..90000"))?;
                }
                "--control" => control = Some(PathBuf::from(value()?)),
                "--init" => init = Some(PathBuf::from(value()?)),
                s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
                link => links.push(link.to_owned()),
            }
        }
        if links.is_empty() {
            return Err(format!("no interface to serve\n{USAGE}"));
        }
        // Names derived from the FCF's MAC as fcoe derives a port's from its own.
        let low = u64::from_be_bytes([
            0, 0, mac.0[0], mac.0[1], mac.0[2], mac.0[3], mac.0[4], mac.0[5],
        ]);
        let identity = FcfIdentity {
            mac,
            switch_name: switch_name.unwrap_or(0x2000_0000_0000_0000 | low),
            fabric_name: fabric_name.unwrap_or(0x1000_0000_0000_0000 | low),
            fc_map: 0x0efc00,
            priority: 128,
            fka_ms,
        };
        Ok(Options {
            identity,
            domain,
            control,
            init,
            links,
        })
    }
}

/// One veth end: a raw socket per ethertype (FIP, FCoE), so the kernel hands us only
/// those and never the frames we send ourselves.
#[derive(Debug)]
struct Link {
    fip: OwnedFd,
    fcoe: OwnedFd,
}

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn packet_socket(ifindex: i32, ethertype: u16) -> Result<OwnedFd, String> {
    let proto = i32::from(ethertype.to_be());
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto,
        )
    };
    if fd < 0 {
        return Err(last_os_error("socket(AF_PACKET)"));
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ethertype.to_be();
    addr.sll_ifindex = ifindex;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_ll of the given length.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            len,
        )
    } < 0
    {
        return Err(last_os_error("bind(AF_PACKET)"));
    }
    // Promiscuous: frames for the ports' fabric-provided MACs are not the veth end's.
    // SAFETY: packet_mreq is plain data; zeroed is a valid value.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    let mlen = std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t;
    // SAFETY: mreq is a valid packet_mreq of the given length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            mlen,
        )
    };
    if rc < 0 {
        return Err(last_os_error("PACKET_ADD_MEMBERSHIP"));
    }
    Ok(fd)
}

impl Link {
    fn open(name: &str) -> Result<Link, String> {
        let cname = std::ffi::CString::new(name).map_err(|_| format!("interface name {name:?}"))?;
        // SAFETY: cname is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        let ifindex = i32::try_from(ifindex)
            .ok()
            .filter(|i| *i > 0)
            .ok_or(format!("no interface {name}"))?;
        let open = |t| packet_socket(ifindex, t).map_err(|e| format!("{name}: {e}"));
        Ok(Link {
            fip: open(ETH_P_FIP)?,
            fcoe: open(ETH_P_FCOE)?,
        })
    }

    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: frame is a valid buffer of frame.len() bytes.
        let n = unsafe { libc::send(self.fip.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Reads one datagram; None when there is none left.
fn recv(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: buf is a valid, writable buffer of buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
    usize::try_from(n).ok()
}

/// Seconds since boot: the clock the guest's scenarios print (/proc/uptime).
fn uptime() -> f64 {
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

struct Server {
    fabric: Fabric,
    links: Vec<Link>,
    tag: String,
}

impl Server {
    fn log(&mut self) {
        for e in self.fabric.events.drain(..) {
            eprintln!("fcf {} {:.3} {e}", self.tag, uptime());
        }
    }

    fn send(&mut self, out: Vec<Out>) {
        for o in out {
            if let Some(link) = self.links.get(o.link) {
                if let Err(e) = link.send(&o.frame) {
                    self.fabric
                        .events
                        .push(format!("send on link {}: {e}", o.link));
                }
            }
        }
        self.log();
    }

    /// One control connection: a request line, the answer, close. Bounded: a client
    /// that sends nothing for a second is dropped.
    fn control(&mut self, stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        let reader = BufReader::new(&stream);
        let answer = match reader
            .take(control::MAX_LINE as u64 + 1)
            .read_line(&mut line)
        {
            Ok(_) => match control::parse(&line) {
                Ok(cmd) => {
                    self.fabric.events.push(format!("control: {}", line.trim()));
                    let (answer, out) = self.fabric.control(cmd);
                    self.send(out);
                    answer
                }
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("error: reading the request: {e}"),
        };
        let mut stream = stream;
        let _ = stream.write_all(answer.as_bytes());
        if !answer.ends_with('\n') {
            let _ = stream.write_all(b"\n");
        }
    }
}

fn serve(opts: Options) -> Result<ExitCode, String> {
    let links = opts
        .links
        .iter()
        .map(|l| Link::open(l))
        .collect::<Result<Vec<_>, _>>()?;
    let tag = format!("{:016x}", opts.identity.fabric_name);
    let period = Duration::from_millis(u64::from(opts.identity.fka_ms));
    let mut server = Server {
        fabric: Fabric::new(
            Config {
                identity: opts.identity,
                domain: opts.domain,
            },
            opts.links.clone(),
        ),
        links,
        tag,
    };
    if let Some(init) = &opts.init {
        let text = std::fs::read_to_string(init).map_err(|e| format!("{}: {e}", init.display()))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let cmd =
                control::parse(line).map_err(|e| format!("{}:{}: {e}", init.display(), n + 1))?;
            let (answer, _) = server.fabric.control(cmd);
            if answer.starts_with("error") {
                return Err(format!("{}:{}: {answer}", init.display(), n + 1));
            }
        }
    }
    let listener = match &opts.control {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
            l.set_nonblocking(true)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Some(l)
        }
        None => None,
    };
    server.fabric.events.push(format!(
        "serving {} as switch {} (MAC {}, FKA {} ms)",
        opts.links.join(" "),
        fabric::wwn(opts.identity.switch_name),
        opts.identity.mac,
        opts.identity.fka_ms
    ));
    server.log();

    let mut buf = vec![0u8; 16 * 1024];
    let mut next_adv = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_adv {
            let adv = server.fabric.advertisements();
            server.send(adv);
            next_adv = now + period;
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2 * server.links.len() + 1);
        for l in &server.links {
            for fd in [&l.fip, &l.fcoe] {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if let Some(l) = &listener {
            fds.push(libc::pollfd {
                fd: l.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let wait = next_adv
            .saturating_duration_since(Instant::now())
            .as_millis();
        let timeout = i32::try_from(wait).unwrap_or(i32::MAX);
        // SAFETY: fds is a valid array of fds.len() pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        for (i, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            if i / 2 < server.links.len() {
                let link = i / 2;
                // Drain what is there; each frame may answer or forward.
                while let Some(len) = recv(p.fd, &mut buf) {
                    if len > buf.len() {
                        server.fabric.events.push(format!(
                            "dropped a {len}-byte frame (larger than the buffer)"
                        ));
                        continue;
                    }
                    let out = server.fabric.receive(link, &buf[..len]);
                    server.send(out);
                }
            } else if let Some(l) = &listener {
                while let Ok((stream, _)) = l.accept() {
                    server.control(stream);
                }
            }
        }
    }
}

/// `ctl PATH REQUEST...`: sends one request, prints the answer; exit 1 on an error.
fn client(args: &[String]) -> Result<ExitCode, String> {
    let [path, request @ ..] = args else {
        return Err(USAGE.to_owned());
    };
    if request.is_empty() {
        return Err(USAGE.to_owned());
    }
    let mut stream = UnixStream::connect(path).map_err(|e| format!("{path}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let line = format!("{}\n", request.join(" "));
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("{path}: {e}"))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("{path}: {e}"))?;
    print!("{answer}");
    Ok(if answer.starts_with("error") {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
