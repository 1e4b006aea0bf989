//! The `aether` binary as a child process, with its stdout lines readable as they come.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_aether");

pub fn aether(data_dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.env("AETHER_DATA_DIR", data_dir).env_remove("AETHER_DATABASE__URL").env_remove("AETHER_CONFIG");
    command
}

/// A running `aether serve` whose stdout lines arrive on a channel.
pub struct Server {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Server {
    pub fn start(mut command: Command) -> Server {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server { child, lines, seen: Vec::new() }
    }

    /// The first line containing `needle`, waiting up to 20 s.
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(needle)) {
            return line.clone();
        }
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// The addresses of the `listening http=ADDR rtmp=ADDR` line.
    pub fn addresses(&mut self) -> (SocketAddr, SocketAddr) {
        let line = self.wait_for("listening");
        let field = |name: &str| -> SocketAddr {
            let start = line.find(&format!("{name}=")).unwrap_or_else(|| panic!("{line}")) + name.len() + 1;
            line[start..].split_whitespace().next().unwrap().trim_matches('"').parse().unwrap()
        };
        (field("http"), field("rtmp"))
    }

    /// Sends SIGTERM and returns whether the process exited successfully within 10 s.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                if !status.success() {
                    eprintln!("server exited with {status}");
                    std::thread::sleep(Duration::from_millis(200));
                    for line in self.lines.try_iter() {
                        eprintln!("server: {line}");
                    }
                }
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().unwrap();
        panic!("the server did not stop within 10 s of SIGTERM");
    }
}

pub fn loopback_serve(data_dir: &Path) -> Command {
    let mut command = aether(data_dir);
    command.args([
        "serve",
        "--http-listen",
        "127.0.0.1:0",
        "--rtmp-listen",
        "127.0.0.1:0",
        "--webrtc-listen",
        "127.0.0.1:0",
    ]);
    command
}

/// Creates an admin (password "long password") and a channel through the CLI on `data_dir`;
/// returns the channel's stream key.
pub fn prepare_channel(data_dir: &Path, username: &str, channel: &str) -> String {
    use std::io::Write as _;
    let mut admin = aether(data_dir)
        .args([
            "admin",
            "create",
            "--username",
            username,
            "--email",
            &format!("{username}@example.com"),
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    admin.stdin.take().unwrap().write_all(b"long password\n").unwrap();
    assert!(admin.wait().unwrap().success());
    create_channel(data_dir, username, channel)
}

/// Creates a channel owned by `owner` through the CLI; returns its stream key.
pub fn create_channel(data_dir: &Path, owner: &str, channel: &str) -> String {
    let created = aether(data_dir).args(["channel", "create", channel, "--owner", owner]).output().unwrap();
    let stdout = String::from_utf8(created.stdout).unwrap();
    stdout.lines().find_map(|line| line.strip_prefix("stream key (shown once): ")).expect(&stdout).to_owned()
}
