//! Expressions over the columns of a plan.

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::DataType;
use relay_storage::type_name;
use std::fmt;

use crate::error::{PlanError, Result};
use std::sync::Arc;

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
        write!(f, "{}", self.value_text(0))
    }
}

impl Literal {
    /// Most values `is_in` shows before it says how many more there are.
    const SHOWN_VALUES: usize = 10;

    /// Value `index` as a plan shows it: strings quoted, null as `null`.
    fn value_text(&self, index: usize) -> String {
        if self
            .0
            .logical_nulls()
            .is_some_and(|nulls| nulls.is_null(index))
        {
            return "null".into();
        }
        let formatter =
            arrow::util::display::ArrayFormatter::try_new(self.0.as_ref(), &Default::default());
        match (formatter, self.data_type()) {
            (Ok(formatter), DataType::Utf8 | DataType::LargeUtf8) => {
                format!("{:?}", formatter.value(index).to_string())
            }
            (Ok(formatter), _) => formatter.value(index).to_string(),
            (Err(_), data_type) => format!("<{}>", type_name(data_type)),
        }
    }

    /// Every value as a list, `[1, 2, 3]`; a long list shows its first values and how many
    /// more there are: `[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … 90 more]`.
    fn list_text(&self) -> String {
        let len = self.0.len();
        let shown = len.min(Self::SHOWN_VALUES);
        let mut parts: Vec<String> = (0..shown).map(|i| self.value_text(i)).collect();
        if len > shown {
            parts.push(format!("… {} more", len - shown));
        }
        format!("[{}]", parts.join(", "))
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
    /// Every operator, in a fixed order (serialized plans store positions in it).
    pub const ALL: [BinaryOp; 14] = [
        BinaryOp::Eq,
        BinaryOp::NotEq,
        BinaryOp::Lt,
        BinaryOp::LtEq,
        BinaryOp::Gt,
        BinaryOp::GtEq,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::FloorDiv,
        BinaryOp::Mod,
        BinaryOp::And,
        BinaryOp::Or,
    ];

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
    /// Every operator, in a fixed order (serialized plans store positions in it).
    pub const ALL: [UnaryOp; 9] = [
        UnaryOp::Not,
        UnaryOp::Negate,
        UnaryOp::Abs,
        UnaryOp::IsNull,
        UnaryOp::IsNotNull,
        UnaryOp::StrLen,
        UnaryOp::Year,
        UnaryOp::Month,
        UnaryOp::Day,
    ];

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

/// The deepest expression relay accepts, in nodes from the root to the deepest leaf
/// (`col("x")` is 1, `col("x") + 1` is 2).
///
/// Expressions are trees of shared nodes, so building one costs memory linear in its nodes,
/// and the passes over them (resolution, optimizer rules, evaluation, display) recurse once
/// per level inside `with_stack_room`, which moves to a fresh stack segment before the
/// thread's own runs out. The limit bounds what stays recursive without that guard: dropping
/// a tree (and the derived comparison and debug output). Resolution can double the depth
/// (a cast between each node and its child), and dropping a resolved 10,001-level chain takes
/// about 0.7 MiB of stack in a debug build, well inside the 2 MiB of a worker thread (measured:
/// `a_resolved_expression_at_the_limit_drops_on_a_small_stack`). It is this high because
/// left-deep chains are what users build: `sum(col(c) for c in columns)` over 3,000 columns is
/// 3,001 levels deep, and a chain of `+` cannot be rebalanced into a shallow tree (float
/// addition is not associative, so another grouping gives other values).
pub const MAX_EXPR_DEPTH: usize = 5_000;

/// Bytes of stack that must be left before a recursive pass goes one level deeper, and the size
/// of the segment it moves to when fewer are left.
const STACK_RED_ZONE: usize = 128 * 1024;
const STACK_SEGMENT: usize = 4 * 1024 * 1024;

/// Runs `f` (one level of a recursive pass over an expression or a plan) with at least
/// `STACK_RED_ZONE` bytes of stack, on a new heap-allocated segment if the thread's stack is
/// short of that: deep expressions then cost heap, never a stack overflow, on any thread.
pub fn with_stack_room<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, f)
}

/// The error for an expression deeper than `MAX_EXPR_DEPTH`.
fn too_deep(depth: usize, limit: usize) -> PlanError {
    PlanError::Invalid(format!(
        "expression too deeply nested: {depth} levels, the limit is {limit} \
         (split the computation into several with_column steps)"
    ))
}

/// An expression with its depth, for building expressions one operator at a time: the depth
/// of a new node follows from its children's, so each step is checked against
/// `MAX_EXPR_DEPTH` without walking the tree (which would make building quadratic).
#[derive(Debug, Clone)]
pub struct DepthCheckedExpr {
    expr: Expr,
    depth: usize,
}

impl DepthCheckedExpr {
    /// A column reference or a literal.
    pub fn leaf(expr: Expr) -> Self {
        debug_assert!(expr.children().is_empty());
        DepthCheckedExpr { expr, depth: 1 }
    }

    /// `build` applied to the children's expressions (cheap clones: subtrees are shared),
    /// refused when the result would be deeper than `MAX_EXPR_DEPTH`.
    pub fn node<const N: usize>(
        children: [&DepthCheckedExpr; N],
        build: impl FnOnce([Expr; N]) -> Expr,
    ) -> Result<Self> {
        Self::node_of_many(&children, |exprs| {
            build(exprs.try_into().expect("one expression per child"))
        })
    }

    /// `node` for a number of children known at run time (`when` branches).
    pub fn node_of_many(
        children: &[&DepthCheckedExpr],
        build: impl FnOnce(Vec<Expr>) -> Expr,
    ) -> Result<Self> {
        let depth = 1 + children.iter().map(|c| c.depth).max().unwrap_or(0);
        if depth > MAX_EXPR_DEPTH {
            return Err(too_deep(depth, MAX_EXPR_DEPTH));
        }
        let expr = build(children.iter().map(|c| c.expr.clone()).collect());
        Ok(DepthCheckedExpr { expr, depth })
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    pub fn depth(&self) -> usize {
        self.depth
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Column(String),
    Literal(Literal),
    Binary {
        op: BinaryOp,
        left: Arc<Expr>,
        right: Arc<Expr>,
    },
    Unary {
        op: UnaryOp,
        input: Arc<Expr>,
    },
    StringMatch {
        kind: StringMatch,
        input: Arc<Expr>,
        pattern: String,
    },
    IsIn {
        input: Arc<Expr>,
        /// The candidate values, as one array (null-free).
        values: Literal,
    },
    FillNull {
        input: Arc<Expr>,
        value: Arc<Expr>,
    },
    /// Value conversion (not a bit reinterpretation).
    Cast {
        input: Arc<Expr>,
        to: DataType,
    },
    /// `when(c1).then(v1).when(c2).then(v2).otherwise(v)`: the first true condition wins.
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Arc<Expr>,
    },
    Alias {
        input: Arc<Expr>,
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
            left: Arc::new(self),
            right: Arc::new(right),
        }
    }

    pub fn unary(self, op: UnaryOp) -> Expr {
        Expr::Unary {
            op,
            input: Arc::new(self),
        }
    }

    pub fn and(self, right: Expr) -> Expr {
        self.binary(BinaryOp::And, right)
    }

    pub fn alias(self, name: impl Into<String>) -> Expr {
        Expr::Alias {
            input: Arc::new(self),
            name: name.into(),
        }
    }

    /// The name of the column this expression produces: an alias, else the first column it
    /// reads (as Polars does), else "literal".
    pub fn output_name(&self) -> String {
        with_stack_room(|| self.output_name_here())
    }

    fn output_name_here(&self) -> String {
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
        // Each child is rewritten with stack room: rewrites recurse through here.
        let mut f = |e: Expr| with_stack_room(|| f(e));
        let mut boxed = |e: Arc<Expr>| Arc::new(f(Arc::unwrap_or_clone(e)));
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

    /// Nodes from this expression to its deepest leaf, found without recursion (so that it
    /// can measure a tree too deep for the recursive passes).
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut pending = vec![(self, 1)];
        while let Some((expr, depth)) = pending.pop() {
            deepest = deepest.max(depth);
            pending.extend(expr.children().into_iter().map(|child| (child, depth + 1)));
        }
        deepest
    }

    /// An error unless this expression is at most as deep as a resolved expression can be
    /// (checked without recursion, before any recursive pass runs). Resolution may put a cast
    /// between a node and each child, and plans add an alias, so an expression built within
    /// `MAX_EXPR_DEPTH` resolves to at most `2 * MAX_EXPR_DEPTH + 1` levels: that is the
    /// bound here, for expressions that are resolved again (optimizer rules do) or built in
    /// Rust without `DepthCheckedExpr`.
    pub fn check_depth(&self) -> Result<()> {
        let depth = self.depth();
        let limit = 2 * MAX_EXPR_DEPTH + 1;
        if depth > limit {
            return Err(too_deep(depth, limit));
        }
        Ok(())
    }

    /// Every column name this expression reads, in first-seen order.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns(&self, out: &mut Vec<String>) {
        with_stack_room(|| self.collect_columns_here(out))
    }

    fn collect_columns_here(&self, out: &mut Vec<String>) {
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
        with_stack_room(|| self.conjuncts_here())
    }

    fn conjuncts_here(self) -> Vec<Expr> {
        match self {
            Expr::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                let mut out = Arc::unwrap_or_clone(left).conjuncts();
                out.extend(Arc::unwrap_or_clone(right).conjuncts());
                out
            }
            other => vec![other],
        }
    }

    /// `a & b & c` from `[a, b, c]`; None when empty.
    ///
    /// Built as a balanced tree (`(a & b) & (c & d)`), so that the conjunction of many
    /// filters stays shallow: `&` in three-valued logic is associative and every conjunct is
    /// evaluated whatever the grouping, so the grouping changes no value. Up to three conjuncts
    /// this is the left-deep `(a & b) & c` that the operator builds.
    pub fn conjunction(exprs: impl IntoIterator<Item = Expr>) -> Option<Expr> {
        fn balanced(mut exprs: Vec<Expr>) -> Expr {
            if exprs.len() == 1 {
                return exprs.pop().expect("one conjunct");
            }
            let right = exprs.split_off(exprs.len().div_ceil(2));
            with_stack_room(|| balanced(exprs).and(balanced(right)))
        }
        let exprs: Vec<Expr> = exprs.into_iter().collect();
        (!exprs.is_empty()).then(|| balanced(exprs))
    }

    /// This expression with every column reference renamed through `rename`.
    pub fn rename_columns(self, rename: &impl Fn(&str) -> Option<String>) -> Expr {
        with_stack_room(|| match self {
            Expr::Column(name) => Expr::Column(rename(&name).unwrap_or(name)),
            other => other.map_children(&mut |child| child.rename_columns(rename)),
        })
    }

    /// This expression with every column reference replaced by `substitute(name)` when it
    /// gives one (used to push predicates below projections that compute columns).
    pub fn substitute_columns(self, substitute: &impl Fn(&str) -> Option<Expr>) -> Expr {
        with_stack_room(|| match self {
            Expr::Column(name) => substitute(&name).unwrap_or(Expr::Column(name)),
            other => other.map_children(&mut |child| child.substitute_columns(substitute)),
        })
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        with_stack_room(|| self.fmt_here(f))
    }
}

impl Expr {
    fn fmt_here(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
                write!(f, "{input}.is_in({})", values.list_text())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> DepthCheckedExpr {
        DepthCheckedExpr::leaf(Expr::lit(Arc::new(arrow::array::Int64Array::from(vec![1]))))
    }

    fn plus(left: &DepthCheckedExpr, right: &DepthCheckedExpr) -> Result<DepthCheckedExpr> {
        DepthCheckedExpr::node([left, right], |[l, r]| l.binary(BinaryOp::Add, r))
    }

    /// Runs `f` on a thread with a small stack, as the engine's workers have.
    fn on_small_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(scope, f)
                .unwrap()
                .join()
                .unwrap()
        })
    }

    #[test]
    fn building_shares_subtrees_instead_of_copying_them() {
        let mut chain = DepthCheckedExpr::leaf(Expr::col("x"));
        let mut steps = Vec::new();
        for _ in 0..1000 {
            let next = plus(&chain, &one()).unwrap();
            steps.push(chain);
            chain = next;
        }
        // Every earlier step is the left child of the next one, not a copy of it.
        for (step, next) in steps.iter().zip(steps.iter().skip(1)) {
            let Expr::Binary { left, .. } = next.expr() else {
                panic!("a sum")
            };
            let Expr::Binary { left: own, .. } = step.expr() else {
                continue;
            };
            let Expr::Binary { left: inner, .. } = left.as_ref() else {
                panic!("a sum")
            };
            assert!(Arc::ptr_eq(own, inner));
        }
        assert_eq!(chain.depth(), 1001);
        assert_eq!(chain.expr().depth(), 1001);
    }

    #[test]
    fn building_past_the_depth_limit_is_an_error_naming_it() {
        let mut chain = DepthCheckedExpr::leaf(Expr::col("x"));
        for _ in 1..MAX_EXPR_DEPTH {
            chain = plus(&chain, &one()).unwrap();
        }
        assert_eq!(chain.depth(), MAX_EXPR_DEPTH);
        match plus(&chain, &one()) {
            Err(PlanError::Invalid(message)) => {
                assert!(message.contains(&MAX_EXPR_DEPTH.to_string()), "{message}");
                assert!(message.contains("too deeply nested"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // A wider node over the deep one too.
        let when = DepthCheckedExpr::node_of_many(&[&one(), &one(), &chain], |mut exprs| {
            let otherwise = exprs.pop().unwrap();
            let then = exprs.pop().unwrap();
            let when = exprs.pop().unwrap();
            Expr::Case {
                branches: vec![(when, then)],
                otherwise: Arc::new(otherwise),
            }
        });
        assert!(matches!(when, Err(PlanError::Invalid(_))));
        // A hand-built expression deeper than resolved ones can be is refused without recursion.
        let mut deep = Expr::col("x");
        for _ in 0..2 * MAX_EXPR_DEPTH + 1 {
            deep = deep.unary(UnaryOp::Negate);
        }
        assert!(matches!(deep.check_depth(), Err(PlanError::Invalid(_))));
    }

    #[test]
    fn a_resolved_expression_at_the_limit_drops_on_a_small_stack() {
        // The deepest expression resolution can produce: a cast between every node and its
        // child. Dropping it recurses (see `MAX_EXPR_DEPTH`); a quarter of a worker's stack.
        let mut deep = Expr::col("x");
        for _ in 0..MAX_EXPR_DEPTH {
            deep = Expr::Cast {
                input: Arc::new(deep),
                to: arrow::datatypes::DataType::Int64,
            }
            .unary(UnaryOp::Negate);
        }
        assert_eq!(deep.depth(), 2 * MAX_EXPR_DEPTH + 1);
        assert!(deep.check_depth().is_ok());
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn_scoped(scope, move || drop(deep))
                .unwrap()
                .join()
                .unwrap()
        });
    }

    #[test]
    fn recursive_passes_over_a_deep_chain_run_on_a_small_stack() {
        let mut chain = DepthCheckedExpr::leaf(Expr::col("x"));
        for _ in 1..MAX_EXPR_DEPTH {
            chain = plus(&chain, &one()).unwrap();
        }
        let expr = chain.expr().clone();
        on_small_stack(move || {
            assert_eq!(expr.output_name(), "x");
            assert_eq!(expr.columns(), ["x"]);
            let shown = expr.to_string();
            assert!(shown.contains("(col(\"x\") + 1) + 1)") && shown.ends_with(" + 1)"));
            let renamed = expr
                .clone()
                .rename_columns(&|name| Some(format!("{name}2")));
            assert_eq!(renamed.columns(), ["x2"]);
            assert_eq!(expr.clone().conjuncts().len(), 1);
            drop(renamed);
        });
    }

    #[test]
    fn a_conjunction_of_many_conjuncts_is_balanced_and_splits_back_in_order() {
        let conjuncts: Vec<Expr> = (0..3000).map(|i| Expr::col(format!("c{i}"))).collect();
        let conjunction = Expr::conjunction(conjuncts.clone()).unwrap();
        assert_eq!(conjunction.depth(), 13); // ceil(log2(3000)) + 1
        assert_eq!(conjunction.conjuncts(), conjuncts);
        // Up to three conjuncts, the shape the `&` operator builds.
        let [a, b, c] = ["a", "b", "c"].map(Expr::col);
        assert_eq!(
            Expr::conjunction([a.clone(), b.clone(), c.clone()]),
            Some(a.and(b).and(c))
        );
        assert_eq!(Expr::conjunction([]), None);
    }

    #[test]
    fn is_in_shows_its_values_and_counts_the_rest_of_a_long_list() {
        let is_in = |name: &str, values: ArrayRef| Expr::IsIn {
            input: Arc::new(Expr::col(name)),
            values: Literal(values),
        };
        let cities = is_in(
            "city",
            Arc::new(arrow::array::StringArray::from(vec!["oslo", "rome"])),
        );
        assert_eq!(cities.to_string(), r#"col("city").is_in(["oslo", "rome"])"#);
        let ids = is_in(
            "id",
            Arc::new(arrow::array::Int64Array::from_iter_values(0..100)),
        );
        assert_eq!(
            ids.to_string(),
            r#"col("id").is_in([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … 90 more])"#
        );
    }
}
