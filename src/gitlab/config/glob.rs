//! The patterns of `allowed_images` and `allowed_services`, matched as GitLab Runner matches
//! them: `doublestar.Match` (github.com/bmatcuk/doublestar v4, the runner's
//! `common/allowed_images.go`), with `/` as the separator and case kept.
//!
//! * `*` matches any run of characters but `/`; `?` one character but `/`;
//! * `**` as a whole segment (`a/**/b`, `**/x`, `x/**`) matches any number of segments,
//!   none included; elsewhere (`a**`, `**.x`) it is a plain `*`;
//! * `[abc]`, `[a-z]`, `[!a]`/`[^a]` a class; `{a,b}` alternatives (nested allowed);
//! * `\c` the character `c`.
//!
//! When the name is used up, what is left of the pattern matches only if it is empty, `*`,
//! `**`, `/**`, `**/` or `/**/` (so `a/**` matches `a`).

use std::collections::HashMap;

/// Why a pattern can never match, as doublestar's `ValidatePattern` sees it.
pub fn syntax_problem(pattern: &str) -> Option<&'static str> {
    let p: Vec<char> = pattern.chars().collect();
    let mut depth = 0usize;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 >= p.len() => return Some("it ends with a lone \\"),
            '\\' => i += 1,
            '[' => match class_end(&p, i) {
                Ok(end) => i = end,
                Err(why) => return Some(why),
            },
            '{' => depth += 1,
            '}' if depth == 0 => return Some("a } closes no {"),
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    (depth > 0).then_some("a { is not closed")
}

/// Whether `name` matches `pattern`. A malformed pattern matches nothing (the runner ignores
/// doublestar's error and reads the match as false).
pub fn matches(pattern: &str, name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    match expand_braces(&pattern.chars().collect::<Vec<_>>()) {
        Some(patterns) => patterns
            .iter()
            .any(|p| Matcher::new(p, &name).at(0, 0, true)),
        None => false,
    }
}

/// The index of the `]` closing the class opened at `open`.
fn class_end(p: &[char], open: usize) -> Result<usize, &'static str> {
    let mut i = open + 1;
    if matches!(p.get(i), Some('!' | '^')) {
        i += 1;
    }
    match p.get(i) {
        None => return Err("a [ is not closed"),
        Some(']') => return Err("a character class is empty"),
        _ => {}
    }
    while i < p.len() {
        match p[i] {
            '\\' => i += 2,
            ']' => return Ok(i),
            _ => i += 1,
        }
    }
    Err("a [ is not closed")
}

/// The index of the `}` closing the group opened at `open`, skipping nested groups and
/// escaped characters (character classes are not special here, as in doublestar).
fn brace_end(p: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = open;
    while i < p.len() {
        match p[i] {
            '\\' => i += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Every pattern the `{a,b}` groups stand for, in order: doublestar tries each alternative in
/// place of its group, which is the same as matching each expansion. None: a group or class
/// is not closed.
fn expand_braces(p: &[char]) -> Option<Vec<Vec<char>>> {
    let mut i = 0;
    let open = loop {
        match p.get(i) {
            None => return Some(vec![p.to_vec()]),
            Some('\\') => i += 2,
            Some('[') => i = class_end(p, i).ok()? + 1,
            Some('{') => break i,
            Some(_) => i += 1,
        }
    };
    let close = brace_end(p, open)?;
    let mut alternatives = vec![];
    let (mut depth, mut start, mut j) = (0, open + 1, open + 1);
    while j < close {
        match p[j] {
            '\\' => j += 1,
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                alternatives.push(&p[start..j]);
                start = j + 1;
            }
            _ => {}
        }
        j += 1;
    }
    alternatives.push(&p[start..close]);
    let mut out = vec![];
    for alternative in alternatives {
        let joined: Vec<char> = [&p[..open], alternative, &p[close + 1..]].concat();
        out.extend(expand_braces(&joined)?);
    }
    Some(out)
}

/// One brace-free pattern against one name, remembering the states already tried (a
/// pattern with many stars would otherwise take exponential time).
struct Matcher<'a> {
    p: &'a [char],
    n: &'a [char],
    tried: HashMap<(usize, usize, bool), bool>,
}

impl<'a> Matcher<'a> {
    fn new(p: &'a [char], n: &'a [char]) -> Self {
        Matcher {
            p,
            n,
            tried: HashMap::new(),
        }
    }

    /// Whether `p[pi..]` matches `n[ni..]`; `segment_start`: `p[pi]` begins a path segment.
    fn at(&mut self, pi: usize, ni: usize, segment_start: bool) -> bool {
        if let Some(&known) = self.tried.get(&(pi, ni, segment_start)) {
            return known;
        }
        let result = self.step(pi, ni, segment_start);
        self.tried.insert((pi, ni, segment_start), result);
        result
    }

    fn step(&mut self, pi: usize, ni: usize, segment_start: bool) -> bool {
        let (p, n) = (self.p, self.n);
        if ni == n.len() {
            let rest: String = p[pi..].iter().collect();
            return matches!(rest.as_str(), "" | "*" | "**" | "/**" | "**/" | "/**/");
        }
        let Some(&c) = p.get(pi) else {
            return false;
        };
        match c {
            '*' => {
                let double = p.get(pi + 1) == Some(&'*');
                let after = if double { pi + 2 } else { pi + 1 };
                if double && segment_start {
                    match p.get(after) {
                        None => return true,
                        // Any number of whole segments: resume after each `/` of the name.
                        Some('/') => {
                            return (ni..=n.len())
                                .filter(|&k| k == ni || n[k - 1] == '/')
                                .any(|k| self.at(after + 1, k, true));
                        }
                        Some(_) => {}
                    }
                }
                let run = n[ni..].iter().take_while(|&&ch| ch != '/').count();
                (ni..=ni + run).any(|k| self.at(after, k, false))
            }
            '?' => n[ni] != '/' && self.at(pi + 1, ni + 1, false),
            '[' => match class_end(p, pi) {
                Ok(end) => in_class(&p[pi + 1..end], n[ni]) && self.at(end + 1, ni + 1, false),
                Err(_) => false,
            },
            '\\' => match p.get(pi + 1) {
                Some(&lit) => lit == n[ni] && self.at(pi + 2, ni + 1, lit == '/'),
                None => false,
            },
            lit => lit == n[ni] && self.at(pi + 1, ni + 1, lit == '/'),
        }
    }
}

/// Whether `ch` is in the class body (between `[` and `]`): `lo-hi` ranges, `\x` escapes,
/// a leading `!` or `^` negating. A `-` first, last or right after a range is literal.
fn in_class(body: &[char], ch: char) -> bool {
    let (negate, body) = match body.first() {
        Some('!' | '^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut found = false;
    let mut last: Option<char> = None;
    let mut i = 0;
    while i < body.len() {
        let mut c = body[i];
        i += 1;
        if c == '-'
            && let (Some(lo), Some(&next)) = (last, body.get(i))
        {
            let hi = if next == '\\' {
                i += 1;
                body.get(i).copied().unwrap_or(next)
            } else {
                next
            };
            i += 1;
            found |= lo <= ch && ch <= hi;
            last = None;
            continue;
        }
        if c == '\\'
            && let Some(&escaped) = body.get(i)
        {
            c = escaped;
            i += 1;
        }
        found |= c == ch;
        last = Some(c);
    }
    found != negate
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitLab Runner's own cases: `common/allowed_images_test.go` (`allowedImageTestCases`),
    /// one pattern each.
    #[test]
    fn the_runners_allowed_images_cases() {
        let cases = [
            ("alpine", "alpine", true),
            ("alpine", "ubuntu", false),
            ("library/ruby", "*", false),
            ("library/ruby", "**/*", true),
            ("library/ruby", "**/*:*", false),
            ("library/ruby", "*/*", true),
            ("library/ruby", "*/*:*", false),
            ("library/ruby:2.1", "*", false),
            ("library/ruby:2.1", "**/*", true),
            ("library/ruby:2.1", "**/*:*", true),
            ("library/ruby:2.1", "*/*", true),
            ("library/ruby:2.1", "*/*:*", true),
            ("my.registry.tld/group/subgroup/ruby", "*", false),
            (
                "my.registry.tld/group/subgroup/ruby",
                "my.registry.tld/**/*",
                true,
            ),
            (
                "my.registry.tld/group/subgroup/ruby",
                "my.registry.tld/*/*",
                false,
            ),
            (
                "my.registry.tld/group/subgroup/ruby",
                "my.registry.tld/*/*/*",
                true,
            ),
            ("my.registry.tld/group/subgroup/ruby:2.1", "*", false),
            (
                "my.registry.tld/group/subgroup/ruby:2.1",
                "my.registry.tld/**/*:*",
                true,
            ),
            (
                "my.registry.tld/group/subgroup/ruby:2.1",
                "my.registry.tld/*/*/*:*",
                true,
            ),
            (
                "my.registry.tld/group/subgroup/ruby:2.1",
                "my.registry.tld/*/*:*",
                false,
            ),
            ("my.registry.tld/library/ruby", "*", false),
            ("my.registry.tld/library/ruby", "my.registry.tld/**/*", true),
            ("my.registry.tld/library/ruby", "my.registry.tld/*/*", true),
            ("my.registry.tld/library/ruby:2.1", "*", false),
            (
                "my.registry.tld/library/ruby:2.1",
                "my.registry.tld/**/*:*",
                true,
            ),
            (
                "my.registry.tld/library/ruby:2.1",
                "my.registry.tld/*/*:*",
                true,
            ),
            ("my.registry.tld/ruby", "*", false),
            ("my.registry.tld/ruby:2.1", "*", false),
            ("ruby", "*", true),
            ("ruby", "**/*", true),
            ("ruby:2.1", "*", true),
            ("ruby:2.1", "**/*", true),
            ("ruby:latest", "*", true),
            ("ruby:latest", "**/*", true),
        ];
        for (image, pattern, want) in cases {
            assert_eq!(
                matches(pattern, image),
                want,
                "{pattern:?} against {image:?}"
            );
        }
    }

    /// doublestar v4's own `Match` cases (`doublestar_test.go`, `matchTests`): pattern, name,
    /// whether it matches. Those whose pattern is malformed expect no match.
    #[test]
    fn doublestars_match_cases() {
        let cases = [
            ("", "", true),
            ("*", "", true),
            ("*", "/", false),
            ("/*", "/", true),
            ("/*", "/debug/", false),
            ("/*", "//", false),
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("*/", "a/", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*/c/", "a/b", false),
            ("a*b*c*d*e*", "axbxcxdxe", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a[!a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("[]a]", "]", false),
            ("[-]", "-", true),
            ("[x-]", "x", true),
            ("[x-]", "-", true),
            ("[x-]", "z", false),
            ("[-x]", "x", true),
            ("[-x]", "-", true),
            ("[-x]", "a", false),
            ("[a-b-d]", "a", true),
            ("[a-b-d]", "b", true),
            ("[a-b-d]", "-", true),
            ("[a-b-d]", "c", false),
            ("[a-b-x]", "x", true),
            ("\\", "a", false),
            ("[", "a", false),
            ("[^", "a", false),
            ("[^bc", "a", false),
            ("a[", "a", false),
            ("a[", "ab", false),
            ("ad[", "ab", false),
            ("*x", "xxx", true),
            ("[abc]", "b", true),
            ("[abc123]", "1", true),
            ("[a-z0-9]", "1", true),
            ("**", "", true),
            ("a/**", "a", true),
            ("a/**/", "a", true),
            ("a/**", "a/", true),
            ("a/**/", "a/", true),
            ("a/**", "a/b", true),
            ("a/**", "a/b/c", true),
            ("**/c", "c", true),
            ("**/c", "b/c", true),
            ("**/c", "a/b/c", true),
            ("**/c", "a/b", false),
            ("**/c", "abcd", false),
            ("**/c", "a/abc", false),
            ("a/**/b", "a/b", true),
            ("a/**/c", "a/b/c", true),
            ("a/**/d", "a/b/c/d", true),
            ("a/\\**", "a/b/c", false),
            ("a/\\[*\\]", "a/bc", false),
            ("a/b/c", "a/b//c", false),
            ("a/", "a", false),
            ("ab{c,d}", "abc", true),
            ("ab{c,d,*}", "abcde", true),
            ("ab{c,d}[", "abcd", false),
            ("a{,bc}", "a", true),
            ("a{,bc}", "abc", true),
            ("a/{b/c,c/b}", "a/b/c", true),
            ("a/{b/c,c/b}", "a/c/b", true),
            ("a/a*{b,c}", "a/abc", true),
            ("{a/{b,c},abc}", "a/b", true),
            ("{a/{b,c},abc}", "a/c", true),
            ("{a/{b,c},abc}", "abc", true),
            ("{a/{b,c},abc}", "a/b/c", false),
            ("{a/ab*}", "a/abc", true),
            ("{a/*}", "a/b", true),
            ("{a/abc}", "a/abc", true),
            ("{a/b,a/c}", "a/c", true),
            ("abc/**", "abc/b", true),
            ("**/abc", "abc", true),
            ("abc**", "abc/b", false),
            ("**/*.txt", "abc/【test】.txt", true),
            ("**/【*", "abc/【test】.txt", true),
            ("**/{a,b}", "a/b", true),
            ("a/*/*/d", "a/b/c/d", true),
            ("e/\\[x\\]/*", "e/[x]/[y]", true),
            ("e/\\[x\\]/*/z", "e/[x]/[y]/z", true),
            ("e/**", "e/**", true),
            ("e/**", "e/*", true),
            ("e/**", "e/[]", true),
            ("e/**", "e/\\", true),
            ("e/*", "e/*", true),
            ("e/?", "e/?", true),
            ("e/?", "e/[", true),
            ("e/\\[", "e/[", true),
            ("e/[", "e/[", false),
            ("e/]", "e/]", true),
            ("e/\\]", "e/]", true),
            ("e/\\{", "e/{", true),
            ("e/\\}", "e/}", true),
            ("e/[\\*\\?]", "e/*", true),
            ("e/[\\*\\?]", "e/?", true),
            ("e/[\\*\\?]", "e/**", false),
            ("e/[\\*\\?]?", "e/**", true),
            ("e/{\\*,\\?}", "e/*", true),
            ("e/{\\*,\\?}", "e/?", true),
            ("e/\\*", "e/*", true),
            ("e/\\?", "e/?", true),
            ("e/\\?", "e/**", false),
            ("*\\}", "}", true),
            ("case-sensitive/FI*", "case-sensitive/FILE", true),
            ("case-sensitive/fi*", "case-sensitive/FILE", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(matches(pattern, name), want, "{pattern:?} against {name:?}");
        }
    }

    #[test]
    fn malformed_patterns_are_named() {
        let cases = [
            ("ruby:*", None),
            ("reg.example/{a,b}/**", None),
            ("[a-z]*", None),
            ("a\\", Some("it ends with a lone \\")),
            ("ruby[", Some("a [ is not closed")),
            ("ruby[]", Some("a character class is empty")),
            ("[!]", Some("a character class is empty")),
            ("{a,b", Some("a { is not closed")),
            ("a}", Some("a } closes no {")),
            ("\\}", None),
        ];
        for (pattern, want) in cases {
            assert_eq!(syntax_problem(pattern), want, "{pattern:?}");
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let name = "a".repeat(200);
        let start = std::time::Instant::now();
        assert!(!matches("*a*a*a*a*a*a*a*a*a*b", &name));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
