//! Man pages and shell completion scripts, made from the clap definitions so that they say
//! exactly what `--help` says.

use super::{Cli, print_text};
use anyhow::{Context as _, Result};
use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, roman};
use std::path::Path;

/// Where the scripts go, shown with `skiff completion --help`.
pub const COMPLETION_PLACES: &str = "\
Install the script where the shell looks for completions.
On Debian, for every user:
  bash: /usr/share/bash-completion/completions/skiff
  zsh:  /usr/share/zsh/vendor-completions/_skiff
  fish: /usr/share/fish/vendor_completions.d/skiff.fish
For yourself alone:
  bash: ~/.local/share/bash-completion/completions/skiff
  zsh:  _skiff in a directory of $fpath
  fish: ~/.config/fish/completions/skiff.fish
For example: skiff completion fish > ~/.config/fish/completions/skiff.fish";

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell that reads the script
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `skiff completion SHELL`: the script on stdout.
pub fn completion(a: CompletionArgs) -> Result<()> {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "skiff", &mut script);
    print_text(&String::from_utf8(script).context("completion script")?)
}

/// One man page: its file name (`skiff-pod-create.1`) and its roff source.
struct Page {
    file_name: String,
    roff: Vec<u8>,
}

/// `skiff.1` and a page for every visible command and nested subcommand, named as git
/// names its pages: `skiff-pod-create.1` for `skiff pod create`.
fn pages() -> Result<Vec<Page>> {
    // `skiff help` is its own way in, not a command with a page.
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut tree = Vec::new();
    collect(&root, None, &mut tree);
    let names: Vec<&str> = tree.iter().map(|(cmd, _)| page_name(cmd)).collect();
    // Subcommands have no version of their own: every page is from this skiff.
    let source = format!("skiff {}", root.get_version().unwrap_or_default());
    tree.iter()
        .map(|(cmd, parent)| {
            let name = page_name(cmd);
            // The top page points at every other; the others at their parent and children.
            let see_also: Vec<&str> = match parent {
                None => names[1..].to_vec(),
                Some(parent) => std::iter::once(*parent)
                    .chain(visible(cmd).map(page_name))
                    .collect(),
            };
            let notes = cmd
                .get_after_long_help()
                .or_else(|| cmd.get_after_help())
                .map(|text| text.to_string());
            // As --help shows it, with the sections' names of a man page; the notes are
            // rendered below, line by line as written, rather than refilled.
            let cmd = (*cmd)
                .clone()
                .subcommand_help_heading("COMMANDS")
                .subcommand_value_name("COMMAND")
                .after_help(None::<&str>)
                .after_long_help(None::<&str>);
            let mut roff = Vec::new();
            clap_mangen::Man::new(cmd)
                .title(name.to_uppercase())
                .source(source.as_str())
                .render(&mut roff)
                .with_context(|| format!("rendering {name}"))?;
            if let Some(notes) = notes {
                roff.extend(notes_section(&notes).to_roff().into_bytes());
            }
            roff.extend(see_also_section(&see_also).to_roff().into_bytes());
            Ok(Page {
                file_name: format!("{name}.1"),
                roff,
            })
        })
        .collect()
}

/// Writes every page into `dir` (created if missing).
pub fn write_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pages = pages()?;
    for page in &pages {
        let path = dir.join(&page.file_name);
        std::fs::write(&path, &page.roff).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn visible(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|c| !c.is_hide_set())
}

/// Depth first, each command with its parent's page name.
fn collect<'a>(
    cmd: &'a clap::Command,
    parent: Option<&'a str>,
    tree: &mut Vec<(&'a clap::Command, Option<&'a str>)>,
) {
    tree.push((cmd, parent));
    for sub in visible(cmd) {
        collect(sub, Some(page_name(cmd)), tree);
    }
}

/// clap names a built subcommand `skiff-pod-create`; the top command has only its name.
fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

fn notes_section(text: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["NOTES"]);
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff
}

fn see_also_section(names: &[&str]) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    // A list of page names: neither hyphenated at a line's end nor spread out to fill it.
    roff.control("nh", []);
    roff.control("ad", ["l"]);
    let mut refs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            refs.push(roman(", "));
        }
        refs.push(bold(*name));
        refs.push(roman("(1)"));
    }
    roff.text(refs);
    roff
}
