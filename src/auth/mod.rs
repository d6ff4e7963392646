//! Access control seam. Every request is authorized in the mount before its handler runs
//! (DESIGN.md invariant 3). Users, tokens and permissions arrive later; until then anonymous
//! clients may read and write every repository, as README.md states plainly.

use crate::model::{Action, RepoName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{principal:?} may not {action:?} repository {repo}")]
pub struct Denied {
    pub principal: Principal,
    pub repo: String,
    pub action: Action,
}

/// Decide whether `principal` may perform `action` on `repo`. Pure: no I/O.
pub fn authorize(principal: &Principal, repo: &RepoName, action: Action) -> Result<(), Denied> {
    match (principal, action) {
        (Principal::Anonymous, Action::Read | Action::Write | Action::Delete) => Ok(()),
        (Principal::Anonymous, Action::Admin) => {
            Err(Denied { principal: principal.clone(), repo: repo.to_string(), action })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_policy_table() {
        let repo: RepoName = "docker-local".parse().unwrap();
        let table = [(Action::Read, true), (Action::Write, true), (Action::Delete, true), (Action::Admin, false)];
        for (action, allowed) in table {
            assert_eq!(authorize(&Principal::Anonymous, &repo, action).is_ok(), allowed, "{action:?}");
        }
    }
}
