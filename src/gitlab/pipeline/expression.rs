//! GitLab's CI/CD variable expressions (`rules:if`, `only:variables`, `workflow:rules:if`):
//! `$VAR`, `"string"`/`'string'`, `/pattern/flags` (RE2 semantics), `null`, the comparisons
//! `==`, `!=`, `=~`, `!~`, and `&&` (binding tighter) and `||` with parentheses. A variable is
//! null when undefined; alone, it is true when defined and not empty.

use regex::Regex;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Variable(String),
    Text(String),
    Pattern(String),
    Null,
    Equals,
    NotEquals,
    Matches,
    NotMatches,
    And,
    Or,
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    let name_end = |from: usize| {
        from + b[from..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count()
    };
    while i < b.len() {
        let two = s.get(i..i + 2).unwrap_or("");
        let token = match (b[i], two) {
            (b' ' | b'\t' | b'\n' | b'\r', _) => {
                i += 1;
                continue;
            }
            (_, "==") => Token::Equals,
            (_, "!=") => Token::NotEquals,
            (_, "=~") => Token::Matches,
            (_, "!~") => Token::NotMatches,
            (_, "&&") => Token::And,
            (_, "||") => Token::Or,
            (b'(', _) => Token::Open,
            (b')', _) => Token::Close,
            (b'$', _) => {
                let (start, end) = match b.get(i + 1) {
                    Some(b'{') => {
                        let end = name_end(i + 2);
                        if b.get(end) != Some(&b'}') {
                            return Err(format!("unclosed ${{ at {i}"));
                        }
                        (i + 2, end)
                    }
                    _ => (i + 1, name_end(i + 1)),
                };
                if start == end {
                    return Err(format!("a `$` without a variable name at {i}"));
                }
                out.push(Token::Variable(s[start..end].to_string()));
                i = if b.get(end) == Some(&b'}') {
                    end + 1
                } else {
                    end
                };
                continue;
            }
            (q @ (b'"' | b'\''), _) => {
                let close = s[i + 1..]
                    .find(q as char)
                    .ok_or_else(|| format!("unclosed string at {i}"))?;
                out.push(Token::Text(s[i + 1..i + 1 + close].to_string()));
                i += close + 2;
                continue;
            }
            (b'/', _) => {
                // Up to the next `/` not escaped, then the flags.
                let mut j = i + 1;
                while j < b.len() && b[j] != b'/' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    return Err(format!("unclosed pattern at {i}"));
                }
                let flags_end = j
                    + 1
                    + b[j + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphabetic())
                        .count();
                out.push(Token::Pattern(s[i..flags_end].to_string()));
                i = flags_end;
                continue;
            }
            _ if s[i..].starts_with("null")
                && !s[i + 4..].starts_with(|c: char| c.is_alphanumeric() || c == '_') =>
            {
                out.push(Token::Null);
                i += 4;
                continue;
            }
            _ => return Err(format!("unexpected {:?} at {i}", &s[i..])),
        };
        out.push(token);
        i += 2;
        if matches!(out.last(), Some(Token::Open | Token::Close)) {
            i -= 1;
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Expr {
    Variable(String),
    Text(String),
    Pattern(String),
    Null,
    Compare(Box<Expr>, Token, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.comparison()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }
    fn comparison(&mut self) -> Result<Expr, String> {
        let left = self.operand()?;
        match self.peek() {
            Some(op @ (Token::Equals | Token::NotEquals | Token::Matches | Token::NotMatches)) => {
                let op = op.clone();
                self.at += 1;
                Ok(Expr::Compare(Box::new(left), op, Box::new(self.operand()?)))
            }
            _ => Ok(left),
        }
    }
    fn operand(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Variable(v)) => Ok(Expr::Variable(v)),
            Some(Token::Text(t)) => Ok(Expr::Text(t)),
            Some(Token::Pattern(p)) => Ok(Expr::Pattern(p)),
            Some(Token::Null) => Ok(Expr::Null),
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("a `(` is not closed".into()),
                }
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("the expression ends too early".into()),
        }
    }
}

/// A parsed expression, ready to evaluate against any variables.
#[derive(Debug, Clone)]
pub struct Expression {
    text: String,
    root: Expr,
}

/// What an operand evaluates to.
enum Operand {
    Null,
    Text(String),
    Pattern(String),
    Bool(bool),
}

impl Operand {
    fn truthy(&self) -> bool {
        match self {
            Operand::Null => false,
            Operand::Text(t) => !t.is_empty(),
            Operand::Pattern(_) => true,
            Operand::Bool(b) => *b,
        }
    }
}

/// `/source/flags` as a regex: `i`, `m` and `s` become inline flags.
fn regex_of(pattern: &str) -> Result<Regex, String> {
    let body = pattern
        .strip_prefix('/')
        .and_then(|p| p.rsplit_once('/'))
        .ok_or_else(|| format!("{pattern:?} is not a /pattern/"))?;
    let (source, flags) = body;
    let mut inline = String::new();
    for f in flags.chars() {
        match f {
            'i' | 'm' | 's' => inline.push(f),
            other => return Err(format!("{pattern}: unknown flag {other:?}")),
        }
    }
    // `\/` is a plain `/` in RE2.
    let source = source.replace("\\/", "/");
    let full = match inline.is_empty() {
        true => source,
        false => format!("(?{inline}){source}"),
    };
    Regex::new(&full).map_err(|e| format!("{pattern}: {e}"))
}

impl Expression {
    pub fn parse(text: &str) -> Result<Expression, String> {
        let mut p = Parser {
            tokens: lex(text)?,
            at: 0,
        };
        let root = p.or()?;
        if p.at < p.tokens.len() {
            return Err(format!("unexpected {:?}", p.tokens[p.at]));
        }
        // Literal patterns are checked now, so a bad one fails before anything runs.
        fn check(e: &Expr) -> Result<(), String> {
            match e {
                Expr::Pattern(p) => regex_of(p).map(|_| ()),
                Expr::Compare(a, _, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                    check(a)?;
                    check(b)
                }
                _ => Ok(()),
            }
        }
        check(&root)?;
        Ok(Expression {
            text: text.to_string(),
            root,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the expression holds with `lookup` giving each variable's value.
    pub fn holds(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
        Ok(eval(&self.root, lookup)?.truthy())
    }
}

fn eval(e: &Expr, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Operand, String> {
    Ok(match e {
        Expr::Variable(v) => lookup(v).map_or(Operand::Null, Operand::Text),
        Expr::Text(t) => Operand::Text(t.clone()),
        Expr::Pattern(p) => Operand::Pattern(p.clone()),
        Expr::Null => Operand::Null,
        Expr::And(a, b) => Operand::Bool(eval(a, lookup)?.truthy() && eval(b, lookup)?.truthy()),
        Expr::Or(a, b) => Operand::Bool(eval(a, lookup)?.truthy() || eval(b, lookup)?.truthy()),
        Expr::Compare(a, op, b) => {
            let (left, right) = (eval(a, lookup)?, eval(b, lookup)?);
            let text = |o: &Operand| match o {
                Operand::Text(t) | Operand::Pattern(t) => Some(t.clone()),
                _ => None,
            };
            match op {
                Token::Equals | Token::NotEquals => {
                    let same = text(&left) == text(&right);
                    Operand::Bool(same == (*op == Token::Equals))
                }
                _ => {
                    // The right side is a pattern, or a variable holding one; null is "".
                    let pattern = text(&right).ok_or(
                        "the right side of =~ must be a /pattern/ or a variable holding one",
                    )?;
                    let found = regex_of(&pattern)?.is_match(&text(&left).unwrap_or_default());
                    Operand::Bool(found == (*op == Token::Matches))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_as_gitlab_evaluates_them() {
        let vars = [
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_PIPELINE_SOURCE", "push"),
            ("EMPTY", ""),
            ("RELEASE", "v1.2.3"),
            ("PATTERN", "/^v\\d+/"),
            ("PATH_LIKE", "a/b"),
        ];
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let cases: &[(&str, bool)] = &[
            ("$CI_COMMIT_BRANCH == \"main\"", true),
            ("$CI_COMMIT_BRANCH == 'main'", true),
            ("$CI_COMMIT_BRANCH != \"main\"", false),
            ("$CI_COMMIT_BRANCH", true),
            ("$EMPTY", false),
            ("$UNDEFINED", false),
            ("$UNDEFINED == null", true),
            ("$EMPTY == null", false),
            ("$EMPTY == \"\"", true),
            ("$UNDEFINED == $ALSO_UNDEFINED", true),
            ("$RELEASE =~ /^v\\d+\\.\\d+/", true),
            ("$RELEASE =~ /^V1/", false),
            ("$RELEASE =~ /^V1/i", true),
            ("$RELEASE !~ /^v/", false),
            ("$RELEASE =~ $PATTERN", true),
            ("$PATH_LIKE =~ /a\\/b/", true),
            ("$UNDEFINED =~ /^$/", true),
            // && binds tighter than ||.
            ("$UNDEFINED || $CI_COMMIT_BRANCH && $EMPTY", false),
            ("($UNDEFINED || $CI_COMMIT_BRANCH) && $RELEASE", true),
            (
                "$CI_PIPELINE_SOURCE == \"merge_request_event\" || $CI_COMMIT_BRANCH == \"main\"",
                true,
            ),
            (
                "${CI_COMMIT_BRANCH} == \"main\" && $CI_PIPELINE_SOURCE == \"push\"",
                true,
            ),
        ];
        for (text, want) in cases {
            let e = Expression::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(e.holds(&lookup).unwrap(), *want, "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("$A == ", "ends too early"),
            ("$A == \"x", "unclosed string"),
            ("($A", "not closed"),
            ("$A =~ /(/", "/(/"),
            ("$A =~ /x/q", "unknown flag"),
            ("$A $B", "unexpected"),
            ("$ == 1", "without a variable name"),
            ("$A = 'x'", "unexpected"),
        ];
        for (text, want) in bad {
            let e = Expression::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = Expression::parse("$A =~ $B").unwrap();
        let err = e
            .holds(&|n| (n == "B").then(|| "not a pattern".to_string()))
            .unwrap_err();
        assert!(err.contains("not a /pattern/"), "{err}");
    }
}
