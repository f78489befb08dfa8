//! A test mailbox: a tiny SMTP server on 127.0.0.1 (port 0) that speaks just enough of the
//! protocol for a real client (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS, no
//! AUTH) and keeps every message it accepts, so the code under test sends mail through its
//! real SMTP path. Messages can be awaited ([`SmtpSink::next`]) and, for scripts in other
//! processes (the browser journeys), are also written as `NNN.eml` files into a directory.
//! The server stops when the sink is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

/// Longest message accepted (a reset mail is a few hundred bytes).
const MAX_MESSAGE: usize = 1 << 20;
/// A silent client is dropped after this long.
const IDLE: Duration = Duration::from_secs(30);

/// One message as it arrived.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// Headers and body, dot-unstuffed, lines joined with `\r\n`.
    pub data: String,
}

impl ReceivedMail {
    /// The value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_owned());
                }
            }
        }
        value
    }

    /// The body (after the blank line that ends the headers), decoded when it was sent as
    /// quoted-printable (as a mail client shows it).
    pub fn body(&self) -> String {
        let raw = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let qp = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        if qp {
            quoted_printable(raw)
        } else {
            raw.to_owned()
        }
    }

    /// The first `http(s)://` link in the body that contains `needle`.
    pub fn link_containing(&self, needle: &str) -> Option<String> {
        self.body()
            .split_whitespace()
            .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
            .find(|w| w.contains(needle))
            .map(str::to_owned)
    }
}

/// The mailbox.
pub struct SmtpSink {
    addr: std::net::SocketAddr,
    mails: Mutex<mpsc::UnboundedReceiver<ReceivedMail>>,
    dir: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// A mailbox that keeps messages in memory only.
    pub async fn start() -> Result<Self> {
        Self::start_in(None).await
    }

    /// A mailbox that also writes each message to `dir/NNN.eml` (the directory is created).
    pub async fn start_in(dir: Option<PathBuf>) -> Result<Self> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).with_context(|| format!("mailbox dir {}", d.display()))?;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let files = dir.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, files, counter) = (tx.clone(), files.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, tx, files, counter).await;
                });
            }
        });
        Ok(Self {
            addr,
            mails: Mutex::new(rx),
            dir,
            task,
        })
    }

    /// The URL the control plane's `ROTOR_SMTP_URL` takes (plain SMTP, no credentials).
    pub fn url(&self) -> String {
        format!("smtp://{}?tls=none", self.addr)
    }

    /// Where messages are written as files, if anywhere.
    pub fn dir(&self) -> Option<&PathBuf> {
        self.dir.as_ref()
    }

    /// The next message, waiting at most `within`.
    pub async fn next(&self, within: Duration) -> Result<ReceivedMail> {
        let mut rx = self.mails.lock().await;
        tokio::time::timeout(within, rx.recv())
            .await
            .context("no mail arrived in time")?
            .context("the mailbox stopped")
    }

    /// Whether a message arrives within `within` (without keeping it).
    pub async fn anything_within(&self, within: Duration) -> bool {
        self.next(within).await.is_ok()
    }
}

/// Decodes quoted-printable text: soft line breaks (`=` at a line's end) joined, `=XX` bytes
/// restored.
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Strips `<…>` and parameters from a `MAIL FROM:`/`RCPT TO:` argument.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg
        .strip_prefix('<')
        .and_then(|a| a.split_once('>'))
        .map_or(arg, |(a, _)| a);
    inner
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn serve(
    stream: TcpStream,
    tx: mpsc::UnboundedSender<ReceivedMail>,
    dir: Option<PathBuf>,
    counter: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 rotor-test-mailbox ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if tokio::time::timeout(IDLE, lines.read_line(&mut line)).await?? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-rotor-test-mailbox\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&line[10..]);
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&line[8..]));
            b"250 OK\r\n"
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            b"250 OK\r\n"
        } else if upper == "DATA" {
            if to.is_empty() {
                write.write_all(b"503 RCPT first\r\n").await?;
                continue;
            }
            write.write_all(b"354 End with <CRLF>.<CRLF>\r\n").await?;
            let mut data: Vec<String> = Vec::new();
            let mut size = 0;
            loop {
                let mut l = String::new();
                if tokio::time::timeout(IDLE, lines.read_line(&mut l)).await?? == 0 {
                    return Ok(());
                }
                let l = l.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                size += l.len() + 2;
                anyhow::ensure!(size <= MAX_MESSAGE, "message too large");
                data.push(l.strip_prefix('.').unwrap_or(l).to_owned());
            }
            let mail = ReceivedMail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data: data.join("\r\n"),
            };
            if let Some(d) = &dir {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let tmp = d.join(format!(".{n:03}.tmp"));
                std::fs::write(
                    &tmp,
                    format!("X-Envelope-To: {}\r\n{}", mail.to.join(", "), mail.data),
                )?;
                std::fs::rename(&tmp, d.join(format!("{n:03}.eml")))?;
            }
            let _ = tx.send(mail);
            b"250 OK queued\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else {
            b"502 Unrecognised command\r\n"
        };
        write.write_all(reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_bodies_are_read_as_a_mail_client_shows_them() {
        let mail = ReceivedMail {
            from: "a@x.io".into(),
            to: vec!["b@x.io".into()],
            data: "Subject: hi\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                   https://x.io/password/reset/rp_0123=\r\n4567 a=3Db caf=C3=A9"
                .into(),
        };
        assert_eq!(
            mail.body(),
            "https://x.io/password/reset/rp_01234567 a=b café"
        );
        assert_eq!(
            mail.link_containing("/reset/").as_deref(),
            Some("https://x.io/password/reset/rp_01234567")
        );
        assert_eq!(mail.header("subject").as_deref(), Some("hi"));
    }
}
