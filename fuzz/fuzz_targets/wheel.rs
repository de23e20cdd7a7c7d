#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| envctl_fuzz_targets::wheel(data));
