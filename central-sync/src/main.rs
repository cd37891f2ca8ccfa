fn main() {
    eprintln!("central-sync: not built yet (issue 5)");
    std::process::exit(2);
}
