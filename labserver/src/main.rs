//! `tandem-lab`: the Tandem lab server.

fn main() {
    println!("tandem-lab");
}
