fn main() {
    println!("strata: under construction");
}
