//! Rule SQL text -> [`Statement`], with a [`Span`] on every node. No semantics: names stay
//! unresolved and types unchecked (that is `rules::compile`).
//!
//! The syntax lives in `grammar/rule_sql.pest` only; this module walks pest's pairs. It never
//! panics: a pair that does not have the shape the grammar promises becomes a
//! [`ParseErrorKind::Internal`] error. Input is bounded before pest sees it ([`MAX_NESTING`]) and
//! while the tree is built ([`MAX_EXPR_DEPTH`]), so neither parsing nor later tree walks can
//! exhaust the stack.

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::{
    Alias, AliasSegment, BinaryOp, Expr, Field, FromSource, Ident, Location, Path, PathSegment, Span, Statement,
    StatementKind, UnaryOp,
};

mod grammar {
    #[derive(pest_derive::Parser)]
    #[grammar = "../grammar/rule_sql.pest"]
    pub(super) struct RuleSqlParser;
}

use grammar::{Rule, RuleSqlParser};

/// Deepest nesting of `(`, `[` and `CASE` accepted (EMQX has no limit; real rules nest a few levels).
pub const MAX_NESTING: usize = 32;

/// Deepest expression tree accepted, counting every node from the statement down. A chain such
/// as `a + b + c` is as deep as it is long.
pub const MAX_EXPR_DEPTH: usize = 256;

/// What went wrong, for callers that react differently (all are the user's mistake but `Internal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The text does not follow the grammar.
    Syntax,
    /// A `'string'`, `"name"` or `"topic"` with no closing quote.
    UnterminatedQuote,
    /// An integer outside `i64`, or a float outside `f64`.
    NumberOutOfRange,
    /// Nesting beyond [`MAX_NESTING`] or an expression deeper than [`MAX_EXPR_DEPTH`].
    TooDeep,
    /// A bug in this parser: the grammar matched but the tree had an unexpected shape.
    Internal,
}

/// A rule SQL syntax error. `Display` is `line:col: message`; [`ParseError::render`] adds the
/// offending line with a caret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", span.start)]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub message: String,
    /// The offending token (empty at the end of input).
    pub span: Span,
    /// What the grammar would have accepted at `span.start` ("FROM", "','", "an expression", ...).
    pub expected: Vec<String>,
}

impl ParseError {
    fn new(kind: ParseErrorKind, message: impl Into<String>, span: Span) -> Self {
        ParseError {
            kind,
            message: message.into(),
            span,
            expected: Vec::new(),
        }
    }

    fn internal(what: &str, span: Span) -> Self {
        ParseError::new(
            ParseErrorKind::Internal,
            format!("internal error (a parser bug): {what}"),
            span,
        )
    }

    /// Moves the error into an enclosing file where the SQL text starts at line `1 + line_offset`,
    /// column `1 + col_offset` (see [`Location::offset_by`]).
    #[must_use]
    pub fn offset_by(mut self, line_offset: usize, col_offset: usize) -> Self {
        self.span = self.span.offset_by(line_offset, col_offset);
        self
    }

    /// The error with the offending line of `sql` and a caret under the span:
    ///
    /// ```text
    /// 1:8: expected a field or '*', found `FROM`
    ///   |
    /// 1 | SELECT FROM "t"
    ///   |        ^^^^
    /// ```
    ///
    /// The line is found through the byte offset, so the line number printed is the (possibly
    /// [`offset_by`](Self::offset_by)-shifted) one of the span while the text comes from `sql`.
    pub fn render(&self, sql: &str) -> String {
        let offset = floor_char_boundary(sql, self.span.start.offset);
        let line_start = sql[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = sql[offset..].find('\n').map_or(sql.len(), |i| offset + i);
        let line = sql[line_start..line_end].trim_end_matches('\r');
        let end = floor_char_boundary(sql, self.span.end.offset).clamp(offset, (line_start + line.len()).max(offset));
        let pad: String = sql[line_start..offset]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat(sql[offset..end].chars().count().max(1));
        let number = self.span.start.line.to_string();
        let gutter = " ".repeat(number.len());
        format!("{self}\n{gutter} |\n{number} | {line}\n{gutter} | {pad}{carets}")
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Parses one rule SQL statement. Errors point at the offending token; printing the result
/// (`Display`) gives SQL that parses back to the same tree.
pub fn parse(sql: &str) -> Result<Statement, ParseError> {
    let lines = LineIndex::new(sql);
    let scan = prescan(sql, &lines)?;
    let mut pairs = match RuleSqlParser::parse(Rule::statement, sql) {
        Ok(pairs) => pairs,
        Err(err) => {
            let pos = match err.location {
                InputLocation::Pos(p) => p,
                InputLocation::Span((p, _)) => p,
            };
            // pest gives up at or after an unclosed quote; name the real cause.
            if let Some(quote) = scan.unterminated.filter(|q| q.span.start.offset <= pos) {
                return Err(quote);
            }
            return Err(syntax_error(err.variant, pos, sql, &lines));
        }
    };
    let statement = pairs
        .next()
        .ok_or_else(|| ParseError::internal("no statement pair", lines.span(0, 0)))?;
    Builder { lines: &lines }.statement(statement)
}

// ------------------------------------------------------------------------ positions

/// Byte offset -> line and column (binary search for the line, then a count of its characters).
struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset at which each line starts.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    fn location(&self, offset: usize) -> Location {
        let offset = floor_char_boundary(self.text, offset);
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let line_start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self.text.get(line_start..offset).map_or(0, |s| s.chars().count()) + 1;
        Location { line, column, offset }
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span {
            start: self.location(start),
            end: self.location(end),
        }
    }

    /// The span of `pair` without the whitespace and comments pest attaches to the end of a rule
    /// that ends in an unmatched `?` or `*` (`x` in `SELECT x FROM` would otherwise span `x `).
    fn pair_span(&self, pair: &Pair<'_, Rule>) -> Span {
        self.span(pair.as_span().start(), self.token_end(pair))
    }

    fn token_end(&self, pair: &Pair<'_, Rule>) -> usize {
        let end = pair.as_span().end();
        match pair.clone().into_inner().last() {
            Some(last) => {
                let last_end = self.token_end(&last);
                if self.text.get(last_end..end).is_some_and(only_trivia) {
                    last_end
                } else {
                    end
                }
            }
            None => end,
        }
    }
}

/// Whether `text` is only whitespace and `--` comments.
fn only_trivia(mut text: &str) -> bool {
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return true;
        }
        match text.strip_prefix("--") {
            Some(comment) => text = comment.find('\n').map_or("", |i| &comment[i..]),
            None => return false,
        }
    }
}

// ------------------------------------------------------------------------ pre-scan

struct Prescan {
    /// The first quote that is never closed.
    unterminated: Option<ParseError>,
}

/// A light token walk (comments and quotes skipped) that bounds nesting before pest recurses into
/// it, and finds an unclosed quote, which pest alone would report far from its cause.
fn prescan(sql: &str, lines: &LineIndex<'_>) -> Result<Prescan, ParseError> {
    let bytes = sql.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    let mut after_dot = false;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'\'' | b'"' => {
                let mut j = i + 1;
                loop {
                    match bytes[j.min(bytes.len())..].iter().position(|&c| c == b) {
                        None => {
                            let (kind, what) = if b == b'\'' {
                                ("string", "'")
                            } else {
                                ("quoted name or topic", "\"")
                            };
                            let mut err = ParseError::new(
                                ParseErrorKind::UnterminatedQuote,
                                format!("unterminated {kind}: no closing {what}"),
                                lines.span(i, sql.len()),
                            );
                            err.expected = vec![format!("'{what}'")];
                            return Ok(Prescan {
                                unterminated: Some(err),
                            });
                        }
                        Some(n) if bytes.get(j + n + 1) == Some(&b) => j += n + 2,
                        Some(n) => {
                            i = j + n + 1;
                            break;
                        }
                    }
                }
                after_dot = false;
                continue;
            }
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = bytes[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .unwrap_or(bytes.len() - i);
                let word = &sql[i..i + len];
                if !after_dot && word.eq_ignore_ascii_case("case") {
                    depth += 1;
                } else if !after_dot && word.eq_ignore_ascii_case("end") {
                    depth = depth.saturating_sub(1);
                }
                i += len;
                after_dot = false;
                continue;
            }
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(ParseError::new(
                ParseErrorKind::TooDeep,
                format!("nesting too deep: more than {MAX_NESTING} levels of parentheses, brackets and CASE"),
                lines.span(i, i + 1),
            ));
        }
        if !b.is_ascii_whitespace() {
            after_dot = b == b'.';
        }
        i += 1;
    }
    Ok(Prescan { unterminated: None })
}

// ------------------------------------------------------------------------ pest errors

/// What each rule means to a user, in the order "expected ..." lists them; `None` hides a rule.
fn rule_label(rule: Rule) -> Option<(u8, &'static str)> {
    use Rule as R;
    Some(match rule {
        R::statement | R::select_stmt | R::foreach_stmt | R::kw_select | R::kw_foreach => (0, "SELECT or FOREACH"),
        R::kw_from | R::from_clause => (1, "FROM"),
        R::kw_where | R::where_clause => (2, "WHERE"),
        R::kw_do | R::do_clause => (3, "DO"),
        R::kw_incase | R::incase_clause => (4, "INCASE"),
        R::kw_when | R::when_clause => (5, "WHEN"),
        R::kw_then => (6, "THEN"),
        R::kw_else | R::else_clause => (7, "ELSE"),
        R::kw_end => (8, "END"),
        R::topic_quoted | R::topic_single | R::topic_word => (9, "a topic filter in quotes"),
        R::field_list | R::field => (10, "a field or '*'"),
        R::foreach_binding => (11, "an expression"),
        R::star => (10, "'*'"),
        R::expr
        | R::and_expr
        | R::not_expr
        | R::predicate
        | R::sum
        | R::product
        | R::unary
        | R::case_expr
        | R::case_operand
        | R::boolean
        | R::float
        | R::int
        | R::string
        | R::list
        | R::range_lit
        | R::call
        | R::path
        | R::kw_case
        | R::kw_true
        | R::kw_false
        | R::neg_op
        | R::plus_op
        | R::not_op => (11, "an expression"),
        R::ident | R::quoted_name | R::func_name | R::alias_path => (12, "a name"),
        R::index_int => (12, "an integer"),
        R::key_word | R::key_string | R::key_digits => (13, "a key"),
        R::comma => (14, "','"),
        R::rparen => (15, "')'"),
        R::lparen => (16, "'('"),
        R::rbracket => (17, "']'"),
        R::lbracket => (18, "'['"),
        R::alias | R::kw_as => (19, "AS"),
        R::in_list | R::kw_in | R::kw_not => (20, "IN"),
        R::cmp_op | R::add_op | R::mul_op | R::kw_div | R::kw_mod => (21, "an operator"),
        R::and_op => (22, "AND"),
        R::or_op => (23, "OR"),
        R::EOI => (24, "end of input"),
        _ => return None,
    })
}

fn syntax_error(variant: ErrorVariant<Rule>, pos: usize, sql: &str, lines: &LineIndex<'_>) -> ParseError {
    let (token_end, found) = token_at(sql, pos);
    let span = lines.span(pos, token_end);
    match variant {
        ErrorVariant::ParsingError { positives, negatives } => {
            let mut labels: Vec<(u8, &str)> = positives.into_iter().filter_map(rule_label).collect();
            labels.sort_unstable();
            labels.dedup();
            let expected: Vec<String> = labels.into_iter().map(|(_, l)| l.to_owned()).collect();
            let message = if expected.is_empty() {
                let unexpected: Vec<&str> = negatives.into_iter().filter_map(rule_label).map(|(_, l)| l).collect();
                match unexpected.first() {
                    Some(what) => format!("unexpected {what} here: {found}"),
                    None => format!("unexpected {found}"),
                }
            } else {
                format!("expected {}, found {found}", join_or(&expected))
            };
            ParseError {
                kind: ParseErrorKind::Syntax,
                message,
                span,
                expected,
            }
        }
        // pest's own limits ("call limit reached", "stack limit reached").
        ErrorVariant::CustomError { message } => ParseError::new(ParseErrorKind::TooDeep, message, span),
    }
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The end of the token starting at `pos` and how to name it ("`FROM`", "end of input").
fn token_at(sql: &str, pos: usize) -> (usize, String) {
    let pos = floor_char_boundary(sql, pos);
    let rest = &sql[pos..];
    let Some(first) = rest.chars().next() else {
        return (pos, "end of input".to_owned());
    };
    let is_word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '@' | '~' | '.');
    let len = if first.is_ascii_alphanumeric() || first == '_' {
        rest.find(|c: char| !is_word(c) || (c == '.' && !first.is_ascii_digit()))
            .unwrap_or(rest.len())
    } else if first == '\'' || first == '"' {
        rest[1..]
            .find(first)
            .map_or_else(|| rest.find('\n').unwrap_or(rest.len()), |i| i + 2)
    } else if ["=~", "<>", "<=", ">=", "!=", ".."]
        .iter()
        .any(|op| rest.starts_with(op))
    {
        2
    } else {
        first.len_utf8()
    };
    let token = &rest[..len];
    let shown: String = token.chars().take(40).collect();
    let ellipsis = if shown.len() < token.len() { "..." } else { "" };
    (pos + len, format!("`{shown}{ellipsis}`"))
}

// ------------------------------------------------------------------------ pairs -> AST

struct Builder<'a> {
    lines: &'a LineIndex<'a>,
}

type Result<T, E = ParseError> = std::result::Result<T, E>;

/// FOREACH's bindings, expression, alias, DO fields and INCASE condition.
#[derive(Default)]
struct ForeachParts {
    bindings: Vec<Field>,
    expr: Option<Expr>,
    alias: Option<Alias>,
    do_fields: Vec<Field>,
    incase: Option<Expr>,
}

/// Punctuation pairs, which carry nothing once parsed.
fn is_punct(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::comma | Rule::lparen | Rule::rparen | Rule::lbracket | Rule::rbracket
    )
}

impl Builder<'_> {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        self.lines.pair_span(pair)
    }

    /// The children of `pair` that carry meaning (punctuation dropped).
    fn children<'i>(&self, pair: &Pair<'i, Rule>) -> Vec<Pair<'i, Rule>> {
        pair.clone().into_inner().filter(|p| !is_punct(p.as_rule())).collect()
    }

    fn first<'i>(&self, pair: &Pair<'i, Rule>, what: &str) -> Result<Pair<'i, Rule>> {
        pair.clone()
            .into_inner()
            .find(|p| !is_punct(p.as_rule()))
            .ok_or_else(|| self.unexpected(pair, what))
    }

    fn unexpected(&self, pair: &Pair<'_, Rule>, what: &str) -> ParseError {
        ParseError::internal(&format!("{what} (in {:?})", pair.as_rule()), self.span(pair))
    }

    fn check_depth(&self, depth: usize, pair: &Pair<'_, Rule>) -> Result<()> {
        if depth > MAX_EXPR_DEPTH {
            return Err(ParseError::new(
                ParseErrorKind::TooDeep,
                format!("expression too deep: more than {MAX_EXPR_DEPTH} nested operations"),
                self.span(pair),
            ));
        }
        Ok(())
    }

    fn statement(&self, pair: Pair<'_, Rule>) -> Result<Statement> {
        let stmt = self.first(&pair, "statement body")?;
        let span = self.span(&stmt);
        let mut kind = None;
        let mut from = Vec::new();
        let mut where_ = None;
        let mut foreach: Option<ForeachParts> = None;
        for child in self.children(&stmt) {
            match child.as_rule() {
                Rule::kw_select => {}
                Rule::kw_foreach => foreach = Some(ForeachParts::default()),
                Rule::field_list => {
                    kind = Some(StatementKind::Select {
                        fields: self.fields(&child)?,
                    })
                }
                Rule::foreach_binding => {
                    let binding = self.field(&child)?;
                    self.foreach_part(&mut foreach, &child)?.bindings.push(binding);
                }
                Rule::expr => {
                    let expr = self.expr(child.clone(), 1)?;
                    self.foreach_part(&mut foreach, &child)?.expr = Some(expr);
                }
                Rule::alias => {
                    let alias = self.alias(&child)?;
                    self.foreach_part(&mut foreach, &child)?.alias = Some(alias);
                }
                Rule::do_clause => {
                    let list = self
                        .children(&child)
                        .into_iter()
                        .find(|p| p.as_rule() == Rule::field_list)
                        .ok_or_else(|| self.unexpected(&child, "DO without fields"))?;
                    let fields = self.fields(&list)?;
                    self.foreach_part(&mut foreach, &child)?.do_fields = fields;
                }
                Rule::incase_clause => {
                    let cond = self.clause_expr(&child)?;
                    self.foreach_part(&mut foreach, &child)?.incase = Some(cond);
                }
                Rule::from_clause => {
                    for topic in self.children(&child) {
                        let (text, quote) = match topic.as_rule() {
                            Rule::kw_from => continue,
                            Rule::topic_quoted => (self.first(&topic, "topic text")?.as_str(), Some('"')),
                            Rule::topic_single => (self.first(&topic, "topic text")?.as_str(), Some('\'')),
                            Rule::topic_word => (topic.as_str(), None),
                            _ => return Err(self.unexpected(&topic, "FROM topic")),
                        };
                        from.push(FromSource {
                            topic: quote.map_or_else(|| text.to_owned(), |q| unquote(text, q)),
                            span: self.span(&topic),
                        });
                    }
                }
                Rule::where_clause => where_ = Some(self.clause_expr(&child)?),
                _ => return Err(self.unexpected(&child, "statement part")),
            }
        }
        if let Some(parts) = foreach {
            let expr = parts
                .expr
                .ok_or_else(|| self.unexpected(&stmt, "FOREACH without expression"))?;
            kind = Some(StatementKind::Foreach {
                bindings: parts.bindings,
                expr,
                alias: parts.alias,
                do_fields: parts.do_fields,
                incase: parts.incase,
            });
        }
        let kind = kind.ok_or_else(|| self.unexpected(&stmt, "no SELECT fields or FOREACH expression"))?;
        if from.is_empty() {
            return Err(self.unexpected(&stmt, "no FROM source"));
        }
        Ok(Statement {
            kind,
            from,
            where_,
            span,
        })
    }

    /// The FOREACH parts being collected (an internal error outside FOREACH).
    fn foreach_part<'f>(
        &self,
        foreach: &'f mut Option<ForeachParts>,
        pair: &Pair<'_, Rule>,
    ) -> Result<&'f mut ForeachParts> {
        foreach
            .as_mut()
            .ok_or_else(|| self.unexpected(pair, "FOREACH part outside FOREACH"))
    }

    /// The expression of `WHERE expr` or `INCASE expr`.
    fn clause_expr(&self, pair: &Pair<'_, Rule>) -> Result<Expr> {
        self.clause_expr_at(pair, 1)
    }

    fn fields(&self, pair: &Pair<'_, Rule>) -> Result<Vec<Field>> {
        self.children(pair).iter().map(|f| self.field(f)).collect()
    }

    fn field(&self, pair: &Pair<'_, Rule>) -> Result<Field> {
        let span = self.span(pair);
        let mut expr = None;
        let mut alias = None;
        for child in self.children(pair) {
            match child.as_rule() {
                Rule::star => return Ok(Field::Star { span }),
                Rule::expr => expr = Some(self.expr(child, 1)?),
                Rule::alias => alias = Some(self.alias(&child)?),
                _ => return Err(self.unexpected(&child, "field part")),
            }
        }
        let expr = expr.ok_or_else(|| self.unexpected(pair, "field without expression"))?;
        Ok(Field::Expr { expr, alias, span })
    }

    fn alias(&self, pair: &Pair<'_, Rule>) -> Result<Alias> {
        let path = self
            .children(pair)
            .into_iter()
            .find(|p| p.as_rule() == Rule::alias_path)
            .ok_or_else(|| self.unexpected(pair, "alias without name"))?;
        let mut children = self.children(&path).into_iter();
        let root = children
            .next()
            .ok_or_else(|| self.unexpected(&path, "alias without root"))?;
        let root = self.name(&root)?;
        let segments = children
            .map(|seg| match seg.as_rule() {
                Rule::alias_index => {
                    let int = self.first(&seg, "index")?;
                    let index = self.int(&int)?;
                    let span = self.span(&seg);
                    // `[-0]` appends, `[0]` prepends (EMQX's `tail` and `head`).
                    if index == 0 && int.as_str().starts_with('-') {
                        Ok(AliasSegment::Append { span })
                    } else {
                        Ok(AliasSegment::Index { index, span })
                    }
                }
                _ => self.name(&seg).map(AliasSegment::Key),
            })
            .collect::<Result<_>>()?;
        Ok(Alias {
            root,
            segments,
            span: self.span(&path),
        })
    }

    /// An `ident` or `quoted_name` pair.
    fn name(&self, pair: &Pair<'_, Rule>) -> Result<Ident> {
        let span = self.span(pair);
        match pair.as_rule() {
            Rule::ident | Rule::key_word | Rule::key_digits | Rule::kw_div | Rule::kw_mod => {
                Ok(Ident::new(pair.as_str(), span))
            }
            Rule::quoted_name => Ok(Ident::new(
                unquote(self.first(pair, "quoted text")?.as_str(), '"'),
                span,
            )),
            Rule::key_string => Ok(Ident::new(
                unquote(self.first(pair, "string text")?.as_str(), '\''),
                span,
            )),
            _ => Err(self.unexpected(pair, "name")),
        }
    }

    /// Any expression-level pair, at tree depth `depth`. Rules that wrap a single child (`expr`
    /// around a lone `and_expr`, parentheses, ...) are walked in a loop, so the recursion, and
    /// the stack it takes, follows the tree that is built rather than the grammar's layers.
    fn expr(&self, mut pair: Pair<'_, Rule>, mut depth: usize) -> Result<Expr> {
        loop {
            self.check_depth(depth, &pair)?;
            match pair.as_rule() {
                Rule::expr | Rule::and_expr | Rule::sum | Rule::product | Rule::not_expr | Rule::predicate => {
                    let mut children = self.children(&pair);
                    if children.len() != 1 {
                        return self.compound(&pair, depth);
                    }
                    pair = children
                        .pop()
                        .ok_or_else(|| self.unexpected(&pair, "empty expression"))?;
                }
                Rule::unary => {
                    let mut parenthesized = false;
                    let mut operand = None;
                    for child in pair.clone().into_inner() {
                        match child.as_rule() {
                            Rule::neg_op => return self.unary(&pair, depth),
                            Rule::lparen => parenthesized = true,
                            Rule::plus_op | Rule::rparen => {}
                            _ => operand = Some(child),
                        }
                    }
                    pair = operand.ok_or_else(|| self.unexpected(&pair, "unary without operand"))?;
                    // Parentheses add no node but do recurse in pest: count them as a level.
                    depth += usize::from(parenthesized);
                }
                _ => return self.atom(&pair, depth),
            }
        }
    }

    /// An operator chain, `NOT`s or a comparison: a rule with more than one child.
    fn compound(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        match pair.as_rule() {
            Rule::not_expr => self.not_expr(pair, depth),
            Rule::predicate => self.predicate(pair, depth),
            _ => self.chain(pair, depth),
        }
    }

    /// A primary expression: literal, list, call, path or CASE.
    fn atom(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let span = self.span(pair);
        match pair.as_rule() {
            Rule::int => Ok(Expr::Int {
                value: self.int(pair)?,
                span,
            }),
            Rule::float => self.float(pair),
            Rule::string => Ok(Expr::Str {
                value: unquote(self.first(pair, "string text")?.as_str(), '\''),
                span,
            }),
            Rule::boolean => {
                let value = self.first(pair, "true or false")?.as_rule() == Rule::kw_true;
                Ok(Expr::Bool { value, span })
            }
            Rule::list => {
                let items = self
                    .children(pair)
                    .into_iter()
                    .map(|p| self.expr(p, depth + 1))
                    .collect::<Result<_>>()?;
                Ok(Expr::List { items, span })
            }
            Rule::range_lit => {
                let (start, end) = self.bounds(pair)?;
                Ok(Expr::Range { start, end, span })
            }
            Rule::call => self.call(pair, depth),
            Rule::path => self.path(pair).map(Expr::Path),
            Rule::case_expr => self.case(pair, depth),
            _ => Err(self.unexpected(pair, "expression")),
        }
    }

    /// `operand (op operand)*`, folded to the left.
    fn chain(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let children = self.children(pair);
        let ops = children.len() / 2;
        // The first operand ends up `ops` levels down.
        self.check_depth(depth + ops, pair)?;
        let mut iter = children.into_iter();
        let first = iter
            .next()
            .ok_or_else(|| self.unexpected(pair, "empty operator chain"))?;
        let mut acc = self.expr(first, depth + ops)?;
        let mut level = depth + ops;
        while let Some(op_pair) = iter.next() {
            let op = binary_op(&op_pair).ok_or_else(|| self.unexpected(&op_pair, "operator"))?;
            let right = iter
                .next()
                .ok_or_else(|| self.unexpected(pair, "operator without right operand"))?;
            let right = self.expr(right, level)?;
            level -= 1;
            let span = acc.span().to(right.span());
            acc = Expr::Binary {
                op,
                left: Box::new(acc),
                right: Box::new(right),
                span,
            };
        }
        Ok(acc)
    }

    /// `NOT* predicate`.
    fn not_expr(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let children = self.children(pair);
        let nots: Vec<Span> = children
            .iter()
            .take_while(|p| p.as_rule() == Rule::not_op)
            .map(|p| self.span(p))
            .collect();
        self.check_depth(depth + nots.len(), pair)?;
        let operand = children
            .into_iter()
            .find(|p| p.as_rule() != Rule::not_op)
            .ok_or_else(|| self.unexpected(pair, "NOT without operand"))?;
        let mut expr = self.expr(operand, depth + nots.len())?;
        for not in nots.into_iter().rev() {
            let span = not.to(expr.span());
            expr = Expr::Unary {
                op: UnaryOp::Not,
                operand: Box::new(expr),
                span,
            };
        }
        Ok(expr)
    }

    /// `sum [cmp_op sum | [NOT] IN (list)]`.
    fn predicate(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let mut iter = self.children(pair).into_iter();
        let first = iter.next().ok_or_else(|| self.unexpected(pair, "empty predicate"))?;
        let Some(next) = iter.next() else {
            return self.expr(first, depth);
        };
        let left = self.expr(first, depth + 1)?;
        match next.as_rule() {
            Rule::cmp_op => {
                let op = binary_op(&next).ok_or_else(|| self.unexpected(&next, "comparison"))?;
                let right = iter
                    .next()
                    .ok_or_else(|| self.unexpected(pair, "comparison without right operand"))?;
                let right = self.expr(right, depth + 1)?;
                let span = left.span().to(right.span());
                Ok(Expr::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                    span,
                })
            }
            Rule::in_list => {
                let mut negated = false;
                let mut list = Vec::new();
                for item in self.children(&next) {
                    match item.as_rule() {
                        Rule::kw_not => negated = true,
                        Rule::kw_in => {}
                        _ => list.push(self.expr(item, depth + 1)?),
                    }
                }
                let span = left.span().to(self.span(&next));
                Ok(Expr::In {
                    expr: Box::new(left),
                    list,
                    negated,
                    span,
                })
            }
            _ => Err(self.unexpected(&next, "comparison or IN")),
        }
    }

    /// `-* primary` with at least one minus (a unary plus is dropped).
    fn unary(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let mut negs = Vec::new();
        let mut operand = None;
        let mut parenthesized = false;
        for child in pair.clone().into_inner() {
            match child.as_rule() {
                Rule::neg_op => negs.push(self.span(&child)),
                Rule::plus_op | Rule::rparen => {}
                Rule::lparen => parenthesized = true,
                _ => operand = Some(child),
            }
        }
        let operand = operand.ok_or_else(|| self.unexpected(pair, "unary without operand"))?;
        let inner = depth + negs.len() + usize::from(parenthesized);
        self.check_depth(inner, pair)?;
        let mut expr = self.expr(operand, inner)?;
        for neg in negs.into_iter().rev() {
            let span = neg.to(expr.span());
            expr = Expr::Unary {
                op: UnaryOp::Neg,
                operand: Box::new(expr),
                span,
            };
        }
        Ok(expr)
    }

    fn call(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let mut children = self.children(pair).into_iter();
        let func = children
            .next()
            .ok_or_else(|| self.unexpected(pair, "call without name"))?;
        let name = self.first(&func, "function name")?;
        let name = self.name(&name)?;
        let args = children.map(|a| self.expr(a, depth + 1)).collect::<Result<_>>()?;
        Ok(Expr::Call {
            name,
            args,
            span: self.span(pair),
        })
    }

    fn case(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let mut operand = None;
        let mut whens = Vec::new();
        let mut else_ = None;
        for child in self.children(pair) {
            match child.as_rule() {
                Rule::kw_case | Rule::kw_end => {}
                Rule::case_operand => {
                    operand = Some(Box::new(self.expr(self.first(&child, "CASE operand")?, depth + 1)?));
                }
                Rule::when_clause => {
                    let mut parts = self.children(&child).into_iter().filter(|p| p.as_rule() == Rule::expr);
                    let cond = parts
                        .next()
                        .ok_or_else(|| self.unexpected(&child, "WHEN without condition"))?;
                    let then = parts
                        .next()
                        .ok_or_else(|| self.unexpected(&child, "WHEN without THEN"))?;
                    whens.push((self.expr(cond, depth + 1)?, self.expr(then, depth + 1)?));
                }
                Rule::else_clause => else_ = Some(Box::new(self.clause_expr_at(&child, depth + 1)?)),
                _ => return Err(self.unexpected(&child, "CASE part")),
            }
        }
        Ok(Expr::Case {
            operand,
            whens,
            else_,
            span: self.span(pair),
        })
    }

    /// The expression of a `KEYWORD expr` clause, at tree depth `depth`.
    fn clause_expr_at(&self, pair: &Pair<'_, Rule>, depth: usize) -> Result<Expr> {
        let expr = self
            .children(pair)
            .into_iter()
            .find(|p| p.as_rule() == Rule::expr)
            .ok_or_else(|| self.unexpected(pair, "clause without expression"))?;
        self.expr(expr, depth)
    }

    fn path(&self, pair: &Pair<'_, Rule>) -> Result<Path> {
        let mut children = self.children(pair).into_iter();
        let root = children
            .next()
            .ok_or_else(|| self.unexpected(pair, "path without root"))?;
        let root = self.name(&root)?;
        let segments = children
            .map(|seg| match seg.as_rule() {
                Rule::key_string => self.name(&seg).map(PathSegment::Quoted),
                Rule::key_word | Rule::key_digits | Rule::quoted_name => self.name(&seg).map(PathSegment::Name),
                Rule::index_seg => {
                    let index = self.int(&self.first(&seg, "index")?)?;
                    Ok(PathSegment::Index {
                        index,
                        span: self.span(&seg),
                    })
                }
                Rule::range_seg => {
                    let (start, end) = self.bounds(&seg)?;
                    Ok(PathSegment::Range {
                        start,
                        end,
                        span: self.span(&seg),
                    })
                }
                Rule::var_index_seg => Ok(PathSegment::Dynamic {
                    index: Box::new(self.path(&self.first(&seg, "index path")?)?),
                    span: self.span(&seg),
                }),
                _ => Err(self.unexpected(&seg, "path segment")),
            })
            .collect::<Result<_>>()?;
        Ok(Path {
            root,
            segments,
            span: self.span(pair),
        })
    }

    /// The two integers of `[start..end]`.
    fn bounds(&self, pair: &Pair<'_, Rule>) -> Result<(i64, i64)> {
        let ints = self.children(pair);
        match ints.as_slice() {
            [start, end] => Ok((self.int(start)?, self.int(end)?)),
            _ => Err(self.unexpected(pair, "range bounds")),
        }
    }

    fn int(&self, pair: &Pair<'_, Rule>) -> Result<i64> {
        pair.as_str().parse().map_err(|_| {
            ParseError::new(
                ParseErrorKind::NumberOutOfRange,
                format!("integer {} does not fit in 64 bits", pair.as_str()),
                self.span(pair),
            )
        })
    }

    fn float(&self, pair: &Pair<'_, Rule>) -> Result<Expr> {
        let span = self.span(pair);
        match pair.as_str().parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Expr::Float { value, span }),
            _ => Err(ParseError::new(
                ParseErrorKind::NumberOutOfRange,
                format!("number {} is out of range for a float", pair.as_str()),
                span,
            )),
        }
    }
}

fn binary_op(pair: &Pair<'_, Rule>) -> Option<BinaryOp> {
    let text = pair.as_str().to_ascii_lowercase();
    Some(match (pair.as_rule(), text.as_str()) {
        (Rule::or_op, _) => BinaryOp::Or,
        (Rule::and_op, _) => BinaryOp::And,
        (Rule::cmp_op, "=") => BinaryOp::Eq,
        (Rule::cmp_op, "!=" | "<>") => BinaryOp::Ne,
        (Rule::cmp_op, "<") => BinaryOp::Lt,
        (Rule::cmp_op, "<=") => BinaryOp::Le,
        (Rule::cmp_op, ">") => BinaryOp::Gt,
        (Rule::cmp_op, ">=") => BinaryOp::Ge,
        (Rule::cmp_op, "=~") => BinaryOp::TopicMatch,
        (Rule::add_op, "+") => BinaryOp::Add,
        (Rule::add_op, "-") => BinaryOp::Sub,
        (Rule::mul_op, "*") => BinaryOp::Mul,
        (Rule::mul_op, "/") => BinaryOp::Div,
        (Rule::mul_op, "div") => BinaryOp::IntDiv,
        (Rule::mul_op, "mod") => BinaryOp::Mod,
        _ => return None,
    })
}

/// The text between quotes with each doubled quote made single.
fn unquote(text: &str, quote: char) -> String {
    let doubled: String = [quote, quote].iter().collect();
    text.replace(&doubled, &quote.to_string())
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
