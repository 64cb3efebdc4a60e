//! `tandem-cli`: the headless Tandem client.

fn main() {
    println!("tandem-cli");
}
