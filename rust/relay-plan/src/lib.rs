//! Plan layer of relay_ml: expressions, logical plans over mapped files, type resolution when
//! a plan is built, and the optimizer. Nothing here reads column data.

mod error;
pub mod expr;
pub mod join;
pub mod optimizer;
pub mod plan;
pub mod resolve;
pub mod serialize;

pub use error::{PlanError, Result};
pub use expr::{
    AggExpr, AggFunc, BinaryOp, DepthCheckedExpr, Expr, Interpolation, Keep, Literal,
    MAX_EXPR_DEPTH, Quantile, SortKey, StringMatch, UnaryOp, with_stack_room,
};
pub use join::{JoinColumn, JoinSide, JoinType};
pub use plan::LogicalPlan;
