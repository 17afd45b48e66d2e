//! Man pages and completion scripts against the command line they describe: the command tree
//! is read from the binary's own `--help`, so a command or flag added without its page (or a
//! page for a hidden command) shows up here.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn skiff(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    // `--help` shows an environment variable's value when it is set.
    for k in ["SKIFF_ROOT", "SKIFF_LOG_LEVEL"] {
        cmd.env_remove(k);
    }
    common::run(cmd.args(args))
}

fn help(path: &[String]) -> String {
    let args: Vec<&str> = path.iter().map(String::as_str).chain(["--help"]).collect();
    let out = skiff(&args);
    assert!(out.status.success(), "skiff {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under `Commands:`, without clap's `help`.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // Entries are indented by two; wrapped descriptions by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags a help text's option lines start with (`-a, --all`, `--root <ROOT>`).
fn long_flags(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let header = l.split("  ").next().unwrap();
            header
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .map(|w| {
                    let end = w.find(['[', '=', '<']).unwrap_or(w.len());
                    w[..end].to_string()
                })
        })
        .collect()
}

/// Every visible command, as its path of names: `[]` for skiff itself, `["pod", "create"]`.
fn command_tree() -> Vec<Vec<String>> {
    let mut tree = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        for sub in listed_commands(&help(&path)) {
            let mut child = path.clone();
            child.push(sub);
            todo.push(child);
        }
        tree.push(path);
    }
    tree.sort();
    tree
}

fn page_name(path: &[String]) -> String {
    std::iter::once("skiff")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
}

/// The roff source as plain text: escaped hyphens and font changes undone.
fn plain(roff: &str) -> String {
    roff.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
}

/// Whether `word` occurs in `text` as a whole word (`--all` is not in `--all-tags`).
fn mentions(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

fn write_pages() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = skiff(&["__man", pages.to_str().unwrap()]);
    assert!(out.status.success(), "skiff __man: {out:?}");
    (dir, pages)
}

fn read_page(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.1"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_visible_command_has_exactly_its_page() {
    let tree = command_tree();
    // The tree read from --help is the real one, nested commands included.
    for path in [
        &["pod", "create"][..],
        &["gitlab"],
        &["completion"],
        &["bundle"],
    ] {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        assert!(tree.contains(&path), "{path:?} not in {tree:?}");
    }
    let (_dir, pages) = write_pages();
    let written: BTreeSet<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let wanted: BTreeSet<String> = tree.iter().map(|p| format!("{}.1", page_name(p))).collect();
    assert_eq!(written, wanted);
    assert!(!written.iter().any(|p| p.contains("__")), "{written:?}");
}

#[test]
fn each_page_names_itself_and_every_flag_its_help_shows() {
    let (_dir, pages) = write_pages();
    for path in command_tree() {
        let name = page_name(&path);
        let page = plain(&read_page(&pages, &name));
        let after_name = page.split(".SH NAME\n").nth(1).unwrap_or_default();
        assert!(
            after_name.starts_with(&format!("{name} - ")),
            "{name}: NAME section: {:?}",
            after_name.lines().next()
        );
        let flags = long_flags(&help(&path));
        assert!(flags.contains(&"--help".to_string()), "{name}: {flags:?}");
        for flag in flags {
            assert!(mentions(&page, &flag), "{name}.1 does not mention {flag}");
        }
    }
}

#[test]
fn top_page_lists_the_commands_and_refers_to_every_page() {
    let (_dir, pages) = write_pages();
    let top = plain(&read_page(&pages, "skiff"));
    let (body, see_also) = top.split_once(".SH \"SEE ALSO\"\n").expect("SEE ALSO");
    let tree = command_tree();
    for path in &tree {
        let reference = format!("{}(1)", page_name(path));
        if path.len() == 1 {
            assert!(mentions(body, &reference), "commands: {reference}");
        }
        if !path.is_empty() {
            assert!(mentions(see_also, &reference), "SEE ALSO: {reference}");
        }
    }
    // A sub-page refers back to its parent and on to its children.
    let pod = plain(&read_page(&pages, "skiff-pod"));
    let (_, see_also) = pod.split_once(".SH \"SEE ALSO\"\n").expect("SEE ALSO");
    for reference in ["skiff(1)", "skiff-pod-create(1)", "skiff-pod-rm(1)"] {
        assert!(
            mentions(see_also, reference),
            "skiff-pod SEE ALSO: {reference}"
        );
    }
}

#[test]
fn help_subcommand_reaches_every_command() {
    for path in command_tree() {
        let args: Vec<&str> = std::iter::once("help")
            .chain(path.iter().map(String::as_str))
            .collect();
        let out = skiff(&args);
        assert!(out.status.success(), "skiff {args:?}: {out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            help(&path),
            "skiff {args:?}"
        );
    }
}

#[test]
fn man_renders_every_page_without_warnings() {
    if !common::require(&["man"]) {
        return;
    }
    let (_dir, pages) = write_pages();
    for path in command_tree() {
        let name = page_name(&path);
        let page = pages.join(format!("{name}.1"));
        let out = common::run(
            Command::new("man")
                .args(["--warnings", "-l"])
                .arg(&page)
                .env("MANWIDTH", "80")
                .env("MANPAGER", "cat")
                .env("LC_ALL", "C.UTF-8"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man {name}: {stderr}");
        assert!(stderr.is_empty(), "man {name}: {stderr}");
        // Filled lines are justified: words may stand further apart than in the source.
        let words: Vec<&str> = std::str::from_utf8(&out.stdout)
            .unwrap()
            .split_whitespace()
            .collect();
        assert!(
            words
                .windows(3)
                .any(|w| w[..2] == ["NAME", name.as_str()] && w[2] == "-"),
            "man {name}: {words:?}"
        );
    }
}

#[test]
fn completion_scripts_name_every_command_and_parse() {
    type Entry = fn(&str) -> String;
    // (shell, its syntax check, how its script offers a top-level command)
    let shells: [(&str, &[&str], Entry); 3] = [
        ("bash", &["bash", "-n"], |c| format!("skiff,{c})")),
        ("zsh", &["zsh", "-n"], |c| format!("'{c}:")),
        ("fish", &["fish", "--no-execute"], |c| {
            format!("__fish_skiff_needs_command\" -f -a \"{c}\"")
        }),
    ];
    if !common::require(&["bash", "zsh", "fish"]) {
        return;
    }
    let commands: Vec<String> = command_tree()
        .into_iter()
        .filter(|p| p.len() == 1)
        .map(|p| p[0].clone())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (shell, check, entry) in shells {
        let out = skiff(&["completion", shell]);
        assert!(out.status.success(), "completion {shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for command in &commands {
            assert!(script.contains(&entry(command)), "{shell}: {command}");
        }
        let file = dir.path().join(format!("skiff.{shell}"));
        std::fs::write(&file, &script).unwrap();
        let out = common::run(Command::new(check[0]).args(&check[1..]).arg(&file));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{check:?}: {stderr}"
        );
    }
}

#[test]
fn completion_help_says_where_the_scripts_go() {
    let text = help(&["completion".to_string()]);
    for place in [
        "/usr/share/bash-completion/completions/skiff",
        "/usr/share/zsh/vendor-completions/_skiff",
        "/usr/share/fish/vendor_completions.d/skiff.fish",
    ] {
        assert!(text.contains(place), "{place}: {text}");
    }
    let out = skiff(&["completion", "powershell"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Output to a reader that is gone (`| head -1` after its line) ends the command quietly, in
/// text and in JSON: no panic, no error of skiff's own.
#[test]
fn a_closed_stdout_ends_output_quietly() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().to_str().unwrap();
    for format in ["text", "json"] {
        for command in [
            &["images"][..],
            &["ps", "-a"],
            &["info"],
            &["completion", "bash"],
        ] {
            // A pipe whose reader is closed before skiff writes: every write fails with EPIPE.
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            let o = Command::new(env!("CARGO_BIN_EXE_skiff"))
                .args(["--root", root, "--format", format])
                .args(command)
                .stdout(writer)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{format} {command:?}: {said}");
            assert!(!said.contains("panicked"), "{format} {command:?}: {said}");
        }
    }
}
