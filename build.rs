//! Link the sockql binary at a fixed address (not PIE). A PIE of this size
//! makes the loader apply ~230,000 relative relocations at every start:
//! reading 5 MB of .rela.dyn and copy-on-write faulting 4 MB of
//! .data.rel.ro, a quarter of `sockql "SELECT 1"` (6.7 -> 5.1 ms, see
//! BENCHMARKS.md). The price is no ASLR for the binary's own code (the
//! heap, stack and libraries stay randomised); SOCKQL_PIE=1 at build time
//! keeps a PIE. (The saved reports are compiled in by crates/query/build.rs.)

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOCKQL_PIE");
    if std::env::var_os("SOCKQL_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
