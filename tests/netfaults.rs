//! Network faults between skiff and a real registry, injected by a TCP proxy on loopback:
//! connections reset or cut mid-blob, a stalled transfer, 429 (with and without
//! Retry-After), 500 and 503. Each pull either completes with the right digests or fails
//! with a clear error within a bounded time, and the store never holds a blob whose bytes
//! do not match its name (fsck).

mod common;

use common::images::images;
use common::proxy::{FaultProxy, ProxyFault};
use common::registry::{Auth, Registry, push};
use common::{Env, fsck_ok, require, run};
use std::time::{Duration, Instant};

enum Expect {
    Pulled,
    Fails(&'static str),
}

#[test]
fn pulls_through_network_faults() {
    if !require(&["docker-registry", "skopeo"]) {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    push(
        &images().layout,
        "busybox",
        &format!("{}/test/busybox:1", reg.addr()),
        &[],
    );
    let upstream = reg.addr().parse().unwrap();
    let stall = Duration::from_secs(20);
    let cases: Vec<(&str, ProxyFault, usize, Expect)> = vec![
        (
            "reset mid-blob, twice",
            ProxyFault::ResetAfter(200_000),
            2,
            Expect::Pulled,
        ),
        (
            "cut mid-blob, twice",
            ProxyFault::TruncateAfter(200_000),
            2,
            Expect::Pulled,
        ),
        (
            "stalled mid-blob",
            ProxyFault::StallAfter(200_000, stall),
            1,
            Expect::Pulled,
        ),
        (
            "503 twice",
            ProxyFault::Status(503, None),
            2,
            Expect::Pulled,
        ),
        (
            "500 twice",
            ProxyFault::Status(500, None),
            2,
            Expect::Pulled,
        ),
        (
            "429 with Retry-After",
            ProxyFault::Status(429, Some(1)),
            2,
            Expect::Pulled,
        ),
        (
            "429 without Retry-After",
            ProxyFault::Status(429, None),
            2,
            Expect::Pulled,
        ),
        (
            "reset every time",
            ProxyFault::ResetAfter(200_000),
            1000,
            Expect::Fails("127.0.0.1"),
        ),
        (
            "503 every time",
            ProxyFault::Status(503, None),
            1000,
            Expect::Fails("503"),
        ),
    ];
    let (pulls, mut faults) = (cases.len(), 0);
    for (what, fault, times, expect) in cases {
        let proxy = FaultProxy::start(upstream, fault, times);
        let env = Env::new();
        let name = format!("{}/test/busybox:1", proxy.addr);
        let start = Instant::now();
        let out = run(env.skiff().env("SKIFF_READ_TIMEOUT", "3").args([
            "--format",
            "json",
            "pull",
            "--tls-verify=false",
            &name,
        ]));
        let took = start.elapsed();
        eprintln!("{what}: {took:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            took < Duration::from_secs(90),
            "{what}: bounded time, took {took:?}"
        );
        match expect {
            Expect::Pulled => {
                assert!(out.status.success(), "{what}: {stderr}");
                let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(
                    report["manifest_digest"].as_str().unwrap(),
                    images().busybox_manifest.to_string(),
                    "{what}"
                );
            }
            Expect::Fails(names) => {
                assert!(!out.status.success(), "{what}: should fail");
                assert!(stderr.contains(names), "{what}: a clear error: {stderr}");
            }
        }
        let seen = proxy.seen.load(std::sync::atomic::Ordering::SeqCst);
        assert!(seen > 0, "{what}: the fault was on the path");
        faults += seen.min(times);
        // Whatever happened, no blob in the store differs from its name.
        fsck_ok(&env);
    }
    println!(
        "reliability: network faults via a loopback proxy (reset, cut, stall, 500, 503, 429 with and without Retry-After) | {pulls} pulls, {faults} faults | pass"
    );
}
