//! TLS against a real registry serving HTTPS: CAs and client certificates from certs.d, and
//! HTTP proxies from the environment.

mod common;

use common::http::Server;
use common::images::images;
use common::registry::{Auth, Registry, Tls, push};
use common::{Env, fails, json, openssl, require};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/CN=skiff-test-ca",
        ],
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &*Box::leak(format!("{name}.csr").into_boxed_str()),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
        ];
        args.push(Box::leak(format!("{name}.crt").into_boxed_str()));
        // Extensions make these X.509 v3 certificates, which webpki requires.
        args.extend([
            "-extfile",
            Box::leak(format!("{name}.ext").into_boxed_str()),
        ]);
        openssl(dir, &args);
    }
}

#[test]
fn certs_d_cas_and_client_certificates() {
    if !require(&["docker-registry", "skopeo", "openssl"]) {
        return;
    }
    let pkidir = tempfile::tempdir().unwrap();
    let p = pkidir.path();
    pki(p);
    let reg = Registry::start_with(
        Auth::Anonymous,
        Some(&Tls {
            certificate: p.join("server.crt"),
            key: p.join("server.key"),
            client_ca: Some(p.join("ca.crt")),
        }),
    );
    // skopeo pushes with the same kind of cert dir skiff reads.
    let skopeo_certs = p.join("skopeo-certs");
    std::fs::create_dir_all(&skopeo_certs).unwrap();
    std::fs::copy(p.join("ca.crt"), skopeo_certs.join("ca.crt")).unwrap();
    std::fs::copy(p.join("client.crt"), skopeo_certs.join("client.cert")).unwrap();
    std::fs::copy(p.join("client.key"), skopeo_certs.join("client.key")).unwrap();
    let name = format!("{}/test/busybox:1", reg.addr());
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-cert-dir"])
        .arg(&skopeo_certs)
        .arg(format!("oci:{}:busybox", images().layout.display()))
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let env = Env::new();
    let e = fails(env.skiff().args(["pull", &name]));
    assert!(
        e.contains(&reg.addr()) && e.to_lowercase().contains("certificate"),
        "an unknown CA is refused: {e}"
    );

    let certs = env.path(&format!("config/containers/certs.d/{}", reg.addr()));
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(p.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let e = fails(env.skiff().args(["pull", &name]));
    assert!(e.contains(&reg.addr()), "no client certificate: {e}");

    std::fs::copy(p.join("client.crt"), certs.join("client.cert")).unwrap();
    let e = fails(env.skiff().args(["pull", &name]));
    assert!(e.contains("missing key") && e.contains(".crt"), "{e}");
    std::fs::copy(p.join("client.key"), certs.join("client.key")).unwrap();
    let r = json(env.skiff().args(["--format", "json", "pull", &name]));
    assert_eq!(r["source"], format!("https://{}/test/busybox", reg.addr()));
}

#[test]
fn http_proxy_from_the_environment() {
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
    // A forward proxy that records what passes through it.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let proxy = Server::start(move |req, client| {
        seen2.lock().unwrap().push(req.path.clone());
        let url = url::Url::parse(&req.path).expect("absolute-form request");
        let mut up = TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).unwrap();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut head = format!(
            "{} {target} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n",
            req.method,
            url.host_str().unwrap(),
            url.port().unwrap()
        );
        for (k, v) in &req.headers {
            if !matches!(k.as_str(), "host" | "connection" | "proxy-connection") {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str("\r\n");
        up.write_all(head.as_bytes()).unwrap();
        up.write_all(&req.body).unwrap();
        let mut buf = Vec::new();
        let _ = up.read_to_end(&mut buf);
        let _ = client.write_all(&buf);
    });
    let name = format!("{}/test/busybox:1", reg.addr());
    let env = Env::new();
    json(
        env.skiff()
            .env("HTTP_PROXY", format!("http://{}", proxy.addr()))
            .env("NO_PROXY", "")
            .args(["--format", "json", "pull", "--tls-verify=false", &name]),
    );
    let through: Vec<String> = seen.lock().unwrap().drain(..).collect();
    assert!(
        through.iter().any(|p| p.contains("/blobs/sha256:")),
        "the pull went through the proxy: {through:?}"
    );
    let env = Env::new();
    json(
        env.skiff()
            .env("HTTP_PROXY", format!("http://{}", proxy.addr()))
            .env("NO_PROXY", "127.0.0.1")
            .args(["--format", "json", "pull", "--tls-verify=false", &name]),
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "NO_PROXY bypasses the proxy"
    );
}
