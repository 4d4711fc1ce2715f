//! The optimizer: rules that rewrite a logical plan into a cheaper one with the same result.
//!
//! Every rule implements `OptimizerRule`; the driver runs them in order and checks after each
//! that the output schema (names and types) did not change, so a faulty rule fails loudly
//! instead of returning wrong columns.

use std::sync::Arc;

use crate::error::{PlanError, Result};
use crate::plan::LogicalPlan;

pub trait OptimizerRule: Send + Sync {
    fn name(&self) -> &'static str;
    /// The rewritten plan (or the same one when the rule does not apply).
    fn rewrite(&self, plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>>;
}

pub struct Optimizer {
    rules: Vec<Box<dyn OptimizerRule>>,
}

/// The plan after each rule that changed it, for `explain()`.
pub type Trace = Vec<(&'static str, String)>;

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer { rules: vec![] }
    }
}

fn schema_text(plan: &LogicalPlan) -> Result<String> {
    let schema = plan.schema()?;
    Ok(schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), relay_storage::type_name(f.data_type())))
        .collect::<Vec<_>>()
        .join(", "))
}

impl Optimizer {
    pub fn with_rules(rules: Vec<Box<dyn OptimizerRule>>) -> Self {
        Optimizer { rules }
    }

    pub fn rule_names(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.name()).collect()
    }

    pub fn optimize(&self, plan: Arc<LogicalPlan>) -> Result<(Arc<LogicalPlan>, Trace)> {
        let before = schema_text(&plan)?;
        let mut plan = plan;
        let mut trace = Trace::new();
        for rule in &self.rules {
            let rewritten = rule.rewrite(plan.clone())?;
            let after = schema_text(&rewritten)?;
            if after != before {
                return Err(PlanError::RuleBrokeSchema {
                    rule: rule.name(),
                    before,
                    after,
                });
            }
            if !Arc::ptr_eq(&rewritten, &plan) {
                trace.push((rule.name(), rewritten.display_indent()));
            }
            plan = rewritten;
        }
        Ok((plan, trace))
    }
}
