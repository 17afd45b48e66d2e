//! registries.conf against real registries: a pull-through cache as a mirror, a dead mirror
//! falling back to the primary, digest-only mirrors, mirror credentials by the mirror's host,
//! short names through unqualified-search-registries, and blocked registries.

mod common;

use base64::Engine as _;
use common::images::images;
use common::registry::{Auth, Registry, push};
use common::{Env, fails, fsck_ok, json, require, run, stderr};

const TOOLS: &[&str] = &["docker-registry", "skopeo", "htpasswd"];

fn primary() -> Registry {
    let reg = Registry::start(Auth::Anonymous);
    push(
        &images().layout,
        "busybox",
        &format!("{}/test/busybox:1", reg.addr()),
        &[],
    );
    reg
}

fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

#[test]
fn pull_through_cache_serves_as_mirror_and_dead_mirror_falls_back() {
    if !require(TOOLS) {
        return;
    }
    let up = primary();
    let cache = Registry::start(Auth::Proxy {
        remote: format!("http://{}", up.addr()),
    });
    let env = Env::new();
    let dead = dead_addr();
    env.write(
        "registries.conf",
        &format!(
            r#"
[[registry]]
prefix = "registry.example/team"
location = "{up}/test"
insecure = true
[[registry.mirror]]
location = "{dead}/test"
insecure = true
[[registry.mirror]]
location = "{cache}/test"
insecure = true
"#,
            up = up.addr(),
            cache = cache.addr()
        ),
    );
    let out = run(env.skiff().args([
        "--format",
        "json",
        "pull",
        "registry.example/team/busybox:1",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("mirror {dead} failed")),
        "a dead mirror is reported: {}",
        stderr(&out)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["name"], "registry.example/team/busybox:1",
        "the image keeps its logical name"
    );
    assert_eq!(r["source"], format!("http://{}/test/busybox", cache.addr()));
    let i = json(
        env.skiff()
            .args(["inspect", "registry.example/team/busybox:1"]),
    );
    assert_eq!(
        i[0]["Source"],
        format!("http://{}/test/busybox", cache.addr())
    );
    assert!(
        cache.blob_gets(&images().busybox_layer.to_string()) >= 1,
        "the cache served the layer"
    );
    fsck_ok(&env);

    // The cache keeps serving what it holds when the upstream is gone.
    drop(up);
    let env2 = Env::new();
    std::fs::copy(env.path("registries.conf"), env2.path("registries.conf")).unwrap();
    let r = json(env2.skiff().args([
        "--format",
        "json",
        "pull",
        "registry.example/team/busybox:1",
    ]));
    assert_eq!(r["source"], format!("http://{}/test/busybox", cache.addr()));

    // Everything down: the error lists the mirrors and keeps the primary's error last.
    drop(cache);
    let e = fails(
        env2.skiff()
            .args(["pull", "registry.example/team/busybox:1"]),
    );
    assert!(
        e.contains("mirrors also failed") && e.contains(&dead),
        "{e}"
    );
}

#[test]
fn digest_only_mirrors_and_mirror_credentials() {
    if !require(TOOLS) {
        return;
    }
    let up = primary();
    let pass = "mirror-pass-9d8e";
    let mirror = Registry::start(Auth::Htpasswd {
        user: "m".into(),
        password: pass.into(),
    });
    push(
        &images().layout,
        "busybox",
        &format!("{}/test/busybox:1", mirror.addr()),
        &["--dest-creds", &format!("m:{pass}")],
    );
    let env = Env::new();
    env.write(
        "registries.conf",
        &format!(
            "[[registry]]\nprefix = \"{up}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{m}\"\ninsecure = true\npull-from-mirror = \"digest-only\"\n",
            up = up.addr(),
            m = mirror.addr()
        ),
    );
    // Credentials exist only for the mirror's host: they must be used there and only there.
    let auth = serde_json::json!({"auths": {mirror.addr(): {"auth": base64::engine::general_purpose::STANDARD.encode(format!("m:{pass}"))}}});
    env.write("run/containers/auth.json", &auth.to_string());
    let tag = format!("{}/test/busybox:1", up.addr());
    let r = json(env.skiff().args(["--format", "json", "pull", &tag]));
    assert_eq!(
        r["source"],
        format!("http://{}/test/busybox", up.addr()),
        "a tag is not pulled from a digest-only mirror"
    );
    assert_eq!(r["credentials_from"], serde_json::Value::Null);
    let by_digest = format!("{}/test/busybox@{}", up.addr(), images().busybox_manifest);
    let r = json(env.skiff().args(["--format", "json", "pull", &by_digest]));
    assert_eq!(
        r["source"],
        format!("http://{}/test/busybox", mirror.addr())
    );
    assert!(
        r["credentials_from"]
            .as_str()
            .unwrap()
            .ends_with("run/containers/auth.json")
    );
}

#[test]
fn short_names_search_registries_in_order_and_blocked_registries() {
    if !require(TOOLS) {
        return;
    }
    let up = primary();
    let env = Env::new();
    let dead = dead_addr();
    env.write(
        "registries.conf",
        &format!(
            "unqualified-search-registries = [\"{dead}\", \"{up}\"]\n[[registry]]\nlocation = \"{dead}\"\ninsecure = true\n[[registry]]\nlocation = \"{up}\"\ninsecure = true\n[[registry]]\nprefix = \"blocked.example\"\nblocked = true\n",
            up = up.addr()
        ),
    );
    let r = json(
        env.skiff()
            .args(["--format", "json", "pull", "test/busybox:1"]),
    );
    assert_eq!(r["name"], format!("{}/test/busybox:1", up.addr()));
    // The stored image is found by the same short name without the network.
    drop(up);
    let r = json(env.skiff().args([
        "--format",
        "json",
        "pull",
        "--policy",
        "never",
        "test/busybox:1",
    ]));
    assert_eq!(r["pulled"], false);
    let e = fails(env.skiff().args(["pull", "blocked.example/x:1"]));
    assert!(e.contains("blocked"), "{e}");
    env.write("registries.conf", "[[registry]]\nlocation = 'x'\n[[registry.mirror]]\nlocation = 'm'\npull-from-mirror = 'sometimes'\n");
    let e = fails(env.skiff().args(["pull", "x/y:1"]));
    assert!(
        e.contains("registries.conf") && e.contains("sometimes"),
        "{e}"
    );
}
