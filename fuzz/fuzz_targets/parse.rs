//! Model-file parser fuzz target, seeds fuzz/seeds/parse (tiny valid f32 and int8 files). The
//! input is resealed (CRC recomputed) half of the time so mutations reach the structural checks
//! behind the checksum; a file that parses is also run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    edge_fuzz::parse_and_run(data, data.first().is_some_and(|b| b & 1 == 1));
});
