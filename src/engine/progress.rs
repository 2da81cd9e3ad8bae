//! Progress of a long run, one line per step as it finishes (resource, what happened,
//! seconds since the run started), for deploy logs that would otherwise stay silent
//! for minutes. The engine only calls [`step`]; the face decides whether and where the
//! lines go ([`install`]: stderr, unless `--quiet` or `--format json`). Without a sink
//! installed (the library, the tests that call it), [`step`] does nothing.

use std::sync::OnceLock;
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
