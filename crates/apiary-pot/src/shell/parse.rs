//! Splits a command line the way bash would: quotes, escapes, `;`, `&&`, `||`, `&`, pipes,
//! redirections, `$VAR`, `$(...)` and backticks. The result is data only: nothing is ever
//! evaluated here, and substitutions are later answered by the fake shell itself.

/// Part of a word before expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    /// `$NAME` or `${NAME}`.
    Var(String),
    /// The source text of `$(...)` or `` `...` ``.
    Subst(String),
}

/// One word: its parts, joined after expansion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) parts: Vec<Part>,
}

/// Where a redirection sends or takes a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedirKind {
    /// `>` (append false) or `>>`.
    Out { append: bool },
    /// `<`.
    In,
    /// `2>&1`-style duplication onto another descriptor.
    Dup(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redir {
    pub(crate) fd: u8,
    pub(crate) kind: RedirKind,
    pub(crate) target: Word,
}

/// A command with its arguments and redirections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Simple {
    pub(crate) words: Vec<Word>,
    pub(crate) redirs: Vec<Redir>,
}

/// How a pipeline is joined to the one after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Join {
    Seq,
    And,
    Or,
}

/// Commands joined by `|`.
pub(crate) type Pipeline = Vec<Simple>;

/// Why a line could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyntaxError {
    /// An opened quote or substitution never closed.
    Unterminated(char),
    /// An operator where a command should be.
    Unexpected(String),
    /// Too many words or too deep.
    TooComplex,
}

const MAX_WORDS: usize = 4096;

#[derive(Debug, PartialEq)]
enum Tok {
    Word(Word),
    Op(&'static str),
    /// A redirection operator with its descriptor.
    Redir(u8, RedirKind),
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    src: &'a str,
}

impl Lexer<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    fn next(&mut self) -> Option<char> {
        self.chars.next().map(|(_, c)| c)
    }

    /// Reads up to the `)` that closes a `$(`, honouring nesting and quotes.
    fn subst(&mut self) -> Result<String, SyntaxError> {
        let mut depth = 1u32;
        let mut out = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = self.next() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(out);
                    }
                }
                _ => {}
            }
            out.push(c);
        }
        Err(SyntaxError::Unterminated('('))
    }

    fn var(&mut self, lit: &mut String, parts: &mut Vec<Part>) -> Result<(), SyntaxError> {
        let flush = |lit: &mut String, parts: &mut Vec<Part>| {
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(lit)));
            }
        };
        match self.peek() {
            Some('(') => {
                self.next();
                flush(lit, parts);
                parts.push(Part::Subst(self.subst()?));
            }
            Some('{') => {
                self.next();
                let mut name = String::new();
                loop {
                    match self.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(SyntaxError::Unterminated('{')),
                    }
                }
                flush(lit, parts);
                parts.push(Part::Var(name));
            }
            Some(c)
                if c.is_ascii_alphanumeric() || c == '_' || c == '?' || c == '$' || c == '#' =>
            {
                let mut name = String::new();
                if c.is_ascii_digit() || c == '?' || c == '$' || c == '#' {
                    self.next();
                    name.push(c);
                } else {
                    while let Some(c) =
                        self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        self.next();
                        name.push(c);
                    }
                }
                flush(lit, parts);
                parts.push(Part::Var(name));
            }
            _ => lit.push('$'),
        }
        Ok(())
    }

    fn word(&mut self) -> Result<Word, SyntaxError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' => break,
                '\\' => {
                    self.next();
                    if let Some(c) = self.next() {
                        lit.push(c);
                    }
                }
                '\'' => {
                    self.next();
                    loop {
                        match self.next() {
                            Some('\'') => break,
                            Some(c) => lit.push(c),
                            None => return Err(SyntaxError::Unterminated('\'')),
                        }
                    }
                    // An empty '' still makes a word.
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                '"' => {
                    self.next();
                    loop {
                        match self.next() {
                            Some('"') => break,
                            Some('\\') => match self.peek() {
                                Some(c @ ('"' | '\\' | '$' | '`')) => {
                                    self.next();
                                    lit.push(c);
                                }
                                _ => lit.push('\\'),
                            },
                            Some('$') => self.var(&mut lit, &mut parts)?,
                            Some('`') => {
                                let s = self.backtick()?;
                                if !lit.is_empty() {
                                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                                }
                                parts.push(Part::Subst(s));
                            }
                            Some(c) => lit.push(c),
                            None => return Err(SyntaxError::Unterminated('"')),
                        }
                    }
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                '$' => {
                    self.next();
                    self.var(&mut lit, &mut parts)?;
                }
                '`' => {
                    self.next();
                    let s = self.backtick()?;
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Subst(s));
                }
                c => {
                    self.next();
                    lit.push(c);
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Word { parts })
    }

    fn backtick(&mut self) -> Result<String, SyntaxError> {
        let mut s = String::new();
        loop {
            match self.next() {
                Some('`') => return Ok(s),
                Some(c) => s.push(c),
                None => return Err(SyntaxError::Unterminated('`')),
            }
        }
    }

    fn tokens(&mut self) -> Result<Vec<Tok>, SyntaxError> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if out.len() > MAX_WORDS {
                return Err(SyntaxError::TooComplex);
            }
            match c {
                ' ' | '\t' | '\r' => {
                    self.next();
                }
                '#' => break,
                '\n' | ';' => {
                    self.next();
                    out.push(Tok::Op(";"));
                }
                '&' => {
                    self.next();
                    match self.peek() {
                        Some('&') => {
                            self.next();
                            out.push(Tok::Op("&&"));
                        }
                        Some('>') => {
                            self.next();
                            out.push(Tok::Redir(1, RedirKind::Out { append: false }));
                            out.push(Tok::Redir(2, RedirKind::Dup(1)));
                        }
                        _ => out.push(Tok::Op(";")),
                    }
                }
                '|' => {
                    self.next();
                    if self.peek() == Some('|') {
                        self.next();
                        out.push(Tok::Op("||"));
                    } else {
                        out.push(Tok::Op("|"));
                    }
                }
                '<' | '>' => out.push(self.redir(None)),
                d @ '0'..='9' => {
                    // `2>` is a redirection only when the digit touches the operator.
                    let (pos, _) = self.chars.peek().copied().unwrap_or((0, d));
                    let next = self.src.get(pos + 1..).and_then(|s| s.chars().next());
                    if matches!(next, Some('<' | '>')) {
                        self.next();
                        out.push(self.redir(d.to_digit(10).and_then(|v| u8::try_from(v).ok())));
                    } else {
                        out.push(Tok::Word(self.word()?));
                    }
                }
                _ => out.push(Tok::Word(self.word()?)),
            }
        }
        Ok(out)
    }

    fn redir(&mut self, fd: Option<u8>) -> Tok {
        let c = self.next();
        if c == Some('<') {
            return Tok::Redir(fd.unwrap_or(0), RedirKind::In);
        }
        let append = self.peek() == Some('>');
        if append {
            self.next();
        }
        if self.peek() == Some('&') {
            self.next();
            let to = self.peek().and_then(|c| c.to_digit(10)).and_then(|v| u8::try_from(v).ok());
            if let Some(to) = to {
                self.next();
                return Tok::Redir(fd.unwrap_or(1), RedirKind::Dup(to));
            }
        }
        Tok::Redir(fd.unwrap_or(1), RedirKind::Out { append })
    }
}

/// Splits a line into pipelines and the operators joining them.
pub(crate) fn parse(line: &str) -> Result<Vec<(Pipeline, Join)>, SyntaxError> {
    let mut lx = Lexer { chars: line.char_indices().peekable(), src: line };
    let toks = lx.tokens()?;
    let mut list: Vec<(Pipeline, Join)> = Vec::new();
    let mut pipe: Pipeline = Vec::new();
    let mut cmd = Simple::default();
    let mut it = toks.into_iter().peekable();
    let unexpected = |s: &str| SyntaxError::Unexpected(s.to_owned());
    while let Some(t) = it.next() {
        match t {
            Tok::Word(w) => cmd.words.push(w),
            Tok::Redir(fd, RedirKind::Dup(to)) => {
                cmd.redirs.push(Redir { fd, kind: RedirKind::Dup(to), target: Word::default() });
            }
            Tok::Redir(fd, kind) => match it.next() {
                Some(Tok::Word(target)) => {
                    // `&>` queued a Dup right after its Out.
                    cmd.redirs.push(Redir { fd, kind, target });
                    if let Some(Tok::Redir(2, RedirKind::Dup(1))) = it.peek() {
                        it.next();
                        cmd.redirs.push(Redir {
                            fd: 2,
                            kind: RedirKind::Dup(1),
                            target: Word::default(),
                        });
                    }
                }
                Some(Tok::Op(op)) => return Err(unexpected(op)),
                _ => return Err(unexpected("newline")),
            },
            Tok::Op("|") => {
                if cmd == Simple::default() {
                    return Err(unexpected("|"));
                }
                pipe.push(std::mem::take(&mut cmd));
            }
            Tok::Op(op) => {
                let join = match op {
                    "&&" => Join::And,
                    "||" => Join::Or,
                    _ => Join::Seq,
                };
                if cmd == Simple::default() {
                    return Err(unexpected(op));
                }
                pipe.push(std::mem::take(&mut cmd));
                list.push((std::mem::take(&mut pipe), join));
            }
        }
    }
    if cmd != Simple::default() {
        pipe.push(cmd);
    } else if !pipe.is_empty() {
        return Err(unexpected("newline"));
    }
    if !pipe.is_empty() {
        list.push((pipe, Join::Seq));
    } else if list.last().is_some_and(|(_, j)| *j != Join::Seq) {
        return Err(unexpected("newline"));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &Simple) -> Vec<String> {
        p.words
            .iter()
            .map(|w| {
                w.parts
                    .iter()
                    .map(|p| match p {
                        Part::Lit(s) => s.clone(),
                        Part::Var(v) => format!("${v}"),
                        Part::Subst(s) => format!("$({s})"),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn operators_quotes_and_redirections() {
        let l = parse(r#"cd /tmp || cd /var/run; echo "a b" 'c;d' e\ f > x 2>&1 && cat x | wc -l"#)
            .unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].1, Join::Or);
        assert_eq!(l[1].1, Join::Seq);
        assert_eq!(l[2].1, Join::And);
        let e = &l[2].0[0];
        assert_eq!(lits(e), vec!["echo", "a b", "c;d", "e f"]);
        assert_eq!(e.redirs.len(), 2);
        assert_eq!(e.redirs[1].kind, RedirKind::Dup(1));
        assert_eq!(l[3].0.len(), 2);
        assert_eq!(lits(&l[3].0[0]), vec!["cat", "x"]);
    }

    #[test]
    fn substitutions_and_vars_are_data() {
        let l = parse("echo $(uname -a) `id` ${HOME}/x $? 2>/dev/null").unwrap();
        assert_eq!(lits(&l[0].0[0]), vec!["echo", "$(uname -a)", "$(id)", "$HOME/x", "$?"]);
        assert_eq!(l[0].0[0].redirs[0].fd, 2);
    }

    #[test]
    fn errors() {
        assert_eq!(parse("echo 'abc"), Err(SyntaxError::Unterminated('\'')));
        assert!(matches!(parse("| ls"), Err(SyntaxError::Unexpected(_))));
        assert!(matches!(parse("ls &&"), Err(SyntaxError::Unexpected(_))));
        assert!(matches!(parse("ls >"), Err(SyntaxError::Unexpected(_))));
        assert!(parse("").unwrap().is_empty());
        assert!(parse("   # comment").unwrap().is_empty());
        assert_eq!(parse("ls;").unwrap().len(), 1);
        assert_eq!(parse("sleep 1 &").unwrap().len(), 1);
    }
}
