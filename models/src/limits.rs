//! Sizes checked before they are allocated: element counts and byte sizes computed with
//! overflow checks, and compared with the memory the machine has, so that a huge flag or a
//! lying file header is a clear error instead of a panic ("capacity overflow") or an abort
//! (a failed multi-gigabyte allocation).

use anyhow::{bail, Context, Result};

/// The product of `dims`, or an error naming `what` when it overflows `usize`.
pub fn count(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| {
            let product = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>();
            format!(
                "{what} needs more memory than this machine can address ({} values)",
                product.join(" × ")
            )
        })
}

/// `elements × bytes_each` as a byte count, or an error naming `what` when it overflows.
pub fn bytes(what: &str, elements: usize, bytes_each: usize) -> Result<u64> {
    (elements as u64)
        .checked_mul(bytes_each as u64)
        .with_context(|| format!("{what} needs more bytes than this machine can address"))
}

/// Where the memory that is available is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemorySource {
    /// `MemAvailable` of `/proc/meminfo`: the machine's.
    Machine,
    /// What the process's cgroup (`memory.max` in v2, `memory.limit_in_bytes` in v1) leaves:
    /// exceeding it inside a container (Docker, Kubernetes, SLURM) is an OOM kill.
    Cgroup,
    /// What `RLIMIT_AS` (`ulimit -v`) leaves of the address space: exceeding it makes
    /// allocations fail.
    AddressSpace,
}

impl MemorySource {
    /// How a message names it: "this machine has 1.0 GiB available", etc.
    fn describe(self, bytes: u64) -> String {
        match self {
            MemorySource::Machine => format!("this machine has {} available", human(bytes)),
            MemorySource::Cgroup => format!(
                "the container's memory limit (cgroup) leaves {}",
                human(bytes)
            ),
            MemorySource::AddressSpace => format!(
                "the address-space limit (ulimit -v) leaves {}",
                human(bytes)
            ),
        }
    }
}

/// The memory available to new allocations, when known: the smallest of the machine's
/// `MemAvailable`, what the cgroup's limit leaves (v2 and v1; the page cache it can reclaim
/// counts as free) and what `RLIMIT_AS` leaves of the address space.
pub fn available_memory() -> Option<u64> {
    available_memory_with_source().map(|(bytes, _)| bytes)
}

/// [`available_memory`] and which limit gives it.
pub fn available_memory_with_source() -> Option<(u64, MemorySource)> {
    [
        machine_available().map(|b| (b, MemorySource::Machine)),
        cgroup_available().map(|b| (b, MemorySource::Cgroup)),
        address_space_available().map(|b| (b, MemorySource::AddressSpace)),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|(b, _)| *b)
}

fn machine_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_field(&text, "MemAvailable:")
}

/// A `kB` field of `/proc/meminfo` or `/proc/self/status`, in bytes.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn read_u64(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A field of a cgroup's `memory.stat`.
fn stat_field(dir: &std::path::Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// What the tightest memory limit among the process's cgroup and its ancestors leaves.
fn cgroup_available() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_available_in(&membership, std::path::Path::new("/sys/fs/cgroup"))
}

/// [`cgroup_available`] for a `/proc/self/cgroup` text and the cgroup mount `root`.
fn cgroup_available_in(membership: &str, root: &std::path::Path) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut consider = |limit: Option<u64>, used: Option<u64>, reclaimable: Option<u64>| {
        // Unlimited is reported as "max" (v2) or a number near 2^63 (v1).
        if let (Some(limit), Some(used)) = (limit.filter(|&l| l < 1 << 60), used) {
            let left = limit.saturating_sub(used.saturating_sub(reclaimable.unwrap_or(0)));
            best = Some(best.map_or(left, |b| b.min(left)));
        }
    };
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        // v2 (unified): "0::/path"; v1: "N:memory:/path" under /sys/fs/cgroup/memory. Inside a
        // container the path may not exist in the mounted tree: its root is then the cgroup.
        let (base, limit_file, used_file, reclaim) = match controllers {
            "" => (
                root.to_path_buf(),
                "memory.max",
                "memory.current",
                "inactive_file",
            ),
            c if c.split(',').any(|c| c == "memory") => (
                root.join("memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            ),
            _ => continue,
        };
        let mut dir = base.join(path);
        if !dir.is_dir() {
            dir = base.clone();
        }
        // The process's cgroup and every ancestor up to the mount's root.
        loop {
            consider(
                read_u64(&dir.join(limit_file)),
                read_u64(&dir.join(used_file)),
                stat_field(&dir, reclaim),
            );
            if dir == base || !dir.pop() {
                break;
            }
        }
    }
    best
}

/// What `RLIMIT_AS` leaves: the limit (`/proc/self/limits`, "Max address space") less the
/// address space in use (`VmSize`).
fn address_space_available() -> Option<u64> {
    address_space_from(
        &std::fs::read_to_string("/proc/self/limits").ok()?,
        &std::fs::read_to_string("/proc/self/status").ok()?,
    )
}

/// [`address_space_available`] from the texts of `/proc/self/limits` and `/proc/self/status`.
fn address_space_from(limits: &str, status: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let soft: u64 = line
        .trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let used = meminfo_field(status, "VmSize:")?;
    Some(soft.saturating_sub(used))
}

/// A byte count for messages: `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Fails when `needed` bytes (a lower bound of what `what` allocates) exceed the memory
/// available now ([`available_memory`]); `advice` says what to change. Passes when the
/// available memory is unknown.
pub fn check_memory(what: &str, needed: u64, advice: &str) -> Result<()> {
    check_memory_against(what, needed, available_memory_with_source(), advice)
}

fn check_memory_against(
    what: &str,
    needed: u64,
    available: Option<(u64, MemorySource)>,
    advice: &str,
) -> Result<()> {
    match available {
        Some((avail, source)) if needed > avail => bail!(
            "{what} needs at least {} of memory, and {}: {advice}",
            human(needed),
            source.describe(avail)
        ),
        _ => Ok(()),
    }
}

std::thread_local! {
    /// Whether this thread is inside [`fallibly`]: the binaries' allocator
    /// (`crate::cli::ExitOnOutOfMemory`) then hands a refused allocation back instead of
    /// ending the process.
    static FALLIBLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's refused allocations handed back to their caller (as
/// `try_reserve`'s error), not turned into an exit by the binaries' allocator.
pub fn fallibly<R>(f: impl FnOnce() -> R) -> R {
    let before = FALLIBLE.with(|c| c.replace(true));
    let r = f();
    FALLIBLE.with(|c| c.set(before));
    r
}

/// Whether this thread is inside [`fallibly`].
pub fn in_fallible_section() -> bool {
    FALLIBLE.with(|c| c.get())
}

/// A zeroed buffer of `n` values, allocated fallibly: an allocation the system refuses is an
/// error naming `what`, not an abort.
pub fn zeroed<T: Copy + Default>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    fallibly(|| v.try_reserve_exact(n)).map_err(|_| {
        anyhow::anyhow!(
            "out of memory: {what} needs {} and the system refused it",
            human((n as u64).saturating_mul(std::mem::size_of::<T>() as u64))
        )
    })?;
    v.resize(n, T::default());
    Ok(v)
}

/// Reads `path` whole, refusing more than `max` bytes (`what` says what the file is and why
/// that is its limit) without reading further: a device or pipe that never ends (`/dev/zero`,
/// a FIFO) or a file larger than its format allows is an error, not a read that grows
/// without end. The memory is checked and allocated fallibly.
pub fn read_bounded(path: &std::path::Path, max: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if meta.is_dir() {
        bail!("{what} {} is a folder, not a file", path.display());
    }
    let too_big = |size: String| {
        anyhow::anyhow!(
            "{what} {} is {size}, more than the {} such a file can be",
            path.display(),
            human(max)
        )
    };
    let expected = if meta.is_file() {
        if meta.len() > max {
            return Err(too_big(human(meta.len())));
        }
        meta.len()
    } else {
        // A device or pipe: no size known in advance.
        0
    };
    check_memory(
        &format!("reading {what} {}", path.display()),
        expected,
        "free memory or use a smaller file",
    )?;
    let mut bytes = Vec::new();
    fallibly(|| bytes.try_reserve_exact(expected as usize))
        .map_err(|_| anyhow::anyhow!("out of memory reading {what} {}", path.display()))?;
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(too_big("longer than that (it did not end)".to_string()));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text_bounded(path: &std::path::Path, max: u64, what: &str) -> Result<String> {
    let bytes = read_bounded(path, max, what)?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{what} {} is not UTF-8 text", path.display()))
}

/// Most bytes of a JSON or CSV file a run keeps (`state.json`, `config.json`, a sidecar,
/// `metrics.csv`): far above what a run writes, far below what breaks a machine.
pub const MAX_TEXT_FILE: u64 = 1 << 30;

/// Most threads any `--threads` flag starts.
pub const MAX_THREADS: usize = 1024;

/// Checks a `--threads` value: 1 to [`MAX_THREADS`].
pub fn check_threads(flag: &str, threads: usize) -> Result<()> {
    if !(1..=MAX_THREADS).contains(&threads) {
        bail!("{flag} must be between 1 and {MAX_THREADS}, not {threads}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_and_memory_are_errors_naming_what() {
        assert_eq!(count("shape", &[2, 3, 4]).unwrap(), 24);
        let err = count("shape [2^62, 100, 1, 1]", &[1 << 62, 100, 1, 1])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "shape [2^62, 100, 1, 1] needs more memory than this machine can address \
             (4611686018427387904 × 100 × 1 × 1 values)"
        );
        assert!(bytes("the grid", usize::MAX, 4).is_err());
        assert_eq!(bytes("x", 3, 4).unwrap(), 12);
        let err = check_memory_against(
            "--batch-size 9",
            3 << 30,
            Some((1 << 30, MemorySource::Machine)),
            "use less",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "--batch-size 9 needs at least 3.0 GiB of memory, and this machine has 1.0 GiB available: use less"
        );
        assert!(check_memory_against("x", 3 << 30, None, "").is_ok());
        assert!(
            check_memory_against("x", 1 << 20, Some((1 << 30, MemorySource::Machine)), "").is_ok()
        );
        let err = check_memory_against(
            "x",
            2 << 30,
            Some((1 << 30, MemorySource::AddressSpace)),
            "a",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ulimit -v") && err.contains("1.0 GiB"),
            "{err}"
        );
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536 << 20), "1.5 GiB");
        #[cfg(target_os = "linux")]
        assert!(available_memory().is_some_and(|m| m > 0));
    }

    #[test]
    fn bounded_reads_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 100]).unwrap();
        assert_eq!(read_bounded(&p, 100, "test file").unwrap().len(), 100);
        let e = read_bounded(&p, 99, "test file").unwrap_err().to_string();
        assert!(e.contains("is 100 B, more than the 99 B"), "{e}");
        // A device that never ends is cut at the limit.
        let e = read_bounded(std::path::Path::new("/dev/zero"), 1 << 20, "model")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero") && e.contains("did not end"), "{e}");
        assert!(read_bounded(dir.path(), 10, "model")
            .unwrap_err()
            .to_string()
            .contains("folder"));
        assert!(check_threads("--threads", 1024).is_ok());
        let e = check_threads("--threads", 100_000).unwrap_err().to_string();
        assert!(e.contains("between 1 and 1024, not 100000"), "{e}");
        assert!(zeroed::<f32>(usize::MAX / 8, "a huge buffer").is_err());
    }

    #[test]
    fn cgroup_and_address_space_limits_are_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         4294967296           unlimited            bytes\n";
        let status = "Name:\ttrainer\nVmSize:\t  1048576 kB\n";
        assert_eq!(address_space_from(limits, status), Some(3 << 30));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_from(unlimited, status), None);

        // cgroup v2: a limit on the parent, a tighter one on the leaf; inactive file pages
        // are reclaimable.
        let root = tempfile::tempdir().unwrap();
        let leaf = root.path().join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        let write =
            |dir: &std::path::Path, f: &str, v: &str| std::fs::write(dir.join(f), v).unwrap();
        write(&root.path().join("a"), "memory.max", "8589934592\n");
        write(&root.path().join("a"), "memory.current", "1073741824\n");
        write(&leaf, "memory.max", "2147483648\n");
        write(&leaf, "memory.current", "1610612736\n");
        write(&leaf, "memory.stat", "anon 1\ninactive_file 536870912\n");
        assert_eq!(cgroup_available_in("0::/a/b\n", root.path()), Some(1 << 30));
        write(&leaf, "memory.max", "max\n");
        assert_eq!(cgroup_available_in("0::/a/b\n", root.path()), Some(7 << 30));
        // cgroup v1, with a path that the container's mount does not show: its root is used.
        let v1 = root.path().join("memory");
        std::fs::create_dir_all(&v1).unwrap();
        write(&v1, "memory.limit_in_bytes", "4294967296\n");
        write(&v1, "memory.usage_in_bytes", "1073741824\n");
        write(&v1, "memory.stat", "total_inactive_file 0\n");
        let membership = "4:memory:/process_api/xyz\n1:cpu:/\n";
        assert_eq!(cgroup_available_in(membership, root.path()), Some(3 << 30));
        write(&v1, "memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(cgroup_available_in(membership, root.path()), None);
    }
}
