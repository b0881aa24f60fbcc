//! The syntax tree of one OTTL condition, as written (names not resolved).
//! Every node keeps the byte offset where it starts, for error columns.

use super::lexer::CmpOp;

/// A boolean expression (the whole condition, or a part of it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BoolAst {
    /// `a or b or ...` (at least two).
    Or(Vec<BoolAst>),
    /// `a and b and ...` (at least two).
    And(Vec<BoolAst>),
    /// `not x`.
    Not(Box<BoolAst>),
    /// `true` / `false`.
    Const(bool),
    /// `lhs op rhs`.
    Cmp { lhs: ValAst, op: CmpOp, rhs: ValAst },
    /// A converter used as a boolean (`IsMatch(name, "^GET")`).
    Call(CallAst),
}

/// A value expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ValAst {
    Nil(usize),
    Str(String, usize),
    Bool(bool, usize),
    Bytes(Vec<u8>, usize),
    Int(i64, usize),
    Float(f64, usize),
    /// An upper-case symbol such as `SPAN_KIND_SERVER`.
    Enum(String, usize),
    Path(PathAst),
    Call(CallAst),
    /// `first (op operand)*`, left to right; `*` and `/` bind tighter
    /// (already grouped by the parser).
    Math {
        first: Box<ValAst>,
        rest: Vec<(MathOp, ValAst)>,
    },
    /// Unary minus on a non-literal.
    Neg(Box<ValAst>, usize),
    /// A list or map literal (parsed so the error names it; not supported).
    Unsupported(&'static str, usize),
}

impl ValAst {
    /// Byte offset where the value starts.
    pub(crate) fn pos(&self) -> usize {
        match self {
            ValAst::Nil(p)
            | ValAst::Str(_, p)
            | ValAst::Bool(_, p)
            | ValAst::Bytes(_, p)
            | ValAst::Int(_, p)
            | ValAst::Float(_, p)
            | ValAst::Enum(_, p)
            | ValAst::Neg(_, p)
            | ValAst::Unsupported(_, p) => *p,
            ValAst::Path(p) => p.pos,
            ValAst::Call(c) => c.pos,
            ValAst::Math { first, .. } => first.pos(),
        }
    }
}

/// `+ - * /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MathOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// `a.b["k"].c`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PathAst {
    pub pos: usize,
    pub fields: Vec<FieldAst>,
}

/// One dot-separated segment of a path with its `[..]` keys.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldAst {
    pub name: String,
    pub pos: usize,
    pub keys: Vec<KeyAst>,
}

/// `["key"]` or `[0]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeyAst {
    Str(String, usize),
    Int(i64, usize),
}

impl KeyAst {
    pub(crate) fn pos(&self) -> usize {
        match self {
            KeyAst::Str(_, p) | KeyAst::Int(_, p) => *p,
        }
    }
}

/// `Name(args...)` optionally followed by keys (`Split(x, ",")[0]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallAst {
    pub name: String,
    pub pos: usize,
    pub args: Vec<ArgAst>,
    pub keys: Vec<KeyAst>,
}

/// One argument, positional or named (`pattern = "x"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArgAst {
    pub name: Option<String>,
    pub pos: usize,
    pub value: ValAst,
}
