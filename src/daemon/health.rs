//! Is the agent healthy? The verdict `hbad status` turns into its exit status.
//!
//! A status file alone proves nothing: the agent may have died (or been killed -9)
//! after writing it, and its pid may since belong to another program, or to another
//! hbad. So the verdict needs the process too: the recorded pid must be alive, be
//! hbad (`/proc/PID/comm`), and have started when the status says the agent
//! started (a reused pid started later). Then the status's own content says
//! whether the agent is healthy or degraded, each problem named.
//!
//! Exit statuses: 0 healthy, 1 degraded, 3 not running. 0 and 3 mean what they
//! mean for LSB init scripts and `systemctl status`; an agent that died and left
//! its status file is 3 rather than LSB's 1, so that 1 can say "running, but
//! degraded", which LSB has no code for.
//!
//! Reading `/proc` is at the edge ([`read_process`]); [`assess`] is pure.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::status::Status;
use crate::files;

/// How far the process's start may lie after the status's `started` before the pid
/// is taken as reused: `started` is stamped a moment after exec, and /proc's start
/// time has the clock-tick resolution plus the boot-time rounding of `btime`.
const START_SLACK: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Healthy,
    Degraded,
    NotRunning,
}

impl Level {
    /// The LSB `status` exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Level::Healthy => 0,
            Level::Degraded => 1,
            Level::NotRunning => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub health: Level,
    /// Why the agent is degraded or not running, one line each; empty when healthy.
    pub problems: Vec<String>,
}

/// What `/proc` says about a pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// `/proc/PID/comm`: the executable's name, cut to 15 bytes by the kernel.
    pub comm: String,
    /// When it started (boot time plus its start in clock ticks), or why that is
    /// not known.
    pub started: Result<SystemTime, String>,
}

/// The most hbad reads of a `/proc` file: `comm` is 16 bytes and a process's
/// `stat` a few hundred; `/proc/stat` grows with CPUs and interrupts, and a
/// machine with thousands of CPUs stays well under this.
const PROC_FILE_MAX: u64 = 4 << 20;

/// The latest boot time taken from `btime`: the last second of year 9999, past
/// which no clock (nor humantime's RFC 3339) can show a date.
pub const BTIME_MAX: u64 = 253_402_300_799;

/// The most clock ticks after boot taken from a process's `starttime`: a century
/// at the kernel's highest USER_HZ (1000), far past any uptime.
pub const START_TICKS_MAX: u64 = 100 * 366 * 24 * 3600 * 1000;

/// The process with this pid, or `None` when there is none. `proc_root` is
/// `/proc` except in tests. Each file is read without blocking and to a bound:
/// in tests (`--proc-root`) any file can stand there.
pub fn read_process(proc_root: &Path, pid: u32) -> io::Result<Option<Process>> {
    if pid == 0 {
        return Ok(None);
    }
    let dir = proc_root.join(pid.to_string());
    let read = |path: &Path| {
        files::read_bounded(path, PROC_FILE_MAX)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| e.into_io(path))
    };
    let comm = match read(&dir.join("comm")) {
        Ok(c) => c.trim_end_matches('\n').to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let started = read(&dir.join("stat"))
        .map_err(|e| e.to_string())
        .and_then(|stat| start_ticks(&stat))
        .and_then(|ticks| {
            let boot = read(&proc_root.join("stat"))
                .map_err(|e| e.to_string())
                .and_then(|s| boot_time(&s))?;
            start_time(boot, ticks, clock_ticks())
        });
    Ok(Some(Process { comm, started }))
}

/// Boot time plus `ticks` clock ticks, when the clock can hold it and humantime
/// can show it.
fn start_time(boot: SystemTime, ticks: u64, per_second: f64) -> Result<SystemTime, String> {
    let after = Duration::try_from_secs_f64(ticks as f64 / per_second)
        .map_err(|e| format!("starttime {ticks} ticks: {e}"))?;
    boot.checked_add(after)
        .filter(|t| *t <= SystemTime::UNIX_EPOCH + Duration::from_secs(BTIME_MAX))
        .ok_or_else(|| format!("starttime {ticks} ticks after boot is past year 9999"))
}

/// Field 22 of `/proc/PID/stat` (starttime, in clock ticks after boot). The
/// command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn start_ticks(stat: &str) -> Result<u64, String> {
    let after = &stat[stat.rfind(')').ok_or("no `)` after the command name")? + 1..];
    // After the name: field 3 (state) is the first, so starttime is the 20th.
    let field = after
        .split_whitespace()
        .nth(19)
        .ok_or("fewer than 22 fields")?;
    let ticks: u64 = field
        .parse()
        .map_err(|_| format!("starttime `{field}` is not a number"))?;
    if ticks > START_TICKS_MAX {
        return Err(format!(
            "starttime {ticks} is more than {START_TICKS_MAX} ticks (a century) after boot"
        ));
    }
    Ok(ticks)
}

/// `btime` of `/proc/stat`: boot time, in seconds since the epoch.
pub fn boot_time(stat: &str) -> Result<SystemTime, String> {
    let field = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .ok_or("no btime line")?
        .trim();
    let secs: u64 = field
        .parse()
        .map_err(|_| format!("btime `{field}` is not a number"))?;
    if secs > BTIME_MAX {
        return Err(format!(
            "btime {secs} is past {BTIME_MAX} (the end of year 9999)"
        ));
    }
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The verdict on a status file and the process it names.
///
/// `max_age` bounds how old `updated` may be; the agent rewrites the file on every
/// change and at least every heartbeat ([`super::wake::HEARTBEAT`]) though nothing
/// changed, so a live agent's file is never older than that; a hung loop's is.
pub fn assess(
    status: &Status,
    process: Option<&Process>,
    now: SystemTime,
    max_age: Option<Duration>,
) -> Verdict {
    let not_running = |why: String| Verdict {
        health: Level::NotRunning,
        problems: vec![why],
    };
    let Some(p) = process else {
        return not_running(format!(
            "hbad is not running: pid {} in the status file is gone (stale status from {})",
            status.pid, status.updated
        ));
    };
    if p.comm != "hbad" {
        return not_running(format!(
            "hbad is not running: pid {} is `{}` now, not hbad (stale status from {})",
            status.pid, p.comm, status.updated
        ));
    }
    let recorded_start = humantime::parse_rfc3339_weak(&status.started).ok();
    if let (Ok(proc_start), Some(recorded)) = (&p.started, recorded_start) {
        if recorded
            .checked_add(START_SLACK)
            .is_some_and(|latest| *proc_start > latest)
        {
            return not_running(format!(
                "hbad is not running as recorded: pid {} is another hbad, started {} \
                 after the agent that wrote the status (stale status)",
                status.pid,
                humantime::format_rfc3339_seconds(*proc_start)
            ));
        }
    }
    if let (Some(max), Ok(updated)) = (max_age, humantime::parse_rfc3339_weak(&status.updated)) {
        if let Ok(age) = now.duration_since(updated) {
            if age > max {
                return not_running(format!(
                    "the status was last updated {} ago (limit {}): the agent is not \
                     serving its loop",
                    humantime::format_duration(Duration::from_secs(age.as_secs())),
                    humantime::format_duration(max)
                ));
            }
        }
    }
    let problems = problems(status);
    Verdict {
        health: if problems.is_empty() {
            Level::Healthy
        } else {
            Level::Degraded
        },
        problems,
    }
}

/// What makes a running agent degraded: a declared vHBA that is not there, a
/// host with a hung scan, a parent port whose link is down.
fn problems(s: &Status) -> Vec<String> {
    let mut out = Vec::new();
    for v in &s.vhbas {
        if v.state != "active" {
            let why = v
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            // A vHBA whose host exists but is not logged in is there, unusable.
            let what = if v.host.is_some() {
                "is not logged in"
            } else {
                "is missing"
            };
            out.push(format!(
                "vHBA {} ({}) {what}, {}{why}",
                v.name, v.wwpn, v.state
            ));
            continue;
        }
        // An active vHBA whose login the agent read is logged in, or has no fabric
        // to log into (`No Fabric Support`: VN2VN, point-to-point); the vport_state
        // alone is judged only for a status file that names no login.
        if v.login.is_some() {
            continue;
        }
        let parent = v.parent.as_deref().unwrap_or("its parent");
        match v.vport_state.as_deref() {
            Some("No Fabric Support") => {}
            Some("Linkdown") => out.push(format!(
                "vHBA {} ({}): parent {parent} link down",
                v.name, v.wwpn
            )),
            Some(state) if state != "Active" => {
                out.push(format!("vHBA {} ({}): vport {state}", v.name, v.wwpn))
            }
            _ => {}
        }
    }
    for h in &s.hung {
        out.push(format!(
            "{h} hung: a scan has been in the kernel past the scan timeout"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::VhbaStatus;
    use std::fs;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    fn status() -> Status {
        Status {
            pid: 4242,
            started: "2026-12-06T10:00:00.100Z".into(),
            updated: "2026-12-06T10:05:00.000Z".into(),
            vhbas: vec![VhbaStatus {
                name: "fabric-a".into(),
                wwpn: "0x5001a4a000000a01".into(),
                state: "active".into(),
                parent: Some("host1".into()),
                vport_state: Some("Active".into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn hbad_started(t: &str) -> Process {
        Process {
            comm: "hbad".into(),
            started: Ok(at(t)),
        }
    }

    #[test]
    fn a_live_agent_with_everything_in_place_is_healthy() {
        let p = hbad_started("2026-12-06T10:00:00Z");
        let v = assess(&status(), Some(&p), at("2026-12-06T10:05:01Z"), None);
        assert_eq!(v.health, Level::Healthy, "{:?}", v.problems);
        assert_eq!(v.health.exit_code(), 0);
    }

    #[test]
    fn a_dead_or_reused_pid_is_not_running() {
        let now = at("2026-12-06T10:05:01Z");
        let v = assess(&status(), None, now, None);
        assert_eq!((v.health, v.health.exit_code()), (Level::NotRunning, 3));
        assert!(v.problems[0].contains("pid 4242"), "{:?}", v.problems);
        let bash = Process {
            comm: "bash".into(),
            started: Err("unknown".into()),
        };
        let v = assess(&status(), Some(&bash), now, None);
        assert!(v.problems[0].contains("`bash`"), "{:?}", v.problems);
        // Another hbad (a later agent, or `hbad watch`) now has that pid.
        let later = hbad_started("2026-12-06T10:03:00Z");
        let v = assess(&status(), Some(&later), now, None);
        assert_eq!(v.health, Level::NotRunning);
        assert!(v.problems[0].contains("another hbad"), "{:?}", v.problems);
    }

    #[test]
    fn an_old_status_is_stale_only_when_an_age_limit_is_given() {
        let p = hbad_started("2026-12-06T10:00:00Z");
        let now = at("2026-12-06T11:00:00Z");
        let limit = Some(Duration::from_secs(600));
        let v = assess(&status(), Some(&p), now, limit);
        assert_eq!(v.health, Level::NotRunning);
        assert!(v.problems[0].contains("55m ago"), "{:?}", v.problems);
        assert_eq!(
            assess(&status(), Some(&p), now, None).health,
            Level::Healthy
        );
    }

    #[test]
    fn each_degradation_is_named() {
        let mut s = status();
        s.vhbas[0].vport_state = Some("Linkdown".into());
        s.vhbas.push(VhbaStatus {
            name: "fabric-b".into(),
            wwpn: "0x5001a4a000000b01".into(),
            state: "waiting".into(),
            reason: Some("parent host2 is Linkdown".into()),
            ..Default::default()
        });
        s.hung = vec!["host7".into()];
        let p = hbad_started("2026-12-06T10:00:00Z");
        let v = assess(&s, Some(&p), at("2026-12-06T10:05:01Z"), None);
        assert_eq!((v.health, v.health.exit_code()), (Level::Degraded, 1));
        assert_eq!(
            v.problems,
            [
                "vHBA fabric-a (0x5001a4a000000a01): parent host1 link down",
                "vHBA fabric-b (0x5001a4a000000b01) is missing, waiting: parent host2 is Linkdown",
                "host7 hung: a scan has been in the kernel past the scan timeout",
            ]
        );
    }

    #[test]
    fn proc_files_are_read_as_the_kernel_writes_them() {
        // A command name with spaces and a parenthesis cannot shift the fields.
        let stat = "1234 (hb (a) d) S 1 1234 1234 0 -1 4194560 500 0 0 0 3 1 0 0 20 0 4 0 \
                    98765 1000000 300 18446744073709551615";
        assert_eq!(start_ticks(stat), Ok(98765));
        assert!(start_ticks("garbage").is_err());
        assert!(start_ticks("1 (x) S 1").is_err());
        let boot = boot_time("cpu 1 2 3\nbtime 1765000000\nprocesses 9\n").unwrap();
        assert_eq!(
            boot,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000)
        );
        assert!(boot_time("btime soon\n").is_err());

        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_process(dir.path(), 77).unwrap(), None);
        assert_eq!(read_process(dir.path(), 0).unwrap(), None);
        fs::create_dir(dir.path().join("77")).unwrap();
        fs::write(dir.path().join("77/comm"), "hbad\n").unwrap();
        fs::write(dir.path().join("77/stat"), stat).unwrap();
        fs::write(dir.path().join("stat"), "btime 1765000000\n").unwrap();
        let p = read_process(dir.path(), 77).unwrap().unwrap();
        assert_eq!(p.comm, "hbad");
        let ticks = clock_ticks();
        let want = boot + Duration::from_secs_f64(98765.0 / ticks);
        assert_eq!(p.started, Ok(want));
    }

    /// The numbers a fixture `/proc` may hold: each at its type's end, each past
    /// the bound, and a start that lands past year 9999. None may panic, in the
    /// read or in the verdict's wording.
    #[test]
    fn odd_proc_numbers_are_refused_with_their_bound_and_never_panic() {
        let max = u64::MAX;
        assert!(boot_time(&format!("btime {max}\n"))
            .unwrap_err()
            .contains("past 253402300799"));
        let stat =
            |ticks: u64| format!("1 (hbad) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {ticks} 0 0");
        assert!(start_ticks(&stat(max))
            .unwrap_err()
            .contains(&format!("more than {START_TICKS_MAX} ticks")));
        let boot = boot_time(&format!("btime {BTIME_MAX}\n")).unwrap();
        assert!(start_time(boot, START_TICKS_MAX, 100.0)
            .unwrap_err()
            .contains("past year 9999"));
        assert!(start_time(boot, 1, 1e-300).is_err());

        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("4242")).unwrap();
        fs::write(dir.path().join("4242/comm"), "hbad\n").unwrap();
        let status = status();
        let mut verdicts = Vec::new();
        for (btime, ticks) in [
            (max, 100),
            (9_223_372_036_854_775_000, 1_000_000),
            (100, max),
            (BTIME_MAX, START_TICKS_MAX),
            (BTIME_MAX - 1, 0),
        ] {
            fs::write(dir.path().join("stat"), format!("btime {btime}\n")).unwrap();
            fs::write(dir.path().join("4242/stat"), stat(ticks)).unwrap();
            let p = read_process(dir.path(), 4242).unwrap().unwrap();
            verdicts.push((
                p.started.is_ok(),
                assess(&status, Some(&p), at("2026-12-06T10:05:01Z"), None).health,
            ));
        }
        // An unknown start cannot prove the pid reused; a start in year 9999 can.
        let healthy = (false, Level::Healthy);
        assert_eq!(
            verdicts,
            [
                healthy,
                healthy,
                healthy,
                healthy,
                (true, Level::NotRunning)
            ]
        );
        // A /proc file that is a FIFO is an error naming it, not a wait.
        let fifo = dir.path().join("4242/comm");
        fs::remove_file(&fifo).unwrap();
        crate::files::testing::mkfifo(&fifo);
        let err = read_process(dir.path(), 4242).unwrap_err().to_string();
        assert!(err.contains("is a FIFO"), "{err}");
    }

    #[test]
    fn this_process_is_found_in_the_real_proc() {
        let me = read_process(Path::new("/proc"), std::process::id())
            .unwrap()
            .unwrap();
        let started = me.started.unwrap();
        assert!(started > SystemTime::UNIX_EPOCH);
        // Started in the past, and not before the machine booted this year.
        assert!(started <= SystemTime::now() + START_SLACK);
        assert!(!me.comm.is_empty());
    }
}
