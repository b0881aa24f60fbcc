#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tailsift_fuzz::check(tailsift_translate::zipkin::decode_v1_json(data));
});
