//! A private `nats-server` (the Debian package's binary) on a free port for one test, which
//! the test may kill and start again on the same port; killed on drop.

use std::time::{Duration, Instant};

/// A nats-server this test started.
pub struct OwnNats {
    pub port: u16,
    child: Option<std::process::Child>,
}

/// The nats-server binary: `NATS_SERVER`, else `nats-server` on PATH, else Debian's path.
fn binary() -> String {
    if let Ok(path) = std::env::var("NATS_SERVER") {
        return path;
    }
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("nats-server").is_file())
    });
    if on_path {
        "nats-server".to_owned()
    } else {
        "/usr/sbin/nats-server".to_owned()
    }
}

impl OwnNats {
    /// Starts a server on a free port and waits (bounded) until it accepts connections.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = Self { port, child: None };
        n.spawn();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port.
    pub fn spawn(&mut self) {
        let child = std::process::Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server, or NATS_SERVER)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its clients see the connection drop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
    }
}
