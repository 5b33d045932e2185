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

/// The memory available to new allocations (`MemAvailable` of `/proc/meminfo`), when known.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
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
/// available now; `advice` says what to change. Passes when the available memory is unknown.
pub fn check_memory(what: &str, needed: u64, advice: &str) -> Result<()> {
    check_memory_against(what, needed, available_memory(), advice)
}

fn check_memory_against(
    what: &str,
    needed: u64,
    available: Option<u64>,
    advice: &str,
) -> Result<()> {
    match available {
        Some(avail) if needed > avail => bail!(
            "{what} needs at least {} of memory, and this machine has {} available: {advice}",
            human(needed),
            human(avail)
        ),
        _ => Ok(()),
    }
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
        let err = check_memory_against("--batch-size 9", 3 << 30, Some(1 << 30), "use less")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--batch-size 9 needs at least 3.0 GiB of memory, and this machine has 1.0 GiB available: use less"
        );
        assert!(check_memory_against("x", 3 << 30, None, "").is_ok());
        assert!(check_memory_against("x", 1 << 20, Some(1 << 30), "").is_ok());
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536 << 20), "1.5 GiB");
        #[cfg(target_os = "linux")]
        assert!(available_memory().is_some_and(|m| m > 0));
    }
}
