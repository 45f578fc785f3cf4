//! The fuzz targets' corpus (`fuzz/corpus/TARGET/`) and every crash they found
//! (`fuzz/artifacts/TARGET/`), replayed through the same checks the targets run
//! (`server::fuzz_checks`), so the ordinary suite keeps what long fuzzing runs found
//! without building a fuzzer.

use std::path::Path;

use server::fuzz_checks;

/// Runs `check` on every file under `fuzz/{corpus,artifacts}/target`; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for kind in ["corpus", "artifacts"] {
        let Ok(files) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for file in files {
            let path = file.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            replayed += 1;
        }
    }
    println!("{target}: {replayed} inputs replayed, every check held");
    replayed
}

#[test]
fn the_stream_request_head_corpus_holds() {
    assert!(replay("stream_request_head", fuzz_checks::stream_request_head) >= 5);
}

#[test]
fn the_resume_position_corpus_holds() {
    assert!(replay("resume_position", fuzz_checks::resume_position) >= 4);
}

#[test]
fn the_selectors_corpus_holds() {
    assert!(replay("selectors", fuzz_checks::selectors) >= 2);
}

#[test]
fn the_publish_body_corpus_holds() {
    assert!(replay("publish_body", fuzz_checks::publish_body) >= 3);
}
