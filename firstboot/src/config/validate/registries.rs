//! Validation of `[[registries]]`: the same checks as the builder's
//! manifest (shared in [`common::registries`]), plus the login, which
//! only user data may carry.

use std::collections::HashSet;

use super::{Pem, V};
use crate::config::raw::RawRegistry;
use crate::config::Registry;
use common::registries::{self as reg, Credentials};

impl V {
    pub(super) fn registries(&mut self, raw: Vec<RawRegistry>) -> Vec<Registry> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, r) in raw.into_iter().enumerate() {
            let f = |n: &str| format!("registries[{i}].{n}");
            let host = self.required(&f("host"), r.host, "the registry as images name it");
            let host = host.and_then(|h| self.check(f("host"), reg::check_host(&h)).map(|_| h));
            if let Some(h) = &host {
                if !seen.insert(h.clone()) {
                    self.bad(
                        f("host"),
                        "this registry has an earlier [[registries]] entry",
                    );
                }
                if r.insecure && h == reg::DEFAULT_HOST {
                    self.bad(
                        f("insecure"),
                        "plain HTTP must name its registry: not for _default",
                    );
                }
            }
            for (j, m) in r.mirrors.iter().enumerate() {
                self.check(
                    f(&format!("mirrors[{j}]")),
                    reg::check_mirror(m, r.insecure),
                );
            }
            let ca = self.material(
                &format!("registries[{i}]"),
                "ca",
                r.ca,
                r.ca_file,
                Pem::Certs,
                false,
            );
            let credentials = match (r.username, r.password) {
                (None, None) => None,
                (Some(username), Some(password)) => {
                    let c = Credentials { username, password };
                    self.check(f("username"), reg::check_credentials(&c))
                        .map(|_| c)
                }
                (Some(_), None) => {
                    self.bad(f("password"), "required with username");
                    None
                }
                (None, Some(_)) => {
                    self.bad(f("username"), "required with password");
                    None
                }
            };
            if let Some(host) = host {
                out.push(Registry {
                    settings: reg::Registry {
                        host,
                        mirrors: r.mirrors,
                        ca_pem: None,
                        insecure: r.insecure,
                        credentials,
                    },
                    ca,
                });
            }
        }
        out
    }
}
