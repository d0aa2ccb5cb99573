//! Embeds the console's charting library (uPlot) from `node_modules`, where package-lock.json
//! pins it, so no third-party file is committed and the Worker serves it itself.

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let out = std::env::var("OUT_DIR").expect("set by cargo");
    let dist = Path::new(&manifest).join("../../node_modules/uplot/dist");
    // Only the Worker (wasm32) serves the console; native builds test platform-free modules.
    let needed = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32");
    for (source, target) in [
        ("uPlot.iife.min.js", "uplot.js"),
        ("uPlot.min.css", "uplot.css"),
    ] {
        let path = dist.join(source);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if needed => panic!("{}: {error} (run `npm ci`)", path.display()),
            Err(_) => Vec::new(),
        };
        std::fs::write(Path::new(&out).join(target), bytes).expect("OUT_DIR is writable");
    }
}
