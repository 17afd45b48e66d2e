//! Stage scripts shaped as GitLab Runner's bash shell writes them for the custom executor:
//! derived from the runner's shells/bash.go (`BashWriter`: `Finish`, `IfCmd`,
//! `IfCmdWithOutput`, `Noticef`, `Warningf`, `Variable`, `SourceEnv`, `DotEnvVariables`,
//! `RmFile`), helpers/shell_escape.go (`ShellEscape`, the `$'...'` quoting) and
//! shells/abstract.go (`writeRestoreCacheScript` with `cacheExtractor`/`addExtractCacheCommand`,
//! `writeDownloadArtifactsScript` with `downloadAllArtifacts`, `cacheArchiver` with
//! `addCacheUploadCommand`, `writeUploadArtifacts` with `writeUploadArtifact`,
//! `guardRunnerCommand`, `writeExports`, `changeFilesOwnership`), for a runner with the
//! default feature flags, no remote cache, the runner command `gitlab-runner` (its main.go:
//! `custom.NewProvider("gitlab-runner")`) and the custom executor's builds_dir /builds and
//! cache_dir /cache; executors/custom/custom.go::Run writes the script to a file as is.

use skiff::oci::digest::Digest;

/// What the custom executor's scripts call the helper.
pub const RUNNER_COMMAND: &str = "gitlab-runner";

const GREEN: &str = "\x1b[32;1m";
const YELLOW: &str = "\x1b[0;33m";
const RESET: &str = "\x1b[0;m";

/// One job as the runner sees it.
pub struct Job {
    pub id: u64,
    pub token: String,
    /// `CI_SERVER_URL`, what the runner passes as `--url`.
    pub server_url: String,
    /// `<builds_dir>/<namespace>/<project>`.
    pub project_dir: String,
    /// `<cache_dir>/<namespace>/<project>`.
    pub cache_dir: String,
    /// The job's variables, exported at the top of every stage.
    pub variables: Vec<(String, String)>,
}

/// `artifacts:` of the job, as GitLab sends it for the archive.
pub struct Artifact {
    pub paths: Vec<String>,
    pub expire_in: Option<String>,
}

/// A job this one depends on, for `download_artifacts`.
pub struct Dependency {
    pub id: u64,
    pub name: String,
    pub token: String,
}

/// The runner's quoting: as is when only `[,-./0-9@A-Z_a-z]`, else ANSI-C `$'...'` with
/// C escapes for control characters and `\xHH` for other bytes.
pub fn escape(input: &str) -> String {
    if input.is_empty() {
        return "''".into();
    }
    let mut out = String::new();
    let mut quote = false;
    for &b in input.as_bytes() {
        let special = match b {
            0x07 => Some("\\a"),
            0x08 => Some("\\b"),
            b'\t' => Some("\\t"),
            b'\n' => Some("\\n"),
            0x0b => Some("\\v"),
            0x0c => Some("\\f"),
            b'\r' => Some("\\r"),
            b'\'' => Some("\\'"),
            b'\\' => Some("\\\\"),
            _ => None,
        };
        if let Some(s) = special {
            out.push_str(s);
            quote = true;
        } else if b.is_ascii_alphanumeric() || b",-./@_".contains(&b) {
            out.push(b as char);
        } else if b.is_ascii_graphic() || b == b' ' {
            out.push(b as char);
            quote = true;
        } else {
            out.push_str(&format!("\\x{b:02x}"));
            quote = true;
        }
    }
    if quote { format!("$'{out}'") } else { out }
}

/// The script body as the runner's writer builds it, two spaces an indentation level.
struct Writer<'a> {
    job: &'a Job,
    body: String,
    indent: usize,
}

impl<'a> Writer<'a> {
    fn new(job: &'a Job) -> Self {
        Writer {
            job,
            body: String::new(),
            indent: 0,
        }
    }
    fn line(&mut self, text: &str) {
        self.body.push_str(&"  ".repeat(self.indent));
        self.body.push_str(text);
        self.body.push('\n');
    }
    fn command_line(args: &[&str]) -> String {
        args.iter().map(|a| escape(a)).collect::<Vec<_>>().join(" ")
    }
    fn command(&mut self, args: &[&str]) {
        self.line(&Self::command_line(args));
    }
    fn notice(&mut self, text: &str) {
        self.line(&format!(
            "echo {}",
            escape(&format!("{GREEN}{text}{RESET}"))
        ));
    }
    fn warning(&mut self, text: &str) {
        self.line(&format!(
            "echo {}",
            escape(&format!("{YELLOW}{text}{RESET}"))
        ));
    }
    /// `IfCmd`: the command's output discarded.
    fn if_quiet(&mut self, args: &[&str]) {
        self.line(&format!(
            "if {} >/dev/null 2>&1 ; then",
            Self::command_line(args)
        ));
        self.indent += 1;
    }
    /// `IfCmdWithOutput`.
    fn if_cmd(&mut self, args: &[&str]) {
        self.line(&format!("if {} ; then", Self::command_line(args)));
        self.indent += 1;
    }
    fn else_(&mut self) {
        self.indent -= 1;
        self.line("else");
        self.indent += 1;
    }
    fn end_if(&mut self) {
        self.indent -= 1;
        self.line("fi");
    }
    fn tmp_file(&self, name: &str) -> String {
        format!("{}.tmp/{name}", self.job.project_dir)
    }
    /// `writeExports` then `writeCdBuildDir`.
    fn exports_and_cd(&mut self) {
        self.exports();
        let dir = self.job.project_dir.clone();
        self.command(&["cd", &dir]);
    }
    /// `writeExports`: the variables, then the `GITLAB_ENV` file's.
    fn exports(&mut self) {
        let vars: Vec<(String, String)> = self.job.variables.clone();
        for (k, v) in &vars {
            self.line(&format!("export {}={}", escape(k), escape(v)));
        }
        let env_file = self.tmp_file("gitlab_runner_env");
        self.line(&format!("export GITLAB_ENV={}", escape(&env_file)));
        self.line(&format!("mkdir -p \"{}.tmp\"", self.job.project_dir));
        self.line(&format!("touch \"{env_file}\""));
        self.line(&format!(
            "while read -r line; do export \"$line\"; done < \"{env_file}\""
        ));
    }
    /// `guardRunnerCommand`: the step only when `gitlab-runner --version` runs.
    fn guard(&mut self, action: &str, step: impl FnOnce(&mut Self)) {
        self.if_quiet(&[RUNNER_COMMAND, "--version"]);
        step(self);
        self.else_();
        self.warning(&format!("Missing {RUNNER_COMMAND}. {action} is disabled."));
        self.end_if();
    }
    /// `changeFilesOwnership` for the cache and builds directories (a no-op unless the
    /// Kubernetes executor left its uid/gid file).
    fn ownership(&mut self) {
        let builds_root = self
            .job
            .project_dir
            .split('/')
            .take(2)
            .collect::<Vec<_>>()
            .join("/");
        let uid_gid = format!("{builds_root}/.gitlab-build-uid-gid");
        self.line(&format!("if [ -e \"{uid_gid}\" ]; then"));
        self.indent += 1;
        for dir in [self.job.cache_dir.clone(), builds_root.clone()] {
            self.line(&format!("if [ -d \"{dir}\" ]; then"));
            self.indent += 1;
            self.line(&format!(
                "chown -R \"$(stat -c '%u:%g' '{uid_gid}')\" '{dir}'"
            ));
            self.end_if();
        }
        self.end_if();
    }
    /// The cache archive for `key`, relative to the project directory as the runner gives it.
    fn archive_file(&self, key: &str) -> String {
        let depth = self.job.project_dir.matches('/').count();
        format!(
            "{}{}/{key}/cache.zip",
            "../".repeat(depth),
            &self.job.cache_dir[1..]
        )
    }
    /// `Finish`: the body evaluated in a subshell, stdin closed.
    fn finish(self) -> String {
        format!(
            "#!/usr/bin/env bash\n\n\
             trap 'exit 1' TERM\n\n\
             case \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\n\
             set +o noclobber\n\
             (trap 'exit 1' TERM; eval {}) < /dev/null\n\
             exit 0\n",
            escape(&self.body)
        )
    }
}

/// `restore_cache` for one `cache:` entry with `key` and `paths`.
pub fn restore_cache(job: &Job, key: &str) -> String {
    let mut w = Writer::new(job);
    w.exports_and_cd();
    w.guard("Extracting cache", |w| {
        w.notice(&format!("Checking cache for {key}..."));
        let file = w.archive_file(key);
        w.if_cmd(&[
            RUNNER_COMMAND,
            "cache-extractor",
            "--file",
            &file,
            "--timeout",
            "10",
        ]);
        w.notice("Successfully extracted cache");
        w.else_();
        w.warning("Failed to extract cache");
        w.end_if();
    });
    w.ownership();
    w.finish()
}

/// `download_artifacts` for the jobs this one depends on.
pub fn download_artifacts(job: &Job, dependencies: &[Dependency]) -> String {
    let mut w = Writer::new(job);
    w.exports_and_cd();
    let url = job.server_url.clone();
    w.guard("Artifacts downloading", |w| {
        for d in dependencies {
            w.notice(&format!(
                "Downloading artifacts for {} ({})...",
                d.name, d.id
            ));
            let id = d.id.to_string();
            w.command(&[
                RUNNER_COMMAND,
                "artifacts-downloader",
                "--url",
                &url,
                "--token",
                &d.token,
                "--id",
                &id,
            ]);
        }
    });
    w.ownership();
    w.finish()
}

/// `archive_cache` (and `archive_cache_on_failure`) for one `cache:` entry.
pub fn archive_cache(job: &Job, key: &str, paths: &[&str]) -> String {
    let mut w = Writer::new(job);
    w.exports_and_cd();
    // The other naming scheme's archive (FF_HASH_CACHE_KEYS off: the key's sha256).
    let alternate = Digest::sha256_of(key.as_bytes()).hex().to_string();
    let mut args = vec![
        RUNNER_COMMAND.to_string(),
        "cache-archiver".into(),
        "--file".into(),
        w.archive_file(key),
        "--alternate-file".into(),
        w.archive_file(&alternate),
        "--timeout".into(),
        "10".into(),
    ];
    for p in paths {
        args.extend(["--path".into(), p.to_string()]);
    }
    w.guard("Creating cache", |w| {
        w.notice(&format!("Creating cache {key}..."));
        let env_file = w.tmp_file("gitlab_runner_cache_env");
        // `DotEnvVariables`: the metadata as a dotenv file, values in escaped double quotes.
        let metadata = serde_json::json!({ "cachekey": key }).to_string();
        w.line(&format!(
            "cat << EOF > {env_file}\nCACHE_METADATA=\"{}\"\nEOF\n",
            metadata.replace('\\', "\\\\").replace('"', "\\\"")
        ));
        args.extend(["--env-file".into(), env_file.clone()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        w.if_cmd(&refs);
        w.notice("Created cache");
        w.else_();
        w.warning("Failed to create cache");
        w.end_if();
        w.line(&format!("rm -f \"{env_file}\""));
    });
    w.finish()
}

/// `upload_artifacts_on_success` and `upload_artifacts_on_failure` (the same shape; which
/// artifacts each holds depends on their `when:`).
pub fn upload_artifacts(job: &Job, artifact: &Artifact) -> String {
    let mut w = Writer::new(job);
    w.exports_and_cd();
    let (id, url, token) = (
        job.id.to_string(),
        job.server_url.clone(),
        job.token.clone(),
    );
    let mut args: Vec<&str> = vec![
        RUNNER_COMMAND,
        "artifacts-uploader",
        "--url",
        &url,
        "--token",
        &token,
        "--id",
        &id,
        // The runner's defaults for [runners] artifact timeouts, as time.Duration prints them.
        "--timeout",
        "1h0m0s",
        "--response-header-timeout",
        "10m0s",
    ];
    for p in &artifact.paths {
        args.extend(["--path", p]);
    }
    if let Some(e) = &artifact.expire_in {
        args.extend(["--expire-in", e]);
    }
    // GitLab sends the job's archive as format zip, type archive.
    args.extend(["--artifact-format", "zip", "--artifact-type", "archive"]);
    w.guard("Uploading artifacts", |w| {
        w.notice("Uploading artifacts...");
        w.command(&args);
    });
    w.finish()
}

/// A stage of the job's own commands in the runner's wrapper, after its exports: stands in
/// for `get_sources` (no clone here) and the user's `build_script`.
pub fn commands(job: &Job, lines: &[&str]) -> String {
    let mut w = Writer::new(job);
    w.exports();
    for l in lines {
        w.line(l);
    }
    w.finish()
}
