//! The check script `atomicbuild test` hands to the guest through QEMU's
//! fw_cfg: POSIX sh, run by every image's `atomicbuild-test.service` once
//! the system is up (the unit does nothing when QEMU passed no script). It
//! only *collects facts* and prints them as `ABCHECK <key>| <line>` on the
//! second serial port (no getty there, no kernel messages); the runner
//! judges them ([`super::judge`]), so a recorded console can be judged again
//! without a boot. Then it reboots (more boots wanted), waits (the caller
//! checks from outside) or powers off.

use super::expect::Expect;

/// The fw_cfg entry the script is passed under (the unit reads it from
/// `/sys/firmware/qemu_fw_cfg/by_name/<this>/raw`).
pub const FW_CFG_NAME: &str = "opt/org.atomicbuild/test";

/// The last line of a command's report: its exit status after this.
pub const EXIT_MARK: &str = "ABEXIT=";

/// Quote `s` for sh (single quotes).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the guest does after reporting boot number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Power off after the last boot, reboot before.
    PowerOff,
    /// Wait after every boot: the caller checks from outside and stops the
    /// VM (or the guest reboots by itself and reports again).
    Hold,
}

const PROLOGUE: &str = r#"#!/bin/sh
# Written by atomicbuild test; prints facts, judges nothing.
exec >/dev/ttyS1 2>&1
dmesg -n 1 2>/dev/null
mkdir -p /var/lib/atomicbuild-test
n=$(( $(cat /var/lib/atomicbuild-test/boot 2>/dev/null || echo 0) + 1 ))
echo "$n" > /var/lib/atomicbuild-test/boot
sync
say() { k=$1; shift; "$@" 2>&1 | while IFS= read -r l || [ -n "$l" ]; do printf 'ABCHECK %s| %s\n' "$k" "$l"; done; }
run() { k=$1; shift; say "$k" sh -c "$1"; }
status() { k=$1; shift; sh -c "$1" >/dev/null 2>&1; echo "ABCHECK $k| $?"; }
echo "ABCHECK-BEGIN $n"
echo "ABCHECK state| $(systemctl is-system-running --wait 2>&1)"
say failed systemctl list-units --failed --no-legend --plain
say boot-time systemd-analyze time
run multi-user 'systemctl show -p ActiveEnterTimestampMonotonic --value multi-user.target'
run blame "systemd-analyze blame --no-pager | grep -v '[.]device\$' | head -n 8"
run firmware '[ -d /sys/firmware/efi ] && echo uefi || echo bios'
"#;

/// The script for `e`: `boots` boots in all, then `after`.
pub fn script(e: &Expect, boots: u32, after: After) -> String {
    let mut s = String::from(PROLOGUE);
    let q = sh_quote;
    for p in e.read_only.iter().chain(&e.writable) {
        let probe = format!(
            "f={}/.atomicbuild-write-test; if touch \"$f\" 2>/dev/null; then rm -f \"$f\"; echo rw; else echo ro; fi",
            p.trim_end_matches('/')
        );
        s += &format!("run {} {}\n", q(&format!("write:{p}")), q(&probe));
    }
    for u in e.active.iter().chain(&e.inactive) {
        s += &format!(
            "run {} {}\n",
            q(&format!("unit:{u}")),
            q(&format!("systemctl is-active {}", q(u)))
        );
    }
    for (i, f) in e.files.iter().enumerate() {
        let p = q(&f.path);
        s += &format!(
            "run file:{i}:stat {}\n",
            q(&format!(
                "stat -c '%a %U:%G' {p} 2>/dev/null || echo missing"
            ))
        );
        if f.contains.is_some() {
            s += &format!("run file:{i}:text {}\n", q(&format!("head -c 65536 {p}")));
        }
    }
    for (i, c) in e.commands.iter().enumerate() {
        // A subshell, so that `exit` in the command still reports.
        s += &format!(
            "run cmd:{i} {}\n",
            q(&format!("({}\n); echo \"{EXIT_MARK}$?\"", c.run))
        );
    }
    if e.network.is_some() {
        s += "run ipv4 'ip -4 -o addr show scope global'\n";
    }
    if e.firstboot.is_some() {
        s += "run firstboot:stamp 'test -f /var/lib/atomic-firstboot/done && echo present || echo missing'\n";
        s += "run firstboot:result 'systemctl show -p Result --value atomic-firstboot'\n";
        s += "run firstboot:log 'journalctl -b -u atomic-firstboot -o cat --no-pager'\n";
    }
    for f in &e.facts {
        s += &format!("run {} {}\n", q(&format!("fact:{}", f.name)), q(&f.run));
    }
    s += "echo \"ABCHECK-END $n\"\nsync\n";
    s += &match after {
        After::Hold => "while true; do sleep 3600; done\n".to_string(),
        After::PowerOff => format!(
            "sleep 1\nif [ \"$n\" -lt {boots} ]; then systemctl reboot; else systemctl poweroff; fi\n"
        ),
    };
    s
}
