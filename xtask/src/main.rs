//! `cargo xtask`: run the lab server, run the tests, run the benchmarks.

fn main() {
    println!("xtask");
}
