//! What the operator's process tests share.

use std::path::PathBuf;

/// The `dolphin` binary built beside the test (`cargo build -p dolphin`), or `DOLPHIN_BIN`.
pub fn dolphin_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DOLPHIN_BIN") {
        return path.into();
    }
    // A test runs from target/debug/deps/; the binary is target/debug/dolphin.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target/debug").join("dolphin");
    assert!(
        path.exists(),
        "no dolphin binary at {}: build it with `cargo build -p dolphin`, or set DOLPHIN_BIN",
        path.display()
    );
    path
}
