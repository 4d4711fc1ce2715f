//! Expressions over the columns of a plan.

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::DataType;
use relay_storage::type_name;
use std::fmt;

/// A literal value: an Arrow array of one element, so that arrow-rs kernels take it as a
/// scalar `Datum` and every Arrow type can be a literal.
#[derive(Clone)]
pub struct Literal(pub ArrayRef);

impl Literal {
    pub fn null() -> Self {
        Literal(new_null_array(&DataType::Null, 1))
    }

    pub fn data_type(&self) -> &DataType {
        self.0.data_type()
    }

    pub fn is_null(&self) -> bool {
        // Logical: an untyped null (NullArray) has no validity buffer.
        self.0.logical_nulls().is_some_and(|nulls| nulls.is_null(0))
    }
}

impl fmt::Debug for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            // Only a hand-built plan holds one; formatting must not index past the end.
            return write!(f, "<empty {}>", type_name(self.data_type()));
        }
        if self.is_null() {
            return write!(f, "null");
        }
        let formatter =
            arrow::util::display::ArrayFormatter::try_new(self.0.as_ref(), &Default::default());
        match (formatter, self.data_type()) {
            (Ok(formatter), DataType::Utf8 | DataType::LargeUtf8) => {
                write!(f, "{:?}", formatter.value(0).to_string())
            }
            (Ok(formatter), _) => write!(f, "{}", formatter.value(0)),
            (Err(_), data_type) => write!(f, "<{}>", type_name(data_type)),
        }
    }
}

impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_data() == other.0.to_data()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Add,
    Sub,
    Mul,
    /// True division: the result is a float.
    Div,
    /// Floor division.
    FloorDiv,
    Mod,
    And,
    Or,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::NotEq => "!=",
            Self::Lt => "<",
            Self::LtEq => "<=",
            Self::Gt => ">",
            Self::GtEq => ">=",
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::FloorDiv => "//",
            Self::Mod => "%",
            Self::And => "&",
            Self::Or => "|",
        }
    }

    /// The comparison with its operands swapped (`a < b` is `b > a`); other operators as they are.
    pub fn flipped(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::LtEq => Self::GtEq,
            Self::Gt => Self::Lt,
            Self::GtEq => Self::LtEq,
            other => other,
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::NotEq | Self::Lt | Self::LtEq | Self::Gt | Self::GtEq
        )
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            Self::Add | Self::Sub | Self::Mul | Self::Div | Self::FloorDiv | Self::Mod
        )
    }

    pub fn is_logical(self) -> bool {
        matches!(self, Self::And | Self::Or)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Not,
    Negate,
    Abs,
    IsNull,
    IsNotNull,
    /// Length in characters of a string.
    StrLen,
    Year,
    Month,
    Day,
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            Self::Not => "not",
            Self::Negate => "neg",
            Self::Abs => "abs",
            Self::IsNull => "is_null",
            Self::IsNotNull => "is_not_null",
            Self::StrLen => "str.len",
            Self::Year => "dt.year",
            Self::Month => "dt.month",
            Self::Day => "dt.day",
        }
    }
}

/// String predicates with a literal pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StringMatch {
    StartsWith,
    EndsWith,
    Contains,
}

impl StringMatch {
    pub fn name(self) -> &'static str {
        match self {
            Self::StartsWith => "str.starts_with",
            Self::EndsWith => "str.ends_with",
            Self::Contains => "str.contains",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Column(String),
    Literal(Literal),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Unary {
        op: UnaryOp,
        input: Box<Expr>,
    },
    StringMatch {
        kind: StringMatch,
        input: Box<Expr>,
        pattern: String,
    },
    IsIn {
        input: Box<Expr>,
        /// The candidate values, as one array (null-free).
        values: Literal,
    },
    FillNull {
        input: Box<Expr>,
        value: Box<Expr>,
    },
    /// Value conversion (not a bit reinterpretation).
    Cast {
        input: Box<Expr>,
        to: DataType,
    },
    /// `when(c1).then(v1).when(c2).then(v2).otherwise(v)`: the first true condition wins.
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Box<Expr>,
    },
    Alias {
        input: Box<Expr>,
        name: String,
    },
}

impl Expr {
    pub fn col(name: impl Into<String>) -> Expr {
        Expr::Column(name.into())
    }

    pub fn lit(value: ArrayRef) -> Expr {
        Expr::Literal(Literal(value))
    }

    pub fn binary(self, op: BinaryOp, right: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(self),
            right: Box::new(right),
        }
    }

    pub fn unary(self, op: UnaryOp) -> Expr {
        Expr::Unary {
            op,
            input: Box::new(self),
        }
    }

    pub fn and(self, right: Expr) -> Expr {
        self.binary(BinaryOp::And, right)
    }

    pub fn alias(self, name: impl Into<String>) -> Expr {
        Expr::Alias {
            input: Box::new(self),
            name: name.into(),
        }
    }

    /// The name of the column this expression produces: an alias, else the first column it
    /// reads (as Polars does), else "literal".
    pub fn output_name(&self) -> String {
        match self {
            Expr::Alias { name, .. } => name.clone(),
            Expr::Column(name) => name.clone(),
            // As in Polars: named after the first value, not the first condition.
            Expr::Case {
                branches,
                otherwise,
            } => branches
                .first()
                .map_or_else(|| otherwise.output_name(), |(_, then)| then.output_name()),
            other => other
                .children()
                .into_iter()
                .map(Expr::output_name)
                .find(|n| n != "literal")
                .unwrap_or_else(|| "literal".into()),
        }
    }

    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Column(_) | Expr::Literal(_) => vec![],
            Expr::Binary { left, right, .. } => vec![left, right],
            Expr::Unary { input, .. }
            | Expr::StringMatch { input, .. }
            | Expr::IsIn { input, .. }
            | Expr::Cast { input, .. }
            | Expr::Alias { input, .. } => vec![input],
            Expr::FillNull { input, value } => vec![input, value],
            Expr::Case {
                branches,
                otherwise,
            } => branches
                .iter()
                .flat_map(|(when, then)| [when, then])
                .chain(std::iter::once(otherwise.as_ref()))
                .collect(),
        }
    }

    /// This expression with each direct child replaced by `f(child)`.
    pub fn map_children(self, f: &mut impl FnMut(Expr) -> Expr) -> Expr {
        let mut boxed = |e: Box<Expr>| Box::new(f(*e));
        match self {
            leaf @ (Expr::Column(_) | Expr::Literal(_)) => leaf,
            Expr::Binary { op, left, right } => Expr::Binary {
                op,
                left: boxed(left),
                right: boxed(right),
            },
            Expr::Unary { op, input } => Expr::Unary {
                op,
                input: boxed(input),
            },
            Expr::StringMatch {
                kind,
                input,
                pattern,
            } => Expr::StringMatch {
                kind,
                input: boxed(input),
                pattern,
            },
            Expr::IsIn { input, values } => Expr::IsIn {
                input: boxed(input),
                values,
            },
            Expr::FillNull { input, value } => Expr::FillNull {
                input: boxed(input),
                value: boxed(value),
            },
            Expr::Cast { input, to } => Expr::Cast {
                input: boxed(input),
                to,
            },
            Expr::Case {
                branches,
                otherwise,
            } => {
                let otherwise = boxed(otherwise);
                Expr::Case {
                    branches: branches.into_iter().map(|(w, t)| (f(w), f(t))).collect(),
                    otherwise,
                }
            }
            Expr::Alias { input, name } => Expr::Alias {
                input: boxed(input),
                name,
            },
        }
    }

    /// Every column name this expression reads, in first-seen order.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns(&self, out: &mut Vec<String>) {
        if let Expr::Column(name) = self
            && !out.contains(name)
        {
            out.push(name.clone());
        }
        for child in self.children() {
            child.collect_columns(out);
        }
    }

    /// Splits a conjunction `a & b & c` into `[a, b, c]`.
    pub fn conjuncts(self) -> Vec<Expr> {
        match self {
            Expr::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                let mut out = left.conjuncts();
                out.extend(right.conjuncts());
                out
            }
            other => vec![other],
        }
    }

    /// `a & b & c` from `[a, b, c]`; None when empty.
    pub fn conjunction(exprs: impl IntoIterator<Item = Expr>) -> Option<Expr> {
        exprs.into_iter().reduce(Expr::and)
    }

    /// This expression with every column reference renamed through `rename`.
    pub fn rename_columns(self, rename: &impl Fn(&str) -> Option<String>) -> Expr {
        match self {
            Expr::Column(name) => Expr::Column(rename(&name).unwrap_or(name)),
            other => other.map_children(&mut |child| child.rename_columns(rename)),
        }
    }

    /// This expression with every column reference replaced by `substitute(name)` when it
    /// gives one (used to push predicates below projections that compute columns).
    pub fn substitute_columns(self, substitute: &impl Fn(&str) -> Option<Expr>) -> Expr {
        match self {
            Expr::Column(name) => substitute(&name).unwrap_or(Expr::Column(name)),
            other => other.map_children(&mut |child| child.substitute_columns(substitute)),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column(name) => write!(f, "col({name:?})"),
            Expr::Literal(literal) => write!(f, "{literal:?}"),
            Expr::Binary { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::Unary { op, input } => write!(f, "{input}.{}()", op.name()),
            Expr::StringMatch {
                kind,
                input,
                pattern,
            } => write!(f, "{input}.{}({pattern:?})", kind.name()),
            Expr::IsIn { input, values } => {
                write!(f, "{input}.is_in({values:?} x{})", values.0.len())
            }
            Expr::FillNull { input, value } => write!(f, "{input}.fill_null({value})"),
            Expr::Cast { input, to } => write!(f, "{input}.cast({})", type_name(to)),
            Expr::Case {
                branches,
                otherwise,
            } => {
                for (i, (when, then)) in branches.iter().enumerate() {
                    let prefix = if i == 0 { "when" } else { ".when" };
                    write!(f, "{prefix}({when}).then({then})")?;
                }
                write!(f, ".otherwise({otherwise})")
            }
            Expr::Alias { input, name } => write!(f, "{input}.alias({name:?})"),
        }
    }
}

/// An aggregation of `group_by(...).agg([...])`: one value per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggFunc {
    Sum,
    Mean,
    Min,
    Max,
    /// Non-null values.
    Count,
    /// Rows, nulls included.
    Len,
    /// Distinct values, null counting as one.
    NUnique,
    /// The group's first value (null when that row's value is null), as in Polars.
    First,
    Last,
    /// Sample standard deviation (one degree of freedom taken, as in Polars).
    Std,
    /// Sample variance (one degree of freedom taken).
    Var,
    /// The middle of the sorted non-null values (the mean of the two middle ones for an even
    /// count): `Quantile` at 0.5, linear.
    Median,
    /// The value at `q` of the way through the sorted non-null values.
    Quantile(Quantile),
}

/// Where `quantile(q, interpolation)` falls: `q` in [0, 1] times (n - 1) is a position among
/// the n sorted values, and the interpolation says what a position between two values gives.
/// `q` is kept as its bits so that the aggregation stays `Eq` and `Hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quantile {
    q_bits: u64,
    pub interpolation: Interpolation,
}

/// What a quantile between two sorted values `lower` and `higher` gives, as in Polars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// The value at the position rounded (halves away from zero).
    Nearest,
    Lower,
    Higher,
    /// (lower + higher) / 2.
    Midpoint,
    /// lower + (higher - lower) * the position's fraction.
    Linear,
}

impl Interpolation {
    pub const ALL: [Interpolation; 5] = [
        Self::Nearest,
        Self::Lower,
        Self::Higher,
        Self::Midpoint,
        Self::Linear,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Nearest => "nearest",
            Self::Lower => "lower",
            Self::Higher => "higher",
            Self::Midpoint => "midpoint",
            Self::Linear => "linear",
        }
    }
}

impl Quantile {
    /// None unless `q` is in [0, 1].
    pub fn new(q: f64, interpolation: Interpolation) -> Option<Self> {
        (0.0..=1.0).contains(&q).then(|| Quantile {
            q_bits: q.to_bits(),
            interpolation,
        })
    }

    pub fn q(self) -> f64 {
        f64::from_bits(self.q_bits)
    }
}

impl AggFunc {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Mean => "mean",
            Self::Min => "min",
            Self::Max => "max",
            Self::Count => "count",
            Self::Len => "len",
            Self::NUnique => "n_unique",
            Self::First => "first",
            Self::Last => "last",
            Self::Std => "std",
            Self::Var => "var",
            Self::Median => "median",
            Self::Quantile(_) => "quantile",
        }
    }

    /// The aggregation a name without parameters stands for (not `quantile`).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Sum,
            Self::Mean,
            Self::Min,
            Self::Max,
            Self::Count,
            Self::Len,
            Self::NUnique,
            Self::First,
            Self::Last,
            Self::Std,
            Self::Var,
            Self::Median,
        ]
        .into_iter()
        .find(|func| func.name() == name)
    }
}

/// `func` over the values of `input` in each group, output as the column `name` (the alias,
/// else the input's output name, as in Polars). Not an `Expr`: an aggregation has no meaning
/// row by row, so it cannot reach `filter` or `select`.
#[derive(Debug, Clone, PartialEq)]
pub struct AggExpr {
    pub func: AggFunc,
    pub input: Expr,
    pub name: String,
}

impl AggExpr {
    pub fn new(func: AggFunc, input: Expr) -> Self {
        let name = input.output_name();
        AggExpr { func, input, name }
    }

    pub fn alias(self, name: impl Into<String>) -> Self {
        AggExpr {
            name: name.into(),
            ..self
        }
    }
}

impl fmt::Display for AggExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.func {
            AggFunc::Quantile(quantile) => write!(
                f,
                "{}.quantile({}, {:?})",
                self.input,
                quantile.q(),
                quantile.interpolation.name()
            )?,
            func => write!(f, "{}.{}()", self.input, func.name())?,
        }
        if self.name != self.input.output_name() {
            write!(f, ".alias({:?})", self.name)?;
        }
        Ok(())
    }
}

/// One key of a sort: rows are ordered by `expr`, then by the next key where equal.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub expr: Expr,
    pub descending: bool,
    pub nulls_last: bool,
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        if self.descending {
            write!(f, " desc")?;
        }
        if self.nulls_last {
            write!(f, " nulls_last")?;
        }
        Ok(())
    }
}

/// Which row of each set of equal rows `unique()` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keep {
    First,
    Last,
    /// Only rows whose key appears once.
    None,
}

impl Keep {
    pub fn name(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Last => "last",
            Self::None => "none",
        }
    }
}
