#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff::fuzz::registries_conf(data));
