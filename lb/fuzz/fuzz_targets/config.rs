//! Fuzz config parsing and validation, the path `coexist check` and a
//! reload take: arbitrary bytes as a config file. It must never panic, and
//! every rejection must point into the text: a line and column (1-based)
//! inside it, and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Err(error) = lb::config::parse_bytes(data.to_vec(), "fuzz.toml") else {
        return;
    };
    let diagnostics = error.diagnostics();
    assert!(!diagnostics.is_empty(), "a rejection without a location: {error}");
    // A location may be just past the last character (a missing key at the
    // end), never beyond.
    let lines = data.split(|&b| b == b'\n').count();
    for d in diagnostics {
        assert!(d.line >= 1 && d.line <= lines, "line {} of {lines}: {d}", d.line);
        assert!(d.column >= 1, "column 0: {d}");
        assert!(!d.message.is_empty(), "no message: {d}");
    }
});
