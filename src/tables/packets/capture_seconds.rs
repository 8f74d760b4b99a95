//! `capture_seconds()`: how long a live capture of the `packets` table
//! runs (`--capture-for`, 10 s by default), so a saved report can turn
//! the bytes and packets it counted into rates per second.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use crate::collect::packets::live::DEFAULT_DURATION;
use crate::tables::SourceOptions;

pub const NAME: &str = "capture_seconds";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CaptureSeconds {
    seconds_ms: u64,
    signature: Signature,
}

impl CaptureSeconds {
    pub fn new(options: &SourceOptions) -> Self {
        let d = options.capture_for.unwrap_or(DEFAULT_DURATION);
        CaptureSeconds { seconds_ms: d.as_millis() as u64, signature: Signature::exact(vec![], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for CaptureSeconds {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Float64(Some(self.seconds_ms as f64 / 1000.0))))
    }
}
