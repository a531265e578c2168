#!/bin/bash
# Prints facts as "ABCHECK <name>| <line>" on the second serial port (ttyS1:
# no getty there, so no hangup can cut the report off, and no kernel message
# interleaves); the test harness (builder/tests/qemu_boot.rs) decides what
# is right. Then powers off, unless the first-boot config wrote
# /etc/atomicbuild-test/hold: then the harness checks etcd from the host side
# and stops the VM itself.
exec >/dev/ttyS1 2>&1
dmesg -n 1 2>/dev/null
say() { local n=$1; shift; "$@" 2>&1 | while IFS= read -r l || [ -n "$l" ]; do echo "ABCHECK $n| $l"; done; }

echo "ABCHECK-BEGIN"
state=$(systemctl is-system-running --wait 2>&1)
echo "ABCHECK state| $state"
say uptime cut -d' ' -f1 /proc/uptime
say failed systemctl list-units --failed --no-legend --plain
say usr-write bash -c 'touch /usr/.atomicbuild-write-test && echo WRITABLE || echo "rc=$?"'
say usr-mount findmnt -n -o OPTIONS /usr
say ostree ostree admin status
say active systemctl is-active atomic-firstboot containerd etcd ssh systemd-networkd
say firstboot-stamp bash -c 'test -f /var/lib/atomic-firstboot/done && echo present || echo missing'
say firstboot-log journalctl -b -u atomic-firstboot -o cat --no-pager
say firstboot-time systemctl show -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic atomic-firstboot
say growroot-log journalctl -b -u atomic-growroot -o cat --no-pager
say disk-bytes blockdev --getsize64 /dev/vda
say root-size bash -c "df -B1 --output=size /sysroot | tail -n 1 | tr -d ' '"
say etcd-conf grep -E '^(name|initial-cluster-state|listen-client-urls|heartbeat-interval):' /etc/etcd/etcd.conf.yml
say etcd-listen bash -c "ss -Hltn | awk '{print \$4}' | grep -E ':(2379|2380)\$' | sort"
say kubelet-conf stat -c '%n %a' /etc/kubernetes/bootstrap-kubelet.conf /var/lib/kubelet/config.yaml
say containerd ctr --timeout 10s version
say cmdline cat /proc/cmdline
say passwd getent passwd core
say groups id -nG core
say authorized-keys cat /var/home/core/.ssh/authorized_keys
say keys-perm stat -c '%U %a' /var/home/core/.ssh/authorized_keys
say fb-passwd getent passwd ops
say fb-authorized-keys cat /var/home/ops/.ssh/authorized_keys
say hostname hostname
say firmware bash -c '[ -d /sys/firmware/efi ] && echo uefi || echo bios'
say boot-mount findmnt -n -o SOURCE,FSTYPE /boot
say hostkeys bash -c 'ls /etc/ssh/ssh_host_*_key | wc -l'
say ipv4 bash -c "ip -4 -o addr show scope global | awk '{print \$4}'"
echo "ABCHECK-END"
if [ -e /etc/atomicbuild-test/hold ]; then
  sleep 3600
fi
sleep 1
systemctl poweroff
