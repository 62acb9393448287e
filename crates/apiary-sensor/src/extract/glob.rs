//! Shell-style wildcard patterns with Python `fnmatch` semantics (`*`, `?`, `[...]`, `[!...]`),
//! used by the payload filters on lower-cased names.

/// One compiled pattern (kept as lower-cased bytes; names are ASCII or lossy UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pat: Box<[u8]>,
}

impl Glob {
    /// Compiles `pattern`, lower-casing it like PokieStream does.
    pub fn new(pattern: &str) -> Self {
        Self { pat: pattern.to_lowercase().into_bytes().into_boxed_slice() }
    }

    /// Whether `name` (already lower-cased) matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        fnmatch(&self.pat, name.as_bytes())
    }
}

/// A list of patterns where an empty list matches every name (PokieStream's rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobSet {
    globs: Vec<Glob>,
}

impl GlobSet {
    /// Compiles every pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        Self { globs: patterns.iter().map(|p| Glob::new(p.as_ref())).collect() }
    }

    /// Whether `name` matches any pattern, or the set is empty. `name` must be lower-cased.
    pub fn matches(&self, name: &str) -> bool {
        self.globs.is_empty() || self.globs.iter().any(|g| g.matches(name))
    }
}

/// Matches a character class starting just after `[`; returns (matched, bytes consumed
/// including the closing `]`), or `None` when the class is unclosed (then `[` is literal).
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = pat.first() == Some(&b'!');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let p = *pat.get(i)?;
        if p == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|e| *e != b']') {
            let hi = *pat.get(i + 2)?;
            if p <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if p == c {
                matched = true;
            }
            i += 1;
        }
    }
}

/// Iterative wildcard match with single-star backtracking: linear in practice, never recursive,
/// so a hostile name cannot blow the stack.
fn fnmatch(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let c = name.get(n).copied().unwrap_or(0);
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => match pat.get(p + 1..).and_then(|rest| class(rest, c)) {
                Some((true, used)) => {
                    p += 1 + used;
                    n += 1;
                    continue;
                }
                Some((false, _)) => {}
                None if c == b'[' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                None => {}
            },
            Some(&lit) if lit == c => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pat.get(p..).is_none_or(|rest| rest.iter().all(|b| *b == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pokiestream_examples() {
        let g = Glob::new("*.mydomain.com");
        assert!(g.matches("a.mydomain.com"));
        assert!(g.matches("a.b.mydomain.com"));
        assert!(!g.matches("mydomain.com"));
        assert!(Glob::new("example.com").matches("example.com"));
        assert!(!Glob::new("example.com").matches("www.example.com"));
        assert!(Glob::new("Example.COM").matches("example.com"));
        assert!(GlobSet::new::<&str>(&[]).matches("anything"));
    }

    #[test]
    fn classes_and_question_marks() {
        assert!(Glob::new("ns[0-9].example.org").matches("ns4.example.org"));
        assert!(!Glob::new("ns[!0-9].example.org").matches("ns4.example.org"));
        assert!(Glob::new("ns[!0-9].example.org").matches("nsx.example.org"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("a[b").matches("a[b"));
        assert!(Glob::new("[]]x").matches("]x"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("**a**b").matches("xxaxxb"));
        assert!(!Glob::new("*a*b").matches("xxaxx"));
    }
}
