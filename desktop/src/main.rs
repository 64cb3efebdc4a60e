//! `tandem`: the desktop app (the Tauri shell arrives with the apps issue).

fn main() {
    eprintln!("The Tandem desktop app is not built yet; use tandem-cli or tandem-lab.");
    std::process::exit(2);
}
