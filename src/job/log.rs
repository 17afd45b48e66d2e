//! The job log: GitLab's collapsible sections, masking of secret values, and where the lines
//! go (`JobLog`: implemented by the command line for the terminal or the runner's pipes, and by
//! a recording in tests).

/// Which of the job's two output streams a piece of output belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where the job's lines go. Everything arrives masked already.
pub trait JobLog: Send + Sync {
    /// One line of the job log (no trailing newline), on stdout.
    fn line(&self, text: &str);
    /// Output relayed from a container, as it came (whole lines, newline included).
    fn output(&self, stream: Stream, text: &str);
}

/// GitLab's `section_start`/`section_end` markers (collapsible sections in the job log).
pub fn section_start(name: &str, header: &str) -> String {
    format!(
        "section_start:{}:{name}\r\x1b[0K\x1b[36;1m{header}\x1b[0;m",
        crate::time::now_nanos() / 1_000_000_000
    )
}

pub fn section_end(name: &str) -> String {
    format!(
        "section_end:{}:{name}\r\x1b[0K",
        crate::time::now_nanos() / 1_000_000_000
    )
}

/// Replaces secret values by `[MASKED]` in what the job prints.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    /// GitLab masks only values of 8 characters or more; shorter ones would mask too much.
    pub fn add(&mut self, value: &str) {
        if value.len() >= 8 && !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_string());
            // Longest first, so that a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "[MASKED]");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_longest_first() {
        let mut m = Masker::default();
        m.add("short");
        m.add("s3cr3t-value");
        m.add("s3cr3t-value-longer");
        assert_eq!(
            m.mask("a s3cr3t-value-longer b s3cr3t-value short"),
            "a [MASKED] b [MASKED] short"
        );
    }
}
