//! The edge's mark on a handed-off gRPC connection, written by the edge and read by the tenant.
//!
//! A hosted project's gRPC server API arrives at the shared edge as HTTP/2 with prior
//! knowledge. The edge reads the connection preface and the first request's headers (enough
//! to name the project), then hands the whole connection to the project's process like a
//! WebSocket: the payload is [`MARK`], the plan's call rate for the project, a line end, and
//! then every byte the edge read, preface first. The process serves the connection with its
//! gRPC API and holds the calls on it to that rate.
//!
//! The mark begins with a NUL byte, which no HTTP/1 request head (the payload of every other
//! hand-off) can start with, so a client cannot forge it.

/// HTTP/2's connection preface, the first bytes a client with prior knowledge sends.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a gRPC hand-off's payload begins.
pub const MARK: &[u8] = b"\0rotor-grpc rate=";

/// The payload for a gRPC connection: the mark, `rate` (calls per second for the whole
/// project, 0: no limit) and the bytes the edge read, which must begin with [`PREFACE`].
pub fn payload(rate: u32, read: &[u8]) -> Vec<u8> {
    let rate = rate.to_string();
    let mut out = Vec::with_capacity(MARK.len() + rate.len() + 2 + read.len());
    out.extend_from_slice(MARK);
    out.extend_from_slice(rate.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(read);
    out
}

/// Reads a payload written by [`payload`]: the rate and the connection's first bytes (from
/// the preface on). `None` when the payload is not a gRPC hand-off.
pub fn parse(payload: &[u8]) -> Option<(u32, &[u8])> {
    let rest = payload.strip_prefix(MARK)?;
    let end = rest.iter().position(|&b| b == b'\r')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let rate = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let early = rest[end..].strip_prefix(b"\r\n")?;
    early.starts_with(PREFACE).then_some((rate, early))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_and_nothing_else_reads_as_one() {
        let early = [PREFACE, b"\0\0\0\x04\0\0\0\0\0".as_slice()].concat();
        for rate in [0, 7, 200, u32::MAX] {
            assert_eq!(
                parse(&payload(rate, &early)),
                Some((rate, early.as_slice()))
            );
        }
        let http = b"GET /connection/websocket HTTP/1.1\r\nHost: a\r\n\r\n";
        for bad in [
            http.as_slice(),
            b"\0rotor-grpc rate=\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\0rotor-grpc rate=x\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\0rotor-grpc rate=99999999999\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\0rotor-grpc rate=5\r\nGET / HTTP/1.1\r\n\r\n",
            b"rotor-grpc rate=5\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
