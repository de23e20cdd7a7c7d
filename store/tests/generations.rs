//! Generations through the library: a generation is a store path made from its inputs (the same
//! inputs give the same path), each profile's generations are numbered and never given a number
//! twice, switching is a rename, and neither the current generation nor another profile's is
//! touched by a deletion.

mod common;

use common::TestStore;
use envctl_store::Profiles;

#[test]
fn the_same_inputs_give_the_same_generation_and_a_changed_input_another() {
    let t = TestStore::new();
    let a = t.package("a", &[("bin/a", "1")]);
    let b = t.package("b", &[("bin/b", "2")]);
    let one = t.store().add_generation("p", &[TestStore::input("a", &a, 0)], "m", None).unwrap();
    let again = t.store().add_generation("p", &[TestStore::input("a", &a, 0)], "m", None).unwrap();
    assert_eq!(one.path, again.path);
    let two = t
        .store()
        .add_generation(
            "p",
            &[TestStore::input("a", &a, 0), TestStore::input("b", &b, 0)],
            "m",
            Some(&one.path),
        )
        .unwrap();
    assert_ne!(one.path, two.path);
    // Built from the previous one: `a`'s link is shared, `b`'s is new, both resolve.
    assert_eq!(std::fs::read_to_string(two.path.join("bin/a")).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(two.path.join("bin/b")).unwrap(), "2");
    // Another profile's identical farm is its own generation (the name is part of the path).
    let other = t.store().add_generation("q", &[TestStore::input("a", &a, 0)], "m", None).unwrap();
    assert_ne!(other.path, one.path);
}

#[test]
fn numbers_count_up_switching_is_a_rename_and_a_number_is_never_given_twice() {
    let t = TestStore::new();
    let a = t.package("a", &[("bin/a", "1")]);
    let b = t.package("b", &[("bin/b", "2")]);
    let c = t.package("c", &[("bin/c", "3")]);
    let first = t.apply("p", &[TestStore::input("a", &a, 0)]);
    let second = t.apply("p", &[TestStore::input("b", &b, 0)]);
    let profiles = Profiles::open(t.home()).unwrap();
    let numbers =
        |p: &Profiles| p.generations("p").unwrap().iter().map(|g| (g.number, g.current)).collect::<Vec<_>>();
    assert_eq!(numbers(&profiles), [(1, false), (2, true)]);
    assert_eq!(profiles.current("p").unwrap().unwrap().path, second);

    let lock = profiles.lock("p").unwrap();
    profiles.switch(&lock, "p", 1).unwrap();
    assert_eq!(profiles.current("p").unwrap().unwrap().path, first);
    assert!(profiles.switch(&lock, "p", 7).is_err(), "a generation that does not exist");
    // The current generation cannot be deleted; another can, and its number is not given again.
    assert!(profiles.delete(&lock, "p", &[1]).is_err());
    profiles.delete(&lock, "p", &[2]).unwrap();
    drop(lock);
    t.apply("p", &[TestStore::input("c", &c, 0)]);
    assert_eq!(numbers(&profiles), [(1, false), (3, true)]);

    // Deleting the whole profile keeps its number record: a new profile of the name goes on.
    let lock = profiles.lock("p").unwrap();
    assert_eq!(profiles.delete_profile(&lock, "p").unwrap(), [1, 3]);
    drop(lock);
    assert!(profiles.current("p").unwrap().is_none());
    t.apply("p", &[TestStore::input("a", &a, 0)]);
    assert_eq!(numbers(&profiles), [(4, true)]);
}
