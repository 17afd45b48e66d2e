#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff::fuzz::tar_unpack(data));
