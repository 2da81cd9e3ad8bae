//! Progress of a long run, one line per step as it finishes (resource, what happened,
//! seconds since the run started), for deploy logs that would otherwise stay silent
//! for minutes. The engine only calls [`step`]; the face decides whether and where the
//! lines go ([`install`]: stderr, unless `--quiet` or `--format json`). Without a sink
//! installed (the library, the tests that call it), [`step`] does nothing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

type Sink = Box<dyn Fn(&str) + Send + Sync>;

static SINK: OnceLock<(Sink, Instant)> = OnceLock::new();

/// Sends every later [`step`] to `sink`; the clock starts now. Only the first call of a
/// process counts.
pub fn install(sink: impl Fn(&str) + Send + Sync + 'static) {
    let _ = SINK.set((Box::new(sink), Instant::now()));
}

/// Reports one finished step: `s3_bucket data-bucket: created`.
pub fn step(kind: &str, name: &str, what: &str) {
    if let Some((sink, start)) = SINK.get() {
        sink(&format!(
            "{kind} {name}: {what} ({:.1} s)",
            start.elapsed().as_secs_f64()
        ));
    }
}

/// Whether [`read`] reports: on for `plan`, whose work is the reads; apply turns it off
/// ([`report_reads`]), since its lines are the writes.
static READS: AtomicBool = AtomicBool::new(true);

/// Turns the lines of [`read`] on or off for the rest of the process.
pub fn report_reads(on: bool) {
    READS.store(on, Ordering::Relaxed);
}

/// Reports one resource read while planning: `s3_bucket data-bucket: read, would create`.
pub fn read(kind: &str, name: &str, what: &str) {
    if READS.load(Ordering::Relaxed) {
        step(kind, name, what);
    }
}
