//! Every input the fuzzer ever found a problem with (`fuzz/regressions/<target>/*`)
//! is replayed: it must be accepted or refused with one line, never panic.

use precis_fuzz::targets;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[test]
fn recorded_crashes_stay_fixed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut replayed = 0;
    for dir in std::fs::read_dir(&root).expect("fuzz/regressions exists") {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let target = targets::by_name(&name).unwrap_or_else(|| panic!("no target {name}"));
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = catch_unwind(AssertUnwindSafe(|| (target.parse)(&input)));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(msg)) => assert!(!msg.contains('\n'), "{}: {msg:?}", path.display()),
                Err(_) => panic!("{} panics again", path.display()),
            }
            replayed += 1;
        }
    }
    eprintln!("{replayed} recorded inputs replayed");
}
