//! Tests of this crate embed Python, so their binaries link libpython. An rpath to the
//! interpreter's library directory lets them find it where that directory is not on the
//! loader's path (a pyenv or other non-system Python). Builds of the extension module
//! (maturin sets `PYO3_BUILD_EXTENSION_MODULE`) do not link libpython and get no rpath.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
