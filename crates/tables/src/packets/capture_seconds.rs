//! `capture_seconds()`: how long a live capture of the `packets` table
//! runs (`--capture-for`, 10 s by default; null under `--follow`, which
//! has no set length), so a saved report can turn the bytes and packets it
//! counted into rates per second.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use crate::SourceOptions;

pub const NAME: &str = "capture_seconds";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CaptureSeconds {
    /// None when the capture runs until Ctrl-C (`--follow`).
    seconds_ms: Option<u64>,
    signature: Signature,
}

impl CaptureSeconds {
    pub fn new(options: &SourceOptions) -> Self {
        let bound = crate::streams::bound(options);
        CaptureSeconds {
            seconds_ms: bound.map(|d| d.as_millis() as u64),
            signature: Signature::exact(vec![], Volatility::Immutable),
        }
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
        Ok(ColumnarValue::Scalar(ScalarValue::Float64(self.seconds_ms.map(|ms| ms as f64 / 1000.0))))
    }
}
