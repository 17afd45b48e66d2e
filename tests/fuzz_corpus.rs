//! Replays the fuzz corpus (fixtures/fuzz/<target>/, grown by scripts/fuzz) through the same
//! entry points the fuzz targets use: every input that ever mattered stays a regression test,
//! on the stable toolchain, without cargo-fuzz.

use std::path::Path;

#[test]
fn fuzz_corpus_replays_without_a_finding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz");
    let mut total = 0;
    for (name, target) in skiff::fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{} holds no corpus", dir.display());
        for input in &inputs {
            let data = std::fs::read(input).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panics", input.display());
        }
        total += inputs.len();
    }
    println!(
        "reliability: fuzz corpus replayed (fixtures/fuzz, {} targets) | {total} inputs | pass",
        skiff::fuzz::TARGETS.len()
    );
}
