//! The agent's heap after cold plug: what the graph holds, not what reading it took.
//!
//! Cold plug reads sysfs on a few threads, and glibc gives each thread that
//! allocates an arena of its own. The graph's attributes, read on those threads,
//! would stay in their arenas among the pages of the buffers freed when the load
//! ends, which the arenas keep: on a host of tens of thousands of LUNs, a third
//! more resident memory than the graph itself. With one arena the graph packs
//! into the main heap (the readers' allocations are few and short, so they hardly
//! contend for it), and trimming once cold plug is done returns the free pages.

/// One malloc arena for the whole process: call before any thread starts.
pub fn one_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; no thread that
    // allocates has started yet, and a refused value leaves the default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives the heap's free pages back to the kernel: after cold plug, whose
/// temporary buffers are freed by then.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
