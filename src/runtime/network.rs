//! Network namespaces for containers and pods: loopback up, outbound access through
//! slirp4netns or pasta (user-mode networking: no root, no bridge), and the /etc/hosts and
//! /etc/resolv.conf that go with them.
//!
//! The helpers must run in the host's namespaces, so they are spawned before the shim
//! enters its user namespace and told to attach once the network namespace exists.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "{program} is not installed (Debian package {package}): needed for --network {program}"
    )]
    Missing {
        program: &'static str,
        package: &'static str,
    },
    #[error("starting {program}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {program}")]
    Helper {
        program: &'static str,
        #[source]
        source: crate::proc::ProcError,
    },
    #[error("{program} did not configure the network within {secs} s: {log}")]
    NotReady {
        program: &'static str,
        secs: u64,
        log: String,
    },
    #[error("--network pasta is for rootless use; as root use slirp4netns")]
    RootPasta,
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ip link set lo up: {0}")]
    LoopbackUp(std::process::ExitStatus),
    #[error("{option} {value:?}: expected {expected}")]
    BadOption {
        option: String,
        value: String,
        expected: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// The host's network namespace.
    Host,
    /// A new network namespace (loopback only, down).
    None,
    /// A new network namespace made by the shim, loopback up.
    Private,
    /// Private, with outbound access through slirp4netns (user-mode TCP/IP). The host's
    /// loopback stays out of reach unless asked for, as in podman.
    Slirp4netns { allow_host_loopback: bool },
    /// Private, with outbound access through pasta (package passt); extra pasta arguments
    /// as podman takes them (`pasta:--map-gw`).
    Pasta { args: Vec<String> },
}

impl Network {
    /// podman's syntax: `host`, `none`, `private`, `slirp4netns[:allow_host_loopback=true]`,
    /// `pasta[:ARG,ARG...]`.
    pub fn parse(text: &str) -> Result<Self, NetworkError> {
        let (name, options) = text.split_once(':').unwrap_or((text, ""));
        let bad = |expected| NetworkError::BadOption {
            option: "--network".into(),
            value: text.into(),
            expected,
        };
        Ok(match (name, options) {
            ("host", "") => Self::Host,
            ("none", "") => Self::None,
            ("private", "") => Self::Private,
            ("slirp4netns", o) => Self::Slirp4netns {
                allow_host_loopback: match o {
                    "" | "allow_host_loopback=false" => false,
                    "allow_host_loopback=true" => true,
                    _ => return Err(bad("slirp4netns[:allow_host_loopback=true|false]")),
                },
            },
            ("pasta", o) => Self::Pasta {
                args: o
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            },
            _ => {
                return Err(bad(
                    "host, none, private, slirp4netns[:allow_host_loopback=true] or pasta[:ARGS]",
                ));
            }
        })
    }
    /// The mode's name, without its options (as `pod ls` shows it).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::None => "none",
            Self::Private => "private",
            Self::Slirp4netns { .. } => "slirp4netns",
            Self::Pasta { .. } => "pasta",
        }
    }
    /// Whether the shim makes a network namespace and brings loopback up in it.
    pub fn is_private(&self) -> bool {
        matches!(
            self,
            Self::Private | Self::Slirp4netns { .. } | Self::Pasta { .. }
        )
    }
}

fn program_for(net: &Network) -> Option<(&'static str, &'static str)> {
    match net {
        Network::Slirp4netns { .. } => Some(("slirp4netns", "slirp4netns")),
        Network::Pasta { .. } => Some(("pasta", "passt")),
        _ => None,
    }
}

/// A job pod's network when none is asked for: outbound access if slirp4netns is installed.
pub fn job_default(asked: Option<&str>) -> String {
    let fallback = || match available("slirp4netns") {
        true => "slirp4netns",
        false => "private",
    };
    asked.unwrap_or_else(fallback).to_string()
}

/// Whether a helper program is installed.
pub fn available(program: &str) -> bool {
    crate::proc::which(program).is_some()
}

/// A user-mode network helper, started but not yet attached.
pub struct PendingHelper {
    program: &'static str,
    child: Child,
    log: std::path::PathBuf,
    /// slirp4netns's `--exit-fd`: it exits once this, our end, closes (also when we die).
    exit: Option<std::os::fd::OwnedFd>,
}

/// A helper attached to the namespace; stopped when dropped.
pub struct Helper {
    child: Child,
    exit: Option<std::os::fd::OwnedFd>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        // A pod of root in ids of its own cannot signal its helper, which runs as host root
        // (it sees its exit fd close, or, pasta, its namespace go); waiting would never end.
        let killed = self.child.kill().is_ok();
        drop(self.exit.take());
        if killed {
            let _ = self.child.wait();
        }
    }
}

/// Spawns the helper for `net` (none for host, none or private) in the host's namespaces,
/// waiting for the go. `target` is the process whose namespaces it will join; `rootless`
/// whether that process has a user namespace of its own.
pub fn prepare_helper(
    net: &Network,
    target: u32,
    rootless: bool,
    log: &Path,
) -> Result<Option<PendingHelper>, NetworkError> {
    let Some((program, package)) = program_for(net) else {
        return Ok(None);
    };
    if !rootless && program == "pasta" {
        // pasta drops to nobody as root and can no longer open the namespace (podman, too,
        // offers pasta to rootless users only).
        return Err(NetworkError::RootPasta);
    }
    let path = crate::proc::which(program).ok_or(NetworkError::Missing { program, package })?;
    let mut args: Vec<String> = vec![];
    // The read end goes to slirp4netns (inherited through the helper's exec), ours is
    // close-on-exec.
    let mut exit_pipe = None;
    match net {
        Network::Slirp4netns {
            allow_host_loopback,
        } => {
            use std::os::fd::AsRawFd;
            let (read, write) = rustix::pipe::pipe().map_err(|e| NetworkError::Sys {
                what: "making slirp4netns's exit pipe".into(),
                source: e.into(),
            })?;
            rustix::io::fcntl_setfd(&write, rustix::io::FdFlags::CLOEXEC).map_err(|e| {
                NetworkError::Sys {
                    what: "making slirp4netns's exit pipe".into(),
                    source: e.into(),
                }
            })?;
            args.push(format!("--exit-fd={}", read.as_raw_fd()));
            exit_pipe = Some((read, write));
            args.extend(["--configure".into(), "--mtu=65520".into()]);
            if !allow_host_loopback {
                args.push("--disable-host-loopback".into());
            }
            if rootless {
                args.push(format!("--userns-path=/proc/{target}/ns/user"));
            }
            args.extend([target.to_string(), "tap0".into()]);
        }
        Network::Pasta { args: extra } => {
            args.extend([
                "--config-net".into(),
                "--foreground".into(),
                "--quiet".into(),
            ]);
            // podman's default: the gateway address is not the host's loopback; `--map-gw`
            // asks for it (pasta itself maps by default, so that flag is ours to drop).
            if !extra.iter().any(|a| a == "--map-gw") {
                args.push("--no-map-gw".into());
            }
            args.extend(extra.iter().filter(|a| *a != "--map-gw").cloned());
            args.extend(["--netns".into(), format!("/proc/{target}/ns/net")]);
            if rootless {
                args.extend(["--userns".into(), format!("/proc/{target}/ns/user")]);
            } else {
                args.push("--netns-only".into());
            }
        }
        _ => unreachable!("program_for returned a helper"),
    }
    let log_file = std::fs::File::create(log).map_err(|source| NetworkError::Sys {
        what: format!("creating {}", log.display()),
        source,
    })?;
    let helper = crate::proc::HelperCmd::NetHelper {
        program: path,
        args,
    };
    let child = helper
        .command()
        .map_err(|source| NetworkError::Helper { program, source })?
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|source| NetworkError::Spawn { program, source })?;
    Ok(Some(PendingHelper {
        program,
        child,
        log: log.to_path_buf(),
        // Our copy of the read end closes here: only slirp4netns holds it.
        exit: exit_pipe.map(|(_read, write)| write),
    }))
}

impl PendingHelper {
    /// The network namespace exists now: let the helper attach, and wait until it has
    /// configured the interface (a default route appears).
    pub fn attach(mut self, timeout: Duration) -> Result<Helper, NetworkError> {
        let program = self.program;
        let log = std::mem::take(&mut self.log);
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"go");
        }
        let helper = Helper {
            child: self.child,
            exit: self.exit.take(),
        };
        let start = Instant::now();
        while start.elapsed() < timeout {
            if has_default_route() {
                return Ok(helper);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        Err(NetworkError::NotReady {
            program,
            secs: timeout.as_secs(),
            log: log.trim().replace('\n', "; "),
        })
    }
}

fn has_default_route() -> bool {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| {
            t.lines()
                .skip(1)
                .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
        })
        .unwrap_or(false)
}

/// `skiff __net-helper PROGRAM ARGS...`: waits for the go on stdin, then becomes PROGRAM.
pub fn helper_main(program: &Path, rest: &[String]) -> i32 {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut go = [0u8; 2];
    if std::io::stdin().read_exact(&mut go).is_err() {
        return 0; // the shim gave up before the namespace existed
    }
    let err = Command::new(program).args(rest).stdin(Stdio::null()).exec();
    crate::proc::tell_parent(format_args!("skiff: running {}: {err}", program.display()));
    127
}

/// A new network namespace for the calling process, loopback up.
pub fn enter_private() -> Result<(), NetworkError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::Sys {
        what: "creating a network namespace".into(),
        source: e.into(),
    })?;
    match Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(NetworkError::LoopbackUp(s)),
        Err(source) => Err(NetworkError::Sys {
            what: "ip link set lo up (package iproute2)".into(),
            source,
        }),
    }
}

/// Joins the network namespace of `pid` (a pod's).
pub fn join(pid: u32) -> Result<(), NetworkError> {
    let sys = |what: &str, source: std::io::Error| NetworkError::Sys {
        what: format!("{what} of pid {pid}"),
        source,
    };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| sys("opening the network namespace", e))?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| sys("joining the network namespace", e.into()))
}

/// /etc/hosts: localhost, the container's own name, then `extra` (--add-host, pod members).
pub fn hosts_file(hostname: &str, extra: &[(String, String)]) -> String {
    let mut text = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for (name, ip) in extra {
        text.push_str(&format!("{ip}\t{name}\n"));
    }
    text
}

/// /etc/resolv.conf: `--dns` servers if given, else what the network offers: the host's
/// file on the host network, slirp4netns's built-in forwarder, the host's non-loopback
/// servers through pasta, nothing where there is no way out.
pub fn resolv_conf(net: &Network, dns: &[String], host_resolv: &str) -> String {
    if !dns.is_empty() {
        return dns.iter().map(|s| format!("nameserver {s}\n")).collect();
    }
    match net {
        Network::Host => host_resolv.to_string(),
        Network::Slirp4netns { .. } => "nameserver 10.0.2.3\n".into(),
        Network::Pasta { .. } => host_resolv
            .lines()
            .filter(|l| {
                let mut f = l.split_whitespace();
                f.next() != Some("nameserver")
                    || f.next()
                        .is_some_and(|ip| !ip.starts_with("127.") && ip != "::1")
            })
            .map(|l| format!("{l}\n"))
            .collect(),
        Network::None | Network::Private => String::new(),
    }
}

/// Appends lines to a pod's shared hosts file in place: containers bind-mount that very
/// file, so it must keep its inode.
pub fn append_hosts(path: &Path, entries: &[(String, String)]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    let text: String = entries
        .iter()
        .map(|(name, ip)| format!("{ip}\t{name}\n"))
        .collect();
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_table() {
        let host = "search example\nnameserver 127.0.0.53\nnameserver 10.1.1.1\n";
        let cases: &[(Network, &[&str], &str)] = &[
            (Network::Host, &[], host),
            (Network::Private, &[], ""),
            (
                Network::Slirp4netns {
                    allow_host_loopback: false,
                },
                &[],
                "nameserver 10.0.2.3\n",
            ),
            (
                Network::Pasta { args: vec![] },
                &[],
                "search example\nnameserver 10.1.1.1\n",
            ),
            (Network::Host, &["9.9.9.9"], "nameserver 9.9.9.9\n"),
        ];
        for (net, dns, want) in cases {
            let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
            assert_eq!(resolv_conf(net, &dns, host), *want, "{net:?} {dns:?}");
        }
    }

    #[test]
    fn hosts_lists_extra_names() {
        let h = hosts_file("box", &[("db".into(), "127.0.0.1".into())]);
        assert!(h.contains("127.0.1.1\tbox\n") && h.ends_with("127.0.0.1\tdb\n"));
    }
}
