//! Profiles under concurrent change: readers never see a spurious failure.

use envctl_store::Profiles;

#[test]
fn readers_tolerate_generations_deleted_while_they_list() {
    let home = envctl_testkit::tempdir();
    let profiles = Profiles::open(home.path()).unwrap();
    let target = home.path().join("some-store-path");
    std::fs::create_dir(&target).unwrap();
    {
        let lock = profiles.lock("p").unwrap();
        profiles.add_generation(&lock, "p", &target).unwrap();
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..400 {
                let lock = profiles.lock("p").unwrap();
                let n = profiles.add_generation(&lock, "p", &target).unwrap();
                profiles.delete(&lock, "p", &[n - 1]).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let mut reads = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let current = profiles.current("p").unwrap().expect("the profile always has a generation");
            assert!(current.current);
            let all = profiles.generations("p").unwrap();
            assert!(!all.is_empty());
            profiles.roots().unwrap();
            reads += 1;
        }
        assert!(reads > 0);
    });
}
