//! Tauri's build step; the ui must be built into `../ui/dist` first (`cargo xtask test` does it).

fn main() {
    println!("cargo:rerun-if-changed=../ui/dist/index.html");
    tauri_build::build();
}
