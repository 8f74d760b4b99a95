//! Every scalar function of a plan held to the memory pool, and the `||`
//! operator with them.
//!
//! The registry's functions are wrapped when the session is made
//! (`budget.rs`), but DataFusion's planners and rewrites also call
//! functions directly (array `||` becomes `array_concat`), and `||` on
//! strings is an operator, not a function: a chain of CTEs each doubling a
//! string with `s || s` reached 640 MB under a 64 MiB limit. This analyzer
//! rule runs after type coercion and before the optimizer folds constants,
//! so it also holds the values folded while planning.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use super::budget::{budgeted, is_budgeted};

/// The analyzer rule (added last, after type coercion).
#[derive(Debug)]
pub struct BudgetRule {
    pub pool: Arc<dyn MemoryPool>,
}

impl AnalyzerRule for BudgetRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let rewritten =
            plan.transform_up_with_subqueries(|node| node.map_expressions(|e| e.transform_up(|e| self.rewrite(e))))?;
        Ok(rewritten.data)
    }

    fn name(&self) -> &str {
        "sockql_memory_budget"
    }
}

impl BudgetRule {
    fn rewrite(&self, e: Expr) -> Result<Transformed<Expr>> {
        Ok(match e {
            Expr::ScalarFunction(f) if !is_budgeted(&f.func) => {
                let func = budgeted(f.func.inner().clone(), self.pool.clone());
                Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(func, f.args)))
            }
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::StringConcat, right }) => {
                let func = budgeted(Arc::new(ConcatOperator::default()), self.pool.clone());
                Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(func, vec![*left, *right])))
            }
            other => Transformed::no(other),
        })
    }
}

/// `a || b` on strings as a function, so that it can be held to the pool.
/// It evaluates DataFusion's own operator, and names its column as the
/// operator does, so results and headers are the same.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConcatOperator {
    signature: Signature,
}

impl Default for ConcatOperator {
    fn default() -> Self {
        ConcatOperator { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        "||"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [l, r] => Ok(format!("{} || {}", l.schema_name(), r.schema_name())),
            _ => datafusion::common::plan_err!("|| takes two operands"),
        }
    }

    fn return_type(
        &self,
        arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> Result<datafusion::arrow::datatypes::DataType> {
        match arg_types {
            [l, r] => BinaryTypeCoercer::new(l, &Operator::StringConcat, r).get_result_type(),
            _ => datafusion::common::plan_err!("|| takes two operands"),
        }
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<datafusion::arrow::datatypes::FieldRef> {
        let types: Vec<_> = args.arg_fields.iter().map(|f| f.data_type().clone()).collect();
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(datafusion::arrow::datatypes::Field::new("||", self.return_type(&types)?, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
        use datafusion::physical_expr::expressions::{BinaryExpr as Physical, Column, Literal};
        use datafusion::physical_expr::PhysicalExpr;
        let (mut fields, mut columns, mut operands): (Vec<Field>, Vec<_>, Vec<Arc<dyn PhysicalExpr>>) =
            (vec![], vec![], vec![]);
        for (i, (value, field)) in args.args.into_iter().zip(args.arg_fields.iter()).enumerate() {
            match value {
                ColumnarValue::Scalar(s) => operands.push(Arc::new(Literal::new(s))),
                ColumnarValue::Array(a) => {
                    let name = format!("c{i}");
                    operands.push(Arc::new(Column::new(&name, columns.len())));
                    fields.push(Field::new(name, a.data_type().clone(), field.is_nullable()));
                    columns.push(a);
                }
            }
        }
        let [l, r]: [Arc<dyn PhysicalExpr>; 2] = operands
            .try_into()
            .map_err(|_| datafusion::error::DataFusionError::Plan("|| takes two operands".into()))?;
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(args.number_rows)),
        )?;
        Physical::new(l, Operator::StringConcat, r).evaluate(&batch)
    }
}
