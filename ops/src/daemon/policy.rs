//! Who may do what in a shared store (the daemon's configuration, `[daemon]`):
//!
//! | who | may |
//! | --- | --- |
//! | anyone in `allowed-users` (default `*`) | talk to the daemon; apply, roll back and delete generations of their own profiles; change a team's profiles if they are in its Unix group; collect garbage (only what no profile or session uses goes); hold roots for their sessions |
//! | anyone in `trusted-users` (default `root`) | all of that, for any profile, and repair or optimise the store |
//! | everyone (no daemon needed) | run, shell, env, list and verify any profile and the store |
//!
//! Entries are user names, `@group` for a Unix group's members, or `*`.
//! A refused request names the rule and what would allow it.

use crate::error::{Failure, Result};
use crate::profiles::{Owner, ProfileRef};
use crate::users::User;

/// The daemon's rules.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `allowed-users`.
    pub allowed: Vec<String>,
    /// `trusted-users`.
    pub trusted: Vec<String>,
    /// The configuration file, to name in refusals.
    pub config: String,
}

fn matches(rules: &[String], user: &User) -> bool {
    rules.iter().any(|r| match r.strip_prefix('@') {
        Some(group) => user.in_group(group),
        None => r == "*" || *r == user.name,
    })
}

impl Policy {
    /// Whether `user` is trusted.
    pub fn trusted(&self, user: &User) -> bool {
        matches(&self.trusted, user)
    }

    /// Whether `user` may talk to the daemon at all.
    pub fn check_allowed(&self, user: &User) -> Result<()> {
        if matches(&self.allowed, user) || self.trusted(user) {
            return Ok(());
        }
        Err(Failure::new(
            format!("refused: `{}` may not use this store's daemon", user.name),
            format!("allowed-users is {:?} and `{}` is in {:?}", self.allowed, user.name, user.groups),
        )
        .hint(format!(
            "an administrator adds `{}` (or `@GROUP` of one of their groups) to `allowed-users` in {}",
            user.name, self.config
        )))
    }

    /// Whether `user` may change `profile` (apply, roll back, delete generations).
    pub fn check_change(&self, user: &User, profile: &ProfileRef) -> Result<()> {
        let what = || format!("refused: `{}` may not change the profile `{profile}`", user.name);
        match &profile.owner {
            _ if self.trusted(user) => Ok(()),
            Owner::User(owner) if *owner == user.name => Ok(()),
            Owner::User(owner) => Err(Failure::new(what(), format!("it is `{owner}`'s own profile; only they change it"))
                .hint("a profile several people change is a team's: `envctl apply FILE --team GROUP`")),
            Owner::Team(team) if crate::users::group_id(team).is_none() => Err(Failure::new(
                what(),
                format!("there is no Unix group `{team}`: a team profile belongs to one"),
            )
            .hint(format!("an administrator creates it: `groupadd {team}`, then `usermod -aG {team} USER` for each member"))),
            Owner::Team(team) if user.in_group(team) => Ok(()),
            Owner::Team(team) => Err(Failure::new(
                what(),
                format!(
                    "only members of the group `{team}` change its profiles; `{}` is in {}",
                    user.name,
                    user.groups.join(", ")
                ),
            )
            .hint(format!("anyone may run it: `envctl run {profile} -- COMMAND`"))
            .hint(format!("an administrator makes `{}` a member: `usermod -aG {team} {}`", user.name, user.name))),
            Owner::Home => Err(Failure::new(what(), "a shared store has no profiles outside a user's or a team's")),
        }
    }

    /// Whether `user` may do store maintenance `what` (repair, optimise).
    pub fn check_trusted(&self, user: &User, what: &str) -> Result<()> {
        if self.trusted(user) {
            return Ok(());
        }
        Err(Failure::new(
            format!("refused: `{}` may not {what}", user.name),
            format!("only trusted users may; trusted-users is {:?}", self.trusted),
        )
        .hint(format!(
            "an administrator adds `{}` (or `@GROUP`) to `trusted-users` in {}",
            user.name, self.config
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User { uid: 1000, name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    #[test]
    fn owners_change_their_own_members_their_teams_and_the_trusted_everything() {
        let policy = Policy {
            allowed: vec!["@users".into(), "dave".into()],
            trusted: vec!["root".into(), "@wheel".into()],
            config: "`/etc/envctl/config.toml`".into(),
        };
        let alice = user("alice", &["alice", "users", "root"]);
        let carol = user("carol", &["carol", "users", "nlp"]);
        let admin = user("eve", &["eve", "wheel"]);
        let mine = ProfileRef { owner: Owner::User("alice".into()), name: "x".into() };
        let team = ProfileRef { owner: Owner::Team("root".into()), name: "tf".into() };
        policy.check_allowed(&alice).unwrap();
        policy.check_allowed(&admin).unwrap();
        let e = policy.check_allowed(&user("mallory", &["mallory"])).unwrap_err().render();
        assert!(e.contains("allowed-users") && e.contains("/etc/envctl/config.toml"), "{e}");
        policy.check_change(&alice, &mine).unwrap();
        policy.check_change(&alice, &team).unwrap();
        let e = policy.check_change(&carol, &mine).unwrap_err().render();
        assert!(e.contains("alice`'s own profile"), "{e}");
        let e = policy.check_change(&carol, &team).unwrap_err().render();
        assert!(
            e.contains("only members of the group `root`") && e.contains("usermod -aG root carol"),
            "{e}"
        );
        policy.check_change(&admin, &team).unwrap();
        let missing = ProfileRef { owner: Owner::Team("no-such-group-envctl".into()), name: "x".into() };
        assert!(policy.check_change(&carol, &missing).unwrap_err().render().contains("groupadd"));
        assert!(policy.check_trusted(&carol, "repair the store").is_err());
        policy.check_trusted(&admin, "repair the store").unwrap();
    }
}
