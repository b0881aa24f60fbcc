//! Recursive-descent parser of one OTTL condition into a [`BoolAst`].
//!
//! The grammar is upstream's (`pkg/ottl/grammar.go`) restricted to
//! conditions:
//!
//! ```text
//! condition  := or EOF
//! or         := and ("or" and)*
//! and        := bool ("and" bool)*
//! bool       := "not"? ( value CMP value | "true" | "false" | Converter(..) | "(" or ")" )
//! value      := add
//! add        := mul (("+" | "-") mul)*
//! mul        := unary (("*" | "/") unary)*
//! unary      := ("-" | "+")? primary
//! primary    := "nil" | "true" | "false" | STRING | INT | FLOAT | 0xBYTES | ENUM
//!             | path | Converter "(" args ")" keys | "(" add ")" | list | map
//! path       := field ("." field)*          field := lower ("[" (STRING | INT) "]")*
//! ```
//!
//! Like upstream's parser a `bool` first tries the comparison and falls
//! back to the other forms, so `(a - b) > 5` and `(a > 5)` both parse. The
//! nesting depth is capped ([`MAX_DEPTH`]) so that no input can exhaust the
//! stack; the text length is capped by the lexer.

use super::ast::{ArgAst, BoolAst, CallAst, FieldAst, KeyAst, MathOp, PathAst, ValAst};
use super::lexer::{lex, Tok, Token};
use super::{OttlError, MAX_DEPTH};

/// Parses one condition.
pub(crate) fn parse(text: &str) -> Result<BoolAst, OttlError> {
    let toks = lex(text)?;
    if toks.len() == 1 {
        return Err(OttlError::at(text, 0, "empty condition"));
    }
    let mut p = Parser {
        text,
        toks,
        i: 0,
        depth: 0,
    };
    let ast = p.or()?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected("`and`, `or` or the end of the condition"));
    }
    Ok(ast)
}

struct Parser<'t> {
    text: &'t str,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

type PResult<T> = Result<T, OttlError>;

fn is_upper_word(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn peek_at(&self, k: usize) -> &Tok {
        let j = (self.i + k).min(self.toks.len() - 1);
        &self.toks[j].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }

    fn bump(&mut self) -> Tok {
        let t = self.toks[self.i].tok.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> OttlError {
        OttlError::at(self.text, pos, msg)
    }

    fn unexpected(&self, expected: &str) -> OttlError {
        self.err(
            self.pos(),
            format!("expected {expected}, found {}", self.peek().describe()),
        )
    }

    fn expect(&mut self, tok: Tok, what: &str) -> PResult<()> {
        if *self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(
                self.pos(),
                format!("expression nested too deeply (the limit is {MAX_DEPTH} levels)"),
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn or(&mut self) -> PResult<BoolAst> {
        let mut items = vec![self.and()?];
        while self.is_word("or") {
            self.bump();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            BoolAst::Or(items)
        })
    }

    fn and(&mut self) -> PResult<BoolAst> {
        let mut items = vec![self.bool_value()?];
        while self.is_word("and") {
            self.bump();
            items.push(self.bool_value()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            BoolAst::And(items)
        })
    }

    fn bool_value(&mut self) -> PResult<BoolAst> {
        self.nested(|p| {
            let negate = p.is_word("not");
            if negate {
                p.bump();
            }
            let inner = p.bool_operand()?;
            Ok(if negate { BoolAst::Not(Box::new(inner)) } else { inner })
        })
    }

    fn bool_operand(&mut self) -> PResult<BoolAst> {
        let start = self.i;
        // 1. A comparison (also covers `(a - b) > 5` and `true == x`).
        let cmp_err = match self.comparison() {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        self.i = start;
        // 2. The other forms; report whichever attempt got further.
        let other = match self.peek().clone() {
            Tok::Ident(w) if (w == "true" || w == "false") => {
                self.bump();
                Ok(BoolAst::Const(w == "true"))
            }
            Tok::Ident(w) if is_upper_word(&w) && self.peek_at(1) == &Tok::LParen => self.call().map(BoolAst::Call),
            Tok::LParen => {
                self.bump();
                self.nested(|p| {
                    let inner = p.or()?;
                    p.expect(Tok::RParen, "`)`")?;
                    Ok(inner)
                })
            }
            _ => return Err(cmp_err),
        };
        match other {
            Ok(v) => Ok(v),
            Err(e) if e.offset >= cmp_err.offset => Err(e),
            Err(_) => Err(cmp_err),
        }
    }

    fn comparison(&mut self) -> PResult<BoolAst> {
        let lhs = self.value()?;
        let op = match self.peek() {
            Tok::Cmp(op) => *op,
            _ => return Err(self.unexpected("a comparison operator (==, !=, <, <=, >, >=)")),
        };
        self.bump();
        let rhs = self.value()?;
        Ok(BoolAst::Cmp { lhs, op, rhs })
    }

    fn value(&mut self) -> PResult<ValAst> {
        self.math(Self::mul, |t| match t {
            Tok::Plus => Some(MathOp::Add),
            Tok::Minus => Some(MathOp::Sub),
            _ => None,
        })
    }

    fn mul(&mut self) -> PResult<ValAst> {
        self.math(Self::unary, |t| match t {
            Tok::Star => Some(MathOp::Mul),
            Tok::Slash => Some(MathOp::Div),
            _ => None,
        })
    }

    /// `operand (op operand)*` for one precedence level of arithmetic.
    fn math(
        &mut self,
        operand: fn(&mut Self) -> PResult<ValAst>,
        op_of: fn(&Tok) -> Option<MathOp>,
    ) -> PResult<ValAst> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Some(op) = op_of(self.peek()) {
            self.bump();
            rest.push((op, operand(self)?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            ValAst::Math {
                first: Box::new(first),
                rest,
            }
        })
    }

    fn unary(&mut self) -> PResult<ValAst> {
        let pos = self.pos();
        match self.peek() {
            Tok::Minus => {
                self.bump();
                Ok(match self.primary()? {
                    ValAst::Int(i, _) => ValAst::Int(i.wrapping_neg(), pos),
                    ValAst::Float(f, _) => ValAst::Float(-f, pos),
                    other => ValAst::Neg(Box::new(other), pos),
                })
            }
            Tok::Plus => {
                self.bump();
                self.primary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> PResult<ValAst> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Ident(w) if w == "nil" => {
                self.bump();
                Ok(ValAst::Nil(pos))
            }
            Tok::Ident(w) if w == "true" || w == "false" => {
                self.bump();
                Ok(ValAst::Bool(w == "true", pos))
            }
            Tok::Ident(w) if w == "and" || w == "or" || w == "not" => Err(self.unexpected("a value")),
            Tok::Str(s) => {
                self.bump();
                Ok(ValAst::Str(s, pos))
            }
            Tok::Bytes(b) => {
                self.bump();
                Ok(ValAst::Bytes(b, pos))
            }
            Tok::Int(i) => {
                self.bump();
                Ok(ValAst::Int(i, pos))
            }
            Tok::Float(f) => {
                self.bump();
                Ok(ValAst::Float(f, pos))
            }
            Tok::LParen => {
                self.bump();
                self.nested(|p| {
                    let v = p.value()?;
                    p.expect(Tok::RParen, "`)` or an arithmetic operator")?;
                    Ok(v)
                })
            }
            Tok::LBracket => {
                self.bump();
                self.nested(|p| {
                    while p.peek() != &Tok::RBracket {
                        p.value()?;
                        if p.peek() == &Tok::Comma {
                            p.bump();
                        } else if p.peek() != &Tok::RBracket {
                            return Err(p.unexpected("`,` or `]`"));
                        }
                    }
                    p.bump();
                    Ok(ValAst::Unsupported("list literals", pos))
                })
            }
            Tok::LBrace => {
                self.bump();
                self.nested(|p| {
                    while p.peek() != &Tok::RBrace {
                        if !matches!(p.peek(), Tok::Str(_)) {
                            return Err(p.unexpected("a string map key or `}`"));
                        }
                        p.bump();
                        p.expect(Tok::Colon, "`:`")?;
                        p.value()?;
                        if p.peek() == &Tok::Comma {
                            p.bump();
                        }
                    }
                    p.bump();
                    Ok(ValAst::Unsupported("map literals", pos))
                })
            }
            Tok::Ident(w) if is_upper_word(&w) => {
                if self.peek_at(1) == &Tok::LParen {
                    return self.call().map(ValAst::Call);
                }
                if w.bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
                {
                    self.bump();
                    return Ok(ValAst::Enum(w, pos));
                }
                Err(self.err(
                    pos,
                    format!("unexpected `{w}`: a converter call needs parentheses, `{w}(...)`"),
                ))
            }
            Tok::Ident(w) => {
                if self.peek_at(1) == &Tok::LParen {
                    return Err(self.err(
                        pos,
                        format!(
                            "`{w}(...)` is an editor, not a converter: only converters (names starting with an \
                             upper-case letter) can be used in conditions"
                        ),
                    ));
                }
                self.path()
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    fn keys(&mut self) -> PResult<Vec<KeyAst>> {
        let mut keys = Vec::new();
        while self.peek() == &Tok::LBracket {
            self.bump();
            let pos = self.pos();
            let key = match self.peek().clone() {
                Tok::Str(s) => KeyAst::Str(s, pos),
                Tok::Int(i) => KeyAst::Int(i, pos),
                _ => return Err(self.unexpected("a string or integer key")),
            };
            self.bump();
            self.expect(Tok::RBracket, "`]`")?;
            keys.push(key);
        }
        Ok(keys)
    }

    fn path(&mut self) -> PResult<ValAst> {
        let pos = self.pos();
        let mut fields = Vec::new();
        loop {
            let fpos = self.pos();
            let name = match self.peek().clone() {
                Tok::Ident(w) if !is_upper_word(&w) => w,
                _ => return Err(self.unexpected("a path segment")),
            };
            self.bump();
            let keys = self.keys()?;
            fields.push(FieldAst { name, pos: fpos, keys });
            if self.peek() == &Tok::Dot {
                self.bump();
            } else {
                break;
            }
        }
        Ok(ValAst::Path(PathAst { pos, fields }))
    }

    fn call(&mut self) -> PResult<CallAst> {
        let pos = self.pos();
        let name = match self.bump() {
            Tok::Ident(w) => w,
            _ => unreachable!("call() is only entered on an identifier"),
        };
        self.expect(Tok::LParen, "`(`")?;
        let args = self.nested(|p| {
            let mut args = Vec::new();
            while p.peek() != &Tok::RParen {
                let apos = p.pos();
                let arg_name = match (p.peek().clone(), p.peek_at(1)) {
                    (Tok::Ident(n), Tok::Equal) if !is_upper_word(&n) => {
                        p.bump();
                        p.bump();
                        Some(n)
                    }
                    _ => None,
                };
                let value = p.value()?;
                args.push(ArgAst {
                    name: arg_name,
                    pos: apos,
                    value,
                });
                if p.peek() == &Tok::Comma {
                    p.bump();
                } else if p.peek() != &Tok::RParen {
                    return Err(p.unexpected("`,` or `)`"));
                }
            }
            p.bump();
            Ok(args)
        })?;
        let keys = self.keys()?;
        Ok(CallAst { name, pos, args, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ottl::lexer::CmpOp;

    #[test]
    fn precedence_and_parentheses() {
        let a = parse(r#"name == "a" or kind == 2 and not status.code == 1"#).unwrap();
        match a {
            BoolAst::Or(items) => {
                assert_eq!(items.len(), 2);
                assert!(matches!(&items[1], BoolAst::And(v) if v.len() == 2 && matches!(v[1], BoolAst::Not(_))));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("(end_time_unix_nano - start_time_unix_nano) / 1000000 > 5").unwrap(),
            BoolAst::Cmp { op: CmpOp::Gt, .. }
        ));
        assert!(matches!(parse(r#"(name == "x")"#).unwrap(), BoolAst::Cmp { .. }));
        assert!(matches!(parse(r#"IsMatch(name, "^GET")"#).unwrap(), BoolAst::Call(_)));
        assert!(matches!(parse("Len(name) > 3").unwrap(), BoolAst::Cmp { .. }));
        assert!(matches!(parse("true").unwrap(), BoolAst::Const(true)));
        assert!(matches!(
            parse("kind == -2").unwrap(),
            BoolAst::Cmp {
                rhs: ValAst::Int(-2, _),
                ..
            }
        ));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let col = |s: &str| parse(s).unwrap_err().column;
        assert_eq!(col(r#"name == "a" and"#), 16);
        assert_eq!(col(r#"name == "a" xor kind == 1"#), 13);
        assert_eq!(col("name =="), 8);
        assert_eq!(col("name"), 5);
        assert_eq!(col("(name == \"a\""), 13);
        assert_eq!(col("set(name, \"x\")"), 1);
        assert_eq!(col("not not name == \"x\""), 5);
        assert_eq!(col(""), 1);
        assert!(parse("name == IsMatch").unwrap_err().message.contains("parentheses"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}name == \"x\"{}", "(".repeat(1000), ")".repeat(1000));
        assert!(parse(&deep).unwrap_err().message.contains("nested too deeply"));
        let deep_math = format!("kind == {}1{}", "(".repeat(1000), ")".repeat(1000));
        assert!(parse(&deep_math).unwrap_err().message.contains("nested too deeply"));
        let deep_calls = format!("{}name{} == 1", "Len(".repeat(500), ")".repeat(500));
        assert!(parse(&deep_calls).unwrap_err().message.contains("nested too deeply"));
        let deep_not = format!("{}name == \"x\"{}", "not (".repeat(500), ")".repeat(500));
        assert!(parse(&deep_not).unwrap_err().message.contains("nested too deeply"));
        // Long flat chains are fine (no recursion per element).
        let chain = vec!["kind == 1"; 300].join(" or ");
        assert!(matches!(parse(&chain).unwrap(), BoolAst::Or(v) if v.len() == 300));
        let sum = format!("kind == {}", vec!["1"; 1000].join(" + "));
        assert!(parse(&sum).is_ok());
    }
}
