//! `packagestats-parser <package|versions|listing> <path>`: parses one saved page and prints its JSON.
//! `packagestats-parser --version`: prints `{"interface": N, "version": "X.Y.Z", "kinds": [...]}`.
//!
//! Exit status: 0 with JSON on stdout; 3 when the page holds nothing recognisable (no count, no rows,
//! no packages) with a one-line reason on stderr; 2 for usage and I/O errors; 4 when the page does not
//! fit in memory. (An allocation failure later on aborts: std prints "memory allocation of N bytes
//! failed" and the module traps.)
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use packagestats_parser::{parse, version, Kind};

const USAGE: &str = "usage: packagestats-parser <package|versions|listing> <path> | --version";

fn fail(code: u8, message: &str) -> ExitCode {
    // One line, whatever the message holds.
    let line = message.replace(['\n', '\r'], " ");
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    // args_os: a non-UTF-8 argument is a usage error, not a panic.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if let [flag] = args.as_slice() {
        if flag == "--version" {
            return print_json(&version());
        }
    }
    let [kind, path] = args.as_slice() else {
        return fail(2, USAGE);
    };
    let Some(kind) = kind.to_str().and_then(Kind::from_name) else {
        return fail(2, USAGE);
    };
    let html = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
            return fail(4, "out of memory: the page does not fit in the memory limit");
        }
        Err(e) => return fail(2, &format!("cannot read {}: {e}", path.to_string_lossy())),
    };
    match parse(kind, &html) {
        Ok(output) => print_json(&output),
        Err(e) => fail(3, &e.to_string()),
    }
}

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    let mut json = match serde_json::to_vec(value) {
        Ok(json) => json,
        Err(e) => return fail(2, &format!("cannot serialize the result: {e}")),
    };
    json.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(&json).and_then(|()| stdout.flush()) {
        return fail(2, &format!("cannot write the result: {e}"));
    }
    ExitCode::SUCCESS
}
