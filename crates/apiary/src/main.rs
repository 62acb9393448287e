//! apiary binary.
fn main() {}
