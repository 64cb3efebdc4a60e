//! The Tandem mobile app shell (the Tauri shell arrives with the apps issue).
