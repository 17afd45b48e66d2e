//! Faults a real registry will not produce, from an in-process fake: wrong bytes, truncated
//! bodies, servers ignoring Range, 429 and 5xx, oversized bodies, schema 1, and a redirect to
//! another host that must not receive the Authorization header.

mod common;

use common::http::{Request, Server, respond};
use common::{Env, fails, fsck_ok, json};
use skiff::oci::digest::Digest;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    BadDigest,
    Truncate,
    TruncateThenIgnoreRange,
    TooMany {
        times: usize,
        retry_after: Option<u64>,
    },
    Unavailable {
        times: usize,
    },
    AlwaysFail,
    SizeSmallerThanBlob,
    HugeManifest,
    Schema1,
    RedirectBlobs,
    ManifestAltered,
    InsufficientScope,
}

#[derive(Default)]
struct Seen {
    layer_requests: Vec<Option<String>>,
    authorization_on_redirect_target: Vec<bool>,
    authorization_on_origin: usize,
    token_scopes: Vec<Vec<String>>,
}

struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
    layer_digest: Digest,
}

fn image(fault: Fault) -> Image {
    // Incompressible content so that "half the body" is a real cut.
    let mut data = vec![0u8; 256 * 1024];
    let mut x: u32 = 12345;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    t.append_data(&mut h, "data.bin", &data[..]).unwrap();
    let tar = t.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let layer_digest = Digest::sha256_of(&layer);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(&tar).to_string()]}}).to_string().into_bytes();
    let size = if fault == Fault::SizeSmallerThanBlob {
        layer.len() - 10
    } else {
        layer.len()
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest.to_string(), "size": size}],
    })
    .to_string()
    .into_bytes();
    Image {
        manifest,
        config,
        layer,
        layer_digest,
    }
}

struct Fake {
    server: Server,
    _target: Option<Server>,
    seen: Arc<Mutex<Seen>>,
    img: Arc<Image>,
}

const USER_PASS_B64: &str = "dXNlcjpmYXVsdC1zZWNyZXQ="; // user:fault-secret

fn start(fault: Fault) -> Fake {
    let img = Arc::new(image(fault));
    let seen = Arc::new(Mutex::new(Seen::default()));
    // A second origin that serves blobs for the redirect case.
    let target = (fault == Fault::RedirectBlobs).then(|| {
        let (img, seen) = (img.clone(), seen.clone());
        Server::start(move |req: Request, s: &mut TcpStream| {
            seen.lock()
                .unwrap()
                .authorization_on_redirect_target
                .push(req.header("authorization").is_some());
            respond(s, 200, &[], &img.layer);
        })
    });
    let target_addr = target.as_ref().map(|t| t.addr());
    let (img2, seen2) = (img.clone(), seen.clone());
    let own_addr = Arc::new(std::sync::OnceLock::<String>::new());
    let own = own_addr.clone();
    let server = Server::start(move |req: Request, s: &mut TcpStream| {
        let img = &img2;
        if fault == Fault::InsufficientScope {
            // A token server on the same origin, and a registry that wants a second scope.
            let realm = format!(
                "Bearer realm=\"http://{}/token\",service=\"fake\"",
                own.get().unwrap()
            );
            if req.path == "/token" {
                let scopes = req.query_all("scope");
                let token = if scopes.iter().any(|s| s == "repository:shared/base:pull") {
                    "T2"
                } else {
                    "T1"
                };
                seen2.lock().unwrap().token_scopes.push(scopes);
                return respond(
                    s,
                    200,
                    &[],
                    format!("{{\"token\":\"{token}\",\"expires_in\":300}}").as_bytes(),
                );
            }
            match req.header("authorization") {
                Some("Bearer T2") => {}
                Some("Bearer T1") if req.path != "/v2/" => {
                    let ch = format!(
                        "{realm},scope=\"repository:test/img:pull repository:shared/base:pull\",error=\"insufficient_scope\""
                    );
                    return respond(s, 401, &[("WWW-Authenticate", ch)], b"");
                }
                _ => return respond(s, 401, &[("WWW-Authenticate", realm)], b""),
            }
        }
        let authorized = req.header("authorization") == Some(&format!("Basic {USER_PASS_B64}"));
        if authorized {
            seen2.lock().unwrap().authorization_on_origin += 1;
        }
        if fault == Fault::RedirectBlobs && !authorized {
            return respond(
                s,
                401,
                &[("WWW-Authenticate", "Basic realm=\"fake\"".into())],
                b"",
            );
        }
        let path = req.path.as_str();
        if path == "/v2/" {
            return respond(s, 200, &[], b"{}");
        }
        if path.starts_with("/v2/test/img/manifests/") {
            let body = match fault {
                Fault::HugeManifest => vec![b' '; 5 << 20],
                Fault::ManifestAltered => [img.manifest.as_slice(), b" "].concat(),
                Fault::Schema1 => {
                    br#"{"schemaVersion":1,"name":"test/img","tag":"1","fsLayers":[],"history":[]}"#
                        .to_vec()
                }
                _ => img.manifest.clone(),
            };
            return respond(
                s,
                200,
                &[(
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                &body,
            );
        }
        let Some(digest) = path.strip_prefix("/v2/test/img/blobs/") else {
            return respond(s, 404, &[], b"");
        };
        if digest == Digest::sha256_of(&img.config).to_string() {
            return respond(s, 200, &[], &img.config);
        }
        if digest != img.layer_digest.to_string() {
            return respond(
                s,
                404,
                &[],
                br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            );
        }
        let range = req.header("range").map(str::to_string);
        let n = {
            let mut st = seen2.lock().unwrap();
            st.layer_requests.push(range.clone());
            st.layer_requests.len()
        };
        let layer = &img.layer;
        let half = layer.len() / 2;
        let cut = |s: &mut TcpStream| {
            let head = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                layer.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&layer[..half]);
        };
        let ranged = |s: &mut TcpStream, range: &str| {
            let start: usize = range
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap();
            let cr = format!("bytes {start}-{}/{}", layer.len() - 1, layer.len());
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nConnection: close\r\nContent-Length: {}\r\nContent-Range: {cr}\r\n\r\n",
                layer.len() - start
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&layer[start..]);
        };
        match fault {
            Fault::BadDigest => {
                let mut bad = layer.clone();
                bad[100] ^= 0xff;
                respond(s, 200, &[], &bad)
            }
            Fault::Truncate => match (n, &range) {
                (1, _) => cut(s),
                (_, Some(r)) => ranged(s, r),
                _ => respond(s, 200, &[], layer),
            },
            Fault::TruncateThenIgnoreRange => match n {
                1 => cut(s),
                _ => respond(s, 200, &[], layer),
            },
            Fault::TooMany { times, retry_after } if n <= times => {
                let h: Vec<(&str, String)> = retry_after
                    .map(|r| ("Retry-After", r.to_string()))
                    .into_iter()
                    .collect();
                respond(
                    s,
                    429,
                    &h,
                    br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
                )
            }
            Fault::Unavailable { times } if n <= times => respond(s, 503, &[], b"busy"),
            Fault::AlwaysFail => respond(
                s,
                500,
                &[],
                br#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#,
            ),
            Fault::RedirectBlobs => {
                let loc = format!(
                    "http://{}/blob/{}",
                    target_addr.as_deref().unwrap(),
                    img.layer_digest
                );
                respond(s, 307, &[("Location", loc)], b"")
            }
            _ => respond(s, 200, &[], layer),
        }
    });
    own_addr.set(server.addr()).unwrap();
    Fake {
        server,
        _target: target,
        seen,
        img,
    }
}

fn name(f: &Fake) -> String {
    format!("{}/test/img:1", f.server.addr())
}

fn no_partial_blobs(env: &Env, f: &Fake) {
    fsck_ok(env);
    assert!(
        !env.store()
            .join("blobs/sha256")
            .join(f.img.layer_digest.hex())
            .exists(),
        "no blob under the layer's name"
    );
    assert_eq!(
        common::count_files(&env.store().join("ingest")),
        0,
        "no leftover ingest file"
    );
}

#[test]
fn wrong_bytes_and_wrong_sizes_never_enter_the_store() {
    for fault in [Fault::BadDigest, Fault::SizeSmallerThanBlob] {
        let f = start(fault);
        let env = Env::new();
        let e = fails(env.skiff().args(["pull", "--tls-verify=false", &name(&f)]));
        let want = if fault == Fault::BadDigest {
            "content hashes to"
        } else {
            "size mismatch"
        };
        assert!(
            e.contains(want) && e.contains(&f.img.layer_digest.to_string()),
            "{fault:?}: {e}"
        );
        no_partial_blobs(&env, &f);
    }
}

#[test]
fn truncated_bodies_resume_with_range_or_restart() {
    let f = start(Fault::Truncate);
    let env = Env::new();
    let r = json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &name(&f)]),
    );
    assert_eq!(r["layers"][0]["downloaded"], true);
    let seen = f.seen.lock().unwrap().layer_requests.clone();
    assert_eq!(
        seen,
        vec![None, Some(format!("bytes={}-", f.img.layer.len() / 2))],
        "resumed where it broke"
    );
    fsck_ok(&env);

    let f = start(Fault::TruncateThenIgnoreRange);
    let env = Env::new();
    json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &name(&f)]),
    );
    fsck_ok(&env);
}

#[test]
fn rate_limits_and_server_errors_retry_with_backoff() {
    let f = start(Fault::TooMany {
        times: 2,
        retry_after: Some(1),
    });
    let env = Env::new();
    let t = Instant::now();
    json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &name(&f)]),
    );
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 twice waits 2 s, took {:?}",
        t.elapsed()
    );
    assert_eq!(f.seen.lock().unwrap().layer_requests.len(), 3);

    let f = start(Fault::TooMany {
        times: 1,
        retry_after: None,
    });
    let env = Env::new();
    let t = Instant::now();
    json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &name(&f)]),
    );
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "429 without Retry-After waits 2 s first"
    );

    let f = start(Fault::Unavailable { times: 2 });
    let env = Env::new();
    json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &name(&f)]),
    );

    let f = start(Fault::AlwaysFail);
    let env = Env::new();
    let e = fails(env.skiff().args(["pull", "--tls-verify=false", &name(&f)]));
    assert!(
        e.contains("HTTP 500") && e.contains("disk on fire") && e.contains(&f.server.addr()),
        "{e}"
    );
    assert_eq!(
        f.seen.lock().unwrap().layer_requests.len(),
        5,
        "5 attempts in all"
    );
    no_partial_blobs(&env, &f);
}

#[test]
fn oversized_and_schema1_manifests_are_refused() {
    let f = start(Fault::HugeManifest);
    let env = Env::new();
    let e = fails(env.skiff().args(["pull", "--tls-verify=false", &name(&f)]));
    assert!(e.contains("exceeds the 4194304-byte limit"), "{e}");
    let f = start(Fault::Schema1);
    let e = fails(env.skiff().args(["pull", "--tls-verify=false", &name(&f)]));
    assert!(e.contains("schema 1") && e.contains("not supported"), "{e}");
}

#[test]
fn redirects_to_another_host_carry_no_credentials() {
    let f = start(Fault::RedirectBlobs);
    let env = Env::new();
    let r = json(env.skiff().args([
        "--format",
        "json",
        "pull",
        "--tls-verify=false",
        "--creds",
        "user:fault-secret",
        &name(&f),
    ]));
    assert_eq!(r["layers"][0]["downloaded"], true);
    let seen = f.seen.lock().unwrap();
    assert!(
        seen.authorization_on_origin >= 2,
        "the registry itself got the credentials"
    );
    assert_eq!(
        seen.authorization_on_redirect_target,
        vec![false],
        "the redirect target never does"
    );
    drop(seen);
    fsck_ok(&env);
}

#[test]
fn insufficient_scope_asks_once_for_the_scope_the_registry_names() {
    let f = start(Fault::InsufficientScope);
    let env = Env::new();
    json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &name(&f)]),
    );
    let scopes = f.seen.lock().unwrap().token_scopes.clone();
    assert_eq!(
        scopes,
        vec![
            vec!["repository:test/img:pull".to_string()],
            vec![
                "repository:test/img:pull".to_string(),
                "repository:shared/base:pull".to_string()
            ],
        ],
        "one token, then one more with the named scope, reused for every blob"
    );
}

#[test]
fn a_pull_by_digest_verifies_the_manifest_bytes() {
    let f = start(Fault::ManifestAltered);
    let env = Env::new();
    let by_digest = format!(
        "{}/test/img@{}",
        f.server.addr(),
        Digest::sha256_of(&f.img.manifest)
    );
    let e = fails(env.skiff().args(["pull", "--tls-verify=false", &by_digest]));
    assert!(
        e.contains("manifest from") && e.contains("digest mismatch"),
        "{e}"
    );
    assert_eq!(
        common::count_files(&env.store().join("blobs/sha256")),
        0,
        "nothing stored"
    );
}
