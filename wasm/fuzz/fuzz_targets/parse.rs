//! Every parser on arbitrary bytes: none may panic, and whatever they return must serialize. The tree
//! read without lol_html, when the input allows it, must be the one lol_html's events build.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packagestats_parser::dom::{parse_common, Document};
use packagestats_parser::{parse, Kind};

fuzz_target!(|data: &[u8]| {
    if let Some(common) = parse_common(data) {
        let full = Document::parse_full(data);
        assert_eq!(Ok(format!("{common:?}")), full.map(|doc| format!("{doc:?}")));
    }
    for kind in [Kind::Package, Kind::Versions, Kind::Listing] {
        if let Ok(output) = parse(kind, data) {
            // serde_json only fails on non-string map keys, which the output types do not have.
            assert!(serde_json::to_vec(&output).is_ok());
        }
    }
});
