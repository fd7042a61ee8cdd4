//! Native timing of the parser, for benchmarks/parser.py: `bench <kind> <path> <runs>`.
//! Prints `native median_ms=<ms> runs=<n> bytes=<json bytes>`; each run parses and serializes, as
//! the WASI program does.
use std::time::Instant;

use packagestats_parser::{parse, Kind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, path, runs] = args.as_slice() else {
        return Err("usage: bench <package|versions|listing> <path> <runs>".into());
    };
    let kind = Kind::from_name(kind).ok_or("unknown kind")?;
    let runs: usize = runs.parse()?;
    let html = std::fs::read(path)?;
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let json = serde_json::to_vec(&parse(kind, &html)?)?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        bytes = json.len();
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    println!("native median_ms={median:.4} runs={} bytes={bytes}", times.len());
    Ok(())
}
