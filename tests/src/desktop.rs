//! The desktop app under Xvfb driven by tauri-driver and WebKitWebDriver (W3C WebDriver over HTTP).
