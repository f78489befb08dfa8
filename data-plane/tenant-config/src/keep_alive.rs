//! The edge's grant to keep a handed-off connection open for further server API calls, carried
//! in one header of the rewritten head the edge hands over ([`HEADER`]), written by the edge and
//! read by the tenant.
//!
//! A handed-off socket normally carries one request: the edge rewrote that one head (prefix
//! stripped, Rotor's credentials removed, `X-Forwarded-For` set) and nothing behind it reaches
//! the tenant unrewritten. A project's own backend, though, publishes over a pool of kept-alive
//! connections, and sending each call through the shared edge makes it wait behind every other
//! project's traffic there. So when a server API call presents one of the project's own keys and
//! the client asked for keep-alive, the edge grants the connection to the tenant for follow-up
//! API calls, saying in this header which host each must name and at what rate the plan lets
//! them through. The edge drops any copy of the header
//! a client sends, so only the edge can grant it.

/// The header (lower case, as header maps store names).
pub const HEADER: &str = "x-rotor-keep";

/// The grant: the host every follow-up must name, exactly as the first request did (lower
/// case), and how many follow-ups per second the plan lets through for the whole project
/// (0: no limit).
///
/// Only projects served at their own host are granted keep-alive. Under the `/t/{slug}` path
/// form every project shares one origin, so an HTTP client's connection pool mixes projects on
/// one connection, and a connection pinned to one project's process would have to refuse the
/// others' requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    pub rate: u32,
    pub host: String,
}

impl KeepAlive {
    /// The header's value: `rate=N; host=name`.
    pub fn header_value(&self) -> String {
        format!("rate={}; host={}", self.rate, self.host)
    }

    /// Reads a header value written by [`Self::header_value`]; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        let (rate, host) = value.split_once("; ")?;
        let rate = rate.strip_prefix("rate=")?.parse().ok()?;
        let host = host.strip_prefix("host=")?;
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && !b.is_ascii_uppercase());
        valid.then(|| Self {
            rate,
            host: host.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_reads_back_as_written_and_nothing_else_reads_as_one() {
        for grant in [
            KeepAlive {
                rate: 200,
                host: "demo-1.rotor.example".into(),
            },
            KeepAlive {
                rate: 0,
                host: "demo.rotor.example:8080".into(),
            },
        ] {
            assert_eq!(KeepAlive::parse(&grant.header_value()), Some(grant));
        }
        for bad in [
            "",
            "rate=1",
            "rate=x; host=a",
            "rate=1; prefix=/t/a",
            "rate=1; host=",
            "rate=1; host=A.example",
            "rate=1; host=a b",
            "rate=1; other=x",
        ] {
            assert_eq!(KeepAlive::parse(bad), None, "{bad}");
        }
    }
}
