//! A kernel write that no signal but SIGKILL ends half-way.
//!
//! A process that takes a fatal signal while one of its threads is inside a
//! kernel write is torn down as by SIGKILL (the kernel makes every fatal signal
//! a group kill): inside `vport_create` on fcoe that is the bug of KERNEL.md (the
//! aborted thread creation frees a port still on the parent's list; every later
//! create or delete hangs). hbad's writer processes (`hbad write-attr`) reach
//! those signals in more ways than the agent's own stop: Ctrl-C sends SIGINT to
//! the terminal's whole process group, `systemctl kill` sends SIGTERM to every
//! process of the unit, a closed terminal sends SIGHUP. So a writer ignores
//! them: what it writes ends as the kernel ends it, and the caller (the agent, or
//! the next start, which adopts a vport it finds unmarked) reads the result.

use std::io;

/// The signals a writer ignores: each would end it by default.
const STOP_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Makes this process ignore SIGINT, SIGTERM, SIGHUP and SIGQUIT. For the
/// one-write processes only (`hbad write-attr`), before their write.
pub fn ignore_stop_signals() -> io::Result<()> {
    for sig in STOP_SIGNALS {
        // SAFETY: SIG_IGN installs no handler; the writer process has one thread.
        if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
