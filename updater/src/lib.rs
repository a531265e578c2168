//! atomic-update: the update agent every atomicbuild image carries.
//!
//! The host follows a branch of a signed OSTree repository that
//! `atomicbuild publish` writes. The agent ([`agent`]) polls it, pulls a
//! newer commit (libostree checks its GPG signature and the summary's
//! against the keys the image ships in `/usr/share/atomic-update/keys`),
//! stages it, arms GRUB's boot counter ([`bootcount`]) and reboots. After
//! each boot it checks the system's health ([`health`]): a good boot clears
//! the counter; a bad one reboots, using up a try; when the tries run out
//! GRUB boots the previous deployment, and the agent makes that the
//! default and remembers the commit as bad ([`state`]). Settings are TOML
//! drop-ins ([`settings`]). ostree's grub2 backend regenerates `grub.cfg`
//! through this binary ([`grubcfg`]) with the builder's own generator.
#![deny(missing_docs)]

pub mod agent;
pub mod bootcount;
pub mod cli;
pub mod coord;
pub mod grubcfg;
pub mod health;
pub mod host;
pub mod lock;
pub mod quorum;
pub mod settings;
pub mod state;
pub mod tz;
pub mod window;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use cli::{Cli, Command};

/// Where the first-boot agent writes etcd's configuration: a host with it
/// is an etcd member.
pub const ETCD_CONFIG: &str = "/etc/etcd/etcd.conf.yml";

/// A line for the journal.
pub fn log(msg: &str) {
    println!("atomic-update: {msg}");
}

fn agent(dirs: &[PathBuf]) -> Result<agent::Agent> {
    let settings = settings::load(dirs)?
        .context("no update settings: this image was built without [updates] and /etc/atomic-update/config.d sets none")?;
    Ok(agent::Agent {
        host: host::Host::open()?,
        coord: coord::Coordinator::new(&settings)?,
        settings,
        store: state::Store::new(Path::new(state::DIR)),
        boot: agent::boot_dir(),
    })
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let dirs = match cli.config_dir.is_empty() {
        true => settings::default_dirs(),
        false => cli.config_dir.clone(),
    };
    match cli.command {
        Command::GrubMkconfig { output } => grubcfg::mkconfig(&output),
        Command::Settings => {
            match settings::load(&dirs)? {
                Some(s) => println!("{s:#?}"),
                None => println!("no update settings"),
            }
            Ok(())
        }
        Command::Agent => run_agent(&dirs),
        Command::Status => {
            println!("{}", agent(&dirs)?.status());
            Ok(())
        }
        Command::Upgrade { now } => {
            let how = if now {
                agent::Reboot::Now
            } else {
                agent::Reboot::No
            };
            let said = agent(&dirs)?.poll(how)?;
            println!("{said}");
            Ok(())
        }
        Command::Rollback { now } => agent(&dirs)?.rollback(now),
        Command::Slots => slots(&dirs, None),
        Command::ReleaseSlot { host } => slots(&dirs, Some(&host)),
        Command::Pause | Command::Resume => {
            let paused = matches!(cli.command, Command::Pause);
            state::Store::new(Path::new(state::DIR)).set_paused(paused)?;
            println!("updates {}", if paused { "paused" } else { "resumed" });
            Ok(())
        }
    }
}

/// The service: check this boot, then poll every interval. Errors of one
/// poll (the repository unreachable, a bad signature) are logged and
/// polling goes on.
fn run_agent(dirs: &[PathBuf]) -> Result<()> {
    let Some(settings) = settings::load(dirs)? else {
        log("no update settings: nothing to do");
        return Ok(());
    };
    let a = agent::Agent {
        host: host::Host::open()?,
        coord: coord::Coordinator::new(&settings)?,
        settings,
        store: state::Store::new(Path::new(state::DIR)),
        boot: agent::boot_dir(),
    };
    a.coord.resume();
    if a.boot_check()? {
        return Ok(());
    }
    log(&format!(
        "polling {} for {} every {} s, strategy {}",
        a.settings.url.as_deref().unwrap_or(&a.settings.remote),
        a.settings.ref_,
        a.settings.poll_interval.as_secs(),
        a.settings.strategy
    ));
    // The same news (still waiting for the window or a slot) is said once.
    let mut last = String::new();
    loop {
        std::thread::sleep(a.settings.poll_interval);
        let said = match a.poll(agent::Reboot::ByStrategy) {
            Ok(said) => said,
            Err(e) => format!("update failed: {e:#}"),
        };
        if said != last {
            log(&said);
            last = said;
        }
    }
}

/// `slots`: who holds the group's reboot slots; `release-slot HOST`: free
/// those `host` holds.
fn slots(dirs: &[PathBuf], release: Option<&str>) -> Result<()> {
    let settings = settings::load(dirs)?.context("no update settings")?;
    let lock = settings
        .lock
        .as_ref()
        .context("no [lock] in the update settings: there is no reboot semaphore")?;
    let me = lock.host.clone().unwrap_or_else(lock::hostname);
    let sem = lock::Semaphore::new(lock, &me)?;
    let Some(host) = release else {
        let held = sem.holders()?;
        if held.is_empty() {
            println!(
                "none of the {} slot(s) of group {} is held",
                lock.slots, lock.group
            );
        }
        for h in held {
            println!("held by {}", h.describe());
        }
        return Ok(());
    };
    let released = sem.release_host(host)?;
    if released.is_empty() {
        println!("{host} holds no reboot slot of group {}", lock.group);
    }
    for h in released {
        println!("released {}", h.describe());
    }
    Ok(())
}
