//! Progress of long data work on stderr: a bar on a terminal, a line every ten percent
//! otherwise (logs, CI), and nothing for small jobs.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// Items below which no progress is shown.
const QUIET_BELOW: usize = 5000;

/// A callback for `(done, total)` counts of images decoded, labelled `what`.
pub fn decoding(what: &'static str) -> impl FnMut(usize, usize) {
    let start = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let mut next_line = 0usize;
    move |done, total| {
        if total < QUIET_BELOW {
            return;
        }
        if std::io::stderr().is_terminal() {
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(total as u64);
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg} {bar:24} {pos}/{len} images · {per_sec} · ETA {eta}",
                    )
                    .expect("valid template"),
                );
                b.set_message(what);
                b
            });
            b.set_position(done as u64);
            if done == total {
                b.finish_and_clear();
            }
        } else if done >= next_line || done == total {
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "{what}: {done}/{total} images ({:.0} images/s)",
                done as f64 / secs.max(1e-9)
            );
            next_line = done + total.div_ceil(10);
        }
    }
}
