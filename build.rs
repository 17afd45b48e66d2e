//! The skiff binary is linked position-dependent (`-no-pie`): every container start execs it
//! twice (the command, then its shim), and a position-independent image of this size spends
//! about a millisecond per exec applying some 36,000 relocations, each page they touch a
//! copy-on-write fault. Libraries, stack, heap and mappings stay randomised; the trade is
//! stated in docs/security.md.

fn main() {
    // Only the binary: the library's test harnesses keep the toolchain's default.
    println!("cargo:rustc-link-arg-bin=skiff=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
