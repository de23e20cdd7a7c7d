//! Replays every committed corpus file in `fuzz/seeds/<target>/` through its target, then seeded
//! mutations of each (byte flips, truncations, insertions): the short fuzzing smoke run of every
//! `cargo test`. `cargo fuzz run <target>` in `fuzz/` is the long form.

use std::path::Path;

/// splitmix64, so a failing mutation is reproduced from its seed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mutate(seed: &[u8], state: &mut u64) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + next(state) % 4 {
        let at = if out.is_empty() { 0 } else { (next(state) % out.len() as u64) as usize };
        match next(state) % 4 {
            0 if !out.is_empty() => out[at] ^= 1 << (next(state) % 8),
            1 if !out.is_empty() => out[at] = next(state) as u8,
            2 => out.insert(at, next(state) as u8),
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn every_corpus_file_and_its_mutations_keep_the_targets_properties() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mutations: u64 =
        std::env::var("ENVCTL_FUZZ_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut replayed = 0;
    for (name, target) in envctl_fuzz_targets::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the corpus `{}` is missing: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus `{}` is empty", dir.display());
        for file in files {
            let seed = std::fs::read(&file).unwrap();
            target(&seed);
            let mut state = seed
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
            for _ in 0..mutations {
                let input = mutate(&seed, &mut state);
                let result = std::panic::catch_unwind(|| target(&input));
                assert!(
                    result.is_ok(),
                    "{name}: a mutation of `{}` broke a property; input: {input:?}",
                    file.display()
                );
                replayed += 1;
            }
        }
    }
    assert!(replayed > 0);
}
