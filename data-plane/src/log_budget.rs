//! A byte budget on the process's log. Much of what a tenant logs is caused by its end users
//! (a refused token, a failed proxy call), and one connection can cause a thousand such lines
//! per frame; a hosted tenant's log goes to a directory it shares with every other tenant and
//! the control plane. With `ROTOR_LOG_BYTES_PER_SECOND` set (the supervisor sets it; a
//! standalone process has no budget unless asked), log output is a token bucket of that many
//! bytes per second with a burst of [`BURST_SECONDS`] of them: a line past the budget is
//! dropped whole and counted, and the next line that fits is preceded by one saying how many
//! went. The control plane bounds the file itself too (`tenant_logs` there).

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;

/// Bytes kept for the note about dropped lines (it is shorter: three numbers of at most 20
/// digits and 66 bytes of text).
const NOTE_ROOM: usize = 128;

/// The burst, in seconds of the rate.
pub const BURST_SECONDS: u64 = 8;

/// The budget from `ROTOR_LOG_BYTES_PER_SECOND` (`None`: unset, 0 or not a number).
pub fn from_env() -> Option<u64> {
    std::env::var("ROTOR_LOG_BYTES_PER_SECOND")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > 0)
}

struct State<W> {
    out: W,
    /// Bytes that may be written now.
    tokens: f64,
    last: Instant,
    dropped_lines: u64,
    dropped_bytes: u64,
}

/// Log output held to `rate` bytes per second; shared by every event's writer.
pub struct Budgeted<W> {
    rate: f64,
    burst: f64,
    state: Mutex<State<W>>,
}

impl<W: Write> Budgeted<W> {
    pub fn new(out: W, rate: u64) -> Self {
        let burst = (rate.saturating_mul(BURST_SECONDS)) as f64;
        Self {
            rate: rate as f64,
            burst,
            state: Mutex::new(State {
                out,
                tokens: burst,
                last: Instant::now(),
                dropped_lines: 0,
                dropped_bytes: 0,
            }),
        }
    }

    /// Writes one formatted event, or drops it past the budget. Never fails the caller: a log
    /// that cannot be written must not take a request down.
    fn line(&self, buf: &[u8]) {
        let mut s = self.state.lock();
        let now = Instant::now();
        let refill = now.duration_since(s.last).as_secs_f64() * self.rate;
        s.tokens = (s.tokens + refill).min(self.burst);
        s.last = now;
        // A line that follows dropped ones needs room for the note too (formatted only once
        // it fits, so a flood of dropped lines costs no allocation).
        let room = if s.dropped_lines > 0 { NOTE_ROOM } else { 0 };
        if s.tokens < (buf.len() + room) as f64 {
            s.dropped_lines += 1;
            s.dropped_bytes += buf.len() as u64;
            return;
        }
        let note = (s.dropped_lines > 0).then(|| {
            format!(
                "[{} log lines ({} bytes) dropped: over the log budget of {} bytes a second]\n",
                s.dropped_lines, s.dropped_bytes, self.rate as u64
            )
        });
        s.tokens -= (buf.len() + note.as_ref().map_or(0, String::len)) as f64;
        if let Some(note) = note {
            s.dropped_lines = 0;
            s.dropped_bytes = 0;
            let _ = s.out.write_all(note.as_bytes());
        }
        let _ = s.out.write_all(buf);
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.state.into_inner().out
    }
}

/// The writer one event gets.
pub struct EventWriter<'a, W>(&'a Budgeted<W>);

impl<W: Write> Write for EventWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The `MakeWriter` for the fmt layer: standard error, budgeted.
#[derive(Clone)]
pub struct BudgetedStderr(Arc<Budgeted<io::Stderr>>);

impl BudgetedStderr {
    pub fn new(rate: u64) -> Self {
        Self(Arc::new(Budgeted::new(io::stderr(), rate)))
    }
}

impl<'a> MakeWriter<'a> for BudgetedStderr {
    type Writer = EventWriter<'a, io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_dropped_whole_and_counted_on_the_next_that_fits() {
        // 100 bytes a second, 800 of burst.
        let b = Budgeted::new(Vec::new(), 100);
        let line = [b'x'; 99];
        let mut w = EventWriter(&b);
        for _ in 0..20 {
            let mut l = line.to_vec();
            l.push(b'\n');
            w.write_all(&l).unwrap();
        }
        let out = b.state.lock().out.clone();
        assert_eq!(out.len(), 800, "eight whole lines of the burst");
        assert_eq!(b.state.lock().dropped_lines, 12);
        // Refilled (the clock moved 10 s on): the note comes first, then the line.
        b.state.lock().last -= std::time::Duration::from_secs(10);
        w.write_all(b"after\n").unwrap();
        let out = String::from_utf8(b.into_inner()).unwrap();
        let tail: Vec<&str> = out.lines().rev().take(2).collect();
        assert_eq!(tail[0], "after");
        assert_eq!(
            tail[1],
            "[12 log lines (1200 bytes) dropped: over the log budget of 100 bytes a second]"
        );
    }
}
