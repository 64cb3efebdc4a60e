//! The TypeScript bindings in `ui/src/lib/bindings/` are exactly what the Rust types generate.
//! `TANDEM_UPDATE_BINDINGS=1 cargo test -p tandem-app --test bindings` (or `cargo xtask
//! bindings`) rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

#[test]
fn bindings_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/src/lib/bindings");
    if std::env::var_os("TANDEM_UPDATE_BINDINGS").is_some() {
        let changed = tandem_app::bindings::write(&dir).unwrap();
        eprintln!("bindings rewritten: {changed:?}");
    }
    let files = tandem_app::bindings::generate().unwrap();
    assert!(
        files
            .iter()
            .any(|(n, t)| n == "AppEvent.ts" && t.contains("\"registration\""))
    );
    let mut stale = Vec::new();
    for (name, text) in &files {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if on_disk != *text {
            stale.push(name.clone());
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".ts") && !files.iter().any(|(n, _)| *n == name) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "ui/src/lib/bindings is out of date for {stale:?}: run `cargo xtask bindings`"
    );
}
