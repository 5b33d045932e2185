/// Out of memory is an `error:` line and exit status 2, not an abort (see
/// `wgan_models::cli::ExitOnOutOfMemory`).
#[global_allocator]
static ALLOC: wgan_models::cli::ExitOnOutOfMemory = wgan_models::cli::ExitOnOutOfMemory;

fn main() -> std::process::ExitCode {
    keep_freed_memory_for_reuse();
    wgan_trainer::cli::main()
}

/// Training allocates and frees many large temporaries per step. By default glibc maps each
/// large block fresh and unmaps it on free, so every step pays page faults and the kernel's
/// page zeroing again (measured: a third of the time). Serving them from the heap, and never
/// trimming it, lets freed blocks be reused.
fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
