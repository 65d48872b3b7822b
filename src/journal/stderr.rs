//! Records for stderr, written by a thread of their own, so that a stderr nobody reads
//! (a full pipe, a stopped pager, a suspended terminal) never stops the thread that
//! logs.
//!
//! The logging thread formats a record (tracing's fmt layer) and queues it; one writer
//! thread writes the queue out. The queue holds at most [`LIMITS`]: past it a record is
//! dropped and counted, and once the writer reaches the place of the loss it writes
//! `hbad: n log records dropped: stderr did not take them` there. A record is cut at
//! [`MAX_RECORD`] bytes. At exit [`Queue::flush`] waits for the queue to be written,
//! for a bounded time: a stderr that stays blocked loses what is still queued, never
//! the exit.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// The most one record may hold, as for the journal.
pub const MAX_RECORD: usize = super::native::MAX_RECORD;
/// What ends a record cut at its bound.
pub const CUT: &str = " [cut by hbad: a record is bounded to 1 MiB]\n";
/// How much the queue holds: about a second of a busy agent's records, or a few of the
/// largest.
pub const LIMITS: Limits = Limits {
    records: 1024,
    bytes: 4 << 20,
};

/// The bounds of a queue: records, and bytes in all.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub records: usize,
    pub bytes: usize,
}

/// The records waiting for the writer thread.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<State>,
    /// The writer waits here for records.
    queued: Condvar,
    /// [`Queue::flush`] waits here for the writer to be done.
    idle: Condvar,
    limits: Limits,
}

#[derive(Debug, Default)]
struct State {
    records: VecDeque<Entry>,
    bytes: usize,
    /// Records dropped since the last one queued.
    dropped: u64,
    /// Records dropped since the queue was started.
    dropped_total: u64,
    /// The writer holds a record it has not finished writing.
    writing: bool,
}

#[derive(Debug)]
struct Entry {
    /// Records dropped just before this one: said before it is written.
    dropped_before: u64,
    bytes: Vec<u8>,
}

impl Queue {
    /// A queue and its writer thread, writing to `out`.
    pub fn start(out: File, limits: Limits) -> io::Result<Arc<Queue>> {
        let queue = Arc::new(Queue {
            state: Mutex::default(),
            queued: Condvar::new(),
            idle: Condvar::new(),
            limits,
        });
        let writer = queue.clone();
        thread::Builder::new()
            .name("hbad-log".into())
            .spawn(move || writer.write_out(out))?;
        Ok(queue)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock left the queue consistent: every
        // change to it is a single push or pop.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one formatted record, cut at [`MAX_RECORD`]; false when the queue is full
    /// and the record was dropped. Never waits for the writer.
    pub fn push(&self, record: &[u8]) -> bool {
        let len = record.len().min(MAX_RECORD);
        let mut s = self.lock();
        if s.records.len() >= self.limits.records || s.bytes + len > self.limits.bytes {
            s.dropped += 1;
            s.dropped_total += 1;
            return false;
        }
        let bytes = bounded(record);
        s.bytes += bytes.len();
        let dropped_before = std::mem::take(&mut s.dropped);
        s.records.push_back(Entry {
            dropped_before,
            bytes,
        });
        drop(s);
        self.queued.notify_one();
        true
    }

    /// Records dropped since the queue was started.
    pub fn dropped_total(&self) -> u64 {
        self.lock().dropped_total
    }

    /// Waits until everything queued is written, at most `deadline`: true when it was.
    pub fn flush(&self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        let mut s = self.lock();
        while s.writing || !s.records.is_empty() || s.dropped > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .idle
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// [`Queue::flush`] for a panic hook. The panicking thread may be the one that
    /// holds the queue's lock (a panic inside `push`), where taking it again would
    /// hang the panic for ever: the lock is only tried, until the deadline.
    pub fn flush_in_panic(&self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            match self.state.try_lock() {
                Ok(_) | Err(TryLockError::Poisoned(_)) => break,
                Err(TryLockError::WouldBlock) if Instant::now() >= until => return false,
                Err(TryLockError::WouldBlock) => thread::sleep(Duration::from_millis(1)),
            }
        }
        self.flush(until.saturating_duration_since(Instant::now()))
    }

    /// The writer thread: for ever, as the process's life.
    fn write_out(&self, mut out: File) {
        let mut s = self.lock();
        loop {
            if let Some(entry) = s.records.pop_front() {
                s.bytes -= entry.bytes.len();
                s.writing = true;
                drop(s);
                if entry.dropped_before > 0 {
                    write_all(&mut out, dropped_notice(entry.dropped_before).as_bytes());
                }
                write_all(&mut out, &entry.bytes);
            } else if s.dropped > 0 {
                // The queue ran empty after a loss no later record took the count of.
                let n = std::mem::take(&mut s.dropped);
                s.writing = true;
                drop(s);
                write_all(&mut out, dropped_notice(n).as_bytes());
            } else {
                s.writing = false;
                self.idle.notify_all();
                s = self.queued.wait(s).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            s = self.lock();
        }
    }
}

fn dropped_notice(n: u64) -> String {
    format!("hbad: {n} log records dropped: stderr did not take them\n")
}

/// `record`, or its first [`MAX_RECORD`] bytes (on a character boundary) and [`CUT`].
fn bounded(record: &[u8]) -> Vec<u8> {
    if record.len() <= MAX_RECORD {
        return record.to_vec();
    }
    let mut n = MAX_RECORD - CUT.len();
    // Back over UTF-8 continuation bytes: the fmt layer's records are text.
    while n > 0 && record[n] & 0xc0 == 0x80 {
        n -= 1;
    }
    let mut out = Vec::with_capacity(n + CUT.len());
    out.extend_from_slice(&record[..n]);
    out.extend_from_slice(CUT.as_bytes());
    out
}

/// Writes what it can; a stderr that is gone (EPIPE, closed) loses the record. A
/// non-blocking stderr (shared with a program that set O_NONBLOCK) is waited for here,
/// on the writer thread, which is what it is for.
fn write_all(out: &mut File, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return,
        }
    }
}

/// tracing's fmt layer writes each formatted event in one `write_all`: one record.
#[derive(Clone, Debug)]
pub struct QueueWriter(pub Arc<Queue>);

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = &'a Queue;

    fn make_writer(&'a self) -> &'a Queue {
        &self.0
    }
}

impl Write for &Queue {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Taken even when dropped: the drop is counted and reported, not an error for
        // tracing to print on the stderr that is blocked.
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::mpsc;

    use super::*;

    /// A guard against a call that blocks, never a measurement.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// A panic hook's flush on the thread that holds the queue's lock gives up at
    /// its deadline instead of waiting for itself; without the lock held it writes
    /// what is queued.
    #[test]
    fn a_flush_in_a_panic_never_waits_for_its_own_thread() {
        let (mut read, write) = pipe();
        let queue = Queue::start(write, LIMITS).unwrap();
        let (done, finished) = mpsc::channel();
        let q = queue.clone();
        thread::spawn(move || {
            let held = q.lock();
            let flushed = q.flush_in_panic(Duration::from_millis(50));
            drop(held);
            done.send(flushed).unwrap();
        });
        assert_eq!(
            finished.recv_timeout(PATIENCE),
            Ok(false),
            "gave up at the deadline rather than waiting on its own lock"
        );
        assert!(queue.push(b"last words\n"));
        assert!(queue.flush_in_panic(PATIENCE));
        let mut buf = [0u8; 11];
        read.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"last words\n");
    }

    fn pipe() -> (File, File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        (File::from(read), File::from(write))
    }

    /// The writer blocked on a pipe nobody reads: the queue fills, records are dropped
    /// and counted, the caller never waits. Once the pipe is read, every loss is said
    /// where it happened.
    #[test]
    fn a_stderr_nobody_reads_makes_records_drop_not_block() {
        let (mut read, write) = pipe();
        let queue = Queue::start(
            write,
            Limits {
                records: 4,
                bytes: 64 << 10,
            },
        )
        .unwrap();
        const RECORDS: usize = 2000;
        let (done, finished) = mpsc::channel();
        let q = queue.clone();
        thread::spawn(move || {
            // 1 KiB records: the pipe (64 KiB) and the queue hold far fewer than this.
            let dropped = (0..RECORDS)
                .filter(|i| !q.push(format!("record {i:04} {}\n", "x".repeat(1000)).as_bytes()))
                .count();
            done.send(dropped).unwrap();
        });
        let dropped = finished
            .recv_timeout(PATIENCE)
            .expect("logging blocked on a stderr nobody reads");
        assert!(dropped > 0, "nothing was dropped");
        assert_eq!(queue.dropped_total(), dropped as u64);

        // stderr is read again: everything queued comes out, then the end mark.
        let (text_tx, text) = mpsc::channel();
        thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 8192];
            while !out.ends_with(b"end\n") {
                let n = read.read(&mut buf).unwrap();
                assert!(n > 0);
                out.extend_from_slice(&buf[..n]);
            }
            text_tx.send(String::from_utf8(out).unwrap()).unwrap();
        });
        assert!(queue.flush(PATIENCE), "the writer never caught up");
        assert!(queue.push(b"end\n"));
        let text = text.recv_timeout(PATIENCE).unwrap();

        // Between two records that came out, the notices count exactly those lost.
        let mut last: Option<usize> = None;
        let mut noticed = 0;
        let mut reported = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("hbad: ") {
                let n: usize = rest
                    .strip_suffix(" log records dropped: stderr did not take them")
                    .unwrap_or_else(|| panic!("{line}"))
                    .parse()
                    .unwrap();
                noticed += n;
            } else if let Some(rest) = line.strip_prefix("record ") {
                let i: usize = rest[..4].parse().unwrap();
                let lost = i - last.map_or(0, |l| l + 1);
                assert_eq!(noticed, lost, "before record {i}");
                reported += noticed;
                noticed = 0;
                last = Some(i);
            } else {
                assert_eq!(line, "end");
            }
        }
        let lost = RECORDS - last.map_or(0, |l| l + 1);
        assert_eq!(noticed, lost, "after the last record");
        assert_eq!(reported + noticed, dropped);
    }

    #[test]
    fn flushing_at_exit_gives_up_on_a_stderr_that_stays_blocked() {
        let (_read, write) = pipe();
        let queue = Queue::start(write, LIMITS).unwrap();
        let (done, finished) = mpsc::channel();
        thread::spawn(move || {
            for _ in 0..200 {
                queue.push("x".repeat(1023).as_bytes());
            }
            done.send(queue.flush(Duration::from_millis(100))).unwrap();
        });
        let flushed = finished
            .recv_timeout(PATIENCE)
            .expect("flush did not come back");
        assert!(!flushed, "200 KiB went into a 64 KiB pipe nobody reads");
    }

    #[test]
    fn a_record_is_cut_at_its_bound_on_a_character() {
        let small = b"short\n";
        assert_eq!(bounded(small), small);
        let record = "é".repeat(MAX_RECORD);
        let cut = bounded(record.as_bytes());
        assert!(cut.len() <= MAX_RECORD);
        let text = String::from_utf8(cut).expect("cut on a character boundary");
        assert!(text.ends_with(CUT));
        assert!(text.trim_end_matches(CUT).chars().all(|c| c == 'é'));
    }
}
