//! Every parser on arbitrary bytes: none may panic, and whatever they return must serialize.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packagestats_parser::{parse, Kind};

fuzz_target!(|data: &[u8]| {
    for kind in [Kind::Package, Kind::Versions, Kind::Listing] {
        if let Ok(output) = parse(kind, data) {
            // serde_json only fails on non-string map keys, which the output types do not have.
            assert!(serde_json::to_vec(&output).is_ok());
        }
    }
});
