//! Tenant logs stay small. Each tenant process writes its standard error to
//! `<run dir>/<tenant>.log` (a file, so it outlives a control-plane restart), and the run
//! directory is usually a tmpfs shared by every tenant and the control plane: configs, hand-off
//! sockets and parking marks live there too. Anything an end user can make a tenant log (a
//! refused token, a failed proxy call) must therefore not be able to fill it.
//!
//! Two bounds hold together: the data plane writes at most [`LOG_BYTES_PER_SECOND`] (see the
//! data plane's `log_budget`), and [`keep_trimmed`] looks at every log in the directory every
//! [`TRIM_EVERY`], cutting one larger than [`MAX_LOG_BYTES`] down to its newest
//! [`KEPT_LOG_BYTES`] (from a line start, after a line saying how much went). A process that
//! ends or parks leaves at most [`KEPT_LOG_BYTES`] ([`trim`] from the supervisor), so ten
//! thousand parked projects hold a bounded amount of the directory.
//!
//! The tenant keeps appending (`O_APPEND`) while a log is cut: lines it writes between the
//! read of the tail and the cut are lost, which a log may afford.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The log budget each tenant process is started with (`ROTOR_LOG_BYTES_PER_SECOND`; bursts
/// of eight seconds of it): with [`TRIM_EVERY`], a log never grows much past
/// [`MAX_LOG_BYTES`] between two looks.
pub const LOG_BYTES_PER_SECOND: u64 = 32 * 1024;
/// A running tenant's log is cut once larger than this.
pub const MAX_LOG_BYTES: u64 = 1024 * 1024;
/// What a cut keeps: the newest bytes, from the first line start in them.
pub const KEPT_LOG_BYTES: u64 = 128 * 1024;
/// How often every log is looked at.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Cuts the log at `path` to its newest `keep` bytes when it is larger than `max`; returns
/// how many bytes went (`None`: nothing to do, or no such file).
pub fn trim(path: &Path, max: u64, keep: u64) -> std::io::Result<Option<u64>> {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len <= max {
        return Ok(None);
    }
    let keep = keep.min(len);
    file.seek(SeekFrom::Start(len - keep))?;
    let mut tail = Vec::with_capacity(keep as usize);
    Read::by_ref(&mut file).take(keep).read_to_end(&mut tail)?;
    // From the first whole line (the whole tail when it is one line).
    let start = tail
        .iter()
        .position(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
        .min(tail.len());
    let kept = &tail[start..];
    let dropped = len - kept.len() as u64;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    let note =
        format!("[rotor: {dropped} older bytes of this log were dropped to keep it small]\n");
    file.write_all(note.as_bytes())?;
    file.write_all(kept)?;
    Ok(Some(dropped))
}

/// Cuts every `*.log` in `dir` that is larger than [`MAX_LOG_BYTES`]; returns how many.
pub fn trim_all(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut cut = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        // A cheap look first: most logs are far below the bound.
        if entry.metadata().is_ok_and(|m| m.len() <= MAX_LOG_BYTES) {
            continue;
        }
        match trim(&path, MAX_LOG_BYTES, KEPT_LOG_BYTES) {
            Ok(Some(dropped)) => {
                cut += 1;
                tracing::info!(log = %path.display(), dropped, "tenant log cut to its newest lines");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(log = %path.display(), error = %e, "tenant log not cut"),
        }
    }
    cut
}

/// Every [`TRIM_EVERY`] until `stop`, cuts the logs in `dir` that grew past the bound.
pub async fn keep_trimmed(dir: std::path::PathBuf, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
        let dir = dir.clone();
        let _ = tokio::task::spawn_blocking(move || trim_all(&dir)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("rotor-logs-{}", crate::secrets::random_token("t")));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_log_past_the_bound_keeps_its_newest_whole_lines_after_a_note() {
        let d = dir();
        let path = d.join("prj_a.log");
        let lines: String = (0..1000).map(|n| format!("line {n:04}\n")).collect();
        std::fs::write(&path, &lines).unwrap();
        assert_eq!(
            trim(&path, 20_000, 20_000).unwrap(),
            None,
            "under the bound"
        );
        let dropped = trim(&path, 1000, 105).unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = text.lines();
        assert_eq!(
            out.next().unwrap(),
            format!("[rotor: {dropped} older bytes of this log were dropped to keep it small]")
        );
        let rest: Vec<&str> = out.collect();
        // 105 bytes hold ten whole lines of 10 bytes after a partial one.
        assert_eq!(rest.len(), 10, "{rest:?}");
        assert_eq!(rest.last(), Some(&"line 0999"));
        assert_eq!(dropped, lines.len() as u64 - 100);
        // A writer appending after the cut lands after the kept lines.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"after\n").unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("line 0999\nafter\n"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn trim_all_cuts_only_large_logs() {
        let d = dir();
        std::fs::write(d.join("small.log"), b"x\n").unwrap();
        std::fs::write(d.join("big.log"), vec![b'y'; MAX_LOG_BYTES as usize + 10]).unwrap();
        std::fs::write(
            d.join("big.parked"),
            vec![b'z'; MAX_LOG_BYTES as usize + 10],
        )
        .unwrap();
        assert_eq!(trim_all(&d), 1);
        assert!(std::fs::metadata(d.join("big.log")).unwrap().len() <= KEPT_LOG_BYTES + 100);
        assert_eq!(std::fs::metadata(d.join("small.log")).unwrap().len(), 2);
        assert_eq!(
            std::fs::metadata(d.join("big.parked")).unwrap().len(),
            MAX_LOG_BYTES + 10,
            "only logs"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
