//! A real S3-compatible server for tests: s3s-fs (installed by `scripts/install-deps.sh test`)
//! on a free loopback port over a temp directory, with one bucket and credentials. It can be
//! stopped and started again on the same port and data, to play a storage outage.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aether::config::Config;
use aether_vod::{StorageConfig, StorageKind};

pub const BUCKET: &str = "aether-test";
const ACCESS_KEY: &str = "aether-test-key";
const SECRET_KEY: &str = "aether-test-secret";

pub struct S3Server {
    pub port: u16,
    pub root: tempfile::TempDir,
    child: Option<Child>,
}

impl S3Server {
    /// `None` (with a note) when s3s-fs is not installed; under CI its absence fails the test.
    pub fn start() -> Option<S3Server> {
        if Command::new("s3s-fs").arg("--version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "s3s-fs is missing: scripts/install-deps.sh test installs it");
            eprintln!("skipped: s3s-fs is not installed (scripts/install-deps.sh test)");
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = S3Server { port, root, child: None };
        server.resume();
        Some(server)
    }

    /// Starts (again) on the same port and data.
    pub fn resume(&mut self) {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("s3s-fs did not start");
    }

    /// Stops it: requests are refused until `resume`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn storage_config(&self) -> StorageConfig {
        StorageConfig {
            kind: StorageKind::S3,
            path: None,
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            bucket: Some(BUCKET.into()),
            region: Some("us-east-1".into()),
            path_style: true,
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            presigned_urls: true,
        }
    }

    pub fn configure(&self, config: &mut Config) {
        config.storage = self.storage_config();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
