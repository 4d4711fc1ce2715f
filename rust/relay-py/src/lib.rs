//! `relay_ml._relay`: the bindings. They convert arguments, call the engine crates, release
//! the GIL around engine work and wrap results; the documented API is the Python package.

mod column;
mod convert;
mod errors;
mod export;
mod expr;
mod external;
mod frame;
mod import;
mod inspect;
mod loader;
mod write;

use pyo3::prelude::*;

#[pymodule]
fn _relay(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<frame::NativeFrame>()?;
    module.add_class::<column::ColumnBase>()?;
    module.add_class::<expr::NativeExpr>()?;
    module.add_class::<export::BufferOwner>()?;
    module.add_class::<loader::NativeBatchReader>()?;
    module.add_class::<loader::NativeBatchStream>()?;
    module.add_function(wrap_pyfunction!(loader::epoch_positions, module)?)?;
    module.add_function(wrap_pyfunction!(inspect::inspect_file, module)?)?;
    module.add_function(wrap_pyfunction!(frame::_set_optimizer_enabled, module)?)?;
    import::register(module)?;
    write::register(module)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
