//! A TCP fault-injection proxy on 127.0.0.1, between skiff and a real registry: it resets,
//! stalls or cuts connections after some bytes of the registry's answer, or answers blob
//! requests itself with 429/500/503, for the first few connections or requests only.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyFault {
    /// Close with a TCP reset after this many bytes from the registry.
    ResetAfter(usize),
    /// Stop sending for this long after this many bytes, then go on.
    StallAfter(usize, Duration),
    /// Close cleanly (FIN) after this many bytes: a truncated body.
    TruncateAfter(usize),
    /// Answer blob requests with this status (and `Retry-After` seconds, if any).
    Status(u16, Option<u64>),
    /// Relay half of a blob's answer, stop for this long, then the rest.
    StallBlob(Duration),
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    /// Connections that reached the byte limit, or blob requests, so far.
    pub seen: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Faults the first `times` connections that carry more than the byte limit (or the first
    /// `times` blob requests); everything after passes.
    pub fn start(upstream: SocketAddr, fault: ProxyFault, times: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || serve(client, upstream, fault, times, counter));
            }
        });
        FaultProxy { addr, seen }
    }
}

fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: ProxyFault,
    times: usize,
    counter: Arc<AtomicUsize>,
) {
    if let ProxyFault::Status(..) | ProxyFault::StallBlob(_) = fault {
        // Requests are inspected one at a time: the head decides, the rest is relayed.
        return blob_faults(client, upstream, fault, times, counter);
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let mut sent = 0usize;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let limit = match fault {
            ProxyFault::ResetAfter(b)
            | ProxyFault::TruncateAfter(b)
            | ProxyFault::StallAfter(b, _) => b,
            ProxyFault::Status(..) | ProxyFault::StallBlob(_) => usize::MAX,
        };
        // The first `times` connections that carry more than `limit` bytes get the fault.
        if sent + n > limit && sent <= limit && counter.fetch_add(1, Ordering::SeqCst) < times {
            let head = limit.saturating_sub(sent);
            let _ = client.write_all(&buf[..head]);
            match fault {
                ProxyFault::ResetAfter(_) => {
                    // SO_LINGER 0: close() sends RST.
                    let _ = nix::sys::socket::setsockopt(
                        &client,
                        nix::sys::socket::sockopt::Linger,
                        &nix::libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        },
                    );
                    return;
                }
                ProxyFault::TruncateAfter(_) => {
                    let _ = client.shutdown(Shutdown::Both);
                    return;
                }
                ProxyFault::StallAfter(_, d) => {
                    std::thread::sleep(d);
                    let _ = client.write_all(&buf[head..n]);
                    sent += n;
                    continue;
                }
                ProxyFault::Status(..) | ProxyFault::StallBlob(_) => unreachable!(),
            }
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = client.shutdown(Shutdown::Write);
}

/// Reads a request head; while faults remain, answers blob requests with a status (keeping
/// the connection) or stalls them halfway; relays everything over an upstream connection of
/// its own.
fn blob_faults(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: ProxyFault,
    times: usize,
    counter: Arc<AtomicUsize>,
) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match client.read(&mut byte) {
                // Not HTTP (skiff tries TLS first on an insecure registry): close at once,
                // as a plain-HTTP registry's refusal would end the handshake.
                Ok(1) if head.is_empty() && !byte[0].is_ascii_uppercase() => return,
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let is_blob = text
            .lines()
            .next()
            .is_some_and(|l| l.contains("/blobs/sha256:"));
        let faulted = is_blob && counter.fetch_add(1, Ordering::SeqCst) < times;
        let mut stall = None;
        if faulted && let ProxyFault::StallBlob(d) = fault {
            stall = Some(d);
        } else if faulted && let ProxyFault::Status(code, retry_after) = fault {
            let reason = match code {
                429 => "Too Many Requests",
                503 => "Service Unavailable",
                _ => "Internal Server Error",
            };
            let retry = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let body = format!("{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"injected\"}}]}}");
            let _ = write!(
                client,
                "HTTP/1.1 {code} {reason}\r\n{retry}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            continue;
        }
        // Relay this request (GETs and HEADs carry no body) and its whole answer.
        let Ok(mut server) = TcpStream::connect(upstream) else {
            return;
        };
        let relayed = text.replace("Connection: keep-alive", "Connection: close");
        let relayed = if relayed.to_ascii_lowercase().contains("\r\nconnection:") {
            relayed
        } else {
            relayed.replacen("\r\n", "\r\nConnection: close\r\n", 1)
        };
        if server.write_all(relayed.as_bytes()).is_err() {
            return;
        }
        // The answer, until the registry closes; then this connection ends too and the
        // client opens another for its next request.
        let mut answer = Vec::new();
        let _ = server.read_to_end(&mut answer);
        if let Some(d) = stall {
            let half = answer.len() / 2;
            let _ = client.write_all(&answer[..half]);
            let _ = client.flush();
            std::thread::sleep(d);
            let _ = client.write_all(&answer[half..]);
        } else {
            let _ = client.write_all(&answer);
        }
        return;
    }
}
