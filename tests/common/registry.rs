//! Real CNCF distribution registries (Debian's `docker-registry`) on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub enum Auth {
    Anonymous,
    Htpasswd {
        user: String,
        password: String,
    },
    Token {
        realm: String,
        cert: PathBuf,
    },
    /// A pull-through cache of another registry.
    Proxy {
        remote: String,
    },
}

pub const TOKEN_SERVICE: &str = "test-registry";
pub const TOKEN_ISSUER: &str = "test-issuer";

/// TLS for the registry: its certificate and key, and CAs it requires client certs from.
pub struct Tls {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read(&mut buf)
        .map(|n| n > 0 && buf.starts_with(b"HTTP/1."))
        .unwrap_or(false)
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        Self::start_with(auth, None)
    }

    pub fn start_with(auth: Auth, tls: Option<&Tls>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let tls_yaml = match tls {
            None => String::new(),
            Some(t) => {
                let mut y = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    t.certificate.display(),
                    t.key.display()
                );
                if let Some(ca) = &t.client_ca {
                    y.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
                }
                y
            }
        };
        let auth_yaml = match &auth {
            Auth::Anonymous | Auth::Proxy { .. } => String::new(),
            Auth::Htpasswd { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd");
                assert!(out.status.success());
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    file.display()
                )
            }
            Auth::Token { realm, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let proxy_yaml = match &auth {
            Auth::Proxy { remote } => format!("proxy:\n  remoteurl: {remote}\n"),
            _ => String::new(),
        };
        for _ in 0..10 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: skiff-test-secret\n{tls_yaml}{auth_yaml}{proxy_yaml}",
                dir.path().join("data").display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log = dir.path().join("registry.log");
            let logf = std::fs::File::create(&log).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::from(logf.try_clone().unwrap()))
                .stderr(Stdio::from(logf))
                .spawn()
                .expect("start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if answers(port) {
                    return Registry {
                        child,
                        port,
                        dir,
                        log,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start; see its log in {}",
            dir.path().display()
        );
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Successful GETs of one blob, from the access log.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("\"GET /v2/")
                    && l.contains(&format!("/blobs/{digest}"))
                    && l.contains("\" 200 ")
            })
            .count()
    }

    /// Every request line the registry served.
    pub fn requests(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") || l.contains("\"HEAD /v2/"))
            .count()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pushes an image from an OCI layout with skopeo (which also checks interop).
pub fn push(layout: &std::path::Path, name: &str, dest: &str, extra: &[&str]) {
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .args(extra)
        .arg(format!("oci:{}:{name}", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo push of {name} to {dest} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
