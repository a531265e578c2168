//! Lint stage: the image lint ([`crate::lint`]) on the shaped tree, right
//! before it is committed. Findings no waiver covers fail the build (before
//! anything is committed or written under a final name); waived ones and
//! stale waivers are said, and go into the metadata with the tree's
//! setuid/setgid inventory.

use anyhow::Result;

use super::{Env, Outcome};
use crate::lint::{self, Tree};
use crate::manifest::Manifest;
use crate::model::{Privileged, Waived};

/// What the lint leaves for the metadata.
pub struct Linted {
    /// setuid/setgid files.
    pub setuid: Vec<Privileged>,
    /// Waived findings with their reasons.
    pub waived: Vec<Waived>,
}

impl Outcome for Linted {}

/// Lint `env.root()` (shaped: `/etc` in `/usr/etc`).
pub fn run(env: &Env, m: &Manifest) -> Result<Linted> {
    let stage = env.progress.stage("lint");
    stage.message("checking the tree");
    let root = env.root();
    let declared: Vec<String> = m
        .users
        .iter()
        .filter_map(|u| u.password_hash.clone())
        .collect();
    let t = Tree {
        root: &root,
        etc: "usr/etc",
        overlays: &m.overlays,
        declared_hashes: &declared,
    };
    let r = lint::run(&t, &m.lint_waivers)?;
    if !r.findings.is_empty() {
        anyhow::bail!(lint::failure(&m.path, &r.findings));
    }
    for (f, reason) in &r.waived {
        env.progress
            .println(&format!("lint: waived {f} (reason: {reason})"));
    }
    for w in &r.unused {
        env.progress.println(&format!(
            "lint: the waiver of {} in {} matched nothing; remove it",
            w.rule,
            m.path.display()
        ));
    }
    crate::failpoint::hit("lint.done");
    stage.finish(&format!(
        "{} rules, {} waived, {} setuid/setgid files",
        lint::RULES.len(),
        r.waived.len(),
        r.setuid.len()
    ));
    Ok(Linted {
        setuid: r.setuid,
        waived: r
            .waived
            .into_iter()
            .map(|(f, reason)| Waived {
                rule: f.rule,
                path: f.path,
                detail: f.detail,
                reason,
            })
            .collect(),
    })
}
