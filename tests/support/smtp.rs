//! A real SMTP server for tests: aiosmtpd (Debian's python3-aiosmtpd, installed by
//! `scripts/install-deps.sh test`) on a free loopback port, delivering into a Maildir that the
//! tests read.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aether::config::Config;

/// The interpreter that has aiosmtpd (Debian's, when another python3 comes first on the PATH).
fn python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python).args(["-c", "import aiosmtpd"]).output().is_ok_and(|out| out.status.success())
    })
}

pub struct SmtpServer {
    pub port: u16,
    pub maildir: tempfile::TempDir,
    python: &'static str,
    child: Option<Child>,
}

/// One received message: its headers and its decoded text part.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: String,
    pub subject: String,
    pub raw: String,
}

impl Received {
    /// The first `http://...` link in the message whose path starts with `path`.
    pub fn link(&self, path: &str) -> Option<String> {
        let unfolded = self.raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
        unfolded.split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>').find_map(|word| {
            let start = word.find("http://")?;
            let url = &word[start..];
            let after_host = url["http://".len()..].find('/').map(|i| &url["http://".len() + i..])?;
            after_host.starts_with(path).then(|| url.trim_end_matches(['.', ',']).to_owned())
        })
    }
}

impl SmtpServer {
    /// `None` (with a note) when aiosmtpd is missing; under CI its absence fails the test.
    pub fn start() -> Option<SmtpServer> {
        let Some(python) = python() else {
            assert!(std::env::var_os("CI").is_none(), "aiosmtpd is missing: scripts/install-deps.sh test installs it");
            eprintln!("skipped: aiosmtpd is not installed (scripts/install-deps.sh test)");
            return None;
        };
        let maildir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = SmtpServer { port, maildir, python, child: None };
        server.resume();
        Some(server)
    }

    /// Starts (again) on the same port and Maildir.
    pub fn resume(&mut self) {
        let child = Command::new(self.python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(self.maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("aiosmtpd did not start");
    }

    /// Points `config` at this server (plain SMTP, no authentication).
    pub fn configure(&self, config: &mut Config) {
        config.email.enabled = true;
        config.email.host = "127.0.0.1".into();
        config.email.port = self.port;
        config.email.security = aether::email::Security::None;
        config.email.from = "Aether <noreply@aether.test>".into();
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        let dir: PathBuf = self.maildir.path().join("mail").join("new");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|path| {
                let raw = std::fs::read_to_string(path).unwrap();
                let header = |name: &str| {
                    raw.lines()
                        .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                        .unwrap_or_default()
                };
                Received { to: header("To"), subject: header("Subject"), raw: raw.clone() }
            })
            .collect()
    }

    /// Waits up to `limit` for `count` messages in all.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let messages = self.messages();
            if messages.len() >= count || tokio::time::Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it: connections are refused until `resume`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
