//! Tauri's build step; the ui must be built into `../ui/dist` first (`cargo xtask test` and
//! `cargo xtask run` do it; by hand: `npm ci && npm run build` in `ui/`).

fn main() {
    let dist = std::path::Path::new("../ui/dist/index.html");
    println!("cargo:rerun-if-changed=../ui/dist/index.html");
    if !dist.exists() {
        println!(
            "cargo:warning=ui/dist is missing: run `npm ci && npm run build` in ui/ (cargo xtask test does it)"
        );
    }
    tauri_build::build();
}
