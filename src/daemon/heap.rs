//! The agent's heap after cold plug: what the graph holds, not what reading it took.
//!
//! Cold plug reads sysfs on a few threads, and glibc gives each thread that
//! allocates an arena of its own. That is what lets them read at full speed: with
//! a single arena every allocation of every reader takes one lock, and on two
//! busy cores a reader preempted while holding it stalls the others (measured on
//! a 16,384-LUN tree: the read took 350–550 ms with one arena, 235–270 ms
//! without). The readers keep few short-lived allocations among what the graph
//! keeps (see `graph::load`), so their arenas hold little besides the graph's
//! attributes once they end, and trimming then returns the free pages of every
//! arena. From then on the process keeps to one arena: the threads started later
//! (executor workers, the policy reader) allocate little, and an arena of their
//! own each would only add resident pages.

/// Once cold plug is done: one malloc arena for every thread started from now on
/// (they take the arenas the cold plug's readers left, then share one), and the
/// heap's free pages given back to the kernel.
pub fn after_cold_plug() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a parameter of glibc's allocator, and a refused
    // value leaves the default; malloc_trim only releases memory the allocator
    // holds free. Both take the allocator's own locks.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::malloc_trim(0);
    }
}
